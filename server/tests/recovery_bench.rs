//! Recovery, measured: a log of small-document inserts written with the real [`FileStore`],
//! then reopened and replayed into a [`State`] the way the leader starts (open scan, then
//! `read_range` in chunks of 4096 and `State::apply`), and a snapshot of the resulting state
//! loaded back with `State::from_snapshot`. Prints entries/s for each phase. Ignored by
//! default; run with
//! `cargo test -p cstore-server --release --test recovery_bench -- --ignored --nocapture`
//! (`CSTORE_RECOVERY_ENTRIES` sets the log length, default 1,000,000).

mod wal_support;

use std::time::Instant;

use cstore_core::LogEntry;
use cstore_core::doc::RawDoc;
use cstore_core::state::State;
use cstore_core::txn::{Op, Txn};
use cstore_core::types::{LogPosition, Lsn, Term, TimestampMs};
use cstore_server::wal::FileStore;
use wal_support::TempDir;

/// Entries read per `read_range`, as the leader's replay does.
const REPLAY_CHUNK: u64 = 4096;
/// Entries per `append` while the log is written.
const WRITE_BATCH: usize = 1000;

fn entry_after(prev: LogPosition, i: u64) -> LogEntry {
    let text = format!(
        r#"{{"_id":"d{i:09}","n":{i},"tags":["a","b"],"text":"small document number {i}"}}"#
    );
    let doc = RawDoc::parse(&text).expect("a valid document");
    assert_eq!(doc.as_str(), text, "the generator writes canonical text");
    let txn = Txn::single(Op::Insert {
        collection: "bench".into(),
        doc,
    });
    LogEntry::new(prev, Term(1), TimestampMs(1_000_000 + i), txn)
}

fn per_second(count: u64, seconds: f64) -> String {
    format!("{:>12.0}", count as f64 / seconds)
}

/// Seconds this thread has run on a CPU (Linux), so that a phase can be judged apart from
/// other processes competing for the cores: on a busy machine wall time overstates it.
fn thread_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ns as f64 / 1e9
}

/// Wall and CPU seconds of one phase.
struct Phase {
    wall_s: f64,
    cpu_s: f64,
}

impl Phase {
    fn row(&self, name: &str, count: u64) {
        println!(
            "{name:<34} {:>9.3} {} {:>9.3} {}",
            self.wall_s,
            per_second(count, self.wall_s),
            self.cpu_s,
            per_second(count, self.cpu_s)
        );
    }
}

fn measure<T>(run: impl FnOnce() -> T) -> (T, Phase) {
    let cpu = thread_cpu_s();
    let started = Instant::now();
    let value = run();
    let phase = Phase {
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: thread_cpu_s() - cpu,
    };
    (value, phase)
}

#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn recovery_throughput() {
    let count: u64 = std::env::var("CSTORE_RECOVERY_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = TempDir::new("recovery-bench");
    {
        let mut store = FileStore::open(dir.path()).expect("open");
        let mut prev = LogPosition::START;
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        for i in 1..=count {
            let entry = entry_after(prev, i);
            prev = entry.position();
            batch.push(entry);
            if batch.len() == WRITE_BATCH || i == count {
                store.append_blocking(&batch).expect("append");
                batch.clear();
            }
        }
    }

    let (store, open) = measure(|| FileStore::open(dir.path()).expect("reopen"));
    let log_bytes = store.held_bytes();
    let (state, replay) = measure(|| {
        let mut state = State::new();
        let mut next = Lsn(1);
        let last = store.log_state().last.lsn;
        while next <= last {
            let to = Lsn((next.0 + REPLAY_CHUNK).min(last.0 + 1));
            for entry in store.read_range_blocking(next, to).expect("read") {
                state.apply(&entry).expect("replays");
            }
            next = to;
        }
        state
    });
    assert_eq!(state.applied().lsn, Lsn(count));
    let total = Phase {
        wall_s: open.wall_s + replay.wall_s,
        cpu_s: open.cpu_s + replay.cpu_s,
    };

    let snapshot = state.snapshot();
    drop(state);
    let (loaded, load) = measure(|| State::from_snapshot(&snapshot).expect("loads"));
    assert_eq!(loaded.applied().lsn, Lsn(count));

    println!(
        "{count} entries, {:.0} MB of log, snapshot {:.0} MB",
        log_bytes as f64 / 1e6,
        snapshot.data.len() as f64 / 1e6
    );
    println!(
        "{:<34} {:>9} {:>12} {:>9} {:>12}",
        "phase", "wall s", "entries/s", "cpu s", "per cpu s"
    );
    open.row("open (scan)", count);
    replay.row("replay (read_range + apply)", count);
    total.row("recovery total (open + replay)", count);
    load.row("snapshot load (docs/s)", count);
}
