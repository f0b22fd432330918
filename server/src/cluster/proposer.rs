//! The leader's proposer: checks a write on the state before it enters the log, so a
//! transaction that would not apply (a unique clash, a failed `if_version`, a duplicate origin)
//! is refused at once and never takes a log slot on every member and replica.
//!
//! ```text
//!  write(txn) ─► ready for this term? (ReadIndex once per term: every entry of earlier terms
//!      │          is applied, so the check sees them)
//!      ├─ queue ─► the proposer task takes every write waiting (one batch; its order is the
//!      │           log order):
//!      │    state@applied ─► + in flight ─► + each write of the batch: Err → refuse (nothing
//!      │                  ◄── revert every speculation ◄──     logged); Ok → stays on for the next
//!      │    in flight += the ones that passed; client_write_ff each, in order
//!      └─ await the outcome (the state machine retires it from "in flight" when it applies)
//! ```
//!
//! The check is exact (core's `State::apply_speculative` applies as `State::apply` would) as
//! long as the entries between the applied state and this one are exactly the ones in flight,
//! which holds while this member leads: openraft appends proposals in the order they are
//! submitted, blank and membership entries touch no client collection, and leadership loss
//! empties the list. Where it does not hold the state machine still decides: an entry that does
//! not apply stays in the log as a no-op, the same on every member.

use std::collections::VecDeque;
use std::sync::Mutex;

use cstore_core::log::LogEntry;
use cstore_core::state::{Rejection, State, TxnError};
use cstore_core::{LogPosition, Term};

use super::types::{ClusterTypes, Proposal};

/// Most proposals in flight at once; more writers wait in the queue (backpressure).
pub const IN_FLIGHT_MAX: usize = 4096;
/// Most writes checked in one pass.
pub const BATCH_MAX: usize = 512;
/// Most writes waiting in the queue; more writers wait to enqueue (backpressure).
pub const QUEUE_MAX: usize = 8192;

/// A write waiting to be checked and proposed.
#[derive(Debug)]
pub struct Pending {
    /// What to propose.
    pub proposal: Proposal,
    /// Where the check's answer goes.
    pub reply: tokio::sync::oneshot::Sender<Checked>,
}

/// The answer of the check to a writer.
pub enum Checked {
    /// Handed to Raft: the outcome comes through this receiver once it applies.
    Proposed(
        openraft::alias::OneshotReceiverOf<
            ClusterTypes,
            openraft::raft::ClientWriteResult<ClusterTypes>,
        >,
    ),
    /// A retry of a write still in flight: wait for it, then ask again.
    InFlightDuplicate(Proposal),
    /// Refused; nothing was proposed.
    Refused(crate::leader::WriteError),
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Checked::Proposed(_) => f.write_str("Proposed"),
            Checked::InFlightDuplicate(_) => f.write_str("InFlightDuplicate"),
            Checked::Refused(e) => write!(f, "Refused({e})"),
        }
    }
}

/// Proposals handed to Raft by this member and not applied yet, oldest first.
#[derive(Debug, Default)]
pub struct InFlight {
    proposals: Mutex<VecDeque<Proposal>>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Proposal>> {
        self.proposals.lock().expect("in-flight lock poisoned")
    }

    /// How many are in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Adds a proposal about to be handed to Raft.
    pub fn push(&self, proposal: Proposal) {
        self.lock().push_back(proposal);
    }

    /// The state machine applied `proposal`: it and anything older leave the list (an older
    /// one that never reached the log was lost with a leadership change).
    pub fn retire(&self, proposal: &Proposal) {
        let mut proposals = self.lock();
        if let Some(at) = proposals.iter().position(|p| p == proposal) {
            proposals.drain(..=at);
        }
    }

    /// Forgets every proposal (leadership lost, or a proposal failed to reach Raft).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Checks `proposal` on `state` with every proposal in flight applied before it, and
    /// leaves `state` exactly as it was.
    pub fn check(&self, state: &mut State, proposal: &Proposal) -> Result<(), Rejection> {
        self.check_batch(state, std::slice::from_ref(proposal))
            .pop()
            .expect("one result per proposal")
    }

    /// Checks `batch` in order on `state` with every proposal in flight applied before it:
    /// each proposal that passes stays applied (speculatively) for the ones after it, as it
    /// will be in the log. Leaves `state` exactly as it was. One pass over the proposals in
    /// flight serves the whole batch, which is what makes concurrent writers cheap.
    pub fn check_batch(&self, state: &mut State, batch: &[Proposal]) -> Vec<Result<(), Rejection>> {
        let proposals = self.lock();
        let mut applied = Vec::with_capacity(proposals.len() + batch.len());
        for earlier in proposals.iter() {
            // One that no longer applies was applied already (its retirement races with this
            // check) or will be a no-op: either way nothing after it depends on it.
            if let Ok(speculation) =
                state.apply_speculative(&speculative_entry(state.applied(), earlier))
            {
                applied.push(speculation);
            }
        }
        let results = batch
            .iter()
            .map(|proposal| {
                state
                    .apply_speculative(&speculative_entry(state.applied(), proposal))
                    .map(|speculation| applied.push(speculation))
            })
            .collect();
        for speculation in applied.into_iter().rev() {
            state.revert_speculation(speculation);
        }
        results
    }
}

/// The entry a proposal would be after `prev`. Its LSN and term are guesses (blank and
/// membership entries may come between), which only the versions of documents written in the
/// same flight see; a client cannot name those versions before its write is answered.
fn speculative_entry(prev: LogPosition, proposal: &Proposal) -> LogEntry {
    LogEntry::new(prev, Term(0), proposal.timestamp, proposal.txn.clone())
}

/// True when `rejection` is a retry of a write that is in flight (its origin's seq is the
/// newest one seen, but not yet applied): the answer must wait for that write's outcome.
pub fn is_inflight_duplicate(rejection: &Rejection, state: &State) -> bool {
    match &rejection.error {
        TxnError::DuplicateOrigin { client, seq, .. } => state
            .origin(client)
            .is_none_or(|applied| applied.seq < *seq),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::TimestampMs;
    use cstore_core::doc::RawDoc;
    use cstore_core::error::ErrorCode;
    use cstore_core::txn::{Op, Origin, Txn};

    fn insert(id: &str) -> Proposal {
        let doc = RawDoc::from_value(&serde_json::json!({"_id": id})).unwrap();
        Proposal {
            timestamp: TimestampMs(1),
            txn: Txn::single(Op::Insert {
                collection: "c".into(),
                doc,
            }),
        }
    }

    #[test]
    fn checks_see_the_proposals_in_flight_and_leave_the_state_alone() {
        let mut state = State::new();
        let inflight = InFlight::default();
        let before = state.state_hash();
        let a = insert("a");
        inflight.check(&mut state, &a).unwrap();
        inflight.push(a.clone());
        // A second insert of "a" clashes with the one in flight.
        let clash = inflight.check(&mut state, &insert("a")).unwrap_err();
        assert_eq!(clash.code(), "already_exists");
        inflight.check(&mut state, &insert("b")).unwrap();
        assert_eq!(state.state_hash(), before);

        // A retry of an origin in flight is recognised as such.
        let mut mine = insert("m");
        mine.txn = mine.txn.with_origin(Origin {
            client: "cl".into(),
            seq: 1,
        });
        inflight.check(&mut state, &mine).unwrap();
        inflight.push(mine.clone());
        let retry = inflight.check(&mut state, &mine).unwrap_err();
        assert!(is_inflight_duplicate(&retry, &state));

        // In one batch, a proposal sees the ones before it.
        let results = inflight.check_batch(&mut state, &[insert("x"), insert("x"), insert("y")]);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().code(), "already_exists");
        assert_eq!(state.state_hash(), before);

        // Applied for real, they retire; a later check sees the applied state.
        state
            .apply(&LogEntry::new(
                state.applied(),
                Term(1),
                a.timestamp,
                a.txn.clone(),
            ))
            .unwrap();
        inflight.retire(&a);
        assert_eq!(inflight.len(), 1);
        inflight.retire(&mine);
        assert!(inflight.is_empty());
        let clash = inflight.check(&mut state, &insert("a")).unwrap_err();
        assert_eq!(clash.code(), "already_exists");
    }
}
