//! `cstore-fanout`: propagation from a write to many replicas, and the server's memory.
//!
//! N in-process WebSocket replicas ([`ReplicaClient`], protocol only: no local store or
//! state) follow a server from this process; a writer inserts documents at a fixed rate, and
//! every replica records, for every entry, the time from the writer *sending* the insert to the
//! entry arriving (verified, persisted) at the replica. It also records the time from the
//! writer *receiving* its `201` (the leader committed durably) to the arrival, which is the
//! commit → replica latency; it is negative when the replica had the entry before the writer
//! had its answer (the leader streams an entry as soon as it is durable, before answering).
//! One monotonic clock times both ends, so there is no skew. The server's RSS is read from
//! `/proc/<pid>/status` before the replicas connect, once they are all streaming, and as the
//! peak (`VmHWM`).
//!
//! ```text
//!  cstore-fanout --spawn --replicas 1000 --rate 200 --duration-s 10     # fan-out
//!  cstore-fanout --spawn --replicas 1 --rate 10000 --duration-s 10      # commit→replica latency
//! ```
//!
//! Build with `cargo build --release -p cstore-tests --bin cstore-fanout` (and `cstore` too:
//! `--spawn` runs the `cstore` of the same profile). Clients and server are separate processes.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;

use cstore_core::{LogEntry, Lsn, Op};
use cstore_tests::replica_client::{ReplicaClient, ReplicaOptions};
use cstore_tests::{ServerOptions, ServerProcess};

/// Propagation from writes to many replicas.
#[derive(Debug, Parser)]
#[command(name = "cstore-fanout", version)]
struct Args {
    /// Base URL of a running server (loopback), such as http://127.0.0.1:7070.
    #[arg(long, conflicts_with = "spawn", required_unless_present = "spawn")]
    url: Option<String>,
    /// PID of the server at --url, to read its memory.
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
    /// Start a server of the same build profile on a temp data dir for this run.
    #[arg(long)]
    spawn: bool,
    /// Replicas to connect.
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds of writing.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Most writes in flight at once.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Bytes of padding per document.
    #[arg(long, default_value_t = 100)]
    pad_bytes: usize,
}

/// Microseconds since the run's epoch; 0 means "not yet".
type Stamps = Arc<Vec<AtomicI64>>;

/// One replica's samples, in microseconds.
struct Samples {
    from_send: Histogram<u64>,
    from_ack: Histogram<u64>,
    /// Arrivals before the writer had its answer.
    before_ack: u64,
}

impl Samples {
    fn new() -> Samples {
        Samples {
            from_send: Histogram::new(3).expect("histogram"),
            from_ack: Histogram::new(3).expect("histogram"),
            before_ack: 0,
        }
    }
}

fn main() {
    let args = Args::parse();
    if args.replicas == 0 || args.rate == 0 || args.duration_s <= 0.0 {
        eprintln!("cstore-fanout: --replicas, --rate and --duration-s must be positive");
        std::process::exit(2);
    }
    let server = if args.spawn {
        // The edge's bounds (docs/LIMITS.md) default to 1,024 replication sessions and 4,096
        // connections: room for every replica, and the writers' connections beside them.
        let room = (args.replicas + 1_024).to_string();
        let options = ServerOptions {
            extra_args: vec![
                "--max-replication-sessions".into(),
                room.clone(),
                "--max-connections".into(),
                room,
            ],
            ..ServerOptions::default()
        };
        match ServerProcess::start(options) {
            Ok(server) => Some(server),
            Err(e) => {
                eprintln!("cstore-fanout: cannot start a server: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let (url, pid) = match (&server, &args.url) {
        (Some(s), _) => (s.url(), s.pid()),
        (None, Some(url)) => (url.trim_end_matches('/').to_string(), args.server_pid),
        (None, None) => unreachable!("clap requires --url or --spawn"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    let code = runtime.block_on(run(&args, &url, pid));
    drop(runtime);
    drop(server);
    std::process::exit(code);
}

async fn run(args: &Args, url: &str, pid: Option<u32>) -> i32 {
    let ws_url = format!("{}/v1/replicate", url.replacen("http://", "ws://", 1));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.in_flight)
        .build()
        .expect("http client");
    let total = (args.rate as f64 * args.duration_s).ceil() as usize;
    let epoch = Instant::now();
    let sent: Stamps = Arc::new((0..total).map(|_| AtomicI64::new(0)).collect());
    let acked: Stamps = Arc::new((0..total).map(|_| AtomicI64::new(0)).collect());
    // Replica 0's arrival times, to compare with the writer's 201 after the run (the entry
    // usually arrives first, so the difference is only known afterwards).
    let arrived0: Stamps = Arc::new((0..total).map(|_| AtomicI64::new(0)).collect());
    let rss_before = rss_kib(pid, "VmRSS");

    // Connect every replica and let it catch up to the current log.
    println!(
        "cstore-fanout: {} replicas, {} writes/s for {:.1} s against {url}{}",
        args.replicas,
        args.rate,
        args.duration_s,
        pid.map(|p| format!(" (server pid {p})"))
            .unwrap_or_default()
    );
    let start_lsn = current_lsn(&http, url).await;
    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicU64::new(start_lsn));
    let mut tasks = Vec::with_capacity(args.replicas);
    let mut all_samples = Vec::with_capacity(args.replicas);
    let connect_started = Instant::now();
    for i in 0..args.replicas {
        let mut replica = ReplicaClient::new(
            1_000_000 + i as u64,
            ReplicaOptions {
                keep_log: false,
                keep_state: false,
                subscription: None,
            },
        );
        let samples = Arc::new(Mutex::new(Samples::new()));
        all_samples.push(Arc::clone(&samples));
        let (sent, acked) = (Arc::clone(&sent), Arc::clone(&acked));
        let arrived0 = (i == 0).then(|| Arc::clone(&arrived0));
        replica.observe(Box::new(move |entry: &LogEntry, arrived: Instant| {
            let Some(seq) = sequence(entry) else { return };
            let Some(sent_us) = sent.get(seq).map(|s| s.load(Ordering::Acquire)) else {
                return;
            };
            let arrived_us = arrived.duration_since(epoch).as_micros() as i64;
            if let Some(arrived0) = &arrived0 {
                arrived0[seq].store(arrived_us, Ordering::Release);
            }
            let mut s = samples.lock().expect("samples");
            if sent_us > 0 {
                let _ = s.from_send.record((arrived_us - sent_us).max(0) as u64);
            }
            let acked_us = acked[seq].load(Ordering::Acquire);
            if acked_us > 0 && arrived_us >= acked_us {
                let _ = s.from_ack.record((arrived_us - acked_us) as u64);
            } else {
                s.before_ack += 1;
                let _ = s.from_ack.record(0);
            }
        }));
        if let Err(e) = replica.connect(&ws_url, None).await {
            eprintln!("cstore-fanout: replica {i} cannot connect: {e}");
            return 1;
        }
        let (stop, target) = (Arc::clone(&stop), Arc::clone(&target));
        tasks.push(tokio::spawn(async move {
            let outcome = replica
                .run_until(Duration::from_secs(3600), |r| {
                    stop.load(Ordering::Acquire)
                        && r.replica().durable_lsn() >= Lsn(target.load(Ordering::Acquire))
                })
                .await;
            (outcome.map_err(|e| e.to_string()), replica.stats())
        }));
    }
    let connected_in = connect_started.elapsed();
    // Give every session time to say hello and stream what exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_kib(pid, "VmRSS");

    // The writer: one insert every 1/rate s, at most `in_flight` outstanding.
    let permits = Arc::new(Semaphore::new(args.in_flight));
    let errors = Arc::new(AtomicU64::new(0));
    let http_latency = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let write_started = Instant::now();
    let pad = "p".repeat(args.pad_bytes);
    let mut writers = Vec::with_capacity(total);
    for seq in 0..total {
        let at = write_started + Duration::from_secs_f64(seq as f64 / args.rate as f64);
        tokio::time::sleep_until(at.into()).await;
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("semaphore");
        let (http, sent, acked) = (http.clone(), Arc::clone(&sent), Arc::clone(&acked));
        let (errors, http_latency) = (Arc::clone(&errors), Arc::clone(&http_latency));
        let body = json!({"_id": format!("f{seq}"), "pad": pad});
        let url = format!("{url}/v1/c/fanout");
        writers.push(tokio::spawn(async move {
            let started = Instant::now();
            sent[seq].store(micros(epoch, started), Ordering::Release);
            let reply = http.post(&url).json(&body).send().await;
            let done = Instant::now();
            match reply {
                Ok(r) if r.status().as_u16() == 201 => {
                    acked[seq].store(micros(epoch, done), Ordering::Release);
                    let us = done.duration_since(started).as_micros() as u64;
                    let _ = http_latency.lock().expect("histogram").record(us);
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        }));
    }
    for writer in writers {
        let _ = writer.await;
    }
    let write_elapsed = write_started.elapsed();
    let last = current_lsn(&http, url).await;
    target.store(last, Ordering::Release);
    stop.store(true, Ordering::Release);
    let mut failed = 0;
    let mut caught_up = Duration::ZERO;
    let catch_up_started = Instant::now();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(60), task).await {
            Ok(Ok((Ok(()), _))) => {}
            Ok(Ok((Err(e), stats))) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("replica failed: {e} ({stats:?})");
                }
            }
            _ => failed += 1,
        }
        caught_up = catch_up_started.elapsed();
    }
    let rss_peak = rss_kib(pid, "VmHWM");

    // Per-replica p50 / p99, and every sample together.
    let mut merged_send = Histogram::<u64>::new(3).expect("histogram");
    let mut merged_ack = Histogram::<u64>::new(3).expect("histogram");
    let mut p99s = Histogram::<u64>::new(3).expect("histogram");
    let mut before_ack = 0u64;
    for samples in &all_samples {
        let s = samples.lock().expect("samples");
        merged_send.add(&s.from_send).expect("same bounds");
        merged_ack.add(&s.from_ack).expect("same bounds");
        if !s.from_send.is_empty() {
            let _ = p99s.record(s.from_send.value_at_quantile(0.99));
        }
        before_ack += s.before_ack;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    // Replica 0: arrival minus the writer's 201, signed (negative: the replica had it first).
    let mut signed: Vec<i64> = (0..total)
        .filter_map(|seq| {
            let (a, k) = (
                arrived0[seq].load(Ordering::Acquire),
                acked[seq].load(Ordering::Acquire),
            );
            (a > 0 && k > 0).then_some(a - k)
        })
        .collect();
    signed.sort_unstable();
    let signed_at = |q: f64| {
        signed
            .get(((signed.len() as f64 * q) as usize).min(signed.len().saturating_sub(1)))
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    let writes_ok = total as u64 - errors.load(Ordering::Relaxed);
    let http_latency = http_latency.lock().expect("histogram");
    println!();
    println!(
        "| replicas | writes/s (target → achieved) | samples | send→replica p50 / p99 / max (ms) | commit→replica p50 / p99 (ms) | replica p99s: median / worst (ms) | HTTP write p50 / p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} → {:.0} | {} | {:.2} / {:.2} / {:.2} | {:.3} / {:.3} | {:.2} / {:.2} | {:.2} / {:.2} |",
        args.replicas,
        args.rate,
        writes_ok as f64 / write_elapsed.as_secs_f64(),
        merged_send.len(),
        ms(merged_send.value_at_quantile(0.5)),
        ms(merged_send.value_at_quantile(0.99)),
        ms(merged_send.max()),
        ms(merged_ack.value_at_quantile(0.5)),
        ms(merged_ack.value_at_quantile(0.99)),
        ms(p99s.value_at_quantile(0.5)),
        ms(p99s.max()),
        ms(http_latency.value_at_quantile(0.5)),
        ms(http_latency.value_at_quantile(0.99)),
    );
    println!();
    println!(
        "arrived before the writer's 201: {:.1}% of samples (counted as 0 in commit→replica)",
        100.0 * before_ack as f64 / merged_ack.len().max(1) as f64
    );
    println!(
        "replica 0, arrival − writer's 201 (ms, negative = replica first): p1 {:.3}, p50 {:.3}, p99 {:.3}, max {:.3}",
        signed_at(0.01),
        signed_at(0.5),
        signed_at(0.99),
        signed_at(1.0)
    );
    println!(
        "connect {} replicas: {:.2} s; all caught up {:.2} s after the last write; write errors: {}; replicas failed: {failed}",
        args.replicas,
        connected_in.as_secs_f64(),
        caught_up.as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
    let mib = |kib: Option<u64>| {
        kib.map_or("n/a".to_string(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    println!(
        "server RSS: before replicas {}, with {} replicas connected {}, peak (VmHWM) {}",
        mib(rss_before),
        args.replicas,
        mib(rss_connected),
        mib(rss_peak)
    );
    let expected = writes_ok * args.replicas as u64;
    if failed > 0 || merged_send.len() < expected {
        eprintln!(
            "cstore-fanout: {} samples of {expected} expected, {failed} replicas failed",
            merged_send.len()
        );
        return 1;
    }
    0
}

/// The writer's sequence number of an entry (`_id` = `f{seq}`), if it is one of ours.
fn sequence(entry: &LogEntry) -> Option<usize> {
    match entry.txn.ops.first()? {
        Op::Insert { doc, .. } => doc.id().strip_prefix('f')?.parse().ok(),
        _ => None,
    }
}

fn micros(epoch: Instant, at: Instant) -> i64 {
    at.duration_since(epoch).as_micros() as i64
}

async fn current_lsn(http: &reqwest::Client, url: &str) -> u64 {
    let status: serde_json::Value = http
        .get(format!("{url}/v1/status"))
        .send()
        .await
        .expect("status answers")
        .json()
        .await
        .expect("status is JSON");
    status["committed_lsn"].as_u64().expect("committed_lsn")
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn rss_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
