//! Relay: a follower serves `/v1/replicate` over its own log, so followers can follow it.
//!
//! The serving side is the leader's (`replicate`): sessions read a [`LogTail`] and snapshots
//! from a [`ReplicationSource`]. A follower is one too: its "committed" position is its own
//! durable one, its persist path pushes every durable batch into its tail (after the state
//! applied it), and a snapshot install resets the tail to the snapshot's position. Snapshots
//! for downstream replicas come from its state, which holds only durable entries.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use cstore_core::{LogPosition, Lsn, ReplicaId, Snapshot, Term};

use super::Shared;
use crate::replicate::{LogTail, ReplicationSource, SnapshotCache, SourceError};

/// How long a downstream snapshot request waits for this follower to reach its `min_lsn`.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// A follower as a replication source.
pub struct RelaySource {
    shared: Arc<Shared>,
    snapshots: SnapshotCache,
}

impl std::fmt::Debug for RelaySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySource")
            .field("last", &self.shared.tail.last())
            .finish()
    }
}

impl RelaySource {
    pub(super) fn new(shared: Arc<Shared>) -> RelaySource {
        RelaySource {
            shared,
            snapshots: SnapshotCache::default(),
        }
    }
}

impl ReplicationSource for RelaySource {
    fn term(&self) -> Term {
        self.shared.progress().term
    }

    fn node_id(&self) -> ReplicaId {
        self.shared.node_id
    }

    fn committed(&self) -> watch::Receiver<LogPosition> {
        self.shared.tail.committed()
    }

    fn tail(&self) -> &LogTail {
        &self.shared.tail
    }

    fn snapshot_at_least(&self, min_lsn: Lsn) -> BoxFuture<'_, Result<Arc<Snapshot>, SourceError>> {
        Box::pin(
            self.snapshots
                .get_or_make(min_lsn, &self.shared.tail, move || async move {
                    // A downstream replica may have held more than this follower has yet.
                    let mut applied = self.shared.applied.subscribe();
                    match tokio::time::timeout(SNAPSHOT_WAIT, applied.wait_for(|at| *at >= min_lsn))
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return Err(SourceError::ShuttingDown),
                        Err(_) => {
                            return Err(SourceError::Storage(format!(
                                "this follower did not reach {min_lsn} within {} s",
                                SNAPSHOT_WAIT.as_secs()
                            )));
                        }
                    }
                    // Everything in a follower's state is durable: no wait needed.
                    Ok(Arc::new(
                        self.shared
                            .state
                            .read()
                            .expect("state lock poisoned")
                            .snapshot(),
                    ))
                }),
        )
    }
}
