//! `wal::reader` (what backups and `as_of_lsn` read a data directory with) on real files: the
//! entries after a snapshot across rolled segments, the end of the log under the live and the
//! strict rule, damage named by file and offset, a log compacted past the starting point, and
//! `backup::state_at` equal to applying the same entries.

mod wal_support;

use std::fs::OpenOptions;
use std::io::Write;

use cstore_core::log::LogEntry;
use cstore_core::state::State;
use cstore_core::storage::StorageError;
use cstore_core::types::{LogPosition, Lsn};
use cstore_server::backup::{AsOfError, state_at};
use cstore_server::wal::reader::{self, ReadError, TailRule};
use cstore_server::wal::{FileStore, WalOptions};
use wal_support::{TempDir, filled_store, patch, segment_files};

/// Small segments, so 60 entries roll over several files.
const OPTIONS: WalOptions = WalOptions {
    segment_bytes_max: 1_000,
    hashes_checked_by_replay: false,
    scan_read_bytes: cstore_server::wal::SCAN_READ_BYTES,
};

fn read_all(
    dir: &std::path::Path,
    after: LogPosition,
    through: Option<Lsn>,
    rule: TailRule,
) -> Result<(Vec<LogEntry>, reader::LogEnd), ReadError> {
    let mut seen = Vec::new();
    let end = reader::read_entries(dir, after, through, rule, &mut |entry| {
        seen.push(entry);
        Ok(())
    })?;
    Ok((seen, end))
}

/// The state after applying `entries` from an empty one.
fn replayed(entries: &[LogEntry]) -> State {
    let mut state = State::new();
    for entry in entries {
        state.apply(entry).expect("the conformance entries apply");
    }
    state
}

#[test]
fn reads_after_a_snapshot_across_segments_and_stops_where_asked() {
    let dir = TempDir::new("reader-snapshot");
    let entries = filled_store(dir.path(), OPTIONS, 60, 7);
    assert!(segment_files(dir.path()).len() > 3, "the log rolled");
    let (all, end) = read_all(dir.path(), LogPosition::START, None, TailRule::Strict).unwrap();
    assert_eq!(all, entries);
    assert_eq!((end.last, end.tail), (entries[59].position(), None));

    // A checkpoint at 25, the log compacted behind it: the reader starts from the snapshot.
    let mut store = FileStore::open_with(dir.path(), OPTIONS).unwrap();
    let at_25 = replayed(&entries[..25]);
    store.save_snapshot_blocking(&at_25.snapshot()).unwrap();
    store.compact_prefix_blocking(Lsn(25)).unwrap();
    drop(store);
    let (_, snapshot) = reader::newest_snapshot(dir.path())
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.position, entries[24].position());
    let (after, end) = read_all(
        dir.path(),
        snapshot.position,
        Some(Lsn(40)),
        TailRule::Strict,
    )
    .unwrap();
    assert_eq!(after, entries[25..40].to_vec());
    assert_eq!(end.last, entries[39].position());
    // Entries before the compaction point are gone.
    let early = read_all(dir.path(), entries[2].position(), None, TailRule::Strict);
    assert!(matches!(early, Err(ReadError::Missing(_))), "{early:?}");
}

#[test]
fn a_partial_record_at_the_end_is_a_tail_when_live_and_damage_when_strict() {
    let dir = TempDir::new("reader-tail");
    let entries = filled_store(dir.path(), OPTIONS, 30, 4);
    let last = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    // Half a record: an append in flight.
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 2, 1]).unwrap();
    drop(file);

    let (seen, end) = read_all(dir.path(), LogPosition::START, None, TailRule::Live).unwrap();
    assert_eq!(seen, entries);
    assert_eq!(end.tail, Some((last.clone(), len, 10)));

    let strict = read_all(dir.path(), LogPosition::START, None, TailRule::Strict);
    let Err(ReadError::Storage(StorageError::Corrupt(why))) = strict else {
        panic!("strict reading refuses the partial record: {strict:?}");
    };
    assert!(
        why.contains(&last.display().to_string()) && why.contains(&format!("byte offset {len}")),
        "{why}"
    );
}

/// In the first segment, and in the middle of the last one (a valid entry follows the bad
/// bytes, so they are no append in flight).
#[test]
fn a_flipped_byte_is_damage_under_either_rule() {
    for which in ["first", "last"] {
        let dir = TempDir::new("reader-flip");
        filled_store(dir.path(), OPTIONS, 30, 4);
        let mut files = segment_files(dir.path());
        let file = if which == "first" {
            files.remove(0)
        } else {
            files.pop().unwrap()
        };
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 1;
        patch(&file, at, &bytes[at..=at]);
        for rule in [TailRule::Live, TailRule::Strict] {
            let read = read_all(dir.path(), LogPosition::START, None, rule);
            let Err(ReadError::Storage(StorageError::Corrupt(why))) = read else {
                panic!("{which} segment, {rule:?}: {read:?}");
            };
            assert!(why.contains(&file.display().to_string()), "{why}");
        }
    }
}

#[test]
fn state_at_equals_applying_the_entries() {
    let dir = TempDir::new("reader-state-at");
    let entries = filled_store(dir.path(), OPTIONS, 50, 5);
    let mut store = FileStore::open_with(dir.path(), OPTIONS).unwrap();
    store
        .save_snapshot_blocking(&replayed(&entries[..20]).snapshot())
        .unwrap();
    store.compact_prefix_blocking(Lsn(20)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for lsn in [20, 21, 33, 50] {
        let state = runtime
            .block_on(state_at(dir.path().to_path_buf(), Lsn(lsn)))
            .unwrap();
        let expected = replayed(&entries[..lsn as usize]);
        assert_eq!(state.applied(), expected.applied());
        assert_eq!(state.state_hash(), expected.state_hash(), "state at {lsn}");
    }
    let compacted = runtime.block_on(state_at(dir.path().to_path_buf(), Lsn(19)));
    assert_eq!(
        compacted.unwrap_err(),
        AsOfError::Compacted {
            lsn: Lsn(19),
            oldest: Lsn(20)
        }
    );
}

/// Bytes of every segment file in `dir`, in order.
fn file_lens(dir: &std::path::Path) -> Vec<u64> {
    segment_files(dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect()
}

#[test]
fn appends_reserve_zeroed_room_that_readers_recovery_and_a_clean_close_end_the_log_before() {
    let entries = wal_support::chain(40);
    let dir = TempDir::new("wal-room");
    let mut store = FileStore::open(dir.path()).unwrap();
    store.append_blocking(&entries[..10]).unwrap();
    let records = store.held_bytes();
    let [with_room] = file_lens(dir.path())[..] else {
        panic!("one segment")
    };
    assert!(
        with_room >= records + (512 << 10),
        "room is reserved ahead: {with_room} bytes for {records} of records"
    );
    let bytes = std::fs::read(&segment_files(dir.path())[0]).unwrap();
    assert!(bytes[records as usize..].iter().all(|&b| b == 0));
    // The next append overwrites the room: the file does not grow.
    store.append_blocking(&entries[10..20]).unwrap();
    assert_eq!(file_lens(dir.path()), [with_room]);

    // A reader of the live directory ends the log at the zeros, under either rule, and says
    // nothing was left of an append in flight.
    for rule in [TailRule::Live, TailRule::Strict] {
        let (seen, end) = read_all(dir.path(), LogPosition::START, None, rule).unwrap();
        assert_eq!(seen, entries[..20], "{rule:?}");
        assert_eq!(end.tail, None, "{rule:?}");
    }

    // A crash leaves the room: recovery (here on a copy of the open store's files) cuts it as
    // a torn tail and holds every entry.
    let copy = TempDir::new("wal-room-crash");
    std::fs::create_dir_all(copy.path().join("wal")).unwrap();
    let segment = &segment_files(dir.path())[0];
    std::fs::copy(
        segment,
        copy.path().join("wal").join(segment.file_name().unwrap()),
    )
    .unwrap();
    let recovered = FileStore::open(copy.path()).unwrap();
    assert_eq!(
        recovered.stats().torn_bytes_truncated,
        with_room - store.held_bytes()
    );
    assert_eq!(
        recovered.read_range_blocking(Lsn(1), Lsn(21)).unwrap(),
        entries[..20]
    );
    drop(recovered);

    // A clean close cuts the room: the directory holds records only.
    let held = store.held_bytes();
    drop(store);
    assert_eq!(file_lens(dir.path()), [held]);

    // Small segments: a segment that fills keeps no room, only the last one has some.
    let small = TempDir::new("wal-room-small");
    let options = WalOptions {
        segment_bytes_max: 1 << 10,
        hashes_checked_by_replay: false,
        scan_read_bytes: 100,
    };
    let mut store = FileStore::open_with(small.path(), options).unwrap();
    for batch in entries.chunks(3) {
        store.append_blocking(batch).unwrap();
    }
    let lens = file_lens(small.path());
    assert!(lens.len() >= 3, "{lens:?}");
    let (last, full) = lens.split_last().unwrap();
    let per_entry = {
        let mut one = Vec::new();
        cstore_core::log::codec::encode_entry(&entries[0], &mut one);
        one.len() as u64
    };
    for len in full {
        assert!(
            (1 << 10..(1 << 10) + 3 * per_entry).contains(len),
            "a full segment ends at its records: {lens:?}"
        );
    }
    assert!(*last >= 1 << 10, "the last segment has its room: {lens:?}");
    let (seen, _) = read_all(small.path(), LogPosition::START, None, TailRule::Strict).unwrap();
    assert_eq!(seen, entries);
    drop(store);
    let held: u64 = file_lens(small.path()).iter().sum();
    let reopened = FileStore::open_with(small.path(), options).unwrap();
    assert_eq!(reopened.held_bytes(), held);
    assert_eq!(reopened.stats().torn_bytes_truncated, 0);
}
