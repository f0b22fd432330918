//! `cstore-load`: measures a Collection Store server from outside, over its HTTP contract.
//!
//! Benchmarks are code: every throughput or latency figure quoted for the server comes from a
//! command like `cstore-load --spawn --mode txn --clients 64 --duration-s 10`, which anyone can
//! rerun. With `--spawn` it starts its own server (the `cstore` binary of the same build
//! profile, on a fresh temp data dir and a free loopback port) in a separate process and stops
//! it by its PID afterwards; with `--url` it measures a server that is already running.
//!
//! Build with `cargo build --release -p cstore-tests --bin cstore-load`.

use std::time::Duration;

use clap::Parser;

use cstore_tests::load::{Limit, LoadConfig, LoadError, Mode, Report, run};
use cstore_tests::{ServerOptions, ServerProcess};

/// Load generator for the Collection Store HTTP API.
#[derive(Debug, Parser)]
#[command(name = "cstore-load", version)]
struct Args {
    /// Base URL of a running server (loopback), such as http://127.0.0.1:7070.
    #[arg(long, conflicts_with = "spawn", required_unless_present = "spawn")]
    url: Option<String>,
    /// Start a server of the same build profile on a temp data dir for this run.
    #[arg(long)]
    spawn: bool,
    /// Request shape: one document per POST, a batch per /v1/txn, or one document per
    /// transaction over the write channel (GET /v1/write).
    #[arg(long, value_enum, default_value = "insert")]
    mode: Mode,
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Documents per transaction in txn mode.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Transactions in flight per client in channel mode (1: each waits for its answer).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Run for this many seconds (the default is 10 unless --count is given).
    #[arg(long, conflicts_with = "count")]
    duration_s: Option<f64>,
    /// Send this many documents, then stop.
    #[arg(long)]
    count: Option<u64>,
    /// Create an index on `city` before the run.
    #[arg(long)]
    index: bool,
    /// Before the measured run, load this many documents into the collection (8 clients,
    /// transactions of 100; not measured).
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// Watch the server's checkpoints (its /metrics, polled) and report the writes that
    /// overlapped one apart from the others.
    #[arg(long)]
    split_checkpoints: bool,
    /// The collection to write to.
    #[arg(long, default_value = "load")]
    collection: String,
    /// Bearer token for a server started with --auth-secret.
    #[arg(long, env = "CSTORE_TOKEN")]
    token: Option<String>,
    /// Extra arguments for the spawned server's `serve` command (repeatable).
    #[arg(long = "server-arg", requires = "spawn", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

fn main() {
    let args = Args::parse();
    if args.clients == 0 || args.batch == 0 || args.window == 0 {
        eprintln!("cstore-load: --clients, --batch and --window must be at least 1");
        std::process::exit(2);
    }
    let limit = match (args.count, args.duration_s) {
        (Some(count), _) => Limit::Documents(count),
        (None, Some(seconds)) if seconds > 0.0 => Limit::Duration(Duration::from_secs_f64(seconds)),
        (None, Some(_)) => {
            eprintln!("cstore-load: --duration-s must be positive");
            std::process::exit(2);
        }
        (None, None) => Limit::Duration(Duration::from_secs(10)),
    };
    // The spawned server lives outside the async runtime: its harness uses blocking calls.
    let mut server = if args.spawn {
        let options = ServerOptions {
            extra_args: args.server_args.clone(),
            ..ServerOptions::default()
        };
        match ServerProcess::start(options) {
            Ok(server) => Some(server),
            Err(e) => {
                eprintln!("cstore-load: cannot start a server: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let url = match (&server, &args.url) {
        (Some(server), _) => server.url(),
        (None, Some(url)) => url.trim_end_matches('/').to_string(),
        (None, None) => unreachable!("clap requires --url or --spawn"),
    };
    let config = LoadConfig {
        url: url.clone(),
        token: args.token.clone(),
        collection: args.collection.clone(),
        mode: args.mode,
        clients: args.clients,
        batch: args.batch,
        window: args.window,
        limit,
        index: args.index,
        split_checkpoints: args.split_checkpoints,
    };
    println!(
        "cstore-load: {} clients, mode {}{}, {} against {url}{}{}",
        config.clients,
        config.mode.name(),
        match config.mode {
            Mode::Channel => format!(" (window {})", config.window),
            Mode::Insert | Mode::Txn => String::new(),
        },
        match limit {
            Limit::Duration(d) => format!("{:.1} s", d.as_secs_f64()),
            Limit::Documents(n) => format!("{n} documents"),
        },
        if config.index { ", index on city" } else { "" },
        match &server {
            Some(s) => format!(
                " (spawned {}, pid {})",
                s.binary().display(),
                s.pid().unwrap_or(0)
            ),
            None => String::new(),
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    let preload = (args.preload > 0).then(|| LoadConfig {
        mode: Mode::Txn,
        clients: 8,
        batch: 100,
        window: 1,
        limit: Limit::Documents(args.preload),
        index: false,
        split_checkpoints: false,
        ..config.clone()
    });
    let result = runtime.block_on(async {
        if let Some(preload) = preload {
            let report = run(preload).await?;
            if report.errors > 0 {
                let samples = report.error_samples.join("; ");
                return Err(LoadError::Setup(format!("the preload failed: {samples}")));
            }
            println!(
                "preloaded {} documents in {:.1} s",
                report.documents_ok,
                report.elapsed.as_secs_f64()
            );
        }
        run(config).await
    });
    drop(runtime);
    let code = match result {
        Ok(report) => {
            println!("{}", Report::header());
            println!("{}", report.row());
            println!(
                "{} documents in {} requests over {:.2} s",
                report.documents_ok,
                report.requests_ok,
                report.elapsed.as_secs_f64()
            );
            for line in report.checkpoints.iter().flat_map(|split| split.lines()) {
                println!("{line}");
            }
            for sample in &report.error_samples {
                println!("error sample: {sample}");
            }
            i32::from(report.errors > 0)
        }
        Err(e) => {
            eprintln!("cstore-load: {e}");
            1
        }
    };
    if let Some(server) = server.as_mut() {
        if let Ok(reply) = server.client().get("/v1/status") {
            println!("server status: {}", reply.text());
        }
        match server.terminate(30_000) {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("cstore-load: the spawned server exited with {status}"),
            Err(e) => eprintln!("cstore-load: {e}"),
        }
    }
    // Exit skips destructors: drop the server (and its temp dir) first.
    drop(server);
    std::process::exit(code);
}
