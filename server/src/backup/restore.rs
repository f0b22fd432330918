//! Rebuilding a data directory from a backup, at its last entry or at an earlier point.
//!
//! The order makes a failed restore change nothing: the flags and the target are checked,
//! then the whole backup is verified (read only), then the new directory is built beside the
//! target (`D.restoring`) and renamed into place in one step. The entries restored are also
//! replayed onto a state, so a restore that finishes is one `cstore serve` starts from, and
//! its state hash at the chosen LSN is printed.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use cstore_core::Hash;
use cstore_core::log::LogEntry;
use cstore_core::state::State;
use cstore_core::storage::Metadata;
use cstore_core::types::{Lsn, ReplicaId, Term};

use super::progress::entries_bar;
use super::time::{format_rfc3339_ms, parse_rfc3339_ms};
use super::{BackupError, Verified, verify};
use crate::wal::FileStore;
use crate::wal::reader::{self, ReadError, TailRule};

/// Entries appended per fsync.
const RESTORE_BATCH_ENTRIES: usize = 1024;

/// The point a restore goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The backup's last entry.
    Latest,
    /// The state right after this entry.
    Lsn(u64),
    /// The state after every entry the leader wrote at or before this time (Unix ms): the
    /// log up to the first entry stamped later.
    TimeMs(u64),
}

impl RestoreTarget {
    /// From `--to-lsn` and `--to-time` (at most one).
    pub fn from_flags(
        to_lsn: Option<u64>,
        to_time: Option<&str>,
    ) -> Result<RestoreTarget, BackupError> {
        match (to_lsn, to_time) {
            (Some(_), Some(_)) => Err(BackupError::ConflictingFlags(
                "give --to-lsn or --to-time, not both".into(),
            )),
            (Some(lsn), None) => Ok(RestoreTarget::Lsn(lsn)),
            (None, Some(text)) => parse_rfc3339_ms(text)
                .map(RestoreTarget::TimeMs)
                .ok_or_else(|| BackupError::InvalidTime(text.to_string())),
            (None, None) => Ok(RestoreTarget::Latest),
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The last entry in the restored data directory.
    pub lsn: Lsn,
    /// Its hash.
    pub hash: Hash,
    /// SHA-256 of the state image at `lsn`.
    pub state_hash: Hash,
    /// Entries written after the snapshot.
    pub entries: u64,
    /// The leader time of the last entry (Unix ms), 0 for an empty log.
    pub time_ms: u64,
    /// Where the directory that was there before went (with `--force`).
    pub replaced: Option<PathBuf>,
}

/// Restores the backup in `from` into `data_dir` at `target`. `data_dir` must be missing or
/// empty, or `force` set (the old directory is then renamed aside, never deleted).
pub fn restore(
    from: &Path,
    data_dir: &Path,
    target: RestoreTarget,
    force: bool,
) -> Result<Restored, BackupError> {
    let occupied = check_data_dir(data_dir, force)?;
    let verified = verify(from)?;
    let lsn = resolve(&verified, &target)?;
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::DataDirNotEmpty(data_dir.display().to_string()))?
        .to_string_lossy()
        .into_owned();
    let building = data_dir.with_file_name(format!("{name}.restoring"));
    if building.exists() {
        // Left by an interrupted restore of ours: it never became the data directory.
        fs::remove_dir_all(&building).map_err(|e| io_error("cannot remove", &building, e))?;
    }
    let built = build(from, &building, &verified, lsn);
    let mut restored = match built {
        Ok(restored) => restored,
        Err(e) => {
            let _ = fs::remove_dir_all(&building);
            return Err(e);
        }
    };
    if occupied {
        let aside = data_dir.with_file_name(format!(
            "{name}.before-restore-{}",
            crate::clock::now_ms().0
        ));
        fs::rename(data_dir, &aside).map_err(|e| io_error("cannot move aside", data_dir, e))?;
        restored.replaced = Some(aside);
    } else if data_dir.exists() {
        fs::remove_dir(data_dir).map_err(|e| io_error("cannot replace", data_dir, e))?;
    }
    fs::rename(&building, data_dir).map_err(|e| io_error("cannot rename into", data_dir, e))?;
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot fsync", parent, e))?;
    Ok(restored)
}

/// True when `data_dir` holds files (allowed only with `force`, and never while a server
/// holds its lock).
fn check_data_dir(data_dir: &Path, force: bool) -> Result<bool, BackupError> {
    let shown = || data_dir.display().to_string();
    let occupied = match fs::read_dir(data_dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) if data_dir.exists() => return Err(BackupError::DataDirNotEmpty(shown())),
        Err(e) => return Err(io_error("cannot read", data_dir, e)),
    };
    if occupied && !force {
        return Err(BackupError::DataDirNotEmpty(shown()));
    }
    if occupied && let Ok(lock) = File::open(data_dir.join("LOCK")) {
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BackupError::DataDirInUse(shown()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_error("cannot lock", &data_dir.join("LOCK"), e));
            }
        }
    }
    Ok(occupied)
}

/// The LSN `target` names in this backup.
fn resolve(verified: &Verified, target: &RestoreTarget) -> Result<Lsn, BackupError> {
    let base = verified.base.lsn.0;
    let last = verified.manifest.last_lsn;
    let covers = format!("the backup covers LSN {base} (its snapshot) through {last}");
    match *target {
        RestoreTarget::Latest => Ok(Lsn(last)),
        RestoreTarget::Lsn(lsn) if lsn < base => Err(BackupError::OutOfRange(format!(
            "--to-lsn {lsn} is before the backup's snapshot: {covers}"
        ))),
        RestoreTarget::Lsn(lsn) if lsn > last => Err(BackupError::OutOfRange(format!(
            "--to-lsn {lsn} is beyond the backup's log: {covers}"
        ))),
        RestoreTarget::Lsn(lsn) => Ok(Lsn(lsn)),
        RestoreTarget::TimeMs(ms) => verified.lsn_at_time(ms).ok_or_else(|| {
            BackupError::OutOfRange(format!(
                "--to-time {} is before the backup's snapshot, whose state is from {}: {covers}",
                format_rfc3339_ms(ms),
                format_rfc3339_ms(verified.base_time.0)
            ))
        }),
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> BackupError {
    BackupError::Storage(cstore_core::storage::StorageError::Io(format!(
        "{what} {}: {e}",
        path.display()
    )))
}

/// Builds the data directory at `dir`: the snapshot, the entries through `lsn`, metadata.
fn build(from: &Path, dir: &Path, verified: &Verified, lsn: Lsn) -> Result<Restored, BackupError> {
    let mut store = FileStore::open(dir)?;
    let mut state = match &verified.snapshot {
        Some(snapshot) => {
            store.install_snapshot_blocking(snapshot)?;
            State::from_snapshot(snapshot)
                .map_err(|e| BackupError::Corrupt(format!("the snapshot does not load: {e}")))?
        }
        None => State::new(),
    };
    let mut term = Term(1);
    let mut entries = 0u64;
    let mut time_ms = state.last_timestamp().0;
    let bar = entries_bar("restoring", Some(lsn.0 - verified.base.lsn.0));
    let mut batch: Vec<LogEntry> = Vec::with_capacity(RESTORE_BATCH_ENTRIES);
    let mut replay_error = None;
    let end = reader::read_entries(
        from,
        verified.base,
        Some(lsn),
        TailRule::Strict,
        &mut |entry: LogEntry| {
            if let Err(rejection) = state.apply(&entry) {
                replay_error = Some(BackupError::Replay {
                    lsn: entry.lsn.0,
                    why: rejection.to_string(),
                });
                return Err(ReadError::Missing(entry.lsn));
            }
            term = term.max(entry.term);
            time_ms = entry.timestamp.0;
            entries += 1;
            bar.inc(1);
            batch.push(entry);
            if batch.len() >= RESTORE_BATCH_ENTRIES {
                store.append_blocking(&batch)?;
                batch.clear();
            }
            Ok(())
        },
    );
    if let Some(error) = replay_error {
        return Err(error);
    }
    let end = end?;
    store.append_blocking(&batch)?;
    bar.finish_and_clear();
    assert_eq!(
        end.last.lsn, lsn,
        "the verified backup holds every entry through lsn"
    );
    store.save_metadata_blocking(&Metadata {
        term,
        node_id: ReplicaId(rand::random()),
    })?;
    Ok(Restored {
        lsn,
        hash: end.last.hash,
        state_hash: state.snapshot().state_hash,
        entries,
        time_ms,
        replaced: None,
    })
}
