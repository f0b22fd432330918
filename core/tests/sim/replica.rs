//! A simulated replica: a durable memory store that survives crashes, and everything else
//! (the state, the protocol machine, writes in progress) volatile, lost by a crash.
//!
//! ```text
//! Persist{entries} ─► apply to `state` now ─► queue Append (delayed) ─► store ─► on_persisted
//! InstallSnapshot  ─► replace `state` now ─► queue Install (delayed) ─► fresh store ─► on_snapshot_installed
//! crash            ─► queue and state lost; state rebuilt from the store; new machine
//! ```
//!
//! The node records raw facts (which LSNs it applied, whether an apply failed, whether its store
//! holds a forked chain); the invariants judge them.

use std::collections::VecDeque;

use cstore_core::replication::{PlantedBugs, Replica, ReplicaConfig};
use cstore_core::state::State;
use cstore_core::storage::{LogStore, MemoryStore};
use cstore_core::{LogEntry, LogPosition, Lsn, ReplicaId, Snapshot, Term};
use futures::FutureExt;

use super::network::ConnId;

fn ready<T>(future: impl Future<Output = T>) -> T {
    future.now_or_never().expect("the memory store never waits")
}

#[derive(Debug)]
pub enum ReplicaIo {
    Append(Vec<LogEntry>),
    Install(Snapshot),
}

#[derive(Debug)]
pub struct ReplicaNode {
    pub id: ReplicaId,
    config: ReplicaConfig,
    bugs: PlantedBugs,
    /// Survives crashes.
    pub durable: MemoryStore,
    pub durable_term: Term,
    /// The store holds entries of a chain the leader never wrote after this LSN (a fork set up
    /// at the start, or by the simulated deposed leader); gone when a snapshot replaces it.
    pub fork_base: Option<Lsn>,
    /// Volatile from here on.
    pub state: State,
    pub state_forked: bool,
    pub machine: Replica,
    pub io: VecDeque<(u64, ReplicaIo)>,
    io_tail: u64,
    pub conn: Option<ConnId>,
    /// The leader closed `conn`: the replica learns of it once the frames sent before the
    /// close arrived.
    pub closing: bool,
    pub reconnect_at: u64,
    /// LSNs applied to `state` since it was built, which was at `applied_base`.
    pub applied: Vec<Lsn>,
    pub applied_base: Lsn,
    pub apply_error: Option<String>,
    /// Invariant caches, reset when what they cover is replaced.
    pub applied_checked: usize,
    pub store_checked: Lsn,
    pub state_checked: Option<LogPosition>,
}

impl ReplicaNode {
    /// Whether this replica follows some collections only.
    pub fn is_subscribed(&self) -> bool {
        self.config.subscription.is_some()
    }

    pub fn new(
        id: ReplicaId,
        config: ReplicaConfig,
        bugs: PlantedBugs,
        durable: MemoryStore,
        durable_term: Term,
        fork_base: Option<Lsn>,
    ) -> ReplicaNode {
        let mut node = ReplicaNode {
            id,
            machine: Replica::new(config.clone(), LogPosition::START, Term(0)),
            config,
            bugs,
            durable,
            durable_term,
            fork_base,
            state: State::new(),
            state_forked: fork_base.is_some(),
            io: VecDeque::new(),
            io_tail: 0,
            conn: None,
            closing: false,
            reconnect_at: 0,
            applied: Vec::new(),
            applied_base: Lsn::ZERO,
            apply_error: None,
            applied_checked: 0,
            store_checked: Lsn::ZERO,
            state_checked: None,
        };
        node.restart();
        node
    }

    /// What the store holds last.
    pub fn durable_last(&self) -> LogPosition {
        ready(self.durable.state()).expect("store state").last
    }

    /// The last LSN of the leader's chain the store holds durably.
    pub fn durable_on_chain(&self) -> Lsn {
        self.fork_base.unwrap_or_else(|| self.durable_last().lsn)
    }

    /// Loses everything volatile and starts again from the store, as after a crash.
    pub fn restart(&mut self) {
        self.io.clear();
        self.conn = None;
        let snapshot = ready(self.durable.load_snapshot()).expect("load snapshot");
        let mut state = match &snapshot {
            Some(snapshot) => State::from_snapshot(snapshot).expect("a stored snapshot loads"),
            None => State::new(),
        };
        let log = ready(self.durable.state()).expect("store state");
        let entries = ready(self.durable.read_range(log.first, log.last.lsn.next()))
            .expect("the store reads back");
        for entry in &entries {
            // The store's chain was applied once already; replaying it must succeed.
            state.apply(entry).expect("a stored entry applies");
        }
        self.applied_base = state.applied().lsn;
        self.applied.clear();
        self.applied_checked = 0;
        self.state_checked = None;
        self.state = state;
        self.state_forked = self.fork_base.is_some();
        self.machine = Replica::new(self.config.clone(), log.last, self.durable_term);
        self.machine.plant_bugs(self.bugs);
    }

    fn queue(&mut self, now: u64, delay: u64, io: ReplicaIo) {
        self.io_tail = self.io_tail.max(now + delay);
        self.io.push_back((self.io_tail, io));
    }

    /// Applies verified entries to the state at once and queues their durable write.
    pub fn persist(&mut self, now: u64, delay: u64, entries: Vec<LogEntry>) {
        for entry in &entries {
            self.applied.push(entry.lsn);
            if let Err(rejection) = self.state.apply(entry) {
                self.apply_error.get_or_insert(format!(
                    "applying entry {} at {} failed: {rejection}",
                    entry.lsn,
                    self.state.applied()
                ));
            }
        }
        self.queue(now, delay, ReplicaIo::Append(entries));
    }

    /// Replaces the state at once and queues the durable replacement of the store.
    pub fn install(&mut self, now: u64, delay: u64, snapshot: Snapshot) {
        self.state = State::from_snapshot(&snapshot).expect("a verified snapshot loads");
        self.state_forked = false;
        self.applied_base = snapshot.position.lsn;
        self.applied.clear();
        self.applied_checked = 0;
        self.state_checked = None;
        self.queue(now, delay, ReplicaIo::Install(snapshot));
    }

    /// Carries out the first queued write if it is due; returns what completed.
    pub fn complete_io(&mut self, now: u64) -> Option<Result<Completed, String>> {
        if self.io.front().is_none_or(|(due, _)| *due > now) {
            return None;
        }
        let (_, io) = self.io.pop_front().expect("peeked");
        Some(match io {
            ReplicaIo::Append(entries) => {
                let last = entries.last().expect("non-empty").lsn;
                match ready(self.durable.append(&entries)) {
                    Ok(()) => Ok(Completed::Persisted(last)),
                    Err(error) => Err(format!("durable append of {last} failed: {error}")),
                }
            }
            ReplicaIo::Install(snapshot) => {
                ready(self.durable.install_snapshot(&snapshot)).expect("install snapshot");
                self.fork_base = None;
                self.store_checked = Lsn::ZERO;
                Ok(Completed::Installed(snapshot.position))
            }
        })
    }
}

/// A queued write that completed.
#[derive(Debug, Clone, Copy)]
pub enum Completed {
    Persisted(Lsn),
    Installed(LogPosition),
}
