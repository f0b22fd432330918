//! Recovery: reading the segment files back at startup, telling a torn tail from corruption.
//!
//! A crash in the middle of an append leaves the last segment ending in part of a record, or
//! in zeros where the file system extended the file but the data never landed. Those bytes
//! were never acknowledged (an append returns only after its `fdatasync`), so cutting them off
//! loses nothing. Anything else that fails to decode is damage to data that may have been
//! acknowledged, and the only safe answer is to refuse to start and say where:
//!
//! ```text
//!  bad framing (truncated, bad crc, absurd length) ...
//!    in a segment that is not the last ─────────────────────────────► Corrupt(file, offset)
//!    in the last segment, and a valid newer entry follows somewhere ─► Corrupt(file, offset)
//!    in the last segment, nothing valid after it ────────────────────► torn: truncate, fsync
//!  a record whose crc passes but which is not a valid, chained entry ─► Corrupt(file, offset)
//! ```
//!
//! The scan checks each record's crc, structure and SHA-256 hash from its bytes, and the chain,
//! without decoding documents (`check_entry_record`): the replay decodes every entry anyway,
//! and checks the documents' canonical form then, so each entry is decoded once per start.
//!
//! A store opened for a replay (`WalOptions::hashes_checked_by_replay`) goes further: above
//! the snapshot, where the replay decodes every entry with `decode_entry` (which checks its
//! hash) before the state is served, the scan checks the crc, the framing, the LSN and the
//! chain of *stored* hashes only (`read_entry_link`), so each entry is walked and hashed once
//! per start, not twice. Stored links that chain, plus each entry's own hash checked when it
//! is decoded, prove what the full scan proves. The torn-tail rules do not change: they rest
//! on the crc, and "a valid newer entry" is still checked in full. What moves is only *when*
//! a crc-valid record with a wrong hash or a malformed body is reported: by the replay, as
//! the same `Corrupt` error naming the file and offset, instead of by the open.
//!
//! The scan reads each segment through one buffer, `WalOptions::scan_read_bytes` (1 MiB) at a
//! time, reused across reads and segments: a record that runs past what was read is completed
//! by the next read (the buffer grows for a record larger than it). Reading each 64 MiB segment
//! whole into a fresh buffer faulted in (and had the kernel zero) a buffer that size per
//! segment, and walked bytes long gone from the cache; a replay of 1M entries from spawn to
//! health takes about 6% less this way (docs/bench/recovery-profile.md). Only where a record
//! fails in the last segment is the rest of that file read at once, to look for a newer entry.
//!
//! "A valid newer entry" is one whose crc and SHA-256 hash both check out and whose LSN is
//! above the last good one, found by trying every byte offset after the bad record. A record
//! that passes its crc was written whole, so it is never treated as torn: a wrong hash, an
//! unknown version or a broken chain there is corruption even at the very end of the log.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use cstore_core::log::codec::{
    DecodeError, FORMAT_VERSION, RECORD_HEADER_BYTES, RECORD_PAYLOAD_MAX, RecordKind,
};
use cstore_core::log::{EntryLink, check_entry_record, read_entry_link};
use cstore_core::storage::{StorageError, StorageResult};
use cstore_core::types::{LogPosition, Lsn};

use super::WalStats;
use super::durable::{io_error, remove_file, sync_dir};
use super::segment::{self, Segment};

/// What the segment files hold after recovery.
#[derive(Debug)]
pub(super) struct Scan {
    /// Every non-empty segment, in order, contiguous and chained.
    pub segments: Vec<Segment>,
    /// The last entry in the files.
    pub last: Option<LogPosition>,
}

/// Every segment file in `wal_dir`, by first LSN, ascending.
pub(super) fn list_segments(wal_dir: &Path) -> StorageResult<Vec<(Lsn, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(wal_dir).map_err(|e| io_error("cannot list", wal_dir, &e))? {
        let entry = entry.map_err(|e| io_error("cannot list", wal_dir, &e))?;
        if let Some(first) = segment::parse_file_name(&entry.file_name().to_string_lossy()) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn corrupt(path: &Path, offset: usize, why: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!(
        "wal segment {} at byte offset {offset}: {why}",
        path.display()
    ))
}

/// Reads every segment in `wal_dir`, checks every record (crc, hash, chain, file name;
/// documents are checked when `read_range` decodes the entries, which the replay does),
/// truncates a torn tail of the last segment, removes an empty last segment, and builds the
/// offset index. Fails with `Corrupt`, naming the file and offset, on anything else.
///
/// With `replayed_above: Some(lsn)`, the hashes of entries above `lsn` are left to the replay
/// that decodes them (see the module docs); their crc, framing and stored chain are checked.
pub(super) fn scan_segments(
    wal_dir: &Path,
    replayed_above: Option<Lsn>,
    read_bytes: usize,
    stats: &mut WalStats,
) -> StorageResult<Scan> {
    let files = list_segments(wal_dir)?;
    let mut segments = Vec::with_capacity(files.len());
    let mut last: Option<LogPosition> = None;
    let mut window = Window::new(read_bytes);
    for (index, (first, path)) in files.iter().enumerate() {
        let is_last = index + 1 == files.len();
        let file = File::open(path).map_err(|e| io_error("cannot read", path, &e))?;
        window.start(file);
        let mut segment = Segment::new(wal_dir, *first);
        assert_eq!(&segment.path, path, "the name parses back to the path");
        loop {
            let offset = window.offset;
            let checked = check_record(window.bytes(), replayed_above);
            match checked {
                Ok((entry, used)) => {
                    check_chain(&segment, last, &entry, path, offset)?;
                    segment.push(entry.lsn, offset as u64, (offset + used) as u64);
                    last = Some(entry.position());
                    window.consume(used);
                }
                // The record runs past what was read: read on, then look again.
                Err(DecodeError::Truncated { needed, .. }) if !window.at_end => {
                    window.fill(needed, path)?;
                }
                // The whole file is checked.
                Err(DecodeError::Truncated { available: 0, .. }) => break,
                Err(
                    error @ (DecodeError::Truncated { .. }
                    | DecodeError::BadChecksum { .. }
                    | DecodeError::TooLarge { .. }),
                ) => {
                    if !is_last {
                        return Err(corrupt(
                            path,
                            offset,
                            format!(
                                "{error}; later segments exist, so this is not a torn write \
                                 but damage to acknowledged data"
                            ),
                        ));
                    }
                    // The rest of the file, from the failed record on.
                    window.fill(usize::MAX, path)?;
                    if let Some((found_at, lsn)) = newer_entry_after(window.bytes(), 0, last) {
                        return Err(corrupt(
                            path,
                            offset,
                            format!(
                                "{error}; a valid entry {lsn} follows at byte offset {}, \
                                 so this is not a torn tail: refusing to drop acknowledged data",
                                offset + found_at
                            ),
                        ));
                    }
                    let file_bytes = offset + window.bytes().len();
                    truncate_torn_tail(path, offset, file_bytes, stats)?;
                    break;
                }
                Err(error) => {
                    return Err(corrupt(
                        path,
                        offset,
                        format!(
                            "{error} (the record's checksum is valid, so it was written whole)"
                        ),
                    ));
                }
            }
        }
        if segment.offsets.is_empty() {
            if !is_last {
                return Err(corrupt(path, 0, "an empty segment before later segments"));
            }
            // A roll that crashed before its first record landed, or a wholly torn segment.
            remove_file(path)?;
            sync_dir(wal_dir, stats)?;
            stats.segments_deleted += 1;
        } else {
            segments.push(segment);
        }
    }
    Ok(Scan { segments, last })
}

/// A segment file, read a piece at a time into one buffer that every segment of a scan reuses.
struct Window {
    file: Option<File>,
    /// `buf[lo..hi]` holds the file's bytes from `offset` on, as far as they were read.
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    /// The file offset of `buf[lo]`: where the next record starts.
    offset: usize,
    /// How much one read asks for.
    read_bytes: usize,
    /// The file has been read to its end.
    at_end: bool,
}

impl Window {
    fn new(read_bytes: usize) -> Window {
        Window {
            file: None,
            buf: Vec::new(),
            lo: 0,
            hi: 0,
            offset: 0,
            read_bytes: read_bytes.max(1),
            at_end: false,
        }
    }

    /// Starts on `file`, from its first byte.
    fn start(&mut self, file: File) {
        self.file = Some(file);
        (self.lo, self.hi, self.offset, self.at_end) = (0, 0, 0, false);
    }

    /// The bytes read and not consumed yet, from `offset` on.
    fn bytes(&self) -> &[u8] {
        &self.buf[self.lo..self.hi]
    }

    /// The record of `used` bytes at `offset` is done with.
    fn consume(&mut self, used: usize) {
        debug_assert!(used <= self.hi - self.lo);
        self.lo += used;
        self.offset += used;
    }

    /// Reads until `bytes()` holds at least `needed` bytes or the file ends (`usize::MAX`: to
    /// its end). What was consumed is dropped first, and the buffer grows (by one read) only
    /// when it is full: for a record larger than it, or to hold the rest of a file.
    fn fill(&mut self, needed: usize, path: &Path) -> StorageResult<()> {
        self.buf.copy_within(self.lo..self.hi, 0);
        (self.lo, self.hi) = (0, self.hi - self.lo);
        let file = self.file.as_mut().expect("a file is started");
        while self.hi < needed && !self.at_end {
            if self.hi == self.buf.len() {
                // Zeroed once: later reads of this scan land in pages already touched.
                self.buf.resize(self.hi + self.read_bytes, 0);
            }
            match file.read(&mut self.buf[self.hi..]) {
                Ok(read) => {
                    self.hi += read;
                    self.at_end = read == 0;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error("cannot read", path, &error)),
            }
        }
        Ok(())
    }
}

/// Checks the entry record at the start of `buf`: in full (`check_entry_record`), or, above
/// `replayed_above`, only as far as the chain needs it (`read_entry_link`).
fn check_record(
    buf: &[u8],
    replayed_above: Option<Lsn>,
) -> Result<(EntryLink, usize), DecodeError> {
    let Some(replayed_above) = replayed_above else {
        return check_entry_record(buf);
    };
    let (link, used) = read_entry_link(buf)?;
    if link.lsn <= replayed_above {
        // The replay does not read this entry: check its hash now.
        return check_entry_record(buf);
    }
    Ok((link, used))
}

/// Checks that `entry`, about to be added to `segment`, continues the chain after `last` and
/// that a segment's first entry is the one its name promises.
fn check_chain(
    segment: &Segment,
    last: Option<LogPosition>,
    entry: &EntryLink,
    path: &Path,
    offset: usize,
) -> StorageResult<()> {
    if segment.offsets.is_empty() && entry.lsn != segment.first {
        return Err(corrupt(
            path,
            offset,
            format!(
                "the file is named for entry {} but starts with entry {}",
                segment.first, entry.lsn
            ),
        ));
    }
    match last {
        Some(prev) if !entry.follows(prev) => Err(corrupt(
            path,
            offset,
            format!(
                "entry {} does not continue the chain after {prev}",
                entry.lsn
            ),
        )),
        _ => Ok(()),
    }
}

/// The first offset after `bad` where a whole, valid entry newer than `last` starts, if any.
/// Cheap tests (length, version and kind bytes) run before the crc, so scanning a large tail of
/// garbage or zeros costs little.
pub(super) fn newer_entry_after(
    buf: &[u8],
    bad: usize,
    last: Option<LogPosition>,
) -> Option<(usize, Lsn)> {
    (bad + 1..buf.len()).find_map(|offset| {
        let rest = &buf[offset..];
        if rest.len() < RECORD_HEADER_BYTES + 2 {
            return None;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let plausible = (2..=RECORD_PAYLOAD_MAX).contains(&len)
            && RECORD_HEADER_BYTES + len <= rest.len()
            && rest[RECORD_HEADER_BYTES] == FORMAT_VERSION
            && rest[RECORD_HEADER_BYTES + 1] == RecordKind::Entry as u8;
        if !plausible {
            return None;
        }
        let (entry, _) = check_entry_record(rest).ok()?;
        let newer = last.is_none_or(|l| entry.lsn > l.lsn);
        newer.then_some((offset, entry.lsn))
    })
}

/// Cuts the last segment at `offset`, the start of its torn tail, durably.
fn truncate_torn_tail(
    path: &Path,
    offset: usize,
    file_bytes: usize,
    stats: &mut WalStats,
) -> StorageResult<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_error("cannot open", path, &e))?;
    file.set_len(offset as u64)
        .map_err(|e| io_error("cannot truncate the torn tail of", path, &e))?;
    file.sync_all()
        .map_err(|e| io_error("cannot fsync", path, &e))?;
    stats.data_syncs += 1;
    stats.torn_bytes_truncated += (file_bytes - offset) as u64;
    Ok(())
}
