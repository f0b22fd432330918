//! Applies N single-document inserts (one secondary index) for profiling:
//! `cargo build --release -p cstore-core --example profile_apply &&
//!  valgrind --tool=callgrind target/release/examples/profile_apply 100000 [QUERIES]`

use serde_json::json;

#[path = "../benches/support/mod.rs"]
mod support;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut state = support::indexed_state();
    let entries = support::entries(&state, (0..n).map(support::insert_op));
    let start = std::time::Instant::now();
    for e in &entries {
        state.apply(e).unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{n} inserts in {elapsed:?}: {:.0}/s",
        n as f64 / elapsed.as_secs_f64()
    );
    // With a second argument, also run that many indexed point queries.
    let queries: u32 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    if queries > 0 {
        let users = state.collection("users").unwrap();
        let filter = json!({"filter": {"age": 42}, "limit": 1});
        let query = cstore_core::query::FindQuery::parse(&filter).unwrap();
        let start = std::time::Instant::now();
        for _ in 0..queries {
            std::hint::black_box(cstore_core::query::find(users, &query).unwrap().docs.len());
        }
        println!(
            "{queries} point queries: {:?} each",
            start.elapsed() / queries
        );
    }
}
