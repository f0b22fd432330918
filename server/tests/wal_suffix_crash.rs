//! A Raft follower's conflicting tail: truncated and replaced by the new leader's entries,
//! with a crash at every byte of the way.
//!
//! ```text
//!  before:  1 … 5 | 6 … 12  (term 1, never committed)      the committed prefix 1…5 must stay
//!  after:   1 … 5 | 6' … 9' (term 2, the new leader's)
//!  crash states: the old file cut at any byte from entry 6 to its end (a truncation under way),
//!                the new file cut at any byte from entry 6' to its end (an append under way),
//!                and, with small segments, any number of the tail's segments already deleted
//! ```
//!
//! Each crash state must reopen as a prefix of the old log or of the new one (never a mix,
//! never less than the committed prefix), and the follower's retry (truncate from 6, append
//! the new entries) must then give exactly the new log, across a reopen.

mod wal_support;

use std::fs;

use cstore_core::LogEntry;
use cstore_core::storage::conformance::entries_after;
use cstore_core::types::{Lsn, Term};
use cstore_server::wal::{FileStore, WalOptions};
use wal_support::{TempDir, chain, record_bounds, reopen_and_read, segment_files};

const COMMITTED: usize = 5;

/// The old log (12 entries of term 1) and the new one (the committed 5, then 4 of term 2).
fn logs() -> (Vec<LogEntry>, Vec<LogEntry>) {
    let old = chain(12);
    let mut new = old[..COMMITTED].to_vec();
    new.extend(entries_after(
        old[COMMITTED - 1].position(),
        4,
        Term(2),
        "leader2",
    ));
    (old, new)
}

fn write_log(dir: &std::path::Path, options: WalOptions, entries: &[LogEntry]) {
    let _ = fs::remove_dir_all(dir.join("wal"));
    let mut store = FileStore::open_with(dir, options).expect("open");
    store.append_blocking(entries).expect("append");
}

fn is_prefix(held: &[LogEntry], of: &[LogEntry]) -> bool {
    held.len() <= of.len() && held == &of[..held.len()]
}

/// Reopens, checks the crash state, then finishes the follower's work and checks the result.
fn recover_and_finish(dir: &std::path::Path, options: WalOptions, what: &str) {
    let (old, new) = logs();
    let held = reopen_and_read(dir, options).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    assert!(
        held.len() >= COMMITTED,
        "{what}: the committed prefix was lost ({} entries)",
        held.len()
    );
    assert!(
        is_prefix(&held, &old) || is_prefix(&held, &new),
        "{what}: neither the old log nor the new one ({} entries)",
        held.len()
    );
    let mut store = FileStore::open_with(dir, options).expect("reopen");
    if store.log_state().last.lsn > Lsn(COMMITTED as u64) {
        store
            .truncate_suffix_blocking(Lsn(COMMITTED as u64 + 1))
            .expect("truncate");
    }
    store.append_blocking(&new[COMMITTED..]).expect("append");
    drop(store);
    let finished = reopen_and_read(dir, options).expect("open after the retry");
    assert!(finished == new, "{what}: not the new log after the retry");
}

#[test]
fn a_truncation_or_append_torn_at_any_byte_recovers_to_one_log() {
    let (old, new) = logs();
    let options = WalOptions::default();
    let dir = TempDir::new("wal-suffix-crash");
    let old_bounds = record_bounds(&old);
    let new_bounds = record_bounds(&new);
    let cut_at = old_bounds[COMMITTED].0;
    assert_eq!(
        cut_at, new_bounds[COMMITTED].0,
        "the committed prefix is the same bytes"
    );

    write_log(dir.path(), options, &old);
    let segment = segment_files(dir.path())[0].clone();
    let old_bytes = fs::read(&segment).unwrap();
    write_log(dir.path(), options, &new);
    let new_bytes = fs::read(&segment_files(dir.path())[0]).unwrap();
    assert_eq!(old_bytes[..cut_at], new_bytes[..cut_at]);

    let mut states = 0;
    for (name, bytes) in [("truncation", &old_bytes), ("append", &new_bytes)] {
        for len in cut_at..=bytes.len() {
            let _ = fs::remove_dir_all(dir.path().join("wal"));
            fs::create_dir_all(dir.path().join("wal")).unwrap();
            fs::write(&segment, &bytes[..len]).unwrap();
            recover_and_finish(dir.path(), options, &format!("{name} torn at byte {len}"));
            states += 1;
        }
    }
    assert!(states > 400, "{states} crash states");
}

#[test]
fn tail_segments_deleted_newest_first_leave_a_prefix() {
    let small = WalOptions {
        segment_bytes_max: 500,
        hashes_checked_by_replay: false,
        scan_read_bytes: 100,
    };
    let (old, _) = logs();
    let dir = TempDir::new("wal-suffix-segments");
    write_log(dir.path(), small, &old);
    let files = segment_files(dir.path());
    let contents: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    assert!(files.len() >= 3, "{} segments", files.len());
    // A crash after the newest k segments of the tail were deleted (truncation deletes whole
    // segments past the cut, newest first, before it shortens the one holding the cut).
    for k in 0..files.len() {
        for (file, bytes) in files.iter().zip(&contents) {
            fs::write(file, bytes).unwrap();
        }
        for file in files.iter().rev().take(k) {
            let first = wal_support::first_lsn(file) as usize;
            if first > COMMITTED {
                fs::remove_file(file).unwrap();
            }
        }
        recover_and_finish(dir.path(), small, &format!("{k} newest segments deleted"));
        for file in segment_files(dir.path()) {
            fs::remove_file(file).unwrap();
        }
    }
}
