//! The follower against an in-process leader: core's `LeaderSession` over an in-memory log
//! behind a small axum WebSocket route, on a loopback port. Real sockets, real file stores.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;

use cstore_core::doc::RawDoc;
use cstore_core::log::LogEntry;
use cstore_core::replication::{Frame, LeaderCommand, LeaderSession, SessionConfig};
use cstore_core::snapshot::Snapshot;
use cstore_core::state::State;
use cstore_core::{LogPosition, Lsn, Op, ReplicaId, Term, TimestampMs, Txn};

use super::{Connection, Follower, FollowerConfig};
use crate::clock::now_ms;
use crate::node::{Node, ReadFloor};
use crate::wal::FileStore;

/// The test leader's log: entries after an optional snapshot, and the state they build.
struct TestLog {
    entries: Vec<LogEntry>,
    snapshot: Option<Arc<Snapshot>>,
    state: State,
}

#[derive(Clone)]
struct TestLeader {
    log: Arc<Mutex<TestLog>>,
    committed: watch::Sender<LogPosition>,
    /// Moves when a test replaces the whole history (as a new leader with another log would):
    /// sessions begun on the old one end, as a real leader's would, instead of reading the new
    /// entries after the old ones (which core's session refuses with an assertion).
    history: Arc<std::sync::atomic::AtomicU64>,
}

impl TestLeader {
    fn new() -> TestLeader {
        let log = TestLog {
            entries: Vec::new(),
            snapshot: None,
            state: State::new(),
        };
        TestLeader {
            log: Arc::new(Mutex::new(log)),
            committed: watch::channel(LogPosition::START).0,
            history: Arc::default(),
        }
    }

    /// Replaces the whole history with `log`; sessions on the old one end.
    fn replace_history(&self, log: TestLog) {
        let mut held = self.log.lock().unwrap();
        *held = log;
        self.history
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Commits `count` inserts into `things`, one entry each.
    fn insert(&self, from: u64, count: u64) -> Lsn {
        let mut log = self.log.lock().unwrap();
        for i in from..from + count {
            let doc = RawDoc::from_value(&json!({"_id": format!("d{i}"), "n": i})).unwrap();
            let txn = Txn::single(Op::Insert {
                collection: "things".into(),
                doc,
            });
            let entry = LogEntry::new(log.state.applied(), Term(1), TimestampMs(1), txn);
            log.state.apply(&entry).unwrap();
            log.entries.push(entry);
        }
        let position = log.state.applied();
        self.committed.send_replace(position);
        position.lsn
    }

    /// Snapshots the state and drops every entry behind it.
    fn compact(&self) {
        let mut log = self.log.lock().unwrap();
        let snapshot = log.state.snapshot();
        log.entries.clear();
        log.snapshot = Some(Arc::new(snapshot));
    }

    fn state_hash(&self) -> cstore_core::Hash {
        self.log.lock().unwrap().state.state_hash()
    }

    /// What the session (begun on history `history`) asked to read, answered from the log;
    /// `None` when the history was replaced since: the session ends.
    fn read(
        &self,
        history: u64,
        session: &mut LeaderSession,
        command: &LeaderCommand,
    ) -> Option<Vec<LeaderCommand>> {
        let log = self.log.lock().unwrap();
        if self.history.load(std::sync::atomic::Ordering::SeqCst) != history {
            return None;
        }
        let first = log.snapshot.as_ref().map_or(1, |s| s.position.lsn.0 + 1);
        Some(match *command {
            LeaderCommand::ReadEntries { from, to } if from.0 >= first => {
                let range = (from.0 - first) as usize..(to.0 - first) as usize;
                session.on_entries(now_ms(), log.entries[range].to_vec())
            }
            LeaderCommand::ReadEntries { .. } => session.on_entries_missing(now_ms()),
            // The checkpoint when it is recent enough, like the real leader's.
            LeaderCommand::ReadSnapshot { min_lsn } => match &log.snapshot {
                Some(snapshot) if snapshot.position.lsn >= min_lsn => {
                    session.on_snapshot(now_ms(), Arc::clone(snapshot))
                }
                _ => session.on_snapshot(now_ms(), Arc::new(log.state.snapshot())),
            },
            _ => unreachable!("only reads are answered here"),
        })
    }

    /// Serves `/v1/replicate` on a free loopback port.
    async fn serve(&self) -> SocketAddr {
        let app = Router::new()
            .route("/v1/replicate", get(upgrade))
            .with_state(self.clone());
        serve_router(app).await
    }
}

async fn serve_router(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn upgrade(AxumState(leader): AxumState<TestLeader>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| run_session(leader, socket))
}

async fn run_session(leader: TestLeader, mut socket: WebSocket) {
    let history = leader.history.load(std::sync::atomic::Ordering::SeqCst);
    let mut committed = leader.committed.subscribe();
    let start = *committed.borrow_and_update();
    let mut session = LeaderSession::new(
        SessionConfig::default(),
        ReplicaId(1),
        Term(1),
        start,
        now_ms(),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let commands = tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => session.handle_bytes(now_ms(), &bytes),
                Some(Ok(_)) => Vec::new(),
                _ => return,
            },
            changed = committed.changed() => {
                if changed.is_err() {
                    return;
                }
                let position = *committed.borrow_and_update();
                session.on_committed(now_ms(), position)
            }
            _ = tick.tick() => session.on_tick(now_ms()),
        };
        let mut queue = std::collections::VecDeque::from(commands);
        while let Some(command) = queue.pop_front() {
            match command {
                LeaderCommand::Send(frame) => {
                    if socket
                        .send(Message::Binary(frame.encode().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                LeaderCommand::SendEntries(frame) => {
                    if socket
                        .send(Message::Binary(frame.encode().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                LeaderCommand::Close(_) => return,
                read => match leader.read(history, &mut session, &read) {
                    Some(commands) => queue.extend(commands),
                    None => return,
                },
            }
        }
    }
}

fn config(addr: SocketAddr) -> FollowerConfig {
    let mut config = FollowerConfig::new(format!("ws://{addr}/v1/replicate"));
    config.backoff_initial_ms = 20;
    config.backoff_max_ms = 200;
    config
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Waits until the follower reports an error with `code` as its last.
async fn wait_for_error(follower: &Follower, code: &str) {
    wait_until(&format!("the follower reports {code}"), || {
        follower
            .status()
            .progress
            .last_error
            .is_some_and(|e| e.code == code)
    })
    .await;
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cstore-follower-{name}-{}-{}",
        std::process::id(),
        now_ms().0
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn count(follower: &Follower) -> usize {
    follower.read(|s| s.collection("things").map_or(0, |c| c.len()))
}

#[tokio::test]
async fn streams_reads_with_min_lsn_resumes_after_restart_without_downloading_again() {
    let leader = TestLeader::new();
    leader.insert(0, 300);
    let addr = leader.serve().await;
    let dir = temp_dir("resume");

    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(addr))
        .await
        .unwrap();
    let node = Node::Follower(follower.clone());
    let floor = ReadFloor {
        min_lsn: Some(Lsn(300)),
        timeout_ms: 5_000,
        linearizable: false,
    };
    let n = node.read(floor, |s| s.collection("things").unwrap().len());
    assert_eq!(n.await.unwrap(), 300);

    // A read that asks for an LSN nobody wrote times out with its code.
    let future = ReadFloor {
        min_lsn: Some(Lsn(10_000)),
        timeout_ms: 50,
        linearizable: false,
    };
    let error = node.read(future, |_| ()).await.unwrap_err();
    assert_eq!(
        cstore_core::error::ErrorCode::code(&error),
        "min_lsn_timeout"
    );

    // Entries committed later stream in, and a waiting reader wakes.
    let reader = {
        let node = node.clone();
        tokio::spawn(async move {
            let floor = ReadFloor {
                min_lsn: Some(Lsn(350)),
                timeout_ms: 5_000,
                linearizable: false,
            };
            node.read(floor, |s| s.collection("things").unwrap().len())
                .await
        })
    };
    leader.insert(300, 50);
    assert_eq!(reader.await.unwrap().unwrap(), 350);
    wait_until("streaming", || {
        follower.status().progress.connection == Connection::Streaming
    })
    .await;
    let status = follower.status();
    assert_eq!(status.term, Term(1));
    assert_eq!(status.progress.durable_lsn, Lsn(350));
    assert_eq!(status.progress.entries_received, 350);
    assert_eq!(
        follower.read(|s| s.state_hash()),
        leader.state_hash(),
        "same state as the leader"
    );
    follower.shutdown().await;

    // Restart on the same directory (the lock was released): the state recovers from the
    // local log, and only what is new comes over the wire.
    leader.insert(350, 10);
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(addr))
        .await
        .unwrap();
    assert_eq!(
        follower.applied_lsn(),
        Lsn(350),
        "recovered before connecting"
    );
    assert!(
        follower
            .wait_applied(Lsn(360), Duration::from_secs(5))
            .await
    );
    let status = follower.status();
    assert_eq!(
        status.progress.entries_received, 10,
        "nothing received twice"
    );
    assert_eq!(status.progress.snapshot_installs, 0);
    assert_eq!(status.term, Term(1), "the term was saved");
    assert_eq!(count(&follower), 360);
    follower.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bootstraps_from_a_snapshot_after_compaction() {
    let leader = TestLeader::new();
    leader.insert(0, 200);
    leader.compact();
    leader.insert(200, 20);
    let addr = leader.serve().await;
    let dir = temp_dir("snapshot");
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(addr))
        .await
        .unwrap();
    assert!(
        follower
            .wait_applied(Lsn(220), Duration::from_secs(5))
            .await
    );
    let status = follower.status();
    assert_eq!(status.progress.snapshot_installs, 1);
    assert_eq!(status.progress.entries_received, 20);
    assert_eq!(follower.read(|s| s.state_hash()), leader.state_hash());
    follower.shutdown().await;

    // The installed snapshot is what a restart recovers from.
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(addr))
        .await
        .unwrap();
    assert_eq!(follower.applied_lsn(), Lsn(220));
    assert_eq!(count(&follower), 220);
    follower.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_url_that_is_no_leader_is_retried_with_backoff_and_reported() {
    // An HTTP server without the replication route: the upgrade is answered 404.
    let addr = serve_router(Router::new()).await;
    let dir = temp_dir("noleader");
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(addr))
        .await
        .unwrap();
    wait_until("two failed attempts", || {
        let progress = follower.status().progress;
        progress.last_error.is_some() && progress.connection == Connection::Waiting
    })
    .await;
    let error = follower.status().progress.last_error.unwrap();
    assert_eq!(error.code, "handshake_refused");
    assert!(error.message.contains("404"), "{}", error.message);

    // Nothing listens at all: a connect error, and the follower keeps serving reads.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    follower.shutdown().await;
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(closed))
        .await
        .unwrap();
    wait_for_error(&follower, "connect_failed").await;
    assert_eq!(count(&follower), 0);
    follower.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A leader that answers every hello with a damaged frame (a `Welcome` with one body byte
/// flipped), and reports the frames it receives back.
async fn serve_damaged_frames() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Frame>) {
    let (heard, frames) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/v1/replicate",
        get(move |ws: WebSocketUpgrade| async move {
            ws.on_upgrade(move |mut socket| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    let Message::Binary(bytes) = message else {
                        continue;
                    };
                    let frame = Frame::decode(&bytes).expect("the follower sends frames");
                    if matches!(frame, Frame::Hello(_)) {
                        let mut damaged = Frame::Welcome {
                            leader_id: ReplicaId(1),
                            term: Term(1),
                            start: LogPosition::START,
                        }
                        .encode();
                        *damaged.last_mut().unwrap() ^= 0x40;
                        if socket.send(Message::Binary(damaged.into())).await.is_err() {
                            return;
                        }
                    }
                    let _ = heard.send(frame);
                }
            })
        }),
    );
    (serve_router(app).await, frames)
}

#[tokio::test]
async fn a_damaged_frame_is_reported_with_its_code_to_both_sides_and_changes_nothing() {
    let (addr, mut frames) = serve_damaged_frames().await;
    let dir = temp_dir("damaged");
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(addr))
        .await
        .unwrap();
    wait_for_error(&follower, "bad_checksum").await;
    // The frames are decoded on the reader task; the error still reaches the leader first.
    assert!(matches!(frames.recv().await, Some(Frame::Hello(_))));
    match frames.recv().await {
        Some(Frame::Error { code, .. }) => assert_eq!(code, "bad_checksum"),
        other => panic!("expected the follower's error frame, got {other:?}"),
    }
    // It reconnects (and says hello again from where it was), and holds nothing.
    assert!(matches!(frames.recv().await, Some(Frame::Hello(_))));
    assert_eq!(follower.applied_lsn(), Lsn::ZERO);
    assert_eq!(count(&follower), 0);
    follower.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An HTTP router for `node`, with a recorder of its own (not installed process-wide).
fn app(node: Node, auth: Option<&str>) -> Router {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let auth = auth.map(|secret| Arc::new(crate::auth::TokenKey::new(secret).unwrap()));
    crate::http::router(crate::http::AppState {
        replication: node.replicator(auth.clone()),
        node,
        auth,
        metrics,
        demo_dir: None,
        data_dir: None,
    })
}

#[tokio::test]
async fn writes_are_forwarded_to_the_leader_unchanged() {
    use crate::auth::{Claims, Scope, TokenKey};
    use crate::leader::{Leader, LeaderConfig};

    const SECRET: &str = "forwarding test secret";
    let leader = Leader::open(
        cstore_core::storage::MemoryStore::new(),
        LeaderConfig::default(),
    )
    .await
    .unwrap();
    let leader_addr = serve_router(app(Node::Leader(leader.clone()), Some(SECRET))).await;
    // The leader has no replication route yet in this test: the follower only forwards.
    let dir = temp_dir("forward");
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(leader_addr))
        .await
        .unwrap();
    let follower_addr = serve_router(app(Node::Follower(follower.clone()), None)).await;
    let token = TokenKey::new(SECRET).unwrap().mint(&Claims {
        sub: "test".into(),
        scopes: vec![Scope::Read, Scope::Write],
        exp: now_ms().0 / 1000 + 3600,
        collections: None,
    });
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{follower_addr}{path}");

    // No token: the leader's 401 comes back as it is.
    let answer = client
        .post(url("/v1/c/notes"))
        .header("content-type", "application/json")
        .body(r#"{"_id":"a","v":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_token");

    // With the token: committed on the leader, answered with its lsn.
    let answer = client
        .post(url("/v1/c/notes?ack=local"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"_id":"a","v":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body, json!({"id": "a", "lsn": 1}));
    assert!(leader.read(|s| s.collection("notes").unwrap().get("a").is_some()));

    // Preconditions pass through: a stale If-Match is the leader's 412.
    let answer = client
        .put(url("/v1/c/notes/a"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("if-match", "\"7\"")
        .body(r#"{"v":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 412);
    let answer = client
        .patch(url("/v1/c/notes/a?if_version=1"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"v":3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer = client
        .post(url("/v1/txn"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"ops":[{"op":"delete","collection":"notes","id":"a"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["lsn"], 3);

    // Reads stay local: the follower has no replication here, so `find` sees nothing, and a
    // min_lsn it cannot reach times out.
    let answer = client
        .post(url("/v1/c/notes/find?min_lsn=3&min_lsn_timeout_ms=20"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 504);

    // A leader that is gone: 503 leader_unavailable.
    leader.shutdown().await;
    follower.shutdown().await;
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(gone))
        .await
        .unwrap();
    let follower_addr = serve_router(app(Node::Follower(follower.clone()), None)).await;
    let answer = client
        .delete(format!("http://{follower_addr}/v1/c/notes/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "leader_unavailable");
    follower.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_entry_that_does_not_apply_discards_the_local_copy_and_bootstraps_again() {
    // The leader's log holds a verified entry that cannot apply (a duplicate insert): the
    // follower's state is then not to be trusted, and the remedy is a fresh bootstrap.
    let leader = TestLeader::new();
    leader.insert(0, 5);
    {
        let mut log = leader.log.lock().unwrap();
        let doc = RawDoc::from_value(&json!({"_id": "d0", "n": 0})).unwrap();
        let txn = Txn::single(Op::Insert {
            collection: "things".into(),
            doc,
        });
        let prev = log.entries.last().unwrap().position();
        let bad = LogEntry::new(prev, Term(1), TimestampMs(1), txn);
        log.entries.push(bad);
    }
    leader.committed.send_replace(LogPosition {
        lsn: Lsn(6),
        hash: leader.log.lock().unwrap().entries[5].hash,
    });
    let addr = leader.serve().await;
    let dir = temp_dir("rebootstrap");
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(addr))
        .await
        .unwrap();
    wait_for_error(&follower, "apply_failed").await;

    // The leader's history is replaced by a good one (a different chain): the follower, which
    // discarded its copy, takes it from the start.
    let good = TestLeader::new();
    good.insert(100, 7);
    let (entries, state) = {
        let good = good.log.lock().unwrap();
        (good.entries.clone(), good.state.clone())
    };
    leader.replace_history(TestLog {
        entries,
        snapshot: None,
        state,
    });
    leader
        .committed
        .send_replace(good.log.lock().unwrap().state.applied());
    wait_until("the good log", || {
        follower.read(|s| s.state_hash()) == good.state_hash()
    })
    .await;
    assert_eq!(count(&follower), 7);
    follower.shutdown().await;

    // What it holds on disk is the good log alone.
    let follower = Follower::open(FileStore::open(&dir).unwrap(), config(addr))
        .await
        .unwrap();
    assert_eq!(follower.read(|s| s.state_hash()), good.state_hash());
    follower.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
