//! `backup.json`: what a backup holds, written last, after the files it describes were read
//! back and checked.
//!
//! It is JSON so that an operator can read it; it is not trusted alone: `verify` checks the
//! files against it (the snapshot's position, and the log's last (lsn, hash), which the hash
//! chain ties to every earlier entry), so a damaged manifest, a removed segment or a cut file
//! is found, not believed.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BackupError;

/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "backup.json";
/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// The snapshot a backup starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its file name in the backup directory.
    pub file: String,
    /// The last entry it includes.
    pub lsn: u64,
    /// That entry's hash (hex).
    pub hash: String,
    /// SHA-256 of the state image (hex).
    pub state_hash: String,
    /// The leader time of its last entry (Unix ms).
    pub last_time_ms: u64,
}

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Where it was taken from (a URL or a data directory).
    pub source: String,
    /// When it finished (the backup tool's clock), RFC 3339.
    pub created_at: String,
    /// The snapshot, when the source's log was compacted behind one.
    pub snapshot: Option<SnapshotInfo>,
    /// The log continues after this LSN (the snapshot's, or 0).
    pub base_lsn: u64,
    /// The last entry of the backup.
    pub last_lsn: u64,
    /// Its hash (hex): the end of the chain every entry is checked against.
    pub last_hash: String,
    /// Entries in the log after the snapshot.
    pub entries: u64,
    /// Leader time of the first and last entry after the snapshot (Unix ms), when there is one.
    pub first_entry_time_ms: Option<u64>,
    /// See `first_entry_time_ms`.
    pub last_entry_time_ms: Option<u64>,
    /// The same two, as RFC 3339, for people.
    pub first_entry_time: Option<String>,
    /// See `first_entry_time`.
    pub last_entry_time: Option<String>,
}

impl Manifest {
    /// Reads `dir/backup.json`. A missing file means `dir` is not a backup; one that does not
    /// parse is damage.
    pub fn read(dir: &Path) -> Result<Manifest, BackupError> {
        let path = dir.join(MANIFEST_FILE);
        let not_a_backup = |why: String| BackupError::NotABackup {
            dir: dir.display().to_string(),
            why,
        };
        if !dir.is_dir() {
            return Err(not_a_backup("no such directory".into()));
        }
        let bytes =
            fs::read(&path).map_err(|e| not_a_backup(format!("{}: {e}", path.display())))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            BackupError::Corrupt(format!(
                "{} at line {} column {}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(not_a_backup(format!(
                "manifest format {} (this build reads {MANIFEST_FORMAT})",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Writes `dir/backup.json` durably: temp file, fsync, rename, directory fsync.
    pub fn write(&self, dir: &Path) -> Result<(), BackupError> {
        let io = |what: &str, e: std::io::Error| {
            BackupError::Storage(cstore_core::storage::StorageError::Io(format!(
                "{what} {}: {e}",
                dir.join(MANIFEST_FILE).display()
            )))
        };
        let temp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let mut text = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        text.push(b'\n');
        let mut file = File::create(&temp).map_err(|e| io("cannot create", e))?;
        file.write_all(&text).map_err(|e| io("cannot write", e))?;
        file.sync_all().map_err(|e| io("cannot fsync", e))?;
        fs::rename(&temp, dir.join(MANIFEST_FILE)).map_err(|e| io("cannot rename", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot fsync the directory of", e))?;
        Ok(())
    }
}
