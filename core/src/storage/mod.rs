//! Storage: the async trait every durable home of the log implements, and an in-memory one.
//!
//! A store holds a contiguous run of log entries, optionally preceded by a snapshot, plus a
//! little metadata. The server's file WAL, the browser's IndexedDB store and [`MemoryStore`]
//! implement [`LogStore`]; the conformance suite in [`conformance`] (feature `testing`) holds
//! them all to the same behaviour.
//!
//! The futures are `Send` on native targets (the server runs them on a multi-threaded tokio
//! runtime) and not on wasm32, where IndexedDB handles are `!Send`: see [`MaybeSend`].

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::log::LogEntry;
use crate::snapshot::Snapshot;
use crate::state::{SnapshotError, State};
use crate::types::{LogPosition, Lsn, ReplicaId, Term};

#[cfg(feature = "testing")]
pub mod conformance;
mod memory;

pub use memory::MemoryStore;

/// `Send` on native targets, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` on native targets, nothing on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// Small durable facts kept beside the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The highest term this node has seen.
    pub term: Term,
    /// This node's identity, chosen once.
    pub node_id: ReplicaId,
}

/// What a store holds: the first entry it still has and the last position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// The LSN of the first entry held; `last.lsn + 1` when no entry is held.
    pub first: Lsn,
    /// The last entry held, or, when every entry was compacted away, the last compacted one
    /// (the snapshot's position). `LogPosition::START` for a new store.
    pub last: LogPosition,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// An IO error from the platform (file system, IndexedDB).
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// The device is out of space (or quota). Nothing of the failed call was made durable and
    /// the store is unchanged, so a later call may succeed once space is freed.
    #[error("storage is full: {0}")]
    Full(String),
    /// Stored bytes failed their checksum or hash, or do not decode.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// An appended entry does not follow the last one held.
    #[error("entry {got} does not follow the last entry {expected_prev} in the store")]
    NotContiguous {
        expected_prev: LogPosition,
        got: Lsn,
    },
    /// A requested entry is not held: compacted away, or never written.
    #[error("entry {0} is not in the store")]
    Missing(Lsn),
    /// Compaction past the last entry, truncation into compacted history, and the like.
    #[error("invalid storage request: {0}")]
    Invalid(String),
}

impl ErrorCode for StorageError {
    fn code(&self) -> &'static str {
        match self {
            StorageError::Io(_) => "storage_io",
            StorageError::Full(_) => "disk_full",
            StorageError::Corrupt(_) => "storage_corrupt",
            StorageError::NotContiguous { .. } => "not_contiguous",
            StorageError::Missing(_) => "entry_missing",
            StorageError::Invalid(_) => "storage_invalid",
        }
    }
}

/// Shorthand for storage results.
pub type StorageResult<T> = Result<T, StorageError>;

/// How many entries [`LogStore::replay`] reads at a time.
pub const REPLAY_CHUNK: u64 = 4096;

/// The durable home of a log. Every mutating call is durable when its future resolves: a store
/// that returns `Ok` from `append` must return those entries after a crash.
pub trait LogStore {
    /// Appends entries, which must continue the chain: the first must follow `state().last`
    /// (by lsn and `prev_hash`) and each the one before it.
    fn append(
        &mut self,
        entries: &[LogEntry],
    ) -> impl Future<Output = StorageResult<()>> + MaybeSend;

    /// [`Self::append`] for entries the caller has just built with [`LogEntry::new`], which
    /// hashed them: a store that checks each entry against its hash before it writes may skip
    /// that second SHA-256 pass (the chain is still checked). The leader's commit thread does
    /// this for every batch. By default, `append`.
    fn append_own(
        &mut self,
        entries: &[LogEntry],
    ) -> impl Future<Output = StorageResult<()>> + MaybeSend {
        self.append(entries)
    }

    /// The entries with `from <= lsn < to`, in order. Fails with `Missing` when any of them is
    /// not held.
    fn read_range(
        &self,
        from: Lsn,
        to: Lsn,
    ) -> impl Future<Output = StorageResult<Vec<LogEntry>>> + MaybeSend;

    /// The first held LSN and the last position.
    fn state(&self) -> impl Future<Output = StorageResult<LogState>> + MaybeSend;

    /// Removes every entry with `lsn >= from` (after divergence). `from` must be above the
    /// compaction point.
    fn truncate_suffix(&mut self, from: Lsn)
    -> impl Future<Output = StorageResult<()>> + MaybeSend;

    /// Removes every entry with `lsn <= through` (behind a snapshot). `through` must not pass
    /// the last entry.
    fn compact_prefix(
        &mut self,
        through: Lsn,
    ) -> impl Future<Output = StorageResult<()>> + MaybeSend;

    /// Saves a snapshot, replacing any earlier one.
    fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = StorageResult<()>> + MaybeSend;

    /// Replaces everything the store holds of the log with `snapshot`: entries, compaction
    /// point and any earlier snapshot. This is how a replica re-bootstraps from a leader's
    /// snapshot (`InstallSnapshot`), and it resets the log even when the snapshot's LSN is at
    /// or below the last entry held (a diverged replica), which `save_snapshot` never does.
    ///
    /// Afterwards `state()` is `{ first: snapshot.position.lsn + 1, last: snapshot.position }`,
    /// `load_snapshot()` returns `snapshot`, no entry is held, and the next append must follow
    /// `snapshot.position`. Metadata is kept. The change is durable when the future resolves,
    /// and a crash at any point leaves either the old store or the new one, never a mix (each
    /// implementation says how). A store may refuse a snapshot that fails
    /// [`Snapshot::verify`] with `Invalid`, changing nothing.
    fn install_snapshot(
        &mut self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = StorageResult<()>> + MaybeSend;

    /// The last saved snapshot.
    fn load_snapshot(&self) -> impl Future<Output = StorageResult<Option<Snapshot>>> + MaybeSend;

    /// Hands the entries from `from` up to `to` (excluded) to `take`, in order, until it
    /// returns false: what a restart replays. Returns whether every entry was taken.
    ///
    /// The default reads [`REPLAY_CHUNK`] entries at a time with
    /// [`read_range`](LogStore::read_range). The server's store reads and checks the next
    /// chunk on a second thread while `take` has this one.
    fn replay<F>(
        &self,
        from: Lsn,
        to: Lsn,
        mut take: F,
    ) -> impl Future<Output = StorageResult<bool>> + MaybeSend
    where
        Self: Sync,
        F: FnMut(&LogEntry) -> bool + MaybeSend,
    {
        async move {
            let mut next = from;
            while next < to {
                let end = Lsn(next.0.saturating_add(REPLAY_CHUNK).min(to.0));
                for entry in &self.read_range(next, end).await? {
                    if !take(entry) {
                        return Ok(false);
                    }
                }
                next = end;
            }
            Ok(true)
        }
    }

    /// Loads the last saved snapshot and rebuilds the state it holds: what a restart starts
    /// from. The outer result is the store's (it could not read the snapshot, or its data does
    /// not match the state hash), the inner one the state's (the data is whole but does not
    /// hold a valid state).
    ///
    /// The default is [`load_snapshot`](LogStore::load_snapshot) followed by every check of
    /// [`State::from_snapshot`]. A store whose snapshots are its own files may do less: the
    /// server's checks the hash on a second thread while the state is decoded, and trusts the
    /// documents' canonical form ([`State::from_own_snapshot`]).
    fn load_snapshot_state(
        &self,
    ) -> impl Future<Output = StorageResult<Option<Result<State, SnapshotError>>>> + MaybeSend {
        let loaded = self.load_snapshot();
        async move {
            Ok(loaded
                .await?
                .map(|snapshot| State::from_snapshot(&snapshot)))
        }
    }

    /// Saves the metadata, replacing earlier metadata.
    fn save_metadata(
        &mut self,
        metadata: &Metadata,
    ) -> impl Future<Output = StorageResult<()>> + MaybeSend;

    /// The last saved metadata.
    fn load_metadata(&self) -> impl Future<Output = StorageResult<Option<Metadata>>> + MaybeSend;
}

/// What `read_range(from, to)` must read from a store that holds the entries after `compacted`
/// through `last`: `None` for an empty range, else the held LSNs `first..=last` to read;
/// `Missing` when part of the range is compacted away or not written yet.
pub fn readable_range(
    from: Lsn,
    to: Lsn,
    compacted: Lsn,
    last: Lsn,
) -> StorageResult<Option<(Lsn, Lsn)>> {
    if from >= to {
        return Ok(None);
    }
    if from <= compacted {
        return Err(StorageError::Missing(from));
    }
    if to.prev() > last {
        return Err(StorageError::Missing(from.max(last.next())));
    }
    Ok(Some((from, to.prev())))
}

/// Checks `truncate_suffix(from)` on a store that holds the entries after `compacted` through
/// `last`: refused when it would cut into compacted entries; `false` when nothing is held from
/// `from` on (nothing to do).
pub fn check_truncate(from: Lsn, compacted: Lsn, last: Lsn) -> StorageResult<bool> {
    if from <= compacted {
        return Err(StorageError::Invalid(format!(
            "cannot truncate from {from}: entries through {compacted} are compacted"
        )));
    }
    Ok(from <= last)
}

/// Checks that `entries` continue the chain after `last`, as `append` requires.
pub fn check_contiguous(last: LogPosition, entries: &[LogEntry]) -> StorageResult<()> {
    let mut prev = last;
    for entry in entries {
        if !entry.follows(prev) {
            return Err(StorageError::NotContiguous {
                expected_prev: prev,
                got: entry.lsn,
            });
        }
        prev = entry.position();
    }
    Ok(())
}
