//! Applies N single-document inserts (one secondary index) for profiling, then optionally runs
//! QUERIES finds of one kind:
//! `cargo build --release -p cstore-core --example profile_apply &&
//!  valgrind --tool=callgrind target/release/examples/profile_apply 100000 [QUERIES [KIND]]`
//!
//! KIND is `age` (default: `{"age": 42}` with limit 1 on the `by_age` index), `email` (a point
//! query on a unique `by_email` index, created only in this mode) or `range` (ages 10..20 sorted
//! by age, limit 100, as in the criterion bench). KIND `scattered` runs no query (QUERIES is
//! ignored) and inserts under ids in no order (`insert_scattered_op`) instead of ascending ones.

use serde_json::json;

use cstore_core::index::IndexSpec;

#[path = "../benches/support/mod.rs"]
mod support;

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let n: u64 = arg(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let queries: u32 = arg(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let kind = arg(3).unwrap_or_else(|| "age".into());
    let mut indexes = vec![IndexSpec::single("by_age", "age")];
    if kind == "email" {
        indexes.push(IndexSpec::single("by_email", "email").unique());
    }
    let mut state = support::state_with(&indexes);
    let insert = if kind == "scattered" {
        support::insert_scattered_op
    } else {
        support::insert_op
    };
    let entries = support::entries(&state, (0..n).map(insert));
    let start = std::time::Instant::now();
    for e in &entries {
        state.apply(e).unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{n} inserts in {elapsed:?}: {:.0}/s",
        n as f64 / elapsed.as_secs_f64()
    );
    if queries > 0 && kind != "scattered" {
        let users = state.collection("users").unwrap();
        let body = match kind.as_str() {
            "age" => json!({"filter": {"age": 42}, "limit": 1}),
            "email" => json!({"filter": {"email": format!("user{}@example.com", n / 2)}}),
            "range" => json!({
                "filter": {"age": {"$gte": 10, "$lt": 20}},
                "sort": [["age", 1]],
                "limit": 100,
            }),
            other => panic!("unknown query kind `{other}`: use age, email or range"),
        };
        let query = cstore_core::query::FindQuery::parse(&body).unwrap();
        assert!(
            !cstore_core::query::find(users, &query)
                .unwrap()
                .docs
                .is_empty()
        );
        let start = std::time::Instant::now();
        for _ in 0..queries {
            std::hint::black_box(cstore_core::query::find(users, &query).unwrap().docs.len());
        }
        println!(
            "{queries} {kind} queries: {:?} each",
            start.elapsed() / queries
        );
    }
}
