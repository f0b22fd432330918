//! A client workload for cluster failover tests: registers written and read by many clients
//! that retry across members, every operation recorded for the linearizability checker, and
//! unique inserts whose acknowledgement is checked against every member at the end.
//!
//! ```text
//!  client thread i ─ loop: pick a member at random (it may be dead) ─┬─ put reg/k = v   (txn with
//!                                                                     │   origin (ci, seq): a retry
//!                                                                     │   is exactly-once)
//!                                                                     ├─ linearizable get reg/k
//!                                                                     └─ insert log/{ci}-{seq}
//!  each op: invoke ─ retries on no answer / 503 / 504 (other members) ─ complete ─► History
//! ```
//!
//! A write that never got a definite answer within its retry budget is recorded as `Unknown`
//! (it may or may not have happened), never as a success: the checker decides whether the
//! reads are explained by some order of the writes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::client::Client;
use crate::linearizability::{History, Op, OpKind, Outcome};

/// How long one operation keeps retrying before its outcome counts as unknown.
pub const RETRY_BUDGET: Duration = Duration::from_secs(8);
/// Bound of one request.
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;

/// What the clients did, for the checks at the end.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Every register operation.
    pub history: Vec<Op>,
    /// Ids of inserts into `log` that were acknowledged.
    pub acked_inserts: BTreeSet<String>,
    /// Ids of inserts whose outcome is unknown.
    pub unknown_inserts: BTreeSet<String>,
    /// Acknowledged writes of any kind.
    pub acked: u64,
    /// Writes answered `"duplicate": true` (a retry whose first attempt had committed).
    pub duplicates: u64,
}

/// Marks for measuring unavailability: the first acknowledgement of a request *sent* after a
/// mark (a reply to a request sent before it may have committed before a kill).
#[derive(Debug)]
struct Marks {
    mark_ns: AtomicU64,
    first_ack_ns: AtomicU64,
}

/// Clients running against the members at `urls`.
#[derive(Debug)]
pub struct ClusterWorkload {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    marks: Arc<Marks>,
    history: History,
    threads: Vec<JoinHandle<Outcomes>>,
}

enum Answer {
    /// A definite answer (2xx or a refusal that means "not done").
    Done(u16, Value),
    /// No answer, or "try elsewhere" (503), or "unknown" (504).
    Retry,
}

fn send(client: &Client, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
    let body = body.map(|b| ("application/json", serde_json::to_vec(b).expect("json")));
    match client.send(method, path, body, &[]) {
        Ok(reply) if reply.status == 503 || reply.status == 504 => Answer::Retry,
        Ok(reply) => Answer::Done(
            reply.status,
            serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
        ),
        Err(_) => Answer::Retry,
    }
}

impl ClusterWorkload {
    /// Starts `clients` threads over `keys` registers against `urls`, seeded by `seed`.
    pub fn start(urls: Vec<String>, clients: usize, keys: usize, seed: u64) -> ClusterWorkload {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let marks = Arc::new(Marks {
            mark_ns: AtomicU64::new(u64::MAX),
            first_ack_ns: AtomicU64::new(u64::MAX),
        });
        let history = History::new();
        let threads = (0..clients)
            .map(|c| {
                let urls = urls.clone();
                let stop = Arc::clone(&stop);
                let acked = Arc::clone(&acked);
                let marks = Arc::clone(&marks);
                let history = history.clone();
                std::thread::spawn(move || {
                    let clients: Vec<Client> = urls
                        .iter()
                        .map(|u| Client::with_timeout_ms(u.clone(), REQUEST_TIMEOUT_MS))
                        .collect();
                    run_client(c, &clients, keys, seed, &stop, &acked, &marks, &history)
                })
            })
            .collect();
        ClusterWorkload {
            stop,
            acked,
            marks,
            history,
            threads,
        }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// The history's clock now, in ns.
    pub fn now_ns(&self) -> u64 {
        self.history.now_ns()
    }

    /// Starts a measurement: [`Self::wait_fresh_ack`] then waits for a write sent after now.
    /// Returns now on the history's clock.
    pub fn mark(&self) -> u64 {
        let now = self.history.now_ns();
        self.marks.first_ack_ns.store(u64::MAX, Ordering::SeqCst);
        self.marks.mark_ns.store(now, Ordering::SeqCst);
        now
    }

    /// Waits until `n` more writes than `from` are acknowledged, at most `timeout`.
    pub fn wait_acked(&self, from: u64, n: u64, timeout: Duration) -> bool {
        let started = Instant::now();
        while self.acked() < from + n {
            if started.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Waits for the first acknowledgement of a write sent after the last [`Self::mark`];
    /// returns when it arrived, on the history's clock.
    pub fn wait_fresh_ack(&self, timeout: Duration) -> Option<u64> {
        let started = Instant::now();
        loop {
            let first = self.marks.first_ack_ns.load(Ordering::SeqCst);
            if first != u64::MAX {
                return Some(first);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the clients (each finishes its operation in flight) and merges what they did.
    pub fn stop(self) -> Outcomes {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Outcomes::default();
        for thread in self.threads {
            let part = thread.join().expect("a client thread panicked");
            all.acked += part.acked;
            all.duplicates += part.duplicates;
            all.acked_inserts.extend(part.acked_inserts);
            all.unknown_inserts.extend(part.unknown_inserts);
        }
        all.history = self.history.ops();
        all
    }
}

#[allow(clippy::too_many_arguments)]
fn run_client(
    c: usize,
    clients: &[Client],
    keys: usize,
    seed: u64,
    stop: &AtomicBool,
    acked: &AtomicU64,
    marks: &Marks,
    history: &History,
) -> Outcomes {
    let mut rng = StdRng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut outcomes = Outcomes::default();
    let client_id = format!("c{c}-{seed:x}");
    let mut seq = 0u64;
    let ack = |outcomes: &mut Outcomes, duplicate: bool, sent_ns: u64| {
        outcomes.acked += 1;
        if duplicate {
            outcomes.duplicates += 1;
        }
        acked.fetch_add(1, Ordering::Relaxed);
        if sent_ns >= marks.mark_ns.load(Ordering::SeqCst) {
            marks
                .first_ack_ns
                .fetch_min(history.now_ns(), Ordering::SeqCst);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let key = format!("k{}", rng.random_range(0..keys));
        let roll = rng.random_range(0..10);
        if roll < 4 {
            // A register write, exactly-once by its origin.
            seq += 1;
            let value = ((c as u64) << 40) | seq;
            let body = json!({
                "ops": [{"op": "put", "collection": "reg", "doc": {"_id": key, "v": value}}],
                "origin": {"client": client_id, "seq": seq},
            });
            let invoke_ns = history.now_ns();
            let outcome = retry(clients, &mut rng, history, |client| {
                send(client, reqwest::Method::POST, "/v1/txn", Some(&body))
            });
            let complete_ns = history.now_ns();
            let outcome = match outcome {
                Some((200, answer, sent_ns)) => {
                    ack(&mut outcomes, answer["duplicate"] == true, sent_ns);
                    Outcome::Ok
                }
                // A put of a valid document is never refused; any other answer (after retries
                // that may have committed it) leaves its effect unknown, never "failed".
                Some(_) | None => Outcome::Unknown,
            };
            history.record(Op {
                key,
                kind: OpKind::Write(value),
                invoke_ns,
                complete_ns,
                outcome,
            });
        } else if roll < 8 {
            // A linearizable read, from whichever member answers.
            let invoke_ns = history.now_ns();
            let path = format!("/v1/c/reg/{key}?consistency=linearizable");
            let member = rng.random_range(0..clients.len());
            let answer = send(&clients[member], reqwest::Method::GET, &path, None);
            let complete_ns = history.now_ns();
            let value = match answer {
                Answer::Done(200, doc) => {
                    Some(Some(doc["v"].as_u64().unwrap_or_else(|| {
                        panic!("register {key} without a value: {doc}")
                    })))
                }
                Answer::Done(404, _) => Some(None),
                _ => None,
            };
            if let Some(value) = value {
                history.record(Op {
                    key,
                    kind: OpKind::Read,
                    invoke_ns,
                    complete_ns,
                    outcome: Outcome::Read(value),
                });
            }
        } else {
            // A unique insert: acknowledged ones must be on every member at the end.
            seq += 1;
            let id = format!("{client_id}-{seq}");
            let body = json!({
                "ops": [{"op": "insert", "collection": "log", "doc": {"_id": id}}],
                "origin": {"client": client_id, "seq": seq},
            });
            match retry(clients, &mut rng, history, |client| {
                send(client, reqwest::Method::POST, "/v1/txn", Some(&body))
            }) {
                Some((200, answer, sent_ns)) => {
                    ack(&mut outcomes, answer["duplicate"] == true, sent_ns);
                    outcomes.acked_inserts.insert(id);
                }
                Some((status, answer, _)) => {
                    panic!("insert {id} refused with {status}: {answer}")
                }
                None => {
                    outcomes.unknown_inserts.insert(id);
                }
            }
        }
    }
    outcomes
}

/// Sends with `attempt` to random members until a definite answer, within [`RETRY_BUDGET`];
/// the answer comes with the time its attempt was sent.
fn retry(
    clients: &[Client],
    rng: &mut StdRng,
    history: &History,
    mut attempt: impl FnMut(&Client) -> Answer,
) -> Option<(u16, Value, u64)> {
    let started = Instant::now();
    let mut member = rng.random_range(0..clients.len());
    while started.elapsed() < RETRY_BUDGET {
        let sent_ns = history.now_ns();
        match attempt(&clients[member]) {
            Answer::Done(status, body) => return Some((status, body, sent_ns)),
            Answer::Retry => {
                member = (member + 1) % clients.len();
                std::thread::sleep(Duration::from_millis(rng.random_range(5..30)));
            }
        }
    }
    None
}
