//! Reading a data directory's snapshot and log without opening it as a store.
//!
//! [`FileStore::open`](super::FileStore::open) takes the directory's lock and repairs what a
//! crash left (a torn tail is cut, temp files removed): right for the process that owns the
//! directory, wrong for a backup taken while a server writes, for the server's own
//! `as_of_lsn` reads beside its commit thread, and for checking a backup, which must never be
//! changed by being read. This reader takes no lock and writes nothing:
//!
//! ```text
//!  newest_snapshot(dir) ─► the snapshot file with the highest sequence, read and verified
//!  read_entries(dir, after, through, rule, visit)
//!      segments holding after+1.. ─► decode every record (crc, SHA-256, documents)
//!                                  ─► chain from `after` (the snapshot's position) ─► visit
//! ```
//!
//! Every segment and snapshot file is replaced or deleted only by rename or unlink, and a
//! segment only grows at its end, so a reader racing the owner sees whole files; what it can
//! meet is a segment deleted by a checkpoint's compaction ([`ReadError::Gone`]: start again
//! from the newer snapshot) and, at the end of the last segment, a record still being written
//! ([`TailRule::Live`] stops there; [`TailRule::Strict`] calls it damage). Zeros to the end of
//! the last segment are neither: they are the room a store reserves ahead of its appends
//! (`store.rs`, `Active`), and the log ends before them under both rules.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use cstore_core::log::LogEntry;
use cstore_core::log::codec::decode_entry;
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::StorageError;
use cstore_core::types::{Hash, LogPosition, Lsn};

use super::durable::io_error;
use super::recovery::{list_segments, newer_entry_after};
use super::snapshot_file;

/// The log's folder in a data directory (as in `store.rs`).
const WAL_DIR: &str = "wal";

/// Why a directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file went away while it was read: the owner compacted or replaced it. Start again.
    #[error("{0} was removed while it was read")]
    Gone(PathBuf),
    /// The entries right after the starting point are not held any more (or never were).
    #[error("entry {0} is not in the log's files")]
    Missing(Lsn),
    /// A file is damaged (the message names it and the byte offset) or cannot be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What to make of bytes that do not decode at the end of the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailRule {
    /// They are an append in flight (the owner is writing): stop before them.
    Live,
    /// They are damage: fail with the file and offset.
    Strict,
}

/// Where a read stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEnd {
    /// The last entry visited (`after` when none was).
    pub last: LogPosition,
    /// Under [`TailRule::Live`]: the segment and offset where undecodable bytes were left,
    /// and how many.
    pub tail: Option<(PathBuf, u64, u64)>,
}

/// The newest snapshot file in `dir` (the highest sequence), fully read and verified: every
/// chunk's crc and the state hash. `None` when there is none.
pub fn newest_snapshot(dir: &Path) -> Result<Option<(PathBuf, Snapshot)>, ReadError> {
    let mut newest: Option<(u64, PathBuf)> = None;
    for (_, path) in snapshot_file::list(dir)? {
        let header = snapshot_file::read_header(&path).map_err(|e| gone_or(e, &path))?;
        if newest
            .as_ref()
            .is_none_or(|(seq, _)| header.sequence > *seq)
        {
            newest = Some((header.sequence, path));
        }
    }
    match newest {
        None => Ok(None),
        Some((_, path)) => {
            let snapshot = snapshot_file::read(&path).map_err(|e| gone_or(e, &path))?;
            Ok(Some((path, snapshot)))
        }
    }
}

/// A missing file is [`ReadError::Gone`]; anything else stays what it was.
fn gone_or(error: StorageError, path: &Path) -> ReadError {
    if !path.exists() {
        ReadError::Gone(path.to_path_buf())
    } else {
        ReadError::Storage(error)
    }
}

/// Every segment file of the data directory `dir`, by first LSN.
pub fn segment_files(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, ReadError> {
    Ok(list_segments(&dir.join(WAL_DIR))?)
}

/// Reads the entries after `after` (a snapshot's position, or `LogPosition::START`) through
/// `through` (or to the end) from the segments of the data directory `dir`, in order, and
/// hands each to `visit`. Every record is decoded in full (crc, SHA-256, canonical documents);
/// the entry at `after` (when held) must carry its hash, and each visited entry must continue
/// the chain. One segment is in memory at a time.
pub fn read_entries(
    dir: &Path,
    after: LogPosition,
    through: Option<Lsn>,
    rule: TailRule,
    visit: &mut dyn FnMut(LogEntry) -> Result<(), ReadError>,
) -> Result<LogEnd, ReadError> {
    let files = segment_files(dir)?;
    let want = after.lsn.next();
    let mut end = LogEnd {
        last: after,
        tail: None,
    };
    if through.is_some_and(|t| t <= after.lsn) {
        return Ok(end);
    }
    // The segment holding `want` is the last one starting at or before it.
    let start = files.partition_point(|(first, _)| *first <= want);
    let Some(start) = start.checked_sub(1) else {
        return match files.first() {
            Some(_) => Err(ReadError::Missing(want)),
            None => Ok(end),
        };
    };
    for (index, (first, path)) in files.iter().enumerate().skip(start) {
        let is_last = index + 1 == files.len();
        let read = || match fs::read(path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(ReadError::Gone(path.clone())),
            Err(e) => Err(ReadError::from(io_error("cannot read", path, &e))),
        };
        let mut bytes = read()?;
        // Whether the last segment was read again (see below).
        let mut read_again = false;
        let mut offset = 0usize;
        let mut expected = *first;
        while offset < bytes.len() {
            let corrupt = |why: String| {
                ReadError::Storage(StorageError::Corrupt(format!(
                    "wal segment {} at byte offset {offset}: {why}",
                    path.display()
                )))
            };
            let (entry, used) = match decode_entry(&bytes[offset..]) {
                Ok(decoded) => decoded,
                Err(_) if is_last && bytes[offset..].iter().all(|&b| b == 0) => return Ok(end),
                Err(e) if is_last && rule == TailRule::Live => {
                    // As recovery rules: a valid newer entry after the bad bytes means they
                    // are damage, not an append in flight.
                    let last = LogPosition {
                        lsn: expected.prev(),
                        hash: Hash::ZERO,
                    };
                    if let Some((found_at, lsn)) = newer_entry_after(&bytes, offset, Some(last)) {
                        if !read_again {
                            // The owner overwrites the room it reserved ahead of its records
                            // (`store.rs`, `Active`), so a read that passed an append's pages
                            // as they were written can hold zeros at a record's start and a
                            // later record of the same append whole. Read once more: that
                            // append has ended, and what is still wrong here is damage.
                            read_again = true;
                            bytes = read()?;
                            continue;
                        }
                        return Err(corrupt(format!(
                            "{e}; a valid entry {lsn} follows at byte offset {found_at}, so \
                             this is damage, not an append in flight"
                        )));
                    }
                    end.tail = Some((path.clone(), offset as u64, (bytes.len() - offset) as u64));
                    return Ok(end);
                }
                Err(e) => return Err(corrupt(e.to_string())),
            };
            if entry.lsn != expected {
                return Err(corrupt(format!(
                    "found entry {} where entry {expected} should be",
                    entry.lsn
                )));
            }
            expected = expected.next();
            if entry.lsn == after.lsn && entry.hash != after.hash {
                return Err(corrupt(format!(
                    "entry {} does not match the snapshot's position {after}",
                    entry.lsn
                )));
            }
            if entry.lsn > after.lsn {
                if !entry.follows(end.last) {
                    return Err(corrupt(format!(
                        "entry {} does not continue the chain after {}",
                        entry.lsn, end.last
                    )));
                }
                end.last = entry.position();
                let lsn = entry.lsn;
                visit(entry)?;
                if through == Some(lsn) {
                    return Ok(end);
                }
            }
            offset += used;
        }
    }
    Ok(end)
}
