//! Durable file primitives: directory fsync, atomic replacement of small files, IO errors that
//! name their file.
//!
//! A file's contents are durable after `fsync` of the file, but its name (creation, rename,
//! deletion) is only durable after `fsync` of the directory that holds it. Every place the WAL
//! creates, renames or deletes a file goes through here, so that rule is kept in one spot.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use cstore_core::log::codec::{RecordKind, decode_value, encode_value};
use cstore_core::storage::{StorageError, StorageResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::WalStats;

/// Suffix of files being written before they are renamed into place.
pub(super) const TEMP_SUFFIX: &str = ".tmp";
/// Largest single-record file (metadata, compaction point) read back, in bytes.
const SMALL_FILE_BYTES_MAX: u64 = 64 << 10;

/// An IO error with the operation and the file it concerned. Out of space (`ENOSPC`,
/// `EDQUOT`) is `Full`, which does not poison the store: callers that cannot leave the store
/// unchanged after such a failure (an append's `fdatasync`) use [`io_failure`] instead.
pub(super) fn io_error(what: &str, path: &Path, error: &std::io::Error) -> StorageError {
    if super::fault::is_full(error) {
        StorageError::Full(format!("{what} {}: {error}", path.display()))
    } else {
        io_failure(what, path, error)
    }
}

/// An IO error that leaves the store in an unknown state, whatever its kind: `Io`.
pub(super) fn io_failure(what: &str, path: &Path, error: &std::io::Error) -> StorageError {
    StorageError::Io(format!("{what} {}: {error}", path.display()))
}

/// The same error as one that poisons the store: after a step that may have changed what is
/// on disk (a rename done, a sync not), out of space is no longer a clean failure.
pub(super) fn poisoning(error: StorageError) -> StorageError {
    match error {
        StorageError::Full(message) => StorageError::Io(message),
        other => other,
    }
}

/// Makes the names in `dir` durable: creations, renames and deletions before this call.
pub(super) fn sync_dir(dir: &Path, stats: &mut WalStats) -> StorageResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot fsync directory", dir, &e))?;
    stats.dir_syncs += 1;
    Ok(())
}

/// Creates `dir` if it is missing, durably (the parent directory is synced too).
pub(super) fn create_dir(dir: &Path, stats: &mut WalStats) -> StorageResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| io_error("cannot create directory", dir, &e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent, stats)?;
    }
    Ok(())
}

/// Replaces `dir/name` with `bytes`, atomically and durably: write a temp file, fsync it,
/// rename it over the old one, fsync the directory. A crash leaves the old or the new file.
pub(super) fn replace_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    stats: &mut WalStats,
) -> StorageResult<()> {
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let path = dir.join(name);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| io_error("cannot create", &temp, &e))
        .and_then(|mut file| {
            file.write_all(bytes)
                .map_err(|e| io_error("cannot write", &temp, &e))?;
            file.sync_all()
                .map_err(|e| io_error("cannot fsync", &temp, &e))
        });
    if let Err(error) = written {
        // The old file is untouched; the temp file is never renamed in, so drop it (best
        // effort: the next open removes leftovers anyway) and give its space back.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    stats.data_syncs += 1;
    stats.bytes_written += bytes.len() as u64;
    fs::rename(&temp, &path).map_err(|e| io_error("cannot rename into", &path, &e))?;
    sync_dir(dir, stats).map_err(poisoning)
}

/// Writes `value` as the single record of `dir/name`, replacing it atomically.
pub(super) fn write_record_file<T: Serialize>(
    dir: &Path,
    name: &str,
    kind: RecordKind,
    value: &T,
    stats: &mut WalStats,
) -> StorageResult<()> {
    let mut bytes = Vec::new();
    encode_value(kind, value, &mut bytes);
    replace_file(dir, name, &bytes, stats)
}

/// Reads the single record of `path`; `None` when the file does not exist. A file that does not
/// hold exactly one valid record is `Corrupt`.
pub(super) fn read_record_file<T: DeserializeOwned>(
    path: &Path,
    kind: RecordKind,
) -> StorageResult<Option<T>> {
    let len = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot stat", path, &e)),
    };
    if len > SMALL_FILE_BYTES_MAX {
        return Err(StorageError::Corrupt(format!(
            "{} is {len} bytes; it should hold one small record",
            path.display()
        )));
    }
    let bytes = fs::read(path).map_err(|e| io_error("cannot read", path, &e))?;
    let (value, used) = decode_value(kind, &bytes)
        .map_err(|e| StorageError::Corrupt(format!("{} at byte offset 0: {e}", path.display())))?;
    if used != bytes.len() {
        return Err(StorageError::Corrupt(format!(
            "{} at byte offset {used}: {} bytes after its record",
            path.display(),
            bytes.len() - used
        )));
    }
    Ok(Some(value))
}

/// Removes `path`; the caller syncs the directory.
pub(super) fn remove_file(path: &Path) -> StorageResult<()> {
    fs::remove_file(path).map_err(|e| io_error("cannot remove", path, &e))
}

/// Removes leftover temp files in `dir` (from writes a crash interrupted). Returns how many.
pub(super) fn remove_temp_files(dir: &Path) -> StorageResult<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, &e))? {
        let entry = entry.map_err(|e| io_error("cannot list", dir, &e))?;
        if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            remove_file(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}
