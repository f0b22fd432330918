//! `cstore-fanout`: propagation from a write to many replicas, and the server's memory.
//!
//! N WebSocket replicas ([`ReplicaClient`], protocol only: no local store or state) follow a
//! server, from this process or split over `--processes` worker processes (each this binary
//! with `--worker`, its own tokio runtime, verifying its replicas' hash chains); a writer in
//! this process inserts documents at a fixed rate, each carrying the time it was sent, and
//! every replica records, for every entry, the time from the writer *sending* the insert to
//! the entry arriving (verified, persisted) at the replica. In-process, it also records the
//! time from the writer *receiving* its `201` (the leader committed durably) to the arrival,
//! which is the commit → replica latency; it is negative when the replica had the entry before
//! the writer had its answer (the leader streams an entry as soon as it is durable, before
//! answering). The system's monotonic clock (`CLOCK_MONOTONIC`, one for every process) times
//! both ends, so there is no skew. The server's RSS is read from `/proc/<pid>/status` before
//! the replicas connect, once they are all streaming, and as the peak (`VmHWM`); its CPU time
//! (and the replica processes') from `/proc/<pid>/stat` over the writing.
//!
//! ```text
//!  cstore-fanout --spawn --replicas 1000 --rate 200 --duration-s 10     # fan-out
//!  cstore-fanout --spawn --replicas 1 --rate 10000 --duration-s 10      # commit→replica latency
//!  cstore-fanout --spawn --replicas 10000 --rate 10 --processes 4       # replicas in 4 processes
//! ```
//!
//! A worker speaks on its stdin and stdout: it prints `ready` once its replicas are connected,
//! reads `stop <lsn>` once the writing is over, and prints its samples (`send <µs> <count>`
//! lines of its histogram, a `p99 <µs>` line per replica), `failed <n>` and `end` once every
//! replica holds that LSN.
//!
//! Build with `cargo build --release -p cstore-tests --bin cstore-fanout` (and `cstore` too:
//! `--spawn` runs the `cstore` of the same profile). Clients and server are separate processes.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::process::Stdio;

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use cstore_core::{LogEntry, Lsn, Op};
use cstore_tests::replica_client::{ReplicaClient, ReplicaOptions, ReplicaStats};
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
    /// Split the replicas over this many worker processes (0: run them in this process).
    #[arg(long, default_value_t = 0)]
    processes: usize,
    /// Run as a worker of another cstore-fanout (see the module docs).
    #[arg(long, hide = true, requires = "url")]
    worker: bool,
    /// A worker's first replica id.
    #[arg(long, hide = true, default_value_t = 1_000_000)]
    id_base: u64,
}

/// [`mono_us`] times; 0 means "not yet".
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
    if args.worker {
        let url = args.url.clone().expect("clap requires --url");
        let runtime = runtime();
        let code = runtime.block_on(worker(&args, &url));
        drop(runtime);
        std::process::exit(code);
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
    let runtime = runtime();
    let code = runtime.block_on(run(&args, &url, pid));
    drop(runtime);
    drop(server);
    std::process::exit(code);
}

/// Replicas connected in this process: their tasks and their samples.
struct Local {
    tasks: Vec<JoinHandle<(Result<(), String>, ReplicaStats)>>,
    samples: Vec<Arc<Mutex<Samples>>>,
}

/// Connects `count` replicas (ids from `id_base`) to `ws_url`; each runs until `stop` is set
/// and it holds LSN `target`. `acked` (the writer's 201 times) adds the commit → replica
/// samples, `arrived0` keeps the first replica's arrival times.
async fn connect_replicas(
    ws_url: &str,
    count: usize,
    id_base: u64,
    acked: Option<Stamps>,
    arrived0: Option<Stamps>,
    stop: &Arc<AtomicBool>,
    target: &Arc<AtomicU64>,
) -> Result<Local, String> {
    let mut local = Local {
        tasks: Vec::with_capacity(count),
        samples: Vec::with_capacity(count),
    };
    for i in 0..count {
        let mut replica = ReplicaClient::new(
            id_base + i as u64,
            ReplicaOptions {
                keep_log: false,
                keep_state: false,
                subscription: None,
            },
        );
        let samples = Arc::new(Mutex::new(Samples::new()));
        local.samples.push(Arc::clone(&samples));
        let acked = acked.clone();
        let arrived0 = arrived0.clone().filter(|_| i == 0);
        replica.observe(Box::new(move |entry: &LogEntry, arrived: Instant| {
            let Some((seq, sent_us)) = stamp(entry) else {
                return;
            };
            let arrived_us = mono_us() - Instant::now().duration_since(arrived).as_micros() as i64;
            if let Some(slot) = arrived0.as_ref().and_then(|a| a.get(seq)) {
                slot.store(arrived_us, Ordering::Release);
            }
            let mut s = samples.lock().expect("samples");
            let _ = s.from_send.record((arrived_us - sent_us).max(0) as u64);
            if let Some(acked_us) = acked.as_ref().and_then(|a| a.get(seq)) {
                let acked_us = acked_us.load(Ordering::Acquire);
                if acked_us > 0 && arrived_us >= acked_us {
                    let _ = s.from_ack.record((arrived_us - acked_us) as u64);
                } else {
                    s.before_ack += 1;
                    let _ = s.from_ack.record(0);
                }
            }
        }));
        replica
            .connect(ws_url, None)
            .await
            .map_err(|e| format!("replica {i} cannot connect: {e}"))?;
        let (stop, target) = (Arc::clone(stop), Arc::clone(target));
        local.tasks.push(tokio::spawn(async move {
            let outcome = replica
                .run_until(Duration::from_secs(3600), |r| {
                    stop.load(Ordering::Acquire)
                        && r.replica().durable_lsn() >= Lsn(target.load(Ordering::Acquire))
                })
                .await;
            (outcome.map_err(|e| e.to_string()), replica.stats())
        }));
    }
    Ok(local)
}

impl Local {
    /// Waits for every replica to finish; returns how many failed, and how many acks they
    /// sent in all.
    async fn finish(self) -> (usize, u64) {
        let mut failed = 0;
        let mut acks = 0;
        for task in self.tasks {
            match tokio::time::timeout(Duration::from_secs(60), task).await {
                Ok(Ok((Ok(()), stats))) => acks += stats.acks_sent,
                Ok(Ok((Err(e), stats))) => {
                    acks += stats.acks_sent;
                    failed += 1;
                    if failed <= 3 {
                        eprintln!("replica failed: {e} ({stats:?})");
                    }
                }
                _ => failed += 1,
            }
        }
        (failed, acks)
    }
}

/// What every replica measured, merged.
struct Merged {
    /// Every replica's samples together.
    all: Samples,
    /// Each replica's p99 of send → replica.
    p99s: Histogram<u64>,
    failed: usize,
    /// `Ack` frames the replicas sent, from connect to the end.
    acks: u64,
}

impl Merged {
    fn new() -> Merged {
        Merged {
            all: Samples::new(),
            p99s: Histogram::new(3).expect("histogram"),
            failed: 0,
            acks: 0,
        }
    }

    fn add_local(&mut self, samples: &[Arc<Mutex<Samples>>]) {
        for samples in samples {
            let s = samples.lock().expect("samples");
            self.all.from_send.add(&s.from_send).expect("same bounds");
            self.all.from_ack.add(&s.from_ack).expect("same bounds");
            if !s.from_send.is_empty() {
                let _ = self.p99s.record(s.from_send.value_at_quantile(0.99));
            }
            self.all.before_ack += s.before_ack;
        }
    }

    /// Adds one line of a worker's report; false for a line it does not know.
    fn add_line(&mut self, line: &str) -> bool {
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        match (line.split_whitespace().next(), fields.as_slice()) {
            (Some("send"), [value, count]) => {
                let _ = self.all.from_send.record_n(*value, *count);
            }
            (Some("p99"), [value]) => {
                let _ = self.p99s.record(*value);
            }
            (Some("failed"), [n]) => self.failed += *n as usize,
            (Some("acks"), [n]) => self.acks += *n,
            _ => return false,
        }
        true
    }
}

/// A worker: connects its replicas, says `ready`, waits for `stop <lsn>`, reports.
async fn worker(args: &Args, url: &str) -> i32 {
    let ws_url = format!("{}/v1/replicate", url.replacen("http://", "ws://", 1));
    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicU64::new(0));
    let local = match connect_replicas(
        &ws_url,
        args.replicas,
        args.id_base,
        None,
        None,
        &stop,
        &target,
    )
    .await
    {
        Ok(local) => local,
        Err(e) => {
            eprintln!("cstore-fanout worker: {e}");
            return 1;
        }
    };
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let lsn = loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(lsn) = line
                    .strip_prefix("stop ")
                    .and_then(|n| n.trim().parse().ok())
                {
                    break lsn;
                }
            }
            // The parent is gone: nothing to report to.
            Ok(None) | Err(_) => return 1,
        }
    };
    target.store(lsn, Ordering::Release);
    stop.store(true, Ordering::Release);
    let samples = local.samples.clone();
    let (failed, acks) = local.finish().await;
    let mut merged = Merged::new();
    merged.add_local(&samples);
    let mut out = String::new();
    for v in merged.all.from_send.iter_recorded() {
        out.push_str(&format!(
            "send {} {}\n",
            v.value_iterated_to(),
            v.count_at_value()
        ));
    }
    for v in merged.p99s.iter_recorded() {
        for _ in 0..v.count_at_value() {
            out.push_str(&format!("p99 {}\n", v.value_iterated_to()));
        }
    }
    out.push_str(&format!("failed {failed}\nacks {acks}\nend\n"));
    print!("{out}");
    0
}

/// Worker processes, stopped by their PIDs when dropped.
struct Workers {
    children: Vec<(Child, Lines<BufReader<ChildStdout>>)>,
}

impl Workers {
    /// Starts `processes` workers sharing `replicas` between them and waits until each said
    /// `ready`.
    async fn start(url: &str, replicas: usize, processes: usize) -> Result<Workers, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let mut workers = Workers {
            children: Vec::with_capacity(processes),
        };
        let mut base = 1_000_000;
        for k in 0..processes {
            let count = replicas / processes + usize::from(k < replicas % processes);
            let mut child = Command::new(&exe)
                .args(["--worker", "--url", url])
                .args(["--replicas", &count.to_string()])
                .args(["--id-base", &base.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("starting worker {k}: {e}"))?;
            base += count as u64;
            let stdout = child.stdout.take().expect("piped");
            workers
                .children
                .push((child, BufReader::new(stdout).lines()));
        }
        for (k, (_, lines)) in workers.children.iter_mut().enumerate() {
            match lines.next_line().await {
                Ok(Some(line)) if line == "ready" => {}
                other => return Err(format!("worker {k} did not get ready: {other:?}")),
            }
        }
        Ok(workers)
    }

    fn pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .filter_map(|(child, _)| child.id())
            .collect()
    }

    /// Tells every worker the last LSN and merges their reports into `merged`.
    async fn finish(mut self, lsn: u64, merged: &mut Merged) -> Result<(), String> {
        for (k, (child, _)) in self.children.iter_mut().enumerate() {
            let stdin = child.stdin.as_mut().expect("piped");
            stdin
                .write_all(format!("stop {lsn}\n").as_bytes())
                .await
                .map_err(|e| format!("telling worker {k} to stop: {e}"))?;
        }
        for (k, (child, lines)) in self.children.iter_mut().enumerate() {
            loop {
                match tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await {
                    Ok(Ok(Some(line))) if line == "end" => break,
                    Ok(Ok(Some(line))) => {
                        if !merged.add_line(&line) {
                            eprintln!("worker {k}: {line}");
                        }
                    }
                    other => return Err(format!("worker {k} ended without a report: {other:?}")),
                }
            }
            let _ = child.wait().await;
        }
        Ok(())
    }
}

async fn run(args: &Args, url: &str, pid: Option<u32>) -> i32 {
    let ws_url = format!("{}/v1/replicate", url.replacen("http://", "ws://", 1));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.in_flight)
        .build()
        .expect("http client");
    let total = (args.rate as f64 * args.duration_s).ceil() as usize;
    let acked: Stamps = Arc::new((0..total).map(|_| AtomicI64::new(0)).collect());
    // Replica 0's arrival times, to compare with the writer's 201 after the run (the entry
    // usually arrives first, so the difference is only known afterwards).
    let arrived0: Stamps = Arc::new((0..total).map(|_| AtomicI64::new(0)).collect());
    let rss_before = rss_kib(pid, "VmRSS");

    // Connect every replica and let it catch up to the current log.
    println!(
        "cstore-fanout: {} replicas{}, {} writes/s for {:.1} s against {url}{}",
        args.replicas,
        match args.processes {
            0 => " in this process".to_string(),
            n => format!(" in {n} worker processes"),
        },
        args.rate,
        args.duration_s,
        pid.map(|p| format!(" (server pid {p})"))
            .unwrap_or_default()
    );
    let start_lsn = current_lsn(&http, url).await;
    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicU64::new(start_lsn));
    let connect_started = Instant::now();
    let (local, workers) = if args.processes == 0 {
        let connected = connect_replicas(
            &ws_url,
            args.replicas,
            1_000_000,
            Some(Arc::clone(&acked)),
            Some(Arc::clone(&arrived0)),
            &stop,
            &target,
        )
        .await;
        match connected {
            Ok(local) => (Some(local), None),
            Err(e) => {
                eprintln!("cstore-fanout: {e}");
                return 1;
            }
        }
    } else {
        match Workers::start(url, args.replicas, args.processes).await {
            Ok(workers) => (None, Some(workers)),
            Err(e) => {
                eprintln!("cstore-fanout: {e}");
                return 1;
            }
        }
    };
    let connected_in = connect_started.elapsed();
    // Give every session time to say hello and stream what exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_kib(pid, "VmRSS");
    let worker_pids = workers.as_ref().map(Workers::pids).unwrap_or_default();
    let cpu_before = (
        cpu_ticks(pid),
        cpu_ticks_all(&worker_pids),
        cpu_ticks(Some(std::process::id())),
    );

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
        let (http, acked) = (http.clone(), Arc::clone(&acked));
        let (errors, http_latency) = (Arc::clone(&errors), Arc::clone(&http_latency));
        let pad = pad.clone();
        let url = format!("{url}/v1/c/fanout");
        writers.push(tokio::spawn(async move {
            let started = Instant::now();
            // The send time travels in the document, for replicas in other processes.
            let body = json!({"_id": format!("f{seq}"), "t": mono_us(), "pad": pad});
            let reply = http.post(&url).json(&body).send().await;
            let done = Instant::now();
            match reply {
                Ok(r) if r.status().as_u16() == 201 => {
                    let ack_us = mono_us() - done.elapsed().as_micros() as i64;
                    acked[seq].store(ack_us, Ordering::Release);
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
    let cpu_after = (
        cpu_ticks(pid),
        cpu_ticks_all(&worker_pids),
        cpu_ticks(Some(std::process::id())),
    );
    let last = current_lsn(&http, url).await;
    target.store(last, Ordering::Release);
    stop.store(true, Ordering::Release);
    let catch_up_started = Instant::now();
    let mut merged = Merged::new();
    if let Some(local) = local {
        let samples = local.samples.clone();
        (merged.failed, merged.acks) = local.finish().await;
        merged.add_local(&samples);
    }
    if let Some(workers) = workers
        && let Err(e) = workers.finish(last, &mut merged).await
    {
        eprintln!("cstore-fanout: {e}");
        return 1;
    }
    let caught_up = catch_up_started.elapsed();
    let rss_peak = rss_kib(pid, "VmHWM");

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
    let in_process = args.processes == 0;
    let commit_cell = if in_process {
        format!(
            "{:.3} / {:.3}",
            ms(merged.all.from_ack.value_at_quantile(0.5)),
            ms(merged.all.from_ack.value_at_quantile(0.99))
        )
    } else {
        "– (replicas in other processes)".to_string()
    };
    println!();
    println!(
        "| replicas | writes/s (target → achieved) | samples | send→replica p50 / p99 / max (ms) | commit→replica p50 / p99 (ms) | replica p99s: median / worst (ms) | HTTP write p50 / p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {}{} | {} → {:.0} | {} | {:.2} / {:.2} / {:.2} | {commit_cell} | {:.2} / {:.2} | {:.2} / {:.2} |",
        args.replicas,
        if in_process {
            String::new()
        } else {
            format!(" in {} processes", args.processes)
        },
        args.rate,
        writes_ok as f64 / write_elapsed.as_secs_f64(),
        merged.all.from_send.len(),
        ms(merged.all.from_send.value_at_quantile(0.5)),
        ms(merged.all.from_send.value_at_quantile(0.99)),
        ms(merged.all.from_send.max()),
        ms(merged.p99s.value_at_quantile(0.5)),
        ms(merged.p99s.max()),
        ms(http_latency.value_at_quantile(0.5)),
        ms(http_latency.value_at_quantile(0.99)),
    );
    println!();
    if in_process {
        println!(
            "arrived before the writer's 201: {:.1}% of samples (counted as 0 in commit→replica)",
            100.0 * merged.all.before_ack as f64 / merged.all.from_ack.len().max(1) as f64
        );
        println!(
            "replica 0, arrival − writer's 201 (ms, negative = replica first): p1 {:.3}, p50 {:.3}, p99 {:.3}, max {:.3}",
            signed_at(0.01),
            signed_at(0.5),
            signed_at(0.99),
            signed_at(1.0)
        );
    }
    println!(
        "connect {} replicas: {:.2} s; all caught up {:.2} s after the last write; write errors: {}; replicas failed: {}",
        args.replicas,
        connected_in.as_secs_f64(),
        caught_up.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        merged.failed
    );
    println!(
        "acks sent by the replicas, connect to end: {} ({:.2} per replica per second of writing)",
        merged.acks,
        merged.acks as f64 / args.replicas.max(1) as f64 / args.duration_s
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
    let cores = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) => format!(
            "{:.2}",
            (a - b) as f64 / clock_ticks_per_s() / write_elapsed.as_secs_f64()
        ),
        _ => "n/a".to_string(),
    };
    println!(
        "CPU while writing, in cores: server {}, replica processes {}, this process (writer{}) {}",
        cores(cpu_before.0, cpu_after.0),
        if in_process {
            "–".to_string()
        } else {
            cores(cpu_before.1, cpu_after.1)
        },
        if in_process { " and replicas" } else { "" },
        cores(cpu_before.2, cpu_after.2)
    );
    let expected = writes_ok * args.replicas as u64;
    if merged.failed > 0 || merged.all.from_send.len() < expected {
        eprintln!(
            "cstore-fanout: {} samples of {expected} expected, {} replicas failed",
            merged.all.from_send.len(),
            merged.failed
        );
        return 1;
    }
    0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds")
}

/// The system's monotonic clock in microseconds: the same clock in every process.
fn mono_us() -> i64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC reads");
    now.tv_sec() * 1_000_000 + now.tv_nsec() / 1_000
}

/// User + system CPU time of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// [`cpu_ticks`] summed over `pids` (`None` when there are none or one cannot be read).
fn cpu_ticks_all(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| cpu_ticks(Some(*pid))).sum()
}

/// Clock ticks per second of `/proc/<pid>/stat` (`_SC_CLK_TCK`, 100 on Linux).
fn clock_ticks_per_s() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The writer's sequence number of an entry (`_id` = `f{seq}`) and the time its insert was
/// sent (`t`, [`mono_us`]), if it is one of ours.
fn stamp(entry: &LogEntry) -> Option<(usize, i64)> {
    let Op::Insert { doc, .. } = entry.txn.ops.first()? else {
        return None;
    };
    let seq = doc.id().strip_prefix('f')?.parse().ok()?;
    let sent: serde_json::Value = serde_json::from_str(doc.as_str()).ok()?;
    Some((seq, sent["t"].as_i64()?))
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
