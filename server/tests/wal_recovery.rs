//! Recovery of the file WAL from torn writes and damage, by editing real files.
//!
//! Every test builds a real store, closes it, changes bytes the way a crash or a bad disk
//! would, and reopens it. The rules under test: a torn tail of the last segment is cut off and
//! the longest intact prefix comes back exactly; damage anywhere else makes `open` refuse with
//! the file and byte offset in the message; no damaged byte ever yields a wrong entry.

mod wal_support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cstore_core::LogEntry;
use cstore_core::log::codec::{RecordKind, encode_entry, encode_record};
use cstore_core::snapshot::Snapshot;
use cstore_core::state::State;
use cstore_core::storage::conformance::{entries_after, snapshot_at};
use cstore_core::storage::{Metadata, REPLAY_CHUNK, StorageError};
use cstore_core::types::{Hash, LogPosition, Lsn, ReplicaId, Term};
use cstore_server::wal::{FileStore, Removals, SCAN_READ_BYTES, WalOptions};
use wal_support::{
    TempDir, chain, filled_store, first_lsn, patch, record_bounds, reopen_and_read, segment_files,
};

/// About three entries per segment; the open-time scan reads 7 bytes at a time, so every
/// record runs across reads (`the_scan_finds_the_same_log_whatever_its_read_size` compares
/// read sizes).
const SMALL: WalOptions = WalOptions {
    segment_bytes_max: 500,
    hashes_checked_by_replay: false,
    scan_read_bytes: 7,
};

fn open_err(dir: &Path) -> String {
    match FileStore::open_with(dir, SMALL) {
        Ok(store) => panic!("open should fail, state {:?}", store.log_state()),
        Err(StorageError::Corrupt(message)) => message,
        Err(other) => panic!("expected Corrupt, got {other:?}"),
    }
}

fn assert_names(message: &str, file: &Path, offset: usize) {
    assert!(
        message.contains(&file.display().to_string()),
        "the message names {}: {message}",
        file.display()
    );
    assert!(
        message.contains(&format!("byte offset {offset}")),
        "the message names byte offset {offset}: {message}"
    );
}

/// The entries held in `segment`, given all entries of the log.
fn entries_of<'a>(entries: &'a [LogEntry], segment: &Path) -> &'a [LogEntry] {
    let first = first_lsn(segment) as usize;
    let count = entries[first - 1..]
        .iter()
        .scan(0usize, |bytes, e| {
            let mut buf = Vec::new();
            encode_entry(e, &mut buf);
            let fits = *bytes < SMALL.segment_bytes_max as usize;
            *bytes += buf.len();
            fits.then_some(())
        })
        .count();
    &entries[first - 1..first - 1 + count]
}

#[test]
fn the_test_log_spans_several_segments() {
    let dir = TempDir::new("wal-shape");
    let entries = filled_store(dir.path(), SMALL, 10, 3);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{} segments", files.len());
    let mut covered = 0;
    for file in &files {
        let held = entries_of(&entries, file);
        let bounds = record_bounds(held);
        assert_eq!(
            fs::metadata(file).unwrap().len() as usize,
            bounds.last().unwrap().1,
            "{} holds exactly its records",
            file.display()
        );
        covered += held.len();
    }
    assert_eq!(covered, entries.len());
}

#[test]
fn truncation_at_every_offset_of_the_last_segment_recovers_the_longest_intact_prefix() {
    let dir = TempDir::new("wal-cut");
    let entries = filled_store(dir.path(), SMALL, 10, 4);
    let last_file = segment_files(dir.path()).pop().unwrap();
    let original = fs::read(&last_file).unwrap();
    let first = first_lsn(&last_file) as usize;
    let bounds = record_bounds(&entries[first - 1..]);

    for cut in 0..=original.len() {
        for zero_tail in [0, 37] {
            if zero_tail > 0 && cut % 5 != 0 {
                continue;
            }
            // A cut file, maybe followed by zeros (extended but never written).
            patch(&last_file, 0, &original);
            truncate(&last_file, cut);
            truncate(&last_file, cut + zero_tail);

            let whole = bounds.iter().filter(|&&(_, end)| end <= cut).count();
            let expected = &entries[..first - 1 + whole];
            let store = FileStore::open_with(dir.path(), SMALL)
                .unwrap_or_else(|e| panic!("cut {cut}+{zero_tail}: open failed: {e}"));
            let state = store.log_state();
            let held = store
                .read_range_blocking(state.first, state.last.lsn.next())
                .unwrap();
            assert!(
                held == expected,
                "cut {cut}+{zero_tail}: {} entries",
                held.len()
            );
            let intact = if whole == 0 { 0 } else { bounds[whole - 1].1 };
            assert_eq!(
                store.stats().torn_bytes_truncated as usize,
                cut + zero_tail - intact,
                "cut {cut}+{zero_tail}"
            );
            drop(store);
            if whole == 0 {
                assert!(!last_file.exists(), "an empty last segment is removed");
            } else {
                assert_eq!(fs::metadata(&last_file).unwrap().len() as usize, intact);
            }
        }
    }

    // After the worst cut the log continues where it now ends.
    fs::write(&last_file, &original[..bounds[0].1 - 1]).unwrap();
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.append_blocking(&entries[first - 1..]).unwrap();
    drop(store);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries);
}

#[test]
fn bit_flips_in_the_last_segment_are_refused_or_cut_at_the_tail_never_wrong() {
    let dir = TempDir::new("wal-flip-last");
    let entries = filled_store(dir.path(), SMALL, 10, 1);
    let last_file = segment_files(dir.path()).pop().unwrap();
    let original = fs::read(&last_file).unwrap();
    let first = first_lsn(&last_file) as usize;
    let bounds = record_bounds(&entries[first - 1..]);
    assert!(bounds.len() >= 2, "the last segment has a middle record");
    let (last_start, _) = *bounds.last().unwrap();

    for index in 0..original.len() {
        // Every bit of the middle records; in the final record, where each case costs a
        // truncation and an fsync, one bit per byte (a different one each time).
        let bits: Vec<u8> = if index < last_start {
            (0..8).collect()
        } else {
            vec![(index % 8) as u8]
        };
        for bit in bits {
            patch(&last_file, index, &[original[index] ^ (1 << bit)]);
            let record = bounds.iter().position(|&(_, end)| index < end).unwrap();
            let record_start = bounds[record].0;
            match reopen_and_read(dir.path(), SMALL) {
                Ok(held) => {
                    // Only damage to the final record may be cut off as a torn tail.
                    assert!(
                        index >= last_start,
                        "byte {index} bit {bit}: a middle record was dropped"
                    );
                    assert!(
                        held == entries[..entries.len() - 1],
                        "byte {index} bit {bit}"
                    );
                }
                Err(message) => {
                    assert!(index < last_start, "byte {index} bit {bit}: {message}");
                    assert_names(&message, &last_file, record_start);
                }
            }
            // Undo the flip, and the truncation if there was one.
            patch(&last_file, 0, &original);
        }
    }
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries);
}

#[test]
fn every_bit_flip_in_a_middle_segment_is_refused() {
    let dir = TempDir::new("wal-flip-middle");
    filled_store(dir.path(), SMALL, 12, 5);
    let files = segment_files(dir.path());
    let middle = &files[files.len() / 2];
    let original = fs::read(middle).unwrap();
    for index in 0..original.len() {
        for bit in 0..8 {
            patch(middle, index, &[original[index] ^ (1 << bit)]);
            let message = open_err(dir.path());
            assert!(
                message.contains(&middle.display().to_string()),
                "byte {index} bit {bit}: {message}"
            );
        }
        patch(middle, index, &original[index..=index]);
    }
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), chain(12));
}

#[test]
fn a_record_with_a_valid_crc_is_never_treated_as_torn() {
    let dir = TempDir::new("wal-forged");
    let entries = filled_store(dir.path(), SMALL, 4, 4);
    let last_file = segment_files(dir.path()).pop().unwrap();
    let end = fs::metadata(&last_file).unwrap().len() as usize;

    // A whole record whose hash is wrong, at the very end.
    let mut forged = entries_after(entries[3].position(), 1, Term(1), "w").remove(0);
    forged.hash = Hash([3; 32]);
    let mut record = Vec::new();
    encode_entry(&forged, &mut record);
    append_bytes(&last_file, &record);
    assert_names(&open_err(dir.path()), &last_file, end);
    truncate(&last_file, end);

    // A whole, valid entry that does not continue the chain.
    let stray = entries_after(entries[1].position(), 3, Term(1), "stray").remove(2);
    record.clear();
    encode_entry(&stray, &mut record);
    append_bytes(&last_file, &record);
    assert_names(&open_err(dir.path()), &last_file, end);
    truncate(&last_file, end);

    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries);
}

#[test]
fn the_scan_finds_the_same_log_whatever_its_read_size() {
    let dir = TempDir::new("wal-read-sizes");
    let entries = filled_store(dir.path(), SMALL, 10, 4);
    let last_file = segment_files(dir.path()).pop().unwrap();
    let original = fs::read(&last_file).unwrap();
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x10;
    let mut torn_then_newer = original.clone();
    let more = entries_after(entries[9].position(), 2, Term(1), "w");
    let (mut fourth, mut fifth) = (Vec::new(), Vec::new());
    encode_entry(&more[0], &mut fourth);
    encode_entry(&more[1], &mut fifth);
    torn_then_newer.extend_from_slice(&fourth[..fourth.len() / 2]);
    torn_then_newer.extend_from_slice(&fifth);
    let mut zeros = original.clone();
    zeros.resize(original.len() + 300, 0);
    // The last segment whole, cut inside its last record, followed by zeros, with a bit
    // flipped in a record, and torn before a whole newer entry (refused).
    let cases = [
        ("whole", original.clone()),
        ("cut", original[..original.len() - 5].to_vec()),
        ("zeros", zeros),
        ("flipped", flipped),
        ("torn then newer", torn_then_newer),
    ];
    for (case, bytes) in cases {
        let mut first = None;
        for read in [1, 2, 7, 64, 300, SCAN_READ_BYTES] {
            fs::write(&last_file, &bytes).unwrap();
            let options = WalOptions {
                scan_read_bytes: read,
                ..SMALL
            };
            let outcome = reopen_and_read(dir.path(), options);
            let left = fs::metadata(&last_file).map(|m| m.len()).ok();
            if case == "whole" {
                assert_eq!(outcome.as_ref(), Ok(&entries), "read size {read}");
            }
            if case == "torn then newer" {
                let message = outcome.as_ref().expect_err("refused");
                assert!(message.contains("entry 12"), "{message}");
            }
            match &first {
                None => first = Some((outcome, left)),
                Some(expected) => {
                    assert_eq!(&(outcome, left), expected, "{case}: read size {read}")
                }
            }
        }
    }
}

#[test]
fn a_torn_record_followed_by_a_valid_newer_entry_is_refused() {
    let dir = TempDir::new("wal-torn-then-valid");
    let entries = filled_store(dir.path(), WalOptions::default(), 3, 3);
    let file = segment_files(dir.path()).pop().unwrap();
    let end = fs::metadata(&file).unwrap().len() as usize;
    // Half a record, then garbage, then entry 5 whole: entry 4's bytes are lost, but entry 5
    // was written after it, so 4 must have been acknowledged.
    let more = entries_after(entries[2].position(), 2, Term(1), "w");
    let mut fourth = Vec::new();
    encode_entry(&more[0], &mut fourth);
    append_bytes(&file, &fourth[..fourth.len() / 2]);
    append_bytes(&file, &[0xEE; 13]);
    let mut fifth = Vec::new();
    encode_entry(&more[1], &mut fifth);
    append_bytes(&file, &fifth);
    let message = match FileStore::open(dir.path()) {
        Err(StorageError::Corrupt(message)) => message,
        other => panic!("expected Corrupt, got {other:?}"),
    };
    assert_names(&message, &file, end);
    assert!(message.contains("entry 5"), "{message}");
}

#[test]
fn a_missing_segment_is_refused() {
    let dir = TempDir::new("wal-gap");
    filled_store(dir.path(), SMALL, 12, 2);
    let files = segment_files(dir.path());
    // The middle one: the chain breaks at the start of the next.
    let removed = fs::read(&files[1]).unwrap();
    fs::remove_file(&files[1]).unwrap();
    assert_names(&open_err(dir.path()), &files[2], 0);
    fs::write(&files[1], &removed).unwrap();
    // The first one, with nothing compacted: entries from 1 are missing.
    fs::remove_file(&files[0]).unwrap();
    let message = open_err(dir.path());
    assert_names(&message, &files[1], 0);
    assert!(message.contains("missing"), "{message}");
}

#[test]
fn compaction_deletes_whole_segments_and_survives_reopen() {
    let dir = TempDir::new("wal-compact");
    let entries = filled_store(dir.path(), SMALL, 12, 3);
    let before = segment_files(dir.path());
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.compact_prefix_blocking(Lsn(7)).unwrap();
    let after = segment_files(dir.path());
    assert!(after.len() < before.len(), "{after:?}");
    assert!(after.iter().all(|f| before.contains(f)));
    // The segment holding 8 stays, possibly with compacted entries before it.
    assert!(first_lsn(&after[0]) <= 8);
    drop(store);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries[7..]);
    let store = FileStore::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(store.log_state().first, Lsn(8));
    assert_eq!(
        store.read_range_blocking(Lsn(7), Lsn(9)),
        Err(StorageError::Missing(Lsn(7)))
    );
}

#[test]
fn an_interrupted_compaction_is_finished_at_open() {
    let dir = TempDir::new("wal-compact-crash");
    let entries = filled_store(dir.path(), SMALL, 12, 3);
    let saved: Vec<_> = segment_files(dir.path())
        .into_iter()
        .map(|f| (fs::read(&f).unwrap(), f))
        .collect();
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.compact_prefix_blocking(Lsn(9)).unwrap();
    drop(store);
    // The crash: the compaction point was written, the segments not yet deleted.
    for (bytes, file) in &saved {
        fs::write(file, bytes).unwrap();
    }
    let store = FileStore::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(store.log_state().first, Lsn(10));
    assert!(store.stats().segments_deleted > 0);
    drop(store);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries[9..]);
}

#[test]
fn truncation_deletes_later_segments_and_survives_reopen() {
    let dir = TempDir::new("wal-truncate");
    let entries = filled_store(dir.path(), SMALL, 12, 3);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.truncate_suffix_blocking(Lsn(5)).unwrap();
    assert!(segment_files(dir.path()).iter().all(|f| first_lsn(f) < 5));
    let other = entries_after(entries[3].position(), 6, Term(2), "t");
    store.append_blocking(&other).unwrap();
    drop(store);
    let mut expected = entries[..4].to_vec();
    expected.extend(other);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), expected);
}

#[test]
fn group_commit_costs_one_sync_per_segment_touched() {
    let dir = TempDir::new("wal-group");
    let entries = chain(250);
    let mut store = FileStore::open(dir.path()).unwrap();
    let before = store.stats();
    store.append_blocking(&entries[..200]).unwrap();
    let after = store.stats();
    // One dir sync for the new segment, one data sync for all 200 records.
    assert_eq!(after.data_syncs - before.data_syncs, 1);
    assert_eq!(after.append_batches, 1);
    assert_eq!(after.batch_entries_max, 200);
    drop(store);

    // With small segments a batch pays once per segment it reaches into.
    let small_dir = TempDir::new("wal-group-small");
    let mut store = FileStore::open_with(small_dir.path(), SMALL).unwrap();
    store.append_blocking(&entries[..30]).unwrap();
    let segments = segment_files(small_dir.path()).len() as u64;
    assert_eq!(store.stats().data_syncs, segments);
    assert_eq!(store.stats().segments_created, segments);
}

#[test]
fn an_entry_with_a_wrong_hash_is_refused_before_writing() {
    let dir = TempDir::new("wal-bad-hash");
    let mut store = FileStore::open(dir.path()).unwrap();
    let mut entries = chain(2);
    entries[1].hash = Hash([1; 32]);
    assert!(matches!(
        store.append_blocking(&entries),
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(store.stats().bytes_written, 0);
    store.append_blocking(&chain(2)).unwrap();
}

#[test]
fn snapshot_damage_is_detected() {
    let dir = TempDir::new("wal-snapshot");
    let entries = filled_store(dir.path(), SMALL, 5, 5);
    let snapshot = snapshot_at(entries[4].position(), (5 << 20) / 2, 9);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.save_snapshot_blocking(&snapshot).unwrap();
    drop(store);
    let file = snapshot_file(dir.path());
    let original = fs::read(&file).unwrap();
    let load = || FileStore::open_with(dir.path(), SMALL).and_then(|s| s.load_snapshot_blocking());
    assert_eq!(load(), Ok(Some(snapshot.clone())));

    // A flipped bit in the second data chunk: the crc finds it, at that record's offset.
    let header_bytes = original.len() - snapshot.data.len() - 3 * 8 - 3 * 2;
    let second_chunk = header_bytes + 8 + 2 + (1 << 20);
    for (index, offset) in [
        (second_chunk + 500, second_chunk),
        (header_bytes + 3, header_bytes),
    ] {
        let mut bytes = original.clone();
        bytes[index] ^= 0x10;
        fs::write(&file, &bytes).unwrap();
        match load() {
            Err(StorageError::Corrupt(message)) => assert_names(&message, &file, offset),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    // A cut file.
    fs::write(&file, &original[..original.len() - 100]).unwrap();
    assert!(matches!(load(), Err(StorageError::Corrupt(_))));

    // A damaged header makes the store refuse to open.
    let mut bytes = original.clone();
    bytes[12] ^= 1;
    fs::write(&file, &bytes).unwrap();
    match FileStore::open_with(dir.path(), SMALL) {
        Err(StorageError::Corrupt(message)) => assert_names(&message, &file, 0),
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // The last chunk re-framed with one byte changed and a valid crc (a buggy writer): the
    // state hash catches it.
    let last_chunk = header_bytes + 2 * (8 + 2 + (1 << 20));
    let mut data = snapshot.data[2 << 20..].to_vec();
    data[7] ^= 1;
    let mut bytes = original[..last_chunk].to_vec();
    encode_record(RecordKind::Snapshot, &data, &mut bytes);
    assert_eq!(bytes.len(), original.len());
    fs::write(&file, &bytes).unwrap();
    match load() {
        Err(StorageError::Corrupt(message)) => {
            assert!(message.contains("state hash"), "{message}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // And the store refuses to write a snapshot whose data does not match its hash.
    let forged = Snapshot {
        data: vec![1, 2, 3],
        ..snapshot.clone()
    };
    let other = TempDir::new("wal-snapshot-forged");
    let mut store = FileStore::open_with(other.path(), SMALL).unwrap();
    assert!(matches!(
        store.save_snapshot_blocking(&forged),
        Err(StorageError::Invalid(_))
    ));
}

/// A restart decodes its own snapshot while a second thread checks the hash
/// (`load_snapshot_state_blocking`): a real state loads whole, and bytes that pass every
/// record's crc but not the hash give the `Corrupt` of `load_snapshot`, never the state the
/// decode made of them.
#[test]
fn a_restart_decodes_its_snapshot_while_it_checks_the_hash_and_keeps_nothing_that_fails_it() {
    let dir = TempDir::new("wal-snapshot-state");
    let entries = filled_store(dir.path(), SMALL, 12, 4);
    let load =
        || FileStore::open_with(dir.path(), SMALL).and_then(|s| s.load_snapshot_state_blocking());
    assert!(matches!(load(), Ok(None)), "no snapshot yet");
    let mut state = State::new();
    for entry in &entries[..9] {
        state.apply(entry).expect("the chain applies");
    }
    let snapshot = state.snapshot();
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store.save_snapshot_blocking(&snapshot).unwrap();
    drop(store);
    let loaded = load().unwrap().expect("a snapshot").unwrap();
    assert_eq!(loaded.applied(), state.applied());
    assert_eq!(loaded.state_hash(), state.state_hash());

    // One document's number changed, its record framed again with a valid crc (a buggy
    // writer): the image still decodes, to another state, but the hash does not match.
    let file = snapshot_file(dir.path());
    let original = fs::read(&file).unwrap();
    let header_bytes = original.len() - snapshot.data.len() - (8 + 2);
    let field = b"\"n\":3,";
    let at = snapshot
        .data
        .windows(field.len())
        .position(|w| w == field)
        .expect("the document at lsn 3");
    let mut data = snapshot.data.clone();
    data[at + 4] = b'4';
    let changed = Snapshot {
        data: data.clone(),
        ..snapshot.clone()
    };
    let decoded = State::from_own_snapshot(&changed).expect("the changed image decodes");
    assert_ne!(decoded.state_hash(), state.state_hash());
    let mut bytes = original[..header_bytes].to_vec();
    encode_record(RecordKind::Snapshot, &data, &mut bytes);
    assert_eq!(bytes.len(), original.len());
    fs::write(&file, &bytes).unwrap();
    for result in [
        load().map(|_| ()),
        FileStore::open_with(dir.path(), SMALL)
            .and_then(|s| s.load_snapshot_blocking())
            .map(|_| ()),
    ] {
        match result {
            Err(StorageError::Corrupt(message)) => {
                assert!(message.contains("state hash"), "{message}");
                assert!(message.contains(&file.display().to_string()), "{message}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // A flipped bit that the crc finds: the same error as `load_snapshot`, before any decode.
    let mut bytes = original.clone();
    bytes[header_bytes + 20] ^= 0x10;
    fs::write(&file, &bytes).unwrap();
    match load() {
        Err(StorageError::Corrupt(message)) => assert_names(&message, &file, header_bytes),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// `replay_blocking` reads on a second thread, a chunk at a time: every entry in order across
/// the chunks, only as many as `take` wants, and a read that fails after some chunks as the
/// error, with every entry before it taken.
#[test]
fn a_replay_hands_over_every_entry_in_order_stops_where_asked_and_reports_a_failed_read() {
    let dir = TempDir::new("wal-replay");
    let chunk = REPLAY_CHUNK as usize;
    let entries = filled_store(dir.path(), SMALL, 2 * chunk + 100, 700);
    let store = FileStore::open_with(dir.path(), SMALL).unwrap();
    let end = entries.last().unwrap().lsn.next();
    let replay = |from: u64, to: Lsn, wanted: usize| {
        let mut seen = Vec::new();
        let whole = store.replay_blocking(Lsn(from), to, |entry| {
            seen.push(entry.clone());
            seen.len() < wanted
        });
        (whole, seen)
    };
    assert_eq!(replay(1, end, usize::MAX), (Ok(true), entries.clone()));
    assert_eq!(replay(5, Lsn(5), usize::MAX), (Ok(true), Vec::new()));
    for wanted in [1, chunk, chunk + 1, 2 * chunk + 90] {
        assert_eq!(
            replay(10, end, wanted),
            (Ok(false), entries[9..9 + wanted].to_vec()),
            "{wanted} wanted"
        );
    }
    // Past the last entry: the chunks before it are taken, then the read of the last fails.
    let (whole, seen) = replay(1, end.next(), usize::MAX);
    assert_eq!(whole, Err(StorageError::Missing(end)));
    assert_eq!(seen, entries[..2 * chunk].to_vec());
}

#[test]
fn an_interrupted_snapshot_reset_is_finished_at_open() {
    // Store A holds entries 1..5; a snapshot at 20 arrives. Simulate a crash right after the
    // snapshot's rename: the snapshot file is in place, the log not yet reset.
    let a = TempDir::new("wal-reset-a");
    filled_store(a.path(), SMALL, 5, 5);
    let b = TempDir::new("wal-reset-b");
    let position = LogPosition {
        lsn: Lsn(20),
        hash: Hash([7; 32]),
    };
    let snapshot = snapshot_at(position, 1000, 1);
    let mut store_b = FileStore::open_with(b.path(), SMALL).unwrap();
    store_b.save_snapshot_blocking(&snapshot).unwrap();
    drop(store_b);
    let name = "snapshot-00000000000000000020.snap";
    fs::copy(b.path().join(name), a.path().join(name)).unwrap();

    let store = FileStore::open_with(a.path(), SMALL).unwrap();
    assert_eq!(store.log_state().first, Lsn(21));
    assert_eq!(store.log_state().last, position);
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(snapshot)));
    assert!(segment_files(a.path()).is_empty());
}

#[test]
fn leftovers_of_interrupted_writes_are_cleaned_up() {
    let dir = TempDir::new("wal-leftovers");
    let entries = filled_store(dir.path(), SMALL, 6, 2);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    let metadata = Metadata {
        term: Term(2),
        node_id: ReplicaId(5),
    };
    store.save_metadata_blocking(&metadata).unwrap();
    drop(store);
    fs::write(dir.path().join("meta.tmp"), b"half a metadata record").unwrap();
    fs::write(dir.path().join("wal/compacted.tmp"), b"").unwrap();
    fs::write(
        dir.path().join("snapshot-00000000000000000003.snap.tmp"),
        [0; 64],
    )
    .unwrap();
    let store = FileStore::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(store.metadata(), Some(&metadata));
    assert!(!dir.path().join("meta.tmp").exists());
    assert!(!dir.path().join("wal/compacted.tmp").exists());
    drop(store);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries);

    // A damaged metadata file is refused, by name.
    let meta = dir.path().join("meta");
    let mut bytes = fs::read(&meta).unwrap();
    bytes[9] ^= 4;
    fs::write(&meta, &bytes).unwrap();
    assert_names(&open_err(dir.path()), &meta, 0);
}

/// A checkpoint as the server makes one with the store's own calls: a snapshot at the last
/// entry, then the log compacted through it.
fn checkpoint(store: &mut FileStore, snapshot: &Snapshot) {
    store.save_snapshot_blocking(snapshot).unwrap();
    store
        .compact_prefix_blocking(snapshot.position.lsn)
        .unwrap();
}

#[test]
fn checkpoints_bound_the_held_log() {
    // A checkpoint whenever 20 entries or more are held above the compaction point.
    const HELD_MAX: u64 = 20;
    let held = |store: &FileStore| {
        let state = store.log_state();
        state.last.lsn.0 + 1 - state.first.0
    };
    let dir = TempDir::new("wal-checkpoint");
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    let mut last = LogPosition::START;
    let mut checkpoints = 0;
    for round in 0..10 {
        let entries = entries_after(last, 7, Term(1), &format!("r{round}"));
        store.append_blocking(&entries).unwrap();
        last = entries.last().unwrap().position();
        if held(&store) >= HELD_MAX {
            checkpoint(&mut store, &snapshot_at(last, 100, round));
            checkpoints += 1;
            // Nothing is held behind the snapshot; its position is the compaction point.
            assert_eq!(store.log_state().first, last.lsn.next());
            assert_eq!(held(&store), 0);
        }
        assert!(held(&store) < HELD_MAX + 7);
    }
    assert_eq!(checkpoints, 3);
    let before = store.log_state();
    assert_eq!(before.first, Lsn(64));
    assert!(matches!(
        store.read_range_blocking(Lsn(63), Lsn(64)),
        Err(StorageError::Missing(Lsn(63)))
    ));
    drop(store);
    // A restart finds the same log, the last checkpoint's snapshot, and the entries after it.
    let store = FileStore::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(store.log_state(), before);
    let snapshot = store.load_snapshot_blocking().unwrap().unwrap();
    assert_eq!(snapshot.position.lsn, Lsn(63));
    let after = store
        .read_range_blocking(Lsn(64), before.last.lsn.next())
        .unwrap();
    assert_eq!(after.len(), 7);
    assert_eq!(after[0].prev_hash, snapshot.position.hash);
    assert_eq!(after.last().unwrap().position(), before.last);
}

#[test]
fn after_an_io_failure_the_store_refuses_writes_until_reopened() {
    let dir = TempDir::new("wal-poison");
    let data = dir.path().join("data");
    let mut store = FileStore::open(&data).unwrap();
    store.append_blocking(&chain(1)).unwrap();
    fs::remove_dir_all(&data).unwrap();
    let metadata = Metadata::default();
    assert!(matches!(
        store.save_metadata_blocking(&metadata),
        Err(StorageError::Io(_))
    ));
    match store.append_blocking(&chain(2)[1..]) {
        Err(StorageError::Io(message)) => assert!(message.contains("reopen"), "{message}"),
        other => panic!("expected Io, got {other:?}"),
    }
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn truncate(path: &Path, len: usize) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len as u64)
        .unwrap();
}

#[test]
fn a_data_directory_opens_once_at_a_time() {
    let dir = TempDir::new("lock");
    let first = FileStore::open(dir.path()).unwrap();
    let err = FileStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("in use by another process"), "{err}");
    drop(first);
    FileStore::open(dir.path()).expect("the lock is released when the store closes");
}

/// Found by the fuzz target `wal_dir` (fuzz/): a crc-valid compaction point at the last LSN
/// there is made `open` succeed and the next call that asks for the log's first LSN panic with
/// an LSN overflow. It is damage, refused at open.
#[test]
fn fuzz_regression_a_compaction_point_at_the_last_lsn_is_refused() {
    let dir = TempDir::new("compacted-at-lsn-max");
    fs::create_dir_all(dir.path().join("wal")).unwrap();
    let mut bytes = Vec::new();
    cstore_core::log::codec::encode_value(
        RecordKind::Metadata,
        &LogPosition {
            lsn: Lsn(u64::MAX),
            hash: Hash([7; 32]),
        },
        &mut bytes,
    );
    fs::write(dir.path().join("wal/compacted"), &bytes).unwrap();
    let message = open_err(dir.path());
    assert!(message.contains("compaction point"), "{message}");
}

/// `SMALL`, for a store whose caller replays the log after the snapshot: hashes above it are
/// left to the replay's `read_range`.
const REPLAYED: WalOptions = WalOptions {
    hashes_checked_by_replay: true,
    ..SMALL
};

#[test]
fn with_hashes_left_to_the_replay_every_bit_flip_is_still_refused_or_cut_never_wrong() {
    let dir = TempDir::new("wal-replayed-flips");
    let entries = filled_store(dir.path(), SMALL, 12, 5);
    let files = segment_files(dir.path());
    for (file, is_last) in [
        (&files[files.len() / 2], false),
        (files.last().unwrap(), true),
    ] {
        let original = fs::read(file).unwrap();
        let bounds = record_bounds(entries_of(&entries, file));
        let (last_start, _) = *bounds.last().unwrap();
        for index in 0..original.len() {
            for bit in 0..8 {
                patch(file, index, &[original[index] ^ (1 << bit)]);
                let record_start = bounds.iter().find(|&&(_, end)| index < end).unwrap().0;
                // Refused, at open or by the read that the replay would make, naming the file
                // and the damaged record; or, only in the last record of the log, cut off.
                match reopen_and_read(dir.path(), REPLAYED) {
                    Ok(held) => {
                        assert!(is_last && index >= last_start, "byte {index} bit {bit}");
                        assert!(
                            held == entries[..entries.len() - 1],
                            "byte {index} bit {bit}"
                        );
                    }
                    Err(message) => {
                        assert!(!is_last || index < last_start, "byte {index} bit {bit}");
                        assert_names(&message, file, record_start);
                    }
                }
                patch(file, 0, &original);
            }
        }
    }
    assert_eq!(reopen_and_read(dir.path(), REPLAYED).unwrap(), entries);
}

#[test]
fn with_hashes_left_to_the_replay_a_wrong_hash_is_refused_by_the_read_or_below_the_snapshot_by_open()
 {
    let dir = TempDir::new("wal-replayed-forged");
    let entries = filled_store(dir.path(), SMALL, 4, 4);
    let last_file = segment_files(dir.path()).pop().unwrap();
    let end = fs::metadata(&last_file).unwrap().len() as usize;
    // Entry 5 with a wrong stored hash, and entry 6 chained after that stored hash: the links
    // chain, only entry 5's own hash is wrong.
    let mut forged = entries_after(entries[3].position(), 1, Term(1), "w").remove(0);
    forged.hash = Hash([3; 32]);
    let sixth = entries_after(forged.position(), 1, Term(1), "w").remove(0);
    let mut records = Vec::new();
    encode_entry(&forged, &mut records);
    encode_entry(&sixth, &mut records);
    append_bytes(&last_file, &records);

    // Above the snapshot (none here), the open leaves the hash to the read, which refuses.
    let store = FileStore::open_with(dir.path(), REPLAYED).unwrap();
    assert_eq!(store.log_state().last, sixth.position());
    match store.read_range_blocking(Lsn(1), Lsn(7)) {
        Err(StorageError::Corrupt(message)) => {
            assert_names(&message, &last_file, end);
            assert!(message.contains("hash"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // So does the default open, right away.
    drop(store);
    assert_names(&open_err(dir.path()), &last_file, end);

    // At or below the snapshot the replay never reads it: the open checks it.
    for (at, position, refused) in [
        (4, entries[3].position(), false),
        (5, forged.position(), true),
    ] {
        let mut store = FileStore::open_with(dir.path(), REPLAYED).unwrap();
        store
            .save_snapshot_blocking(&snapshot_at(position, 100, at as u64))
            .unwrap();
        drop(store);
        match FileStore::open_with(dir.path(), REPLAYED) {
            Ok(_) => assert!(!refused, "snapshot at {at}: opened"),
            Err(StorageError::Corrupt(message)) => {
                assert!(refused, "snapshot at {at}: {message}");
                assert_names(&message, &last_file, end);
            }
            Err(other) => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn a_snapshot_saved_beside_appends_is_the_current_one_and_refused_when_overtaken() {
    let dir = TempDir::new("wal-snapshot-beside");
    let entries = filled_store(dir.path(), SMALL, 5, 5);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    let first = snapshot_at(entries[2].position(), 1_000, 3);
    // Begun under the lock, written without it (appends may go on), finished under it.
    let save = store.begin_snapshot(first.position).unwrap();
    let written = save.write(&first).unwrap();
    store.finish_snapshot(written).unwrap();
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(first.clone())));
    drop(store);
    let store = FileStore::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(first.clone())));
    drop(store);

    // Overtaken: another snapshot was saved between begin and finish.
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    let late = snapshot_at(entries[3].position(), 1_000, 4);
    let newer = snapshot_at(entries[4].position(), 1_000, 5);
    let save = store.begin_snapshot(late.position).unwrap();
    let written = save.write(&late).unwrap();
    store.save_snapshot_blocking(&newer).unwrap();
    let refused = store.finish_snapshot(written).unwrap_err();
    assert!(
        matches!(&refused, StorageError::Invalid(m) if m.contains("meanwhile")),
        "{refused}"
    );
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(newer.clone())));
    assert_eq!(
        snapshot_files(dir.path()),
        1,
        "the refused temp file is gone"
    );

    // Past the last entry (a reset) and a snapshot that fails its hash: refused, nothing written.
    let past = snapshot_at(
        LogPosition {
            lsn: Lsn(50),
            hash: Hash([7; 32]),
        },
        100,
        6,
    );
    assert!(matches!(
        store.begin_snapshot(past.position),
        Err(StorageError::Invalid(_))
    ));
    let mut forged = snapshot_at(entries[4].position(), 100, 7);
    forged.data[0] ^= 1;
    let save = store.begin_snapshot(forged.position).unwrap();
    assert!(matches!(save.write(&forged), Err(StorageError::Invalid(_))));
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(newer)));
}

#[test]
fn a_snapshot_written_in_pieces_is_the_file_a_whole_one_makes_and_a_wrong_one_writes_nothing() {
    // Two stores alike; one saves a snapshot whole, the other the same one in pieces that
    // straddle the file's 1 MiB chunks (more than two of them), as a checkpoint writes its
    // image while it encodes it.
    let whole_dir = TempDir::new("wal-snapshot-whole");
    let dir = TempDir::new("wal-snapshot-pieces");
    filled_store(whole_dir.path(), SMALL, 5, 5);
    let entries = filled_store(dir.path(), SMALL, 5, 5);
    let snapshot = snapshot_at(entries[2].position(), (2 << 20) + 12_345, 3);
    let mut whole = FileStore::open_with(whole_dir.path(), SMALL).unwrap();
    let save = whole.begin_snapshot(snapshot.position).unwrap();
    whole
        .finish_snapshot(save.write(&snapshot).unwrap())
        .unwrap();
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    let bytes = snapshot.data.len() as u64;
    let save = store.begin_snapshot(snapshot.position).unwrap();
    let written = save
        .write_streamed(snapshot.state_hash, bytes, |writer| {
            for piece in snapshot.data.chunks(333_333) {
                writer.write(piece)?;
            }
            Ok(true)
        })
        .unwrap()
        .expect("written");
    store.finish_snapshot(written).unwrap();
    assert_eq!(
        snapshot_file_bytes(dir.path()),
        snapshot_file_bytes(whole_dir.path())
    );
    drop(store);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(snapshot.clone())));

    // A byte short, a byte over, an error of the caller's, or the caller giving up: nothing
    // is written, no temp file stays, the current snapshot is still the one.
    let later = snapshot_at(entries[3].position(), 100_000, 4);
    let short = &later.data[..later.data.len() - 1];
    let over = [&later.data[..], &[0]].concat();
    for (case, pieces, outcome) in [
        ("short", short, Ok(true)),
        ("over", &over[..], Ok(true)),
        (
            "failed",
            &later.data[..],
            Err(StorageError::Io("the caller's".into())),
        ),
        ("gave up", &later.data[..], Ok(false)),
    ] {
        let save = store.begin_snapshot(later.position).unwrap();
        let result = save.write_streamed(later.state_hash, later.data.len() as u64, |writer| {
            for piece in pieces.chunks(7_777) {
                writer.write(piece)?;
            }
            outcome
        });
        match (case, result) {
            ("short" | "over", Err(StorageError::Invalid(message))) => {
                assert!(message.contains("bytes"), "{case}: {message}")
            }
            ("failed", Err(StorageError::Io(message))) => assert_eq!(message, "the caller's"),
            ("gave up", Ok(None)) => {}
            (case, other) => panic!("{case}: {other:?}"),
        }
        assert_eq!(
            snapshot_files(dir.path()),
            1,
            "{case}: only the current snapshot"
        );
        assert_eq!(
            store.load_snapshot_blocking(),
            Ok(Some(snapshot.clone())),
            "{case}"
        );
    }
}

/// The bytes of the one snapshot file in `dir`.
/// The one snapshot file in `dir`.
fn snapshot_file(dir: &Path) -> PathBuf {
    let files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn snapshot_file_bytes(dir: &Path) -> Vec<u8> {
    fs::read(snapshot_file(dir)).unwrap()
}

#[test]
fn files_left_to_remove_later_are_removed_by_their_caller_or_by_the_next_open() {
    let dir = TempDir::new("wal-removals");
    let entries = filled_store(dir.path(), SMALL, 30, 3);
    let segments = segment_files(dir.path()).len();
    assert!(segments > 2, "{segments} segments");
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    store
        .save_snapshot_blocking(&snapshot_at(entries[9].position(), (16 << 20) + 1, 10))
        .unwrap();

    // A checkpoint whose removals are left to the caller: the older snapshot (larger than a
    // cut of the removal, so cut down before it goes) and the compacted segments stay until
    // it removes them.
    let later = snapshot_at(entries[19].position(), 100, 20);
    let removals = checkpoint_leaving_removals(&mut store, &later);
    assert!(!removals.is_empty());
    assert_eq!(
        snapshot_files(dir.path()),
        2,
        "the older snapshot is still there"
    );
    assert_eq!(
        segment_files(dir.path()).len(),
        segments,
        "so are the compacted segments"
    );
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(later.clone())));
    removals.remove().unwrap();
    assert_eq!(snapshot_files(dir.path()), 1);
    assert!(segment_files(dir.path()).len() < segments);

    // Left behind (a crash before the removal): the next open removes them and opens the
    // current snapshot and the log after it.
    let last = snapshot_at(entries[22].position(), 100, 23);
    let _left = checkpoint_leaving_removals(&mut store, &last);
    drop(store);
    assert_eq!(snapshot_files(dir.path()), 2);
    let store = FileStore::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(snapshot_files(dir.path()), 1);
    assert_eq!(store.load_snapshot_blocking(), Ok(Some(last)));
    assert_eq!(store.log_state().first, entries[23].lsn);
}

/// A checkpoint as the leader takes one (saved beside the log, then the log compacted behind
/// it), the files it frees left to the caller.
fn checkpoint_leaving_removals(store: &mut FileStore, snapshot: &Snapshot) -> Removals {
    let (result, removals) = store.leaving_removals(|store| {
        let save = store.begin_snapshot(snapshot.position)?;
        store.finish_snapshot(save.write(snapshot)?)?;
        store.compact_prefix_blocking(snapshot.position.lsn)
    });
    result.unwrap();
    removals
}

/// How many snapshot files (temp files included) `dir` holds.
fn snapshot_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("snap")
        })
        .count()
}

#[test]
fn an_entry_that_does_not_match_its_hash_is_refused_and_nothing_is_written() {
    let dir = TempDir::new("wal-bad-hash");
    let entries = filled_store(dir.path(), SMALL, 3, 3);
    let mut store = FileStore::open_with(dir.path(), SMALL).unwrap();
    let mut next = entries_after(entries[2].position(), 2, Term(1), "next");
    // Changed after it was hashed: a bug the store keeps out of the log, since the next start
    // would refuse the log that held it.
    next[1].timestamp.0 += 1;
    match store.append_blocking(&next) {
        Err(StorageError::Invalid(message)) => assert!(message.contains("entry 5"), "{message}"),
        other => panic!("expected the entry refused, got {other:?}"),
    }
    assert_eq!(store.log_state().last, entries[2].position());
    drop(store);
    assert_eq!(reopen_and_read(dir.path(), SMALL).unwrap(), entries);
}
