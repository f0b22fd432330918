//! Optimistic writes: a client's pending transactions shown on top of the replicated state.
//!
//! An offline-first replica applies a user's write at once, long before the leader confirms it
//! (it may be offline for days). The write is shown by applying it *tentatively* on top of the
//! state the log built. When confirmed entries arrive, every tentative write comes off, the
//! entries apply, the writes they confirm are dropped, and the rest go back on top: a rebase,
//! as in Replicache. The leader stays the authority: what the replica shows converges on the
//! log, whatever it guessed.
//!
//! ```text
//!   state@n + [w5, w6, w7]         entries n+1..m arrive (n+2 carries this client's w5)
//!        │ lift: revert w7, w6, w5 (reverse order)
//!        │ apply n+1..m            (a real log entry never applies under tentative writes)
//!        │ drop w5                 (the state's origin record says seq 5 committed)
//!        └ restore: re-apply w6, w7 → state@m + [w6, w7]
//!                   w7 no longer applies (someone took its unique key): kept, hidden,
//!                   reported as a conflict; the leader's answer decides its fate
//! ```
//!
//! Which writes an entry confirms is read from the state's origin records
//! ([`State::origin`]), not matched by content: the leader stamps nothing of its own into a
//! client's transaction, and a write retried after a lost answer commits at most once.

use super::{Rejection, State, Tentative};
use crate::txn::{Origin, Txn};

/// A write the client made that the leader has not confirmed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingWrite {
    /// The write's number in the client's order (its [`Origin::seq`]).
    pub seq: u64,
    /// The operations, with the origin stamped in.
    pub txn: Txn,
}

/// One client's pending writes over a [`State`].
#[derive(Default)]
pub struct Overlay {
    client: String,
    layers: Vec<Layer>,
    lifted: bool,
}

struct Layer {
    write: PendingWrite,
    /// How to take it off; `None` while it does not apply on the current state.
    shown: Option<Tentative>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seqs: Vec<(u64, bool)> = self
            .layers
            .iter()
            .map(|layer| (layer.write.seq, layer.shown.is_some()))
            .collect();
        f.debug_struct("Overlay")
            .field("client", &self.client)
            .field("pending (seq, shown)", &seqs)
            .field("lifted", &self.lifted)
            .finish()
    }
}

impl Overlay {
    /// An overlay with no pending writes, for this client id (see [`Origin`]).
    pub fn new(client: impl Into<String>) -> Overlay {
        Overlay {
            client: client.into(),
            layers: Vec::new(),
            lifted: false,
        }
    }

    /// The client id stamped into every write.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// Pending writes, oldest first: what to send to the leader, in this order.
    pub fn pending(&self) -> impl Iterator<Item = &PendingWrite> {
        self.layers.iter().map(|layer| &layer.write)
    }

    /// How many writes are pending.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether no write is pending.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The highest sequence number pending, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.layers.last().map(|layer| layer.write.seq)
    }

    /// Whether the pending write `seq` is applied on top of the state now (a conflicting one
    /// is pending but not shown).
    pub fn is_shown(&self, seq: u64) -> bool {
        self.layers
            .iter()
            .any(|layer| layer.write.seq == seq && layer.shown.is_some())
    }

    /// Adds a new write on top and shows it at once. Its `seq` must be above every pending
    /// one; the client's origin is stamped into the transaction. A write that does not apply
    /// on what the replica shows is refused here and not queued.
    pub fn push(&mut self, state: &mut State, seq: u64, txn: Txn) -> Result<(), Rejection> {
        assert!(!self.lifted, "push on a lifted overlay");
        assert!(
            self.last_seq().is_none_or(|last| seq > last),
            "pending writes are numbered in order"
        );
        let txn = txn.with_origin(Origin {
            client: self.client.clone(),
            seq,
        });
        let shown = state.apply_tentative(&txn)?;
        self.layers.push(Layer {
            write: PendingWrite { seq, txn },
            shown: Some(shown),
        });
        Ok(())
    }

    /// Puts back writes that were pending when the replica last closed (loaded from its
    /// durable queue), in order, and shows those that apply. Returns the ones that do not.
    pub fn reload(
        &mut self,
        state: &mut State,
        writes: impl IntoIterator<Item = PendingWrite>,
    ) -> Vec<(u64, Rejection)> {
        self.lift(state);
        for write in writes {
            assert!(
                self.last_seq().is_none_or(|last| write.seq > last),
                "pending writes are numbered in order"
            );
            self.layers.push(Layer { write, shown: None });
        }
        self.restore(state)
    }

    /// Takes every pending write off, applies what `apply` does to the bare state (log
    /// entries, a snapshot install), drops the writes the state now records as committed, and
    /// shows the rest again. Returns what `apply` returned, and the pending writes that no
    /// longer apply (kept, hidden, until the leader decides: see [`Overlay::reject`]).
    pub fn rebase<R>(
        &mut self,
        state: &mut State,
        apply: impl FnOnce(&mut State) -> R,
    ) -> (R, Vec<(u64, Rejection)>) {
        self.lift(state);
        let result = apply(state);
        (result, self.restore(state))
    }

    /// The leader refused the pending write `seq`: it is removed for good (writes above it
    /// are re-applied without it). Returns the write, and writes that no longer apply.
    pub fn reject(
        &mut self,
        state: &mut State,
        seq: u64,
    ) -> (Option<PendingWrite>, Vec<(u64, Rejection)>) {
        self.lift(state);
        let position = self.layers.iter().position(|layer| layer.write.seq == seq);
        let removed = position.map(|i| self.layers.remove(i).write);
        (removed, self.restore(state))
    }

    /// Takes every shown write off the state, newest first.
    fn lift(&mut self, state: &mut State) {
        if self.lifted {
            return;
        }
        for layer in self.layers.iter_mut().rev() {
            if let Some(shown) = layer.shown.take() {
                state.revert(shown);
            }
        }
        self.lifted = true;
    }

    /// Drops the writes the state records as committed and re-applies the others in order.
    fn restore(&mut self, state: &mut State) -> Vec<(u64, Rejection)> {
        debug_assert!(self.lifted);
        if let Some(committed) = state.origin(&self.client) {
            self.layers.retain(|layer| layer.write.seq > committed.seq);
        }
        let mut conflicts = Vec::new();
        for layer in &mut self.layers {
            match state.apply_tentative(&layer.write.txn) {
                Ok(shown) => layer.shown = Some(shown),
                Err(rejection) => conflicts.push((layer.write.seq, rejection)),
            }
        }
        self.lifted = false;
        conflicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RawDoc;
    use crate::error::ErrorCode;
    use crate::log::LogEntry;
    use crate::txn::Op;
    use crate::types::{Lsn, Term, TimestampMs};

    fn insert(id: &str, n: i64) -> Txn {
        let doc = RawDoc::from_value(&serde_json::json!({"_id": id, "n": n})).unwrap();
        Txn::single(Op::Insert {
            collection: "c".into(),
            doc,
        })
    }

    fn commit(state: &mut State, txn: Txn) -> LogEntry {
        let entry = LogEntry::new(state.applied(), Term(1), TimestampMs(1), txn);
        state.apply(&entry).unwrap();
        entry
    }

    fn ids(state: &State) -> Vec<String> {
        state
            .collection("c")
            .map(|c| c.scan().map(|d| d.doc.id()).collect())
            .unwrap_or_default()
    }

    fn origin(client: &str, seq: u64) -> Origin {
        Origin {
            client: client.into(),
            seq,
        }
    }

    #[test]
    fn a_pending_write_shows_at_once_and_comes_off_for_log_entries() {
        let mut state = State::new();
        commit(&mut state, insert("a", 1));
        let confirmed = state.state_hash();
        let mut overlay = Overlay::new("me");
        overlay.push(&mut state, 1, insert("b", 2)).unwrap();
        assert_eq!(ids(&state), ["a", "b"]);
        assert_eq!(
            state.collection("c").unwrap().get("b").unwrap().version,
            Lsn(2)
        );

        let ((), conflicts) = overlay.rebase(&mut state, |s| {
            assert_eq!(s.state_hash(), confirmed, "lifted: the bare log state");
            commit(s, insert("x", 3));
        });
        assert!(conflicts.is_empty());
        assert_eq!(ids(&state), ["a", "b", "x"]);
        assert_eq!(overlay.len(), 1);
    }

    #[test]
    fn the_entry_carrying_a_write_confirms_it() {
        let mut state = State::new();
        let mut overlay = Overlay::new("me");
        overlay.push(&mut state, 1, insert("a", 1)).unwrap();
        overlay.push(&mut state, 2, insert("b", 2)).unwrap();
        let sent = overlay.pending().next().unwrap().txn.clone();
        assert_eq!(sent.origin, Some(origin("me", 1)));

        overlay.rebase(&mut state, |s| commit(s, sent));
        assert_eq!(overlay.pending().map(|w| w.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(ids(&state), ["a", "b"]);
        assert_eq!(state.origin("me").unwrap().seq, 1);
        assert_eq!(
            state.collection("c").unwrap().get("a").unwrap().version,
            Lsn(1)
        );
        assert!(overlay.is_shown(2));
    }

    #[test]
    fn a_write_that_no_longer_applies_is_hidden_until_the_leader_decides() {
        let mut state = State::new();
        let mut overlay = Overlay::new("me");
        overlay.push(&mut state, 1, insert("a", 1)).unwrap();
        overlay.push(&mut state, 2, insert("b", 2)).unwrap();

        let (_, conflicts) = overlay.rebase(&mut state, |s| commit(s, insert("a", 99)));
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].0, 1);
        assert_eq!(conflicts[0].1.code(), "already_exists");
        assert!(!overlay.is_shown(1) && overlay.is_shown(2));
        let a = state.collection("c").unwrap().get("a").unwrap();
        assert!(a.doc.as_str().contains("99"), "the leader's document shows");

        let (removed, conflicts) = overlay.reject(&mut state, 1);
        assert_eq!(removed.unwrap().seq, 1);
        assert!(conflicts.is_empty());
        assert_eq!(overlay.len(), 1);
        assert_eq!(ids(&state), ["a", "b"]);
    }

    #[test]
    fn a_write_that_does_not_apply_is_refused_and_not_queued() {
        let mut state = State::new();
        commit(&mut state, insert("a", 1));
        let before = state.state_hash();
        let mut overlay = Overlay::new("me");
        let error = overlay.push(&mut state, 1, insert("a", 2)).unwrap_err();
        assert_eq!(error.code(), "already_exists");
        assert!(overlay.is_empty());
        assert_eq!(state.state_hash(), before);
    }

    #[test]
    fn reload_shows_writes_from_the_durable_queue_and_drops_confirmed_ones() {
        let mut state = State::new();
        commit(&mut state, insert("a", 1).with_origin(origin("me", 1)));
        let mut overlay = Overlay::new("me");
        let queued = [1, 2]
            .map(|seq| PendingWrite {
                seq,
                txn: insert(&format!("p{seq}"), 0).with_origin(origin("me", seq)),
            })
            .to_vec();
        assert!(overlay.reload(&mut state, queued).is_empty());
        assert_eq!(overlay.pending().map(|w| w.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(ids(&state), ["a", "p2"]);
    }

    #[test]
    fn lifting_restores_the_exact_log_state() {
        // Many writes of every kind on top, some of which conflict after the rebase: with the
        // overlay lifted, the state hashes the same as one that only ever saw the log.
        let mut state = State::new();
        let mut log_only = State::new();
        for i in 0..5 {
            let entry = commit(&mut state, insert(&format!("d{i}"), i));
            log_only.apply(&entry).unwrap();
        }
        let mut overlay = Overlay::new("me");
        let patch = |id: &str| {
            Txn::single(Op::Patch {
                collection: "c".into(),
                id: id.into(),
                patch: r#"{"n":7}"#.into(),
                if_version: None,
            })
        };
        let delete = |id: &str| {
            Txn::single(Op::Delete {
                collection: "c".into(),
                id: id.into(),
                if_version: None,
            })
        };
        let create = Txn::single(Op::CreateCollection {
            collection: "other".into(),
            options: Default::default(),
        });
        overlay.push(&mut state, 1, patch("d1")).unwrap();
        overlay.push(&mut state, 2, delete("d2")).unwrap();
        overlay.push(&mut state, 3, create).unwrap();
        overlay.push(&mut state, 4, insert("new", 1)).unwrap();
        overlay.push(&mut state, 5, patch("new")).unwrap();

        let log_hash = log_only.state_hash();
        let (hash, conflicts) = overlay.rebase(&mut state, |s| {
            let hash = s.state_hash();
            let entry = commit(s, delete("d1"));
            log_only.apply(&entry).unwrap();
            hash
        });
        assert_eq!(hash, log_hash, "lifted: the bare log state");
        assert_eq!(
            conflicts.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            [1]
        );
        overlay.rebase(&mut state, |s| {
            assert_eq!(s.state_hash(), log_only.state_hash())
        });
    }

    #[test]
    #[should_panic(expected = "tentative")]
    fn log_entries_never_apply_under_tentative_writes() {
        let mut state = State::new();
        let mut overlay = Overlay::new("me");
        overlay.push(&mut state, 1, insert("a", 1)).unwrap();
        let entry = LogEntry::new(state.applied(), Term(1), TimestampMs(1), insert("b", 1));
        let _ = state.apply(&entry);
    }
}
