//! The simulated leader: a state, a memory log with compaction, one session per connection,
//! and the acknowledgement tracker. It keeps the full history (every entry and the state hash
//! after it) that the invariants compare replicas against; the leader itself never loses an
//! entry, so the history is the truth.

use std::collections::BTreeMap;
use std::sync::Arc;

use cstore_core::replication::{AckTracker, LeaderSession, SessionConfig, WaitId};
use cstore_core::state::State;
use cstore_core::storage::{LogStore, MemoryStore, StorageError};
use cstore_core::{Hash, LogEntry, LogPosition, Lsn, ReplicaId, Snapshot, Term, TimestampMs, Txn};
use futures::FutureExt;

use super::network::ConnId;
use super::replica::ReplicaNode;
use super::subscribed;

pub const LEADER_ID: ReplicaId = ReplicaId(1000);

/// A read the driver was asked for, done after a small delay.
#[derive(Debug)]
pub enum LeaderIo {
    Read { from: Lsn, to: Lsn },
    Snapshot { min_lsn: Lsn },
}

#[derive(Debug)]
pub struct LiveSession {
    pub replica: usize,
    pub session: LeaderSession,
}

/// A write that waits for replicas: its LSN and how many replicas must hold it.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub lsn: Lsn,
    pub replicas: usize,
}

#[derive(Debug)]
pub struct LeaderNode {
    pub term: Term,
    pub state: State,
    pub store: MemoryStore,
    /// Every entry ever committed: `history[lsn - 1]`.
    pub history: Vec<LogEntry>,
    /// The state hash after each entry: `state_hashes[lsn]` (index 0: the empty state).
    pub state_hashes: Vec<Hash>,
    /// The same for a replica subscribed to [`SUBSCRIPTION`] (the filtered snapshot's hash).
    pub subscribed_hashes: Vec<Hash>,
    pub snapshot: Arc<Snapshot>,
    pub sessions: BTreeMap<ConnId, LiveSession>,
    pub acks: AckTracker,
    pub waits: BTreeMap<WaitId, Waiting>,
    pub io: Vec<(u64, ConnId, LeaderIo)>,
    pub config: SessionConfig,
}

fn ready<T>(future: impl Future<Output = T>) -> T {
    future.now_or_never().expect("the memory store never waits")
}

fn subscribed_hash(state: &State) -> Hash {
    State::filter_snapshot(&state.snapshot(), subscribed)
        .expect("the leader's snapshot filters")
        .state_hash
}

impl LeaderNode {
    pub fn new(config: SessionConfig) -> LeaderNode {
        let state = State::new();
        LeaderNode {
            term: Term(1),
            state_hashes: vec![state.state_hash()],
            subscribed_hashes: vec![subscribed_hash(&state)],
            snapshot: Arc::new(state.snapshot()),
            state,
            store: MemoryStore::new(),
            history: Vec::new(),
            sessions: BTreeMap::new(),
            acks: AckTracker::new(10_000),
            waits: BTreeMap::new(),
            io: Vec::new(),
            config,
        }
    }

    /// The state hash `node` must have at `lsn`: the leader's, or the filtered one for a
    /// subscribed replica.
    pub fn expected_hash(&self, node: &ReplicaNode, lsn: Lsn) -> Hash {
        if node.is_subscribed() {
            self.subscribed_hashes[lsn.0 as usize]
        } else {
            self.state_hashes[lsn.0 as usize]
        }
    }

    pub fn committed(&self) -> LogPosition {
        self.state.applied()
    }

    /// Validates and commits a transaction: the new LSN, or `None` if the state rejects it.
    pub fn write(&mut self, txn: Txn, now: u64) -> Option<Lsn> {
        let entry = LogEntry::new(self.committed(), self.term, TimestampMs(now), txn);
        self.state.apply(&entry).ok()?;
        ready(self.store.append(std::slice::from_ref(&entry))).expect("leader append");
        self.history.push(entry);
        self.state_hashes.push(self.state.state_hash());
        self.subscribed_hashes.push(subscribed_hash(&self.state));
        Some(self.committed().lsn)
    }

    /// Checkpoints the state and drops the log up to `keep` entries before it.
    pub fn compact(&mut self, keep: u64) {
        let snapshot = self.state.snapshot();
        let through = Lsn(snapshot.position.lsn.0.saturating_sub(keep));
        ready(self.store.save_snapshot(&snapshot)).expect("leader snapshot");
        if through > Lsn::ZERO {
            ready(self.store.compact_prefix(through)).expect("leader compaction");
        }
        self.snapshot = Arc::new(snapshot);
    }

    /// The latest snapshot if it is at `min_lsn` or later, else a fresh checkpoint.
    pub fn snapshot_at_least(&mut self, min_lsn: Lsn) -> Arc<Snapshot> {
        if self.snapshot.position.lsn < min_lsn {
            let snapshot = self.state.snapshot();
            ready(self.store.save_snapshot(&snapshot)).expect("leader snapshot");
            self.snapshot = Arc::new(snapshot);
        }
        self.snapshot.clone()
    }

    pub fn read(&self, from: Lsn, to: Lsn) -> Result<Vec<LogEntry>, StorageError> {
        ready(self.store.read_range(from, to))
    }

    /// The hash of the committed entry at `lsn` (`Hash::ZERO` at 0), if committed.
    pub fn hash_at(&self, lsn: Lsn) -> Option<Hash> {
        if lsn == Lsn::ZERO {
            return Some(Hash::ZERO);
        }
        self.history.get(lsn.0 as usize - 1).map(|e| e.hash)
    }

    /// True when `position` is on the leader's chain.
    pub fn on_chain(&self, position: LogPosition) -> bool {
        self.hash_at(position.lsn) == Some(position.hash)
    }

    /// Brings the tracker in line with the live sessions.
    pub fn sync_acks(&mut self) {
        let live: BTreeMap<ReplicaId, Lsn> = self
            .sessions
            .values()
            .filter_map(|s| Some((s.session.replica_id()?, s.session.durable_lsn())))
            .collect();
        let gone: Vec<ReplicaId> = self
            .acks
            .replicas()
            .map(|(id, _)| id)
            .filter(|id| !live.contains_key(id))
            .collect();
        for id in gone {
            self.acks.remove(id);
        }
        for (id, lsn) in live {
            self.acks.set_durable(id, lsn);
        }
    }
}
