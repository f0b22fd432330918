//! A `LogStore` in memory: for tests, the simulator, and replicas that need no durability.

use std::collections::VecDeque;

use super::{
    LogState, LogStore, Metadata, StorageError, StorageResult, check_contiguous, check_truncate,
};
use crate::log::LogEntry;
use crate::snapshot::Snapshot;
use crate::types::{LogPosition, Lsn};

/// Entries in a deque, the compaction point, a snapshot and metadata. "Durable" for as long as
/// the value lives.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    entries: VecDeque<LogEntry>,
    /// The position of the last compacted entry (`START` if none).
    compacted: LogPosition,
    snapshot: Option<Snapshot>,
    metadata: Option<Metadata>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn last(&self) -> LogPosition {
        self.entries
            .back()
            .map_or(self.compacted, LogEntry::position)
    }

    fn index_of(&self, lsn: Lsn) -> Option<usize> {
        let first = self.compacted.lsn.next();
        let offset = lsn.0.checked_sub(first.0)? as usize;
        (offset < self.entries.len()).then_some(offset)
    }
}

impl LogStore for MemoryStore {
    async fn append(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        check_contiguous(self.last(), entries)?;
        self.entries.extend(entries.iter().cloned());
        Ok(())
    }

    async fn read_range(&self, from: Lsn, to: Lsn) -> StorageResult<Vec<LogEntry>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let start = self.index_of(from).ok_or(StorageError::Missing(from))?;
        let end = self
            .index_of(to.prev())
            .ok_or(StorageError::Missing(to.prev()))?;
        Ok(self.entries.range(start..=end).cloned().collect())
    }

    async fn state(&self) -> StorageResult<LogState> {
        Ok(LogState {
            first: self.compacted.lsn.next(),
            last: self.last(),
        })
    }

    async fn truncate_suffix(&mut self, from: Lsn) -> StorageResult<()> {
        check_truncate(from, self.compacted.lsn, self.last().lsn)?;
        if let Some(index) = self.index_of(from) {
            self.entries.truncate(index);
        }
        Ok(())
    }

    async fn compact_prefix(&mut self, through: Lsn) -> StorageResult<()> {
        if through <= self.compacted.lsn {
            return Ok(());
        }
        let index = self.index_of(through).ok_or_else(|| {
            StorageError::Invalid(format!("cannot compact through {through}: not held"))
        })?;
        let removed: Vec<LogEntry> = self.entries.drain(..=index).collect();
        self.compacted = removed.last().expect("drained at least one").position();
        Ok(())
    }

    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        // A snapshot past the last entry means the log before it is no longer needed, and the
        // log restarts after it: this is how a replica bootstraps from a leader's snapshot.
        if snapshot.position.lsn > self.last().lsn {
            self.entries.clear();
            self.compacted = snapshot.position;
        }
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }

    /// Clears the entries, moves the compaction point to the snapshot and keeps it. Nothing
    /// here outlives the value, so "crash-safe" is trivially true: the swap is one step.
    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        self.entries.clear();
        self.compacted = snapshot.position;
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }

    async fn load_snapshot(&self) -> StorageResult<Option<Snapshot>> {
        Ok(self.snapshot.clone())
    }

    async fn save_metadata(&mut self, metadata: &Metadata) -> StorageResult<()> {
        self.metadata = Some(metadata.clone());
        Ok(())
    }

    async fn load_metadata(&self) -> StorageResult<Option<Metadata>> {
        Ok(self.metadata.clone())
    }
}
