//! Deterministic simulation of replication: many seeds of chaos, invariants after every step,
//! convergence after healing, and planted bugs that the simulator must catch.
//!
//! `SIM_SEEDS=N` runs seeds `0..N` (default 500); `SIM_SEED=S` runs only seed S and prints its
//! report: a failing seed prints that command and reproduces exactly.

mod sim;

use cstore_core::replication::PlantedBugs;
use sim::Options;

const SEEDS_DEFAULT: u64 = 500;
/// Seeds tried before a planted bug counts as missed.
const BUG_SEEDS_MAX: u64 = 300;
/// Seeds of the quiet-network run.
const QUIET_SEEDS: u64 = 100;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

fn seeds() -> Vec<u64> {
    match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("SIM_SEEDS").unwrap_or(SEEDS_DEFAULT)).collect(),
    }
}

#[test]
fn replication_keeps_its_invariants_under_chaos_and_converges() {
    let seeds = seeds();
    let mut failures = Vec::new();
    let mut totals = sim::Report::default();
    for &seed in &seeds {
        match sim::run(seed, Options::default()) {
            Ok(report) => {
                if seeds.len() == 1 {
                    eprintln!("{report:#?}");
                }
                add(&mut totals, report);
            }
            Err(failure) => failures.push(failure),
        }
    }
    let t = &totals;
    eprintln!(
        "{} seeds: {} steps, {} writes, {} acked on replicas, {} unknown, {} crashes, {} forks, \
         {} snapshots installed, {} packets ({} dropped, {} duplicated, {} corrupted, \
         {} tampered, {} spliced, {} leaked), slowest convergence {} ms after healing; closes {:?}",
        seeds.len(),
        t.steps,
        t.writes,
        t.acked_writes,
        t.unknown_writes,
        t.crashes,
        t.forks,
        t.snapshots_installed,
        t.net.sent,
        t.net.dropped,
        t.net.duplicated,
        t.net.corrupted,
        t.net.tampered,
        t.net.spliced,
        t.net.leaked,
        t.heal_ms,
        t.closes
    );
    if !failures.is_empty() {
        for failure in failures.iter().take(5) {
            eprintln!("{failure}");
        }
        panic!("{} of {} seeds failed", failures.len(), seeds.len());
    }
}

/// Sums a run into the totals (the slowest convergence for `heal_ms`).
fn add(totals: &mut sim::Report, run: sim::Report) {
    totals.steps += run.steps;
    totals.writes += run.writes;
    totals.acked_writes += run.acked_writes;
    totals.unknown_writes += run.unknown_writes;
    totals.crashes += run.crashes;
    totals.forks += run.forks;
    totals.snapshots_installed += run.snapshots_installed;
    totals.heal_ms = totals.heal_ms.max(run.heal_ms);
    let (n, r) = (&mut totals.net, &run.net);
    n.sent += r.sent;
    n.dropped += r.dropped;
    n.duplicated += r.duplicated;
    n.corrupted += r.corrupted;
    n.tampered += r.tampered;
    n.spliced += r.spliced;
    n.leaked += r.leaked;
    for (code, count) in run.closes {
        *totals.closes.entry(code).or_default() += count;
    }
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 1234] {
        let first = sim::run(seed, Options::default()).expect("a passing seed");
        let second = sim::run(seed, Options::default()).expect("a passing seed");
        assert_eq!(first, second);
    }
}

/// On a network that only delays, nothing needs recovering: no frame is refused, no transfer
/// breaks, no timeout fires. A replica too slow for the write rate may still be dropped, and a
/// leader that plays an older build refuses each hello of the newest version, which the
/// replica answers by falling back (unless a crash or a cut came first).
#[test]
fn a_quiet_network_needs_no_recovery() {
    let options = Options {
        quiet_network: true,
        ..Options::default()
    };
    for seed in 0..QUIET_SEEDS {
        let report = sim::run(seed, options).unwrap_or_else(|failure| panic!("{failure}"));
        let unexpected: Vec<_> = report
            .closes
            .iter()
            .filter(|(code, _)| {
                !matches!(
                    **code,
                    "replica_lagging" | "unsupported_protocol" | "protocol_fallback"
                )
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "seed {seed} closed connections on a quiet network: {unexpected:?} \
             (SIM_TRACE=1 shows the frames)"
        );
    }
}

/// Runs seeds with a planted bug until one fails; returns the failure's message.
fn first_failure(bugs: PlantedBugs) -> String {
    for seed in 0..BUG_SEEDS_MAX {
        let options = Options {
            bugs,
            ..Options::default()
        };
        if let Err(failure) = sim::run(seed, options) {
            eprintln!("caught: {failure}");
            return failure.message;
        }
    }
    panic!("{bugs:?} went unnoticed for {BUG_SEEDS_MAX} seeds");
}

#[test]
fn a_planted_ack_before_persist_is_caught() {
    let message = first_failure(PlantedBugs {
        ack_before_persist: true,
        ..PlantedBugs::default()
    });
    assert!(message.contains("acknowledged on"), "{message}");
}

#[test]
fn a_planted_skipped_hash_check_is_caught() {
    let message = first_failure(PlantedBugs {
        skip_hash_check: true,
        ..PlantedBugs::default()
    });
    assert!(
        message.contains("hashes to") || message.contains("durably holds entry"),
        "{message}"
    );
}
