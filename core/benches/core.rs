//! Criterion benchmarks of the core state machine: `cargo bench -p cstore-core --bench core`.
//!
//! Each measures applying log entries to a `State` (hashing happens when entries are built,
//! outside the timed part, as on a replica that received them).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

use cstore_core::index::IndexSpec;
use cstore_core::query::{FindQuery, find};
use cstore_core::state::State;
use cstore_core::{Op, Txn};

mod support;

use support::{entries, indexed_state, insert_op, insert_scattered_op};

fn bench_insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("insert_one_index", |b| {
        b.iter_custom(|iters| timed_inserts(indexed_state(), iters, insert_op));
    });
    group.bench_function("insert_no_index", |b| {
        b.iter_custom(|iters| timed_inserts(State::new(), iters, insert_op));
    });
    // Ids in no order: every insert lands inside the runs, below the last one.
    group.bench_function("insert_scattered_ids_no_index", |b| {
        b.iter_custom(|iters| timed_inserts(State::new(), iters, insert_scattered_op));
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

/// How long `state` takes to apply `iters` entries, the `i`th holding `insert(i)` (the entries
/// are built, and hashed, before the clock starts).
fn timed_inserts(mut state: State, iters: u64, insert: fn(u64) -> Txn) -> Duration {
    let batch = entries(&state, (0..iters).map(insert));
    let start = Instant::now();
    for entry in &batch {
        state.apply(black_box(entry)).unwrap();
    }
    start.elapsed()
}

/// 100,000 users with a unique index on `email` and an index on `age`.
fn populated() -> State {
    let mut state = indexed_state();
    let unique = Txn::single(Op::CreateIndex {
        collection: "users".into(),
        spec: IndexSpec::single("by_email", "email").unique(),
    });
    for entry in entries(
        &state,
        std::iter::once(unique).chain((0..100_000).map(insert_op)),
    ) {
        state.apply(&entry).unwrap();
    }
    state
}

fn bench_query(c: &mut Criterion) {
    let state = populated();
    let users = state.collection("users").unwrap();
    let mut group = c.benchmark_group("query");
    group.throughput(Throughput::Elements(1));
    let point = FindQuery::parse(&json!({"filter": {"email": "user4242@example.com"}})).unwrap();
    assert_eq!(find(users, &point).unwrap().docs.len(), 1);
    group.bench_function("indexed_point", |b| {
        b.iter(|| find(users, black_box(&point)).unwrap().docs.len());
    });
    group.bench_function("get_by_id", |b| {
        b.iter(|| users.get(black_box("u00004242")).is_some());
    });
    let range = FindQuery::parse(&json!({
        "filter": {"age": {"$gte": 10, "$lt": 20}},
        "sort": [["age", 1]],
        "limit": 100,
    }))
    .unwrap();
    let result = find(users, &range).unwrap();
    assert_eq!(result.docs.len(), 100);
    assert_eq!(result.plan.explain()["strategy"], "index_range");
    group.bench_function("indexed_range_100", |b| {
        b.iter(|| find(users, black_box(&range)).unwrap().docs.len());
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_insert, bench_query
}
criterion_main!(benches);
