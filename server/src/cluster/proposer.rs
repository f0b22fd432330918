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

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use cstore_core::log::LogEntry;
use cstore_core::state::{Rejection, State, TxnError};
use cstore_core::{Hash, LogPosition, Lsn, Op, Term, TimestampMs, Txn};

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

/// Proposals handed to Raft by this member and not applied yet, oldest first, each kept as the
/// speculative log entry it was checked as (see [`Speculative`]), so a check re-applies them
/// without building them again.
#[derive(Debug, Default)]
pub struct InFlight {
    entries: Mutex<VecDeque<Speculative>>,
}

/// A proposal as the log entry it will be, for a check on the state: its transaction is moved
/// in, not copied, and its position (LSN, previous hash, hash) is set by each check to follow
/// whatever is applied before it.
///
/// Its hash is no SHA-256 but a marker made from its LSN: a speculative entry only has to
/// follow the one before it (`LogEntry::follows` compares the previous hash) and is taken off
/// again before the state is let go, and nothing that applying an entry records (document
/// versions, origin records) depends on the hash. The real hash is computed by the log store
/// and the state machine from the committed entry, as before. This is what makes a check of
/// a proposal and each re-application of the proposals in flight cheap: no hashing, no copy.
#[derive(Debug)]
pub struct Speculative {
    entry: LogEntry,
    footprint: Option<Footprint>,
}

/// What a transaction of document writes only (inserts, puts, patches, deletes: no collection,
/// index or TTL change) reads and writes: the documents it names. `None` for any other
/// transaction.
#[derive(Debug)]
struct Footprint {
    /// `(collection, _id)` of each operation.
    docs: Vec<(String, String)>,
}

impl Footprint {
    fn of(txn: &Txn) -> Option<Footprint> {
        let docs = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Insert { collection, doc }
                | Op::Put {
                    collection, doc, ..
                } => Some((collection.clone(), doc.id_str().into_owned())),
                Op::Patch { collection, id, .. } | Op::Delete { collection, id, .. } => {
                    Some((collection.clone(), id.clone()))
                }
                Op::CreateCollection { .. }
                | Op::DropCollection { .. }
                | Op::CreateIndex { .. }
                | Op::DropIndex { .. }
                | Op::SetTtl { .. } => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Footprint { docs })
    }
}

impl Speculative {
    /// The entry for `proposal`, not yet placed.
    pub fn new(proposal: Proposal) -> Speculative {
        let footprint = Footprint::of(&proposal.txn);
        Speculative {
            entry: LogEntry {
                lsn: Lsn::ZERO,
                term: Term(0),
                timestamp: proposal.timestamp,
                txn: proposal.txn,
                prev_hash: Hash::ZERO,
                hash: Hash::ZERO,
            },
            footprint,
        }
    }

    /// A copy of the proposal, for Raft.
    pub fn proposal(&self) -> Proposal {
        Proposal {
            timestamp: self.entry.timestamp,
            txn: self.entry.txn.clone(),
        }
    }

    /// The proposal back.
    pub fn into_proposal(self) -> Proposal {
        Proposal {
            timestamp: self.entry.timestamp,
            txn: self.entry.txn,
        }
    }

    /// True when this is the entry of `proposal`.
    fn is(&self, proposal: &Proposal) -> bool {
        self.entry.timestamp == proposal.timestamp && self.entry.txn == proposal.txn
    }
}

/// True when checking `batch` on `state` alone gives exactly the results it gets on `state`
/// with `in_flight` applied first, so the check can skip re-applying them. That holds when
/// every transaction on either side writes documents only (no collection, index or TTL
/// change), and the batch:
/// - names no document that one in flight names (its existence, version and content are
///   then the same on both states);
/// - names no origin client that one in flight names (the same origin records);
/// - writes to no collection with a unique index (a document in flight could hold or free a
///   key), and patches or deletes only in collections that exist already or that nothing in
///   flight writes to (else `collection_not_found` could become `not_found`);
/// - is no older than any entry in flight (every entry applies at the same clock, so the same
///   documents expire and new ones get the same expiry).
///
/// Anything else (the first write to a new collection, a schema change, a retry, writers of
/// the same document) takes the full check. Versions and positions differ between the two
/// states, but no rejection depends on them except through a document named on both sides.
fn independent(state: &State, in_flight: &VecDeque<Speculative>, batch: &[Speculative]) -> bool {
    if in_flight.is_empty() {
        return true;
    }
    let mut docs: HashSet<(&str, &str)> = HashSet::new();
    let mut collections: HashSet<&str> = HashSet::new();
    let mut must_exist: HashSet<&str> = HashSet::new();
    let mut clients: HashSet<&str> = HashSet::new();
    let mut oldest = TimestampMs(u64::MAX);
    for proposal in batch {
        let Some(footprint) = &proposal.footprint else {
            return false;
        };
        for ((collection, id), op) in footprint.docs.iter().zip(&proposal.entry.txn.ops) {
            docs.insert((collection, id));
            if collections.insert(collection)
                && state
                    .collection(collection)
                    .is_some_and(|c| c.indexes().iter().any(|i| i.spec().unique))
            {
                return false;
            }
            if matches!(op, Op::Patch { .. } | Op::Delete { .. })
                && state.collection(collection).is_none()
            {
                must_exist.insert(collection);
            }
        }
        if let Some(origin) = &proposal.entry.txn.origin {
            clients.insert(&origin.client);
        }
        oldest = oldest.min(proposal.entry.timestamp);
    }
    in_flight.iter().all(|earlier| {
        let Some(footprint) = &earlier.footprint else {
            return false;
        };
        earlier.entry.timestamp <= oldest
            && earlier
                .entry
                .txn
                .origin
                .as_ref()
                .is_none_or(|o| !clients.contains(o.client.as_str()))
            && footprint.docs.iter().all(|(collection, id)| {
                !docs.contains(&(collection.as_str(), id.as_str()))
                    && !must_exist.contains(collection.as_str())
            })
    })
}

/// Places `entry` right after `prev` (see [`Speculative`] for why its hash is a marker). Its
/// LSN is a guess (blank and membership entries may come between, and a check that skips the
/// proposals in flight places it right after the applied state), which only the versions of
/// documents written in the same flight and the origin records of the same flight see; a
/// client cannot name those versions before its write is answered, and a retry that meets a
/// speculative origin record waits for the real outcome (`is_inflight_duplicate`).
fn place(entry: &mut LogEntry, prev: LogPosition) {
    entry.lsn = prev.lsn.next();
    entry.prev_hash = prev.hash;
    let mut marker = [0x5a; 32];
    marker[..8].copy_from_slice(&entry.lsn.0.to_be_bytes());
    entry.hash = Hash(marker);
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Speculative>> {
        self.entries.lock().expect("in-flight lock poisoned")
    }

    /// How many are in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Adds a checked proposal about to be handed to Raft.
    pub fn push(&self, checked: Speculative) {
        self.lock().push_back(checked);
    }

    /// The state machine applied `proposal`: it and anything older leave the list (an older
    /// one that never reached the log was lost with a leadership change).
    pub fn retire(&self, proposal: &Proposal) {
        let mut entries = self.lock();
        if let Some(at) = entries.iter().position(|e| e.is(proposal)) {
            entries.drain(..=at);
        }
    }

    /// Forgets every proposal (leadership lost, or a proposal failed to reach Raft).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Checks `proposal` on `state` with every proposal in flight applied before it, and
    /// leaves `state` exactly as it was.
    pub fn check(&self, state: &mut State, proposal: &Proposal) -> Result<(), Rejection> {
        let mut batch = [Speculative::new(proposal.clone())];
        self.check_batch(state, &mut batch)
            .pop()
            .expect("one result per proposal")
    }

    /// Checks `batch` in order on `state` with every proposal in flight applied before it:
    /// each proposal that passes stays applied (speculatively) for the ones after it, as it
    /// will be in the log. Leaves `state` exactly as it was. One pass over the proposals in
    /// flight serves the whole batch, which is what makes concurrent writers cheap; and when
    /// the batch cannot see them (see [`independent`]: the common case of writers of different
    /// documents) they are not re-applied at all. A batch that cannot see them and only
    /// inserts and puts into existing collections without TTL or unique index is not applied
    /// either (`State::check_plain_writes`, checked against the speculation in debug builds).
    pub fn check_batch(
        &self,
        state: &mut State,
        batch: &mut [Speculative],
    ) -> Vec<Result<(), Rejection>> {
        let mut entries = self.lock();
        if !independent(state, &entries, batch) {
            return check_on(state, Some(&mut *entries), batch);
        }
        // A batch of plain inserts and puts is decided on the state as it is, without applying it.
        let latest = batch.iter().map(|p| p.entry.timestamp).max();
        let txns = batch.iter().map(|p| &p.entry.txn);
        let Some(verdicts) = latest.and_then(|at| state.check_plain_writes(txns, at)) else {
            return check_on(state, None, batch);
        };
        if cfg!(debug_assertions) {
            let expected = check_on(state, None, batch);
            assert_eq!(
                verdicts, expected,
                "the plain-write check and the speculation disagree"
            );
        }
        verdicts
    }

    /// [`InFlight::check_batch`] that always re-applies the proposals in flight.
    #[cfg(test)]
    fn check_batch_replaying(
        &self,
        state: &mut State,
        batch: &mut [Speculative],
    ) -> Vec<Result<(), Rejection>> {
        let mut entries = self.lock();
        check_on(state, Some(&mut *entries), batch)
    }
}

/// Checks `batch` in order on `state` with `in_flight` applied first (when given), and takes
/// every speculation off again.
fn check_on(
    state: &mut State,
    in_flight: Option<&mut VecDeque<Speculative>>,
    batch: &mut [Speculative],
) -> Vec<Result<(), Rejection>> {
    let mut applied = Vec::with_capacity(in_flight.as_ref().map_or(0, |f| f.len()) + batch.len());
    for earlier in in_flight.into_iter().flatten() {
        place(&mut earlier.entry, state.applied());
        // One that no longer applies was applied already (its retirement races with this
        // check) or will be a no-op: either way nothing after it depends on it.
        if let Ok(speculation) = state.apply_speculative(&earlier.entry) {
            applied.push(speculation);
        }
    }
    let results = batch
        .iter_mut()
        .map(|proposal| {
            place(&mut proposal.entry, state.applied());
            state
                .apply_speculative(&proposal.entry)
                .map(|speculation| applied.push(speculation))
        })
        .collect();
    for speculation in applied.into_iter().rev() {
        state.revert_speculation(speculation);
    }
    results
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
        inflight.push(Speculative::new(a.clone()));
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
        inflight.push(Speculative::new(mine.clone()));
        let retry = inflight.check(&mut state, &mine).unwrap_err();
        assert!(is_inflight_duplicate(&retry, &state));

        // In one batch, a proposal sees the ones before it.
        let mut batch = [insert("x"), insert("x"), insert("y")].map(Speculative::new);
        let results = inflight.check_batch(&mut state, &mut batch);
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

    /// A small deterministic generator (xorshift64*), so a failing seed reproduces.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len() as u64) as usize]
        }
    }

    /// Preconditions name nothing or the committed version of a document (never a speculative
    /// version, which is a guess on either path, so a client cannot aim at it).
    fn random_op(rng: &mut Rng, state: &State) -> Op {
        let collection = rng.pick(&["a", "b", "c"]).to_string();
        let id = rng.pick(&["x", "y", "z", "w"]).to_string();
        let u = rng.below(3);
        let doc = || RawDoc::from_value(&serde_json::json!({"_id": id, "u": u})).unwrap();
        let committed = state
            .collection(&collection)
            .and_then(|c| c.get(&id))
            .map_or(Lsn(1), |d| d.version);
        let if_version = |rng: &mut Rng| match rng.below(4) {
            0 => Some(Lsn::ZERO),
            1 => Some(committed),
            _ => None,
        };
        match rng.below(21) {
            0..=5 => Op::Insert {
                collection,
                doc: doc(),
            },
            6..=10 => Op::Put {
                collection,
                doc: doc(),
                if_version: if_version(rng),
            },
            11..=13 => Op::Patch {
                collection,
                id,
                patch: r#"{"p": 1}"#.into(),
                if_version: if_version(rng),
            },
            14..=16 => Op::Delete {
                collection,
                id,
                if_version: if_version(rng),
            },
            17 => Op::CreateIndex {
                collection,
                spec: cstore_core::index::IndexSpec::single("u", "u").unique(),
            },
            18 | 19 => Op::SetTtl {
                collection,
                ttl_ms: [None, Some(2), Some(4)][rng.below(3) as usize],
            },
            _ => Op::DropCollection { collection },
        }
    }

    fn random_proposal(rng: &mut Rng, state: &State, clock: &mut u64) -> Proposal {
        let ops = (0..1 + rng.below(2))
            .map(|_| random_op(rng, state))
            .collect();
        let origin = (rng.below(3) == 0).then(|| Origin {
            client: rng.pick(&["c1", "c2"]).into(),
            seq: 1 + rng.below(6),
        });
        // Mostly forward, sometimes a step back (a leader's clock is not monotonic).
        *clock += rng.below(3);
        if rng.below(3) == 0 {
            *clock = clock.saturating_sub(rng.below(4));
        }
        let mut txn = Txn {
            ops,
            origin: None,
            omitted: Vec::new(),
        };
        if let Some(origin) = origin {
            txn = txn.with_origin(origin);
        }
        Proposal {
            timestamp: TimestampMs(*clock),
            txn,
        }
    }

    /// What a check decided, without the LSN of a duplicate origin's last write or a
    /// document's version when they come from a speculative write (a guess on either path, see
    /// [`place`]).
    fn decisions(results: &[Result<(), Rejection>], applied: Lsn) -> Vec<String> {
        results
            .iter()
            .map(|result| match result {
                Ok(()) => "ok".to_string(),
                Err(Rejection {
                    op_index,
                    error:
                        TxnError::DuplicateOrigin {
                            client,
                            seq,
                            last_seq,
                            ..
                        },
                }) => format!("{op_index:?} duplicate {client} {seq} after {last_seq}"),
                Err(Rejection {
                    op_index,
                    error:
                        TxnError::VersionMismatch {
                            collection,
                            id,
                            expected,
                            actual,
                        },
                }) if *actual > applied => {
                    format!("{op_index:?} {collection}/{id} not at {expected:?} (in flight)")
                }
                Err(rejection) => format!("{rejection:?}"),
            })
            .collect()
    }

    #[test]
    fn skipping_the_proposals_in_flight_decides_exactly_as_re_applying_them() {
        let mut skipped = 0;
        for seed in 1..=500u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut state = State::new();
            let inflight = InFlight::default();
            let mut clock = 10;
            for step in 0..60 {
                if rng.below(3) == 0 && !inflight.is_empty() {
                    // The oldest in flight commits (or is a no-op) and retires.
                    let oldest = inflight.lock().front().unwrap().proposal();
                    let entry = LogEntry::new(
                        state.applied(),
                        Term(1),
                        oldest.timestamp,
                        oldest.txn.clone(),
                    );
                    if state.apply(&entry).is_err() {
                        state.skip_rejected(&entry);
                    }
                    inflight.retire(&oldest);
                    continue;
                }
                let proposals: Vec<Proposal> = (0..1 + rng.below(3))
                    .map(|_| random_proposal(&mut rng, &state, &mut clock))
                    .collect();
                let before = state.state_hash();
                let mut batch: Vec<Speculative> =
                    proposals.iter().cloned().map(Speculative::new).collect();
                if independent(&state, &inflight.lock(), &batch) && !inflight.is_empty() {
                    skipped += 1;
                }
                let fast = inflight.check_batch(&mut state, &mut batch);
                let full = inflight.check_batch_replaying(&mut state, &mut batch);
                assert_eq!(
                    decisions(&fast, state.applied().lsn),
                    decisions(&full, state.applied().lsn),
                    "seed {seed} step {step}: {proposals:?}"
                );
                assert_eq!(state.state_hash(), before, "seed {seed} step {step}");
                for (proposal, result) in batch.into_iter().zip(full) {
                    if result.is_ok() {
                        inflight.push(proposal);
                    }
                }
            }
        }
        // The fast path was taken often enough for the comparison to mean something.
        assert!(
            skipped > 300,
            "only {skipped} batches skipped the re-application"
        );
    }
}
