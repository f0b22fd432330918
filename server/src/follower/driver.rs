//! The replication task: connects to the leader, feeds core's `Replica`, carries out its
//! commands, and reconnects with backoff.
//!
//! ```text
//!  loop: connect ──ok──► session: hello ─► { frame | tick | stop } ─► commands ─► execute
//!          │                  │ ends with a FollowError (or stop)
//!          ▼                  ▼
//!        remedy: reconnect ─► backoff ─► loop   rebootstrap ─► discard local copy ─► loop
//!                stop ─► status "stopped", wait for shutdown
//! ```
//!
//! Group commit on the replica side: after one frame, the frames that already arrived are
//! taken too (up to `persist_batch_entries_max` entries), so their entries share one fsync
//! and one acknowledgement.
//!
//! Reading and decoding overlap persisting: a reader task on the runtime's worker thread
//! takes the socket's messages and decodes their frames while this thread appends, fsyncs and
//! applies the batch before; the session gets them decoded through a bounded channel
//! ([`READ_AHEAD_MESSAGES`]; the leader's window bounds the bytes in it). Core's `Replica`
//! still checks every entry (hash, link, term) here, in order, before it asks for a persist.
//!
//! ```text
//!  worker thread: socket ─► decode ─► channel (bounded) ─┐
//!  this thread:   Replica::handle_decoded ◄──────────────┘ ─► Persist ─► append+fsync, apply ─► Ack
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{info, warn};

use cstore_core::error::ErrorCode;
use cstore_core::log::LogEntry;
use cstore_core::replication::{
    Backoff, FRAME_BYTES_MAX, Frame, FrameError, Remedy, Replica, ReplicaCommand, ReplicaConfig,
    ReplicationError,
};
use cstore_core::storage::StorageError;
use cstore_core::{LogPosition, Lsn};

use super::local::{FollowerCopy, LocalError};
use super::{Connection, FollowError, FollowerConfig, LastError, leader_http_base};
use crate::clock::now_ms;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames taken in one gathering step at most, whatever their size.
const FRAMES_PER_BATCH_MAX: usize = 256;

/// Messages the reader task decodes ahead of the session at most; at the bound it stops
/// reading the socket (and TCP pushes back on the leader). Each frame is at most the leader's
/// `frame_bytes_max`, and the leader's window bounds what is in flight anyway.
const READ_AHEAD_MESSAGES: usize = 256;

/// A message from the leader as the reader task hands it over.
enum Incoming {
    /// A binary message: its frame decoded (or why it is not one), and its size.
    Frame {
        decoded: Result<Frame, FrameError>,
        bytes: usize,
    },
    /// Any other message, a read error, or the end of the stream (`None`).
    Other(Option<Result<Message, tungstenite::Error>>),
}

/// Reads the socket and decodes each binary message, until the stream ends, fails or closes,
/// or the session stops listening.
async fn read_frames(mut stream: SplitStream<Socket>, to_session: mpsc::Sender<Incoming>) {
    loop {
        let message = stream.next().await;
        let last = !matches!(message, Some(Ok(ref m)) if !m.is_close());
        let incoming = match message {
            Some(Ok(Message::Binary(bytes))) => Incoming::Frame {
                decoded: Frame::decode(&bytes),
                bytes: bytes.len(),
            },
            other => Incoming::Other(other),
        };
        if to_session.send(incoming).await.is_err() || last {
            return;
        }
    }
}

/// Aborts the reader task when the session ends, which drops its half of the socket.
struct Reader(tokio::task::JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a session ended.
enum SessionEnd {
    /// The follower is shutting down.
    Stop,
    /// The connection ended; `streamed` when it got as far as streaming (backoff resets).
    Ended { error: FollowError, streamed: bool },
}

/// Runs until the follower is shut down; closes the store (its lock) when it returns.
pub(super) async fn run(mut local: FollowerCopy) {
    let shared = std::sync::Arc::clone(&local.shared);
    let config = shared.config.clone();
    let mut stop = shared.stop.subscribe();
    let replica_config = ReplicaConfig::new(shared.node_id);
    let mut replica = Replica::new(replica_config.clone(), local.position(), local.term());
    let mut backoff = Backoff::new(config.backoff_initial_ms, config.backoff_max_ms);
    // The jitter's randomness, seeded by the node id (so a test sees the same delays every run).
    let mut jitter = StdRng::seed_from_u64(shared.node_id.0);
    let mut connections = 0u64;
    let mut members = Members::new(&config, shared.http.clone());
    loop {
        if *stop.borrow() {
            break;
        }
        set_connection(&local, Connection::Connecting);
        let connected = tokio::select! {
            connected = members.connect(&mut local, &config) => connected,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let end = match connected {
            Ok(socket) => {
                connections += 1;
                if connections > 1 {
                    local.shared.progress().reconnects += 1;
                    metrics::counter!("cstore_follower_reconnects_total").increment(1);
                }
                info!(url = %members.current_url(), "connected");
                session(&mut local, &mut replica, socket, &mut stop, &config).await
            }
            Err(error) => SessionEnd::Ended {
                error,
                streamed: false,
            },
        };
        let (error, streamed) = match end {
            SessionEnd::Stop => break,
            SessionEnd::Ended { error, streamed } => (error, streamed),
        };
        warn!(code = error.code(), %error, "replication connection ended");
        local.shared.progress().last_error = Some(LastError {
            code: error.code().to_string(),
            message: error.to_string(),
        });
        if streamed {
            backoff.reset();
        }
        // The next attempt starts with the next member (the one that failed may be down).
        members.advance();
        match error.remedy() {
            // The disk was full: the entries handed to the store are not there, so the next
            // hello must start from what the store holds, not from what was received.
            Remedy::Reconnect if matches!(error, FollowError::Storage(StorageError::Full(_))) => {
                metrics::counter!("cstore_storage_errors_total", "kind" => "disk_full")
                    .increment(1);
                replica = Replica::new(replica_config.clone(), local.position(), local.term());
            }
            Remedy::Reconnect => {}
            Remedy::Rebootstrap => {
                warn!("discarding the local copy: the next connection starts from a snapshot");
                if let Err(e) = local.discard().await {
                    fail(&local, FollowError::Storage(e));
                    break;
                }
                replica = Replica::new(replica_config.clone(), LogPosition::START, local.term());
            }
            Remedy::Stop => {
                fail(&local, error);
                break;
            }
        }
        set_connection(&local, Connection::Waiting);
        let delay = Duration::from_millis(backoff.next_delay_ms(jitter.random()));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    if local.shared.progress().connection != Connection::Stopped {
        set_connection(&local, Connection::Stopped);
    }
    let shared = std::sync::Arc::clone(&local.shared);
    // Close the store (and release the directory lock) before saying we stopped.
    drop(local);
    info!("replication stopped");
    shared.stopped.send_replace(true);
}

/// Replication stops for good (until a restart); reads go on.
fn fail(local: &FollowerCopy, error: FollowError) {
    warn!(code = error.code(), %error, "replication stopped; reads continue from the local copy");
    let mut progress = local.shared.progress();
    progress.connection = Connection::Stopped;
    progress.last_error = Some(LastError {
        code: error.code().to_string(),
        message: error.to_string(),
    });
}

fn set_connection(local: &FollowerCopy, connection: Connection) {
    local.shared.progress().connection = connection;
}

/// The `--follow` URLs and which one is followed now.
///
/// ```text
///  connect: for each member in turn, from the current one:
///    GET its /v1/status ─► another cluster than the one this copy follows? skip (wrong_cluster)
///                       └► names a leader among our URLs? connect to the leader, else to it
///    the first WebSocket that opens wins; the cluster it belongs to is remembered (durably)
/// ```
struct Members {
    urls: Vec<String>,
    current: usize,
    http: reqwest::Client,
    /// The cluster this copy follows, once read from its side record (or just remembered).
    followed: Option<Option<String>>,
}

/// What a member's `/v1/status` says that matters here.
struct MemberStatus {
    cluster_id: Option<String>,
    /// The leader's HTTP base, when the member knows one.
    leader: Option<String>,
}

impl Members {
    fn new(config: &FollowerConfig, http: reqwest::Client) -> Members {
        Members {
            urls: config.urls.clone(),
            current: 0,
            http,
            followed: None,
        }
    }

    fn current_url(&self) -> &str {
        &self.urls[self.current]
    }

    fn advance(&mut self) {
        self.current = (self.current + 1) % self.urls.len();
    }

    /// Connects to a member (see the type's docs); the error of the last one tried when none
    /// can be followed.
    async fn connect(
        &mut self,
        local: &mut FollowerCopy,
        config: &FollowerConfig,
    ) -> Result<Socket, FollowError> {
        let expected = match &self.followed {
            Some(followed) => followed.clone(),
            None => local.cluster_id()?,
        };
        self.followed = Some(expected.clone());
        let mut last_error = None;
        // A member that answers but names no leader (it just restarted, or an election is on)
        // is followed only when no member names one: it may lag the cluster.
        let mut leaderless = None;
        for step in 0..self.urls.len() {
            let tried = (self.current + step) % self.urls.len();
            let url = self.urls[tried].clone();
            let status = self.probe(&url, config).await;
            let cluster_id = status.as_ref().and_then(|s| s.cluster_id.clone());
            if let Some(expected) = &expected {
                // A copy of one cluster never follows another: its log would look diverged and
                // be replaced.
                if cluster_id.as_ref() != Some(expected) {
                    last_error = Some(match status {
                        Some(_) => FollowError::WrongCluster {
                            url,
                            expected: expected.clone(),
                            found: cluster_id,
                        },
                        None => FollowError::Connect {
                            url,
                            reason: "its /v1/status did not answer (needed to check its cluster)"
                                .into(),
                        },
                    });
                    continue;
                }
            }
            // Prefer the leader it names: it learns of commits first.
            let leader = status
                .as_ref()
                .and_then(|s| s.leader.as_deref())
                .and_then(|leader| {
                    self.urls
                        .iter()
                        .position(|u| leader_http_base(u).is_ok_and(|base| base == leader))
                });
            let Some(chosen) = leader else {
                if status.is_some() {
                    leaderless.get_or_insert((tried, cluster_id));
                    continue;
                }
                // Not answering its status (or not a cstore server): the WebSocket says why.
                match self.open(local, &expected, tried, cluster_id, config).await {
                    Ok(socket) => return Ok(socket),
                    Err(error) => last_error = Some(error),
                }
                continue;
            };
            match self
                .open(local, &expected, chosen, cluster_id, config)
                .await
            {
                Ok(socket) => return Ok(socket),
                Err(error) => last_error = Some(error),
            }
        }
        if let Some((index, cluster_id)) = leaderless {
            return self.open(local, &expected, index, cluster_id, config).await;
        }
        Err(last_error.expect("at least one URL"))
    }

    /// Opens the WebSocket to member `index` and follows it; remembers the cluster the first
    /// time one is followed.
    async fn open(
        &mut self,
        local: &mut FollowerCopy,
        expected: &Option<String>,
        index: usize,
        cluster_id: Option<String>,
        config: &FollowerConfig,
    ) -> Result<Socket, FollowError> {
        let socket = connect(&self.urls[index], config).await?;
        if let (None, Some(cluster_id)) = (expected, cluster_id) {
            local.remember_cluster_id(&cluster_id)?;
            self.followed = Some(Some(cluster_id));
        }
        self.follow(local, index);
        Ok(socket)
    }

    /// Makes `index` the member followed (writes are forwarded there too).
    fn follow(&mut self, local: &FollowerCopy, index: usize) {
        let url = self.urls[index].clone();
        if let Ok(base) = leader_http_base(&url) {
            *local.shared.leader_http.lock().expect("poisoned") = base;
        }
        let mut progress = local.shared.progress();
        if progress.url != url {
            progress.member_switches += 1;
            metrics::counter!("cstore_follower_member_switches_total").increment(1);
            info!(%url, "following another member");
        }
        progress.url = url;
        self.current = index;
    }

    /// A member's cluster and leader, from its `/v1/status`; `None` when it does not answer
    /// with one (down, or not a cstore server: the WebSocket then says why).
    async fn probe(&self, url: &str, config: &FollowerConfig) -> Option<MemberStatus> {
        let base = leader_http_base(url).ok()?;
        let mut request = self
            .http
            .get(format!("{base}/v1/status"))
            .timeout(Duration::from_millis(config.connect_timeout_ms.min(2_000)));
        if let Some(token) = &config.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let status: serde_json::Value = response.json().await.ok()?;
        let text = |key: &str| status.get(key).and_then(|v| v.as_str()).map(String::from);
        Some(MemberStatus {
            cluster_id: text("cluster_id"),
            // A cluster member names its leader's HTTP base; a single leader is one itself.
            leader: if status.get("role").and_then(|v| v.as_str()) == Some("leader") {
                Some(base)
            } else if status.get("cluster_id").is_some() {
                text("leader_url")
            } else {
                None
            },
        })
    }
}

/// Opens the WebSocket to `url`, with the token as a Bearer header.
async fn connect(url: &str, config: &FollowerConfig) -> Result<Socket, FollowError> {
    let url = &url.to_string();
    let connect_error = |reason: String| FollowError::Connect {
        url: url.clone(),
        reason,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| connect_error(e.to_string()))?;
    if let Some(token) = &config.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| connect_error("the token is not a valid header value".into()))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(FRAME_BYTES_MAX))
        .max_frame_size(Some(FRAME_BYTES_MAX));
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    // wss:// trusts the public web roots and --tls-ca.
    let connector = tokio_tungstenite::Connector::Rustls(crate::edge::tls::client_config());
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config),
        true,
        Some(connector),
    );
    match tokio::time::timeout(timeout, connecting).await {
        Err(_elapsed) => Err(connect_error(format!(
            "no handshake within {} ms",
            config.connect_timeout_ms
        ))),
        Ok(Err(tungstenite::Error::Http(response))) => Err(FollowError::Handshake {
            url: url.clone(),
            status: response.status().as_u16(),
        }),
        Ok(Err(e)) => Err(connect_error(e.to_string())),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

/// One connection: hello, then frames, ticks and commands until it ends.
async fn session(
    local: &mut FollowerCopy,
    replica: &mut Replica,
    socket: Socket,
    stop: &mut watch::Receiver<bool>,
    config: &FollowerConfig,
) -> SessionEnd {
    let (mut sink, stream) = socket.split();
    let (to_session, mut incoming) = mpsc::channel(READ_AHEAD_MESSAGES);
    let _reader = Reader(tokio::spawn(read_frames(stream, to_session)));
    let mut streamed = false;
    let ended = |error: FollowError, streamed: bool| SessionEnd::Ended { error, streamed };
    set_connection(local, Connection::Connected);
    let hello = replica.hello(now_ms());
    if let Err(error) = send(&mut sink, hello).await {
        replica.on_disconnected();
        return ended(error, false);
    }
    let mut tick = tokio::time::interval(Duration::from_millis(config.tick_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut lost = None;
        let commands = tokio::select! {
            message = incoming.recv() => {
                let mut commands = Vec::new();
                let mut next = Some(message);
                let mut frames = 0;
                while let Some(message) = next.take() {
                    frames += 1;
                    match on_message(local, replica, message) {
                        Ok(more) => commands.extend(more),
                        Err(error) => {
                            lost = Some(error);
                            break;
                        }
                    }
                    let gathered: usize = commands
                        .iter()
                        .map(|c| match c {
                            ReplicaCommand::Persist { entries } => entries.len(),
                            _ => 0,
                        })
                        .sum();
                    let closing = commands.iter().any(|c| matches!(c, ReplicaCommand::Close(_)));
                    if !closing
                        && frames < FRAMES_PER_BATCH_MAX
                        && gathered < config.persist_batch_entries_max
                    {
                        next = incoming.try_recv().ok().map(Some);
                    }
                }
                commands
            }
            _ = tick.tick() => replica.on_tick(now_ms()),
            _ = stop.wait_for(|stop| *stop) => {
                replica.on_disconnected();
                let _ = sink.send(Message::Close(None)).await;
                return SessionEnd::Stop;
            }
        };
        let executed = execute(local, replica, &mut sink, commands).await;
        streamed |= replica.is_streaming();
        publish(local, replica);
        if let Err(error) = executed {
            return ended(error, streamed);
        }
        if let Some(error) = lost {
            replica.on_disconnected();
            return ended(error, streamed);
        }
    }
}

/// Turns one WebSocket message (its frame decoded by the reader) into the replica's commands;
/// `None` when the reader ended without saying why.
fn on_message(
    local: &FollowerCopy,
    replica: &mut Replica,
    message: Option<Incoming>,
) -> Result<Vec<ReplicaCommand>, FollowError> {
    let message = match message {
        None => {
            return Err(FollowError::ConnectionLost(
                "the connection's reader stopped".into(),
            ));
        }
        Some(Incoming::Frame { decoded, bytes }) => {
            local.shared.progress().bytes_received += bytes as u64;
            metrics::counter!("cstore_follower_bytes_received_total").increment(bytes as u64);
            return Ok(replica.handle_decoded(now_ms(), decoded));
        }
        Some(Incoming::Other(message)) => message,
    };
    match message {
        None => Err(FollowError::ConnectionLost(
            "the leader closed the stream".into(),
        )),
        Some(Err(e)) => Err(FollowError::ConnectionLost(e.to_string())),
        Some(Ok(Message::Binary(_))) => unreachable!("the reader decodes binary messages"),
        Some(Ok(Message::Text(_))) => {
            // The contract: every frame is binary; a text message is a protocol error.
            let error = ReplicationError::ProtocolViolation("a text message".into());
            replica.on_disconnected();
            Ok(vec![
                ReplicaCommand::Send(Frame::error(error.code(), &error.to_string())),
                ReplicaCommand::Close(error),
            ])
        }
        Some(Ok(Message::Close(frame))) => Err(FollowError::ConnectionLost(match frame {
            Some(frame) => format!("closed by the leader: {} {}", frame.code, frame.reason),
            None => "closed by the leader".into(),
        })),
        // Pings are answered by tungstenite itself.
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(Vec::new()),
    }
}

/// Carries out the replica's commands in order. Consecutive `Persist`s share one append (one
/// fsync). Returns the error that ends the session, if one does.
async fn execute<S>(
    local: &mut FollowerCopy,
    replica: &mut Replica,
    sink: &mut S,
    commands: Vec<ReplicaCommand>,
) -> Result<(), FollowError>
where
    S: SinkExt<Message, Error = tungstenite::Error> + Unpin,
{
    let mut queue = VecDeque::from(commands);
    let mut pending: Vec<LogEntry> = Vec::new();
    let mut ended: Option<FollowError> = None;
    loop {
        let Some(command) = queue.pop_front() else {
            if pending.is_empty() {
                break;
            }
            queue.extend(flush(local, replica, &mut pending).await?);
            continue;
        };
        match command {
            ReplicaCommand::Persist { entries } => pending.extend(entries),
            ReplicaCommand::Send(frame) => {
                if ended.is_none()
                    && let Err(error) = send(sink, frame).await
                {
                    ended = Some(error);
                }
            }
            ReplicaCommand::SaveTerm(term) => local.save_term(term).await?,
            ReplicaCommand::InstallSnapshot(snapshot) => {
                if !pending.is_empty() {
                    queue.extend(flush(local, replica, &mut pending).await?);
                }
                let position = snapshot.position;
                match local.install(&snapshot).await {
                    Ok(()) => {
                        info!(lsn = %position.lsn, bytes = snapshot.data.len(), "snapshot installed");
                        queue.extend(replica.on_snapshot_installed(now_ms(), position));
                    }
                    Err(LocalError::Storage(e)) => return Err(e.into()),
                    Err(LocalError::Apply { lsn, reason }) => {
                        queue.extend(replica.on_apply_failed(lsn, &reason));
                    }
                }
            }
            ReplicaCommand::Close(error) => {
                let _ = sink.send(Message::Close(None)).await;
                ended.get_or_insert(FollowError::Replication(error));
            }
        }
    }
    match ended {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Appends and applies the pending entries; the replica's answer (an ack) comes back.
async fn flush(
    local: &mut FollowerCopy,
    replica: &mut Replica,
    pending: &mut Vec<LogEntry>,
) -> Result<Vec<ReplicaCommand>, FollowError> {
    let last = pending.last().map_or(Lsn::ZERO, |e| e.lsn);
    let result = local.persist(std::mem::take(pending)).await;
    match result {
        Ok(()) => Ok(replica.on_persisted(now_ms(), last)),
        Err(LocalError::Storage(e)) => Err(e.into()),
        Err(LocalError::Apply { lsn, reason }) => Ok(replica.on_apply_failed(lsn, &reason)),
    }
}

async fn send<S>(sink: &mut S, frame: Frame) -> Result<(), FollowError>
where
    S: SinkExt<Message, Error = tungstenite::Error> + Unpin,
{
    sink.send(Message::Binary(frame.encode().into()))
        .await
        .map_err(|e| FollowError::ConnectionLost(e.to_string()))
}

/// Copies the replica's view into the status and the metrics.
fn publish(local: &FollowerCopy, replica: &Replica) {
    let lag = replica.lag();
    let mut progress = local.shared.progress();
    progress.term = replica.term();
    progress.leader_id = replica.leader().map(|(id, _)| id);
    progress.leader_committed_lsn = replica.leader_committed().lsn;
    progress.lag = lag;
    progress.protocol_version = replica.protocol_version();
    progress.connection = if replica.is_streaming() {
        Connection::Streaming
    } else if replica.is_connected() {
        Connection::Connected
    } else {
        progress.connection
    };
    drop(progress);
    metrics::gauge!("cstore_follower_lag_entries").set(lag as f64);
}
