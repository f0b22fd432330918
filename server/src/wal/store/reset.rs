//! Log resets: replacing the whole log with a snapshot ([`FileStore::install_snapshot_blocking`],
//! and `save_snapshot` of a snapshot past the last entry), crash-safely.
//!
//! A reset must drop every segment, even ones holding entries above the snapshot (a diverged
//! replica), so recovery cannot tell from the segments alone whether a reset was interrupted:
//! after a finished reset, new appends make segments just like the old ones. The snapshot
//! header therefore carries `resets_log` and the save `sequence`, and the compaction point
//! file records the sequence of the last reset that was finished:
//!
//! ```text
//!  install_snapshot(S):
//!   1. write snapshot file (resets_log, sequence n): temp, fsync, rename, dir fsync ◄─ commit
//!   2. remove older snapshot files, dir fsync
//!   3. delete every segment, newest first, wal dir fsync
//!   4. write wal/compacted = { position: S.position, reset_sequence: n }       ◄─ finished
//!
//!  open: newest snapshot has resets_log and sequence > compacted.reset_sequence
//!        ──► redo 3 and 4 before the segments are read
//! ```
//!
//! A crash before the rename in step 1 leaves the old store (the temp file is removed at
//! open); a crash anywhere after it leaves the new snapshot as the newest, and open finishes
//! the reset, so the directory reads back as the old store or the new one, never a mix.
//! Compaction point files written before resets were recorded (a bare position) still open:
//! for them the older rule holds, a reset is finished once the compaction point reaches it.

use std::path::{Path, PathBuf};

use cstore_core::log::codec::RecordKind;
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::{StorageError, StorageResult};
use cstore_core::types::{Hash, LogPosition};
use serde::{Deserialize, Serialize};

use super::super::WalStats;
use super::super::durable::{
    poisoning, read_record_file, remove_file, sync_dir, write_record_file,
};
use super::super::fault::FaultOp;
use super::super::recovery::list_segments;
use super::super::segment::Segment;
use super::super::snapshot_file::{self, SnapshotHeader, SnapshotWriter};
use super::{COMPACTED_FILE, FileStore};

/// The record in `wal/compacted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CompactionPoint {
    /// The last compacted entry (`START` if none).
    pub position: LogPosition,
    /// The snapshot sequence of the last log reset that was finished (0 if none).
    pub reset_sequence: u64,
}

/// Reads `wal/compacted`, resolving a file of the older format (a bare position) against the
/// newest snapshot's header. A missing file is the start of a log with no reset.
pub(super) fn read_compaction_point(
    wal_dir: &Path,
    newest: Option<&SnapshotHeader>,
) -> StorageResult<CompactionPoint> {
    let path = wal_dir.join(COMPACTED_FILE);
    match read_record_file::<CompactionPoint>(&path, RecordKind::Metadata) {
        Ok(point) => Ok(point.unwrap_or_default()),
        Err(error @ StorageError::Corrupt(_)) => {
            let Ok(Some(position)) = read_record_file::<LogPosition>(&path, RecordKind::Metadata)
            else {
                return Err(error);
            };
            let reset_sequence = newest
                .filter(|h| h.resets_log && position.lsn >= h.position.lsn)
                .map_or(0, |h| h.sequence);
            Ok(CompactionPoint {
                position,
                reset_sequence,
            })
        }
        Err(error) => Err(error),
    }
}

/// At open, before the segments are read: finishes the reset the newest snapshot asks for if
/// a crash interrupted it (steps 3 and 4 of the module docs). Returns the compaction point.
pub(super) fn finish_interrupted(
    wal_dir: &Path,
    newest: Option<&SnapshotHeader>,
    point: CompactionPoint,
    stats: &mut WalStats,
) -> StorageResult<CompactionPoint> {
    let Some(header) = newest.filter(|h| h.resets_log && h.sequence > point.reset_sequence) else {
        return Ok(point);
    };
    let files = list_segments(wal_dir)?;
    for (_, path) in files.iter().rev() {
        remove_file(path)?;
        stats.segments_deleted += 1;
    }
    if !files.is_empty() {
        sync_dir(wal_dir, stats)?;
    }
    let finished = CompactionPoint {
        position: header.position,
        reset_sequence: header.sequence,
    };
    write_record_file(
        wal_dir,
        COMPACTED_FILE,
        RecordKind::Metadata,
        &finished,
        stats,
    )?;
    Ok(finished)
}

impl FileStore {
    /// [`LogStore::install_snapshot`](cstore_core::storage::LogStore::install_snapshot),
    /// synchronously: the snapshot file is the commit point, then every segment goes and the
    /// compaction point records the finished reset (see the [module docs](self)). A snapshot
    /// that fails its state hash is `Invalid`, and nothing is written.
    pub fn install_snapshot_blocking(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        self.guarded(|store| {
            let sequence = store.write_snapshot(snapshot, true)?;
            store
                .finish_reset(snapshot.position, sequence)
                .map_err(poisoning)
        })
    }

    /// Drops every segment, newest first, then records `position` as the compaction point and
    /// `sequence` as the last finished reset.
    pub(super) fn finish_reset(
        &mut self,
        position: LogPosition,
        sequence: u64,
    ) -> StorageResult<()> {
        assert!(
            sequence > self.reset_sequence,
            "reset {sequence} after finished reset {}",
            self.reset_sequence
        );
        // Newest first, as before: a crash part-way leaves a prefix of segments, which the
        // next open's redo of this reset removes.
        let removed: Vec<Segment> = self.segments.drain(..).rev().collect();
        self.active = None;
        self.delete_segment_files(removed)?;
        self.reset_sequence = sequence;
        self.set_compaction_point(position)?;
        self.last = position;
        Ok(())
    }

    /// Writes `snapshot` as the newest snapshot file (the commit point) and removes older
    /// ones. Returns its sequence.
    pub(super) fn write_snapshot(
        &mut self,
        snapshot: &Snapshot,
        resets_log: bool,
    ) -> StorageResult<u64> {
        if !snapshot.verify() {
            return Err(StorageError::Invalid(format!(
                "snapshot at {} does not match its state hash",
                snapshot.position
            )));
        }
        let sequence = self.snapshot_sequence + 1;
        let path = snapshot_file::write(
            &self.dir,
            snapshot,
            resets_log,
            sequence,
            &mut self.stats,
            &mut self.faults,
        )?;
        self.snapshot_sequence = sequence;
        self.snapshot_path = Some(path.clone());
        self.remove_older_snapshots(&path)?;
        Ok(sequence)
    }

    /// Removes every snapshot file but `current`. The new snapshot is in place: a failure
    /// from here on leaves the store changed (poisoned).
    fn remove_older_snapshots(&mut self, current: &Path) -> StorageResult<()> {
        let older: Vec<PathBuf> = snapshot_file::list(&self.dir)
            .map_err(poisoning)?
            .into_iter()
            .map(|(_, path)| path)
            .filter(|path| path != current)
            .collect();
        if older.is_empty() {
            return Ok(());
        }
        let dir = self.dir.clone();
        self.remove_files(older, &dir).map_err(poisoning)
    }
}

/// A snapshot saved while the store goes on appending: reserved under the store's lock by
/// [`FileStore::begin_snapshot`], checked and written to its temp file by [`SnapshotSave::write`]
/// with no lock held, made current under the lock by [`FileStore::finish_snapshot`]. Writing a
/// large state (and hashing it again) under the lock held every append for seconds: a cluster
/// member's WAL thread could not sync, so it acknowledged nothing meanwhile.
#[derive(Debug)]
pub struct SnapshotSave {
    dir: PathBuf,
    sequence: u64,
    position: LogPosition,
    fault: Option<std::io::Error>,
}

/// A snapshot file written and synced beside the store, not yet its current snapshot.
#[derive(Debug)]
pub struct WrittenSnapshot {
    prepared: snapshot_file::Prepared,
    sequence: u64,
    position: LogPosition,
}

impl WrittenSnapshot {
    /// The position of the snapshot written.
    pub fn position(&self) -> LogPosition {
        self.position
    }
}

impl SnapshotSave {
    /// Checks `snapshot` against its state hash and writes and syncs its temp file; takes no
    /// lock. A snapshot that fails its hash is `Invalid`, and nothing is written.
    pub fn write(self, snapshot: &Snapshot) -> StorageResult<WrittenSnapshot> {
        if !snapshot.verify() {
            return Err(StorageError::Invalid(format!(
                "snapshot at {} does not match its state hash",
                snapshot.position
            )));
        }
        assert_eq!(snapshot.position, self.position, "the snapshot begun");
        let prepared =
            snapshot_file::prepare(&self.dir, snapshot, false, self.sequence, self.fault)?;
        Ok(WrittenSnapshot {
            prepared,
            sequence: self.sequence,
            position: self.position,
        })
    }

    /// Writes and syncs the temp file of a snapshot whose data, `data_bytes` long with hash
    /// `state_hash`, `fill` gives in pieces (an image written as it is encoded, never held
    /// whole); takes no lock. `None`, nothing written, when `fill` gives up (returns false).
    /// The data is not hashed here: the caller vouches for the hash, and every load checks it.
    pub fn write_streamed(
        self,
        state_hash: Hash,
        data_bytes: u64,
        fill: impl FnOnce(&mut SnapshotWriter<'_>) -> StorageResult<bool>,
    ) -> StorageResult<Option<WrittenSnapshot>> {
        let header = SnapshotHeader {
            position: self.position,
            state_hash,
            data_bytes,
            resets_log: false,
            sequence: self.sequence,
        };
        let prepared = snapshot_file::prepare_with(&self.dir, &header, self.fault, fill)?;
        Ok(prepared.map(|prepared| WrittenSnapshot {
            prepared,
            sequence: self.sequence,
            position: self.position,
        }))
    }
}

impl FileStore {
    /// Begins saving `snapshot` of an entry the log holds (a snapshot past the last entry resets
    /// the log: that one goes through `save_snapshot_blocking`). One save at a time: the caller
    /// keeps others (and installs) out until [`Self::finish_snapshot`].
    pub fn begin_snapshot(&mut self, position: LogPosition) -> StorageResult<SnapshotSave> {
        self.guarded(|store| {
            if position.lsn > store.last.lsn {
                return Err(StorageError::Invalid(format!(
                    "snapshot at {position} is past the log's last entry {}: save it with \
                     save_snapshot_blocking",
                    store.last
                )));
            }
            Ok(SnapshotSave {
                dir: store.dir.clone(),
                sequence: store.snapshot_sequence + 1,
                position,
                fault: store.faults.check(FaultOp::Snapshot),
            })
        })
    }

    /// Makes a written snapshot the current one: renamed into place (the commit point), older
    /// snapshot files removed. Refused (the temp file removed) if another snapshot was saved
    /// since it began.
    pub fn finish_snapshot(&mut self, written: WrittenSnapshot) -> StorageResult<()> {
        self.guarded(|store| {
            if written.sequence != store.snapshot_sequence + 1 {
                written.prepared.discard();
                return Err(StorageError::Invalid(format!(
                    "snapshot at {} was begun as number {}, but number {} was saved meanwhile",
                    written.position, written.sequence, store.snapshot_sequence
                )));
            }
            let path = snapshot_file::commit(&store.dir, written.prepared, &mut store.stats)?;
            store.snapshot_sequence = written.sequence;
            store.snapshot_path = Some(path.clone());
            store.remove_older_snapshots(&path)
        })
    }
}
