//! One replication connection: a task that drives one [`LeaderSession`] over one WebSocket.
//!
//! ```text
//!            ┌──────────── select ────────────┐
//!  socket ──►│ binary message: handle_bytes   │
//!  watch  ──►│ committed moved: on_committed  ├──► commands ──► Send: feed the socket (bounded)
//!  timer  ──►│ tick due: on_tick              │               ReadEntries: tail, or "missing"
//!  stop   ──►│ shutdown / superseded: close   │               ReadSnapshot: source snapshot
//!            └────────────────────────────────┘               Close: error frame, close frame
//! ```
//!
//! The task sends only what the session emits, and the session emits at most its window of
//! unacknowledged entries and bytes, so the socket's buffer is bounded by the window (plus
//! heartbeats). A send that does not complete within the session's `replica_timeout_ms` (the
//! replica stopped reading) drops the connection. Everything else — a replica that stops
//! acknowledging, lags too long, never says hello — is closed by the session's own rules,
//! which the tick enforces. The timer is set to the session's `tick_due`, not a fixed period:
//! an idle streaming session wakes about once per heartbeat interval. Before each event the
//! session learns whether a write waits for replica acknowledgements (`Hub::acks_awaited`), so
//! it asks replicas that acknowledge on request with the entries it sends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};

use cstore_core::error::ErrorCode;
use cstore_core::replication::{Frame, FrameError, LeaderCommand, LeaderSession, ReplicationError};
use cstore_core::{Lsn, ReplicaId, TimestampMs};

use super::Replicator;
use super::hub::{ConnId, SessionState};
use super::tail::TailError;
use crate::edge::Limit;

/// WebSocket close codes (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_INTERNAL: u16 = 1011;

/// What the loop does after carrying out commands.
enum Next {
    Continue,
    Stop,
}

struct Connection<S> {
    replicator: Replicator,
    socket: WebSocketStream<S>,
    session: LeaderSession,
    conn: ConnId,
    epoch: Instant,
    send_timeout: Duration,
    /// What the hub last heard, so it is only told of changes.
    reported: Option<(Option<ReplicaId>, Lsn, SessionState)>,
}

/// Runs one connection to its end.
/// `allowed`: the collections the replica's token is limited to (its hello must keep to them).
pub(crate) async fn run<S>(
    replicator: Replicator,
    socket: WebSocketStream<S>,
    addr: Option<SocketAddr>,
    allowed: Option<Vec<String>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (conn, superseded) = replicator.hub().open(addr);
    let _live = replicator.live_guard(conn);
    let source = replicator.source();
    let mut committed = source.committed();
    let start = *committed.borrow_and_update();
    let config = replicator.session_config().clone();
    let send_timeout = Duration::from_millis(config.replica_timeout_ms);
    let epoch = Instant::now();
    let mut session = LeaderSession::new(
        config,
        source.node_id(),
        source.term(),
        start,
        TimestampMs(0),
    );
    if let Some(allowed) = allowed {
        session.limit_collections(allowed);
    }
    let mut stopping = replicator.stopping();
    let mut c = Connection {
        replicator,
        socket,
        session,
        conn,
        epoch,
        send_timeout,
        reported: None,
    };
    debug!(conn, ?addr, "replication connection opened");
    let tick = tokio::time::sleep_until(c.tick_at());
    tokio::pin!(tick);
    loop {
        // A fired timer is always set again; otherwise only when the due time moved earlier.
        let mut fired = false;
        let commands = tokio::select! {
            () = stop_requested(&mut stopping) => {
                c.close_with("shutting_down", "the node is stopping", CLOSE_GOING_AWAY).await;
                break;
            }
            () = superseded.notified() => {
                c.close_with("superseded", "a newer connection of this replica took over", CLOSE_GOING_AWAY).await;
                break;
            }
            message = c.socket.next() => match message {
                None => break,
                Some(Ok(Message::Binary(bytes))) => {
                    let now = c.now();
                    c.session().handle_bytes(now, &bytes)
                }
                Some(Ok(Message::Text(_))) => {
                    let error = ReplicationError::ProtocolViolation(
                        "a text message: replication frames are binary".into(),
                    );
                    c.close_with(error.code(), &error.to_string(), CLOSE_POLICY).await;
                    break;
                }
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Err(error)) => {
                    c.read_failed(error).await;
                    break;
                }
            },
            changed = committed.changed() => {
                if changed.is_err() {
                    c.close_with("shutting_down", "the node is stopping", CLOSE_GOING_AWAY).await;
                    break;
                }
                let position = *committed.borrow_and_update();
                let now = c.now();
                c.session().on_committed(now, position)
            }
            () = &mut tick => {
                fired = true;
                let now = c.now();
                c.session().on_tick(now)
            }
        };
        let next = c.execute(commands).await;
        c.report();
        if let Next::Stop = next {
            break;
        }
        let at = c.tick_at();
        if fired || at < tick.deadline() {
            tick.as_mut().reset(at);
        }
    }
    debug!(conn, "replication connection closed");
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// The session, told whether a write waits for replica acknowledgements: call before
    /// handing it an event (its commands may send entries, which then carry an ask).
    fn session(&mut self) -> &mut LeaderSession {
        let awaited = self.replicator.hub().acks_awaited();
        self.session.set_acks_awaited(awaited);
        &mut self.session
    }

    /// The session's clock: monotonic milliseconds since the connection opened.
    fn now(&self) -> TimestampMs {
        TimestampMs(self.epoch.elapsed().as_millis() as u64)
    }

    /// When the session's next tick is due (at least a millisecond ahead, so a session that
    /// asks for a tick at once cannot spin), or far ahead once it closed.
    fn tick_at(&self) -> tokio::time::Instant {
        let soonest = tokio::time::Instant::now() + Duration::from_millis(1);
        match self.session.tick_due() {
            Some(due) => (tokio::time::Instant::from_std(self.epoch)
                + Duration::from_millis(due.0))
            .max(soonest),
            None => soonest + Duration::from_secs(3600),
        }
    }

    /// Carries out the session's commands in order, feeding in the results of reads.
    async fn execute(&mut self, commands: Vec<LeaderCommand>) -> Next {
        let mut queue = VecDeque::from(commands);
        let mut fed = false;
        while let Some(command) = queue.pop_front() {
            match command {
                LeaderCommand::Send(frame) => {
                    if !self.feed(&frame).await {
                        return Next::Stop;
                    }
                    fed = true;
                }
                LeaderCommand::SendEntries(frame) => {
                    // Encoded once per range for all the sessions that send it.
                    let bytes = self.replicator.source().tail().frames().bytes(&frame);
                    if !self.feed_bytes(bytes).await {
                        return Next::Stop;
                    }
                    fed = true;
                }
                LeaderCommand::ReadEntries { from, to } => {
                    let now = self.now();
                    match self.replicator.source().tail().read(from, to) {
                        // Told after the read: a write among these entries raised its flag
                        // before it committed, so they go out with an ask.
                        Ok(entries) => queue.extend(self.session().on_entries(now, entries)),
                        Err(TailError::BelowTail { .. }) => {
                            queue.extend(self.session.on_entries_missing(now))
                        }
                        Err(error @ TailError::BeyondTail { .. }) => {
                            // The source published a position before its entries: a bug.
                            tracing::error!(%error, "replication source broke its contract");
                            self.close_with("internal", &error.to_string(), CLOSE_INTERNAL)
                                .await;
                            return Next::Stop;
                        }
                    }
                }
                LeaderCommand::ReadSnapshot { min_lsn } => {
                    // Flush what is queued first: the replica should not wait behind an encode.
                    if fed && !self.flush().await {
                        return Next::Stop;
                    }
                    fed = false;
                    let source = self.replicator.source();
                    match source.snapshot_at_least(min_lsn).await {
                        Ok(snapshot) => {
                            let now = self.now();
                            queue.extend(self.session.on_snapshot(now, snapshot));
                        }
                        Err(error) => {
                            self.close_with(error.code(), &error.to_string(), CLOSE_GOING_AWAY)
                                .await;
                            return Next::Stop;
                        }
                    }
                }
                LeaderCommand::Close(error) => {
                    // The session already queued its Error frame.
                    log_close(&error, self.session.replica_id());
                    if matches!(
                        error,
                        ReplicationError::HelloTimeout { .. }
                            | ReplicationError::ReplicaTimeout { .. }
                            | ReplicationError::AckTimeout { .. }
                    ) {
                        Limit::ReplicaTimeout.tripped();
                    }
                    let _ = self.flush().await;
                    let code = match &error {
                        ReplicationError::Frame(FrameError::TooLarge { .. }) => CLOSE_TOO_BIG,
                        _ => CLOSE_POLICY,
                    };
                    self.send_close(code, error.code()).await;
                    return Next::Stop;
                }
            }
        }
        if fed && !self.flush().await {
            return Next::Stop;
        }
        Next::Continue
    }

    /// Queues one frame on the socket; false when the socket failed or stayed blocked.
    async fn feed(&mut self, frame: &Frame) -> bool {
        self.feed_bytes(frame.encode().into()).await
    }

    /// Queues one encoded frame on the socket; false when the socket failed or stayed blocked.
    async fn feed_bytes(&mut self, bytes: Bytes) -> bool {
        metrics::counter!("cstore_replication_bytes_sent_total").increment(bytes.len() as u64);
        let sent =
            tokio::time::timeout(self.send_timeout, self.socket.feed(Message::Binary(bytes))).await;
        self.sent_ok(sent)
    }

    async fn flush(&mut self) -> bool {
        let flushed = tokio::time::timeout(self.send_timeout, self.socket.flush()).await;
        self.sent_ok(flushed)
    }

    fn sent_ok(
        &self,
        result: Result<Result<(), tungstenite::Error>, tokio::time::error::Elapsed>,
    ) -> bool {
        match result {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                debug!(conn = self.conn, %error, "replication socket failed");
                false
            }
            Err(_) => {
                Limit::ReplicaTimeout.tripped();
                warn!(
                    conn = self.conn,
                    replica = ?self.session.replica_id(),
                    timeout_ms = self.send_timeout.as_millis() as u64,
                    "replica stopped reading; dropping the connection"
                );
                false
            }
        }
    }

    /// Ends the connection for a reason outside the session: an error frame, then a close.
    async fn close_with(&mut self, code: &str, message: &str, close_code: u16) {
        info!(
            conn = self.conn,
            replica = ?self.session.replica_id(),
            code,
            message,
            "closing replication connection"
        );
        if self.feed(&Frame::error(code, message)).await {
            let _ = self.flush().await;
        }
        self.send_close(close_code, code).await;
    }

    async fn send_close(&mut self, code: u16, reason: &str) {
        let close = Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(self.send_timeout, self.socket.send(close)).await;
    }

    /// A read from the socket failed: too large a message, or a broken connection.
    async fn read_failed(&mut self, error: tungstenite::Error) {
        match error {
            tungstenite::Error::Capacity(capacity) => {
                Limit::FrameSize.tripped();
                let code = FrameError::TooLarge { len: 0, max: 0 }.code();
                self.close_with(code, &capacity.to_string(), CLOSE_TOO_BIG)
                    .await;
            }
            error => debug!(conn = self.conn, %error, "replication socket read failed"),
        }
    }

    /// Tells the hub what changed: identity, durable LSN, state.
    fn report(&mut self) {
        let state = if self.session.replica_id().is_none() {
            SessionState::AwaitingHello
        } else if self.session.is_streaming() {
            SessionState::Streaming
        } else {
            SessionState::CatchingUp
        };
        let now = (self.session.replica_id(), self.session.durable_lsn(), state);
        if self.reported != Some(now) {
            self.reported = Some(now);
            let version = self.session.protocol_version();
            self.replicator
                .hub()
                .update(self.conn, now.0, version, now.1, now.2);
        }
    }
}

/// Completes once the node is stopping (or its replicator is gone).
async fn stop_requested(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

fn log_close(error: &ReplicationError, replica: Option<ReplicaId>) {
    match error {
        ReplicationError::Remote { .. } => debug!(?replica, %error, "replica closed the session"),
        _ => info!(?replica, code = error.code(), %error, "replication session closed"),
    }
}
