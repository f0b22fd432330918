//! Acknowledgement policies: which LSNs are durable on how many replicas, and the writes
//! waiting for that.
//!
//! ```text
//! sessions ──durable_lsn()──► AckTracker::set_durable(replica, lsn)
//! write committed at lsn ──► wait(lsn, Needed::Replicas(2), deadline) ──► WaitId
//! driver tick / ack       ──► poll(now) ──► [(WaitId, Durable | Unknown)] ──► answer writers
//! ```
//!
//! A write whose policy is `replicas:N` or `all` is answered `Durable` only once N replicas (or
//! every replica connected when it was written) acknowledged its LSN as durable, and `Unknown`
//! when its deadline passes first: never a false success. Core reads no clock, so the driver
//! passes `now` and the deadline; [`AckTracker::next_deadline`] tells it when to poll next.

use std::collections::BTreeMap;

use crate::error::ErrorCode;
use crate::types::{Lsn, ReplicaId, TimestampMs};

/// How many replicas must hold a write durably.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needed {
    /// At least this many replicas (at least 1).
    Replicas(u32),
    /// Every replica connected when the write was registered (none connected: satisfied).
    All,
}

/// Names one waiting write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaitId(pub u64);

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Enough replicas hold the LSN durably.
    Durable,
    /// The deadline passed first: the write is durable on the leader, and may or may not be on
    /// enough replicas.
    Unknown,
}

/// Why a wait was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("{0} writes already wait for replica acknowledgements")]
    TooManyWaiters(usize),
}

impl ErrorCode for AckError {
    fn code(&self) -> &'static str {
        match self {
            AckError::TooManyWaiters(_) => "too_many_waiters",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    lsn: Lsn,
    replicas: usize,
    deadline: TimestampMs,
}

/// Durable LSNs per connected replica, and writes waiting on them.
#[derive(Debug)]
pub struct AckTracker {
    durable: BTreeMap<ReplicaId, Lsn>,
    waiters: BTreeMap<WaitId, Waiter>,
    waiters_max: usize,
    next_id: u64,
}

impl AckTracker {
    /// A tracker that holds at most `waiters_max` waiting writes.
    pub fn new(waiters_max: usize) -> AckTracker {
        AckTracker {
            durable: BTreeMap::new(),
            waiters: BTreeMap::new(),
            waiters_max,
            next_id: 0,
        }
    }

    /// Records a connected replica's durable LSN (from its session's `durable_lsn()`).
    pub fn set_durable(&mut self, replica: ReplicaId, lsn: Lsn) {
        self.durable.insert(replica, lsn);
    }

    /// Forgets a replica that disconnected: it no longer counts.
    pub fn remove(&mut self, replica: ReplicaId) {
        self.durable.remove(&replica);
    }

    /// How many replicas are tracked.
    pub fn connected(&self) -> usize {
        self.durable.len()
    }

    /// A replica's durable LSN, if connected.
    pub fn durable_lsn(&self, replica: ReplicaId) -> Option<Lsn> {
        self.durable.get(&replica).copied()
    }

    /// Every tracked replica with its durable LSN.
    pub fn replicas(&self) -> impl Iterator<Item = (ReplicaId, Lsn)> + '_ {
        self.durable.iter().map(|(id, lsn)| (*id, *lsn))
    }

    /// The highest LSN durable on at least `n` replicas (`Lsn::ZERO` if fewer are connected):
    /// the "durable-on-N" watermark.
    pub fn durable_on(&self, n: usize) -> Lsn {
        assert!(n >= 1, "durable_on(0) is meaningless");
        let mut lsns: Vec<Lsn> = self.durable.values().copied().collect();
        lsns.sort_unstable_by(|a, b| b.cmp(a));
        lsns.get(n - 1).copied().unwrap_or(Lsn::ZERO)
    }

    /// True when `lsn` is durable on at least `n` replicas.
    pub fn is_durable(&self, lsn: Lsn, n: usize) -> bool {
        n == 0 || self.durable_on(n) >= lsn
    }

    /// Registers a write at `lsn` that waits until `needed` replicas hold it, or `deadline`.
    pub fn wait(
        &mut self,
        lsn: Lsn,
        needed: Needed,
        deadline: TimestampMs,
    ) -> Result<WaitId, AckError> {
        if self.waiters.len() >= self.waiters_max {
            return Err(AckError::TooManyWaiters(self.waiters.len()));
        }
        let replicas = match needed {
            Needed::Replicas(n) => {
                assert!(n >= 1, "replicas:0 is the local policy");
                n as usize
            }
            Needed::All => self.durable.len(),
        };
        let id = WaitId(self.next_id);
        self.next_id += 1;
        self.waiters.insert(
            id,
            Waiter {
                lsn,
                replicas,
                deadline,
            },
        );
        Ok(id)
    }

    /// Drops a wait whose writer went away.
    pub fn cancel(&mut self, id: WaitId) {
        self.waiters.remove(&id);
    }

    /// How many writes wait.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// The earliest deadline of a waiting write: when to poll at the latest.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        self.waiters.values().map(|w| w.deadline).min()
    }

    /// Ends the waits that are satisfied (`Durable`) or past their deadline (`Unknown`).
    pub fn poll(&mut self, now: TimestampMs) -> Vec<(WaitId, WaitOutcome)> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        let mut lsns: Vec<Lsn> = self.durable.values().copied().collect();
        lsns.sort_unstable_by(|a, b| b.cmp(a));
        let mut done = Vec::new();
        self.waiters.retain(|id, w| {
            let durable = w.replicas == 0 || lsns.get(w.replicas - 1).is_some_and(|l| *l >= w.lsn);
            if durable {
                done.push((*id, WaitOutcome::Durable));
                false
            } else if now >= w.deadline {
                done.push((*id, WaitOutcome::Unknown));
                false
            } else {
                true
            }
        });
        done
    }
}
