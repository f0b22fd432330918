//! A data directory as `FileStore::open` finds it after a crash or a bad disk: segments, the
//! `meta` record, the compaction point and a snapshot file, each made of fuzz bytes; then the
//! whole log is read and the state rebuilt as the leader's recovery does.
//!
//! Input after the mode byte: `[len: u16][tag][n][content]` parts. `tag % 5`: 0 `meta`,
//! 1 `wal/compacted`, 2 the segment starting at LSN `n + 1`, 3 the snapshot file of LSN `n`,
//! 4 a leftover temp file; `n` of 250 and above stands for an LSN at the end of the LSN space. In sealed mode a part's content is itself `[len][payload]` chunks,
//! and with `relink` a segment's entries continue the chain of the segment before it.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use cstore_core::state::State;
use cstore_core::storage::LogStore;
use cstore_core::{Hash, LogPosition, Lsn};
use cstore_server::wal::{FileStore, WalOptions};

use crate::record::{build_chain, chunks, mode, mode_byte, payload_of, unchunk};
use crate::seeds;

/// Entries read back at most, so that a claimed range cannot make a hang.
const READ_ENTRIES_MAX: u64 = 10_000;

/// A scratch directory of this thread (tests run targets on several), on tmpfs when there
/// is one.
fn scratch() -> PathBuf {
    static THREADS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static DIR: PathBuf = {
            let base = if fs::metadata("/dev/shm").is_ok_and(|m| m.is_dir()) {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let thread = THREADS.fetch_add(1, Ordering::Relaxed);
            base.join(format!("cstore-fuzz-wal-{}-{thread}", std::process::id()))
        };
    }
    DIR.with(PathBuf::clone)
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn snapshot_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap")
}

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let dir = &scratch();
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("wal")).expect("scratch directory");
    let mut chain = LogPosition::START;
    for part in chunks(rest) {
        let [tag, n, content @ ..] = part else {
            continue;
        };
        // Names near the end of the LSN space too: 250..=255 stand for u64::MAX - 6..=u64::MAX - 1.
        let n = match *n {
            n @ 0..250 => u64::from(n),
            n => u64::MAX - 1 - u64::from(255 - n),
        };
        let bytes = if mode.sealed {
            let relink = (mode.relink && tag % 5 == 2).then(|| LogPosition {
                lsn: Lsn(n),
                hash: if chain.lsn == Lsn(n) {
                    chain.hash
                } else {
                    Hash::ZERO
                },
            });
            let (records, end) = build_chain(content, relink);
            if let Some(end) = end {
                chain = end;
            }
            records.concat()
        } else {
            content.to_vec()
        };
        let path = match tag % 5 {
            0 => dir.join("meta"),
            1 => dir.join("wal").join("compacted"),
            2 => dir.join("wal").join(segment_name(n.saturating_add(1))),
            3 => dir.join(snapshot_name(n)),
            _ => dir
                .join("wal")
                .join(format!("{}.tmp", segment_name(n.saturating_add(1)))),
        };
        fs::write(path, bytes).expect("scratch file");
    }
    recover(dir);
    let _ = fs::remove_dir_all(dir);
}

/// What a server does at start: open (recovery), the snapshot, the entries after it; once as
/// a cluster member opens (every hash checked at open), once as a leader or follower does
/// (hashes above the snapshot left to the replay's reads).
fn recover(dir: &PathBuf) {
    for hashes_checked_by_replay in [false, true] {
        let options = WalOptions {
            hashes_checked_by_replay,
            ..WalOptions::default()
        };
        recover_with(dir, options);
    }
}

fn recover_with(dir: &PathBuf, options: WalOptions) {
    let Ok(store) = FileStore::open_with(dir, options) else {
        return;
    };
    let Ok(log) = futures::executor::block_on(store.state()) else {
        return;
    };
    let mut state = match store.load_snapshot_blocking() {
        Ok(Some(snapshot)) => match State::from_snapshot(&snapshot) {
            Ok(state) => state,
            Err(_) => return,
        },
        Ok(None) => State::new(),
        Err(_) => return,
    };
    let from = Lsn(state.applied().lsn.0 + 1);
    let to = Lsn(log.last.lsn.0.min(from.0.saturating_add(READ_ENTRIES_MAX)));
    if from > to {
        return;
    }
    if let Ok(entries) = futures::executor::block_on(store.read_range(from, to)) {
        for entry in &entries {
            let _ = state.apply(entry);
        }
    }
}

/// Seeds from a real store: a directory with segments, a snapshot and a compaction point.
pub fn seeds() -> Vec<Vec<u8>> {
    let files = seeds::data_dir_files();
    let tag_of = |name: &str| -> Option<(u8, u8)> {
        if name == "meta" {
            Some((0, 0))
        } else if name == "wal/compacted" {
            Some((1, 0))
        } else if let Some(first) = name
            .strip_prefix("wal/")
            .and_then(|n| n.strip_suffix(".seg"))
        {
            let first: u64 = first.parse().ok()?;
            Some((2, u8::try_from(first - 1).ok()?))
        } else if let Some(lsn) = name
            .strip_prefix("snapshot-")
            .and_then(|n| n.strip_suffix(".snap"))
        {
            Some((3, u8::try_from(lsn.parse::<u64>().ok()?).ok()?))
        } else {
            None
        }
    };
    let mut raw_parts = Vec::new();
    let mut sealed_parts = Vec::new();
    for (name, bytes) in &files {
        let Some((tag, n)) = tag_of(name) else {
            continue;
        };
        let mut raw = vec![tag, n];
        raw.extend_from_slice(bytes);
        raw_parts.push(raw);
        let mut payloads = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let end = (at + 8 + len).min(bytes.len());
            payloads.push(payload_of(&bytes[at..end]).to_vec());
            at = end;
        }
        let mut sealed = vec![tag, n];
        sealed.extend(unchunk(&payloads));
        sealed_parts.push(sealed);
    }
    let mut raw = vec![mode_byte(false, false, 0)];
    raw.extend(unchunk(&raw_parts));
    let mut sealed = vec![mode_byte(true, true, 0)];
    sealed.extend(unchunk(&sealed_parts));
    vec![raw, sealed]
}
