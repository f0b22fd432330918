//! Snapshot files: a header record, then the state in checksummed chunks.
//!
//! ```text
//! snapshot-<lsn>.snap
//! ┌──────────────────────────────┬──────────────┬──────────────┬─────┐
//! │ header: position, state hash │ chunk ≤ 1MiB │ chunk ≤ 1MiB │ ... │
//! │ data bytes, reset, sequence  │              │              │     │
//! └──────────────────────────────┴──────────────┴──────────────┴─────┘
//!   every record framed [len][crc32c][version][kind = Snapshot][body]
//! ```
//!
//! Chunking bounds the memory a reader needs beyond the data itself, and lets a damaged byte
//! be reported at its offset. A snapshot is written to a temp file, fsynced, renamed into place
//! and the directory fsynced, so a crash leaves the old snapshot or the new one, never a
//! mixture; the state hash is checked again on every load.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use cstore_core::log::codec::{
    RECORD_HEADER_BYTES, RECORD_PAYLOAD_MAX, RecordKind, decode_record, decode_value,
    encode_record, encode_value,
};
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::{StorageError, StorageResult};
use cstore_core::types::{Hash, LogPosition, Lsn};
use serde::{Deserialize, Serialize};

use super::WalStats;
use super::durable::{TEMP_SUFFIX, io_error, poisoning, sync_dir};
use super::fault::{FaultOp, FaultPlan};

/// Largest chunk of state data in one record, in bytes.
pub(super) const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// A snapshot file is synced every this many bytes as it is written (every record), not only
/// at the end: the log's own `fdatasync`s, made meanwhile on the same disk, then wait behind
/// a megabyte of the snapshot's writeback at most, not behind hundreds (a disk's cache flush
/// takes whatever was written before it; a leader's appends waited 100 ms at the end of a
/// checkpoint of 200 MB, and 4 ms at the median while one synced every 16 MiB).
const SNAPSHOT_SYNC_BYTES: usize = SNAPSHOT_CHUNK_BYTES;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const LSN_DIGITS: usize = 20;

/// The first record of a snapshot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SnapshotHeader {
    /// The last entry the state includes.
    pub position: LogPosition,
    /// SHA-256 of the data.
    pub state_hash: Hash,
    /// Total bytes of data in the chunks that follow.
    pub data_bytes: u64,
    /// The snapshot lay past the log's end when saved, so the log restarts after it. Recovery
    /// finishes that reset if a crash interrupted it.
    pub resets_log: bool,
    /// Counts saves in this directory. When a crash leaves two snapshot files, the higher
    /// sequence is the newer one, whatever their LSNs.
    pub sequence: u64,
}

/// The file name of the snapshot at `lsn`.
pub(super) fn file_name(lsn: Lsn) -> String {
    format!("{PREFIX}{:0width$}{SUFFIX}", lsn.0, width = LSN_DIGITS)
}

/// The LSN named by a snapshot file name; `None` for any other name.
pub(super) fn parse_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != LSN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// Every snapshot file in `dir`, by LSN, ascending.
pub(super) fn list(dir: &Path) -> StorageResult<Vec<(Lsn, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, &e))? {
        let entry = entry.map_err(|e| io_error("cannot list", dir, &e))?;
        if let Some(lsn) = parse_file_name(&entry.file_name().to_string_lossy()) {
            found.push((lsn, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Writes `snapshot` durably as `dir/snapshot-<lsn>.snap`, replacing a file of that name.
/// Returns its path. The caller removes older snapshot files.
///
/// The rename is the commit point: a failure before it (out of space, say) removes the temp
/// file and leaves the snapshot that was there, so a failed checkpoint never replaces a good
/// one.
pub(super) fn write(
    dir: &Path,
    snapshot: &Snapshot,
    resets_log: bool,
    sequence: u64,
    stats: &mut WalStats,
    faults: &mut FaultPlan,
) -> StorageResult<PathBuf> {
    let fault = faults.check(FaultOp::Snapshot);
    let prepared = prepare(dir, snapshot, resets_log, sequence, fault)?;
    commit(dir, prepared, stats)
}

/// A snapshot's temp file, written and synced, not yet renamed into place.
#[derive(Debug)]
pub(super) struct Prepared {
    temp: PathBuf,
    path: PathBuf,
    written: usize,
}

impl Prepared {
    /// Removes the temp file of a snapshot that will not be committed.
    pub(super) fn discard(self) {
        let _ = fs::remove_file(&self.temp);
    }
}

/// The first half of [`write`], which needs nothing of the store but its directory: writes and
/// syncs the temp file (or fails with the injected `fault`, removing the temp file).
pub(super) fn prepare(
    dir: &Path,
    snapshot: &Snapshot,
    resets_log: bool,
    sequence: u64,
    fault: Option<std::io::Error>,
) -> StorageResult<Prepared> {
    let header = SnapshotHeader {
        position: snapshot.position,
        state_hash: snapshot.state_hash,
        data_bytes: snapshot.data.len() as u64,
        resets_log,
        sequence,
    };
    let prepared = prepare_with(dir, &header, fault, |writer| {
        writer.write(&snapshot.data)?;
        Ok(true)
    })?;
    Ok(prepared.expect("a whole snapshot is always written"))
}

/// [`prepare`] for a snapshot whose data `fill` gives to the writer in pieces, after the
/// header (which says the data's length and hash: they are known before). `None`, the temp
/// file removed, when `fill` gives up (returns false); an error, the same, when it fails or
/// gives other than the header's length.
pub(super) fn prepare_with(
    dir: &Path,
    header: &SnapshotHeader,
    fault: Option<std::io::Error>,
    fill: impl FnOnce(&mut SnapshotWriter<'_>) -> StorageResult<bool>,
) -> StorageResult<Option<Prepared>> {
    let path = dir.join(file_name(header.position.lsn));
    let temp = dir.join(format!("{}{TEMP_SUFFIX}", file_name(header.position.lsn)));
    let written = match fault {
        Some(error) => Err(io_error("cannot write", &temp, &error)),
        None => write_temp(&temp, header, fill),
    };
    match written {
        Ok(Some(written)) => Ok(Some(Prepared {
            temp,
            path,
            written,
        })),
        Ok(None) => {
            let _ = fs::remove_file(&temp);
            Ok(None)
        }
        Err(error) => {
            let _ = fs::remove_file(&temp);
            Err(error)
        }
    }
}

/// The second half of [`write`]: renames the temp file into place (the commit point) and
/// syncs the directory.
pub(super) fn commit(
    dir: &Path,
    prepared: Prepared,
    stats: &mut WalStats,
) -> StorageResult<PathBuf> {
    let Prepared {
        temp,
        path,
        written,
    } = prepared;
    stats.data_syncs += 1;
    stats.bytes_written += written as u64;
    fs::rename(&temp, &path).map_err(|e| io_error("cannot rename into", &path, &e))?;
    sync_dir(dir, stats).map_err(poisoning)?;
    Ok(path)
}

/// Writes and fsyncs the temp file of a snapshot, its data given by `fill`; returns the bytes
/// written, or `None` if `fill` gave up.
fn write_temp(
    temp: &Path,
    header: &SnapshotHeader,
    fill: impl FnOnce(&mut SnapshotWriter<'_>) -> StorageResult<bool>,
) -> StorageResult<Option<usize>> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(|e| io_error("cannot create", temp, &e))?;
    let mut writer = SnapshotWriter {
        temp,
        out: BufWriter::with_capacity(SNAPSHOT_CHUNK_BYTES + 64, file),
        record: Vec::with_capacity(SNAPSHOT_CHUNK_BYTES + 64),
        pending: Vec::new(),
        written: 0,
        unsynced: 0,
        data_bytes: header.data_bytes,
        data_written: 0,
    };
    encode_value(RecordKind::Snapshot, header, &mut writer.record);
    writer.put_record()?;
    if !fill(&mut writer)? {
        return Ok(None);
    }
    writer.finish().map(Some)
}

/// Writes a snapshot's data into its file after the header: in records of
/// [`SNAPSHOT_CHUNK_BYTES`] (the last one shorter) whatever the size of the pieces given,
/// so the file is the same however the data came. Syncs every [`SNAPSHOT_SYNC_BYTES`].
#[derive(Debug)]
pub struct SnapshotWriter<'p> {
    temp: &'p Path,
    out: BufWriter<File>,
    /// The record being written.
    record: Vec<u8>,
    /// Data given and not yet in a record: less than a chunk.
    pending: Vec<u8>,
    /// Bytes of the file written, and of those, since the last sync.
    written: usize,
    unsynced: usize,
    /// The data's length, as the header says, and how much was given.
    data_bytes: u64,
    data_written: u64,
}

impl SnapshotWriter<'_> {
    /// Appends `data` to the snapshot's data. More than the header said is refused.
    pub fn write(&mut self, mut data: &[u8]) -> StorageResult<()> {
        self.data_written += data.len() as u64;
        if self.data_written > self.data_bytes {
            return Err(self.wrong_length());
        }
        while !data.is_empty() {
            if self.pending.is_empty() && data.len() >= SNAPSHOT_CHUNK_BYTES {
                // A whole chunk: straight from the data given, not copied first.
                let (chunk, rest) = data.split_at(SNAPSHOT_CHUNK_BYTES);
                self.put_chunk(chunk)?;
                data = rest;
                continue;
            }
            let take = (SNAPSHOT_CHUNK_BYTES - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == SNAPSHOT_CHUNK_BYTES {
                let chunk = std::mem::take(&mut self.pending);
                self.put_chunk(&chunk)?;
                self.pending = chunk;
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn wrong_length(&self) -> StorageError {
        StorageError::Invalid(format!(
            "snapshot data of at least {} bytes given for a header of {}",
            self.data_written, self.data_bytes
        ))
    }

    fn put_chunk(&mut self, chunk: &[u8]) -> StorageResult<()> {
        self.record.clear();
        encode_record(RecordKind::Snapshot, chunk, &mut self.record);
        self.put_record()
    }

    /// Writes `self.record`, and syncs if enough is unsynced.
    fn put_record(&mut self) -> StorageResult<()> {
        let write_err = |e: std::io::Error| io_error("cannot write", self.temp, &e);
        self.out.write_all(&self.record).map_err(write_err)?;
        self.written += self.record.len();
        self.unsynced += self.record.len();
        if self.unsynced >= SNAPSHOT_SYNC_BYTES {
            self.out.flush().map_err(write_err)?;
            self.out
                .get_ref()
                .sync_data()
                .map_err(|e| io_error("cannot fsync", self.temp, &e))?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Writes what is pending and syncs the file; the bytes of the file.
    fn finish(mut self) -> StorageResult<usize> {
        if self.data_written != self.data_bytes {
            return Err(self.wrong_length());
        }
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            self.put_chunk(&chunk)?;
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error("cannot write", self.temp, e.error()))?;
        file.sync_all()
            .map_err(|e| io_error("cannot fsync", self.temp, &e))?;
        Ok(self.written)
    }
}

/// Reads records of a snapshot file one at a time; the current record is in `buf`.
struct RecordReader<'p> {
    input: BufReader<File>,
    path: &'p Path,
    /// Where the next record starts.
    offset: u64,
    buf: Vec<u8>,
}

impl<'p> RecordReader<'p> {
    fn open(path: &'p Path) -> StorageResult<RecordReader<'p>> {
        let file = File::open(path).map_err(|e| io_error("cannot open", path, &e))?;
        Ok(RecordReader {
            input: BufReader::with_capacity(SNAPSHOT_CHUNK_BYTES + 64, file),
            path,
            offset: 0,
            buf: Vec::new(),
        })
    }

    /// Reads the next whole record (header included) into `buf`; false at a clean end of file.
    /// The crc is checked by the caller's decode.
    fn next_record(&mut self) -> StorageResult<bool> {
        let start = self.offset;
        self.buf.clear();
        self.buf.resize(RECORD_HEADER_BYTES, 0);
        let got = read_full(&mut self.input, &mut self.buf)
            .map_err(|e| io_error("cannot read", self.path, &e))?;
        if got == 0 {
            return Ok(false);
        }
        if got < RECORD_HEADER_BYTES {
            return Err(corrupt(
                self.path,
                start,
                "the file ends inside a record header",
            ));
        }
        let len = u32::from_le_bytes(self.buf[0..4].try_into().expect("4 bytes")) as usize;
        if len > RECORD_PAYLOAD_MAX {
            return Err(corrupt(
                self.path,
                start,
                format!("record length {len} is too large"),
            ));
        }
        self.buf.resize(RECORD_HEADER_BYTES + len, 0);
        let got = read_full(&mut self.input, &mut self.buf[RECORD_HEADER_BYTES..])
            .map_err(|e| io_error("cannot read", self.path, &e))?;
        if got < len {
            return Err(corrupt(self.path, start, "the file ends inside a record"));
        }
        self.offset += self.buf.len() as u64;
        Ok(true)
    }

    /// Reads and decodes the header record at the start of the file.
    fn header(&mut self) -> StorageResult<SnapshotHeader> {
        if !self.next_record()? {
            return Err(corrupt(self.path, 0, "the file is empty"));
        }
        let (header, _) =
            decode_value(RecordKind::Snapshot, &self.buf).map_err(|e| corrupt(self.path, 0, e))?;
        Ok(header)
    }
}

fn corrupt(path: &Path, offset: u64, why: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!(
        "snapshot {} at byte offset {offset}: {why}",
        path.display()
    ))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads and checks only the header of the snapshot file at `path`.
pub(super) fn read_header(path: &Path) -> StorageResult<SnapshotHeader> {
    RecordReader::open(path)?.header()
}

/// Reads the whole snapshot at `path`, checking every record's crc, the data length and the
/// state hash.
pub(super) fn read(path: &Path) -> StorageResult<Snapshot> {
    let snapshot = read_unhashed(path)?;
    if !snapshot.verify() {
        return Err(hash_mismatch(path));
    }
    Ok(snapshot)
}

/// The error of a snapshot file whose data does not match its state hash.
pub(super) fn hash_mismatch(path: &Path) -> StorageError {
    corrupt(path, 0, "the data does not match the state hash")
}

/// [`read`] but for the state hash, which the caller must check before it trusts the data.
pub(super) fn read_unhashed(path: &Path) -> StorageResult<Snapshot> {
    let mut reader = RecordReader::open(path)?;
    let header = reader.header()?;
    let file_bytes = fs::metadata(path)
        .map_err(|e| io_error("cannot stat", path, &e))?
        .len();
    if header.data_bytes > file_bytes {
        return Err(corrupt(
            path,
            0,
            "the header claims more data than the file holds",
        ));
    }
    let mut data = Vec::with_capacity(header.data_bytes as usize);
    loop {
        let start = reader.offset;
        if !reader.next_record()? {
            break;
        }
        let (kind, body, _) = decode_record(&reader.buf).map_err(|e| corrupt(path, start, e))?;
        if kind != RecordKind::Snapshot {
            return Err(corrupt(
                path,
                start,
                format!("a {kind:?} record in a snapshot"),
            ));
        }
        if data.len() + body.len() > header.data_bytes as usize {
            return Err(corrupt(path, start, "more data than the header announced"));
        }
        data.extend_from_slice(body);
    }
    if data.len() as u64 != header.data_bytes {
        return Err(corrupt(
            path,
            reader.offset,
            format!(
                "the file ends after {} of {} data bytes",
                data.len(),
                header.data_bytes
            ),
        ));
    }
    Ok(Snapshot {
        position: header.position,
        state_hash: header.state_hash,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(Lsn(42)), "snapshot-00000000000000000042.snap");
        assert_eq!(parse_file_name(&file_name(Lsn(42))), Some(Lsn(42)));
        assert_eq!(parse_file_name("snapshot-42.snap"), None);
        assert_eq!(parse_file_name("00000000000000000042.seg"), None);
    }
}
