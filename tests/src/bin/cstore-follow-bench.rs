//! `cstore-follow-bench`: how fast a fresh native follower catches up with a loaded leader.
//!
//! Starts a leader (the `cstore` binary of the same build profile, temp data dir, free loopback
//! port), loads it with `--docs` small documents in transactions of `--docs-per-txn`, then
//! starts a follower on an empty data dir and times it from spawn until its `/v1/status` says
//! it applied the leader's last LSN. Every entry the follower applies was fsynced first, so the
//! figure includes its fsyncs. Whether it streamed the log or installed a snapshot first is in
//! the table (`snapshot installs`); `--snapshot` makes the leader compact its whole log at the
//! end of the load, so the follower must bootstrap from a snapshot. `--rounds N` starts N
//! fresh followers one after another against the same loaded leader and reports each round
//! and their median (the load takes far longer than a catch-up).
//!
//! `cargo run --release -p cstore-tests --bin cstore-follow-bench -- --docs 1000000`

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

use cstore_tests::{Client, ServerOptions, ServerProcess};

/// Catch-up benchmark of a native follower.
#[derive(Debug, Parser)]
#[command(name = "cstore-follow-bench", version)]
struct Args {
    /// Documents on the leader.
    #[arg(long, default_value_t = 1_000_000)]
    docs: u64,
    /// Documents per transaction (per log entry) while loading.
    #[arg(long, default_value_t = 100)]
    docs_per_txn: u64,
    /// Concurrent loading clients.
    #[arg(long, default_value_t = 8)]
    clients: u64,
    /// Compact the leader's whole log at the end of the load: the follower starts from a
    /// snapshot.
    #[arg(long)]
    snapshot: bool,
    /// Further arguments for the leader's `cstore serve` (repeatable).
    #[arg(long = "leader-arg", allow_hyphen_values = true)]
    leader_args: Vec<String>,
    /// Fresh followers to time, one after another, against the same loaded leader.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Give up after this many seconds of catching up.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

const COLLECTION: &str = "bench";

fn main() {
    let args = Args::parse();
    assert!(args.docs_per_txn >= 1 && args.clients >= 1 && args.rounds >= 1);
    let entries = args.docs.div_ceil(args.docs_per_txn);
    let leader = ServerProcess::start(ServerOptions {
        // `--snapshot`: the checkpoint after the last entry compacts the whole log.
        checkpoint_every: Some(if args.snapshot { entries } else { u64::MAX / 2 }),
        extra_args: args.leader_args.clone(),
        ..ServerOptions::default()
    })
    .unwrap_or_else(|e| panic!("the leader starts: {e}"));

    let loading = Instant::now();
    load(&leader, &args);
    let load_s = loading.elapsed().as_secs_f64();
    let last = leader.client().last_lsn();
    eprintln!(
        "loaded {} docs in {last} entries in {load_s:.1} s ({:.0} docs/s)",
        args.docs,
        args.docs as f64 / load_s
    );

    let mut rounds: Vec<Round> = (0..args.rounds)
        .map(|_| catch_up(&leader, &args, last))
        .collect();
    for (i, round) in rounds.iter().enumerate() {
        eprintln!(
            "round {}: healthy after {:.3} s, caught up after {:.3} s",
            i + 1,
            round.healthy_s,
            round.catch_up_s
        );
    }
    // The median round (the upper one of an even count); its status fills the table.
    rounds.sort_by(|a, b| a.catch_up_s.total_cmp(&b.catch_up_s));
    let Round {
        catch_up_s,
        healthy_s,
        status,
    } = rounds.swap_remove(rounds.len() / 2);
    let progress = &status["follower"];
    let rows: [(&str, String); 11] = [
        ("documents", args.docs.to_string()),
        ("log entries", last.to_string()),
        ("docs per entry", args.docs_per_txn.to_string()),
        (
            "snapshot installs",
            progress["snapshot_installs"].to_string(),
        ),
        ("entries streamed", progress["entries_received"].to_string()),
        (
            "MiB received",
            format!(
                "{:.1}",
                progress["bytes_received"].as_f64().unwrap_or(0.0) / (1 << 20) as f64
            ),
        ),
        (
            "rounds (fresh followers; median shown)",
            args.rounds.to_string(),
        ),
        ("spawn → healthy s", format!("{healthy_s:.2}")),
        ("catch-up s (spawn → applied)", format!("{catch_up_s:.2}")),
        (
            "docs/s (incl. fsyncs)",
            format!("{:.0}", args.docs as f64 / catch_up_s),
        ),
        ("entries/s", format!("{:.0}", last as f64 / catch_up_s)),
    ];
    println!("| follower catch-up | |");
    println!("|---|---:|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
}

/// One timed catch-up of a fresh follower.
struct Round {
    /// Spawn until `/v1/health` answered.
    healthy_s: f64,
    /// Spawn until the applied LSN is the leader's last.
    catch_up_s: f64,
    /// The follower's `/v1/status` at the end.
    status: Value,
}

/// Starts a fresh follower of `leader`, times it until it applied `last`, checks it holds every
/// document, and stops it.
fn catch_up(leader: &ServerProcess, args: &Args, last: u64) -> Round {
    let started = Instant::now();
    let follower = ServerProcess::start(ServerOptions {
        ready_timeout_ms: 60_000,
        ..ServerOptions::follower_of(leader)
    })
    .unwrap_or_else(|e| panic!("the follower starts: {e}"));
    let healthy_s = started.elapsed().as_secs_f64();
    let client = follower.client();
    let status = loop {
        let status = client.status();
        if status["applied_lsn"].as_u64().unwrap_or(0) >= last {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(args.timeout_s),
            "no catch-up within {} s: {status}",
            args.timeout_s
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let catch_up_s = started.elapsed().as_secs_f64();
    let count = client.collection_count(COLLECTION);
    assert_eq!(count, args.docs, "the follower holds every document");
    Round {
        healthy_s,
        catch_up_s,
        status,
    }
}

/// Loads `args.docs` documents with `args.clients` threads of `/v1/txn` batches.
fn load(leader: &ServerProcess, args: &Args) {
    let txns = args.docs.div_ceil(args.docs_per_txn);
    let threads: Vec<_> = (0..args.clients)
        .map(|worker| {
            let client: Client = leader.client();
            let (docs, per_txn, clients) = (args.docs, args.docs_per_txn, args.clients);
            std::thread::spawn(move || {
                let mut txn = worker;
                while txn < txns {
                    let first = txn * per_txn;
                    let ops: Vec<Value> = (first..(first + per_txn).min(docs))
                        .map(|i| {
                            json!({"op": "insert", "collection": COLLECTION,
                                   "doc": {"_id": format!("d{i:08}"), "n": i, "tag": "small"}})
                        })
                        .collect();
                    client
                        .txn(ops)
                        .unwrap_or_else(|e| panic!("txn {txn}: {e}"))
                        .expect_status(200);
                    txn += clients;
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a loading thread");
    }
}
