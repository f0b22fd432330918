//! Checkpoints: a snapshot of the state, then the log compacted behind it.
//!
//! Restart time is the time to read one snapshot plus the log after it. Without checkpoints
//! the log, and with it the restart, grows without bound; with them the held log stays below
//! the policy's limits (plus whatever arrives while a checkpoint is being written). The
//! server's commit loop asks [`CheckpointPolicy::due`] after each batch and, when it says so,
//! encodes the state and calls [`FileStore::checkpoint_blocking`].

use cstore_core::snapshot::Snapshot;
use cstore_core::storage::{StorageError, StorageResult};

use super::FileStore;

/// When a checkpoint is due: whichever limit the held log reaches first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Entries held above the compaction point.
    pub entries_max: u64,
    /// Bytes of segment files held.
    pub bytes_max: u64,
}

impl Default for CheckpointPolicy {
    /// 100,000 entries or 128 MiB: a restart then reads at most about that much log.
    fn default() -> CheckpointPolicy {
        CheckpointPolicy {
            entries_max: 100_000,
            bytes_max: 128 << 20,
        }
    }
}

impl CheckpointPolicy {
    /// True when `store` holds enough log that a checkpoint should be written now.
    pub fn due(&self, store: &FileStore) -> bool {
        let state = store.log_state();
        let entries = state.last.lsn.0 + 1 - state.first.0;
        entries >= self.entries_max || store.held_bytes() >= self.bytes_max
    }
}

impl FileStore {
    /// Writes `snapshot` as the checkpoint and compacts the log through its position. The
    /// snapshot must be of this log: when the store holds the entry at its position, the
    /// hashes must agree (`Invalid` otherwise, and nothing is written).
    pub fn checkpoint_blocking(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        let state = self.log_state();
        let lsn = snapshot.position.lsn;
        let held = state.first <= lsn && lsn <= state.last.lsn;
        if held {
            let entry = self.read_range_blocking(lsn, lsn.next())?;
            if entry[0].hash != snapshot.position.hash {
                return Err(StorageError::Invalid(format!(
                    "checkpoint at {} does not match the log's entry {}",
                    snapshot.position,
                    entry[0].position()
                )));
            }
        }
        self.save_snapshot_blocking(snapshot)?;
        if held {
            self.compact_prefix_blocking(lsn)?;
        }
        Ok(())
    }
}
