//! Checking a backup directory against its manifest, reading only.
//!
//! Every byte is checked on the way: the snapshot's chunks (crc) and state hash, every log
//! record (crc, SHA-256, canonical documents), the chain from the snapshot's position to the
//! manifest's last (lsn, hash). The first failure is reported with its file and byte offset
//! (or the LSN where the chain breaks); nothing is repaired, nothing written.

use std::path::Path;

use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::state::State;
use cstore_core::types::{LogPosition, Lsn, TimestampMs};

use super::manifest::{Manifest, SnapshotInfo};
use super::progress::entries_bar;
use super::{BackupError, time};
use crate::wal::reader::{self, ReadError, TailRule};

/// A backup that verified, and what a restore needs from it.
#[derive(Debug)]
pub struct Verified {
    /// Its manifest, matched by the files.
    pub manifest: Manifest,
    /// Its snapshot, verified.
    pub snapshot: Option<Snapshot>,
    /// The position the log continues from.
    pub base: LogPosition,
    /// The leader time of the state at `base` (the snapshot's last entry; 0 without one).
    pub base_time: TimestampMs,
    /// Leader time of each entry after `base`, in order (8 bytes per entry), for `--to-time`.
    pub times: Vec<TimestampMs>,
}

impl Verified {
    /// The last LSN whose entry, and every entry before it, the leader wrote at or before
    /// `at_ms`; `None` when the state at `base` is already later than that.
    pub fn lsn_at_time(&self, at_ms: u64) -> Option<Lsn> {
        if self.base_time.0 > at_ms {
            return None;
        }
        let before = self.times.iter().take_while(|t| t.0 <= at_ms).count();
        Some(Lsn(self.base.lsn.0 + before as u64))
    }
}

/// Verifies the backup in `dir` against its manifest, reading only.
pub fn verify(dir: &Path) -> Result<Verified, BackupError> {
    let manifest = Manifest::read(dir)?;
    let (base, snapshot, base_time) = check_snapshot(dir, &manifest)?;
    let bar = entries_bar(
        "verifying",
        Some(manifest.last_lsn.saturating_sub(base.lsn.0)),
    );
    let mut times = Vec::with_capacity(manifest.entries.min(1 << 20) as usize);
    let end = reader::read_entries(dir, base, None, TailRule::Strict, &mut |entry: LogEntry| {
        times.push(entry.timestamp);
        bar.inc(1);
        Ok(())
    })
    .map_err(|e| match e {
        ReadError::Missing(lsn) => BackupError::Corrupt(format!(
            "entry {lsn}, the first after the snapshot, is in no segment of {}",
            dir.display()
        )),
        other => other.into(),
    })?;
    bar.finish_and_clear();
    if end.last.lsn.0 != manifest.last_lsn || end.last.hash.to_hex() != manifest.last_hash {
        let at = end.last.lsn.next();
        return Err(BackupError::Corrupt(format!(
            "the log in {} ends at entry {} (hash {}), the manifest at entry {} (hash {}): \
             entries from LSN {at} on are missing or a file was cut",
            dir.display(),
            end.last.lsn,
            end.last.hash.to_hex(),
            manifest.last_lsn,
            manifest.last_hash
        )));
    }
    let (first, last) = (times.first().map(|t| t.0), times.last().map(|t| t.0));
    if times.len() as u64 != manifest.entries
        || (first, last) != (manifest.first_entry_time_ms, manifest.last_entry_time_ms)
    {
        return Err(BackupError::Corrupt(format!(
            "{} holds {} entries stamped {first:?}..{last:?} ms, the manifest says {} stamped \
             {:?}..{:?} ms",
            dir.display(),
            times.len(),
            manifest.entries,
            manifest.first_entry_time_ms,
            manifest.last_entry_time_ms
        )));
    }
    Ok(Verified {
        manifest,
        snapshot,
        base,
        base_time,
        times,
    })
}

/// The snapshot file must be the one the manifest names, whole, with that position.
fn check_snapshot(
    dir: &Path,
    manifest: &Manifest,
) -> Result<(LogPosition, Option<Snapshot>, TimestampMs), BackupError> {
    let found = reader::newest_snapshot(dir)?;
    match (&manifest.snapshot, found) {
        (None, None) => {
            if manifest.base_lsn != 0 {
                return Err(BackupError::Corrupt(format!(
                    "the manifest starts the log after entry {} but {} holds no snapshot",
                    manifest.base_lsn,
                    dir.display()
                )));
            }
            Ok((LogPosition::START, None, TimestampMs(0)))
        }
        (Some(info), None) => Err(BackupError::Corrupt(format!(
            "the snapshot {} named by the manifest is missing",
            dir.join(&info.file).display()
        ))),
        (None, Some((path, _))) => Err(BackupError::Corrupt(format!(
            "{} is not named by the manifest",
            path.display()
        ))),
        (Some(info), Some((path, snapshot))) => {
            let position = snapshot.position;
            if position.lsn.0 != info.lsn
                || position.hash.to_hex() != info.hash
                || snapshot.state_hash.to_hex() != info.state_hash
                || info.lsn != manifest.base_lsn
            {
                return Err(BackupError::Corrupt(format!(
                    "snapshot {} is at entry {} (hash {}, state {}), the manifest names entry {} \
                     (hash {}, state {})",
                    path.display(),
                    position.lsn,
                    position.hash.to_hex(),
                    snapshot.state_hash.to_hex(),
                    info.lsn,
                    info.hash,
                    info.state_hash
                )));
            }
            let time = State::snapshot_last_timestamp(&snapshot)
                .map_err(|e| BackupError::Corrupt(format!("{}: {e}", path.display())))?;
            if time.0 != info.last_time_ms {
                return Err(BackupError::Corrupt(format!(
                    "snapshot {} holds the state of {} ms, the manifest says {} ms",
                    path.display(),
                    time.0,
                    info.last_time_ms
                )));
            }
            Ok((position, Some(snapshot), time))
        }
    }
}

/// The manifest of the backup in `dir` as its files are now: read strictly (the same checks
/// as [`verify`]) and summarized. Used right after a backup is written.
pub(super) fn describe(dir: &Path, source: &str) -> Result<Manifest, BackupError> {
    let found = reader::newest_snapshot(dir)?;
    let (base, snapshot) = match &found {
        None => (LogPosition::START, None),
        Some((path, snapshot)) => {
            let last_time = State::snapshot_last_timestamp(snapshot)
                .map_err(|e| BackupError::Corrupt(format!("{}: {e}", path.display())))?;
            let info = SnapshotInfo {
                file: path
                    .file_name()
                    .expect("a snapshot file has a name")
                    .to_string_lossy()
                    .into_owned(),
                lsn: snapshot.position.lsn.0,
                hash: snapshot.position.hash.to_hex(),
                state_hash: snapshot.state_hash.to_hex(),
                last_time_ms: last_time.0,
            };
            (snapshot.position, Some(info))
        }
    };
    let mut entries = 0u64;
    let mut first_time = None;
    let mut last_time = None;
    let end = reader::read_entries(dir, base, None, TailRule::Strict, &mut |entry: LogEntry| {
        entries += 1;
        first_time.get_or_insert(entry.timestamp.0);
        last_time = Some(entry.timestamp.0);
        Ok(())
    })?;
    let now_ms = crate::clock::now_ms().0;
    Ok(Manifest {
        format: super::manifest::MANIFEST_FORMAT,
        source: source.to_string(),
        created_at: time::format_rfc3339_ms(now_ms),
        snapshot,
        base_lsn: base.lsn.0,
        last_lsn: end.last.lsn.0,
        last_hash: end.last.hash.to_hex(),
        entries,
        first_entry_time_ms: first_time,
        last_entry_time_ms: last_time,
        first_entry_time: first_time.map(time::format_rfc3339_ms),
        last_entry_time: last_time.map(time::format_rfc3339_ms),
    })
}
