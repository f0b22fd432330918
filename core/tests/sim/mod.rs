//! A deterministic simulator of leader-to-replica replication (in the manner of TigerBeetle's
//! VOPR and raft-rs's test `Network`).
//!
//! One seed decides everything: how many replicas, how they start (empty, behind, or on a
//! forked chain), how hostile the network is (drops, delays, reordering, duplicates, flipped
//! bits, tampered entries, frames leaked across reconnects), and when replicas crash, get cut
//! off or isolated, when the leader compacts or changes term, and what clients write (some
//! writes wait for `replicas:N` or `all`). The invariants in [`invariants`] run after every
//! step. Then everything heals, writes stop, and all replicas must converge on the leader's
//! last entry and state within a bounded simulated time.
//!
//! ```text
//! step: advance the clock ─► chaos (faults, writes) ─► deliver due packets ─► leader reads
//!       ─► replica writes complete ─► ticks ─► reconnects ─► resolve waits ─► invariants
//! ```
//!
//! The files: `rng` (the seed), `network` (the hostile wire), `leader` and `replica` (the
//! simulated nodes), `drive` (carrying out commands), `workload` (client writes) and
//! `invariants` (one file per property).

mod drive;
pub mod invariants;
pub mod leader;
pub mod network;
pub mod replica;
/// The simulators' shared randomness (core's `testing` feature).
pub mod rng {
    pub use cstore_core::sim::SimRng as Rng;
}
pub mod workload;

use std::collections::BTreeMap;
use std::fmt;

use cstore_core::replication::{Needed, PlantedBugs, ReplicaConfig, SessionConfig};
use cstore_core::storage::{LogStore, MemoryStore};
use cstore_core::{LogEntry, Lsn, ReplicaId, Term, TimestampMs, Txn};
use futures::FutureExt;

use leader::{LeaderNode, Waiting};
use network::{ConnId, NetFaults, NetStats, Network};
use replica::ReplicaNode;
use rng::Rng;

/// Simulated time allowed for convergence after healing.
const HEAL_MS_MAX: u64 = 30_000;

/// Why a seed failed, and how to run it again.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub now_ms: u64,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at step {} ({} ms): {}\n  reproduce: SIM_SEED={} cargo test -p cstore-core --test simulation replication_keeps",
            self.seed, self.step, self.now_ms, self.message, self.seed
        )
    }
}

/// What a run did; equal reports for equal seeds prove determinism.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub replicas: usize,
    pub steps: u64,
    pub now_ms: u64,
    /// Simulated time from healing to convergence.
    pub heal_ms: u64,
    pub final_lsn: u64,
    pub writes: u64,
    pub rejected: u64,
    pub acked_writes: u64,
    pub unknown_writes: u64,
    pub compactions: u64,
    pub crashes: u64,
    pub cuts: u64,
    pub isolations: u64,
    pub forks: u64,
    pub term_bumps: u64,
    pub snapshots_installed: u64,
    pub closes: BTreeMap<&'static str, u64>,
    pub net: NetStats,
}

/// How often each kind of chaos strikes in this seed (zero: never).
#[derive(Debug, Clone)]
struct Knobs {
    fault_steps: u64,
    write: f64,
    wait: f64,
    compact: f64,
    crash: f64,
    cut: f64,
    isolate: f64,
    fork: f64,
    term: f64,
    io_delay_ms_max: u64,
    persist_delay_ms_max: u64,
}

/// A write acknowledged to its client as durable on `replicas` replicas.
#[derive(Debug, Clone, Copy)]
pub struct AckedWrite {
    pub lsn: Lsn,
    pub replicas: usize,
}

pub struct World {
    seed: u64,
    rng: Rng,
    knobs: Knobs,
    pub now: u64,
    pub step: u64,
    pub net: Network,
    pub leader: LeaderNode,
    pub replicas: Vec<ReplicaNode>,
    pub acked: Vec<AckedWrite>,
    next_conn: u64,
    /// After healing: no more faults, no more writes.
    healing: bool,
    /// `SIM_TRACE=1`: print every packet delivered and every close.
    trace: bool,
    failure: Option<String>,
    report: Report,
}

/// What a run may change beyond the seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Bugs planted in every replica's state machine.
    pub bugs: PlantedBugs,
    /// A network that only delays (no drops, duplicates, reordering, damage, leaks or
    /// isolation); crashes, cuts, forks, compaction and term changes still happen.
    pub quiet_network: bool,
}

/// Runs one seed to the end: chaos, then healing and convergence. A panic (a broken assertion
/// in core or in the simulated drivers) is a failure of the seed too.
pub fn run(seed: u64, options: Options) -> Result<Report, Failure> {
    let outcome = std::panic::catch_unwind(|| run_unguarded(seed, options));
    outcome.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(Failure {
            seed,
            step: 0,
            now_ms: 0,
            message: format!("panicked: {message}"),
        })
    })
}

fn run_unguarded(seed: u64, options: Options) -> Result<Report, Failure> {
    let mut world = World::new(seed, options);
    for _ in 0..world.knobs.fault_steps {
        world.step()?;
    }
    world.heal();
    let healed_at = world.now;
    let deadline = world.now + HEAL_MS_MAX;
    while !world.converged() {
        if world.now > deadline {
            let why = world.divergence();
            return Err(world.fail(format!(
                "no convergence {HEAL_MS_MAX} ms after healing: {why}"
            )));
        }
        world.step()?;
    }
    world.report.steps = world.step;
    world.report.now_ms = world.now;
    world.report.heal_ms = world.now - healed_at;
    world.report.final_lsn = world.leader.committed().lsn.0;
    world.report.net = world.net.stats.clone();
    Ok(world.report)
}

fn ready<T>(future: impl Future<Output = T>) -> T {
    future.now_or_never().expect("the memory store never waits")
}

impl World {
    fn new(seed: u64, options: Options) -> World {
        let bugs = options.bugs;
        let mut rng = Rng::new(seed);
        let knobs = Knobs {
            fault_steps: rng.range(100, 220),
            write: 0.2 + rng.below(40) as f64 / 100.0,
            wait: rng.below(80) as f64 / 100.0,
            compact: rng.maybe(0.05),
            crash: rng.maybe(0.03),
            cut: rng.maybe(0.03),
            isolate: rng.maybe(0.01),
            fork: rng.maybe(0.01),
            term: rng.maybe(0.005),
            io_delay_ms_max: rng.range(0, 5),
            persist_delay_ms_max: rng.range(0, 40),
        };
        let faults = NetFaults {
            drop: rng.maybe(0.03),
            duplicate: rng.maybe(0.05),
            reorder: rng.maybe(0.03),
            corrupt: rng.maybe(0.01),
            tamper: rng.maybe(0.02),
            splice: rng.maybe(0.01),
            leak: rng.maybe(0.3),
            delay_ms_max: rng.range(0, 20),
        };
        let session = SessionConfig {
            window_entries_max: rng.range(1, 8),
            window_bytes_max: rng.range(200, 4_000),
            read_entries_max: rng.range(1, 4),
            frame_bytes_max: rng.range(100, 2_000) as usize,
            snapshot_chunk_bytes: rng.range(16, 512) as usize,
            heartbeat_interval_ms: 50,
            hello_timeout_ms: 300,
            replica_timeout_ms: 400,
            ack_timeout_ms: 400,
            lag_entries_max: rng.range(20, 200),
            lag_timeout_ms: 2_000,
            // Below the replicas' leader timeout (200 ms), as it must be.
            ahead_wait_ms: 100,
            // One seed in five plays an older leader (version 2 only): the replicas are
            // refused, fall back, and acknowledge every batch unasked.
            protocol_version_max: if rng.chance(0.2) {
                cstore_core::replication::PROTOCOL_VERSION_MIN
            } else {
                cstore_core::replication::PROTOCOL_VERSION
            },
        };
        let mut leader = LeaderNode::new(session);
        for _ in 0..rng.range(0, 30) {
            leader.write(workload::txn(&mut rng), 0);
        }
        if rng.chance(0.5) {
            let keep = rng.range(0, 3);
            leader.compact(keep);
        }
        let count = rng.range(1, 4) as usize;
        let replicas = (0..count)
            .map(|index| {
                let id = ReplicaId(index as u64 + 1);
                let mut config = ReplicaConfig::new(id);
                config.leader_timeout_ms = 200;
                // The second replica follows one collection only (no draw from the rng, so
                // seeds keep their meaning).
                if index == 1 {
                    config.subscription =
                        Some(SUBSCRIPTION.iter().map(|c| c.to_string()).collect());
                }
                let (store, fork_base) =
                    initial_store(&mut rng, &leader, config.subscription.is_some());
                let term = Term(rng.below(2));
                ReplicaNode::new(id, config, bugs, store, term, fork_base)
            })
            .collect();
        let (faults, knobs) = if options.quiet_network {
            let quiet = NetFaults {
                delay_ms_max: faults.delay_ms_max,
                ..NetFaults::default()
            };
            // Compaction during transfers is where the subtle sequences are.
            let compact = knobs.compact.max(0.05);
            let knobs = Knobs {
                isolate: 0.0,
                compact,
                ..knobs
            };
            (quiet, knobs)
        } else {
            (faults, knobs)
        };
        World {
            seed,
            net: Network::new(count, faults),
            rng,
            knobs,
            now: 0,
            step: 0,
            leader,
            replicas,
            acked: Vec::new(),
            next_conn: 0,
            healing: false,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            failure: None,
            report: Report {
                replicas: count,
                ..Report::default()
            },
        }
    }

    fn fail(&self, message: String) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            now_ms: self.now,
            message,
        }
    }

    fn step(&mut self) -> Result<(), Failure> {
        self.step += 1;
        // As the server's hub does while a write waits for replicas (it raises the flag before
        // the write commits; here a wait is known only after, so its first entries may go
        // unasked and wait for the next ask).
        let awaited = !self.leader.waits.is_empty();
        for live in self.leader.sessions.values_mut() {
            live.session.set_acks_awaited(awaited);
        }
        self.now += self.rng.range(1, 10);
        if !self.healing {
            self.chaos();
        }
        self.deliver();
        self.closings();
        self.leader_io();
        self.replica_io();
        self.ticks();
        self.reconnects();
        self.resolve_waits();
        if let Some(message) = self.failure.take() {
            return Err(self.fail(message));
        }
        invariants::check(self).map_err(|message| self.fail(message))
    }

    /// Stops all faults and writes; heals isolation.
    fn heal(&mut self) {
        self.healing = true;
        self.net.faults = NetFaults::default();
        self.net.isolated_until.iter_mut().for_each(|t| *t = 0);
    }

    fn chaos(&mut self) {
        let k = self.knobs.clone();
        if self.rng.chance(k.write) {
            for _ in 0..self.rng.range(1, 3) {
                let txn = workload::txn(&mut self.rng);
                self.client_write(txn);
            }
        }
        if self.rng.chance(k.compact) {
            let keep = self.rng.range(0, 3);
            self.leader.compact(keep);
            self.report.compactions += 1;
        }
        if self.rng.chance(k.crash) {
            let r = self.rng.below(self.replicas.len() as u64) as usize;
            self.disconnect(r);
            self.replicas[r].restart();
            self.replicas[r].reconnect_at = self.now + self.rng.range(5, 100);
            self.report.crashes += 1;
        }
        if self.rng.chance(k.cut) {
            let r = self.rng.below(self.replicas.len() as u64) as usize;
            self.disconnect(r);
            self.report.cuts += 1;
        }
        if self.rng.chance(k.isolate) {
            let r = self.rng.below(self.replicas.len() as u64) as usize;
            self.net.isolated_until[r] = self.now + self.rng.range(50, 600);
            self.report.isolations += 1;
        }
        if self.rng.chance(k.fork) {
            let r = self.rng.below(self.replicas.len() as u64) as usize;
            self.fork(r);
        }
        if self.rng.chance(k.term) {
            // A new term ends every session, as a leader change would.
            self.leader.term = Term(self.leader.term.0 + 1);
            for r in 0..self.replicas.len() {
                self.disconnect(r);
            }
            self.report.term_bumps += 1;
        }
    }

    /// The replica followed a deposed leader for a while: it crashes and restarts with a few
    /// entries of another history on top of its durable log. (What it held before stays: it
    /// may have acknowledged it.)
    fn fork(&mut self, r: usize) {
        self.disconnect(r);
        let node = &mut self.replicas[r];
        let mut prev = store_last(&node.durable);
        node.fork_base.get_or_insert(prev.lsn);
        let mut forked = Vec::new();
        for i in 0..self.rng.range(1, 4) {
            let entry = LogEntry::new(prev, Term(1), TimestampMs(2_000_000 + i), Txn::tick());
            prev = entry.position();
            forked.push(entry);
        }
        ready(node.durable.append(&forked)).expect("fork");
        node.restart();
        node.reconnect_at = self.now + self.rng.range(5, 100);
        self.report.forks += 1;
    }

    fn client_write(&mut self, txn: Txn) {
        let Some(lsn) = self.leader.write(txn, self.now) else {
            self.report.rejected += 1;
            return;
        };
        self.report.writes += 1;
        let committed = self.leader.committed();
        let conns: Vec<ConnId> = self.leader.sessions.keys().copied().collect();
        for conn in conns {
            let now = self.ts();
            let commands = self.session(conn).on_committed(now, committed);
            self.leader_commands(conn, commands);
        }
        if self.rng.chance(self.knobs.wait) {
            self.leader.sync_acks();
            let needed = if self.rng.chance(0.3) {
                Needed::All
            } else {
                Needed::Replicas(self.rng.range(1, self.replicas.len() as u64) as u32)
            };
            let replicas = match needed {
                Needed::Replicas(n) => n as usize,
                Needed::All => self.leader.acks.connected(),
            };
            let deadline = TimestampMs(self.now + self.rng.range(20, 400));
            let id = self
                .leader
                .acks
                .wait(lsn, needed, deadline)
                .expect("room to wait");
            self.leader.waits.insert(id, Waiting { lsn, replicas });
        }
    }

    /// Every replica holds and has applied the leader's last entry, durably, and the leader
    /// knows it; its state hash is the leader's (checked last: it costs an encoding).
    fn converged(&self) -> bool {
        let committed = self.leader.committed();
        self.replicas.iter().all(|node| self.caught_up(node))
            && self.replicas.iter().all(|node| {
                node.state.state_hash() == self.leader.expected_hash(node, committed.lsn)
            })
    }

    fn caught_up(&self, node: &ReplicaNode) -> bool {
        let committed = self.leader.committed();
        node.conn.is_some()
            && node.machine.is_streaming()
            && node.io.is_empty()
            && node.fork_base.is_none()
            && node.durable_last() == committed
            && node.state.applied() == committed
            && self.leader.acks.durable_lsn(node.id) == Some(committed.lsn)
    }

    /// Why the replicas have not converged, for the failure message.
    fn divergence(&self) -> String {
        let mut why = vec![format!("leader at {}", self.leader.committed())];
        for (r, node) in self.replicas.iter().enumerate() {
            why.push(format!(
                "replica {r}: caught up {}, connected {}, streaming {}, durable {}, applied {}, acked {:?}, io {}",
                self.caught_up(node),
                node.conn.is_some(),
                node.machine.is_streaming(),
                node.durable_last(),
                node.state.applied(),
                self.leader.acks.durable_lsn(node.id),
                node.io.len()
            ));
        }
        why.join("; ")
    }
}

/// A replica's store at the start: empty, a prefix of the leader's log, or a forked chain
/// (with the LSN where it leaves the leader's).
fn initial_store(
    rng: &mut Rng,
    leader: &LeaderNode,
    subscribed: bool,
) -> (MemoryStore, Option<Lsn>) {
    let mut store = MemoryStore::new();
    let history: Vec<LogEntry> = if subscribed {
        leader.history.iter().map(as_received).collect()
    } else {
        leader.history.clone()
    };
    match rng.below(3) {
        0 => (store, None),
        1 => {
            let m = rng.range(0, history.len() as u64) as usize;
            ready(store.append(&history[..m])).expect("prefix");
            (store, None)
        }
        _ => {
            let m = rng.range(0, history.len() as u64) as usize;
            ready(store.append(&history[..m])).expect("prefix");
            let mut prev = store_last(&store);
            let mut forked = Vec::new();
            for i in 0..rng.range(1, 4) {
                let entry = LogEntry::new(prev, Term(1), TimestampMs(1_000_000 + i), Txn::tick());
                prev = entry.position();
                forked.push(entry);
            }
            ready(store.append(&forked)).expect("fork");
            (store, Some(Lsn(m as u64)))
        }
    }
}

/// The collections a subscribed replica follows.
pub const SUBSCRIPTION: [&str; 1] = ["users"];

/// Whether a subscribed replica receives this collection's operations.
pub fn subscribed(collection: &str) -> bool {
    SUBSCRIPTION.contains(&collection)
}

/// An entry as a subscribed replica receives it from the leader.
pub fn as_received(entry: &LogEntry) -> LogEntry {
    entry.filtered(subscribed).unwrap_or_else(|| entry.clone())
}

fn store_last(store: &MemoryStore) -> cstore_core::LogPosition {
    ready(store.state()).expect("state").last
}
