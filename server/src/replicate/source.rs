//! What a replication session needs from the node it streams from, as one small trait.
//!
//! The session driver ([`super::endpoint`]) never touches a role: every node serves
//! `/v1/replicate` over its own copy of the log. All a session needs is the node's identity,
//! its committed (durable) position as a watch, the [`LogTail`] of recent entries, and a
//! snapshot at or after a given LSN when a replica is too far behind. This module defines the
//! trait and does not know who implements it (nothing here imports a role):
//!
//! ```text
//!  Leader ─────────┐  its local copy                      ┌─► committed watch, tail reads
//!  Follower ───────┼─► local::LocalSource ─► dyn ReplicationSource
//!  Cluster member ─┘  (committed entries only)           └─► snapshot_at_least(min_lsn)
//! ```
//!
//! Snapshots are expensive (the whole state, encoded): each source caches the last one
//! ([`SnapshotCache`]) and reuses it while it is recent enough, so a hundred replicas joining
//! at once cost one encoding, not a hundred.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Mutex, watch};

use cstore_core::error::ErrorCode;
use cstore_core::{LogPosition, Lsn, ReplicaId, Snapshot, Term};

use super::tail::LogTail;

/// Why a snapshot could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The node is stopping.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node's store failed; what it holds may not be durable.
    #[error("storage failed: {0}")]
    Storage(String),
}

impl ErrorCode for SourceError {
    fn code(&self) -> &'static str {
        match self {
            SourceError::ShuttingDown => "shutting_down",
            SourceError::Storage(_) => "storage_io",
        }
    }
}

/// The node a replication session streams from: a leader, or a follower that relays.
///
/// Rules an implementation must keep: the committed position only moves forward, it is only
/// published once the entries up to it are durable *and* in [`Self::tail`], and every snapshot
/// is of durable state.
pub trait ReplicationSource: Send + Sync + 'static {
    /// The term the node serves (a session serves one term).
    fn term(&self) -> Term;
    /// The node's identity, sent to replicas in `Welcome`.
    fn node_id(&self) -> ReplicaId;
    /// Watches the last durable entry; sessions stream up to it.
    fn committed(&self) -> watch::Receiver<LogPosition>;
    /// The recent entries sessions read from.
    fn tail(&self) -> &LogTail;
    /// A snapshot of durable state at `min_lsn` or later.
    fn snapshot_at_least(&self, min_lsn: Lsn) -> BoxFuture<'_, Result<Arc<Snapshot>, SourceError>>;
}

/// The last snapshot a source made for replicas, reused while it still serves: new enough,
/// and the entries after it still in the tail (otherwise the replica would need yet another
/// snapshot). The async mutex makes concurrent requests wait for one encoding instead of each
/// making their own. Every source (leader, relay, cluster member) keeps one.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    cached: Mutex<Option<Arc<Snapshot>>>,
}

impl SnapshotCache {
    /// The cached snapshot if it is at `min_lsn` or later and `tail` still continues it, else
    /// the one `make` returns (which is then cached).
    pub async fn get_or_make<Make, Fut>(
        &self,
        min_lsn: Lsn,
        tail: &LogTail,
        make: Make,
    ) -> Result<Arc<Snapshot>, SourceError>
    where
        Make: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<Snapshot>, SourceError>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some(snapshot) = cached.as_ref()
            && snapshot.position.lsn >= min_lsn
            && snapshot.position.lsn.next() >= tail.first()
        {
            return Ok(Arc::clone(snapshot));
        }
        let snapshot = make().await?;
        *cached = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }
}
