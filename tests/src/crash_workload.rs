//! A mixed workload that remembers every transaction it sent, and the model that says what a
//! server restarted after `kill -9` must hold: exactly the acknowledged prefix of each writer,
//! plus, for each writer's one transaction in flight at the kill, all of it or none of it.
//!
//! ```text
//!  writer t of round r (own ids r<r>w<t>-<k>; one transaction at a time, through POST /v1/txn):
//!    insert into `items` · merge-patch an own item · delete an own item ·
//!    a transaction over `pair_a`, `pair_b` and `items` (insert, insert, patch) ·
//!    insert into `ttl` (documents expire after TTL_MS) ·
//!    writer 0, once a round: create index ix<r> and drop ix<r-1> in one transaction
//!  2xx → acknowledged (its lsn); no answer → in flight, the writer stops; anything else fails
//! ```
//!
//! Writers own disjoint ids, so their transactions commute and each writer's documents can be
//! checked on their own: the model applies the acknowledged transactions in the writer's order,
//! and the transaction in flight either wholly or not at all; the recovered documents must be
//! one of those two, and the model then keeps the one that happened. Documents of `ttl` are
//! checked against the clock: one acknowledged whose deadline is still ahead at the read must
//! be there, one past its deadline by more than [`TTL_SLACK_MS`] must be gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::workload::{WriterBody, WriterThreads};

/// The collections the workload writes, besides `ttl`.
pub const COLLECTIONS: [&str; 3] = ["items", "pair_a", "pair_b"];
/// The collection whose documents expire.
pub const TTL: &str = "ttl";
/// Lifetime of a document in [`TTL`].
pub const TTL_MS: u64 = 1_500;
/// How late an expiry may be seen (the leader's tick, a restart, the reads).
pub const TTL_SLACK_MS: u64 = 5_000;

/// The transactions that create the collections, sent before the first round.
pub fn setup_ops() -> Vec<Value> {
    let mut ops: Vec<Value> = COLLECTIONS
        .iter()
        .map(|c| json!({"op": "create_collection", "collection": c}))
        .collect();
    ops.push(json!({"op": "create_collection", "collection": TTL, "ttl_ms": TTL_MS}));
    ops
}

/// One effect of a transaction, as the model applies it.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// A document written whole (insert).
    Put {
        /// Its collection.
        collection: &'static str,
        /// The document, `_id` included.
        doc: Value,
    },
    /// An RFC 7386 merge patch of an existing document.
    Patch {
        /// Its collection.
        collection: &'static str,
        /// The document's id.
        id: String,
        /// The patch.
        patch: Value,
    },
    /// A document removed.
    Delete {
        /// Its collection.
        collection: &'static str,
        /// The document's id.
        id: String,
    },
    /// `items` gains the index `create` and loses `drop` (if any).
    Reindex {
        /// The index created.
        create: String,
        /// The index dropped.
        drop: Option<String>,
    },
}

/// One transaction a writer sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// What it does.
    pub effects: Vec<Effect>,
    /// When it was sent.
    pub sent_at: Instant,
    /// When its acknowledgement arrived, and its LSN; `None` when it is in flight.
    pub acked: Option<(Instant, u64)>,
}

/// What one writer did in one round.
#[derive(Clone, Debug, Default)]
pub struct WriterRun {
    /// Its transactions in order: all acknowledged but maybe the last.
    pub sent: Vec<Sent>,
    /// Answers the contract does not allow: (status, body).
    pub unexpected: Vec<(u16, String)>,
}

impl WriterRun {
    /// The acknowledged transactions.
    pub fn acked(&self) -> impl Iterator<Item = &Sent> {
        self.sent.iter().filter(|s| s.acked.is_some())
    }

    /// The transaction without an answer, if the writer stopped on one.
    pub fn in_flight(&self) -> Option<&Sent> {
        self.sent.last().filter(|s| s.acked.is_none())
    }
}

/// Writer threads of one round.
pub type CrashWriters = WriterThreads<WriterRun>;

impl CrashWriters {
    /// Starts `writers` threads for `round`; `items` maps each writer to its live item ids
    /// (from the model), `index` is the index writer 0 replaces this round.
    pub fn start(
        client: &Client,
        round: usize,
        seed: u64,
        items: Vec<Vec<String>>,
        index: Option<String>,
    ) -> CrashWriters {
        let bodies = items
            .into_iter()
            .enumerate()
            .map(|(t, live)| {
                let client = client.clone();
                let rng = StdRng::seed_from_u64(seed ^ ((round as u64) << 16) ^ t as u64);
                let reindex = (t == 0).then(|| (format!("ix{round}"), index.clone()));
                let writer = Writer {
                    prefix: format!("r{round}w{t}"),
                    live,
                    rng,
                    reindex,
                };
                Box::new(move |stop: &AtomicBool, acked: &AtomicU64| {
                    writer.run(&client, stop, acked)
                }) as WriterBody<WriterRun>
            })
            .collect();
        WriterThreads::spawn("crash-writer", bodies)
    }
}

struct Writer {
    prefix: String,
    live: Vec<String>,
    rng: StdRng,
    reindex: Option<(String, Option<String>)>,
}

impl Writer {
    fn run(mut self, client: &Client, stop: &AtomicBool, acked: &AtomicU64) -> WriterRun {
        let mut run = WriterRun::default();
        for k in 0u64.. {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let (ops, effects) = self.next(k);
            let sent_at = Instant::now();
            let result = client.txn(ops);
            let mut sent = Sent {
                effects,
                sent_at,
                acked: None,
            };
            match result {
                Ok(reply) if reply.is_success() => {
                    let lsn = reply.json()["lsn"].as_u64().expect("a numeric lsn");
                    sent.acked = Some((Instant::now(), lsn));
                    self.track(&sent.effects);
                    run.sent.push(sent);
                    acked.fetch_add(1, Ordering::AcqRel);
                }
                Ok(reply)
                    if reply.status == 503
                        && reply.error_code().as_deref() == Some("shutting_down") =>
                {
                    run.sent.push(sent);
                    break;
                }
                Ok(reply) => {
                    run.unexpected.push((reply.status, reply.text()));
                    break;
                }
                Err(_) => {
                    run.sent.push(sent);
                    break;
                }
            }
        }
        run
    }

    /// Keeps the writer's list of live items in step with its acknowledged transactions.
    fn track(&mut self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::Put {
                    collection: "items",
                    doc,
                } => self
                    .live
                    .push(doc["_id"].as_str().expect("an id").to_owned()),
                Effect::Delete {
                    collection: "items",
                    id,
                } => self.live.retain(|live| live != id),
                _ => {}
            }
        }
    }

    /// The next transaction: its operations and its effects.
    fn next(&mut self, k: u64) -> (Vec<Value>, Vec<Effect>) {
        let id = format!("{}-{k:05}", self.prefix);
        let own = (!self.live.is_empty())
            .then(|| self.live[self.rng.random_range(0..self.live.len())].clone());
        let n = self.rng.random_range(0..1_000u64);
        let pad = "p".repeat(self.rng.random_range(0..400usize));
        let doc = json!({"_id": id, "n": n, "pad": pad, "w": self.prefix});
        let patch = json!({"n": n, "k": k, "pad": null});
        // Writer 0 replaces the round's index once, a little into the round.
        if k == 3
            && let Some((create, drop)) = self.reindex.take()
        {
            let mut ops = vec![json!({"op": "create_index", "collection": "items",
                "index": {"name": create, "fields": [{"path": "n"}]}})];
            if let Some(drop) = &drop {
                ops.push(json!({"op": "drop_index", "collection": "items", "name": drop}));
            }
            return (ops, vec![Effect::Reindex { create, drop }]);
        }
        let insert = |collection: &'static str, doc: &Value| {
            (
                json!({"op": "insert", "collection": collection, "doc": doc}),
                Effect::Put {
                    collection,
                    doc: doc.clone(),
                },
            )
        };
        let patch_of = |id: &str, patch: &Value| {
            (
                json!({"op": "patch", "collection": "items", "id": id, "patch": patch}),
                Effect::Patch {
                    collection: "items",
                    id: id.to_owned(),
                    patch: patch.clone(),
                },
            )
        };
        let pairs: Vec<(Value, Effect)> = match (self.rng.random_range(0..100u32), own) {
            (0..35, _) | (35..65, None) => vec![insert("items", &doc)],
            (35..55, Some(own)) => vec![patch_of(&own, &patch)],
            (55..65, Some(own)) => vec![(
                json!({"op": "delete", "collection": "items", "id": own}),
                Effect::Delete {
                    collection: "items",
                    id: own,
                },
            )],
            (65..85, own) => {
                let mut ops = vec![insert("pair_a", &doc), insert("pair_b", &doc)];
                if let Some(own) = own {
                    ops.push(patch_of(&own, &patch));
                }
                ops
            }
            _ => vec![insert(TTL, &doc)],
        };
        pairs.into_iter().unzip()
    }
}

/// RFC 7386: `patch` merged into `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("an object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// What the server must hold: documents by collection and id, the indexes of `items`, and
/// the acknowledged documents of `ttl` with the times that bound their expiry.
#[derive(Debug, Default, Clone)]
pub struct CrashModel {
    /// Documents of [`COLLECTIONS`].
    pub docs: BTreeMap<(&'static str, String), Value>,
    /// Index names of `items`.
    pub indexes: BTreeSet<String>,
    /// Documents of `ttl`: the document, when it was sent, when acknowledged (if it was).
    pub ttl: BTreeMap<String, (Value, Instant, Option<Instant>)>,
    /// The highest acknowledged LSN.
    pub max_acked_lsn: u64,
    /// Acknowledged transactions, over all rounds.
    pub acked: u64,
    /// In-flight transactions found applied after the restart, and found absent.
    pub in_flight_applied: u64,
    /// See `in_flight_applied`.
    pub in_flight_absent: u64,
}

impl CrashModel {
    /// The live item ids of each of `writers` writers, for the next round (ids of the rounds
    /// before are handed out round-robin: the writers patch and delete old documents too).
    pub fn live_items(&self, writers: usize) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); writers];
        for (i, (_, id)) in self.docs.keys().filter(|(c, _)| *c == "items").enumerate() {
            out[i % writers].push(id.clone());
        }
        out
    }

    /// The newest index, which the next round's writer 0 drops.
    pub fn newest_index(&self) -> Option<String> {
        self.indexes
            .iter()
            .max_by_key(|name| name.trim_start_matches("ix").parse::<u64>().unwrap_or(0))
            .cloned()
    }

    fn apply(&mut self, sent: &Sent) {
        for effect in &sent.effects {
            match effect {
                Effect::Put {
                    collection: TTL,
                    doc,
                } => {
                    let id = doc["_id"].as_str().expect("an id").to_owned();
                    let acked = sent.acked.map(|(at, _)| at);
                    self.ttl.insert(id, (doc.clone(), sent.sent_at, acked));
                }
                Effect::Put { collection, doc } => {
                    let id = doc["_id"].as_str().expect("an id").to_owned();
                    self.docs.insert((collection, id), doc.clone());
                }
                Effect::Patch {
                    collection,
                    id,
                    patch,
                } => {
                    let doc = self
                        .docs
                        .get_mut(&(*collection, id.clone()))
                        .expect("a writer patches only its live documents");
                    merge_patch(doc, patch);
                }
                Effect::Delete { collection, id } => {
                    self.docs.remove(&(*collection, id.clone()));
                }
                Effect::Reindex { create, drop } => {
                    self.indexes.insert(create.clone());
                    if let Some(drop) = drop {
                        self.indexes.remove(drop);
                    }
                }
            }
        }
    }

    /// Applies each writer's acknowledged transactions, then checks `server` against the
    /// model with and without each writer's transaction in flight, keeps what happened, and
    /// returns every violation found (empty: the recovered state is a valid one).
    pub fn check_round(&mut self, client: &Client, runs: &[WriterRun]) -> Vec<String> {
        let mut violations = Vec::new();
        for run in runs {
            for (status, body) in &run.unexpected {
                violations.push(format!("unexpected answer {status}: {body}"));
            }
            for sent in run.acked() {
                let (_, lsn) = sent.acked.expect("acknowledged");
                self.max_acked_lsn = self.max_acked_lsn.max(lsn);
                self.acked += 1;
                self.apply(sent);
            }
        }
        let actual = read_state(client);
        for run in runs {
            let Some(sent) = run.in_flight() else {
                continue;
            };
            let mut with = self.clone();
            with.apply(sent);
            let keys = touched(sent);
            let matches = |model: &CrashModel| {
                keys.iter().all(|key| match key {
                    Touched::Doc(c, id) => {
                        model.docs.get(&(*c, id.clone())) == actual.docs.get(&(*c, id.clone()))
                    }
                    Touched::Ttl(id) => actual.ttl.contains_key(id) == model.ttl.contains_key(id),
                    Touched::Indexes => model.indexes == actual.indexes,
                })
            };
            if matches(&with) && !keys.iter().all(|k| matches!(k, Touched::Ttl(_))) {
                *self = with;
                self.in_flight_applied += 1;
            } else if matches(self) {
                self.in_flight_absent += 1;
            } else if keys.iter().all(|k| matches!(k, Touched::Ttl(_))) {
                // A `ttl` insert may have applied and already expired: either is fine.
                if keys
                    .iter()
                    .any(|k| matches!(k, Touched::Ttl(id) if actual.ttl.contains_key(id)))
                {
                    *self = with;
                    self.in_flight_applied += 1;
                } else {
                    self.in_flight_absent += 1;
                }
            } else {
                violations.push(format!(
                    "a transaction in flight is torn (neither all nor none of it): {:?}",
                    sent.effects
                ));
            }
        }
        // Whole collections: nothing missing, nothing extra, every byte as the model says.
        for (key, doc) in &self.docs {
            match actual.docs.get(key) {
                None => violations.push(format!("{}/{} is missing", key.0, key.1)),
                Some(found) if found != doc => {
                    violations.push(format!("{}/{} holds {found}, expected {doc}", key.0, key.1))
                }
                Some(_) => {}
            }
        }
        for key in actual.docs.keys() {
            if !self.docs.contains_key(key) {
                violations.push(format!(
                    "{}/{} is there but was never acknowledged",
                    key.0, key.1
                ));
            }
        }
        if actual.indexes != self.indexes {
            violations.push(format!(
                "items has indexes {:?}, expected {:?}",
                actual.indexes, self.indexes
            ));
        }
        let ttl_ms = Duration::from_millis(TTL_MS);
        let slack = Duration::from_millis(TTL_SLACK_MS);
        for (id, found) in &actual.ttl {
            match self.ttl.get(id) {
                None => violations.push(format!("ttl/{id} was never sent")),
                Some((doc, _, _)) if doc != found => {
                    violations.push(format!("ttl/{id} holds {found}, expected {doc}"))
                }
                Some((_, _, Some(acked))) if actual.read_started > *acked + ttl_ms + slack => {
                    violations.push(format!(
                        "ttl/{id} outlived its deadline by more than the slack"
                    ))
                }
                Some(_) => {}
            }
        }
        for (id, (_, sent_at, acked)) in &self.ttl {
            if acked.is_some()
                && actual.read_ended < *sent_at + ttl_ms
                && !actual.ttl.contains_key(id)
            {
                violations.push(format!("ttl/{id} acknowledged, unexpired, and missing"));
            }
        }
        violations
    }
}

enum Touched {
    Doc(&'static str, String),
    Ttl(String),
    Indexes,
}

fn touched(sent: &Sent) -> Vec<Touched> {
    sent.effects
        .iter()
        .map(|effect| match effect {
            Effect::Put {
                collection: TTL,
                doc,
            } => Touched::Ttl(doc["_id"].as_str().expect("an id").to_owned()),
            Effect::Put { collection, doc } => {
                Touched::Doc(collection, doc["_id"].as_str().expect("an id").to_owned())
            }
            Effect::Patch { collection, id, .. } | Effect::Delete { collection, id } => {
                Touched::Doc(collection, id.clone())
            }
            Effect::Reindex { .. } => Touched::Indexes,
        })
        .collect()
}

/// What a server holds, read through the HTTP API.
#[derive(Debug)]
pub struct ActualState {
    /// Documents of [`COLLECTIONS`].
    pub docs: BTreeMap<(&'static str, String), Value>,
    /// Index names of `items`.
    pub indexes: BTreeSet<String>,
    /// Documents of `ttl`.
    pub ttl: BTreeMap<String, Value>,
    /// When the reads began and ended.
    pub read_started: Instant,
    /// See `read_started`.
    pub read_ended: Instant,
}

/// Reads every document and the index names of `items`.
pub fn read_state(client: &Client) -> ActualState {
    let read_started = Instant::now();
    let mut docs = BTreeMap::new();
    for collection in COLLECTIONS {
        for doc in client.all_docs(collection) {
            let id = doc["_id"].as_str().expect("an id").to_owned();
            docs.insert((collection, id), doc);
        }
    }
    let ttl = client
        .all_docs(TTL)
        .into_iter()
        .map(|doc| (doc["_id"].as_str().expect("an id").to_owned(), doc))
        .collect();
    let listing = client
        .get("/v1/c")
        .expect("GET /v1/c answers")
        .expect_status(200);
    let indexes = listing["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .find(|c| c["name"] == "items")
        .and_then(|c| c["indexes"].as_array())
        .map(|list| {
            list.iter()
                .map(|index| match index {
                    Value::String(name) => name.clone(),
                    other => other["name"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    ActualState {
        docs,
        indexes,
        ttl,
        read_started,
        read_ended: Instant::now(),
    }
}
