//! The file WAL under disk faults: a failed `fdatasync` (EIO) poisons the store and leaves
//! nothing of the failed batch behind; out of space (ENOSPC) is a clean failure that leaves
//! the store as it was, so the same entries can be appended again once space is back; a
//! snapshot that cannot be written never replaces the one before it.
//!
//! The tests inject the fault through the store's seam (`FaultPlan`); `wal_full_disk.rs` fills
//! a real, size-limited tmpfs.

mod wal_support;

use std::fs;
use std::path::{Path, PathBuf};

use cstore_core::storage::StorageError;
use cstore_core::storage::conformance::snapshot_at;
use cstore_server::wal::{FaultPlan, FileStore, WalOptions};
use wal_support::{TempDir, chain, reopen_and_read, segment_files};

/// About three entries per segment.
const SMALL: WalOptions = WalOptions {
    segment_bytes_max: 500,
    hashes_checked_by_replay: false,
    scan_read_bytes: 64,
};

fn plan(text: &str) -> FaultPlan {
    FaultPlan::parse(text).unwrap()
}

fn total_segment_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .sum()
}

#[test]
fn a_failed_fdatasync_poisons_the_store_and_leaves_nothing_of_its_batch() {
    let dir = TempDir::new("fault-eio");
    let entries = chain(6);
    {
        let mut store = FileStore::open(dir.path()).unwrap();
        store.append_blocking(&entries[..3]).unwrap();
        store.inject_faults(plan("fsync_eio_after:0x1"));
        let error = store.append_blocking(&entries[3..5]).unwrap_err();
        assert!(matches!(error, StorageError::Io(_)), "{error:?}");
        assert!(error.to_string().contains("fdatasync"), "{error}");
        assert!(store.failure().is_some());
        // Never retried as if it had worked: the same and later appends are refused, even
        // though the injected fault is over.
        let again = store.append_blocking(&entries[3..5]).unwrap_err();
        assert!(again.to_string().contains("reopen"), "{again}");
        assert_eq!(store.log_state().last, entries[2].position());
    }
    // The unsynced records were cut from the file: a restart holds exactly the synced ones,
    // its chain verified, and takes appends again.
    assert_eq!(
        reopen_and_read(dir.path(), WalOptions::default()).unwrap(),
        entries[..3]
    );
    let mut store = FileStore::open(dir.path()).unwrap();
    store.append_blocking(&entries[3..]).unwrap();
    drop(store);
    assert_eq!(
        reopen_and_read(dir.path(), WalOptions::default()).unwrap(),
        entries
    );
}

#[test]
fn out_of_space_is_a_clean_failure_and_appends_resume() {
    let dir = TempDir::new("fault-enospc");
    let entries = chain(8);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.append_blocking(&entries[..2]).unwrap();
    // The records only: the room reserved after them goes with a failed write's bytes.
    let bytes_before = store.held_bytes();
    assert!(
        total_segment_bytes(dir.path()) > bytes_before,
        "room is reserved"
    );
    let segments_before = segment_files(dir.path());
    // Two failures in a row; the injected write takes half its bytes before it fails.
    store.inject_faults(plan("write_enospc_after:0x2"));
    for _ in 0..2 {
        let error = store.append_blocking(&entries[2..6]).unwrap_err();
        assert!(matches!(error, StorageError::Full(_)), "{error:?}");
        assert!(store.failure().is_none(), "out of space does not poison");
        assert_eq!(store.log_state().last, entries[1].position());
        assert_eq!(
            total_segment_bytes(dir.path()),
            bytes_before,
            "partial bytes cut"
        );
        assert_eq!(
            segment_files(dir.path()),
            segments_before,
            "no empty segment left"
        );
    }
    // Space is back: the same entries go in afresh, across segment boundaries.
    store.append_blocking(&entries[2..6]).unwrap();
    store.append_blocking(&entries[6..]).unwrap();
    drop(store);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries);
}

#[test]
fn out_of_space_in_a_later_segment_takes_the_whole_batch_out() {
    let dir = TempDir::new("fault-enospc-roll");
    let entries = chain(12);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.append_blocking(&entries[..1]).unwrap();
    // The batch fills the first segment (one write, synced), then needs a second one, whose
    // write fails: the batch is in the log all or not at all.
    store.inject_faults(plan("write_enospc_after:1x1"));
    let error = store.append_blocking(&entries[1..10]).unwrap_err();
    assert!(matches!(error, StorageError::Full(_)), "{error:?}");
    assert!(store.failure().is_none());
    assert_eq!(store.log_state().last, entries[0].position());
    assert_eq!(
        store
            .read_range_blocking(entries[0].lsn, entries[1].lsn)
            .unwrap(),
        entries[..1]
    );
    store.append_blocking(&entries[1..]).unwrap();
    drop(store);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries);
}

#[test]
fn a_snapshot_that_cannot_be_written_never_replaces_the_last_good_one() {
    let dir = TempDir::new("fault-snapshot");
    let entries = chain(6);
    let mut store = FileStore::open(dir.path()).unwrap();
    store.append_blocking(&entries[..3]).unwrap();
    let good = snapshot_at(entries[2].position(), 3000, 7);
    store.save_snapshot_blocking(&good).unwrap();
    store.compact_prefix_blocking(entries[2].lsn).unwrap();
    store.append_blocking(&entries[3..]).unwrap();

    store.inject_faults(plan("snapshot_enospc_after:0x1"));
    let newer = snapshot_at(entries[5].position(), 3000, 8);
    let error = store.save_snapshot_blocking(&newer).unwrap_err();
    assert!(matches!(error, StorageError::Full(_)), "{error:?}");
    assert_eq!(store.load_snapshot_blocking().unwrap(), Some(good.clone()));
    let leftovers: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp file removed: {leftovers:?}");
    assert!(store.failure().is_none());

    // An EIO while writing it is not retried either: the store is poisoned, the old
    // snapshot stays.
    store.inject_faults(plan("snapshot_eio_after:0x1"));
    assert!(matches!(
        store.save_snapshot_blocking(&newer),
        Err(StorageError::Io(_))
    ));
    assert!(store.failure().is_some());
    drop(store);
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.load_snapshot_blocking().unwrap(), Some(good));
    assert_eq!(store.log_state().last, entries[5].position());
}
