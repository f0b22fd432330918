//! `cstore-peers`: cstore against etcd, redis and PostgreSQL on this machine, in one run, through
//! one load generator (see `cstore_tests::peers`). `scripts/bench.sh peers` installs the peers, builds
//! this in release and turns its output into BENCHMARKS.md sections and a chart.
//!
//! Workloads (`--workloads`, comma-separated, all by default):
//! - `writes`: durable single-document writes, `--clients` closed-loop clients: cstore
//!   (`ack=local`), etcd with one member (JSON gateway), redis (`appendfsync always`), and
//!   redis-benchmark against the same redis as a cross-check of the driver; PostgreSQL 15
//!   (`jsonb` table with a primary key, one `INSERT` per write, `synchronous_commit = on`), and
//!   pgbench with the same `INSERT` against the same server as its cross-check; cstore's write
//!   channel (`/v1/write`, one WebSocket per client, one write in flight); and, pipelined (16
//!   writes in flight per client), cstore's write channel against redis-benchmark `-P 16`;
//! - `cluster`: cstore leader + two followers with `ack=replicas:2`, and a 3-member cstore Raft
//!   cluster (writes to its leader, answered once a majority holds them), against 3 etcd members;
//! - `raft-writes`: only the last two rows of `cluster` (the 3-member cstore Raft cluster and 3
//!   etcd members), for profiling the cluster's write path (`scripts/profile-cluster-writes.sh`);
//! - `failover`: `--failover-trials` kills (SIGKILL) of the leader under a steady load of
//!   `--failover-clients` writers that retry on any member, on a 3-member cstore Raft cluster and
//!   on 3 etcd members: the time from the kill to the first acknowledged write sent after it;
//! - `reads`: `--read-clients` closed-loop readers of `--read-docs` documents on 3 members:
//!   cstore local and linearizable reads, etcd serializable and linearizable ranges, each on the
//!   leader and on a follower;
//! - `recovery`: `--entries` single-document entries, kill -9, time to answer again; once with
//!   checkpoints effectively off and once with the server's default.
//!
//! Writes into `--out`: `writes.md`, `writes-verdict.md`, `writes.csv`, `failover.md`,
//! `failover-verdict.md`, `reads.md`, `recovery.md`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use cstore_server::leader::LeaderConfig;
use cstore_tests::peers::cluster::CstoreCluster;
use cstore_tests::peers::failover::{self, FailoverConfig};
use cstore_tests::peers::peer::{EtcdCluster, REDIS_PORT, redis_addr, start_redis};
use cstore_tests::peers::pgbench::{self, PgbenchRun};
use cstore_tests::peers::postgres::{POSTGRES_PORT, PostgresServer};
use cstore_tests::peers::raft::RaftCluster;
use cstore_tests::peers::reads::{self, ReadConfig};
use cstore_tests::peers::recovery::{self, RecoveryConfig};
use cstore_tests::peers::redis_benchmark;
use cstore_tests::peers::table::{self, WriteRow};
use cstore_tests::peers::target::payload;
use cstore_tests::peers::wrk::{self, WrkRun};
use cstore_tests::peers::{
    PeerError, Target, WriteConfig, WriteReport, WriteSummary, run_pipelined, run_writes,
};
use cstore_tests::write_channel::WriteChannel;
use cstore_tests::{ServerOptions, ServerProcess};

/// Writes in flight per client in the pipelined rows.
const PIPELINE: usize = 16;
/// Port offset of the single etcd member (client 23790, peer 23800).
const ETCD_SINGLE_OFFSET: u16 = 0;
/// Port offset of the three-member etcd cluster (clients 23791-23793).
const ETCD_CLUSTER_OFFSET: u16 = 1;
/// Port offset of the failover workload's etcd cluster (clients 23794-23796).
const ETCD_FAILOVER_OFFSET: u16 = 4;
/// Port offset of the reads workload's etcd cluster (clients 23797-23799).
const ETCD_READS_OFFSET: u16 = 7;
/// Bound on the first acknowledged write after a failover kill.
const FAILOVER_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// "Effectively off": far more entries than any run writes.
const CHECKPOINTS_OFF: u64 = 1_000_000_000_000;
/// Bounds on the requests of the redis-benchmark cross-check.
const REDIS_BENCHMARK_REQUESTS_MIN: u64 = 10_000;
/// See [`REDIS_BENCHMARK_REQUESTS_MIN`].
const REDIS_BENCHMARK_REQUESTS_MAX: u64 = 2_000_000;
/// Single-document writes over HTTP to the recovered server before the kill.
const LIVE_WRITES: u64 = 2_000;

/// Benchmarks cstore against etcd, redis and PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "cstore-peers", version)]
struct Args {
    /// Workloads to run: writes, cluster, failover, reads, recovery (and raft-writes, a part of
    /// cluster: the Raft cluster and etcd rows only).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "writes,cluster,failover,reads,recovery"
    )]
    workloads: Vec<String>,
    /// Concurrent closed-loop clients per write run.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Warm-up before each measured window, in seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// Measured window of each write run, in seconds.
    #[arg(long, default_value_t = 8.0)]
    duration_s: f64,
    /// Failover: kills of the leader per system.
    #[arg(long, default_value_t = 20)]
    failover_trials: usize,
    /// Failover: closed-loop writers (each retries on any member).
    #[arg(long, default_value_t = 8)]
    failover_clients: usize,
    /// Failover: seconds of steady writes before each kill (plus up to 20 % jitter).
    #[arg(long, default_value_t = 1.0)]
    failover_steady_s: f64,
    /// Failover: seconds of pause once the cluster is healthy again.
    #[arg(long, default_value_t = 1.0)]
    failover_pause_s: f64,
    /// Failover: upper bound on one write request, in ms; each request draws its bound from
    /// half of this up to this (then the client tries the next member).
    #[arg(long, default_value_t = 200)]
    failover_request_timeout_ms: u64,
    /// Reads: closed-loop readers per run.
    #[arg(long, default_value_t = 16)]
    read_clients: usize,
    /// Reads: documents seeded and read.
    #[arg(long, default_value_t = 1000)]
    read_docs: usize,
    /// Entries in the log before the recovery kill.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Keep the recovery servers' data dirs (to profile a restart by hand).
    #[arg(long)]
    keep_data: bool,
    /// Directory for the tables and the CSV.
    #[arg(long, default_value = "target/peers")]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    if args.clients == 0 || args.duration_s <= 0.0 || args.warmup_s < 0.0 {
        eprintln!("cstore-peers: --clients must be ≥ 1, --duration-s > 0, --warmup-s ≥ 0");
        std::process::exit(2);
    }
    if args.failover_trials == 0
        || args.failover_clients == 0
        || args.read_clients == 0
        || args.read_docs == 0
        || args.failover_request_timeout_ms == 0
        || args.failover_steady_s <= 0.0
        || args.failover_pause_s < 0.0
    {
        eprintln!(
            "cstore-peers: --failover-trials, --failover-clients, --failover-request-timeout-ms, \
             --read-clients, --read-docs must be ≥ 1, --failover-steady-s > 0, --failover-pause-s ≥ 0"
        );
        std::process::exit(2);
    }
    let known = [
        "writes",
        "cluster",
        "raft-writes",
        "failover",
        "reads",
        "recovery",
    ];
    if let Some(unknown) = args.workloads.iter().find(|w| !known.contains(&w.as_str())) {
        eprintln!("cstore-peers: unknown workload {unknown:?} (known: {known:?})");
        std::process::exit(2);
    }
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("cstore-peers: cannot create {}: {e}", args.out.display());
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    let config = WriteConfig {
        clients: args.clients,
        warmup: Duration::from_secs_f64(args.warmup_s),
        duration: Duration::from_secs_f64(args.duration_s),
    };
    let wants = |name: &str| args.workloads.iter().any(|w| w == name);
    let mut rows = Vec::new();
    if wants("writes") {
        rows.extend(single_node_rows(&runtime, config));
        rows.extend(pipelined_rows(&runtime, config));
    }
    if wants("cluster") {
        rows.extend(cluster_rows(&runtime, config, true));
    } else if wants("raft-writes") {
        rows.extend(cluster_rows(&runtime, config, false));
    }
    if !rows.is_empty() {
        let markdown = table::writes_markdown(&rows);
        println!("\n{markdown}\n{}", table::writes_verdict(&rows));
        write(&args.out, "writes.md", &markdown);
        write(
            &args.out,
            "writes-verdict.md",
            &table::writes_verdict(&rows),
        );
        write(&args.out, "writes.csv", &table::writes_csv(&rows));
    }
    if wants("failover") {
        let config = FailoverConfig {
            trials: args.failover_trials,
            clients: args.failover_clients,
            steady: Duration::from_secs_f64(args.failover_steady_s),
            pause: Duration::from_secs_f64(args.failover_pause_s),
            request_timeout: Duration::from_millis(args.failover_request_timeout_ms),
            ack_timeout: FAILOVER_ACK_TIMEOUT,
        };
        let results = [
            (
                "cstore 3-member Raft cluster",
                failover::measure_cstore(&runtime, config),
            ),
            (
                "etcd 3.4 (3 members)",
                failover::measure_etcd(&runtime, config, ETCD_FAILOVER_OFFSET),
            ),
        ];
        let rows: Vec<_> = results
            .into_iter()
            .map(|(system, outcome)| {
                outcome.map_err(|e| {
                    let reason = match e {
                        PeerError::Unavailable(reason) => reason,
                        other => other.to_string(),
                    };
                    println!("    {system}: not available: {reason}");
                    (system.to_string(), reason)
                })
            })
            .collect();
        let markdown = table::failover_markdown(&rows);
        let verdict = table::failover_verdict(&rows);
        println!("\n{markdown}\n{verdict}");
        write(&args.out, "failover.md", &markdown);
        write(&args.out, "failover-verdict.md", &verdict);
    }
    if wants("reads") {
        let config = ReadConfig {
            readers: args.read_clients,
            docs: args.read_docs,
            window: WriteConfig {
                clients: args.read_clients,
                ..config
            },
        };
        let rows = reads::measure_all(&runtime, config, ETCD_READS_OFFSET);
        let markdown = table::reads_markdown(&rows);
        println!("\n{markdown}");
        write(&args.out, "reads.md", &markdown);
    }
    if wants("recovery") {
        let default_every = LeaderConfig::default().checkpoint_every_entries;
        let settings = [
            (
                "off (every 10^12 entries)".to_string(),
                Some(CHECKPOINTS_OFF),
                args.entries,
            ),
            // Half an interval past the last checkpoint: the average tail under the default.
            (
                format!("default (every {default_every} entries)"),
                None,
                args.entries + default_every / 2,
            ),
        ];
        let mut reports = Vec::new();
        for (label, checkpoint_every, entries) in settings {
            let config = RecoveryConfig {
                label: label.clone(),
                checkpoint_every,
                entries,
                live_writes: LIVE_WRITES,
                keep_data: args.keep_data,
            };
            println!(
                "==> recovery, checkpoints {label}: {entries} entries + {LIVE_WRITES} over HTTP"
            );
            let report =
                recovery::measure(&runtime, &config).map_err(|e| (label.clone(), e.to_string()));
            match &report {
                Ok(r) => println!(
                    "    replayed {} in {:.0} ms to health ({:.0}/s); server's own {} ms ({:.0}/s)",
                    r.replayed,
                    r.health_ms,
                    r.replay_per_s(),
                    r.server_ms,
                    r.server_replay_per_s()
                ),
                Err((_, e)) => println!("    failed: {e}"),
            }
            reports.push(report);
        }
        let markdown = table::recovery_markdown(&reports);
        println!("\n{markdown}");
        write(&args.out, "recovery.md", &markdown);
    }
}

/// cstore, etcd (1 member), redis and PostgreSQL, one after the other.
fn single_node_rows(runtime: &tokio::runtime::Runtime, config: WriteConfig) -> Vec<WriteRow> {
    let workload = "single node";
    let mut rows = Vec::new();
    println!("==> {workload}: cstore (ack=local)");
    let mut cross_check = Err(PeerError::Unavailable("cstore did not run".into()));
    let outcome = ServerProcess::start(ServerOptions::default())
        .map_err(PeerError::from)
        .and_then(|server| {
            let target = Target::Cstore {
                url: server.url(),
                ack: None,
            };
            let summary = measure(
                runtime,
                &target,
                config,
                &format!("cstore pid {}", server.pid().unwrap_or(0)),
            )?;
            let body = String::from_utf8(payload(0)).expect("the payload is ASCII JSON");
            let url = format!("{}/v1/c/bench", server.url());
            let spec = WrkRun {
                url: &url,
                clients: config.clients,
                threads: cores(),
                duration: config.duration,
                body: &body,
                work_dir: server.root_dir(),
            };
            println!(
                "    cross-check: wrk -t {} -c {} -d {}s (the same POST)",
                spec.threads,
                spec.clients,
                spec.duration.as_secs().max(1)
            );
            cross_check = printed_cross_check(wrk::run(spec));
            Ok(summary)
        });
    rows.push(row(workload, "cstore (ack=local)", outcome));
    rows.push(row(
        workload,
        "cstore via wrk (a C client; same server, same POST, same clients)",
        cross_check,
    ));

    println!("==> {workload}: cstore write channel (WebSocket, ack=local)");
    let outcome = ServerProcess::start(ServerOptions::default())
        .map_err(PeerError::from)
        .and_then(|server| {
            let target = Target::CstoreChannel {
                addr: server.addr().to_string(),
            };
            measure(
                runtime,
                &target,
                config,
                &format!("cstore pid {}", server.pid().unwrap_or(0)),
            )
        });
    rows.push(row(
        workload,
        "cstore write channel (WebSocket /v1/write, ack=local)",
        outcome,
    ));

    println!("==> {workload}: etcd 3.4, 1 member");
    let outcome = measure_etcd(runtime, config, 1, ETCD_SINGLE_OFFSET);
    rows.push(row(workload, "etcd 3.4 (1 member, JSON gateway)", outcome));

    println!("==> {workload}: redis appendfsync always");
    let mut cross_check = Err(PeerError::Unavailable("redis did not run".into()));
    let outcome = start_redis().and_then(|redis| {
        let target = Target::Redis { addr: redis_addr() };
        let summary = measure(
            runtime,
            &target,
            config,
            &format!("redis pid {}", redis.pid().unwrap_or(0)),
        )?;
        // About as many SETs as our driver made, so both runs last about as long.
        let requests = ((summary.ops_per_s * config.duration.as_secs_f64()) as u64)
            .clamp(REDIS_BENCHMARK_REQUESTS_MIN, REDIS_BENCHMARK_REQUESTS_MAX);
        println!(
            "    cross-check: redis-benchmark -c {} -n {requests} -t set",
            config.clients
        );
        cross_check = printed_cross_check(redis_benchmark::run(
            REDIS_PORT,
            config.clients,
            1,
            requests,
            payload(0).len(),
        ));
        Ok(summary)
    });
    rows.push(row(workload, "redis 7 (appendfsync always)", outcome));
    rows.push(row(
        workload,
        "redis 7 via redis-benchmark (its own C client; same server, same clients)",
        cross_check,
    ));

    println!("==> {workload}: PostgreSQL 15, jsonb INSERT, synchronous_commit on");
    let mut cross_check = Err(PeerError::Unavailable("postgres did not run".into()));
    let outcome = PostgresServer::start(runtime).and_then(|postgres| {
        println!("    {}", postgres.settings_line());
        let target = Target::Postgres {
            config: Box::new(postgres.config()),
        };
        let summary = measure(
            runtime,
            &target,
            config,
            &format!("postgres pid {}", postgres.pid().unwrap_or(0)),
        )?;
        let doc = String::from_utf8(payload(0)).expect("the payload is ASCII JSON");
        let spec = PgbenchRun {
            port: POSTGRES_PORT,
            clients: config.clients,
            threads: cores(),
            duration: config.duration,
            doc: &doc,
            work_dir: &postgres.scratch_dir(),
        };
        println!(
            "    cross-check: pgbench -M prepared -c {} -j {} -T {} (the same INSERT)",
            spec.clients,
            spec.threads,
            spec.duration.as_secs().max(1)
        );
        cross_check = printed_cross_check(pgbench::run(spec));
        Ok(summary)
    });
    rows.push(row(
        workload,
        "PostgreSQL 15 (jsonb, primary key, synchronous_commit=on)",
        outcome,
    ));
    rows.push(row(
        workload,
        "PostgreSQL 15 via pgbench (its own C client; same server, same INSERT, same clients)",
        cross_check,
    ));
    rows
}

/// The pipelined rows: cstore's write channel with `PIPELINE` inserts in flight per client,
/// against redis-benchmark with `-P PIPELINE` (redis's own C client; the peer with the same
/// pipelining). Each side sends the same count of writes without waiting per client.
fn pipelined_rows(runtime: &tokio::runtime::Runtime, config: WriteConfig) -> Vec<WriteRow> {
    let workload = format!("single node, {PIPELINE} in flight per client");
    let workload = workload.as_str();
    let mut rows = Vec::new();
    println!("==> {workload}: cstore write channel");
    let outcome = ServerProcess::start(ServerOptions::default())
        .map_err(PeerError::from)
        .and_then(|server| {
            println!(
                "    cstore pid {}: {} channels × {PIPELINE} in flight, {:.0} s warm-up + {:.0} s",
                server.pid().unwrap_or(0),
                config.clients,
                config.warmup.as_secs_f64(),
                config.duration.as_secs_f64()
            );
            let addr = server.addr().to_string();
            let report = runtime
                .block_on(async {
                    let mut channels = Vec::with_capacity(config.clients);
                    for _ in 0..config.clients {
                        let channel = WriteChannel::open(&addr, "", None)
                            .await
                            .map_err(|e| format!("opening a write channel: {e}"))?;
                        channels.push(channel);
                    }
                    run_pipelined(channels, PIPELINE, config).await
                })
                .map_err(|e| PeerError::net("running the writes", e))?;
            Ok(printed(&report))
        });
    rows.push(row(
        workload,
        "cstore write channel (WebSocket /v1/write, ack=local)",
        outcome,
    ));

    println!("==> {workload}: redis appendfsync always, redis-benchmark -P {PIPELINE}");
    let outcome = start_redis().and_then(|_redis| {
        let requests = REDIS_BENCHMARK_REQUESTS_MAX;
        println!(
            "    redis-benchmark -c {} -P {PIPELINE} -n {requests} -t set",
            config.clients
        );
        redis_benchmark::run(
            REDIS_PORT,
            config.clients,
            PIPELINE,
            requests,
            payload(0).len(),
        )
    });
    rows.push(row(
        workload,
        &format!("redis 7 (appendfsync always) via redis-benchmark -P {PIPELINE}"),
        outcome,
    ));
    rows
}

/// The "3 copies" rows: cstore leader + 2 followers (when `with_followers`), the 3-member cstore
/// Raft cluster, 3 etcd members.
fn cluster_rows(
    runtime: &tokio::runtime::Runtime,
    config: WriteConfig,
    with_followers: bool,
) -> Vec<WriteRow> {
    let workload = "3 copies";
    let mut rows = Vec::new();
    if with_followers {
        rows.push(followers_row(runtime, config, workload));
    }

    println!("==> {workload}: cstore 3-member Raft cluster, writes to the leader");
    let outcome = RaftCluster::start(3).and_then(|cluster| {
        let leader = cluster.leader()?;
        let target = Target::Cstore {
            url: cluster.urls()[leader].clone(),
            ack: None,
        };
        measure(
            runtime,
            &target,
            config,
            &format!(
                "cstore pids {:?}, leader member {}",
                cluster.pids(),
                leader + 1
            ),
        )
    });
    rows.push(row(
        workload,
        "cstore 3-member Raft cluster (writes to the leader, majority-durable)",
        outcome,
    ));

    println!("==> {workload}: etcd 3.4, 3 members");
    let outcome = measure_etcd(runtime, config, 3, ETCD_CLUSTER_OFFSET);
    rows.push(row(
        workload,
        "etcd 3.4 (3 members, writes to the leader)",
        outcome,
    ));
    rows
}

/// The "cstore leader + 2 followers (ack=replicas:2)" row.
fn followers_row(
    runtime: &tokio::runtime::Runtime,
    config: WriteConfig,
    workload: &str,
) -> WriteRow {
    println!("==> {workload}: cstore leader + 2 followers (ack=replicas:2)");
    let outcome = CstoreCluster::start(2, "replicas:2").and_then(|cluster| {
        let target = Target::Cstore {
            url: cluster.leader_url(),
            ack: Some("replicas:2".into()),
        };
        measure(
            runtime,
            &target,
            config,
            &format!("cstore pids {:?}", cluster.pids()),
        )
    });
    row(
        workload,
        "cstore leader + 2 followers (ack=replicas:2)",
        outcome,
    )
}

/// Starts an etcd cluster of `members` and measures writes through its leader's gateway.
fn measure_etcd(
    runtime: &tokio::runtime::Runtime,
    config: WriteConfig,
    members: u16,
    port_offset: u16,
) -> Result<WriteSummary, PeerError> {
    EtcdCluster::start(members, port_offset).and_then(|etcd| {
        let target = Target::Etcd {
            url: etcd.leader_url()?,
        };
        let who = format!("etcd pids {:?}", etcd.pids());
        measure(runtime, &target, config, &who)
    })
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    config: WriteConfig,
    who: &str,
) -> Result<WriteSummary, PeerError> {
    println!(
        "    {who}: {} clients, {:.0} s warm-up + {:.0} s",
        config.clients,
        config.warmup.as_secs_f64(),
        config.duration.as_secs_f64()
    );
    let report = runtime
        .block_on(run_writes(target, config))
        .map_err(|e| PeerError::net("running the writes", e))?;
    Ok(printed(&report))
}

/// Prints a cross-check's figures (another generator's run) under its heading, when it ran.
fn printed_cross_check(
    outcome: Result<WriteSummary, PeerError>,
) -> Result<WriteSummary, PeerError> {
    if let Ok(s) = &outcome {
        println!(
            "    {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
            s.ops_per_s, s.p50_ms, s.p99_ms, s.errors
        );
    }
    outcome
}

/// The machine's cores: the threads a C generator (wrk, pgbench) gets.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Prints a run's figures under its heading and returns them.
fn printed(report: &WriteReport) -> WriteSummary {
    println!(
        "    {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, errors {} {:?}",
        report.ops_per_s(),
        report.quantile_ms(0.5),
        report.quantile_ms(0.99),
        report.errors,
        report.error_samples
    );
    report.summary()
}

fn row(workload: &str, system: &str, outcome: Result<WriteSummary, PeerError>) -> WriteRow {
    if let Err(e) = &outcome {
        match e {
            PeerError::Unavailable(_) => println!("    {e}"),
            other => println!("    not available: {other}"),
        }
    }
    WriteRow {
        workload: workload.into(),
        system: system.into(),
        outcome: outcome.map_err(|e| match e {
            PeerError::Unavailable(reason) => reason,
            other => other.to_string(),
        }),
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("cstore-peers: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}
