//! Criterion benchmarks of the core state machine: `cargo bench -p cstore-core --bench core`.
//!
//! Each measures applying log entries to a `State` (hashing happens when entries are built,
//! outside the timed part, as on a replica that received them).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

use cstore_core::doc::RawDoc;
use cstore_core::index::IndexSpec;
use cstore_core::state::State;
use cstore_core::txn::CollectionOptions;
use cstore_core::{LogEntry, Op, Term, TimestampMs, Txn};

const CITIES: [&str; 8] = [
    "Oslo", "Rome", "Lima", "Pune", "Kyiv", "Baku", "Doha", "Riga",
];

/// A ~110-byte user document.
pub fn user(i: u64) -> RawDoc {
    RawDoc::from_value(&json!({
        "_id": format!("u{i:08}"),
        "name": format!("user {i}"),
        "email": format!("user{i}@example.com"),
        "age": i % 90,
        "city": CITIES[(i % 8) as usize],
        "active": i % 3 == 0,
    }))
    .unwrap()
}

/// A state with the `users` collection and an index on `age`.
fn indexed_state() -> State {
    let mut state = State::new();
    let txn = Txn {
        ops: vec![
            Op::CreateCollection {
                collection: "users".into(),
                options: CollectionOptions::default(),
            },
            Op::CreateIndex {
                collection: "users".into(),
                spec: IndexSpec::single("by_age", "age"),
            },
        ],
    };
    state
        .apply(&LogEntry::new(
            state.applied(),
            Term(1),
            TimestampMs(1),
            txn,
        ))
        .unwrap();
    state
}

/// Builds entries continuing `state`, one transaction each.
fn entries(state: &State, txns: impl Iterator<Item = Txn>) -> Vec<LogEntry> {
    let mut prev = state.applied();
    txns.map(|txn| {
        let entry = LogEntry::new(prev, Term(1), TimestampMs(2), txn);
        prev = entry.position();
        entry
    })
    .collect()
}

fn insert_op(i: u64) -> Txn {
    Txn::single(Op::Insert {
        collection: "users".into(),
        doc: user(i),
    })
}

fn bench_insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("insert_one_index", |b| {
        b.iter_custom(|iters| {
            let mut state = indexed_state();
            let batch = entries(&state, (0..iters).map(insert_op));
            let start = Instant::now();
            for entry in &batch {
                state.apply(black_box(entry)).unwrap();
            }
            start.elapsed()
        });
    });
    group.bench_function("insert_no_index", |b| {
        b.iter_custom(|iters| {
            let mut state = State::new();
            let batch = entries(&state, (0..iters).map(insert_op));
            let start = Instant::now();
            for entry in &batch {
                state.apply(black_box(entry)).unwrap();
            }
            start.elapsed()
        });
    });
    group.bench_function("patch_indexed_field", |b| {
        const DOCS: u64 = 100_000;
        let mut base = indexed_state();
        for entry in entries(&base, (0..DOCS).map(insert_op)) {
            base.apply(&entry).unwrap();
        }
        b.iter_custom(|iters| {
            let mut state = base.clone();
            let patches = (0..iters).map(|i| {
                Txn::single(Op::Patch {
                    collection: "users".into(),
                    id: format!("u{:08}", i % DOCS),
                    patch: format!(r#"{{"age":{}}}"#, (i * 7) % 90),
                    if_version: None,
                })
            });
            let batch = entries(&state, patches);
            let start = Instant::now();
            for entry in &batch {
                state.apply(black_box(entry)).unwrap();
            }
            start.elapsed()
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_insert
}
criterion_main!(benches);
