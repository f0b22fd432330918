//! The follower's side of its local copy: the shared [`LocalCopy`] (store, state, tail,
//! applied watch) plus what only a follower keeps about it — its progress for `/v1/status`,
//! its metrics, the cluster it follows.
//!
//! Every change goes to disk first and to the state second, so a reader never sees what a
//! crash could take back: entries are appended (one fsync for the batch) and then applied
//! through the copy's one door, `apply_committed`; a snapshot is installed in the store and
//! then replaces the state.

use std::sync::Arc;

use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::StorageError;
use cstore_core::{LogPosition, Lsn, Term};

use super::Shared;
use crate::local::LocalCopy;
pub(super) use crate::local::LocalError;
use crate::wal::FileStore;

/// The side record (in the data directory) naming the cluster this copy follows.
const FOLLOWED_CLUSTER: &str = "followed-cluster";

#[derive(serde::Serialize, serde::Deserialize)]
struct FollowedCluster {
    cluster_id: String,
}

/// The follower's local copy and what the replication thread shares with the handle.
pub(super) struct FollowerCopy {
    copy: LocalCopy<FileStore>,
    pub(super) shared: Arc<Shared>,
}

impl FollowerCopy {
    pub(super) fn new(copy: LocalCopy<FileStore>, shared: Arc<Shared>) -> FollowerCopy {
        FollowerCopy { copy, shared }
    }

    /// The last entry held (or the snapshot's position when none is).
    pub(super) fn position(&self) -> LogPosition {
        self.copy.position()
    }

    /// The highest term saved.
    pub(super) fn term(&self) -> Term {
        self.copy.metadata().term
    }

    /// Appends `entries` durably (one fsync), then applies them and hands them to the relay's
    /// tail. `entries` come from the replica's `Persist`: their hashes and links were checked.
    pub(super) async fn persist(&mut self, entries: Vec<LogEntry>) -> Result<(), LocalError> {
        let last = entries.last().expect("persisting at least one entry").lsn;
        let count = entries.len() as u64;
        // The replica checked every entry's hash before it asked for the persist.
        self.copy
            .append_hash_checked(&entries)
            .map_err(LocalError::Storage)?;
        {
            // Progress first: a reader woken by `applied` sees a status at least as new.
            let mut progress = self.shared.progress();
            progress.durable_lsn = last;
            progress.entries_received += count;
        }
        let applied = self.copy.apply_committed(entries).await;
        metrics::gauge!("cstore_follower_applied_lsn")
            .set(self.copy.local().applied_lsn().0 as f64);
        applied?;
        metrics::counter!("cstore_follower_entries_total").increment(count);
        Ok(())
    }

    /// Replaces the whole local copy with `snapshot`.
    pub(super) async fn install(&mut self, snapshot: &Snapshot) -> Result<(), LocalError> {
        let lsn = snapshot.position.lsn;
        let shared = &self.shared;
        self.copy
            .install(snapshot, || {
                let mut progress = shared.progress();
                progress.durable_lsn = lsn;
                progress.snapshot_installs += 1;
            })
            .await?;
        metrics::gauge!("cstore_follower_applied_lsn").set(lsn.0 as f64);
        metrics::counter!("cstore_follower_snapshot_installs_total").increment(1);
        Ok(())
    }

    /// Discards the local log and state (remedy `rebootstrap`): the next hello starts from
    /// nothing and the leader sends a snapshot or the whole log.
    pub(super) async fn discard(&mut self) -> Result<(), StorageError> {
        self.copy.discard().await?;
        self.shared.progress().durable_lsn = Lsn::ZERO;
        metrics::gauge!("cstore_follower_applied_lsn").set(0.0);
        Ok(())
    }

    /// The cluster this copy follows (its `cluster_id`), once one was followed: a member of
    /// another is never followed (and never replaces this copy).
    pub(super) fn cluster_id(&self) -> Result<Option<String>, StorageError> {
        Ok(self
            .copy
            .store()
            .load_side_record::<FollowedCluster>(FOLLOWED_CLUSTER)?
            .map(|record| record.cluster_id))
    }

    /// Remembers (durably) the cluster this copy follows.
    pub(super) fn remember_cluster_id(&mut self, cluster_id: &str) -> Result<(), StorageError> {
        self.copy.file_store_mut().save_side_record_blocking(
            FOLLOWED_CLUSTER,
            &FollowedCluster {
                cluster_id: cluster_id.to_string(),
            },
        )
    }

    /// Saves a newer term in the metadata.
    pub(super) async fn save_term(&mut self, term: Term) -> Result<(), StorageError> {
        self.copy.save_term(term).await?;
        self.shared.progress().term = term;
        Ok(())
    }
}
