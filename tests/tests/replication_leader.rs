//! The leader side of replication against a real `cstore serve`: in-process replicas
//! ([`ReplicaClient`]) connect to `/v1/replicate` over loopback and must converge, resume,
//! bootstrap from a snapshot, satisfy `?ack=replicas:N`, and survive neighbours that send
//! broken bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use cstore_core::replication::{FRAME_BYTES_MAX, Frame, Hello};
use cstore_core::{LogPosition, Lsn, ReplicaId, Term};
use cstore_tests::replica_client::{ReplicaClient, ReplicaClientError, ReplicaOptions};
use cstore_tests::{Client, ServerOptions, ServerProcess};

const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn ws_url(server: &ServerProcess) -> String {
    format!("ws://{}/v1/replicate", server.addr())
}

/// Writes `count` documents `{"_id": "{prefix}{i}", "n": i}` into `items` over 4 threads.
fn write_docs(client: &Client, prefix: &str, count: usize) {
    std::thread::scope(|scope| {
        for w in 0..4 {
            let client = client.clone();
            scope.spawn(move || {
                for i in (w..count).step_by(4) {
                    let doc =
                        json!({"_id": format!("{prefix}{i:05}"), "n": i, "pad": "x".repeat(64)});
                    client.insert("items", &doc).unwrap().expect_status(201);
                }
            });
        }
    });
}

/// A replica client with these options, connected to `server`'s replication endpoint.
fn connected(
    rt: &Runtime,
    server: &ServerProcess,
    id: u64,
    options: ReplicaOptions,
) -> ReplicaClient {
    let mut replica = ReplicaClient::new(id, options);
    rt.block_on(replica.connect(&ws_url(server), None)).unwrap();
    replica
}

/// Drives a connected replica until `target` is set and reached; returns it.
fn follow(
    rt: &Runtime,
    replica: ReplicaClient,
    target: Arc<AtomicU64>,
) -> JoinHandle<Result<ReplicaClient, (ReplicaClient, ReplicaClientError)>> {
    follow_until(rt, replica, move |r| {
        let t = target.load(Ordering::Acquire);
        t > 0 && r.replica().durable_lsn() >= Lsn(t)
    })
}

/// Drives a connected replica until `stop` is set; returns it.
fn follow_until_stopped(
    rt: &Runtime,
    replica: ReplicaClient,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<Result<ReplicaClient, (ReplicaClient, ReplicaClientError)>> {
    let stop = Arc::clone(stop);
    follow_until(rt, replica, move |_| stop.load(Ordering::Acquire))
}

/// Drives a connected replica until `done` holds; returns it.
fn follow_until(
    rt: &Runtime,
    mut replica: ReplicaClient,
    done: impl Fn(&ReplicaClient) -> bool + Send + 'static,
) -> JoinHandle<Result<ReplicaClient, (ReplicaClient, ReplicaClientError)>> {
    rt.spawn(async move {
        match replica.run_until(Duration::from_secs(60), done).await {
            Ok(()) => Ok(replica),
            Err(e) => Err((replica, e)),
        }
    })
}

fn joined(
    rt: &Runtime,
    handle: JoinHandle<Result<ReplicaClient, (ReplicaClient, ReplicaClientError)>>,
) -> ReplicaClient {
    match rt.block_on(handle).expect("replica task") {
        Ok(replica) => replica,
        Err((replica, e)) => panic!("replica failed: {e}: {replica:?}"),
    }
}

/// The replica's documents of `items`, as the API would show them.
fn replica_docs(replica: &ReplicaClient) -> Vec<Value> {
    replica
        .state()
        .collection("items")
        .map(|c| {
            c.scan()
                .map(|d| serde_json::from_str(d.doc.as_str()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `/v1/status` until `check` holds on it.
fn wait_status(client: &Client, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let status = client.status();
        if check(&status) {
            return status;
        }
        assert!(
            started.elapsed() < SYNC_TIMEOUT,
            "status never settled: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The encoded hello of a replica that holds nothing yet, speaking `protocol_version`.
fn fresh_hello(protocol_version: u16, replica: u64) -> Vec<u8> {
    Frame::Hello(Hello {
        protocol_version,
        replica_id: ReplicaId(replica),
        term: Term(0),
        last: LogPosition::START,
        durable: Lsn::ZERO,
        resume: None,
        collections: None,
    })
    .encode()
}

/// The server's threads named for replication sessions (Linux shows 15 bytes of a name).
fn session_threads(server: &ServerProcess) -> usize {
    let pid = server.pid().expect("a running server");
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's threads")
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|name| name.starts_with("cstore-replicat"))
        })
        .count()
}

#[test]
fn two_replicas_converge_and_report_zero_lag() {
    // Sessions on threads of their own (the default: half the CPUs, at least one).
    let cpus = std::thread::available_parallelism().unwrap().get();
    let threads = (cpus / 2).max(1);
    two_replicas_converge(ServerOptions::default(), threads..=threads);
}

#[test]
fn sessions_beside_the_http_edge_converge_too() {
    let options = ServerOptions {
        extra_args: vec!["--replication-threads".into(), "0".into()],
        ..ServerOptions::default()
    };
    two_replicas_converge(options, 0..=0);
}

fn two_replicas_converge(options: ServerOptions, threads: std::ops::RangeInclusive<usize>) {
    let server = ServerProcess::start(options).unwrap();
    let client = server.client();
    let found = session_threads(&server);
    assert!(threads.contains(&found), "{found} session threads");
    let rt = runtime();
    // The replicas run until the leader's status was checked: they acknowledge when it asks
    // (at least once a heartbeat interval while entries flow), so it learns of the last
    // entries only from replicas still running, as real ones are.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for id in [11, 12] {
        let replica = connected(&rt, &server, id, ReplicaOptions::default());
        tasks.push(follow_until_stopped(&rt, replica, &stop));
    }
    write_docs(&client, "a", 2_000);
    let last = client.last_lsn();

    let status = wait_status(&client, |s| {
        let replicas = s["replicas"].as_array().unwrap();
        replicas.len() == 2 && replicas.iter().all(|r| r["lag"] == 0)
    });
    for r in status["replicas"].as_array().unwrap() {
        assert_eq!(r["acked_lsn"], json!(last), "{status}");
        assert_eq!(r["state"], "streaming");
        assert!(r["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    let ids: Vec<&str> = status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&ReplicaId(11).to_string().as_str()),
        "{status}"
    );
    assert_eq!(
        status["watermarks"],
        json!({"committed": last, "durable_on": {"1": last, "2": last}})
    );
    let metrics = client.get("/metrics").unwrap().text();
    assert!(metrics.contains("cstore_replicas_connected 2"), "{metrics}");
    assert!(metrics.contains(&format!(
        "cstore_replica_lag_entries{{replica=\"{}\"}} 0",
        ReplicaId(12)
    )));
    assert!(metrics.contains("cstore_replication_bytes_sent_total"));
    // Both sockets were taken out of hyper and registered with the sessions' runtime.
    assert!(
        metrics.contains("cstore_replication_sockets_total{kind=\"tcp\"} 2"),
        "{metrics}"
    );
    assert!(!metrics.contains("kind=\"tls\""), "{metrics}");

    stop.store(true, Ordering::Release);
    let replicas: Vec<ReplicaClient> = tasks.into_iter().map(|t| joined(&rt, t)).collect();
    assert_eq!(replicas[0].persisted().lsn, Lsn(last));
    assert_eq!(replicas[0].state_hash(), replicas[1].state_hash());
    assert_eq!(replicas[0].persisted(), replicas[1].persisted());
    let leader_docs = client.all_docs("items");
    assert_eq!(leader_docs.len(), 2_000);
    assert_eq!(replica_docs(&replicas[0]), leader_docs);
    // Each entry was received exactly once.
    assert_eq!(replicas[0].stats().wire_entries, last);

    // Disconnected replicas leave the status.
    drop(replicas);
    wait_status(&client, |s| s["replicas"].as_array().unwrap().is_empty());
}

#[test]
fn a_reconnecting_replica_resumes_without_resending() {
    let server = ServerProcess::start(ServerOptions::default()).unwrap();
    let client = server.client();
    let rt = runtime();
    let mut replica = connected(&rt, &server, 21, ReplicaOptions::default());
    write_docs(&client, "a", 500);
    let first = client.last_lsn();
    rt.block_on(replica.sync_to(Lsn(first), SYNC_TIMEOUT))
        .unwrap();
    let before = replica.stats();
    assert_eq!(before.wire_entries, first);

    replica.disconnect();
    write_docs(&client, "b", 500);
    let second = client.last_lsn();
    rt.block_on(replica.connect(&ws_url(&server), None))
        .unwrap();
    rt.block_on(replica.sync_to(Lsn(second), SYNC_TIMEOUT))
        .unwrap();
    let after = replica.stats();
    // Only the entries written while it was away came over the wire: nothing was resent.
    assert_eq!(after.wire_entries - before.wire_entries, second - first);
    assert_eq!(after.snapshots, 0);
    assert_eq!(replica_docs(&replica), client.all_docs("items"));
}

#[test]
fn a_replica_behind_compaction_bootstraps_from_a_snapshot_then_streams() {
    let server = ServerProcess::start(ServerOptions {
        checkpoint_every: Some(200),
        extra_args: vec!["--replication-tail-mib".into(), "1".into()],
        ..ServerOptions::default()
    })
    .unwrap();
    let client = server.client();
    // About 2.4 MB of entries: more than the 1 MiB tail, several checkpoints and compactions.
    std::thread::scope(|scope| {
        for w in 0..4 {
            let client = client.clone();
            scope.spawn(move || {
                for i in (w..2_000).step_by(4) {
                    let doc = json!({"_id": format!("s{i:05}"), "n": i, "pad": "y".repeat(1_000)});
                    client.insert("items", &doc).unwrap().expect_status(201);
                }
            });
        }
    });
    let snapshot_lsn = client.last_lsn();
    let rt = runtime();
    let mut replica = connected(&rt, &server, 31, ReplicaOptions::default());
    rt.block_on(replica.sync_to(Lsn(snapshot_lsn), SYNC_TIMEOUT))
        .unwrap();
    let bootstrapped = replica.stats();
    assert_eq!(bootstrapped.snapshots, 1, "{replica:?}");
    assert!(
        bootstrapped.wire_entries < 100,
        "entries below the tail came from the snapshot, not the log: {bootstrapped:?}"
    );

    // Then it streams what comes next.
    write_docs(&client, "t", 100);
    let last = client.last_lsn();
    rt.block_on(replica.sync_to(Lsn(last), SYNC_TIMEOUT))
        .unwrap();
    let streamed = replica.stats();
    assert_eq!(streamed.snapshots, 1);
    assert_eq!(
        streamed.wire_entries - bootstrapped.wire_entries,
        last - snapshot_lsn
    );
    assert_eq!(replica_docs(&replica), client.all_docs("items"));
}

#[test]
fn ack_replicas_waits_for_a_replica_and_times_out_as_unknown_without_one() {
    let server = ServerProcess::start(ServerOptions::default()).unwrap();
    let client = server.client();
    let rt = runtime();

    // No replica: 504 ack_unknown at the deadline, carrying the LSN; the write is durable.
    let started = Instant::now();
    let reply = client
        .post(
            "/v1/c/items?ack=replicas:1&ack_timeout_ms=300",
            &json!({"_id": "lonely"}),
        )
        .unwrap();
    let waited = started.elapsed();
    reply.expect_error(504, "ack_unknown");
    let lsn = reply.json()["error"]["lsn"]
        .as_u64()
        .expect("the lsn is reported");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    client.get("/v1/c/items/lonely").unwrap().expect_status(200);
    assert_eq!(client.last_lsn(), lsn);
    // `all` with nobody connected is satisfied by the leader's own durability.
    client
        .post("/v1/c/items?ack=all", &json!({"_id": "all-alone"}))
        .unwrap()
        .expect_status(201);

    // One replica that follows: replicas:1 and all succeed.
    let replica = connected(&rt, &server, 41, ReplicaOptions::default());
    let target = Arc::new(AtomicU64::new(0));
    let task = follow(&rt, replica, Arc::clone(&target));
    let reply = client
        .post("/v1/c/items?ack=replicas:1", &json!({"_id": "synced"}))
        .unwrap()
        .expect_status(201);
    let synced = reply["lsn"].as_u64().unwrap();
    let ops = json!({"ops": [{"op": "delete", "collection": "items", "id": "synced"}]});
    let reply = client
        .post("/v1/txn?ack=all", &ops)
        .unwrap()
        .expect_status(200);
    let deleted = reply["lsn"].as_u64().unwrap();
    assert!(deleted > synced);
    // Two replicas needed, one connected: unknown.
    client
        .post(
            "/v1/c/items?ack=replicas:2&ack_timeout_ms=200",
            &json!({"_id": "two"}),
        )
        .unwrap()
        .expect_error(504, "ack_unknown");
    target.store(client.last_lsn(), Ordering::Release);
    let replica = joined(&rt, task);
    assert!(replica.replica().durable_lsn() >= Lsn(deleted));
    let metrics = client.get("/metrics").unwrap().text();
    assert!(metrics.contains("cstore_ack_unknown_total 2"), "{metrics}");
    assert!(metrics.contains("cstore_ack_wait_seconds_bucket"));
}

/// A replica of this build acknowledges when the leader asks (protocol version 3): while
/// writes trickle in one frame at a time it sends far fewer acks than it gets frames, and a
/// write waiting for it is asked for at once, not at the next periodic ask (a second).
#[test]
fn a_replica_acknowledges_when_asked() {
    let server = ServerProcess::start(ServerOptions::default()).unwrap();
    let client = server.client();
    let rt = runtime();
    let replica = connected(&rt, &server, 45, ReplicaOptions::default());
    let stop = Arc::new(AtomicBool::new(false));
    let task = follow_until_stopped(&rt, replica, &stop);
    for i in 0..50 {
        client
            .insert("items", &json!({"_id": format!("t{i:02}")}))
            .unwrap()
            .expect_status(201);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each would time out waiting for a periodic ask.
    for i in 0..5 {
        client
            .post(
                "/v1/c/items?ack=replicas:1&ack_timeout_ms=800",
                &json!({"_id": format!("w{i}")}),
            )
            .unwrap()
            .expect_status(201);
    }
    stop.store(true, Ordering::Release);
    let replica = joined(&rt, task);
    let stats = replica.stats();
    assert!(replica.replica().durable_lsn() >= Lsn(55), "{stats:?}");
    // One frame per write (the replica got them as they came), but acks only when asked.
    assert!(stats.messages >= 55, "{stats:?}");
    assert!(
        (5..25).contains(&stats.acks_sent),
        "{} acks for {} messages",
        stats.acks_sent,
        stats.messages
    );
}

/// Opens a raw replication socket, sends `message`, and returns the code of the `Error` frame
/// the leader answers with before closing (or `None` when the socket just closed).
async fn refused_with(url: &str, message: Message) -> Option<String> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects");
    // An oversized message may be cut off by the server mid-send: that is its refusal too.
    let _ = socket.send(message).await;
    let mut code = None;
    let read = async {
        while let Some(Ok(message)) = socket.next().await {
            match message {
                Message::Binary(bytes) => {
                    if let Ok(Frame::Error { code: c, .. }) = Frame::decode(&bytes) {
                        code = Some(c);
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the leader closes the connection");
    code
}

#[test]
fn broken_bytes_close_only_their_connection() {
    let server = ServerProcess::start(ServerOptions::default()).unwrap();
    let client = server.client();
    let url = ws_url(&server);
    let rt = runtime();
    let mut good = ReplicaClient::new(51, ReplicaOptions::default());
    rt.block_on(good.connect(&url, None)).unwrap();
    let target = Arc::new(AtomicU64::new(0));
    let task = follow(&rt, good, Arc::clone(&target));
    write_docs(&client, "a", 50);

    let mut flipped = Frame::Ack { durable: Lsn(1) }.encode();
    let at = flipped.len() - 1;
    flipped[at] ^= 0xff;
    let wrong_version = fresh_hello(999, 52);
    let cases: Vec<(&str, Message, &[&str])> = vec![
        (
            "garbage",
            Message::Binary(b"\x05\0\0\0garbage!".to_vec().into()),
            &[
                "frame_truncated",
                "bad_checksum",
                "malformed_frame",
                "unknown_version",
            ],
        ),
        (
            "bad checksum",
            Message::Binary(flipped.into()),
            &["bad_checksum"],
        ),
        (
            "text",
            Message::Text("hello".into()),
            &["protocol_violation"],
        ),
        (
            "wrong version",
            Message::Binary(wrong_version.into()),
            &["unsupported_protocol"],
        ),
        (
            "oversize",
            Message::Binary(vec![0u8; FRAME_BYTES_MAX + 1].into()),
            &["frame_too_large"],
        ),
    ];
    for (name, message, codes) in cases {
        let code = rt.block_on(refused_with(&url, message));
        let code = code.unwrap_or_else(|| panic!("{name}: closed without an error frame"));
        assert!(codes.contains(&code.as_str()), "{name}: {code}");
        client.get("/v1/health").unwrap().expect_status(200);
    }
    // The good replica never noticed.
    write_docs(&client, "b", 50);
    target.store(client.last_lsn(), Ordering::Release);
    let good = joined(&rt, task);
    assert_eq!(replica_docs(&good), client.all_docs("items"));
    let status = client.status();
    assert_eq!(status["replicas"].as_array().unwrap().len(), 1, "{status}");
}

#[test]
fn replicate_needs_a_read_token_from_the_header_or_the_query() {
    let server = ServerProcess::start(ServerOptions {
        auth_secret: Some("replication test secret".into()),
        ..ServerOptions::default()
    })
    .unwrap();
    let rt = runtime();
    let url = ws_url(&server);
    let read = server.mint_token(&["read"], "1h").unwrap();

    let mut replica = ReplicaClient::new(61, ReplicaOptions::default());
    let refused = rt.block_on(replica.connect(&url, None)).unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let forged = format!("{read}x");
    let refused = rt
        .block_on(replica.connect(&url, Some(&forged)))
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let refused = rt
        .block_on(replica.connect(&format!("{url}?token={forged}"), None))
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    rt.block_on(replica.connect(&url, Some(&read))).unwrap();
    rt.block_on(replica.run_until(SYNC_TIMEOUT, |r| r.replica().is_streaming()))
        .unwrap();
    let mut browser = ReplicaClient::new(62, ReplicaOptions::default());
    rt.block_on(browser.connect(&format!("{url}?token={read}"), None))
        .unwrap();
    rt.block_on(browser.run_until(SYNC_TIMEOUT, |r| r.replica().is_streaming()))
        .unwrap();
    // Without an upgrade the route answers a JSON error.
    server
        .client()
        .with_token(read)
        .get("/v1/replicate")
        .unwrap()
        .expect_error(426, "upgrade_required");
}

#[test]
fn a_stopping_leader_closes_replicas_with_shutting_down() {
    let mut server = ServerProcess::start(ServerOptions::default()).unwrap();
    let client = server.client();
    let rt = runtime();
    let mut replica = connected(&rt, &server, 71, ReplicaOptions::default());
    write_docs(&client, "a", 20);
    rt.block_on(replica.sync_to(Lsn(client.last_lsn()), SYNC_TIMEOUT))
        .unwrap();
    let task = rt.spawn(async move {
        let outcome = replica.run_until(SYNC_TIMEOUT, |_| false).await;
        (replica, outcome)
    });
    let started = Instant::now();
    let status = server.terminate(10_000).unwrap();
    assert!(status.success(), "{status}");
    // The replication socket does not hold up the HTTP drain.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (replica, outcome) = rt.block_on(task).unwrap();
    match outcome {
        Err(ReplicaClientError::Closed(error)) => {
            assert_eq!(cstore_core::ErrorCode::code(&error), "peer_error");
            assert!(error.to_string().contains("shutting_down"), "{error}");
        }
        other => panic!("expected a shutting_down close, got {other:?}: {replica:?}"),
    }
}

#[test]
fn a_subscribed_replica_holds_only_its_collections_and_verifies_the_chain() {
    let server = ServerProcess::start(ServerOptions {
        checkpoint_every: Some(100),
        extra_args: vec!["--replication-tail-mib".into(), "1".into()],
        ..ServerOptions::default()
    })
    .unwrap();
    let client = server.client();
    let rt = runtime();
    let options = ReplicaOptions {
        subscription: Some(vec!["items".into()]),
        ..ReplicaOptions::default()
    };
    // One replica streams from the start, one joins after compaction (filtered snapshot).
    let early = connected(&rt, &server, 81, options.clone());
    let target = Arc::new(AtomicU64::new(0));
    let task = follow(&rt, early, Arc::clone(&target));
    for i in 0..300 {
        let doc = json!({"_id": format!("o{i:04}"), "pad": "z".repeat(4_000)});
        client.insert("other", &doc).unwrap().expect_status(201);
        if i % 3 == 0 {
            client
                .insert("items", &json!({"_id": format!("i{i:04}"), "n": i}))
                .unwrap()
                .expect_status(201);
        }
    }
    let last = client.last_lsn();
    target.store(last, Ordering::Release);
    let early = joined(&rt, task);
    let mut late = connected(&rt, &server, 82, options);
    rt.block_on(late.sync_to(Lsn(last), SYNC_TIMEOUT)).unwrap();
    assert_eq!(late.stats().snapshots, 1, "{late:?}");

    let leader_items = client.all_docs("items");
    assert_eq!(leader_items.len(), 100);
    for replica in [&early, &late] {
        assert_eq!(replica.persisted().lsn, Lsn(last));
        assert_eq!(replica_docs(replica), leader_items);
        assert!(replica.state().collection("other").is_none());
    }
    assert_eq!(early.state_hash(), late.state_hash());
}

/// A replica that sends its hello in the same packet as the upgrade request, before the `101`
/// came back, is still heard: hyper read those bytes with the request, and the session (whose
/// socket is taken out of hyper, `server/src/replicate/upgrade.rs`) starts with them.
#[test]
fn a_hello_sent_with_the_upgrade_request_is_answered() {
    use std::io::{Read, Write};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};

    let server = ServerProcess::start(ServerOptions::default()).unwrap();
    write_docs(&server.client(), "a", 3);
    let hello = fresh_hello(cstore_core::replication::PROTOCOL_VERSION, 61);
    // A client's frame is masked (RFC 6455, section 5.3).
    let mut frame = WsFrame::message(hello, OpCode::Data(Data::Binary), true);
    frame.header_mut().mask = Some([0x5a, 0x17, 0xc3, 0x08]);
    let mut bytes = format!(
        "GET /v1/replicate HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr()
    )
    .into_bytes();
    frame.format(&mut bytes).unwrap();
    let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(SYNC_TIMEOUT)).unwrap();
    tcp.write_all(&bytes).unwrap();

    // The 101, then whatever came after it.
    let mut read = Vec::new();
    let head_end = loop {
        let mut buf = [0u8; 4096];
        let n = tcp.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&read)
        );
        read.extend_from_slice(&buf[..n]);
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&read[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    let mut socket =
        WebSocket::from_partially_read(tcp, read[head_end..].to_vec(), Role::Client, None);
    let welcome = loop {
        match socket.read().unwrap() {
            Message::Binary(bytes) => break Frame::decode(&bytes).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected the welcome, got {other:?}"),
        }
    };
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");
}
