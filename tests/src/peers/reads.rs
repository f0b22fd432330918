//! Read latency on three members: cstore's local and linearizable reads (`GET
//! /v1/c/{c}/{id}[?consistency=linearizable]`, ReadIndex through the leader) against etcd's
//! serializable and linearizable ranges (`POST /v3/kv/range`), each on the leader and on a
//! follower, through the same closed-loop driver as the writes.
//!
//! ```text
//!  RaftCluster(3) ─► seed --read-docs docs (txn batches) ─► converged ─┐
//!  EtcdCluster(3) ─► seed --read-docs keys (puts)        ─► healthy  ──┤
//!                                                                      ▼
//!        per (system, read kind, member): N closed-loop readers, warm-up + window
//!        reader: key n % docs (n from the run's shared counter) ─► 200 with the value
//! ```
//!
//! A read counts only when it found the document (cstore 200, etcd a `kvs` in the answer): a
//! reader that gets nothing back would otherwise look fast.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::driver::{Request, WriteConfig, WriteSummary, http_client, run_closed_loop};
use super::error::PeerError;
use super::peer::EtcdCluster;
use super::raft::RaftCluster;
use super::target::{Target, error_chain, payload};

/// The collection the cstore documents are seeded into.
pub const COLLECTION: &str = "reads";
/// Documents per seeding transaction.
const SEED_BATCH: usize = 100;
/// Concurrent puts while seeding etcd.
const SEED_CLIENTS: usize = 16;
/// Bound on one read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How a read run is shaped.
#[derive(Clone, Copy, Debug)]
pub struct ReadConfig {
    /// Closed-loop readers per run.
    pub readers: usize,
    /// Documents (keys) seeded and read.
    pub docs: usize,
    /// Warm-up and window of each run.
    pub window: WriteConfig,
}

/// One line of the read table.
#[derive(Debug)]
pub struct ReadRow {
    /// The system and its size.
    pub system: String,
    /// What kind of read.
    pub read: String,
    /// Which member answers it.
    pub member: String,
    /// The measurement, or why there is none.
    pub outcome: Result<WriteSummary, String>,
}

/// One reader's requests.
#[derive(Debug)]
pub enum Reader {
    /// cstore: `GET` of one of the prepared URLs.
    Cstore {
        /// The shared pool.
        http: reqwest::Client,
        /// One full URL per document.
        urls: Arc<Vec<String>>,
    },
    /// etcd's JSON gateway: `POST {url}/v3/kv/range` with one of the prepared bodies.
    Etcd {
        /// The shared pool.
        http: reqwest::Client,
        /// The range URL of the member read from.
        url: String,
        /// One JSON body per key.
        bodies: Arc<Vec<Vec<u8>>>,
    },
}

impl Request for Reader {
    async fn send(&mut self, n: u64) -> Result<(), String> {
        match self {
            Reader::Cstore { http, urls } => {
                let url = &urls[pick(n, urls.len())];
                let response = http.get(url).send().await.map_err(|e| error_chain(&e))?;
                let status = response.status();
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| format!("reading the body: {e}"))?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)))
                }
            }
            Reader::Etcd { http, url, bodies } => {
                let body = bodies[pick(n, bodies.len())].clone();
                let response = http
                    .post(url.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| error_chain(&e))?;
                let status = response.status();
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| format!("reading the body: {e}"))?;
                let text = String::from_utf8_lossy(&bytes);
                if status.is_success() && text.contains("\"kvs\"") {
                    Ok(())
                } else {
                    Err(format!("{status}: {text}"))
                }
            }
        }
    }
}

/// Document index of request `n`: a fixed odd multiplier spreads consecutive requests.
fn pick(n: u64, len: usize) -> usize {
    let len = u64::try_from(len).expect("usize fits in u64");
    usize::try_from(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % len).expect("below len")
}

/// The `_id` of seeded document `i`.
fn doc_id(i: usize) -> String {
    format!("r{i:07}")
}

/// The etcd key of seeded document `i` (what `Target::Etcd` writes for `n = i`).
fn etcd_key(i: usize) -> String {
    format!("bench/{i:012}")
}

/// Starts a 3-member cstore cluster, seeds it and measures each read kind; then the same on
/// 3 etcd members (`etcd_port_offset` as in [`EtcdCluster::start`]).
pub fn measure_all(
    runtime: &tokio::runtime::Runtime,
    config: ReadConfig,
    etcd_port_offset: u16,
) -> Vec<ReadRow> {
    let mut rows = Vec::new();
    rows.extend(cstore_rows(runtime, config));
    rows.extend(etcd_rows(runtime, config, etcd_port_offset));
    rows
}

fn cstore_rows(runtime: &tokio::runtime::Runtime, config: ReadConfig) -> Vec<ReadRow> {
    let system = "cstore 3-member Raft cluster";
    let kinds = [
        ("local", false, true),
        ("linearizable (ReadIndex)", true, true),
        ("local", false, false),
        ("linearizable (ReadIndex via the leader)", true, false),
    ];
    println!("==> reads: {system}, seeding {} documents", config.docs);
    let setup = RaftCluster::start(3).and_then(|cluster| {
        let leader = cluster.leader()?;
        seed_cstore(&cluster.urls()[leader], config.docs)?;
        let leader = cluster.wait_healthy()?;
        Ok((cluster, leader))
    });
    let (cluster, leader) = match setup {
        Ok(ok) => ok,
        Err(e) => {
            let reason = reason(&e);
            println!("    not available: {reason}");
            return kinds
                .iter()
                .map(|(read, _, on_leader)| ReadRow {
                    system: system.into(),
                    read: (*read).into(),
                    member: member_name(*on_leader).into(),
                    outcome: Err(reason.clone()),
                })
                .collect();
        }
    };
    let follower = (leader + 1) % cluster.urls().len();
    println!(
        "    pids {:?}, leader member {}",
        cluster.pids(),
        leader + 1
    );
    kinds
        .iter()
        .map(|&(read, linearizable, on_leader)| {
            let member = if on_leader { leader } else { follower };
            let base = &cluster.urls()[member];
            let query = if linearizable {
                "?consistency=linearizable"
            } else {
                ""
            };
            let urls: Arc<Vec<String>> = Arc::new(
                (0..config.docs)
                    .map(|i| format!("{base}/v1/c/{COLLECTION}/{}{query}", doc_id(i)))
                    .collect(),
            );
            let outcome = measure(runtime, config, read, member_name(on_leader), |http| {
                Reader::Cstore {
                    http,
                    urls: Arc::clone(&urls),
                }
            });
            ReadRow {
                system: system.into(),
                read: read.into(),
                member: member_name(on_leader).into(),
                outcome,
            }
        })
        .collect()
}

fn etcd_rows(
    runtime: &tokio::runtime::Runtime,
    config: ReadConfig,
    port_offset: u16,
) -> Vec<ReadRow> {
    let system = "etcd 3.4 (3 members)";
    let kinds = [
        ("serializable", true, true),
        ("linearizable (default)", false, true),
        ("serializable", true, false),
        ("linearizable (default)", false, false),
    ];
    println!("==> reads: {system}, seeding {} keys", config.docs);
    let setup = EtcdCluster::start(3, port_offset).and_then(|etcd| {
        let leader = etcd.leader_index()?;
        seed_etcd(runtime, &etcd.client_urls()[leader], config.docs)?;
        let leader = etcd
            .wait_healthy(Duration::from_secs(30))
            .ok_or_else(|| PeerError::net("etcd after seeding", "not healthy within 30 s"))?;
        Ok((etcd, leader))
    });
    let (etcd, leader) = match setup {
        Ok(ok) => ok,
        Err(e) => {
            let reason = reason(&e);
            println!("    not available: {reason}");
            return kinds
                .iter()
                .map(|(read, _, on_leader)| ReadRow {
                    system: system.into(),
                    read: (*read).into(),
                    member: member_name(*on_leader).into(),
                    outcome: Err(reason.clone()),
                })
                .collect();
        }
    };
    let follower = (leader + 1) % etcd.client_urls().len();
    println!("    pids {:?}, leader member {}", etcd.pids(), leader + 1);
    kinds
        .iter()
        .map(|&(read, serializable, on_leader)| {
            let member = if on_leader { leader } else { follower };
            let url = format!("{}/v3/kv/range", etcd.client_urls()[member]);
            let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..config.docs)
                    .map(|i| {
                        let mut body = json!({"key": BASE64.encode(etcd_key(i))});
                        if serializable {
                            body["serializable"] = Value::Bool(true);
                        }
                        serde_json::to_vec(&body).expect("a Value serializes")
                    })
                    .collect(),
            );
            let outcome = measure(runtime, config, read, member_name(on_leader), |http| {
                Reader::Etcd {
                    http,
                    url: url.clone(),
                    bodies: Arc::clone(&bodies),
                }
            });
            ReadRow {
                system: system.into(),
                read: read.into(),
                member: member_name(on_leader).into(),
                outcome,
            }
        })
        .collect()
}

fn member_name(on_leader: bool) -> &'static str {
    if on_leader { "leader" } else { "follower" }
}

fn reason(e: &PeerError) -> String {
    match e {
        PeerError::Unavailable(reason) => reason.clone(),
        other => other.to_string(),
    }
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    config: ReadConfig,
    read: &str,
    member: &str,
    reader: impl Fn(reqwest::Client) -> Reader,
) -> Result<WriteSummary, String> {
    println!(
        "    {read} read on the {member}: {} readers, {:.0} s warm-up + {:.0} s",
        config.readers,
        config.window.warmup.as_secs_f64(),
        config.window.duration.as_secs_f64()
    );
    let http = http_client(config.readers, REQUEST_TIMEOUT)?;
    let readers: Vec<Reader> = (0..config.readers).map(|_| reader(http.clone())).collect();
    let report = runtime.block_on(run_closed_loop(readers, config.window))?;
    println!(
        "    {:.0} reads/s, p50 {:.2} ms, p99 {:.2} ms, errors {} {:?}",
        report.ops_per_s(),
        report.quantile_ms(0.5),
        report.quantile_ms(0.99),
        report.errors,
        report.error_samples
    );
    Ok(report.summary())
}

/// Inserts documents `r0000000…` into [`COLLECTION`] through `/v1/txn`, in batches.
fn seed_cstore(url: &str, docs: usize) -> Result<(), PeerError> {
    let client = crate::Client::new(url);
    for start in (0..docs).step_by(SEED_BATCH) {
        let ops: Vec<Value> = (start..(start + SEED_BATCH).min(docs))
            .map(|i| {
                let mut doc: Value =
                    serde_json::from_slice(&payload(i as u64)).expect("the payload is JSON");
                doc["_id"] = Value::String(doc_id(i));
                json!({"op": "insert", "collection": COLLECTION, "doc": doc})
            })
            .collect();
        let reply = client
            .txn(ops)
            .map_err(|e| PeerError::net("seeding the documents", e))?;
        if !reply.is_success() {
            return Err(PeerError::net(
                "seeding the documents",
                format!("{}: {}", reply.status, reply.text().trim()),
            ));
        }
    }
    Ok(())
}

/// Puts keys `bench/000000000000…` (the write driver's keys and values) through `url`.
fn seed_etcd(runtime: &tokio::runtime::Runtime, url: &str, docs: usize) -> Result<(), PeerError> {
    let target = Target::Etcd { url: url.into() };
    runtime
        .block_on(async {
            let mut tasks = Vec::new();
            for client in 0..SEED_CLIENTS {
                let mut writer = target.writer().await?;
                tasks.push(tokio::spawn(async move {
                    for i in (client..docs).step_by(SEED_CLIENTS) {
                        writer.write(i as u64).await?;
                    }
                    Ok::<(), String>(())
                }));
            }
            for task in tasks {
                task.await
                    .map_err(|e| format!("a seeding task failed: {e}"))??;
            }
            Ok::<(), String>(())
        })
        .map_err(|e| PeerError::net("seeding etcd", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_cover_every_document_and_stay_in_range() {
        let len = 1000;
        let mut seen = vec![false; len];
        for n in 0..10 * len as u64 {
            seen[pick(n, len)] = true;
        }
        assert!(seen.iter().filter(|s| **s).count() > 900);
        assert_eq!(pick(u64::MAX, 7), pick(u64::MAX, 7));
    }
}
