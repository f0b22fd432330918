//! Durability under `kill -9`: concurrent writers stream single inserts and two-collection
//! transactions; the server is killed with SIGKILL at a seeded random point; after a restart on
//! the same data dir every acknowledged write is there with its exact content, nothing appears
//! that was never sent, and no transaction is half-applied. Several rounds run on the same data
//! dir, so recovery also has to cope with the torn tail of the round before.
//!
//! SIGKILL kills the process, not the machine: the page cache survives, so this proves the
//! server acknowledges only what it has written and recovers what it wrote; power-loss
//! durability (fsync) is the file WAL's own tests' business.

use std::time::{Duration, Instant};

use cstore_tests::seed::seeded_rng;
use cstore_tests::workload::{WriterPool, assert_no_unexpected, check_durability};
use cstore_tests::{ServerOptions, ServerProcess};
use rand::Rng;

const ROUNDS: usize = 5;
const WRITERS: usize = 8;

#[test]
fn acknowledged_writes_survive_kill_9() {
    let (mut rng, seed) = seeded_rng("kill9", 0x6b69_6c6c_3921);
    let mut server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let started = Instant::now();
    let mut all_logs = Vec::new();
    for round in 0..ROUNDS {
        let kill_after_acks = rng.random_range(20..400u64);
        let extra_delay_us = rng.random_range(0..5_000u64);
        let pool = WriterPool::start(&server.client(), WRITERS, &format!("r{round}"));
        assert!(
            pool.wait_acked(kill_after_acks, 20_000),
            "seed {seed} round {round}: only {} of {kill_after_acks} writes acknowledged in 20 s\n{}",
            pool.acked(),
            server.stderr()
        );
        std::thread::sleep(Duration::from_micros(extra_delay_us));
        let status = server.kill9().expect("SIGKILL");
        assert!(!status.success(), "a killed process does not exit 0");
        // Writers stop on their first request without an answer.
        let logs = pool.join();
        assert_no_unexpected(&logs);
        all_logs.extend(logs);

        server.restart().unwrap_or_else(|e| {
            panic!("seed {seed} round {round}: restart after kill -9 failed: {e}")
        });
        let report = check_durability(&server.client(), &all_logs);
        report.assert_clean(&format!(
            "seed {seed} round {round} (killed after {kill_after_acks} acks + {extra_delay_us} µs)"
        ));
        let last_lsn = server.client().last_lsn();
        assert!(
            last_lsn >= report.max_acked_lsn,
            "seed {seed} round {round}: recovered last_lsn {last_lsn} < acknowledged {}",
            report.max_acked_lsn
        );
        println!(
            "round {round}: killed after {kill_after_acks} acks (+{extra_delay_us} µs); \
             {} acked so far, {} unacked present, last_lsn {last_lsn}",
            report.acked, report.unacked_present
        );
    }
    println!("{ROUNDS} rounds in {} ms", started.elapsed().as_millis());
}
