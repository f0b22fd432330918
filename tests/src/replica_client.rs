//! An in-process replica over a real WebSocket, for tests and benchmarks.
//!
//! It drives core's [`Replica`] exactly as a production replica driver would: the hello on
//! connect, every binary message through `handle_bytes`, `Persist` into a [`MemoryStore`] and a
//! [`State`], `InstallSnapshot` into both, acknowledgements after the "durable" write. So a
//! test can run one leader process and several replicas, compare state hashes, count what was
//! received, and cut connections at will; and the fan-out benchmark can run a thousand of them
//! in one process (with the store and state switched off, keeping only the protocol).
//!
//! ```text
//!  connect(url) ─► ws handshake ─► Send(Hello)
//!  step(): socket message ─► handle_bytes ─► Persist: store.append, state.apply ─► on_persisted
//!          tick (100 ms)  ─► on_tick            InstallSnapshot: install ─► on_snapshot_installed
//!                                               Send(frame) ─► socket; Close(e) ─► Closed(e)
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use cstore_core::replication::{
    FRAME_BYTES_MAX, Frame, Replica, ReplicaCommand, ReplicaConfig, ReplicationError,
};
use cstore_core::state::State;
use cstore_core::storage::{LogStore, MemoryStore};
use cstore_core::{Hash, LogEntry, LogPosition, Lsn, ReplicaId, Term, TimestampMs};

/// The client's socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Initial read buffer of the socket.
const READ_BUFFER_BYTES: usize = 8 << 10;

/// How often the replica's clock ticks (its only timed duty is noticing a silent leader,
/// after `leader_timeout_ms`, 5 s by default). One interval per connection, not a timer per
/// message: ten thousand replicas in a few processes would otherwise spend their CPU on
/// timer registrations.
const TICK: Duration = Duration::from_millis(250);

/// What a replica client keeps.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// Append received entries to a [`MemoryStore`].
    pub keep_log: bool,
    /// Apply received entries to a [`State`].
    pub keep_state: bool,
    /// Follow only these collections (`None`: all).
    pub subscription: Option<Vec<String>>,
}

impl Default for ReplicaOptions {
    fn default() -> ReplicaOptions {
        ReplicaOptions {
            keep_log: true,
            keep_state: true,
            subscription: None,
        }
    }
}

/// Why driving the replica stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaClientError {
    /// The WebSocket could not be opened.
    #[error("connecting to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The socket failed or closed.
    #[error("socket: {0}")]
    Socket(String),
    /// The session closed with a protocol error (either side).
    #[error("session closed: {0}")]
    Closed(ReplicationError),
    /// The store or state refused something the replica verified.
    #[error("local store: {0}")]
    Store(String),
    /// A wait passed its bound.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Not connected.
    #[error("not connected")]
    NotConnected,
}

/// What the client received, for assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Entries handed to `Persist` (each entry once: the replica drops duplicates).
    pub entries: u64,
    /// Entries that arrived in `Entries` frames, duplicates included: what the leader sent.
    pub wire_entries: u64,
    /// Snapshots installed.
    pub snapshots: u64,
    /// Binary messages received.
    pub messages: u64,
    /// Bytes received in binary messages.
    pub bytes: u64,
    /// `Ack` frames sent (the replica acknowledges when the leader asks).
    pub acks_sent: u64,
}

/// Called with each entry as it is persisted, and the instant it arrived.
pub type EntryObserver = Box<dyn FnMut(&LogEntry, Instant) + Send>;

/// One replica over one (re)connectable WebSocket.
pub struct ReplicaClient {
    replica: Replica,
    options: ReplicaOptions,
    store: MemoryStore,
    state: State,
    /// The last position persisted (what the store and state hold).
    persisted: LogPosition,
    socket: Option<Socket>,
    /// The clock's ticks while connected.
    tick: Option<tokio::time::Interval>,
    epoch: Instant,
    stats: ReplicaStats,
    observer: Option<EntryObserver>,
}

impl std::fmt::Debug for ReplicaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaClient")
            .field("replica", &self.replica)
            .field("stats", &self.stats)
            .field("connected", &self.socket.is_some())
            .finish()
    }
}

impl ReplicaClient {
    /// An empty replica with this identity.
    pub fn new(id: u64, options: ReplicaOptions) -> ReplicaClient {
        let mut config = ReplicaConfig::new(ReplicaId(id));
        config.subscription = options.subscription.clone();
        ReplicaClient {
            replica: Replica::new(config, LogPosition::START, Term(0)),
            options,
            store: MemoryStore::new(),
            state: State::new(),
            persisted: LogPosition::START,
            socket: None,
            tick: None,
            epoch: Instant::now(),
            stats: ReplicaStats::default(),
            observer: None,
        }
    }

    /// Calls `observer` with every entry persisted from now on.
    pub fn observe(&mut self, observer: EntryObserver) {
        self.observer = Some(observer);
    }

    fn now(&self) -> TimestampMs {
        TimestampMs(self.epoch.elapsed().as_millis() as u64)
    }

    /// Opens the WebSocket at `url` (`ws://host:port/v1/replicate`), with a bearer token if
    /// given, and sends the hello.
    pub async fn connect(
        &mut self,
        url: &str,
        token: Option<&str>,
    ) -> Result<(), ReplicaClientError> {
        let connect_error = |reason: String| ReplicaClientError::Connect {
            url: url.to_string(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| connect_error(e.to_string()))?;
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| connect_error(e.to_string()))?;
            request.headers_mut().insert("authorization", value);
        }
        // tungstenite zeroes its whole read buffer on every read: keep it small (it still grows
        // for large messages), so a thousand replicas in one process stay cheap.
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(FRAME_BYTES_MAX))
            .max_frame_size(Some(FRAME_BYTES_MAX));
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        self.socket = Some(socket);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.tick = Some(tick);
        let hello = self.replica.hello(self.now());
        self.execute(vec![ReplicaCommand::Send(hello)]).await
    }

    /// Drops the connection without a goodbye, as a crash or a cut cable would.
    pub fn disconnect(&mut self) {
        self.socket = None;
        self.tick = None;
        self.replica.on_disconnected();
    }

    /// True while a socket is open.
    pub fn is_connected(&self) -> bool {
        self.socket.is_some()
    }

    /// Handles one message from the leader, or one tick of the clock.
    pub async fn step(&mut self) -> Result<(), ReplicaClientError> {
        let (Some(socket), Some(tick)) = (self.socket.as_mut(), self.tick.as_mut()) else {
            return Err(ReplicaClientError::NotConnected);
        };
        let received = tokio::select! {
            message = socket.next() => Some(message),
            _ = tick.tick() => None,
        };
        let message = match received {
            None => {
                let commands = self.replica.on_tick(self.now());
                return self.execute(commands).await;
            }
            Some(None) => return Err(self.lost("the leader closed the socket".into())),
            Some(Some(Err(e))) => return Err(self.lost(e.to_string())),
            Some(Some(Ok(message))) => message,
        };
        let arrived = Instant::now();
        match message {
            Message::Binary(bytes) => {
                self.stats.messages += 1;
                self.stats.bytes += bytes.len() as u64;
                let now = self.now();
                let commands = match Frame::decode(&bytes) {
                    Ok(frame) => {
                        if let Frame::Entries { entries } = &frame {
                            self.stats.wire_entries += entries.len() as u64;
                        }
                        self.replica.handle_frame(now, frame)
                    }
                    // The replica reports the decoding error and closes.
                    Err(_) => self.replica.handle_bytes(now, &bytes),
                };
                self.execute_at(commands, arrived).await
            }
            Message::Close(frame) => Err(self.lost(format!("close frame {frame:?}"))),
            Message::Text(_) => Err(self.lost("a text message from the leader".into())),
            _ => Ok(()),
        }
    }

    fn lost(&mut self, why: String) -> ReplicaClientError {
        self.disconnect();
        ReplicaClientError::Socket(why)
    }

    /// Steps until `done` holds, failing after `timeout`.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&ReplicaClient) -> bool,
    ) -> Result<(), ReplicaClientError> {
        let started = Instant::now();
        while !done(self) {
            if started.elapsed() > timeout {
                return Err(ReplicaClientError::Timeout(timeout));
            }
            self.step().await?;
        }
        Ok(())
    }

    /// Steps until everything up to `lsn` is persisted and acknowledged.
    pub async fn sync_to(&mut self, lsn: Lsn, timeout: Duration) -> Result<(), ReplicaClientError> {
        self.run_until(timeout, |r| r.replica.durable_lsn() >= lsn)
            .await
    }

    async fn execute(&mut self, commands: Vec<ReplicaCommand>) -> Result<(), ReplicaClientError> {
        self.execute_at(commands, Instant::now()).await
    }

    async fn execute_at(
        &mut self,
        commands: Vec<ReplicaCommand>,
        arrived: Instant,
    ) -> Result<(), ReplicaClientError> {
        let mut queue = VecDeque::from(commands);
        while let Some(command) = queue.pop_front() {
            match command {
                ReplicaCommand::Send(frame) => {
                    let socket = self
                        .socket
                        .as_mut()
                        .ok_or(ReplicaClientError::NotConnected)?;
                    if let Err(e) = socket.send(Message::Binary(frame.encode().into())).await {
                        return Err(self.lost(e.to_string()));
                    }
                    if let Frame::Ack { .. } = frame {
                        self.stats.acks_sent += 1;
                    }
                }
                ReplicaCommand::Persist { entries } => {
                    let last = entries.last().expect("a non-empty batch").position();
                    self.persist(&entries, arrived).await?;
                    queue.extend(self.replica.on_persisted(self.now(), last.lsn));
                }
                ReplicaCommand::InstallSnapshot(snapshot) => {
                    if self.options.keep_log {
                        self.store
                            .install_snapshot(&snapshot)
                            .await
                            .map_err(|e| ReplicaClientError::Store(e.to_string()))?;
                    }
                    if self.options.keep_state {
                        self.state = State::from_snapshot(&snapshot)
                            .map_err(|e| ReplicaClientError::Store(e.to_string()))?;
                    }
                    self.persisted = snapshot.position;
                    self.stats.snapshots += 1;
                    queue.extend(
                        self.replica
                            .on_snapshot_installed(self.now(), snapshot.position),
                    );
                }
                ReplicaCommand::SaveTerm(_) => {}
                ReplicaCommand::Close(error) => {
                    if let Some(mut socket) = self.socket.take() {
                        let _ = socket.close(None).await;
                    }
                    self.tick = None;
                    self.replica.on_disconnected();
                    return Err(ReplicaClientError::Closed(error));
                }
            }
        }
        Ok(())
    }

    async fn persist(
        &mut self,
        entries: &[LogEntry],
        arrived: Instant,
    ) -> Result<(), ReplicaClientError> {
        if self.options.keep_log {
            self.store
                .append(entries)
                .await
                .map_err(|e| ReplicaClientError::Store(e.to_string()))?;
        }
        for entry in entries {
            if self.options.keep_state {
                self.state
                    .apply(entry)
                    .map_err(|e| ReplicaClientError::Store(format!("entry {}: {e}", entry.lsn)))?;
            }
            if let Some(observer) = self.observer.as_mut() {
                observer(entry, arrived);
            }
        }
        self.persisted = entries.last().expect("non-empty").position();
        self.stats.entries += entries.len() as u64;
        Ok(())
    }

    /// The core replica machine.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The last position persisted.
    pub fn persisted(&self) -> LogPosition {
        self.persisted
    }

    /// The applied state (empty when `keep_state` is off).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state's hash.
    pub fn state_hash(&self) -> Hash {
        self.state.state_hash()
    }

    /// The stored log.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// What was received so far.
    pub fn stats(&self) -> ReplicaStats {
        self.stats
    }
}
