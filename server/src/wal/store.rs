//! [`FileStore`]: the log in segment files, a snapshot file and two small files beside it.
//!
//! Every mutation is durable before it returns, and the order of the durable steps is chosen
//! so that a crash between any two of them leaves a directory that recovery reads back as
//! either the old state or the new one (see each method). The in-memory part is only the
//! offset index and a few positions; entries are read from the files when asked for.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cstore_core::log::LogEntry;
use cstore_core::log::codec::{RecordKind, encode_entry};
use cstore_core::log::decode_own_entry;
use cstore_core::snapshot::Snapshot;
use cstore_core::state::{SnapshotError, State};
use cstore_core::storage::{
    LogState, LogStore, Metadata, REPLAY_CHUNK, StorageError, StorageResult, check_contiguous,
    check_truncate, readable_range,
};
use cstore_core::types::{LogPosition, Lsn};

use super::durable::{
    create_dir, io_error, io_failure, poisoning, read_record_file, remove_file, remove_temp_files,
    sync_dir, write_record_file,
};
use super::fault::{FaultOp, FaultPlan};
use super::recovery::scan_segments;
use super::segment::Segment;
use super::{WalOptions, WalStats, snapshot_file};

mod reset;
pub use reset::{SnapshotSave, WrittenSnapshot};

/// The log's folder inside the data directory.
const WAL_DIR: &str = "wal";
/// The metadata file, in the data directory.
const META_FILE: &str = "meta";
/// The compaction point and the last finished reset (a `reset::CompactionPoint`), in the
/// log's folder.
const COMPACTED_FILE: &str = "compacted";
/// Largest segment size accepted in options: offsets are kept as `u32`.
const SEGMENT_BYTES_LIMIT: u64 = 1 << 30;
/// The append buffer is kept between calls up to this capacity, and dropped above it.
const SCRATCH_KEEP_BYTES: usize = 4 << 20;
/// How far past its records an append extends the last segment's file, with zeros, when the
/// records do not fit in the file as it is (see [`FileStore::write_run`]). Smaller segments
/// (tests) reserve at most their own size.
const ROOM_BYTES: u64 = 1 << 20;

/// A [`LogStore`] in files, for the server. See the [module docs](super) for the layout.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    wal_dir: PathBuf,
    options: WalOptions,
    /// Ascending and gap-free. Empty, or the last one ends at `last` and the first one ends
    /// above `compacted` (segments wholly at or below it are deleted).
    segments: Vec<Segment>,
    /// `segments.last()`'s file, opened on first use.
    active: Option<Active>,
    /// The last compacted entry (`START` if none).
    compacted: LogPosition,
    /// The last entry held, or `compacted` when none is.
    last: LogPosition,
    /// The current snapshot file, if any.
    snapshot_path: Option<PathBuf>,
    /// The sequence number of the current snapshot (0 when none was ever saved).
    snapshot_sequence: u64,
    /// The sequence of the snapshot whose log reset was last finished (0 if none); kept in
    /// the compaction point file so that recovery can tell a finished reset from one a crash
    /// interrupted.
    reset_sequence: u64,
    metadata: Option<Metadata>,
    stats: WalStats,
    /// Set when a mutation failed with an IO error: what is on disk is then unknown, so every
    /// later mutation is refused until the store is reopened (and recovered). Out of space
    /// (`StorageError::Full`) does not set it: those failures leave the store as it was.
    failure: Option<String>,
    /// Injected faults (tests only; see `fault.rs`).
    faults: FaultPlan,
    scratch: Vec<u8>,
    /// `dir/LOCK`, held with an exclusive advisory lock for as long as the store is open, so
    /// a second process cannot open (and corrupt) the same data directory.
    _lock: File,
    /// While set (see [`FileStore::leaving_removals`]): the files the store no longer needs,
    /// collected to be removed by the caller instead of now.
    removals: Option<Removals>,
    /// The thread removing files in the background, if one was started
    /// ([`FileStore::remove_in_background`]); the store waits for it when it closes.
    removing: Option<std::thread::JoinHandle<()>>,
}

/// The last segment's open file. It may end past the segment's records: appends reserve
/// room ahead of them, written as zeros and synced, so that most appends overwrite bytes the
/// file already has and their `fdatasync` flushes only data. An append that grows the file
/// also changes its size and block map, which ext4 makes durable with a journal commit: on
/// this machine's disk that took an `fdatasync` from about 90 to 135 µs and 45 to 70 µs of
/// CPU (docs/bench/single-node-insert-profile.md).
///
/// The room is zeros after the last whole record, which recovery already reads as a torn tail
/// and cuts (`recovery.rs`), and readers of a live directory as the end of the log
/// (`reader.rs`). Only the last segment has room: it is cut before the next segment is
/// created, and when the store closes.
#[derive(Debug)]
struct Active {
    file: File,
    /// The file's length: the segment's records, then the room.
    file_len: u64,
}

impl Drop for FileStore {
    /// Cuts the last segment's room (a directory left by a clean close holds only records;
    /// after a crash, recovery cuts it), then waits for the removals in the background, so that
    /// whoever opens the directory next (a restart in the same process) finds no file
    /// vanishing under it.
    fn drop(&mut self) {
        if self.failure.is_none() {
            let _ = self.cut_room();
        }
        if let Some(removing) = self.removing.take() {
            let _ = removing.join();
        }
    }
}

/// Files a store no longer needs (older snapshots, compacted segments), to remove off the
/// thread that appends: unlinking a snapshot of hundreds of megabytes and syncing its
/// directory held a leader's commits for 40 to 75 ms. Removing them is not needed for
/// correctness (the store never reads them again, and opening the store removes any left),
/// only for space.
#[derive(Debug, Default)]
pub struct Removals {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

/// How much of a file [`Removals::remove`] cuts at a time, and how long it pauses after each.
const REMOVAL_CUT_BYTES: u64 = 16 << 20;
const REMOVAL_CUT_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Cuts `path` down to nothing, [`REMOVAL_CUT_BYTES`] at a time from its end.
fn shrink_gradually(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > REMOVAL_CUT_BYTES {
        len -= REMOVAL_CUT_BYTES;
        file.set_len(len)?;
        std::thread::sleep(REMOVAL_CUT_PAUSE);
    }
    Ok(())
}

impl Removals {
    /// True when there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Removes the files (one already gone is fine), then syncs their directories. A large
    /// file is first cut down a few megabytes at a time, with a pause after each cut: freeing
    /// hundreds of megabytes at once makes one large journal transaction that the log's next
    /// `fdatasync` waits for (30 to 40 ms, measured on ext4).
    pub fn remove(self) -> StorageResult<()> {
        for file in &self.files {
            if let Err(e) = shrink_gradually(file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(io_error("cannot truncate", file, &e));
            }
            match std::fs::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error("cannot remove", file, &e));
                }
                _ => {}
            }
        }
        for dir in &self.dirs {
            sync_dir(dir, &mut WalStats::default())?;
        }
        Ok(())
    }
}

/// A side record of the data directory, written and read without the store (see
/// [`FileStore::side_record_file`]).
#[derive(Clone, Debug)]
pub struct SideRecordFile {
    dir: PathBuf,
    name: String,
}

impl SideRecordFile {
    /// Replaces the record durably and atomically: a crash leaves the old record or the new.
    pub fn save_blocking<T: serde::Serialize>(&self, value: &T) -> StorageResult<()> {
        let mut stats = WalStats::default();
        write_record_file(
            &self.dir,
            &self.name,
            RecordKind::Metadata,
            value,
            &mut stats,
        )
    }

    /// The record; `None` when there is none, `Corrupt` when it is damaged.
    pub fn load<T: serde::de::DeserializeOwned>(&self) -> StorageResult<Option<T>> {
        read_record_file(&self.dir.join(&self.name), RecordKind::Metadata)
    }

    /// The record's path (tests damage it).
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir` with default options, recovering it.
    pub fn open(dir: impl AsRef<Path>) -> StorageResult<FileStore> {
        FileStore::open_with(dir, WalOptions::default())
    }

    /// Opens the store in `dir`, recovering it: leftover temp files are removed, every record
    /// is checked, a torn tail is truncated, an interrupted compaction or snapshot reset is
    /// finished. Fails with `Corrupt` (naming the file and byte offset) when acknowledged data
    /// is damaged.
    pub fn open_with(dir: impl AsRef<Path>, options: WalOptions) -> StorageResult<FileStore> {
        if options.segment_bytes_max == 0 || options.segment_bytes_max > SEGMENT_BYTES_LIMIT {
            return Err(StorageError::Invalid(format!(
                "segment_bytes_max must be in 1..={SEGMENT_BYTES_LIMIT}, not {}",
                options.segment_bytes_max
            )));
        }
        let dir = dir.as_ref().to_path_buf();
        let wal_dir = dir.join(WAL_DIR);
        let mut stats = WalStats::default();
        create_dir(&dir, &mut stats)?;
        let lock = lock_dir(&dir)?;
        create_dir(&wal_dir, &mut stats)?;
        for folder in [&dir, &wal_dir] {
            if remove_temp_files(folder)? > 0 {
                sync_dir(folder, &mut stats)?;
            }
        }

        let metadata = read_record_file(&dir.join(META_FILE), RecordKind::Metadata)?;
        let snapshot = open_snapshot(&dir, &mut stats)?;
        let newest = snapshot.as_ref().map(|(_, header)| header);
        let point = reset::read_compaction_point(&wal_dir, newest)?;
        // A crash may have come between a reset's snapshot rename and the log's reset: finish
        // it before reading segments that it drops.
        let point = reset::finish_interrupted(&wal_dir, newest, point, &mut stats)?;
        // No entry can follow the last LSN there is: a compaction point or snapshot claiming it
        // is damage (crc-valid or not), refused before anything adds one to it (found by the
        // `wal_dir` fuzz target: it panicked with an LSN overflow).
        if point.position.lsn == Lsn(u64::MAX) {
            return Err(StorageError::Corrupt(format!(
                "{}: the compaction point claims lsn {}, after which no entry fits",
                wal_dir.display(),
                point.position.lsn
            )));
        }
        // The replay starts after the snapshot the store holds; the entries it will not read
        // are checked in full here.
        let replayed_above = options
            .hashes_checked_by_replay
            .then(|| newest.map_or(Lsn::ZERO, |header| header.position.lsn));
        let scan = scan_segments(
            &wal_dir,
            replayed_above,
            options.scan_read_bytes,
            &mut stats,
        )?;

        let mut store = FileStore {
            dir,
            wal_dir,
            options,
            segments: scan.segments,
            active: None,
            compacted: point.position,
            last: LogPosition::START,
            snapshot_path: snapshot.as_ref().map(|(path, _)| path.clone()),
            snapshot_sequence: newest
                .map_or(0, |header| header.sequence)
                .max(point.reset_sequence),
            reset_sequence: point.reset_sequence,
            metadata,
            stats,
            failure: None,
            faults: FaultPlan::from_env(),
            scratch: Vec::new(),
            _lock: lock,
            removals: None,
            removing: None,
        };
        store.check_compaction_point()?;
        store.last = match scan.last {
            Some(last) if last.lsn > store.compacted.lsn => last,
            _ => store.compacted,
        };
        store.drop_compacted_segments()?;
        store.check_invariants();
        Ok(store)
    }

    /// Makes the store's own file calls fail as `plan` says (tests of disk faults; see
    /// `fault.rs`). Replaces the plan read from `CSTORE_FAULT` at open.
    #[doc(hidden)]
    pub fn inject_faults(&mut self, plan: FaultPlan) {
        self.faults = plan;
    }

    /// Why the store refuses mutations, if an IO failure poisoned it.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// What the store has done since it was opened.
    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> WalOptions {
        self.options
    }

    /// Segment files currently held.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes of log held on disk, including compacted entries in the first segment.
    pub fn held_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The first held LSN and the last position.
    pub fn log_state(&self) -> LogState {
        LogState {
            first: self.compacted.lsn.next(),
            last: self.last,
        }
    }

    /// [`LogStore::append`], synchronously: all records of a segment go out in one write and
    /// one `fdatasync`, so a batch of many transactions costs one sync (group commit).
    pub fn append_blocking(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        self.guarded(|store| store.append_inner(entries, HashCheck::Here))
    }

    /// [`Self::append_blocking`] for entries whose hashes the caller has just checked or made: a
    /// replica checks every entry it receives (hash, link, term) before it asks for it to be
    /// persisted, and a second SHA-256 pass here was an eighth of a follower's catch-up CPU; the
    /// leader hashes its own entries as it builds them ([`LogStore::append_own`]).
    /// The chain is still checked (each entry must follow the one before by LSN and
    /// `prev_hash`), and every record still gets its checksum.
    pub fn append_hash_checked_blocking(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        self.guarded(|store| store.append_inner(entries, HashCheck::ByCaller))
    }

    /// [`LogStore::read_range`], synchronously. Every record read is checked again (crc, hash,
    /// LSN and chain); a failure there is `Corrupt`.
    pub fn read_range_blocking(&self, from: Lsn, to: Lsn) -> StorageResult<Vec<LogEntry>> {
        match readable_range(from, to, self.compacted.lsn, self.last.lsn)? {
            None => Ok(Vec::new()),
            Some(_) => self.read_physical(from, to),
        }
    }

    /// [`LogStore::truncate_suffix`], synchronously. Any failure poisons the store, out of
    /// space included: the files may already be changed.
    pub fn truncate_suffix_blocking(&mut self, from: Lsn) -> StorageResult<()> {
        self.guarded(|store| store.truncate_inner(from).map_err(poisoning))
    }

    /// [`LogStore::compact_prefix`], synchronously.
    pub fn compact_prefix_blocking(&mut self, through: Lsn) -> StorageResult<()> {
        self.guarded(|store| store.compact_inner(through))
    }

    /// [`LogStore::save_snapshot`], synchronously.
    pub fn save_snapshot_blocking(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        self.guarded(|store| store.save_snapshot_inner(snapshot))
    }

    /// [`LogStore::load_snapshot`], synchronously: reads and verifies the whole file.
    pub fn load_snapshot_blocking(&self) -> StorageResult<Option<Snapshot>> {
        self.snapshot_path
            .as_deref()
            .map(snapshot_file::read)
            .transpose()
    }

    /// [`LogStore::load_snapshot_state`], synchronously, in about the time of the decode alone:
    /// the file is read with every record's crc checked, then its state is decoded here while
    /// a second thread (`cstore-snapshot`) checks the data against the state hash (a sixth of a
    /// restart's time). The state is built on this thread, which lives on, so its memory
    /// belongs to this thread's allocator heap, not to one that exits. The decode trusts the
    /// documents' canonical form ([`State::from_own_snapshot`]): the store wrote them itself,
    /// or fully checked them before it saved them. Data that does not match the hash is
    /// `Corrupt`, and whatever the decode made of it is dropped, a panic included (bytes that
    /// pass every record's crc but not the hash could cause one).
    pub fn load_snapshot_state_blocking(
        &self,
    ) -> StorageResult<Option<Result<State, SnapshotError>>> {
        let Some(path) = self.snapshot_path.as_deref() else {
            return Ok(None);
        };
        let snapshot = snapshot_file::read_unhashed(path)?;
        let (decoded, matches) = std::thread::scope(|scope| {
            let hashing = std::thread::Builder::new()
                .name("cstore-snapshot".into())
                .spawn_scoped(scope, || snapshot.verify());
            let decoded = std::panic::catch_unwind(|| State::from_own_snapshot(&snapshot));
            let matches = match hashing {
                Ok(hashing) => hashing
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No second thread: the hash after the decode, here.
                Err(_) => snapshot.verify(),
            };
            (decoded, matches)
        });
        if !matches {
            return Err(snapshot_file::hash_mismatch(path));
        }
        match decoded {
            Ok(state) => Ok(Some(state)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// [`LogStore::replay`], synchronously: a second thread (`cstore-replay`) reads, decodes
    /// and checks the entries a chunk at a time ([`Self::read_range_blocking`], which proves
    /// each entry's hash) and hands each chunk over, at most two ahead, while `take` has the
    /// one before here; reading was about 40% of a replay. When `take` stops, or a read fails,
    /// the thread ends before this returns.
    pub fn replay_blocking(
        &self,
        from: Lsn,
        to: Lsn,
        mut take: impl FnMut(&LogEntry) -> bool,
    ) -> StorageResult<bool> {
        let chunks = |next: Lsn| {
            (next < to).then(|| (next, Lsn(next.0.saturating_add(REPLAY_CHUNK).min(to.0))))
        };
        std::thread::scope(|scope| {
            let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel(2);
            // Chunks taken come back to be dropped where they were allocated: freeing them
            // here cost mimalloc's cross-thread frees.
            let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<LogEntry>>();
            let reading = std::thread::Builder::new()
                .name("cstore-replay".into())
                .spawn_scoped(scope, move || {
                    for (next, end) in std::iter::successors(chunks(from), |&(_, end)| chunks(end))
                    {
                        done_rx.try_iter().for_each(drop);
                        let read = self.read_range_blocking(next, end);
                        let failed = read.is_err();
                        // A closed channel: `take` stopped, or the reads below failed.
                        if chunk_tx.send(read).is_err() || failed {
                            break;
                        }
                    }
                    drop(chunk_tx);
                    done_rx.into_iter().for_each(drop);
                });
            if reading.is_err() {
                // No second thread: read here, a chunk at a time.
                for (next, end) in std::iter::successors(chunks(from), |&(_, end)| chunks(end)) {
                    if !self.read_range_blocking(next, end)?.iter().all(&mut take) {
                        return Ok(false);
                    }
                }
                return Ok(true);
            }
            for read in chunk_rx {
                let chunk = read?;
                let whole = chunk.iter().all(&mut take);
                let _ = done_tx.send(chunk);
                if !whole {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// [`LogStore::save_metadata`], synchronously.
    pub fn save_metadata_blocking(&mut self, metadata: &Metadata) -> StorageResult<()> {
        self.guarded(|store| {
            write_record_file(
                &store.dir,
                META_FILE,
                RecordKind::Metadata,
                metadata,
                &mut store.stats,
            )?;
            store.metadata = Some(metadata.clone());
            Ok(())
        })
    }

    /// Saves a small record of a layer above the log (the cluster's vote, say) in the file
    /// `name` of the data directory, durably and atomically like the metadata: written to a
    /// temp file, synced, renamed into place, the directory synced. A crash leaves the old
    /// record or the new one.
    pub fn save_side_record_blocking<T: serde::Serialize>(
        &mut self,
        name: &str,
        value: &T,
    ) -> StorageResult<()> {
        assert!(
            ![META_FILE, WAL_DIR, "LOCK"].contains(&name) && !name.contains('/'),
            "side record {name:?} would replace the store's own files"
        );
        self.guarded(|store| {
            write_record_file(
                &store.dir,
                name,
                RecordKind::Metadata,
                value,
                &mut store.stats,
            )
        })
    }

    /// Reads the side record `name` saved by [`Self::save_side_record_blocking`]; `None` when
    /// there is none. A damaged or unreadable record is `Corrupt`, never a silent default.
    pub fn load_side_record<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> StorageResult<Option<T>> {
        read_record_file(&self.dir.join(name), RecordKind::Metadata)
    }

    /// A handle on the side record `name` that does not borrow the store, for a record a
    /// thread of its own rewrites often (the cluster's committed index): its syncs then never
    /// hold up the store's appends. Saved and read like [`Self::save_side_record_blocking`]'s
    /// records (temp file, sync, rename, directory sync; one checksummed record).
    pub fn side_record_file(&self, name: &str) -> SideRecordFile {
        assert!(
            ![META_FILE, WAL_DIR, "LOCK"].contains(&name) && !name.contains('/'),
            "side record {name:?} would replace the store's own files"
        );
        SideRecordFile {
            dir: self.dir.clone(),
            name: name.to_string(),
        }
    }

    /// The metadata last saved (kept in memory; read from disk at open).
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// Runs a mutation unless an earlier one failed; remembers an IO failure.
    fn guarded<T>(
        &mut self,
        mutation: impl FnOnce(&mut FileStore) -> StorageResult<T>,
    ) -> StorageResult<T> {
        if let Some(failure) = &self.failure {
            return Err(StorageError::Io(format!(
                "an earlier write failed ({failure}); reopen the store to recover"
            )));
        }
        let result = mutation(self);
        if let Err(StorageError::Io(message)) = &result {
            self.failure = Some(message.clone());
        }
        if result.is_ok() {
            self.check_invariants();
        }
        result
    }

    fn append_inner(&mut self, entries: &[LogEntry], check: HashCheck) -> StorageResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        check_contiguous(self.last, entries)?;
        // An entry whose hash is wrong would make the next start refuse the log: keep it out.
        if check == HashCheck::Here
            && let Some(bad) = entries.iter().find(|e| !e.verify_hash())
        {
            return Err(StorageError::Invalid(format!(
                "entry {} does not match its hash; refusing to log it",
                bad.lsn
            )));
        }
        let mut rest = entries;
        while !rest.is_empty() {
            let full = self
                .segments
                .last()
                .is_none_or(|s| s.len >= self.options.segment_bytes_max);
            let run = if full {
                self.cut_room()
                    .and_then(|()| self.create_segment(rest[0].lsn))
                    .and_then(|()| self.write_run(rest))
            } else {
                self.write_run(rest)
            };
            match run {
                Ok(taken) => {
                    self.last = rest[taken - 1].position();
                    rest = &rest[taken..];
                }
                // Out of space in a later segment: the runs already synced are taken out
                // again, so that a batch is in the log all or not at all.
                Err(error @ StorageError::Full(_)) if rest.len() < entries.len() => {
                    self.truncate_inner(entries[0].lsn).map_err(poisoning)?;
                    return Err(error);
                }
                Err(error) => return Err(error),
            }
        }
        self.stats.record_batch(entries.len());
        if self.scratch.capacity() > SCRATCH_KEEP_BYTES {
            self.scratch = Vec::new();
        }
        Ok(())
    }

    /// Writes as many of `entries` as fit into the last segment (at least one) with one write
    /// and one `fdatasync`. Returns how many it wrote.
    fn write_run(&mut self, entries: &[LogEntry]) -> StorageResult<usize> {
        let segment = self.segments.last().expect("a segment to write to");
        assert_eq!(
            segment.next_lsn(),
            entries[0].lsn,
            "the active segment ends where the log does"
        );
        let base = segment.len;
        let max = self.options.segment_bytes_max;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let mut ends = Vec::new();
        while ends.len() < entries.len() && (ends.is_empty() || base + (scratch.len() as u64) < max)
        {
            encode_entry(&entries[ends.len()], &mut scratch);
            ends.push(base + scratch.len() as u64);
        }
        let path = segment.path.clone();
        let records = scratch.len();
        let end = base + records as u64;
        let file_len = self.active()?.file_len;
        // This run fills the segment: the next append starts a new one.
        let fills = end >= max;
        let grows = end > file_len;
        if grows && !fills {
            // Reserve room for the next appends in this same write and sync.
            let room = ROOM_BYTES.min(max);
            scratch.resize(records + room as usize, 0);
        }
        let write_fault = self.faults.check(FaultOp::Write);
        let file = self.active_file()?;
        let write = |bytes: &[u8]| match &write_fault {
            // A full disk takes part of a write before it says so.
            Some(error) => file
                .write_all_at(&bytes[..bytes.len() / 2], base)
                .and(Err(error.raw_os_error().map_or_else(
                    || std::io::Error::from(error.kind()),
                    std::io::Error::from_raw_os_error,
                ))),
            None => file.write_all_at(bytes, base),
        };
        let mut written = write(&scratch);
        if scratch.len() > records && written.as_ref().is_err_and(super::fault::is_full) {
            // No space for the room: the records alone may still fit. Cut what the write took
            // and try them without it (this file then grows append by append, as on a disk
            // with room to spare it would not).
            scratch.truncate(records);
            written = file.set_len(base).and_then(|()| write(&scratch));
        }
        if let Err(error) = written {
            self.scratch = scratch;
            return Err(self.undo_failed_write(base, &path, &error));
        }
        // A full segment keeps no room (only the last segment may end in zeros): cut it here,
        // so this run's sync makes the new length durable with its records.
        let sealed = if fills && file_len > end {
            file.set_len(end)
        } else {
            Ok(())
        };
        if let Err(error) = sealed {
            self.scratch = scratch;
            return Err(io_failure("cannot cut the reserved room of", &path, &error));
        }
        let sync_fault = self.faults.check(FaultOp::Fsync);
        let file = self.active_file()?;
        // After a failed fdatasync nothing is known about these bytes (nor, on Linux, will a
        // second fdatasync report the failure again): never retry it. The store is poisoned
        // (an `Io` error) and the unsynced records are cut from the file, best effort, so
        // that pages whose write-back failed are not read back as entries by a restart.
        let synced = match sync_fault {
            Some(error) => Err(error),
            None => file.sync_data(),
        };
        if let Err(error) = synced {
            let _ = file.set_len(base);
            self.scratch = scratch;
            return Err(io_failure("cannot fdatasync", &path, &error));
        }
        self.stats.data_syncs += 1;
        self.stats.bytes_written += records as u64;
        if grows || fills {
            self.active.as_mut().expect("written to").file_len = base + scratch.len() as u64;
        }
        self.scratch = scratch;

        let segment = self.segments.last_mut().expect("still there");
        let mut start = base;
        for (entry, &end) in entries.iter().zip(&ends) {
            segment.push(entry.lsn, start, end);
            start = end;
        }
        Ok(ends.len())
    }

    /// A write of records at `base` of the last segment failed before any sync. Out of space
    /// is a clean failure once the partial bytes are cut (the file ends at `base` again, and a
    /// segment left empty is removed): the next append writes its records afresh. Any other
    /// error, or a failure to clean up, is `Io` and poisons the store.
    fn undo_failed_write(
        &mut self,
        base: u64,
        path: &Path,
        error: &std::io::Error,
    ) -> StorageError {
        let failed = io_error("cannot append to", path, error);
        if !matches!(failed, StorageError::Full(_)) {
            return failed;
        }
        let cut = self.active().and_then(|active| {
            active
                .file
                .set_len(base)
                .map_err(|e| io_failure("cannot cut a partial write from", path, &e))?;
            active.file_len = base;
            Ok(())
        });
        if let Err(error) = cut {
            return error;
        }
        if base == 0 {
            // The segment was created for this batch: drop it, so the store holds no empty
            // segment (recovery would accept one, the index does not).
            let segment = self.segments.pop().expect("the segment written to");
            self.active = None;
            if let Err(error) = self.delete_segment_files(vec![segment]) {
                return poisoning(error);
            }
        }
        failed
    }

    /// Creates the segment file for entries from `first` on, and makes its name durable.
    fn create_segment(&mut self, first: Lsn) -> StorageResult<()> {
        let segment = Segment::new(&self.wal_dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&segment.path)
            .map_err(|e| io_error("cannot create segment", &segment.path, &e))?;
        if let Err(error) = sync_dir(&self.wal_dir, &mut self.stats) {
            // Not held yet: remove it again, so a later append can create it afresh.
            drop(file);
            return Err(match remove_file(&segment.path) {
                Ok(()) => error,
                Err(_) => poisoning(error),
            });
        }
        self.stats.segments_created += 1;
        self.segments.push(segment);
        self.active = Some(Active { file, file_len: 0 });
        Ok(())
    }

    /// The last segment's file, opened if it is not yet.
    fn active(&mut self) -> StorageResult<&mut Active> {
        if self.active.is_none() {
            let segment = self.segments.last().expect("a segment to open");
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&segment.path)
                .map_err(|e| io_error("cannot open segment", &segment.path, &e))?;
            let file_len = file
                .metadata()
                .map_err(|e| io_error("cannot stat segment", &segment.path, &e))?
                .len();
            self.active = Some(Active { file, file_len });
        }
        Ok(self.active.as_mut().expect("just opened"))
    }

    /// The open handle of the last segment.
    fn active_file(&mut self) -> StorageResult<&File> {
        Ok(&self.active()?.file)
    }

    /// Cuts the room after the last segment's records (see [`Active`]), durably, so that the
    /// file holds its records only: before the next segment is created (recovery allows
    /// undecodable bytes at the end of the last segment only) and when the store closes.
    fn cut_room(&mut self) -> StorageResult<()> {
        let Some(segment) = self.segments.last() else {
            return Ok(());
        };
        let (len, path) = (segment.len, segment.path.clone());
        let Some(active) = self.active.as_mut() else {
            // Not opened since the store was: recovery left the file at its records.
            return Ok(());
        };
        if active.file_len == len {
            return Ok(());
        }
        active
            .file
            .set_len(len)
            .and_then(|()| active.file.sync_data())
            .map_err(|e| io_failure("cannot cut the reserved room of", &path, &e))?;
        active.file_len = len;
        self.stats.data_syncs += 1;
        Ok(())
    }

    /// Removes the suffix from `from` on. Later segments go first, newest first, then the
    /// segment holding `from` is cut: a crash in between leaves a shorter log, never a gap.
    fn truncate_inner(&mut self, from: Lsn) -> StorageResult<()> {
        if !check_truncate(from, self.compacted.lsn, self.last.lsn)? {
            return Ok(());
        }
        let new_last = if from.prev() == self.compacted.lsn {
            self.compacted
        } else {
            self.read_physical(from.prev(), from)?[0].position()
        };
        let mut removed = Vec::new();
        while self.segments.last().is_some_and(|s| s.first >= from) {
            removed.push(self.segments.pop().expect("checked"));
            self.active = None;
        }
        self.delete_segment_files(removed)?;
        if self.segments.last().is_some_and(|s| s.holds(from)) {
            let offset = self.segments.last().expect("checked").offset_of(from);
            let path = self.segments.last().expect("checked").path.clone();
            let active = self.active()?;
            active
                .file
                .set_len(offset)
                .and_then(|()| active.file.sync_all())
                .map_err(|e| io_error("cannot truncate", &path, &e))?;
            active.file_len = offset;
            self.stats.data_syncs += 1;
            self.segments.last_mut().expect("checked").truncate(from);
        }
        self.last = new_last;
        self.drop_compacted_segments()
    }

    /// Compacts through `through`: first the new compaction point is made durable, then whole
    /// segments behind it are deleted, oldest first. A crash in between leaves segments that
    /// the next open deletes.
    fn compact_inner(&mut self, through: Lsn) -> StorageResult<()> {
        if through <= self.compacted.lsn {
            return Ok(());
        }
        if through > self.last.lsn {
            return Err(StorageError::Invalid(format!(
                "cannot compact through {through}: the last entry is {}",
                self.last.lsn
            )));
        }
        let position = self.read_physical(through, through.next())?[0].position();
        // Out of space while writing the new point leaves the old one: a clean failure.
        self.set_compaction_point(position)?;
        self.drop_compacted_segments().map_err(poisoning)
    }

    /// Saves a snapshot: the file is written and renamed into place (the commit point), older
    /// snapshot files are removed, and a snapshot past the last entry then resets the log to
    /// start after it, as `install_snapshot` does (see `reset.rs`). The header records that
    /// reset, so recovery can finish it.
    fn save_snapshot_inner(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        let resets_log = snapshot.position.lsn > self.last.lsn;
        let sequence = self.write_snapshot(snapshot, resets_log)?;
        if resets_log {
            self.finish_reset(snapshot.position, sequence)
                .map_err(poisoning)?;
        }
        Ok(())
    }

    /// Makes `position` the compaction point, durably, with the last finished reset.
    fn set_compaction_point(&mut self, position: LogPosition) -> StorageResult<()> {
        let point = reset::CompactionPoint {
            position,
            reset_sequence: self.reset_sequence,
        };
        write_record_file(
            &self.wal_dir,
            COMPACTED_FILE,
            RecordKind::Metadata,
            &point,
            &mut self.stats,
        )?;
        self.compacted = position;
        Ok(())
    }

    /// Deletes leading segments that hold nothing above the compaction point.
    fn drop_compacted_segments(&mut self) -> StorageResult<()> {
        let compacted = self.compacted.lsn;
        let whole = self
            .segments
            .iter()
            .take_while(|s| s.last() <= compacted)
            .count();
        let removed: Vec<Segment> = self.segments.drain(..whole).collect();
        if self.segments.is_empty() {
            self.active = None;
        }
        self.delete_segment_files(removed)
    }

    /// Deletes the files of segments already taken out of `self.segments`, then syncs the
    /// directory once (if there were any), so the deletions are durable together.
    pub(super) fn delete_segment_files(&mut self, removed: Vec<Segment>) -> StorageResult<()> {
        if removed.is_empty() {
            return Ok(());
        }
        self.stats.segments_deleted += removed.len() as u64;
        let wal_dir = self.wal_dir.clone();
        self.remove_files(removed.into_iter().map(|segment| segment.path), &wal_dir)
    }

    /// Removes `files` of `dir` and syncs it, or leaves them to the caller collecting
    /// [`Removals`].
    pub(super) fn remove_files(
        &mut self,
        files: impl IntoIterator<Item = PathBuf>,
        dir: &Path,
    ) -> StorageResult<()> {
        if let Some(removals) = &mut self.removals {
            removals.files.extend(files);
            if !removals.dirs.iter().any(|d| d == dir) {
                removals.dirs.push(dir.to_path_buf());
            }
            return Ok(());
        }
        for file in files {
            remove_file(&file)?;
        }
        sync_dir(dir, &mut self.stats)
    }

    /// Removes `removals` on a background thread (see [`Removals`]), after the previous one
    /// finished. A failure only leaves files for the next open to remove.
    pub fn remove_in_background(&mut self, removals: Removals) {
        if removals.is_empty() {
            return;
        }
        if let Some(previous) = self.removing.take() {
            let _ = previous.join();
        }
        let spawned = crate::background::spawn("cstore-removals", move || {
            if let Err(e) = removals.remove() {
                tracing::warn!(error = %e, "cannot remove files the store no longer needs; \
                               the next start removes them");
            }
        });
        match spawned {
            Ok(handle) => self.removing = Some(handle),
            Err(e) => tracing::warn!(error = %e, "cannot start a thread to remove files the \
                                     store no longer needs; the next start removes them"),
        }
    }

    /// Runs `f` on the store, leaving the files it would remove to the caller: they are
    /// returned, to remove on another thread (see [`Removals`]).
    pub fn leaving_removals<R>(&mut self, f: impl FnOnce(&mut FileStore) -> R) -> (R, Removals) {
        let outer = self.removals.replace(Removals::default());
        let result = f(self);
        let removals = std::mem::replace(&mut self.removals, outer).unwrap_or_default();
        (result, removals)
    }

    /// At open: the held entries must start right after the compaction point and continue its
    /// chain; an entry at the compaction point itself must carry its hash.
    fn check_compaction_point(&self) -> StorageResult<()> {
        let Some(first) = self.segments.first() else {
            return Ok(());
        };
        let point = self.compacted;
        if first.first > point.lsn.next() {
            return Err(StorageError::Corrupt(format!(
                "wal segment {} at byte offset 0: it starts at entry {} but the log is compacted \
                 only through {}, so entries {}..{} are missing",
                first.path.display(),
                first.first,
                point.lsn,
                point.lsn.next(),
                first.first.prev()
            )));
        }
        let scanned_last = self.segments.last().expect("not empty").last();
        let (lsn, check): (Lsn, fn(&LogEntry, LogPosition) -> bool) =
            if point.lsn.next() <= scanned_last {
                (point.lsn.next(), |e, p| e.prev_hash == p.hash)
            } else if point.lsn <= scanned_last {
                (point.lsn, |e, p| e.hash == p.hash)
            } else {
                // The point is past every entry in the files (a snapshot reset): nothing held.
                return Ok(());
            };
        let entry = &self.read_physical(lsn, lsn.next())?[0];
        if !check(entry, point) {
            let segment = &self.segments[self.segment_index(lsn).expect("in the files")];
            return Err(StorageError::Corrupt(format!(
                "wal segment {} at byte offset {}: entry {lsn} does not fit the compaction \
                 point {point}",
                segment.path.display(),
                segment.offset_of(lsn)
            )));
        }
        Ok(())
    }

    /// The index of the segment holding `lsn`, compacted or not.
    fn segment_index(&self, lsn: Lsn) -> Option<usize> {
        let after = self.segments.partition_point(|s| s.first <= lsn);
        let index = after.checked_sub(1)?;
        self.segments[index].holds(lsn).then_some(index)
    }

    /// Reads entries `from..to` from the files, which must hold them, checking every record.
    fn read_physical(&self, from: Lsn, to: Lsn) -> StorageResult<Vec<LogEntry>> {
        let mut index = self
            .segment_index(from)
            .unwrap_or_else(|| panic!("entry {from} is in the files"));
        let mut out: Vec<LogEntry> = Vec::with_capacity(((to.0 - from.0) as usize).min(4096));
        let mut lsn = from;
        while lsn < to {
            let segment = &self.segments[index];
            let end_lsn = to.min(segment.last().next());
            let start = segment.offset_of(lsn);
            let bytes = self.read_bytes(index, start, segment.offset_of(end_lsn))?;
            let mut at = 0;
            while lsn < end_lsn {
                let corrupt = |why: String| {
                    StorageError::Corrupt(format!(
                        "wal segment {} at byte offset {}: {why}",
                        segment.path.display(),
                        start + at as u64
                    ))
                };
                // Our own log: documents are taken as the canonical text they were written as
                // (the hash checked here proves the bytes unchanged; see `decode_own_entry`).
                let (entry, used) =
                    decode_own_entry(&bytes[at..]).map_err(|e| corrupt(e.to_string()))?;
                let chained = out.last().is_none_or(|prev| entry.follows(prev.position()));
                if entry.lsn != lsn || !chained {
                    return Err(corrupt(format!(
                        "found entry {} where entry {lsn} of the chain should be",
                        entry.lsn
                    )));
                }
                out.push(entry);
                at += used;
                lsn = lsn.next();
            }
            index += 1;
        }
        Ok(out)
    }

    /// Bytes `start..end` of segment `index`.
    fn read_bytes(&self, index: usize, start: u64, end: u64) -> StorageResult<Vec<u8>> {
        let segment = &self.segments[index];
        let mut bytes = vec![0; (end - start) as usize];
        let opened;
        let file = match (&self.active, index + 1 == self.segments.len()) {
            (Some(active), true) => &active.file,
            _ => {
                opened = File::open(&segment.path)
                    .map_err(|e| io_error("cannot open segment", &segment.path, &e))?;
                &opened
            }
        };
        file.read_exact_at(&mut bytes, start)
            .map_err(|e| io_error("cannot read", &segment.path, &e))?;
        Ok(bytes)
    }

    /// The structural invariants, checked after every successful mutation.
    fn check_invariants(&self) {
        assert!(
            self.last.lsn >= self.compacted.lsn,
            "last precedes compaction"
        );
        if let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) {
            assert!(
                first.last() > self.compacted.lsn,
                "a wholly compacted segment"
            );
            assert!(
                first.first <= self.compacted.lsn.next(),
                "a gap after compaction"
            );
            assert_eq!(last.last(), self.last.lsn, "the last segment ends the log");
        } else {
            assert_eq!(self.last, self.compacted, "no segments, no entries");
        }
        for pair in self.segments.windows(2) {
            assert_eq!(
                pair[0].last().next(),
                pair[1].first,
                "segments are gap-free"
            );
        }
    }
}

/// Finds the newest snapshot file (highest sequence), reads its header, and removes the others
/// (left by a crash between a new snapshot's rename and their removal).
fn open_snapshot(
    dir: &Path,
    stats: &mut WalStats,
) -> StorageResult<Option<(PathBuf, snapshot_file::SnapshotHeader)>> {
    let mut newest: Option<(PathBuf, snapshot_file::SnapshotHeader)> = None;
    let mut older = Vec::new();
    for (lsn, path) in snapshot_file::list(dir)? {
        let header = snapshot_file::read_header(&path)?;
        if header.position.lsn != lsn {
            return Err(StorageError::Corrupt(format!(
                "snapshot {} at byte offset 0: its header is for entry {}",
                path.display(),
                header.position.lsn
            )));
        }
        match &newest {
            Some((_, best)) if best.sequence >= header.sequence => older.push(path),
            _ => older.extend(newest.replace((path, header)).map(|(p, _)| p)),
        }
    }
    for path in &older {
        remove_file(path)?;
    }
    if !older.is_empty() {
        sync_dir(dir, stats)?;
    }
    Ok(newest)
}

impl LogStore for FileStore {
    async fn append(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        self.append_blocking(entries)
    }

    async fn append_own(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        self.append_hash_checked_blocking(entries)
    }

    async fn read_range(&self, from: Lsn, to: Lsn) -> StorageResult<Vec<LogEntry>> {
        self.read_range_blocking(from, to)
    }

    async fn state(&self) -> StorageResult<LogState> {
        Ok(self.log_state())
    }

    async fn truncate_suffix(&mut self, from: Lsn) -> StorageResult<()> {
        self.truncate_suffix_blocking(from)
    }

    async fn compact_prefix(&mut self, through: Lsn) -> StorageResult<()> {
        self.compact_prefix_blocking(through)
    }

    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        self.save_snapshot_blocking(snapshot)
    }

    /// Crash-safe by its order of durable steps: see `reset.rs`.
    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        self.install_snapshot_blocking(snapshot)
    }

    async fn load_snapshot_state(&self) -> StorageResult<Option<Result<State, SnapshotError>>> {
        self.load_snapshot_state_blocking()
    }

    async fn replay<F>(&self, from: Lsn, to: Lsn, take: F) -> StorageResult<bool>
    where
        F: FnMut(&LogEntry) -> bool + Send,
    {
        self.replay_blocking(from, to, take)
    }

    async fn load_snapshot(&self) -> StorageResult<Option<Snapshot>> {
        self.load_snapshot_blocking()
    }

    async fn save_metadata(&mut self, metadata: &Metadata) -> StorageResult<()> {
        self.save_metadata_blocking(metadata)
    }

    async fn load_metadata(&self) -> StorageResult<Option<Metadata>> {
        Ok(self.metadata.clone())
    }
}

/// Who checks that each appended entry matches its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HashCheck {
    /// The store, before it writes.
    Here,
    /// The caller, just before (a replica, on receipt).
    ByCaller,
}

/// Takes the data directory's lock, or says who holds it.
fn lock_dir(dir: &Path) -> StorageResult<File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::Io(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Io(format!(
            "the data directory {} is in use by another process (it holds {})",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StorageError::Io(format!("{}: {e}", path.display())))
        }
    }
}
