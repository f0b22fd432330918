//! Crash points: the real server is killed with SIGKILL at many random moments of a mixed
//! workload (inserts, merge patches, deletes, transactions over three collections, an index
//! created and another dropped in one transaction, documents expiring by TTL, and checkpoints
//! every few entries, and every third kill aimed at one being written), and each time
//! the restarted server must hold exactly what a model says: every acknowledged transaction,
//! nothing never sent, and each transaction in flight at the kill wholly or not at all
//! (`tests/src/crash_workload.rs`). One data directory for all points: every recovery starts
//! from the torn state the one before left.
//!
//! CI runs a short version (12 points). The long one:
//! `CSTORE_CRASH_POINTS=100 cargo test -p cstore-tests --test crash_points -- --nocapture`, or
//! `scripts/crash.sh 100`.

use std::time::{Duration, Instant};

use cstore_tests::crash_workload::{CrashModel, CrashWriters, setup_ops};
use cstore_tests::seed::seeded_rng;
use cstore_tests::{ServerOptions, ServerProcess};
use rand::Rng;

/// Kill points of the short (CI) version; `CSTORE_CRASH_POINTS` sets another number.
const POINTS_DEFAULT: usize = 12;
const WRITERS: usize = 4;
/// A checkpoint (snapshot + compaction) every this many entries: often enough that kills land
/// inside some.
const CHECKPOINT_EVERY: u64 = 24;

/// Files a checkpoint leaves while it writes (`*.tmp`), i.e. the kill came mid-checkpoint.
fn temp_files(dir: &std::path::Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "tmp") {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn recovered_state_is_the_acknowledged_prefix_at_every_crash_point() {
    let points: usize = std::env::var("CSTORE_CRASH_POINTS")
        .ok()
        .map(|v| v.parse().expect("CSTORE_CRASH_POINTS is a number"))
        .unwrap_or(POINTS_DEFAULT);
    let (mut rng, seed) = seeded_rng("crash_points", 0x6372_6173_6870_7473);
    let options = ServerOptions {
        checkpoint_every: Some(CHECKPOINT_EVERY),
        ..ServerOptions::default()
    };
    let mut server = ServerProcess::start(options).expect("server starts");
    server
        .client()
        .txn(setup_ops())
        .expect("setup answers")
        .expect_status(200);
    let started = Instant::now();
    let mut model = CrashModel::default();
    let mut mid_checkpoint = 0;
    for point in 0..points {
        let kill_after_acks = rng.random_range(1..120u64);
        let extra_delay_us = rng.random_range(0..3_000u64);
        let writers = CrashWriters::start(
            &server.client(),
            point,
            seed,
            model.live_items(WRITERS),
            model.newest_index(),
        );
        assert!(
            writers.wait_acked(kill_after_acks, 20_000),
            "seed {seed} point {point}: only {} of {kill_after_acks} acknowledged in 20 s\n{}",
            writers.acked(),
            server.stderr()
        );
        // Every third point waits for a checkpoint to start writing its files, so that some
        // kills surely land inside one; the others come after a random delay.
        let aim_at_checkpoint = point % 3 == 2;
        if aim_at_checkpoint {
            let deadline = Instant::now() + Duration::from_secs(5);
            while temp_files(&server.data_dir()) == 0 && Instant::now() < deadline {
                std::hint::spin_loop();
            }
        } else {
            std::thread::sleep(Duration::from_micros(extra_delay_us));
        }
        let status = server.kill9().expect("SIGKILL");
        assert!(!status.success(), "a killed process does not exit 0");
        let torn_checkpoint = temp_files(&server.data_dir()) > 0;
        mid_checkpoint += usize::from(torn_checkpoint);
        let runs = writers.join();
        server.restart().unwrap_or_else(|e| {
            panic!("seed {seed} point {point}: restart after kill -9 failed: {e}")
        });
        let violations = model.check_round(&server.client(), &runs);
        let first: Vec<&String> = violations.iter().take(20).collect();
        assert!(
            violations.is_empty(),
            "seed {seed} point {point} (after {kill_after_acks} acks + {extra_delay_us} µs): \
             {} violations:\n{first:#?}",
            violations.len()
        );
        let last_lsn = server.client().last_lsn();
        assert!(
            last_lsn >= model.max_acked_lsn,
            "seed {seed} point {point}: recovered last_lsn {last_lsn} < acknowledged {}",
            model.max_acked_lsn
        );
        let when = if aim_at_checkpoint {
            "at a checkpoint".to_owned()
        } else {
            format!("+{extra_delay_us} µs")
        };
        println!(
            "point {point}: killed after {kill_after_acks} acks ({when}){}; {} acknowledged in \
             all, last_lsn {last_lsn}, {} documents, {} in ttl, indexes {:?}",
            if torn_checkpoint {
                ", mid-checkpoint"
            } else {
                ""
            },
            model.acked,
            model.docs.len(),
            model.ttl.len(),
            model.indexes,
        );
    }
    let checkpoints = server.all_stderr().matches("checkpoint written").count();
    println!(
        "crash points: {points} kills in {:.1} s; {} transactions acknowledged, all recovered; \
         in flight at a kill: {} applied whole, {} absent, none torn; {mid_checkpoint} kills \
         during a checkpoint's write; {checkpoints} checkpoints written (seed {seed})",
        started.elapsed().as_secs_f64(),
        model.acked,
        model.in_flight_applied,
        model.in_flight_absent,
    );
}
