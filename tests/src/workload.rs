//! Concurrent writers that remember exactly what was acknowledged, and the check that a
//! restarted server holds all of it.
//!
//! Durability tests need three sets: writes the server acknowledged (must survive), writes that
//! were sent but got no answer (may or may not survive), and writes never sent (must not
//! appear). Each writer thread sends writes with ids it chose itself, so every document found
//! after a restart can be traced to one attempt and compared byte for byte.
//!
//! ```text
//!  writer t: n = 0, 1, 2, ...   every 4th write is a txn inserting the same _id into
//!    │                           `pair_a` and `pair_b` (all or nothing); others insert into
//!    │                           `single`
//!    ├─ 2xx            → acked (with its lsn)
//!    ├─ 503 shutting_down, or no answer (connection refused/reset) → unacked; the writer stops
//!    └─ any other status → unexpected (the test fails on it); the writer stops
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::Client;

/// The collection of single-document inserts.
pub const SINGLE: &str = "single";
/// The two collections every pair transaction writes to.
pub const PAIR: [&str; 2] = ["pair_a", "pair_b"];

/// One write a writer attempted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The `_id` it used.
    pub id: String,
    /// True for a pair transaction, false for a single insert.
    pub pair: bool,
    /// The `payload` field it sent.
    pub payload: String,
}

/// What one writer saw.
#[derive(Clone, Debug, Default)]
pub struct WriterLog {
    /// Acknowledged writes with their LSN.
    pub acked: Vec<(Attempt, u64)>,
    /// Writes sent without a success answer: shutting down or no answer at all.
    pub unacked: Vec<Attempt>,
    /// Answers the contract does not allow here: (attempt, status, body).
    pub unexpected: Vec<(Attempt, u16, String)>,
    /// Answers `503 shutting_down`.
    pub shutting_down: usize,
    /// Transport failures (no answer).
    pub transport_errors: usize,
}

/// Writer threads that count their acknowledgements, until stopped or until the server goes
/// away; each returns what it saw (`T`).
#[derive(Debug)]
pub struct WriterThreads<T> {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    handles: Vec<JoinHandle<T>>,
}

/// A writer thread's body: it stops when the flag is set and counts each acknowledgement.
pub type WriterBody<T> = Box<dyn FnOnce(&AtomicBool, &AtomicU64) -> T + Send>;

impl<T: Send + 'static> WriterThreads<T> {
    /// Starts one thread per body, named `<name>-<index>`.
    pub fn spawn(name: &str, bodies: Vec<WriterBody<T>>) -> WriterThreads<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let handles = bodies
            .into_iter()
            .enumerate()
            .map(|(t, body)| {
                let stop = Arc::clone(&stop);
                let acked = Arc::clone(&acked);
                std::thread::Builder::new()
                    .name(format!("{name}-{t}"))
                    .spawn(move || body(&stop, &acked))
                    .expect("a writer thread starts")
            })
            .collect();
        WriterThreads {
            stop,
            acked,
            handles,
        }
    }

    /// Writes acknowledged so far, over all writers.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Waits until at least `count` writes are acknowledged; false if `timeout_ms` passed first
    /// or every writer stopped.
    pub fn wait_acked(&self, count: u64, timeout_ms: u64) -> bool {
        let started = Instant::now();
        while self.acked() < count {
            if started.elapsed() > Duration::from_millis(timeout_ms)
                || self.handles.iter().all(JoinHandle::is_finished)
            {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    /// Tells the writers to stop and collects what they saw.
    pub fn stop(self) -> Vec<T> {
        self.stop.store(true, Ordering::Release);
        self.join()
    }

    /// Collects what the writers saw once they stopped by themselves (the server went away).
    pub fn join(self) -> Vec<T> {
        self.handles
            .into_iter()
            .map(|h| h.join().expect("a writer thread does not panic"))
            .collect()
    }
}

/// Writer threads streaming inserts (and pair transactions) until stopped or until the server
/// goes away.
pub type WriterPool = WriterThreads<WriterLog>;

impl WriterPool {
    /// Starts `writers` threads against `client`; ids are `<prefix>-t<thread>-<n>`.
    pub fn start(client: &Client, writers: usize, prefix: &str) -> WriterPool {
        let bodies = (0..writers)
            .map(|t| {
                let client = client.clone();
                let prefix = format!("{prefix}-t{t}");
                Box::new(move |stop: &AtomicBool, acked: &AtomicU64| {
                    run_writer(&client, &prefix, stop, acked)
                }) as WriterBody<WriterLog>
            })
            .collect();
        WriterThreads::spawn("writer", bodies)
    }
}

fn run_writer(client: &Client, prefix: &str, stop: &AtomicBool, acked: &AtomicU64) -> WriterLog {
    let mut log = WriterLog::default();
    for n in 0u64.. {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let attempt = Attempt {
            id: format!("{prefix}-{n:06}"),
            pair: n % 4 == 3,
            payload: format!("{prefix}/{n}/{}", "x".repeat((n % 7) as usize * 10)),
        };
        let result = if attempt.pair {
            client.txn(
                PAIR.iter()
                    .map(|c| json!({"op": "insert", "collection": c, "doc": doc_of(&attempt)}))
                    .collect(),
            )
        } else {
            client.insert(SINGLE, &doc_of(&attempt))
        };
        match result {
            Ok(reply) if reply.is_success() => {
                let lsn = reply.json()["lsn"].as_u64().unwrap_or_else(|| {
                    panic!("a write reply carries a numeric lsn: {}", reply.text())
                });
                log.acked.push((attempt, lsn));
                acked.fetch_add(1, Ordering::AcqRel);
            }
            Ok(reply)
                if reply.status == 503
                    && reply.error_code().as_deref() == Some("shutting_down") =>
            {
                log.shutting_down += 1;
                log.unacked.push(attempt);
                break;
            }
            Ok(reply) => {
                log.unexpected.push((attempt, reply.status, reply.text()));
                break;
            }
            Err(_) => {
                log.transport_errors += 1;
                log.unacked.push(attempt);
                break;
            }
        }
    }
    log
}

/// The document a write sends.
pub fn doc_of(attempt: &Attempt) -> Value {
    json!({"_id": attempt.id, "payload": attempt.payload, "pair": attempt.pair})
}

/// What a restarted server holds compared with what the writers saw.
#[derive(Debug, Default)]
pub struct DurabilityReport {
    /// Acknowledged writes.
    pub acked: usize,
    /// Unacknowledged writes that turned out to be present.
    pub unacked_present: usize,
    /// The highest acknowledged LSN.
    pub max_acked_lsn: u64,
    /// Every violation found; empty means the check passed.
    pub violations: Vec<String>,
}

impl DurabilityReport {
    /// Panics with `context` and the first violations, if there are any.
    pub fn assert_clean(&self, context: &str) {
        let first: Vec<&str> = self
            .violations
            .iter()
            .take(20)
            .map(String::as_str)
            .collect();
        assert!(
            self.violations.is_empty(),
            "{context}: {} violations, first ones:\n{}",
            self.violations.len(),
            first.join("\n")
        );
    }
}

/// Checks the server behind `client` against `logs`: every acknowledged write present with its
/// exact document, every present document one that was attempted, pairs all-or-nothing.
pub fn check_durability(client: &Client, logs: &[WriterLog]) -> DurabilityReport {
    let mut report = DurabilityReport::default();
    let mut attempts: BTreeMap<String, (&Attempt, bool)> = BTreeMap::new();
    for log in logs {
        for (attempt, lsn) in &log.acked {
            attempts.insert(attempt.id.clone(), (attempt, true));
            report.max_acked_lsn = report.max_acked_lsn.max(*lsn);
        }
        for attempt in &log.unacked {
            attempts.insert(attempt.id.clone(), (attempt, false));
        }
    }
    report.acked = logs.iter().map(|l| l.acked.len()).sum();
    // Point reads of every attempted id, and the listing's count to catch anything else.
    let ids: Vec<String> = attempts.keys().cloned().collect();
    let single = client.get_docs(SINGLE, &ids);
    let pair_a = client.get_docs(PAIR[0], &ids);
    let pair_b = client.get_docs(PAIR[1], &ids);
    let mut found = BTreeSet::new();
    for (collection, docs, pair) in [
        (SINGLE, &single, false),
        (PAIR[0], &pair_a, true),
        (PAIR[1], &pair_b, true),
    ] {
        let count = client.collection_count(collection);
        if count != docs.len() as u64 {
            report.violations.push(format!(
                "{collection} counts {count} documents, but {} attempted ones are there",
                docs.len()
            ));
        }
        for (id, doc) in docs {
            let (attempt, _) = attempts[id];
            if attempt.pair != pair || *doc != doc_of(attempt) {
                report.violations.push(format!(
                    "{collection}/{id} holds {doc}, but {} was sent",
                    doc_of(attempt)
                ));
            }
            found.insert(id.clone());
        }
    }
    for id in pair_a
        .keys()
        .collect::<BTreeSet<_>>()
        .symmetric_difference(&pair_b.keys().collect())
    {
        report.violations.push(format!(
            "pair txn {id} half-applied (in only one of {PAIR:?})"
        ));
    }
    for (id, (_, acked)) in &attempts {
        match (acked, found.contains(id)) {
            (true, false) => report
                .violations
                .push(format!("acknowledged write {id} is missing")),
            (false, true) => report.unacked_present += 1,
            _ => {}
        }
    }
    report
}

/// Fails the test with every unexpected answer the writers got.
#[track_caller]
pub fn assert_no_unexpected(logs: &[WriterLog]) {
    let unexpected: Vec<_> = logs.iter().flat_map(|l| l.unexpected.iter()).collect();
    assert!(
        unexpected.is_empty(),
        "writers got answers the contract does not allow: {unexpected:#?}"
    );
}
