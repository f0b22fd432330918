//! `cstore-soak`: saturated writes against the leader of a cstore Raft cluster for a fixed
//! time, then a check that no member started an election after the first one.
//!
//! ```text
//!  start N members (free loopback ports, fresh data dirs) ─► agreed leader, converged ─► settle
//!    ─► baseline per member: /metrics election counters, /v1/status term
//!    ─► --clients closed-loop writers on the leader for --minutes (progress every --progress-s)
//!    ─► the same figures again: any election started or won, leader change, term change, a
//!       member gone, or a write the leader refused (it stepped down for a moment, which needs
//!       no election) ─► FAIL (exit 1); else PASS (exit 0)
//! ```
//!
//! `scripts/soak-cluster.sh [MINUTES] [--chaos]` builds it in release and runs it. Every member
//! is a `ServerProcess`, stopped by its own PID when the run ends. `CSTORE_BIN` picks the
//! server binary.

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;

use cstore_tests::Client;
use cstore_tests::cluster::ClusterOptions;
use cstore_tests::peers::metrics::Elections;
use cstore_tests::peers::raft::{RaftCluster, last_line};
use cstore_tests::peers::{Target, WriteConfig, run_writes};

/// Bound on one `/metrics` or `/v1/status` request.
const PROBE_TIMEOUT_MS: u64 = 2_000;

/// Saturated writes on a cstore Raft cluster; fails on any election after the first.
#[derive(Debug, Parser)]
#[command(name = "cstore-soak", version)]
struct Args {
    /// How long to write, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Closed-loop writers on the leader.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Cluster members.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// `--election-timeout-ms` of every member (the server's default when absent).
    #[arg(long)]
    election_timeout_ms: Option<u64>,
    /// `--heartbeat-ms` of every member (the server's default when absent).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 30.0)]
    progress_s: f64,
    /// Seconds between the cluster being healthy and the baseline.
    #[arg(long, default_value_t = 2.0)]
    settle_s: f64,
}

/// One member's figures at one moment.
#[derive(Debug, Clone)]
struct Snapshot {
    elections: Option<Elections>,
    role: String,
    leader: String,
    committed_lsn: u64,
}

/// How a run ended: the problems found (none: PASS) and the write rate.
struct Outcome {
    problems: Vec<String>,
    ops_per_s: f64,
}

fn main() {
    let args = Args::parse();
    if args.minutes <= 0.0 || args.clients == 0 || args.members == 0 || args.progress_s <= 0.0 {
        eprintln!("cstore-soak: --minutes, --clients, --members and --progress-s must be > 0");
        std::process::exit(2);
    }
    // Every member is stopped (by its PID) when `run` returns, before the exit.
    match run(&args) {
        Ok(outcome) if outcome.problems.is_empty() => println!(
            "soak: PASS: 0 elections after the initial one in {:.1} min of saturated writes ({} clients, {:.0} ops/s)",
            args.minutes, args.clients, outcome.ops_per_s
        ),
        Ok(outcome) => {
            for p in &outcome.problems {
                println!("    {p}");
            }
            println!(
                "soak: FAIL: {} problem(s) in {:.1} min of saturated writes ({} clients, {:.0} ops/s)",
                outcome.problems.len(),
                args.minutes,
                args.clients,
                outcome.ops_per_s
            );
            std::process::exit(1);
        }
        Err(message) => {
            println!("soak: FAIL: {message}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<Outcome, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    let options = ClusterOptions {
        election_timeout_ms: args.election_timeout_ms,
        heartbeat_ms: args.heartbeat_ms,
        ..ClusterOptions::default()
    };
    println!(
        "==> starting {} members (election timeout {}, heartbeat {})",
        args.members,
        args.election_timeout_ms
            .map_or_else(|| "default".into(), |ms| format!("{ms} ms")),
        args.heartbeat_ms
            .map_or_else(|| "default".into(), |ms| format!("{ms} ms")),
    );
    let mut cluster = RaftCluster::start_with(args.members, options)
        .map_err(|e| format!("the cluster did not start: {e}"))?;
    let leader = cluster
        .wait_healthy()
        .map_err(|e| format!("no healthy cluster: {e}"))?;
    let urls = cluster.urls();
    println!(
        "    pids {:?}, leader member {} at {}",
        cluster.pids(),
        leader + 1,
        urls[leader]
    );
    std::thread::sleep(Duration::from_secs_f64(args.settle_s));
    let baseline: Vec<Snapshot> = urls.iter().map(|u| snapshot(u)).collect();
    for (i, s) in baseline.iter().enumerate() {
        match &s.elections {
            Some(e) => println!("    member {} baseline ({}): {e}", i + 1, s.role),
            None => return Err(format!("member {} has no /metrics at the start", i + 1)),
        }
    }

    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    println!(
        "==> {} clients writing to the leader for {:.1} min",
        args.clients, args.minutes
    );
    let target = Target::Cstore {
        url: urls[leader].clone(),
        ack: None,
    };
    let config = WriteConfig {
        clients: args.clients,
        warmup: Duration::ZERO,
        duration,
    };
    let started = Instant::now();
    let writes = runtime.spawn(async move { run_writes(&target, config).await });
    let progress = Duration::from_secs_f64(args.progress_s);
    let mut last_lsn = baseline[leader].committed_lsn;
    let mut last_at = Instant::now();
    let mut gone = Vec::new();
    while !writes.is_finished() {
        let next = last_at + progress;
        while Instant::now() < next && !writes.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
        }
        for (i, member) in cluster.processes.members.iter_mut().enumerate() {
            if member.is_running()
                && let Ok(Some(status)) = member.try_reap()
            {
                println!(
                    "    member {} exited with {status}: {}",
                    i + 1,
                    last_line(&member.stderr())
                );
                gone.push(i);
            }
        }
        let now: Vec<Snapshot> = urls.iter().map(|u| snapshot(u)).collect();
        let lsn = now[leader].committed_lsn;
        let rate = lsn.saturating_sub(last_lsn) as f64 / last_at.elapsed().as_secs_f64();
        let elections: u64 = now
            .iter()
            .zip(&baseline)
            .filter_map(|(n, b)| Some(n.elections?.since(&b.elections?).started))
            .sum();
        let roles: Vec<String> = now
            .iter()
            .map(|s| format!("{}→{}", s.role, s.leader))
            .collect();
        println!(
            "    [{:>5.0} s] committed LSN {lsn} ({rate:.0} entries/s), roles {roles:?}, elections started since the baseline: {elections}",
            started.elapsed().as_secs_f64()
        );
        last_lsn = lsn;
        last_at = Instant::now();
    }
    let report = match runtime.block_on(writes) {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return Err(format!("the write load failed: {e}")),
        Err(e) => return Err(format!("the write load panicked: {e}")),
    };
    let end: Vec<Snapshot> = urls.iter().map(|u| snapshot(u)).collect();

    println!();
    println!(
        "| member | role at start → end | elections started | elections won | leader changes | term start → end |"
    );
    println!("|---:|---|---:|---:|---:|---|");
    let mut problems = Vec::new();
    for (i, (b, e)) in baseline.iter().zip(&end).enumerate() {
        let (Some(before), Some(after)) = (b.elections, e.elections) else {
            println!("| {} | {} → (no answer) | – | – | – | – |", i + 1, b.role);
            problems.push(format!("member {} does not answer at the end", i + 1));
            continue;
        };
        let grew = after.since(&before);
        println!(
            "| {} | {} → {} | {} | {} | {} | {} → {} |",
            i + 1,
            b.role,
            e.role,
            grew.started,
            grew.won,
            grew.leader_changes,
            before.term,
            after.term
        );
        if !grew.is_quiet() {
            problems.push(format!("member {}: {grew} since the baseline", i + 1));
        }
    }
    for i in &gone {
        problems.push(format!("member {} exited during the run", i + 1));
    }
    println!();
    println!(
        "writes: {} clients, {:.1} min: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {} {:?}",
        args.clients,
        args.minutes,
        report.ops_per_s(),
        report.quantile_ms(0.5),
        report.quantile_ms(0.99),
        report.quantile_ms(0.999),
        report.errors,
        report.error_samples
    );
    if report.ops == 0 {
        problems.push("no write was acknowledged".into());
    }
    // A refused write on the leader means it stopped leading for a moment (a lease that ran
    // out steps a leader down without an election: the counters alone would miss it).
    if report.errors > 0 {
        problems.push(format!(
            "{} writes to the leader failed, e.g. {:?}",
            report.errors,
            report.error_samples.first()
        ));
    }
    Ok(Outcome {
        problems,
        ops_per_s: report.ops_per_s(),
    })
}

/// A member's election counters (from `/metrics`) and role, leader and LSN (`/v1/status`).
fn snapshot(url: &str) -> Snapshot {
    let client = Client::with_timeout_ms(url, PROBE_TIMEOUT_MS);
    let status: Option<Value> = client
        .get("/v1/status")
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.json());
    let metrics = client
        .get("/metrics")
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.text());
    let field = |name: &str| {
        status
            .as_ref()
            .and_then(|s| s[name].as_str().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    };
    Snapshot {
        elections: metrics.map(|text| Elections::parse(&text, status.as_ref())),
        role: field("role"),
        leader: field("leader_id"),
        committed_lsn: status
            .as_ref()
            .and_then(|s| s["committed_lsn"].as_u64())
            .unwrap_or(0),
    }
}
