//! The bookkeeping all sessions of one node share: who is connected, what each holds durably,
//! and the writes waiting for replica acknowledgements.
//!
//! ```text
//!  session task ── update(conn, replica, version, durable, state) ─► Hub ─► AckTracker::set_durable
//!                                                                  │      poll ─► wake writers
//!  write handler ── wait_acked(lsn, policy, timeout) ─► WaitId ────┘
//!        └── hold_acks() before it commits ──► acks_awaited ──► session tasks:
//!                                        LeaderSession::set_acks_awaited, ask with the entries
//!  /v1/status, /metrics ◄── replicas(), watermarks ◄───────────────┘
//! ```
//!
//! Replicas of protocol version 3 acknowledge only when asked, so a write that will wait for
//! replicas raises a count before it commits and keeps it raised until its wait ends
//! ([`Hub::hold_acks`]). Sessions read it before they send entries: the entries of a waiting
//! write always go out with an ask, and no session is woken because a write waits.
//!
//! One replica identity has one owner connection: when a replica reconnects before its old
//! connection timed out, the newer connection takes the identity over, the older one is told to
//! close (`superseded`), and its later updates and its removal are ignored, so a stale
//! connection can never count towards `replicas:N` nor erase the newer one's acknowledgements.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use cstore_core::replication::{AckTracker, Needed, WaitId, WaitOutcome};
use cstore_core::{Lsn, ReplicaId, TimestampMs};

use crate::clock::now_ms;

/// Names one replication connection (a replica identity may reconnect under a new one).
pub type ConnId = u64;

/// Most writes that may wait for replica acknowledgements at once; more are answered
/// `ack_unknown` at once (their write is durable on the leader).
pub const ACK_WAITERS_MAX: usize = 100_000;

/// Where a session is in the protocol, for `/v1/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Connected, no hello yet.
    AwaitingHello,
    /// Finding the replica's start, or sending it a snapshot.
    CatchingUp,
    /// Streaming entries.
    Streaming,
}

impl SessionState {
    /// The name `/v1/status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::AwaitingHello => "awaiting_hello",
            SessionState::CatchingUp => "catching_up",
            SessionState::Streaming => "streaming",
        }
    }
}

/// One connected replica as `/v1/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    /// The replica's identity, once it said hello.
    pub id: Option<ReplicaId>,
    /// Its address, when known.
    pub addr: Option<SocketAddr>,
    /// Durable on the replica, on the leader's chain.
    pub acked_lsn: Lsn,
    /// Committed entries it does not hold durably yet (computed when read).
    pub lag: u64,
    /// Where it is in the protocol.
    pub state: SessionState,
    /// The protocol version its hello spoke, once it said hello.
    pub protocol_version: Option<u16>,
}

/// Why a write's replica acknowledgement is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckUnknown {
    /// The deadline passed before enough replicas acknowledged.
    #[error("not acknowledged by enough replicas within {timeout_ms} ms")]
    Timeout {
        /// The deadline the write gave.
        timeout_ms: u64,
    },
    /// Too many writes already wait; this one was not registered.
    #[error("too many writes ({0}) already wait for replica acknowledgements")]
    TooManyWaiters(usize),
}

#[derive(Debug)]
struct Connection {
    view: ReplicaView,
    superseded: Arc<Notify>,
    /// A newer connection took the identity over: this one only waits to close.
    retired: bool,
}

#[derive(Debug)]
struct Inner {
    tracker: AckTracker,
    waiting: HashMap<WaitId, oneshot::Sender<WaitOutcome>>,
    connections: BTreeMap<ConnId, Connection>,
    owners: HashMap<ReplicaId, ConnId>,
    next_conn: ConnId,
}

/// Sessions, acknowledgements and waits of one node.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// Writes that will wait, or wait, for replica acknowledgements ([`Hub::hold_acks`]).
    acks_awaited: AtomicUsize,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new(ACK_WAITERS_MAX)
    }
}

impl Hub {
    /// A hub where at most `waiters_max` writes wait for acknowledgements.
    pub fn new(waiters_max: usize) -> Hub {
        Hub {
            inner: Mutex::new(Inner {
                tracker: AckTracker::new(waiters_max),
                waiting: HashMap::new(),
                connections: BTreeMap::new(),
                owners: HashMap::new(),
                next_conn: 1,
            }),
            acks_awaited: AtomicUsize::new(0),
        }
    }

    /// Says that a write will wait for replica acknowledgements, for as long as the returned
    /// guard lives: take it before the write commits and keep it until the wait ends. While
    /// any is held, sessions ask replicas that acknowledge on request with every batch of
    /// entries they send.
    pub fn hold_acks(&self) -> AcksHeld<'_> {
        // SeqCst, as the sessions' loads: the raise happens before the commit that wakes them.
        self.acks_awaited.fetch_add(1, Ordering::SeqCst);
        AcksHeld { hub: self }
    }

    /// True while some write holds [`Hub::hold_acks`].
    pub fn acks_awaited(&self) -> bool {
        self.acks_awaited.load(Ordering::SeqCst) > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("replication hub lock poisoned")
    }

    /// Registers a new connection; the returned `Notify` fires when a newer connection takes
    /// over its replica identity.
    pub fn open(&self, addr: Option<SocketAddr>) -> (ConnId, Arc<Notify>) {
        let mut inner = self.lock();
        let conn = inner.next_conn;
        inner.next_conn += 1;
        let superseded = Arc::new(Notify::new());
        inner.connections.insert(
            conn,
            Connection {
                view: ReplicaView {
                    id: None,
                    addr,
                    acked_lsn: Lsn::ZERO,
                    lag: 0,
                    state: SessionState::AwaitingHello,
                    protocol_version: None,
                },
                superseded: Arc::clone(&superseded),
                retired: false,
            },
        );
        metrics::gauge!("cstore_replicas_connected").set(inner.connections.len() as f64);
        (conn, superseded)
    }

    /// Records what a connection's session says now. A replica identity seen for the first
    /// time on this connection takes it over from any older connection. (Lag is not reported:
    /// it changes with every commit for every session, so it is computed when read.)
    pub fn update(
        &self,
        conn: ConnId,
        replica: Option<ReplicaId>,
        protocol_version: Option<u16>,
        acked: Lsn,
        state: SessionState,
    ) {
        let mut inner = self.lock();
        let Some(connection) = inner.connections.get_mut(&conn) else {
            return;
        };
        if connection.retired {
            return;
        }
        let claimed = connection.view.id.is_none() && replica.is_some();
        connection.view.id = replica;
        connection.view.protocol_version = protocol_version;
        connection.view.acked_lsn = acked;
        connection.view.state = state;
        let Some(replica) = replica else { return };
        if claimed
            && let Some(older) = inner.owners.insert(replica, conn)
            && let Some(old) = inner.connections.get_mut(&older)
        {
            old.superseded.notify_one();
            old.retired = true;
        }
        if inner.owners.get(&replica) != Some(&conn) {
            return;
        }
        if inner.tracker.durable_lsn(replica) != Some(acked) {
            inner.tracker.set_durable(replica, acked);
            if inner.tracker.waiting() > 0 {
                let done = inner.tracker.poll(now_ms());
                inner.deliver(done);
            }
        }
    }

    /// Forgets a closed connection; its replica no longer counts (unless a newer connection
    /// owns the identity).
    pub fn close(&self, conn: ConnId) {
        let mut inner = self.lock();
        if let Some(connection) = inner.connections.remove(&conn)
            && !connection.retired
            && let Some(replica) = connection.view.id
            && inner.owners.get(&replica) == Some(&conn)
        {
            inner.owners.remove(&replica);
            inner.tracker.remove(replica);
        }
        metrics::gauge!("cstore_replicas_connected").set(inner.connections.len() as f64);
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.lock().connections.len()
    }

    /// Every open connection, for `/v1/status`, with its lag behind `committed`.
    pub fn replicas(&self, committed: Lsn) -> Vec<ReplicaView> {
        self.lock()
            .connections
            .values()
            .map(|c| ReplicaView {
                lag: committed.0.saturating_sub(c.view.acked_lsn.0),
                ..c.view.clone()
            })
            .collect()
    }

    /// `durable_on[n - 1]`: the highest LSN durable on at least `n` replicas, for every `n`
    /// from 1 to the number of replicas.
    pub fn durable_on(&self) -> Vec<Lsn> {
        let mut lsns: Vec<Lsn> = self.lock().tracker.replicas().map(|(_, l)| l).collect();
        lsns.sort_unstable_by(|a, b| b.cmp(a));
        lsns
    }

    /// Waits until `lsn` is durable on the replicas `needed` asks for, for at most `timeout`.
    /// `Needed::All` means every replica connected now; with none connected it is satisfied at
    /// once (the write is durable on the leader, which is all there is).
    pub async fn wait_acked(
        &self,
        lsn: Lsn,
        needed: Needed,
        timeout: Duration,
    ) -> Result<(), AckUnknown> {
        let timeout_ms = timeout.as_millis() as u64;
        let (sender, mut receiver) = oneshot::channel();
        let id = {
            let mut inner = self.lock();
            let now = now_ms();
            let deadline = TimestampMs(now.0.saturating_add(timeout_ms));
            let id = inner
                .tracker
                .wait(lsn, needed, deadline)
                .map_err(|_| AckUnknown::TooManyWaiters(inner.tracker.waiting()))?;
            inner.waiting.insert(id, sender);
            // It may be satisfied already.
            let done = inner.tracker.poll(now);
            inner.deliver(done);
            id
        };
        // Cancels the wait if the writer goes away (its connection closed).
        let guard = CancelOnDrop { hub: self, id };
        let outcome = match tokio::time::timeout(timeout, &mut receiver).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => WaitOutcome::Unknown,
            Err(_elapsed) => {
                drop(guard);
                // An acknowledgement may have won the race against the deadline.
                receiver.try_recv().unwrap_or(WaitOutcome::Unknown)
            }
        };
        match outcome {
            WaitOutcome::Durable => Ok(()),
            WaitOutcome::Unknown => Err(AckUnknown::Timeout { timeout_ms }),
        }
    }
}

impl Inner {
    fn deliver(&mut self, done: Vec<(WaitId, WaitOutcome)>) {
        for (id, outcome) in done {
            if let Some(sender) = self.waiting.remove(&id) {
                let _ = sender.send(outcome);
            }
        }
    }
}

/// A write that will wait, or waits, for replica acknowledgements: see [`Hub::hold_acks`].
#[derive(Debug)]
#[must_use = "the count drops with the guard"]
pub struct AcksHeld<'a> {
    hub: &'a Hub,
}

impl Drop for AcksHeld<'_> {
    fn drop(&mut self) {
        self.hub.acks_awaited.fetch_sub(1, Ordering::SeqCst);
    }
}

struct CancelOnDrop<'a> {
    hub: &'a Hub,
    id: WaitId,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        inner.tracker.cancel(self.id);
        inner.waiting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);
    const LONG: Duration = Duration::from_secs(5);

    fn streaming(hub: &Hub, conn: ConnId, replica: u64, acked: u64) {
        hub.update(
            conn,
            Some(ReplicaId(replica)),
            Some(cstore_core::replication::PROTOCOL_VERSION),
            Lsn(acked),
            SessionState::Streaming,
        );
    }

    #[tokio::test]
    async fn replicas_n_waits_for_n_acks_and_times_out_as_unknown() {
        let hub = Arc::new(Hub::default());
        let (a, _) = hub.open(None);
        let (b, _) = hub.open(None);
        streaming(&hub, a, 1, 0);
        streaming(&hub, b, 2, 0);
        assert_eq!(
            hub.wait_acked(Lsn(5), Needed::Replicas(1), SHORT).await,
            Err(AckUnknown::Timeout { timeout_ms: 50 })
        );
        let waiter = tokio::spawn({
            let hub = Arc::clone(&hub);
            async move { hub.wait_acked(Lsn(5), Needed::Replicas(2), LONG).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        streaming(&hub, a, 1, 5);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "one ack of two is not enough");
        streaming(&hub, b, 2, 7);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(hub.durable_on(), vec![Lsn(7), Lsn(5)]);
        // Already durable: answered at once.
        assert_eq!(hub.wait_acked(Lsn(5), Needed::All, SHORT).await, Ok(()));
    }

    #[tokio::test]
    async fn all_with_no_replica_is_satisfied_and_counts_the_connected_ones() {
        let hub = Hub::default();
        assert_eq!(hub.wait_acked(Lsn(9), Needed::All, SHORT).await, Ok(()));
        let (a, _) = hub.open(None);
        streaming(&hub, a, 1, 3);
        assert!(hub.wait_acked(Lsn(9), Needed::All, SHORT).await.is_err());
        hub.close(a);
        assert_eq!(hub.connections(), 0);
        assert!(hub.durable_on().is_empty());
    }

    #[tokio::test]
    async fn a_newer_connection_takes_over_the_identity() {
        let hub = Hub::default();
        let (old, old_superseded) = hub.open(None);
        streaming(&hub, old, 1, 4);
        let (new, _) = hub.open(None);
        streaming(&hub, new, 1, 2);
        // The old connection is told to go; its updates and close no longer count.
        tokio::time::timeout(SHORT, old_superseded.notified())
            .await
            .expect("superseded");
        streaming(&hub, old, 1, 9);
        hub.close(old);
        assert_eq!(hub.durable_on(), vec![Lsn(2)]);
        hub.close(new);
        assert!(hub.durable_on().is_empty());
    }

    #[tokio::test]
    async fn waits_are_bounded_and_cancelled_when_dropped() {
        let hub = Hub::new(1);
        let (a, _) = hub.open(None);
        streaming(&hub, a, 1, 0);
        let mut first = Box::pin(hub.wait_acked(Lsn(1), Needed::Replicas(1), LONG));
        let second = hub.wait_acked(Lsn(1), Needed::Replicas(1), LONG);
        // Registers the first wait, then the second is refused.
        assert!(futures::poll!(&mut first).is_pending());
        assert_eq!(second.await, Err(AckUnknown::TooManyWaiters(1)));
        drop(first);
        assert_eq!(hub.lock().tracker.waiting(), 0, "dropped wait cancelled");
    }
}
