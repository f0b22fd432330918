//! Group commit, measured: entries per second at several batch sizes, each batch one
//! `append` (one write, one `fdatasync`). Ignored by default; run with
//! `cargo test -p cstore-server --release --test wal_bench -- --ignored --nocapture`.

mod wal_support;

use std::time::Instant;

use cstore_server::wal::FileStore;
use wal_support::{TempDir, chain};

#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn group_commit_throughput() {
    let entries = chain(40_000);
    let record_bytes = {
        let mut buf = Vec::new();
        for entry in &entries[..1000] {
            cstore_core::log::codec::encode_entry(entry, &mut buf);
        }
        buf.len() / 1000
    };
    println!("entries of about {record_bytes} bytes each; one fdatasync per batch");
    println!(
        "{:>6} {:>9} {:>12} {:>10} {:>12}",
        "batch", "entries", "entries/s", "fsyncs/s", "ms/append"
    );
    for batch in [1, 8, 64, 512] {
        let dir = TempDir::new("wal-bench");
        let mut store = FileStore::open(dir.path()).expect("open");
        let count = (batch * 400).min(entries.len());
        let started = Instant::now();
        for part in entries[..count].chunks(batch) {
            store.append_blocking(part).expect("append");
        }
        let seconds = started.elapsed().as_secs_f64();
        let stats = store.stats();
        println!(
            "{batch:>6} {count:>9} {:>12.0} {:>10.0} {:>12.3}",
            count as f64 / seconds,
            stats.data_syncs as f64 / seconds,
            seconds * 1000.0 / stats.append_batches as f64
        );
    }
}
