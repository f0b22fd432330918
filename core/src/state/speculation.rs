//! Speculative entries: a leader's proposals checked on the state before they are committed.
//!
//! A Raft leader must not change its state before an entry commits (a leader that loses office
//! would have to undo it), yet it must refuse a transaction that would not apply (a unique
//! clash, a failed `if_version`, a duplicate origin) before it enters the log, because every
//! member and every replica applies what the log holds. So the proposer puts the entries it
//! has proposed but that have not applied yet on top of the state, checks the new ones on top
//! of those, and takes everything off again before it lets go of the state:
//!
//! ```text
//!   state@applied ─► + in flight (a+1..p) ─► + new entry p+1: Ok → propose it, Err → refuse
//!        ▲                                                                 │
//!        └──────────────── revert every speculation, newest first ◄────────┘
//! ```
//!
//! A speculative entry applies exactly as [`State::apply`] would (same position, same clock,
//! same expiry, same origin records), so an entry proposed after this check applies when it
//! commits: by Raft's log matching, the entries before it in any log that holds it are the
//! ones it was checked on top of.

use super::{OriginRecord, Rejection, State, Undo};
use crate::log::LogEntry;
use crate::types::{LogPosition, TimestampMs};

/// A log entry applied on top of the state for a check, and how to take it off again.
pub struct Speculation {
    undo: Vec<Undo<'static>>,
    applied: LogPosition,
    last_timestamp: TimestampMs,
    /// The client whose speculative origin record this entry set, and the one it replaced.
    origin: Option<(String, Option<OriginRecord>)>,
}

impl std::fmt::Debug for Speculation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speculation")
            .field("undo_steps", &self.undo.len())
            .field("prior_applied", &self.applied)
            .finish()
    }
}

impl State {
    /// Applies `entry` on top of the state as [`State::apply`] would, all of it or nothing,
    /// and returns how to take it off. Until every speculation is reverted
    /// ([`State::revert_speculation`], newest first) log entries do not apply and the state
    /// has no snapshot.
    pub fn apply_speculative(&mut self, entry: &LogEntry) -> Result<Speculation, Rejection> {
        let (undo, _, now) = self.apply_entry(entry, true)?;
        let origin = entry.txn.origin.as_ref().map(|origin| {
            let record = OriginRecord {
                seq: origin.seq,
                lsn: entry.lsn,
                at: now,
            };
            let prior = self
                .speculative_origins
                .insert(origin.client.clone(), record);
            (origin.client.clone(), prior)
        });
        let speculation = Speculation {
            undo: undo.into_iter().map(Undo::into_owned).collect(),
            applied: self.applied,
            last_timestamp: self.last_timestamp,
            origin,
        };
        self.applied = entry.position();
        self.last_timestamp = now;
        self.tentative += 1;
        Ok(speculation)
    }

    /// Takes a speculative entry off: the state is as it was before
    /// [`State::apply_speculative`]. Speculations come off newest first.
    pub fn revert_speculation(&mut self, speculation: Speculation) {
        self.tentative = self
            .tentative
            .checked_sub(1)
            .expect("revert without a speculation on top");
        self.rollback(speculation.undo);
        self.applied = speculation.applied;
        self.last_timestamp = speculation.last_timestamp;
        if let Some((client, prior)) = speculation.origin {
            match prior {
                Some(record) => self.speculative_origins.insert(client, record),
                None => self.speculative_origins.remove(&client),
            };
        }
    }

    /// Moves the applied position past a committed entry that does not apply, changing
    /// nothing else. Only for a cluster member's state machine, which must not stop on an entry
    /// the log holds for good: every member skips the same entry, so states stay identical.
    /// A proposer checks each entry speculatively first, so this is a path for bugs.
    pub fn skip_rejected(&mut self, entry: &LogEntry) {
        assert_eq!(self.tentative, 0, "skip under speculative entries");
        assert!(entry.follows(self.applied), "skip out of order");
        self.applied = entry.position();
        self.last_timestamp = entry.timestamp.max(self.last_timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RawDoc;
    use crate::error::ErrorCode;
    use crate::txn::{Op, Origin, Txn};
    use crate::types::Term;

    fn insert(id: &str) -> Txn {
        let doc = RawDoc::from_value(&serde_json::json!({"_id": id})).unwrap();
        Txn::single(Op::Insert {
            collection: "c".into(),
            doc,
        })
    }

    fn next(state: &State, txn: Txn) -> LogEntry {
        LogEntry::new(state.applied(), Term(1), TimestampMs(10), txn)
    }

    #[test]
    fn speculation_sees_entries_in_flight_and_comes_off_exactly() {
        let mut state = State::new();
        let first = next(&state, insert("a"));
        state.apply(&first).unwrap();
        let before = state.state_hash();

        let mine = |seq| {
            insert(&format!("s{seq}")).with_origin(Origin {
                client: "cl".into(),
                seq,
            })
        };
        let e2 = next(&state, mine(1));
        let s2 = state.apply_speculative(&e2).unwrap();
        let e3 = next(&state, insert("b"));
        let s3 = state.apply_speculative(&e3).unwrap();
        // On top of the entries in flight: a clash with one of them, a duplicate of its origin.
        let clash = next(&state, insert("b"));
        assert_eq!(
            state.apply_speculative(&clash).unwrap_err().code(),
            "already_exists"
        );
        let dup = next(&state, mine(1));
        assert_eq!(
            state.apply_speculative(&dup).unwrap_err().code(),
            "duplicate_origin"
        );
        state.revert_speculation(s3);
        state.revert_speculation(s2);
        assert_eq!(state.state_hash(), before);
        assert_eq!(state.applied(), first.position());

        // What was checked applies for real, in the same order, to the same result.
        state.apply(&e2).unwrap();
        state.apply(&e3).unwrap();
        assert_eq!(state.origin("cl").unwrap().lsn, e2.lsn);
    }

    #[test]
    #[should_panic(expected = "tentative")]
    fn log_entries_never_apply_under_a_speculation() {
        let mut state = State::new();
        let e1 = next(&state, insert("a"));
        let _s = state.apply_speculative(&e1).unwrap();
        let _ = state.apply(&e1);
    }

    #[test]
    fn a_skipped_entry_moves_the_position_only() {
        let mut state = State::new();
        state.apply(&next(&state, insert("a"))).unwrap();
        let hash = state.state_hash();
        let clash = next(&state, insert("a"));
        assert!(state.clone().apply(&clash).is_err());
        state.skip_rejected(&clash);
        assert_eq!(state.applied(), clash.position());
        assert_eq!(state.collection("c").unwrap().len(), 1);
        assert_ne!(
            state.state_hash(),
            hash,
            "the position is part of the state"
        );
    }
}
