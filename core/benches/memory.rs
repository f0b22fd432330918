//! Memory per document: `cargo bench -p cstore-core --bench memory`.
//!
//! Builds states of N documents and prints the resident memory they take next to the bytes of
//! their canonical encoding. Resident memory is read from `/proc/self/statm` (Linux), so the
//! figures include allocator overhead, as a user would see it. Each case runs in a fresh child
//! process: memory a previous case freed would otherwise be reused and hide the cost.

mod support;

use cstore_core::index::IndexSpec;
use cstore_core::{LogEntry, Op, Term, TimestampMs, Txn};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Applies N inserts in batches of 1,000 per entry and returns (encoded bytes, RSS growth).
fn measure(n: u64, padding: usize, indexes: &[IndexSpec]) -> (u64, u64) {
    let mut state = support::state_with(indexes);
    let before = rss_bytes();
    let mut encoded = 0u64;
    let mut i = 0;
    while i < n {
        let ops: Vec<Op> = (i..(i + 1000).min(n))
            .map(|j| {
                let doc = support::user_padded(j, padding);
                encoded += doc.len() as u64;
                Op::Insert {
                    collection: "users".into(),
                    doc,
                }
            })
            .collect();
        i += ops.len() as u64;
        let entry = LogEntry::new(state.applied(), Term(1), TimestampMs(2), Txn::new(ops));
        state.apply(&entry).unwrap();
    }
    let grown = rss_bytes().saturating_sub(before);
    std::hint::black_box(&state);
    (encoded, grown)
}

fn cases() -> Vec<(&'static str, Vec<IndexSpec>)> {
    vec![
        ("none", vec![]),
        ("age", vec![IndexSpec::single("by_age", "age")]),
        (
            "age, email (unique)",
            vec![
                IndexSpec::single("by_age", "age"),
                IndexSpec::single("by_email", "email").unique(),
            ],
        ),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child: `memory case <index> <padding> <n>` measures one case and prints one row.
    if let [_, word, case, padding, n] = &args[..]
        && word == "case"
    {
        let (name, indexes) = cases().swap_remove(case.parse().unwrap());
        let n: u64 = n.parse().unwrap();
        let (encoded, grown) = measure(n, padding.parse().unwrap(), &indexes);
        println!(
            "| {n} | {:.0} | {name} | {:.0} | {:.2}x |",
            encoded as f64 / n as f64,
            grown as f64 / n as f64,
            grown as f64 / encoded as f64
        );
        return;
    }
    // Parent (`cargo bench` passes `--bench`; a numeric argument sets N).
    let n: u64 = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let exe = std::env::current_exe().unwrap();
    println!("| documents | encoded bytes/doc | indexes | resident bytes/doc | ratio |");
    println!("|---:|---:|---|---:|---:|");
    for padding in [0usize, 300] {
        for case in 0..cases().len() {
            let out = std::process::Command::new(&exe)
                .args([
                    "case",
                    &case.to_string(),
                    &padding.to_string(),
                    &n.to_string(),
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
}
