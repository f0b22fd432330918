//! Temporary directories for server processes: unique, and removed on drop unless kept.
//!
//! Each server gets a root dir under `std::env::temp_dir()` named after this process and a
//! counter, holding `data/` (the server's `--data-dir`) and `logs/` (its stdout and stderr, one
//! pair per start). Keeping logs outside `data/` means the server never sees files it did not
//! write.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::HarnessError;

/// A test's temp dir, removed on drop unless [`TempRoot::keep`] was called.
#[derive(Debug)]
pub struct TempRoot {
    path: PathBuf,
    keep: bool,
}

impl TempRoot {
    /// Creates a fresh, empty dir named `cstore-<tag>-<pid>-<n>-<nanos>`.
    pub fn new(tag: &str) -> Result<TempRoot, HarnessError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("cstore-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
        Ok(TempRoot { path, keep: false })
    }

    /// The dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the dir in place on drop (its path is printed then).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() && std::env::var_os("CSTORE_KEEP_FAILED").is_some()
        {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Copies a directory tree (files and dirs only), for snapshotting a data dir.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(to)
        .map_err(|e| HarnessError::io(format!("creating {}", to.display()), e))?;
    let entries = std::fs::read_dir(from)
        .map_err(|e| HarnessError::io(format!("listing {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| HarnessError::io("reading a dir entry", e))?;
        let kind = entry
            .file_type()
            .map_err(|e| HarnessError::io("reading a file type", e))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| HarnessError::io(format!("copying {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}

/// Every regular file under `dir`, recursively, sorted by path.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>, HarnessError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|e| HarnessError::io(format!("listing {}", current.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| HarnessError::io("reading a dir entry", e))?;
            let kind = entry
                .file_type()
                .map_err(|e| HarnessError::io("reading a file type", e))?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}
