//! openraft's log store over the hash-chained file WAL: an entry's LSN is its Raft index + 1.
//!
//! ```text
//!  openraft ─ append(entries, flushed) ─► convert (entry.rs, chained on the last hash)
//!                                          ─► FileStore::append_blocking (one fdatasync)
//!                                          ─► recent cache ─► flushed.io_completed
//!           ─ truncate_after(id) ─► FileStore::truncate_suffix  (a conflicting uncommitted tail)
//!           ─ purge(id) ─────────► side record `purged` first, then FileStore::compact_prefix
//!           ─ save_vote(v) ──────► side record, synced before it returns
//!           ─ save_committed(id) ► the commit saver (committed.rs): its own record, saved
//!                                  lazily; read back at open, clamped to the log held
//! ```
//!
//! The file store blocks on fsync, so every call runs on tokio's blocking pool behind one
//! mutex; openraft serializes the log store's mutations, and readers (replication to other
//! members) take the recent entries from an in-memory cache without waiting for a sync.
//! What openraft needs beyond the log (the vote, the last purged log id with its term, the
//! log id of the current snapshot) lives in one small side record in the data directory
//! (`cluster`), written atomically and synced: a vote is never lost, so a member never votes
//! twice in a term.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::StorageError;
use cstore_core::{LogPosition, Lsn};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use tracing::warn;

use super::committed::{COMMITTED_RECORD, CommitSaver, committed_in_log};
use super::entry::{log_id_of, lsn_of, to_log_entry, to_raft_entry};
use super::types::{ClusterTypes, RaftEntry, RaftLogId, RaftSnapshotMeta, RaftVote};
use crate::wal::FileStore;

/// The side record's file name in the data directory.
pub const SIDE_RECORD: &str = "cluster";
/// Most recent entries kept in memory for replication reads.
const RECENT_ENTRIES_MAX: usize = 16_384;

/// What openraft needs beyond the log, kept durably beside it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SideRecord {
    /// The member this data directory belongs to.
    pub node_id: u64,
    /// The cluster's identity: the hash of its first entry (the initial membership), once known.
    pub cluster_id: Option<String>,
    /// The last vote cast or accepted.
    pub vote: Option<RaftVote>,
    /// The last purged (compacted) entry.
    pub purged: Option<RaftLogId>,
    /// The log id of the snapshot last saved or installed.
    pub snapshot: Option<RaftLogId>,
    /// Set while a snapshot install replaces the log: the `(purged, snapshot)` from before it,
    /// so that `open` can tell a finished install from one a crash interrupted.
    pub installing: Option<(Option<RaftLogId>, Option<RaftLogId>)>,
}

/// Why the log store cannot open.
#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    /// The file store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The data directory belongs to another member.
    #[error(
        "the data directory belongs to cluster member {found}, not {expected}: start it with \
         --node-id {found}, or give member {expected} a fresh directory"
    )]
    OtherMember {
        /// `--node-id`.
        expected: u64,
        /// What the side record says.
        found: u64,
    },
    /// A single-node data directory (it has entries but was never a cluster member).
    #[error(
        "the data directory holds a single-node log ({entries} entries) and no cluster record: \
         a cluster member starts on a fresh directory"
    )]
    NotAMember {
        /// How many entries it holds.
        entries: u64,
    },
}

/// The store and what openraft keeps beside it, shared by the log store, its readers and the
/// state machine (which saves and installs snapshots in the same file store).
pub struct LogShared {
    store: Mutex<FileStore>,
    side: Mutex<SideRecord>,
    /// The log id of the last entry appended (or the last purged one), as openraft sees the log:
    /// appended entries are readable at once, durable once the WAL thread synced them.
    last: Mutex<Option<RaftLogId>>,
    /// The position (LSN, hash) of the last entry appended, synced or not: the next entry's
    /// hash chains on it.
    appended: Mutex<LogPosition>,
    /// The newest entries, ascending and contiguous, ending at `last`. Entries the WAL thread
    /// has not synced yet are never dropped from it.
    recent: Mutex<VecDeque<RaftEntry>>,
    /// The last LSN the WAL thread made durable.
    durable: Mutex<Lsn>,
    /// Appends (and barriers) for the WAL thread, in order.
    wal: Mutex<std::sync::mpsc::Sender<WalJob>>,
    /// The first append failure, if any: openraft has stopped this member's Raft since.
    append_failure: Mutex<Option<StorageError>>,
    /// Keeps the committed index saved (openraft's `save_committed`).
    committed: CommitSaver,
    /// The committed index found at open, clamped to the log held (`read_committed`).
    recovered_committed: Option<RaftLogId>,
    /// The current snapshot's meta (its log id and membership), once known: finding the
    /// membership otherwise takes decoding the whole snapshot into a state.
    snapshot_meta: Mutex<Option<RaftSnapshotMeta>>,
    /// Held through a snapshot save or install: a save writes its file without the store's
    /// lock, and no other snapshot may be numbered meanwhile.
    snapshot_io: Mutex<()>,
}

/// Work for the WAL thread.
enum WalJob {
    /// Write and sync these entries, then report the flush to openraft.
    Append {
        entries: Vec<LogEntry>,
        flushed: IOFlushed<ClusterTypes>,
    },
    /// Answer once every earlier job is done (before a truncation, a purge, a vote).
    Barrier(std::sync::mpsc::Sender<()>),
}

impl Debug for LogShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogShared")
            .field("last", &*lock(&self.last))
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("cluster log lock poisoned")
}

fn io_error(e: StorageError) -> io::Error {
    io::Error::other(e.to_string())
}

impl LogShared {
    /// Opens the cluster log over `store` for member `node_id`: a fresh directory becomes this
    /// member's; a directory of another member, or a single-node log, is refused.
    pub fn open(mut store: FileStore, node_id: u64) -> Result<Arc<LogShared>, LogOpenError> {
        let side = match store.load_side_record::<SideRecord>(SIDE_RECORD)? {
            Some(side) if side.node_id != node_id => {
                return Err(LogOpenError::OtherMember {
                    expected: node_id,
                    found: side.node_id,
                });
            }
            Some(side) => side,
            None => {
                let held = store.log_state().last.lsn;
                if held > Lsn::ZERO {
                    return Err(LogOpenError::NotAMember { entries: held.0 });
                }
                let side = SideRecord {
                    node_id,
                    ..SideRecord::default()
                };
                store.save_side_record_blocking(SIDE_RECORD, &side)?;
                side
            }
        };
        let side = finish_or_undo_install(&mut store, side)?;
        let state = store.log_state();
        let last = if state.last.lsn >= state.first {
            let entry = store.read_range_blocking(state.last.lsn, state.last.lsn.next())?;
            Some(log_id_of(&entry[0]))
        } else {
            side.purged
        };
        let appended = state.last;
        let committed_file = store.side_record_file(COMMITTED_RECORD);
        let saved = CommitSaver::load(&committed_file);
        let recovered_committed = committed_in_log(saved, side.purged, last, |index| {
            let lsn = lsn_of(index);
            if lsn < state.first || lsn > state.last.lsn {
                return None;
            }
            let held = store.read_range_blocking(lsn, lsn.next()).ok()?;
            held.first().map(log_id_of)
        });
        let committed = CommitSaver::start(committed_file, saved)?;
        let (wal, jobs) = std::sync::mpsc::channel();
        let shared = Arc::new(LogShared {
            store: Mutex::new(store),
            side: Mutex::new(side),
            last: Mutex::new(last),
            appended: Mutex::new(appended),
            recent: Mutex::new(VecDeque::new()),
            durable: Mutex::new(appended.lsn),
            wal: Mutex::new(wal),
            append_failure: Mutex::new(None),
            committed,
            recovered_committed,
            snapshot_meta: Mutex::new(None),
            snapshot_io: Mutex::new(()),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("cstore-raft-wal".into())
            .spawn(move || wal_thread(&weak, &jobs))
            .map_err(|e| StorageError::Io(format!("cannot start the WAL thread: {e}")))?;
        Ok(shared)
    }

    /// The state of the log's storage for `/v1/status`: `ok`, or `disk_full` / `failed` after
    /// an append failed (the member's Raft has stopped; a restart recovers).
    pub fn storage_health(&self) -> &'static str {
        match &*lock(&self.append_failure) {
            None => "ok",
            Some(StorageError::Full(_)) => "disk_full",
            Some(_) => "failed",
        }
    }

    /// Saves the latest committed index now, rather than within the saver's interval (a clean
    /// shutdown).
    pub fn flush_committed(&self) -> Result<(), StorageError> {
        self.committed.flush()
    }

    /// The committed index found at open (what openraft re-applies the log up to at start).
    pub fn recovered_committed(&self) -> Option<RaftLogId> {
        self.recovered_committed
    }

    /// The cluster's identity, once known.
    pub fn cluster_id(&self) -> Option<String> {
        lock(&self.side).cluster_id.clone()
    }

    /// The side record as it is now.
    pub fn side(&self) -> SideRecord {
        lock(&self.side).clone()
    }

    fn save_side(&self, change: impl FnOnce(&mut SideRecord)) -> Result<(), StorageError> {
        let mut side = lock(&self.side);
        let mut next = side.clone();
        change(&mut next);
        lock(&self.store).save_side_record_blocking(SIDE_RECORD, &next)?;
        *side = next;
        Ok(())
    }

    /// Records the cluster's identity (the hash of its first entry) the first time it is seen.
    pub fn note_cluster_id(&self, id: &str) -> Result<(), StorageError> {
        if lock(&self.side).cluster_id.is_some() {
            return Ok(());
        }
        self.save_side(|side| side.cluster_id = Some(id.to_string()))
    }

    /// The position of the last entry held (for status): LSN and hash.
    pub fn last_position(&self) -> LogPosition {
        lock(&self.store).log_state().last
    }

    /// The entries with `from <= lsn < to` as stored (hash-chained), from the file store.
    pub fn read_log_entries(&self, from: Lsn, to: Lsn) -> Result<Vec<LogEntry>, StorageError> {
        lock(&self.store).read_range_blocking(from, to)
    }

    /// Saves `snapshot` (taken at `log_id`) as the current one. The log is kept: openraft
    /// purges what the snapshot covers when it chooses to.
    pub fn save_snapshot(
        &self,
        snapshot: &Snapshot,
        meta: &RaftSnapshotMeta,
    ) -> Result<(), StorageError> {
        let log_id = meta.last_log_id.expect("a saved snapshot has a log id");
        assert_eq!(snapshot.position.lsn, lsn_of(log_id.index()));
        // The snapshot's entry must be on disk first: the file store reads a snapshot past its
        // last entry as a reset of the log, which would drop appends the WAL thread holds.
        self.barrier()
            .map_err(|e| StorageError::Io(e.to_string()))?;
        // Hashed again and written with the store's lock let go in between: the WAL thread
        // keeps syncing appends (and the member acknowledging them) while a large state is
        // written. One save or install at a time.
        let _one_at_a_time = lock(&self.snapshot_io);
        let save = lock(&self.store).begin_snapshot(snapshot.position)?;
        let written = save.write(snapshot)?;
        lock(&self.store).finish_snapshot(written)?;
        self.save_side(|side| side.snapshot = Some(log_id))?;
        *lock(&self.snapshot_meta) = Some(meta.clone());
        Ok(())
    }

    /// Installs a snapshot received from the leader. When the log holds the snapshot's last
    /// entry (same LSN, same hash) the entries after it stay; otherwise the whole log is
    /// replaced by the snapshot and continues after it.
    pub fn install_snapshot(
        &self,
        snapshot: &Snapshot,
        meta: &RaftSnapshotMeta,
    ) -> Result<(), StorageError> {
        let log_id = meta
            .last_log_id
            .expect("an installed snapshot has a log id");
        let _one_at_a_time = lock(&self.snapshot_io);
        // Forgotten first: a failure below leaves no meta of a snapshot that is not current.
        *lock(&self.snapshot_meta) = None;
        let lsn = snapshot.position.lsn;
        assert_eq!(lsn, lsn_of(log_id.index()));
        self.barrier()
            .map_err(|e| StorageError::Io(e.to_string()))?;
        let mut store = lock(&self.store);
        let state = store.log_state();
        let holds = lsn >= state.first
            && lsn <= state.last.lsn
            && store.read_range_blocking(lsn, lsn.next())?[0].position() == snapshot.position;
        if holds {
            store.save_snapshot_blocking(snapshot)?;
            drop(store);
            self.save_side(|side| side.snapshot = Some(log_id))?;
            *lock(&self.snapshot_meta) = Some(meta.clone());
            return Ok(());
        }
        // Journal the install in the side record first: a crash before the file store's
        // reset commits leaves the old log, and `open` puts the old purge point back.
        drop(store);
        self.save_side(|side| {
            side.installing = Some((side.purged, side.snapshot));
            side.snapshot = Some(log_id);
            side.purged = Some(log_id);
        })?;
        let mut store = lock(&self.store);
        store.install_snapshot_blocking(snapshot)?;
        *lock(&self.appended) = store.log_state().last;
        *lock(&self.durable) = store.log_state().last.lsn;
        drop(store);
        lock(&self.recent).clear();
        *lock(&self.last) = Some(log_id);
        self.save_side(|side| side.installing = None)?;
        *lock(&self.snapshot_meta) = Some(meta.clone());
        Ok(())
    }

    /// Remembers the current snapshot's meta (found by whoever decoded it, at start).
    pub fn note_snapshot_meta(&self, meta: RaftSnapshotMeta) {
        *lock(&self.snapshot_meta) = Some(meta);
    }

    /// The current snapshot's meta, when it is known and of the snapshot at `log_id`.
    pub fn snapshot_meta(&self, log_id: RaftLogId) -> Option<RaftSnapshotMeta> {
        lock(&self.snapshot_meta)
            .clone()
            .filter(|meta| meta.last_log_id == Some(log_id))
    }

    /// The snapshot last saved or installed, with its log id.
    ///
    /// A crash between the snapshot file and the side record (in [`Self::save_snapshot`])
    /// leaves the file newer than the record says, and the older snapshot file is gone. The
    /// log is purged only after the record names the new snapshot, so the log still holds the
    /// new snapshot's entry: its log id is read from there (same LSN and hash, or nothing) and
    /// the record is brought up to date. Without it the member would start from an empty state
    /// over a log purged past the old snapshot.
    pub fn current_snapshot(&self) -> Result<Option<(Snapshot, RaftLogId)>, StorageError> {
        let Some(snapshot) = lock(&self.store).load_snapshot_blocking()? else {
            return Ok(None);
        };
        let recorded = lock(&self.side).snapshot;
        if let Some(log_id) = recorded
            && lsn_of(log_id.index()) == snapshot.position.lsn
        {
            return Ok(Some((snapshot, log_id)));
        }
        let Some(log_id) = self.log_id_in_log(snapshot.position)? else {
            warn!(
                snapshot_lsn = snapshot.position.lsn.0,
                recorded = ?recorded,
                "the snapshot file is not the one the side record names, and the log does not \
                 hold its entry: it is not used"
            );
            return Ok(None);
        };
        warn!(
            snapshot_lsn = snapshot.position.lsn.0,
            recorded = ?recorded,
            "the side record named an older snapshot (a crash while a snapshot was saved): \
             taking the newer one, whose entry the log holds"
        );
        self.save_side(|side| side.snapshot = Some(log_id))?;
        Ok(Some((snapshot, log_id)))
    }

    /// The log id of the stored entry at `position` (same LSN and hash), if the log holds it.
    fn log_id_in_log(&self, position: LogPosition) -> Result<Option<RaftLogId>, StorageError> {
        let store = lock(&self.store);
        let state = store.log_state();
        if position.lsn < state.first || position.lsn > state.last.lsn || position.lsn == Lsn::ZERO
        {
            return Ok(None);
        }
        let held = store.read_range_blocking(position.lsn, position.lsn.next())?;
        Ok(held
            .first()
            .filter(|entry| entry.position() == position)
            .map(log_id_of))
    }

    fn entries(&self, start: u64, end: u64) -> io::Result<Vec<RaftEntry>> {
        // The newest come from memory (some may not be on disk yet), older ones from the store.
        let mut from_memory = Vec::new();
        let mut memory_front = end;
        {
            let recent = lock(&self.recent);
            if let Some(front) = recent.front() {
                let front = front.log_id.index();
                if front < end {
                    let skip = start.saturating_sub(front) as usize;
                    memory_front = front.max(start);
                    from_memory = recent
                        .iter()
                        .skip(skip)
                        .take((end - memory_front) as usize)
                        .cloned()
                        .collect();
                }
            }
        }
        let mut entries = Vec::new();
        if start < memory_front {
            let store = lock(&self.store);
            let state = store.log_state();
            let from = lsn_of(start).max(state.first);
            let to = lsn_of(memory_front).min(state.last.lsn.next());
            if from < to {
                let stored = store.read_range_blocking(from, to).map_err(io_error)?;
                entries.extend(stored.iter().map(to_raft_entry));
            }
        }
        entries.extend(from_memory);
        Ok(entries)
    }

    /// Makes `entries` readable at once and hands them to the WAL thread, which syncs them and
    /// then reports the flush through `flushed`. openraft may replicate them to the other
    /// members meanwhile: the local fsync and the followers' overlap.
    fn append(&self, entries: Vec<RaftEntry>, flushed: IOFlushed<ClusterTypes>) -> io::Result<()> {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            flushed.io_completed(Ok(()));
            return Ok(());
        };
        let mut stored = Vec::with_capacity(entries.len());
        {
            let mut appended = lock(&self.appended);
            let mut prev = *appended;
            for entry in &entries {
                let log_entry = to_log_entry(prev, entry);
                prev = log_entry.position();
                stored.push(log_entry);
            }
            *appended = prev;
            *lock(&self.last) = Some(last);
            let mut recent = lock(&self.recent);
            recent.extend(entries);
            let durable = *lock(&self.durable);
            while recent.len() > RECENT_ENTRIES_MAX
                && recent
                    .front()
                    .is_some_and(|e| lsn_of(e.log_id.index()) <= durable)
            {
                recent.pop_front();
            }
        }
        lock(&self.wal)
            .send(WalJob::Append {
                entries: stored,
                flushed,
            })
            .map_err(|_| io::Error::other("the WAL thread stopped"))
    }

    /// Waits until the WAL thread finished every job handed to it before.
    fn barrier(&self) -> io::Result<()> {
        let (done, wait) = std::sync::mpsc::channel();
        lock(&self.wal)
            .send(WalJob::Barrier(done))
            .map_err(|_| io::Error::other("the WAL thread stopped"))?;
        wait.recv()
            .map_err(|_| io::Error::other("the WAL thread stopped"))
    }

    fn truncate_after(&self, last: Option<RaftLogId>) -> io::Result<()> {
        self.barrier()?;
        let from = last.map_or(Lsn(1), |id| lsn_of(id.index()).next());
        let mut store = lock(&self.store);
        let state = store.log_state();
        if from <= state.last.lsn {
            store.truncate_suffix_blocking(from).map_err(io_error)?;
        }
        *lock(&self.appended) = store.log_state().last;
        drop(store);
        let mut recent = lock(&self.recent);
        while recent
            .back()
            .is_some_and(|e| lsn_of(e.log_id.index()) >= from)
        {
            recent.pop_back();
        }
        *lock(&self.last) = last.or(lock(&self.side).purged);
        Ok(())
    }

    fn purge(&self, log_id: RaftLogId) -> io::Result<()> {
        self.barrier()?;
        self.save_side(|side| side.purged = Some(log_id))
            .map_err(io_error)?;
        let through = lsn_of(log_id.index());
        let mut store = lock(&self.store);
        let state = store.log_state();
        if through >= state.first && through <= state.last.lsn {
            store.compact_prefix_blocking(through).map_err(io_error)?;
        }
        drop(store);
        let mut recent = lock(&self.recent);
        while recent
            .front()
            .is_some_and(|e| e.log_id.index() <= log_id.index())
        {
            recent.pop_front();
        }
        let mut last = lock(&self.last);
        if last.is_none_or(|l| l.index() < log_id.index()) {
            *last = Some(log_id);
        }
        Ok(())
    }

    fn log_state(&self) -> LogState<ClusterTypes> {
        LogState {
            last_purged_log_id: lock(&self.side).purged,
            last_log_id: *lock(&self.last),
        }
    }
}

/// At open, after a crash during a snapshot install: the file store either committed the
/// reset (it starts right after the snapshot) or it did not (the old log is there), and the
/// side record is made to say the same.
fn finish_or_undo_install(
    store: &mut FileStore,
    side: SideRecord,
) -> Result<SideRecord, StorageError> {
    let Some((purged, snapshot)) = side.installing else {
        return Ok(side);
    };
    let installed = side.snapshot.is_some_and(|id| {
        store.log_state().first == lsn_of(id.index()).next()
            && store
                .load_snapshot_blocking()
                .ok()
                .flatten()
                .is_some_and(|s| s.position.lsn == lsn_of(id.index()))
    });
    let fixed = if installed {
        SideRecord {
            installing: None,
            ..side
        }
    } else {
        SideRecord {
            purged,
            snapshot,
            installing: None,
            ..side
        }
    };
    store.save_side_record_blocking(SIDE_RECORD, &fixed)?;
    Ok(fixed)
}

/// The WAL thread: writes the appended entries in order, all that are waiting in one write
/// and one `fdatasync` (group commit across openraft's appends), then reports each flush.
fn wal_thread(shared: &std::sync::Weak<LogShared>, jobs: &std::sync::mpsc::Receiver<WalJob>) {
    while let Ok(first) = jobs.recv() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        let mut entries = Vec::new();
        let mut flushes = Vec::new();
        let mut barriers = Vec::new();
        for job in batch {
            match job {
                WalJob::Append {
                    entries: more,
                    flushed,
                } => {
                    entries.extend(more);
                    flushes.push(flushed);
                }
                WalJob::Barrier(done) => barriers.push(done),
            }
        }
        if !entries.is_empty() {
            let last = entries.last().map(|e| e.lsn);
            let result = lock(&shared.store).append_blocking(&entries);
            match result {
                Ok(()) => {
                    if let Some(last) = last {
                        *lock(&shared.durable) = last;
                    }
                    for flushed in flushes {
                        flushed.io_completed(Ok(()));
                    }
                }
                Err(e) => {
                    // Nothing of the batch is reported flushed, so this member acknowledges
                    // none of it; openraft treats a storage error as fatal and stops the
                    // member's Raft (no votes, no leadership) until it is restarted, which
                    // recovers what is durable. After EIO the store also refuses every later
                    // write; after ENOSPC it is unchanged, but the member stops all the same.
                    let kind = match e {
                        StorageError::Full(_) => "disk_full",
                        _ => "io",
                    };
                    metrics::counter!("cstore_storage_errors_total", "kind" => kind).increment(1);
                    tracing::error!(error = %e, "cluster log append failed; this member's Raft stops");
                    lock(&shared.append_failure).get_or_insert_with(|| e.clone());
                    for flushed in flushes {
                        flushed.io_completed(Err(io_error(e.clone())));
                    }
                }
            }
        }
        // Let go of the store before answering: a caller that waited for the barrier may drop
        // the last handle and expect the directory to be closed.
        drop(shared);
        for done in barriers {
            let _ = done.send(());
        }
    }
}

/// Runs `f` on the blocking pool (the file store syncs).
async fn blocking<T: Send + 'static>(
    shared: &Arc<LogShared>,
    f: impl FnOnce(&LogShared) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(|e| io::Error::other(format!("log store task: {e}")))?
}

/// openraft's log store (and its reader: the same handle).
#[derive(Clone, Debug)]
pub struct LogStore {
    shared: Arc<LogShared>,
}

impl LogStore {
    /// The log store over `shared`.
    pub fn new(shared: Arc<LogShared>) -> LogStore {
        LogStore { shared }
    }
}

/// `[start, end)` of openraft's index range (what its log readers are asked for).
pub fn index_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => i + 1,
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<ClusterTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, io::Error> {
        let (start, end) = index_bounds(&range);
        if start >= end {
            return Ok(Vec::new());
        }
        let end = end.min(
            self.shared
                .log_state()
                .last_log_id
                .map_or(0, |id| id.index() + 1),
        );
        if start >= end {
            return Ok(Vec::new());
        }
        blocking(&self.shared, move |shared| shared.entries(start, end)).await
    }

    async fn read_vote(&mut self) -> Result<Option<RaftVote>, io::Error> {
        Ok(lock(&self.shared.side).vote)
    }
}

impl RaftLogStorage<ClusterTypes> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<ClusterTypes>, io::Error> {
        Ok(self.shared.log_state())
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &RaftVote) -> Result<(), io::Error> {
        let vote = *vote;
        blocking(&self.shared, move |shared| {
            // In order with the appends before it (openraft's IO is one sequence).
            shared.barrier()?;
            shared
                .save_side(|side| side.vote = Some(vote))
                .map_err(io_error)
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<ClusterTypes>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        self.shared.append(entries, callback)
    }

    async fn truncate_after(&mut self, last_log_id: Option<RaftLogId>) -> Result<(), io::Error> {
        blocking(&self.shared, move |shared| {
            shared.truncate_after(last_log_id)
        })
        .await
    }

    async fn purge(&mut self, log_id: RaftLogId) -> Result<(), io::Error> {
        blocking(&self.shared, move |shared| shared.purge(log_id)).await
    }

    async fn save_committed(&mut self, committed: Option<RaftLogId>) -> Result<(), io::Error> {
        // Saved by the commit saver's thread soon after (see committed.rs for why lazily).
        self.shared.committed.note(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<RaftLogId>, io::Error> {
        // openraft asks once, at start.
        Ok(self.shared.recovered_committed)
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;
    use crate::cluster::types::Proposal;
    use cstore_core::doc::RawDoc;
    use cstore_core::state::State;
    use cstore_core::{Op, TimestampMs, Txn};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cstore-cluster-log-{name}-{}-{}",
            std::process::id(),
            crate::clock::now_ms().0
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entry(term: u64, index: u64) -> RaftEntry {
        let doc = RawDoc::from_value(&serde_json::json!({"_id": format!("d{index}")})).unwrap();
        RaftEntry {
            log_id: RaftLogId::new_term_index(term, index),
            payload: EntryPayload::Normal(Proposal {
                timestamp: TimestampMs(index),
                txn: Txn::single(Op::Insert {
                    collection: "c".into(),
                    doc,
                }),
            }),
        }
    }

    /// Appends and waits until the WAL thread synced.
    fn append(log: &LogShared, entries: Vec<RaftEntry>) {
        log.append(entries, IOFlushed::noop()).unwrap();
        log.barrier().unwrap();
    }

    fn open(dir: &std::path::Path) -> Arc<LogShared> {
        LogShared::open(FileStore::open(dir).unwrap(), 7).unwrap()
    }

    #[test]
    fn entries_votes_and_truncation_survive_a_reopen() {
        let dir = temp_dir("reopen");
        let log = open(&dir);
        append(&log, (0..6).map(|i| entry(1, i)).collect());
        let vote = RaftVote::new(2, 7);
        log.save_side(|side| side.vote = Some(vote)).unwrap();
        // A conflicting tail replaced by a new term's entries.
        log.truncate_after(Some(RaftLogId::new_term_index(1, 3)))
            .unwrap();
        append(&log, vec![entry(2, 4), entry(2, 5)]);
        let before = log.last_position();
        drop(log);

        let log = open(&dir);
        assert_eq!(log.side().vote, Some(vote));
        assert_eq!(log.last_position(), before);
        assert_eq!(
            log.log_state().last_log_id,
            Some(RaftLogId::new_term_index(2, 5))
        );
        let read = log.entries(0, 6).unwrap();
        let expected: Vec<RaftEntry> = (0..4)
            .map(|i| entry(1, i))
            .chain([entry(2, 4), entry(2, 5)])
            .collect();
        assert_eq!(read, expected);
        // The stored chain is the one `entry.rs` builds from these entries.
        let mut prev = LogPosition::START;
        for e in &expected {
            prev = to_log_entry(prev, e).position();
        }
        assert_eq!(prev, before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_committed_index_survives_a_reopen_clamped_to_the_log_held() {
        let dir = temp_dir("committed");
        let log = open(&dir);
        assert_eq!(log.recovered_committed(), None);
        append(&log, (0..6).map(|i| entry(1, i)).collect());
        // Saved lazily by the saver's thread.
        log.committed.note(Some(RaftLogId::new_term_index(1, 3)));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while log.committed.saved() != Some(RaftLogId::new_term_index(1, 3)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the saver never saved"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(log);
        let log = open(&dir);
        assert_eq!(
            log.recovered_committed(),
            Some(RaftLogId::new_term_index(1, 3))
        );
        // Known committed past the entries that reached the disk (a follower's view): the
        // last entry held is what comes back.
        log.committed.note(Some(RaftLogId::new_term_index(1, 9)));
        log.flush_committed().unwrap();
        drop(log);
        let log = open(&dir);
        assert_eq!(
            log.recovered_committed(),
            Some(RaftLogId::new_term_index(1, 5))
        );
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_committed_record_is_ignored_and_the_vote_kept() {
        let dir = temp_dir("committed-damaged");
        let log = open(&dir);
        append(&log, (0..4).map(|i| entry(1, i)).collect());
        let vote = RaftVote::new(3, 7);
        log.save_side(|side| side.vote = Some(vote)).unwrap();
        log.committed.note(Some(RaftLogId::new_term_index(1, 2)));
        log.flush_committed().unwrap();
        let path = lock(&log.store).side_record_file(COMMITTED_RECORD).path();
        drop(log);
        let good = std::fs::read(&path).unwrap();
        assert!(good.len() > 8);
        let mut damaged: Vec<Vec<u8>> = Vec::new();
        // Every single flipped byte, a torn (short) record, an empty file, bytes after it.
        for i in 0..good.len() {
            let mut bytes = good.clone();
            bytes[i] ^= 0x40;
            damaged.push(bytes);
        }
        damaged.push(good[..good.len() / 2].to_vec());
        damaged.push(Vec::new());
        damaged.push([good.as_slice(), b"x"].concat());
        for bytes in damaged {
            std::fs::write(&path, &bytes).unwrap();
            let log = open(&dir);
            assert_eq!(log.recovered_committed(), None, "{bytes:?} was taken");
            assert_eq!(log.side().vote, Some(vote));
            drop(log);
        }
        // Restored, it is taken again.
        std::fs::write(&path, &good).unwrap();
        let log = open(&dir);
        assert_eq!(
            log.recovered_committed(),
            Some(RaftLogId::new_term_index(1, 2))
        );
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_of_another_member_or_a_single_node_log_is_refused() {
        let dir = temp_dir("others");
        drop(open(&dir));
        let error = LogShared::open(FileStore::open(&dir).unwrap(), 8).unwrap_err();
        assert!(
            matches!(
                error,
                LogOpenError::OtherMember {
                    expected: 8,
                    found: 7
                }
            ),
            "{error}"
        );

        let single = temp_dir("single");
        let mut store = FileStore::open(&single).unwrap();
        let state = State::new();
        let e = cstore_core::LogEntry::new(
            state.applied(),
            cstore_core::Term(1),
            TimestampMs(1),
            Txn::tick(),
        );
        store.append_blocking(&[e]).unwrap();
        let error = LogShared::open(store, 1).unwrap_err();
        assert!(
            matches!(error, LogOpenError::NotAMember { entries: 1 }),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&single).unwrap();
    }

    #[test]
    fn an_install_interrupted_before_the_reset_leaves_the_old_log_consistent() {
        let dir = temp_dir("install");
        let log = open(&dir);
        append(&log, (0..4).map(|i| entry(1, i)).collect());
        let held = log.last_position();
        // The crash: the side record journaled an install at index 20; the file store never
        // got it.
        log.save_side(|side| {
            side.installing = Some((side.purged, side.snapshot));
            side.purged = Some(RaftLogId::new_term_index(3, 20));
            side.snapshot = Some(RaftLogId::new_term_index(3, 20));
        })
        .unwrap();
        drop(log);
        let log = open(&dir);
        assert_eq!(log.side().purged, None);
        assert_eq!(log.side().snapshot, None);
        assert_eq!(log.side().installing, None);
        assert_eq!(log.last_position(), held);
        assert_eq!(
            log.log_state().last_log_id,
            Some(RaftLogId::new_term_index(1, 3))
        );

        // A finished install is kept.
        let mut state = State::new();
        for i in 0..4 {
            let e = to_log_entry(state.applied(), &entry(1, i));
            state.apply(&e).unwrap();
        }
        let snapshot = state.snapshot();
        let id = RaftLogId::new_term_index(1, 3);
        let meta = RaftSnapshotMeta {
            last_log_id: Some(id),
            ..RaftSnapshotMeta::default()
        };
        // The log holds it: the entries stay.
        log.install_snapshot(&snapshot, &meta).unwrap();
        assert_eq!(log.snapshot_meta(id), Some(meta));
        assert_eq!(log.last_position(), held);
        drop(log);
        let log = open(&dir);
        assert_eq!(log.side().snapshot, Some(id));
        assert!(log.current_snapshot().unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_crash_between_the_snapshot_file_and_the_side_record_keeps_the_newer_snapshot() {
        let dir = temp_dir("snapshot-crash");
        let log = open(&dir);
        append(&log, (0..6).map(|i| entry(1, i)).collect());
        let mut state = State::new();
        let mut snapshots = Vec::new();
        for i in 0..6 {
            let e = to_log_entry(state.applied(), &entry(1, i));
            state.apply(&e).unwrap();
            snapshots.push(state.snapshot());
        }
        let at = |index: u64| RaftSnapshotMeta {
            last_log_id: Some(RaftLogId::new_term_index(1, index)),
            ..RaftSnapshotMeta::default()
        };
        log.save_snapshot(&snapshots[2], &at(2)).unwrap();
        // The crash: the file store wrote the snapshot at index 4; the side record still names 2.
        lock(&log.store)
            .save_snapshot_blocking(&snapshots[4])
            .unwrap();
        drop(log);

        let log = open(&dir);
        let (snapshot, log_id) = log.current_snapshot().unwrap().expect("a usable snapshot");
        assert_eq!(snapshot.position, snapshots[4].position);
        assert_eq!(log_id, RaftLogId::new_term_index(1, 4));
        assert_eq!(log.side().snapshot, Some(log_id), "the record is repaired");
        drop(log);
        assert!(open(&dir).current_snapshot().unwrap().is_some());

        // A snapshot file whose entry the log does not hold (another history) is not used.
        let other_dir = temp_dir("snapshot-foreign");
        let other = open(&other_dir);
        append(&other, (0..6).map(|i| entry(2, i)).collect());
        lock(&other.store)
            .save_snapshot_blocking(&snapshots[4])
            .unwrap();
        assert!(other.current_snapshot().unwrap().is_none());
        assert_eq!(other.side().snapshot, None);
        drop(other);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&other_dir).unwrap();
    }
}
