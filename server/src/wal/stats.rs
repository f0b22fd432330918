//! Counters of the WAL's work, for the server's metrics.
//!
//! Group commit is only visible in numbers: how many entries each `fdatasync` carried. These
//! counters are plain integers bumped on the commit thread and copied out on demand; the
//! server turns them into Prometheus metrics.

/// What a [`FileStore`](super::FileStore) has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// `fdatasync`/`fsync` calls on files (segments, snapshots, small files).
    pub data_syncs: u64,
    /// `fsync` calls on directories (after creating, renaming or deleting files).
    pub dir_syncs: u64,
    /// Bytes written to files of any kind.
    pub bytes_written: u64,
    /// `append` calls that wrote at least one entry.
    pub append_batches: u64,
    /// Entries appended.
    pub entries_appended: u64,
    /// The most entries one `append` call carried.
    pub batch_entries_max: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Segment files deleted (by compaction, truncation or recovery).
    pub segments_deleted: u64,
    /// Bytes of torn tail cut off by recovery when the store was opened.
    pub torn_bytes_truncated: u64,
}

impl WalStats {
    /// Mean entries per `append` call: the group-commit factor.
    pub fn entries_per_batch(&self) -> f64 {
        if self.append_batches == 0 {
            return 0.0;
        }
        self.entries_appended as f64 / self.append_batches as f64
    }

    /// Counts one `append` call of `entries` entries.
    pub(super) fn record_batch(&mut self, entries: usize) {
        let entries = entries as u64;
        self.append_batches += 1;
        self.entries_appended += entries;
        self.batch_entries_max = self.batch_entries_max.max(entries);
    }
}
