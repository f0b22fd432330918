//! Recovery of the file WAL from a crash inside `install_snapshot`, by editing real files.
//!
//! An install writes the snapshot file (the commit point), removes the older snapshot file,
//! deletes every segment newest first, and writes the compaction point with the reset's
//! sequence. Each test builds the directory a crash between two of those steps would leave,
//! from copies of a real store taken before and after a real install, and requires that open
//! reads back exactly the old store (crash before the commit point) or exactly the new one.

mod wal_support;

use std::fs;
use std::path::Path;

use cstore_core::LogEntry;
use cstore_core::log::codec::{RecordKind, encode_value};
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::conformance::{entries_after, snapshot_at};
use cstore_core::storage::{LogState, Metadata};
use cstore_core::types::{Hash, LogPosition, Lsn, ReplicaId, Term};
use cstore_server::wal::{FileStore, WalOptions};
use wal_support::{TempDir, filled_store, reopen_and_read, segment_files};

/// About three entries per segment.
const SMALL: WalOptions = WalOptions {
    segment_bytes_max: 500,
    hashes_checked_by_replay: false,
    scan_read_bytes: cstore_server::wal::SCAN_READ_BYTES,
};

const METADATA: Metadata = Metadata {
    term: Term(3),
    node_id: ReplicaId(77),
};

/// A position from another history (no entry of the test chain has this hash).
fn foreign(lsn: u64) -> LogPosition {
    LogPosition {
        lsn: Lsn(lsn),
        hash: Hash([0x5a; 32]),
    }
}

fn snapshot_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap")
}

/// Copies the files of a store directory (the data dir and its `wal/`), except the lock.
fn copy_store(from: &Path, to: &Path) {
    for sub in ["", "wal"] {
        let (src, dst) = (from.join(sub), to.join(sub));
        fs::create_dir_all(&dst).unwrap();
        for entry in fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name().is_some_and(|n| n != "LOCK") {
                fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// The old store: entries 1..=12 over several segments, compacted through 2, a snapshot at
/// 4, metadata. Returns its entries and its snapshot.
fn old_store(dir: &Path) -> (Vec<LogEntry>, Snapshot) {
    let entries = filled_store(dir, SMALL, 12, 3);
    let mut store = FileStore::open_with(dir, SMALL).unwrap();
    store.compact_prefix_blocking(Lsn(2)).unwrap();
    let snapshot = snapshot_at(entries[3].position(), 800, 1);
    store.save_snapshot_blocking(&snapshot).unwrap();
    store.save_metadata_blocking(&METADATA).unwrap();
    (entries, snapshot)
}

/// Copies `before` into a new directory and installs `snapshot` there for real; returns it.
fn installed_copy(before: &Path, snapshot: &Snapshot, name: &str) -> TempDir {
    let after = TempDir::new(name);
    copy_store(before, after.path());
    let mut store = FileStore::open_with(after.path(), SMALL).unwrap();
    store.install_snapshot_blocking(snapshot).unwrap();
    assert!(segment_files(after.path()).is_empty());
    after
}

/// Requires that `dir` opens as the store right after installing `snapshot`, that the next
/// entries continue from it, and that they survive a reopen.
fn assert_installed(dir: &Path, snapshot: &Snapshot, context: &str) {
    let mut store = FileStore::open_with(dir, SMALL).unwrap();
    assert_eq!(
        store.log_state(),
        LogState {
            first: snapshot.position.lsn.next(),
            last: snapshot.position
        },
        "{context}"
    );
    assert_eq!(
        store.load_snapshot_blocking().unwrap().as_ref(),
        Some(snapshot),
        "{context}"
    );
    assert_eq!(store.metadata(), Some(&METADATA), "{context}");
    assert!(segment_files(dir).is_empty(), "{context}: segments left");
    let snapshots: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("snapshot-"))
        .collect();
    assert_eq!(
        snapshots,
        [snapshot_name(snapshot.position.lsn.0)],
        "{context}"
    );
    let next = entries_after(snapshot.position, 4, Term(5), "n");
    store.append_blocking(&next).unwrap();
    drop(store);
    assert_eq!(reopen_and_read(dir, SMALL).unwrap(), next, "{context}");
    let store = FileStore::open_with(dir, SMALL).unwrap();
    assert_eq!(
        store.stats().segments_deleted,
        0,
        "{context}: nothing redone"
    );
}

#[test]
fn a_crash_before_the_snapshot_rename_leaves_the_old_store() {
    let before = TempDir::new("install-old");
    let (entries, old_snapshot) = old_store(before.path());
    let snapshot = snapshot_at(foreign(6), 1_500, 2);
    let after = installed_copy(before.path(), &snapshot, "install-new");
    // The crash: the new snapshot was written in full as a temp file, never renamed.
    let name = snapshot_name(6);
    fs::copy(
        after.path().join(&name),
        before.path().join(format!("{name}.tmp")),
    )
    .unwrap();

    let store = FileStore::open_with(before.path(), SMALL).unwrap();
    assert_eq!(store.log_state().first, Lsn(3));
    assert_eq!(store.log_state().last, entries[11].position());
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(old_snapshot)));
    assert_eq!(store.metadata(), Some(&METADATA));
    assert!(!before.path().join(format!("{name}.tmp")).exists());
    drop(store);
    assert_eq!(reopen_and_read(before.path(), SMALL).unwrap(), entries[2..]);
}

/// Every directory a crash after the commit point can leave, for an install at `lsn` of the
/// old store: each must open as the new store.
fn crash_points_after_the_rename(lsn: u64, context: &str) {
    let before = TempDir::new("install-before");
    let (_, old_snapshot) = old_store(before.path());
    let old_segments = segment_files(before.path());
    assert!(old_segments.len() >= 3, "{} segments", old_segments.len());
    let snapshot = snapshot_at(foreign(lsn), 1_200, 3);
    let after = installed_copy(before.path(), &snapshot, "install-after");
    let new_name = snapshot_name(lsn);
    let old_name = snapshot_name(old_snapshot.position.lsn.0);

    // (whether the old snapshot file is still there, how many old segments are left), in the
    // order of the install's steps; the old compaction point is there in every one of them.
    let mut points = vec![(true, old_segments.len())];
    points.extend((0..=old_segments.len()).rev().map(|left| (false, left)));
    for (keeps_old_snapshot, segments_left) in points {
        let context = format!(
            "{context}: old snapshot kept {keeps_old_snapshot}, {segments_left} segments left"
        );
        let crashed = TempDir::new("install-crashed");
        copy_store(before.path(), crashed.path());
        if old_name != new_name && !keeps_old_snapshot {
            fs::remove_file(crashed.path().join(&old_name)).unwrap();
        }
        fs::copy(after.path().join(&new_name), crashed.path().join(&new_name)).unwrap();
        // Segments go newest first: the oldest ones are what is left.
        for segment in &old_segments[segments_left..] {
            let name = segment.file_name().unwrap();
            fs::remove_file(crashed.path().join("wal").join(name)).unwrap();
        }
        assert_installed(crashed.path(), &snapshot, &context);
    }
    assert_installed(after.path(), &snapshot, &format!("{context}: finished"));
}

#[test]
fn a_crash_after_the_rename_of_a_snapshot_below_the_last_entry_finishes_the_install() {
    crash_points_after_the_rename(6, "below the last entry");
}

#[test]
fn a_crash_after_the_rename_of_a_snapshot_below_the_compaction_point_finishes_the_install() {
    crash_points_after_the_rename(1, "below the compaction point");
}

#[test]
fn a_crash_after_the_rename_of_a_snapshot_at_the_old_snapshot_finishes_the_install() {
    // Same LSN as the old snapshot: the rename replaced its file.
    crash_points_after_the_rename(4, "at the old snapshot's LSN");
}

#[test]
fn a_crash_after_the_rename_of_a_snapshot_past_the_last_entry_finishes_the_install() {
    crash_points_after_the_rename(30, "past the last entry");
}

#[test]
fn a_second_install_at_the_same_position_is_finished_at_open() {
    // The compaction point already names the snapshot's position before the second install,
    // so only the reset's sequence tells that the entries after it must still go.
    let dir = TempDir::new("install-twice");
    let snapshot = snapshot_at(foreign(8), 600, 4);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.save_metadata_blocking(&METADATA).unwrap();
    store.install_snapshot_blocking(&snapshot).unwrap();
    let entries = entries_after(snapshot.position, 9, Term(4), "t");
    for part in entries.chunks(3) {
        store.append_blocking(part).unwrap();
    }
    drop(store);
    let before = TempDir::new("install-twice-before");
    copy_store(dir.path(), before.path());

    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.install_snapshot_blocking(&snapshot).unwrap();
    drop(store);
    // The crash: the snapshot file was replaced, nothing else happened.
    for segment in segment_files(before.path()) {
        fs::copy(
            &segment,
            dir.path().join("wal").join(segment.file_name().unwrap()),
        )
        .unwrap();
    }
    fs::copy(
        before.path().join("wal/compacted"),
        dir.path().join("wal/compacted"),
    )
    .unwrap();
    assert!(!segment_files(dir.path()).is_empty());
    assert_installed(dir.path(), &snapshot, "second install");
}

#[test]
fn a_finished_install_is_not_redone_at_open() {
    let dir = TempDir::new("install-done");
    let (_, _) = old_store(dir.path());
    let snapshot = snapshot_at(foreign(5), 100, 5);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.install_snapshot_blocking(&snapshot).unwrap();
    drop(store);
    assert_installed(dir.path(), &snapshot, "finished install");
}

#[test]
fn a_compaction_point_of_the_older_format_still_opens() {
    // Before resets were recorded, `wal/compacted` held a bare position.
    let write_bare = |dir: &Path, position: LogPosition| {
        let mut bytes = Vec::new();
        encode_value(RecordKind::Metadata, &position, &mut bytes);
        fs::write(dir.join("wal/compacted"), bytes).unwrap();
    };

    let dir = TempDir::new("install-legacy-compacted");
    let entries = filled_store(dir.path(), SMALL, 9, 3);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.compact_prefix_blocking(Lsn(5)).unwrap();
    drop(store);
    write_bare(dir.path(), entries[4].position());
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries[5..]);

    // A finished reset by a snapshot past the log's end, then appends: they stay.
    let dir = TempDir::new("install-legacy-reset");
    filled_store(dir.path(), SMALL, 4, 2);
    let snapshot = snapshot_at(foreign(20), 100, 6);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.save_snapshot_blocking(&snapshot).unwrap();
    let next = entries_after(snapshot.position, 5, Term(2), "l");
    store.append_blocking(&next).unwrap();
    drop(store);
    write_bare(dir.path(), snapshot.position);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), next);
    let store = FileStore::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(snapshot)));
}
