//! Helpers shared by the WAL's test files: unique temp directories, entry chains, file edits.

#![allow(dead_code)] // each test file uses a different subset

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use cstore_core::LogEntry;
use cstore_core::log::codec::encode_entry;
use cstore_core::storage::conformance::entries_after;
use cstore_core::types::{LogPosition, Term};
use cstore_server::wal::{FileStore, WalOptions};

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A directory under the system temp dir, unique to this process and call, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("cstore-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `count` entries from LSN 1, as the conformance suite builds them.
pub fn chain(count: usize) -> Vec<LogEntry> {
    entries_after(LogPosition::START, count, Term(1), "w")
}

/// The segment files of the store in `dir`, in order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .expect("list wal")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// The LSN a segment file is named after.
pub fn first_lsn(segment: &Path) -> u64 {
    segment
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("a segment name")
}

/// Where each entry's record starts and ends inside the segment file that begins with
/// `entries[0]`.
pub fn record_bounds(entries: &[LogEntry]) -> Vec<(usize, usize)> {
    let mut bounds = Vec::new();
    let mut buf = Vec::new();
    for entry in entries {
        let start = buf.len();
        encode_entry(entry, &mut buf);
        bounds.push((start, buf.len()));
    }
    bounds
}

/// A store in `dir` holding `count` entries, appended in batches of `batch`.
pub fn filled_store(dir: &Path, options: WalOptions, count: usize, batch: usize) -> Vec<LogEntry> {
    let entries = chain(count);
    let mut store = FileStore::open_with(dir, options).expect("open");
    for part in entries.chunks(batch) {
        store.append_blocking(part).expect("append");
    }
    entries
}

/// Reads everything the store in `dir` holds after reopening it.
pub fn reopen_and_read(dir: &Path, options: WalOptions) -> Result<Vec<LogEntry>, String> {
    let store = FileStore::open_with(dir, options).map_err(|e| e.to_string())?;
    let state = store.log_state();
    store
        .read_range_blocking(state.first, state.last.lsn.next())
        .map_err(|e| e.to_string())
}

/// Writes `bytes` at `offset` of a file (created if missing), in place: no truncation, which
/// on ext4 costs far more than the write when done thousands of times.
pub fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open for patching");
    file.write_all_at(bytes, offset as u64).expect("patch");
}
