//! A local copy as a replication source: what read replicas, relays and browsers stream from,
//! whatever this node's role.
//!
//! Everything in a [`Local`] is durable and its tail is pushed before its watch moves, so a
//! session reads the committed position from the tail's watch, the entries from the tail, and
//! a snapshot from the state, with nothing to wait for but a replica that is ahead of us. A
//! cluster member's copy (`cluster::state_machine::Local`, written by openraft's state
//! machine) keeps the same rules with committed entries, so the same source serves it through
//! [`CommittedCopy`]. Only the term differs by role (the leader's fixed one, the term a
//! follower last saw, a member's current Raft term), so the source asks for it through a
//! function.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::watch;

use cstore_core::{LogPosition, Lsn, ReplicaId, Snapshot, Term};

use super::Local;
use crate::replicate::{LogTail, ReplicationSource, SnapshotCache, SourceError};

/// How long a snapshot request waits for this node to reach the replica's `min_lsn` (a
/// replica may have held more than a relaying follower has yet).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// What a replication source reads from a copy of the log. Rules: the copy holds committed
/// (durable) entries only; entries are in the tail before the tail's watch moves; the applied
/// watch moves after both.
pub trait CommittedCopy: Send + Sync + 'static {
    /// The recent entries, with the committed position as a watch.
    fn tail(&self) -> &LogTail;
    /// Watches the applied LSN.
    fn applied(&self) -> watch::Receiver<Lsn>;
    /// A snapshot of the state as it is.
    fn snapshot(&self) -> BoxFuture<'_, Snapshot>;
}

impl CommittedCopy for Local {
    fn tail(&self) -> &LogTail {
        Local::tail(self)
    }

    fn applied(&self) -> watch::Receiver<Lsn> {
        Local::applied(self)
    }

    fn snapshot(&self) -> BoxFuture<'_, Snapshot> {
        Box::pin(Local::snapshot(self))
    }
}

/// A node's local copy (a [`Local`] unless said otherwise) as a replication source.
pub struct LocalSource<C: CommittedCopy = Local> {
    local: Arc<C>,
    node_id: ReplicaId,
    term: Box<dyn Fn() -> Term + Send + Sync>,
    snapshots: SnapshotCache,
}

impl<C: CommittedCopy> std::fmt::Debug for LocalSource<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSource")
            .field("node_id", &self.node_id)
            .field("last", &self.local.tail().last())
            .finish()
    }
}

impl<C: CommittedCopy> LocalSource<C> {
    /// A source over `local`, of node `node_id`, serving the term `term` returns.
    pub fn new(
        local: Arc<C>,
        node_id: ReplicaId,
        term: impl Fn() -> Term + Send + Sync + 'static,
    ) -> LocalSource<C> {
        LocalSource {
            local,
            node_id,
            term: Box::new(term),
            snapshots: SnapshotCache::default(),
        }
    }
}

impl<C: CommittedCopy> ReplicationSource for LocalSource<C> {
    fn term(&self) -> Term {
        (self.term)()
    }

    fn node_id(&self) -> ReplicaId {
        self.node_id
    }

    fn committed(&self) -> watch::Receiver<LogPosition> {
        self.local.tail().committed()
    }

    fn tail(&self) -> &LogTail {
        self.local.tail()
    }

    fn snapshot_at_least(&self, min_lsn: Lsn) -> BoxFuture<'_, Result<Arc<Snapshot>, SourceError>> {
        Box::pin(
            self.snapshots
                .get_or_make(min_lsn, self.local.tail(), move || async move {
                    let mut applied = self.local.applied();
                    let reached =
                        tokio::time::timeout(SNAPSHOT_WAIT, applied.wait_for(|at| *at >= min_lsn))
                            .await;
                    if !reached.is_ok_and(|result| result.is_ok()) {
                        return Err(SourceError::Storage(format!(
                            "this node did not reach {min_lsn} within {} s",
                            SNAPSHOT_WAIT.as_secs()
                        )));
                    }
                    let started = Instant::now();
                    // Everything in a local copy is durable: no wait for an fsync.
                    let snapshot = Arc::new(self.local.snapshot().await);
                    tracing::info!(
                        lsn = %snapshot.position.lsn,
                        bytes = snapshot.data.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "replication snapshot made"
                    );
                    Ok(snapshot)
                }),
        )
    }
}
