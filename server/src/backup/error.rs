//! What `cstore backup` and `cstore restore` report, each failure with a stable code.

use cstore_core::error::ErrorCode;
use cstore_core::storage::StorageError;

use crate::wal::reader::ReadError;

/// Why a backup or restore did not happen. Nothing was changed on disk by one that fails
/// before writing (every input error), and a restore never writes before the backup verified.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// `--from` is neither an `http://` URL nor a readable data directory.
    #[error("--from {from:?}: {why}")]
    InvalidSource {
        /// What was given.
        from: String,
        /// What is wrong with it.
        why: String,
    },
    /// The server to back up from did not answer, or replication from it failed.
    #[error("cannot back up from {from}: {why}")]
    SourceUnavailable {
        /// The server.
        from: String,
        /// What failed.
        why: String,
    },
    /// The backup's target directory already holds files.
    #[error("--to {0} is not empty: a backup goes into a new or empty directory")]
    TargetNotEmpty(String),
    /// `--from` of a restore is not a backup (no manifest, or unreadable).
    #[error("{dir} is not a readable backup: {why}")]
    NotABackup {
        /// The directory.
        dir: String,
        /// Why.
        why: String,
    },
    /// The backup is damaged; the message names the file and byte offset (or the LSN).
    #[error("the backup is damaged: {0}")]
    Corrupt(String),
    /// The restore's data directory already holds files and `--force` was not given.
    #[error(
        "--data-dir {0} is not empty: restore into a new or empty directory, or pass --force \
         (the old directory is then kept beside it, renamed)"
    )]
    DataDirNotEmpty(String),
    /// The restore's data directory is locked by a running server.
    #[error("--data-dir {0} is in use by a running server: stop it first")]
    DataDirInUse(String),
    /// The flags contradict each other.
    #[error("{0}")]
    ConflictingFlags(String),
    /// `--to-time` is not an RFC 3339 time.
    #[error("--to-time {0:?} is not an RFC 3339 time such as 2026-12-06T08:13:05Z")]
    InvalidTime(String),
    /// The point asked for is outside what the backup covers.
    #[error("{0}")]
    OutOfRange(String),
    /// Reading or writing files failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The entries do not replay onto the state (a backup that verifies but does not apply).
    #[error("entry {lsn} does not replay onto the restored state: {why}")]
    Replay {
        /// The entry.
        lsn: u64,
        /// The rejection.
        why: String,
    },
}

impl ErrorCode for BackupError {
    fn code(&self) -> &'static str {
        match self {
            BackupError::InvalidSource { .. } => "invalid_source",
            BackupError::SourceUnavailable { .. } => "source_unavailable",
            BackupError::TargetNotEmpty(_) => "target_not_empty",
            BackupError::NotABackup { .. } => "not_a_backup",
            BackupError::Corrupt(_) => "backup_corrupt",
            BackupError::DataDirNotEmpty(_) => "data_dir_not_empty",
            BackupError::DataDirInUse(_) => "data_dir_in_use",
            BackupError::ConflictingFlags(_) => "conflicting_flags",
            BackupError::InvalidTime(_) => "invalid_time",
            BackupError::OutOfRange(_) => "lsn_out_of_range",
            BackupError::Storage(StorageError::Corrupt(_)) => "backup_corrupt",
            BackupError::Storage(_) => "storage_io",
            BackupError::Replay { .. } => "backup_corrupt",
        }
    }
}

impl BackupError {
    /// The process exit code: 2 for input errors (nothing was done), 3 for a damaged backup,
    /// 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self.code() {
            "backup_corrupt" => 3,
            "storage_io" | "source_unavailable" => 1,
            _ => 2,
        }
    }
}

impl From<StorageError> for BackupError {
    fn from(error: StorageError) -> BackupError {
        match error {
            StorageError::Corrupt(why) => BackupError::Corrupt(why),
            other => BackupError::Storage(other),
        }
    }
}

impl From<ReadError> for BackupError {
    fn from(error: ReadError) -> BackupError {
        match error {
            ReadError::Storage(e) => e.into(),
            other => BackupError::Corrupt(other.to_string()),
        }
    }
}
