//! The follower's local copy: its file store and the state readers see, changed together.
//!
//! Every change goes to disk first and to the state second, so a reader never sees what a
//! crash could take back: entries are appended (one fsync for the batch) and then applied; a
//! snapshot is installed in the store and then replaces the state.

use std::sync::Arc;

use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::state::State;
use cstore_core::storage::{LogStore, Metadata, StorageError};
use cstore_core::{LogPosition, Lsn, Term};

use super::Shared;
use crate::wal::FileStore;

/// The side record (in the data directory) naming the cluster this copy follows.
const FOLLOWED_CLUSTER: &str = "followed-cluster";

#[derive(serde::Serialize, serde::Deserialize)]
struct FollowedCluster {
    cluster_id: String,
}

/// Why a change to the local copy failed.
#[derive(Debug)]
pub(super) enum LocalError {
    /// The store failed: nothing more may be written until a restart.
    Storage(StorageError),
    /// A verified entry or snapshot does not apply: the local state is broken.
    Apply { lsn: Lsn, reason: String },
}

/// The follower's store and the state it shares with readers.
pub(super) struct LocalCopy {
    store: FileStore,
    metadata: Metadata,
    pub(super) shared: Arc<Shared>,
}

impl LocalCopy {
    pub(super) fn new(store: FileStore, metadata: Metadata, shared: Arc<Shared>) -> LocalCopy {
        LocalCopy {
            store,
            metadata,
            shared,
        }
    }

    /// The last entry held (or the snapshot's position when none is).
    pub(super) fn position(&self) -> LogPosition {
        self.store.log_state().last
    }

    /// The highest term saved.
    pub(super) fn term(&self) -> Term {
        self.metadata.term
    }

    /// Appends `entries` durably (one fsync), applies them, then hands them to the relay's
    /// tail.
    pub(super) async fn persist(&mut self, entries: Vec<LogEntry>) -> Result<(), LocalError> {
        let last = entries.last().expect("persisting at least one entry").lsn;
        self.store
            .append(&entries)
            .await
            .map_err(LocalError::Storage)?;
        {
            let mut state = self.shared.state.write().expect("state lock poisoned");
            for entry in &entries {
                if let Err(rejection) = state.apply(entry) {
                    let applied = state.applied().lsn;
                    drop(state);
                    self.shared.applied.send_replace(applied);
                    return Err(LocalError::Apply {
                        lsn: entry.lsn,
                        reason: rejection.to_string(),
                    });
                }
            }
        }
        {
            // Progress first: a reader woken by `applied` sees a status at least as new.
            let mut progress = self.shared.progress();
            progress.durable_lsn = last;
            progress.entries_received += entries.len() as u64;
        }
        self.shared.applied.send_replace(last);
        metrics::counter!("cstore_follower_entries_total").increment(entries.len() as u64);
        metrics::gauge!("cstore_follower_applied_lsn").set(last.0 as f64);
        self.shared.tail.push(entries);
        Ok(())
    }

    /// Replaces the whole local copy with `snapshot`.
    pub(super) async fn install(&mut self, snapshot: &Snapshot) -> Result<(), LocalError> {
        let lsn = snapshot.position.lsn;
        let state = State::from_snapshot(snapshot).map_err(|e| LocalError::Apply {
            lsn,
            reason: e.to_string(),
        })?;
        self.store
            .install_snapshot(snapshot)
            .await
            .map_err(LocalError::Storage)?;
        {
            let mut progress = self.shared.progress();
            progress.durable_lsn = lsn;
            progress.snapshot_installs += 1;
        }
        self.replace_state(state);
        metrics::counter!("cstore_follower_snapshot_installs_total").increment(1);
        Ok(())
    }

    /// Discards the local log and state (remedy `rebootstrap`): the next hello starts from
    /// nothing and the leader sends a snapshot or the whole log.
    pub(super) async fn discard(&mut self) -> Result<(), StorageError> {
        let empty = State::new();
        self.store.install_snapshot(&empty.snapshot()).await?;
        self.shared.progress().durable_lsn = Lsn::ZERO;
        self.replace_state(empty);
        Ok(())
    }

    /// The cluster this copy follows (its `cluster_id`), once one was followed: a member of
    /// another is never followed (and never replaces this copy).
    pub(super) fn cluster_id(&self) -> Result<Option<String>, StorageError> {
        Ok(self
            .store
            .load_side_record::<FollowedCluster>(FOLLOWED_CLUSTER)?
            .map(|record| record.cluster_id))
    }

    /// Remembers (durably) the cluster this copy follows.
    pub(super) fn remember_cluster_id(&mut self, cluster_id: &str) -> Result<(), StorageError> {
        self.store.save_side_record_blocking(
            FOLLOWED_CLUSTER,
            &FollowedCluster {
                cluster_id: cluster_id.to_string(),
            },
        )
    }

    /// Saves a newer term in the metadata.
    pub(super) async fn save_term(&mut self, term: Term) -> Result<(), StorageError> {
        let metadata = Metadata {
            term,
            ..self.metadata.clone()
        };
        self.store.save_metadata(&metadata).await?;
        self.metadata = metadata;
        self.shared.progress().term = term;
        Ok(())
    }

    fn replace_state(&self, state: State) {
        let position = state.applied();
        let applied = position.lsn;
        *self.shared.state.write().expect("state lock poisoned") = state;
        self.shared.tail.reset(position);
        // Readers wait for `applied >= n`; a snapshot can move it backwards only on a
        // rebootstrap, which readers then wait through.
        self.shared.applied.send_replace(applied);
        metrics::gauge!("cstore_follower_applied_lsn").set(applied.0 as f64);
    }
}
