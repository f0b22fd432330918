//! The replica's local data: the confirmed state (what the leader's log says) and, on top of
//! it, the writes made here that the leader has not confirmed yet.
//!
//! Reads must show a tab its own writes at once, offline or not, yet the confirmed state must
//! only ever change by applying the leader's entries (or it would stop matching the hash
//! chain). So reads go to a *view*: the confirmed state with every pending write applied in
//! order. It exists only while writes are pending; otherwise reads go straight to the
//! confirmed state. After each confirmed batch the view is rebuilt: pending writes the leader
//! already committed (their LSN is applied) are dropped, the rest re-applied. A pending write
//! that no longer applies locally stays queued but hidden: the leader, which is the
//! authority, will reject it (and then it is reported) or accept it.
//!
//! ```text
//!  leader entries ──► confirmed State ──clone──► view = confirmed + pending[0..n]
//!  local write ──────────────────────────────────► applied to the view, queued as pending
//! ```
//!
//! Rebuilding clones the confirmed state, which costs time proportional to the data held;
//! core's `Overlay` (pending transactions with undo, being built in core) replaces this.

use std::collections::{BTreeSet, VecDeque};

use cstore_core::state::{Rejection, State};
use cstore_core::{LogEntry, Lsn, Term, Txn};

/// One write made locally and not yet confirmed by the leader's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingWrite {
    /// Its place in this client's order (from 1).
    pub seq: u64,
    /// What it does.
    pub txn: Txn,
    /// The LSN the leader committed it at, once the leader answered.
    pub committed: Option<Lsn>,
}

/// What a change touched: the names of collections whose documents may differ.
pub type Touched = BTreeSet<String>;

/// The confirmed state and the pending writes over it.
#[derive(Debug, Default)]
pub struct LocalState {
    confirmed: State,
    pending: VecDeque<PendingWrite>,
    /// Confirmed state plus the pending writes that apply; `None` when nothing is pending.
    view: Option<State>,
    /// Pending writes that no longer apply to the view.
    hidden: BTreeSet<u64>,
}

impl LocalState {
    /// Local data starting from `confirmed`, nothing pending.
    pub fn new(confirmed: State) -> LocalState {
        LocalState {
            confirmed,
            ..LocalState::default()
        }
    }

    /// The state as the leader's log has it.
    pub fn confirmed(&self) -> &State {
        &self.confirmed
    }

    /// The state reads see: confirmed plus pending writes.
    pub fn current(&self) -> &State {
        self.view.as_ref().unwrap_or(&self.confirmed)
    }

    /// The writes not yet confirmed, in order.
    pub fn pending(&self) -> impl Iterator<Item = &PendingWrite> {
        self.pending.iter()
    }

    /// How many writes wait for confirmation.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Replaces the confirmed state (a snapshot was installed, or the local data was
    /// discarded) and re-applies the pending writes over it.
    pub fn replace_confirmed(&mut self, state: State) -> Touched {
        let mut touched = collections_of(&self.confirmed);
        touched.extend(collections_of(&state));
        self.confirmed = state;
        touched.extend(self.rebuild());
        touched
    }

    /// Applies confirmed entries in order. On a rejection (the local state disagrees with the
    /// leader's log: corrupt) returns the entry's LSN and why, with the state at the entry
    /// before.
    pub fn apply_confirmed(&mut self, entries: &[LogEntry]) -> Result<Touched, (Lsn, Rejection)> {
        let mut touched = Touched::new();
        let mut result = Ok(());
        for entry in entries {
            match self.confirmed.apply(entry) {
                Ok(applied) => {
                    touched.extend(entry.txn.ops.iter().map(|op| op.collection().to_owned()));
                    touched.extend(applied.expired.into_iter().map(|(c, _)| c));
                }
                Err(rejection) => {
                    result = Err((entry.lsn, rejection));
                    break;
                }
            }
        }
        if !self.pending.is_empty() || self.view.is_some() {
            touched.extend(self.rebuild());
        }
        result.map(|()| touched)
    }

    /// Applies a new local write to the view and queues it. A write that does not apply
    /// locally is refused (with the state unchanged) and not queued.
    pub fn apply_local(&mut self, seq: u64, txn: Txn) -> Result<Touched, Rejection> {
        if let Some(last) = self.pending.back() {
            assert!(seq > last.seq, "pending seq {seq} after {}", last.seq);
        }
        let mut view = match self.view.take() {
            Some(view) => view,
            None => self.confirmed.clone(),
        };
        let outcome = apply_txn(&mut view, &txn);
        if outcome.is_ok() || !self.pending.is_empty() {
            self.view = Some(view);
        }
        outcome?;
        let touched = txn
            .ops
            .iter()
            .map(|op| op.collection().to_owned())
            .collect();
        self.pending.push_back(PendingWrite {
            seq,
            txn,
            committed: None,
        });
        Ok(touched)
    }

    /// Re-queues writes loaded from the durable queue (after a reload) and applies them.
    pub fn restore_pending(&mut self, writes: Vec<PendingWrite>) -> Touched {
        self.pending.extend(writes);
        self.rebuild()
    }

    /// The leader committed write `seq` at `lsn`: it is dropped once that LSN is applied.
    pub fn mark_committed(&mut self, seq: u64, lsn: Lsn) -> Touched {
        if let Some(write) = self.pending.iter_mut().find(|w| w.seq == seq) {
            write.committed = Some(lsn);
        }
        if self.confirmed.applied().lsn >= lsn {
            return self.rebuild();
        }
        Touched::new()
    }

    /// The leader refused write `seq`: it leaves the queue and the view.
    pub fn reject(&mut self, seq: u64) -> Option<(PendingWrite, Touched)> {
        let index = self.pending.iter().position(|w| w.seq == seq)?;
        let write = self.pending.remove(index).expect("index found above");
        let mut touched: Touched = write
            .txn
            .ops
            .iter()
            .map(|op| op.collection().to_owned())
            .collect();
        touched.extend(self.rebuild());
        Some((write, touched))
    }

    /// Drops confirmed writes and recomputes the view from the confirmed state.
    fn rebuild(&mut self) -> Touched {
        let applied = self.confirmed.applied().lsn;
        self.pending
            .retain(|w| w.committed.is_none_or(|lsn| lsn > applied));
        let mut touched: Touched = self
            .pending
            .iter()
            .flat_map(|w| w.txn.ops.iter().map(|op| op.collection().to_owned()))
            .collect();
        if self.pending.is_empty() {
            if let Some(view) = self.view.take() {
                // Collections only the view had (created by a pending write) changed too.
                touched.extend(collections_of(&view));
            }
            self.hidden.clear();
            return touched;
        }
        let mut view = self.confirmed.clone();
        self.hidden.clear();
        for write in &self.pending {
            if apply_txn(&mut view, &write.txn).is_err() {
                self.hidden.insert(write.seq);
            }
        }
        self.view = Some(view);
        touched
    }
}

/// Applies `txn` to `state` as the next entry, with the state's own last timestamp (a
/// replica's clock never enters the state, so no document expires by it).
fn apply_txn(state: &mut State, txn: &Txn) -> Result<(), Rejection> {
    let entry = LogEntry::new(
        state.applied(),
        Term(0),
        state.last_timestamp(),
        txn.clone(),
    );
    state.apply(&entry).map(|_| ())
}

fn collections_of(state: &State) -> Touched {
    state
        .collections()
        .map(|(name, _)| name.to_owned())
        .collect()
}
