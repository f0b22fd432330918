//! The closed-loop driver every system in the comparison goes through: N clients, each sending
//! one write, waiting for its acknowledgement, then sending the next, for a warm-up and then a
//! measured window. Only writes started inside the window count; their latencies go into one
//! HDR histogram per client, merged at the end.
//!
//! ```text
//!   t0 ──warm-up──► t1 ──────── measured window ────────► t2
//!   client ×N: write(n) ─► ack ─► record if started in [t1, t2) ─► next n (shared counter)
//! ```
//!
//! Closed loop means throughput ≤ clients ÷ latency (Little's law): a system that groups many
//! clients into one `fdatasync` wins, one that syncs per write cannot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::target::{Target, Writer, channel_insert, payload};
use crate::tally::Tally;
use crate::write_channel::WriteChannel;

/// Error messages kept per run.
const ERROR_SAMPLES_MAX: usize = 3;
/// Bound on one request, for every system alike.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One run's shape.
#[derive(Clone, Copy, Debug)]
pub struct WriteConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Time before the measured window (connections open, caches warm).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// What one run measured.
#[derive(Debug)]
pub struct WriteReport {
    /// The run's shape.
    pub config: WriteConfig,
    /// Writes started and acknowledged inside the window.
    pub ops: u64,
    /// Failed writes inside the window.
    pub errors: u64,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// Latency of the counted writes, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl WriteReport {
    /// Acknowledged writes per second of the window.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.config.duration.as_secs_f64()
    }

    /// A latency quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// The figures of the table.
    pub fn summary(&self) -> WriteSummary {
        WriteSummary {
            ops_per_s: self.ops_per_s(),
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: Some(self.quantile_ms(0.999)),
            errors: self.errors,
        }
    }
}

/// A write run's figures, from this driver or from another generator (redis-benchmark).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WriteSummary {
    /// Acknowledged writes per second.
    pub ops_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// 99.9th percentile latency, ms, when the generator reports it.
    pub p999_ms: Option<f64>,
    /// Failed writes.
    pub errors: u64,
}

/// One closed-loop client's request: request `n` (numbers come from a counter shared by the
/// run's clients), answered `Ok` when the system acknowledged it.
pub trait Request: Send + 'static {
    /// Sends request `n` and waits for its answer.
    fn send(&mut self, n: u64) -> impl Future<Output = Result<(), String>> + Send;
}

impl Request for Writer {
    fn send(&mut self, n: u64) -> impl Future<Output = Result<(), String>> + Send {
        self.write(n)
    }
}

/// The HTTP client every run shares: a keep-alive pool of `clients` connections per host.
pub fn http_client(clients: usize, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// Drives `target` with `config.clients` closed-loop clients and reports the measured window.
pub async fn run_writes(target: &Target, config: WriteConfig) -> Result<WriteReport, String> {
    assert!(config.clients > 0, "at least one client");
    let mut writers = Vec::with_capacity(config.clients);
    for _ in 0..config.clients {
        writers.push(target.writer().await?);
    }
    run_closed_loop(writers, config).await
}

/// Drives one closed-loop client per element of `clients` (`config.clients` is ignored) for the
/// warm-up and the window of `config`; counts the requests started inside the window.
pub async fn run_closed_loop<R: Request>(
    clients: Vec<R>,
    config: WriteConfig,
) -> Result<WriteReport, String> {
    assert!(!clients.is_empty(), "at least one client");
    let config = WriteConfig {
        clients: clients.len(),
        ..config
    };
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let window_start = started + config.warmup;
    let window_end = window_start + config.duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut tally = Tally::new(ERROR_SAMPLES_MAX);
                loop {
                    let sent = Instant::now();
                    if sent >= window_end {
                        break;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, client.send(n)).await
                    {
                        Ok(outcome) => outcome,
                        Err(_) => Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
                    };
                    if sent >= window_start {
                        tally.record(sent, outcome);
                    }
                }
                tally
            })
        })
        .collect();
    report(config, tasks).await
}

/// Drives one task per write channel in `channels`, each keeping `window` one-insert
/// transactions in flight (sent without waiting for answers; the server answers in order), for
/// the warm-up and the window of `config`. Counts the writes sent inside the window; each one's
/// latency runs from its send to its answer.
pub async fn run_pipelined(
    channels: Vec<WriteChannel>,
    window: usize,
    config: WriteConfig,
) -> Result<WriteReport, String> {
    assert!(!channels.is_empty(), "at least one channel");
    assert!(window > 0, "at least one write in flight");
    let config = WriteConfig {
        clients: channels.len(),
        ..config
    };
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let window_start = started + config.warmup;
    let window_end = window_start + config.duration;
    let tasks: Vec<_> = channels
        .into_iter()
        .map(|mut channel| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut tally = Tally::new(ERROR_SAMPLES_MAX);
                let insert = || {
                    (Instant::now() < window_end)
                        .then(|| channel_insert(&payload(next.fetch_add(1, Ordering::Relaxed))))
                };
                channel
                    .pipeline(window, insert, |sent, outcome| {
                        if sent >= window_start {
                            tally.record(sent, outcome);
                        }
                    })
                    .await;
                tally
            })
        })
        .collect();
    report(config, tasks).await
}

/// Merges the clients' tallies into the run's report.
async fn report(
    config: WriteConfig,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
) -> Result<WriteReport, String> {
    let mut run = Tally::new(ERROR_SAMPLES_MAX);
    for task in tasks {
        let tally = task
            .await
            .map_err(|e| format!("a client task failed: {e}"))?;
        run.merge(tally);
    }
    Ok(WriteReport {
        config,
        ops: run.ok,
        errors: run.errors,
        error_samples: run.error_samples,
        latency_us: run.latency_us,
    })
}
