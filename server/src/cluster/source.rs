//! A cluster member as a replication source: read replicas and browsers stream the member's
//! applied entries (committed, so never truncated by a new leader) from any member.
//!
//! The same hash chain runs on every member, so a replica that reconnects to another member
//! after a leader change resumes from its own `(lsn, hash)` without downloading again.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use cstore_core::{LogPosition, Lsn, ReplicaId, Snapshot, Term};

use super::Cluster;
use crate::replicate::{LogTail, ReplicationSource, SnapshotCache, SourceError};

/// How long a snapshot request waits for this member to reach the replica's position.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// A cluster member as a replication source.
pub struct ClusterSource {
    cluster: Cluster,
    snapshots: SnapshotCache,
}

impl std::fmt::Debug for ClusterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSource")
            .field("node_id", &self.cluster.node_id())
            .finish()
    }
}

impl ClusterSource {
    /// A source over `cluster`'s local copy.
    pub fn new(cluster: Cluster) -> ClusterSource {
        ClusterSource {
            cluster,
            snapshots: SnapshotCache::default(),
        }
    }
}

impl ReplicationSource for ClusterSource {
    fn term(&self) -> Term {
        self.cluster.term()
    }

    fn node_id(&self) -> ReplicaId {
        self.cluster.node_id()
    }

    fn committed(&self) -> watch::Receiver<LogPosition> {
        self.cluster.local().tail.committed()
    }

    fn tail(&self) -> &LogTail {
        &self.cluster.local().tail
    }

    fn snapshot_at_least(&self, min_lsn: Lsn) -> BoxFuture<'_, Result<Arc<Snapshot>, SourceError>> {
        let tail = &self.cluster.local().tail;
        Box::pin(
            self.snapshots
                .get_or_make(min_lsn, tail, move || async move {
                    // A replica may have seen more than this member applied yet (it followed another
                    // member): wait for it rather than send it back in time.
                    if !self.cluster.wait_applied(min_lsn, SNAPSHOT_WAIT).await {
                        return Err(SourceError::Storage(format!(
                            "this member did not reach {min_lsn} within {} s",
                            SNAPSHOT_WAIT.as_secs()
                        )));
                    }
                    Ok(Arc::new(self.cluster.read(|state| state.snapshot())))
                }),
        )
    }
}
