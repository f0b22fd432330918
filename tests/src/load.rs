//! The load generator behind `cstore-load`: N concurrent clients over keep-alive HTTP/1.1
//! connections, each inserting small realistic documents one per request (`insert`) or K per
//! `/v1/txn` (`txn`), for a duration or a document count. Latencies go into per-client HDR
//! histograms, merged at the end into one table row.
//!
//! ```text
//!   clients ×N ──► claim work (count mode: fetch_add on a shared counter; duration: deadline)
//!        │          build body ─► POST ─► await full body ─► record µs ─► loop
//!        └──────────────────────────────────────────────► merge histograms ─► Report
//! ```
//!
//! It measures a running server from outside, so it shares nothing with the server but the
//! HTTP contract. The numbers include the client's own cost: on a small machine the client
//! competes with the server for CPU, which the report's header says.

use crate::peers::target::error_chain;
use crate::tally::Tally;
use crate::write_channel::WriteChannel;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

/// Error messages kept as samples.
const ERROR_SAMPLES_MAX: usize = 5;

/// What each request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One document per `POST /v1/c/{collection}`.
    Insert,
    /// `batch` inserts per `POST /v1/txn`.
    Txn,
    /// One insert per transaction over the write channel (`GET /v1/write`, one WebSocket per
    /// client), with up to `window` transactions in flight per client.
    Channel,
}

impl Mode {
    /// The mode's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Insert => "insert",
            Mode::Txn => "txn",
            Mode::Channel => "channel",
        }
    }
}

/// When the run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// Stop starting requests after this long.
    Duration(Duration),
    /// Stop after this many documents were sent.
    Documents(u64),
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The server's base URL.
    pub url: String,
    /// Bearer token, for servers started with `--auth-secret`.
    pub token: Option<String>,
    /// The collection written to.
    pub collection: String,
    /// Request shape.
    pub mode: Mode,
    /// Concurrent clients (each one keep-alive connection).
    pub clients: usize,
    /// Inserts per transaction in `txn` mode.
    pub batch: usize,
    /// Transactions in flight per client in `channel` mode (1: each waits for its answer,
    /// like an HTTP client).
    pub window: usize,
    /// When to stop.
    pub limit: Limit,
    /// Create an index on `city` before the run.
    pub index: bool,
    /// Watch the server's checkpoints and report the writes that overlapped one apart.
    pub split_checkpoints: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    /// The run's parameters.
    pub config: LoadConfig,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Successful requests.
    pub requests_ok: u64,
    /// Documents in successful requests.
    pub documents_ok: u64,
    /// Failed requests (non-2xx or no answer).
    pub errors: u64,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// Latency of successful requests, in microseconds.
    pub latency_us: Histogram<u64>,
    /// With `split_checkpoints`: the requests that overlapped a checkpoint, the others, and
    /// the checkpoints seen.
    pub checkpoints: Option<CheckpointSplit>,
}

/// The requests of a run split by whether they overlapped one of the server's checkpoints.
#[derive(Debug)]
pub struct CheckpointSplit {
    /// Requests sent or answered while a checkpoint ran.
    pub during: Tally,
    /// The other requests.
    pub outside: Tally,
    /// Each checkpoint seen: when it began and ended, from the run's start.
    pub seen: Vec<(Duration, Option<Duration>)>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// Setting up the collection or the index failed.
    #[error("setup request failed: {0}")]
    Setup(String),
}

const CITIES: [&str; 16] = [
    "Lyon", "Oslo", "Porto", "Kyoto", "Lima", "Accra", "Perth", "Quito", "Riga", "Turin", "Dakar",
    "Hanoi", "Bern", "Cork", "Split", "Izmir",
];

/// A document of about 150-200 bytes, varied by `n` (`city` is what `--index` covers), as
/// serde_json writes it (keys in order, no spaces; the tests hold it to the `json!` tree
/// `sample_doc`), written straight into `out`: the load generator shares the cores with the
/// server it measures, and building and serializing a tree per document cost it about as much
/// CPU as the server spent on the documents (a `perf` profile of `--mode txn`, 2026-12-07).
pub fn write_sample_doc(n: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    let city = CITIES[usize::try_from(n % 16).expect("below 16")];
    let score = (n * 7919 % 1000) as f64 / 10.0;
    let active = !n.is_multiple_of(3);
    write!(
        out,
        r#"{{"active":{active},"age":{},"city":"{city}","#,
        18 + n % 60
    )
    .expect("a Vec");
    out.extend_from_slice(
        br#""note":"lorem ipsum dolor sit amet, consectetur adipiscing elit","score":"#,
    );
    serde_json::to_writer(&mut *out, &score).expect("a float serializes");
    write!(
        out,
        r#","tags":["t{}","t{}"],"user":"user-{n:08}"}}"#,
        n % 5,
        n % 11
    )
    .expect("a Vec");
}

/// The body of one request or channel message: a document (`insert`), or a transaction of
/// `count` inserts from document `first` into `collection` (`txn`, and `channel` with one).
/// Written as serde_json writes the same `json!` tree.
pub fn write_body(mode: Mode, collection: &str, first: u64, count: u64, out: &mut Vec<u8>) {
    out.clear();
    match mode {
        Mode::Insert => write_sample_doc(first, out),
        Mode::Txn | Mode::Channel => {
            let collection = serde_json::to_string(collection).expect("a string serializes");
            out.extend_from_slice(br#"{"ops":["#);
            for n in first..first + count {
                if n > first {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"collection":"#);
                out.extend_from_slice(collection.as_bytes());
                out.extend_from_slice(br#","doc":"#);
                write_sample_doc(n, out);
                out.extend_from_slice(br#","op":"insert"}"#);
            }
            out.extend_from_slice(b"]}");
        }
    }
}

/// Runs the load and returns what it measured.
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    assert!(config.clients > 0, "at least one client");
    assert!(config.batch > 0, "at least one document per batch");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.clients)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(LoadError::Client)?;
    if config.index {
        create_index(&http, &config).await?;
    }
    let watch = config
        .split_checkpoints
        .then(|| Arc::new(CheckpointWatch::default()));
    let shared = Arc::new(Shared {
        next_document: AtomicU64::new(0),
        http,
        config: config.clone(),
        watch: watch.clone(),
    });
    let poller = watch
        .as_ref()
        .map(|watch| tokio::spawn(Arc::clone(watch).poll(shared.http.clone(), config.url.clone())));
    let started = Instant::now();
    let deadline = match config.limit {
        Limit::Duration(d) => Some(started + d),
        Limit::Documents(_) => None,
    };
    let tasks: Vec<_> = (0..config.clients)
        .map(|_| match config.mode {
            Mode::Channel => tokio::spawn(channel_loop(Arc::clone(&shared), deadline)),
            Mode::Insert | Mode::Txn => tokio::spawn(client_loop(Arc::clone(&shared), deadline)),
        })
        .collect();
    let mut run = Tallies::new(watch.is_some());
    let mut documents_ok = 0;
    for task in tasks {
        let (tallies, documents) = task.await.expect("a client task does not panic");
        documents_ok += documents;
        run.merge(tallies);
    }
    if let Some(poller) = poller {
        poller.abort();
    }
    let checkpoints = run
        .split
        .zip(watch)
        .map(|((during, outside), watch)| CheckpointSplit {
            during,
            outside,
            seen: watch.seen(started),
        });
    let run = run.all;
    Ok(Report {
        config,
        elapsed: started.elapsed(),
        requests_ok: run.ok,
        documents_ok,
        errors: run.errors,
        error_samples: run.error_samples,
        latency_us: run.latency_us,
        checkpoints,
    })
}

struct Shared {
    next_document: AtomicU64,
    http: reqwest::Client,
    config: LoadConfig,
    watch: Option<Arc<CheckpointWatch>>,
}

/// A client's tallies: every request, and with a checkpoint watch, those that overlapped a
/// checkpoint and the others.
struct Tallies {
    all: Tally,
    split: Option<(Tally, Tally)>,
}

impl Tallies {
    fn new(watching: bool) -> Tallies {
        Tallies {
            all: Tally::new(ERROR_SAMPLES_MAX),
            split: watching.then(|| (Tally::new(ERROR_SAMPLES_MAX), Tally::new(ERROR_SAMPLES_MAX))),
        }
    }

    fn record(
        &mut self,
        watch: Option<&CheckpointWatch>,
        sent: Instant,
        outcome: Result<(), String>,
    ) {
        if let (Some((during, outside)), Some(watch)) = (self.split.as_mut(), watch) {
            let tally = if watch.overlaps(sent, Instant::now()) {
                during
            } else {
                outside
            };
            tally.record(sent, outcome.clone());
        }
        self.all.record(sent, outcome);
    }

    fn merge(&mut self, other: Tallies) {
        self.all.merge(other.all);
        if let (Some((during, outside)), Some((d, o))) = (self.split.as_mut(), other.split) {
            during.merge(d);
            outside.merge(o);
        }
    }
}

/// The server's checkpoints as its `cstore_checkpoint_running` gauge shows them, polled every
/// few milliseconds: a checkpoint's start and end are seen up to one poll late.
#[derive(Debug, Default)]
struct CheckpointWatch {
    /// Each checkpoint seen: its start and, once seen, its end.
    seen: std::sync::Mutex<Vec<(Instant, Option<Instant>)>>,
}

/// How often the watch polls `/metrics`.
const CHECKPOINT_POLL: Duration = Duration::from_millis(5);

impl CheckpointWatch {
    async fn poll(self: Arc<Self>, http: reqwest::Client, url: String) {
        let url = format!("{url}/metrics");
        loop {
            let running = match http.get(&url).send().await {
                Ok(response) => response.text().await.ok().and_then(|text| {
                    text.lines()
                        .find_map(|line| line.strip_prefix("cstore_checkpoint_running "))
                        .map(|value| value.trim() == "1")
                }),
                Err(_) => None,
            };
            if let Some(running) = running {
                let now = Instant::now();
                let mut seen = self.seen.lock().expect("poisoned");
                match seen.last_mut() {
                    Some((_, end @ None)) if !running => *end = Some(now),
                    Some((_, None)) => {}
                    _ if running => seen.push((now, None)),
                    _ => {}
                }
            }
            tokio::time::sleep(CHECKPOINT_POLL).await;
        }
    }

    /// Whether a checkpoint ran at some moment from `from` to `to`.
    fn overlaps(&self, from: Instant, to: Instant) -> bool {
        self.seen
            .lock()
            .expect("poisoned")
            .iter()
            .rev()
            .any(|(start, end)| *start <= to && end.is_none_or(|end| end >= from))
    }

    fn seen(&self, origin: Instant) -> Vec<(Duration, Option<Duration>)> {
        self.seen
            .lock()
            .expect("poisoned")
            .iter()
            .map(|(start, end)| {
                (
                    start.saturating_duration_since(origin),
                    end.map(|end| end.saturating_duration_since(origin)),
                )
            })
            .collect()
    }
}

/// One client: its tally and the documents its successful requests carried.
async fn client_loop(shared: Arc<Shared>, deadline: Option<Instant>) -> (Tallies, u64) {
    let config = &shared.config;
    let per_request = match config.mode {
        Mode::Insert | Mode::Channel => 1,
        Mode::Txn => config.batch as u64,
    };
    let url = match config.mode {
        Mode::Insert | Mode::Channel => format!("{}/v1/c/{}", config.url, config.collection),
        Mode::Txn => format!("{}/v1/txn", config.url),
    };
    let mut tally = Tallies::new(shared.watch.is_some());
    let mut documents_ok = 0;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let first = shared
            .next_document
            .fetch_add(per_request, Ordering::Relaxed);
        let count = match config.limit {
            Limit::Documents(total) if first >= total => break,
            Limit::Documents(total) => per_request.min(total - first),
            Limit::Duration(_) => per_request,
        };
        let mut body = Vec::new();
        write_body(config.mode, &config.collection, first, count, &mut body);
        let sent = Instant::now();
        let mut request = shared
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &config.token {
            request = request.bearer_auth(token);
        }
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(bytes) => Err(format!("{status}: {}", String::from_utf8_lossy(&bytes))),
                    Err(e) => Err(format!("reading the body: {e}")),
                }
            }
            Err(e) => Err(error_chain(&e)),
        };
        if outcome.is_ok() {
            documents_ok += count;
        }
        tally.record(shared.watch.as_deref(), sent, outcome);
    }
    (tally, documents_ok)
}

/// One client of the write channel: keeps up to `window` one-insert transactions in flight on
/// its WebSocket; each one's latency runs from its send to its answer.
async fn channel_loop(shared: Arc<Shared>, deadline: Option<Instant>) -> (Tallies, u64) {
    let config = &shared.config;
    let mut tally = Tallies::new(shared.watch.is_some());
    let addr = config
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let query = match &config.token {
        Some(token) => format!("?token={token}"),
        None => String::new(),
    };
    let mut channel = match WriteChannel::open(&addr, &query, None).await {
        Ok(channel) => channel,
        Err(error) => {
            let error = Err(format!("opening the channel: {error}"));
            tally.record(shared.watch.as_deref(), Instant::now(), error);
            return (tally, 0);
        }
    };
    let mut documents_ok = 0;
    let next = || {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = shared.next_document.fetch_add(1, Ordering::Relaxed);
        if matches!(config.limit, Limit::Documents(total) if n >= total) {
            return None;
        }
        let mut txn = Vec::new();
        write_body(Mode::Channel, &config.collection, n, 1, &mut txn);
        Some(String::from_utf8(txn).expect("JSON text is UTF-8"))
    };
    channel
        .pipeline(config.window, next, |sent, outcome| {
            if outcome.is_ok() {
                documents_ok += 1;
            }
            tally.record(shared.watch.as_deref(), sent, outcome);
        })
        .await;
    channel.close().await;
    (tally, documents_ok)
}

async fn create_index(http: &reqwest::Client, config: &LoadConfig) -> Result<(), LoadError> {
    let steps = [
        (
            json!({"op": "create_collection", "collection": config.collection}),
            "collection_exists",
        ),
        (
            json!({"op": "create_index", "collection": config.collection,
                   "index": {"name": "by_city", "fields": [{"path": "city"}]}}),
            "index_exists",
        ),
    ];
    for (op, tolerated) in steps {
        let mut request = http
            .post(format!("{}/v1/txn", config.url))
            .json(&json!({ "ops": [op] }));
        if let Some(token) = &config.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| LoadError::Setup(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| LoadError::Setup(e.to_string()))?;
        if !status.is_success() && !text.contains(tolerated) {
            return Err(LoadError::Setup(format!("{status}: {text}")));
        }
    }
    Ok(())
}

impl Report {
    /// The table's header line.
    pub fn header() -> String {
        format!(
            "{:<7} {:>7} {:>5} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "mode",
            "clients",
            "batch",
            "docs/s",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "max ms",
            "errors"
        )
    }

    /// The table's row for this run.
    pub fn row(&self) -> String {
        let seconds = self.elapsed.as_secs_f64().max(f64::EPSILON);
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let batch = match self.config.mode {
            Mode::Insert | Mode::Channel => 1,
            Mode::Txn => self.config.batch,
        };
        format!(
            "{:<7} {:>7} {:>5} {:>10.0} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
            self.config.mode.name(),
            self.config.clients,
            batch,
            self.documents_ok as f64 / seconds,
            self.requests_ok as f64 / seconds,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            self.latency_us.max() as f64 / 1000.0,
            self.errors
        )
    }
}

impl CheckpointSplit {
    /// Lines for the report: the two groups' latencies, and the checkpoints seen.
    pub fn lines(&self) -> Vec<String> {
        let group = |name: &str, tally: &Tally| {
            let ms = |q: f64| tally.latency_us.value_at_quantile(q) as f64 / 1000.0;
            format!(
                "{name:<26} {:>8} writes  p50 {:>7.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2} ms  errors {}",
                tally.ok,
                ms(0.5),
                ms(0.99),
                ms(0.999),
                tally.latency_us.max() as f64 / 1000.0,
                tally.errors
            )
        };
        let seen = self
            .seen
            .iter()
            .map(|(start, end)| match end {
                Some(end) => format!(
                    "{:.2} s for {} ms",
                    start.as_secs_f64(),
                    end.saturating_sub(*start).as_millis()
                ),
                None => format!("{:.2} s, still running at the end", start.as_secs_f64()),
            })
            .collect::<Vec<_>>();
        vec![
            group("during a checkpoint", &self.during),
            group("outside checkpoints", &self.outside),
            format!(
                "checkpoints seen (polled every {} ms): {}: {}",
                CHECKPOINT_POLL.as_millis(),
                seen.len(),
                seen.join(", ")
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::new_histogram;
    use serde_json::Value;

    /// The document [`write_sample_doc`] writes, as a tree.
    fn sample_doc(n: u64) -> Value {
        let city = CITIES[usize::try_from(n % 16).expect("below 16")];
        json!({
            "user": format!("user-{n:08}"),
            "city": city,
            "age": 18 + n % 60,
            "score": (n * 7919 % 1000) as f64 / 10.0,
            "active": !n.is_multiple_of(3),
            "tags": [format!("t{}", n % 5), format!("t{}", n % 11)],
            "note": "lorem ipsum dolor sit amet, consectetur adipiscing elit",
        })
    }

    #[test]
    fn bodies_are_what_serde_json_writes_of_the_tree() {
        let mut out = Vec::new();
        for n in (0..2_000).chain([u64::from(u32::MAX), 99_999_999, 123_456_789_012]) {
            write_body(Mode::Insert, "bench", n, 1, &mut out);
            assert_eq!(out, serde_json::to_vec(&sample_doc(n)).unwrap(), "{n}");
        }
        write_body(Mode::Txn, "be\"nch", 7, 3, &mut out);
        let tree = json!({
            "ops": (7..10)
                .map(|n| json!({"op": "insert", "collection": "be\"nch", "doc": sample_doc(n)}))
                .collect::<Vec<_>>()
        });
        assert_eq!(out, serde_json::to_vec(&tree).unwrap());
    }

    #[test]
    fn sample_documents_are_small_and_realistic() {
        for n in [0, 1, 99, 12_345, 99_999_999] {
            let size = serde_json::to_vec(&sample_doc(n)).unwrap().len();
            assert!((100..=220).contains(&size), "document {n} is {size} bytes");
        }
        assert_ne!(sample_doc(1)["city"], sample_doc(2)["city"]);
    }

    #[test]
    fn the_row_lines_up_with_the_header() {
        let mut latency_us = new_histogram();
        for v in [1_000, 2_000, 50_000] {
            latency_us.record(v).unwrap();
        }
        let report = Report {
            config: LoadConfig {
                url: "http://127.0.0.1:1".into(),
                token: None,
                collection: "load".into(),
                mode: Mode::Txn,
                clients: 64,
                batch: 100,
                window: 1,
                limit: Limit::Documents(300),
                index: false,
                split_checkpoints: false,
            },
            elapsed: Duration::from_secs(2),
            requests_ok: 3,
            documents_ok: 300,
            errors: 0,
            error_samples: Vec::new(),
            latency_us,
            checkpoints: None,
        };
        let row = report.row();
        assert_eq!(row.len(), Report::header().len(), "{row}");
        assert!(row.starts_with("txn"));
        assert!(row.contains(" 150 "), "300 documents in 2 s: {row}");
    }
}
