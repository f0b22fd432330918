//! Checking a batch of plain inserts and puts without applying it.
//!
//! The single-node leader checks each batch before it is written: a transaction that would not
//! apply must never enter the log. The general check applies each entry on top of the state
//! ([`State::apply_speculative`]) and takes it all off again, so every write is applied twice
//! (and undone once). For the commonest batch, documents inserted or put into collections that
//! exist, with no TTL and no unique index, the outcome depends on much less: the version of
//! each `_id` (in the state, or written by an earlier transaction of the batch), the
//! transaction's size limits, and its origin. [`State::check_plain_writes`] decides exactly that
//! from the state as it is, and answers `None` for any batch it cannot decide alone, which the
//! caller checks the general way.
//!
//! ```text
//!   batch ─► every txn only inserts and puts, into existing collections without TTL or
//!            unique index, and no document is due to expire at the batch's clock?
//!              no  ─► None (speculate)
//!              yes ─► per txn, in order: limits, origin (state's, then the batch's own),
//!                     each op against its _id's version (the batch's last write, else the
//!                     state's): an insert needs none, a put its `if_version` if it has one
//!                     ─► the same Ok / Rejection as apply_speculative, one after the other
//! ```
//!
//! The two checks are held to the same verdicts over random states and batches
//! (`tests::the_plain_write_check_decides_as_speculation_does`).

use std::borrow::Cow;
use std::collections::HashMap;

use super::{Rejection, State, TxnError, check_limits, check_version_is};
use crate::txn::{Op, Txn};
use crate::types::{Lsn, TimestampMs};

impl State {
    /// The verdicts [`State::apply_speculative`] would give `txns`, stacked one on the next as
    /// log entries following the applied position with the clock `timestamp`, without changing
    /// the state; `None` unless every transaction only inserts and puts into existing
    /// collections without a TTL or a unique index, nothing is on top of the state, and no
    /// document is due to expire at that clock.
    pub fn check_plain_writes<'t>(
        &self,
        txns: impl IntoIterator<Item = &'t Txn, IntoIter: Clone>,
        timestamp: TimestampMs,
    ) -> Option<Vec<Result<(), Rejection>>> {
        let txns = txns.into_iter();
        // Declined before any transaction is checked: a batch with one write out of reach is
        // checked on a speculation, all of it.
        if self.tentative != 0 || !txns.clone().all(|txn| self.plain(txn)) {
            return None;
        }
        let now = timestamp.max(self.last_timestamp);
        if self.next_expiry().is_some_and(|at| at <= now) {
            return None;
        }
        let mut check = PlainCheck {
            state: self,
            next_lsn: self.applied.lsn.next(),
            written: HashMap::new(),
            origins: HashMap::new(),
        };
        Some(txns.map(|txn| check.check(txn)).collect())
    }

    /// Whether `txn` only inserts and puts into existing collections without a TTL or a unique
    /// index.
    fn plain(&self, txn: &Txn) -> bool {
        txn.ops.iter().all(|op| match op {
            Op::Insert { collection, .. } | Op::Put { collection, .. } => {
                self.collection(collection).is_some_and(|c| {
                    c.options().ttl_ms.is_none() && c.indexes().iter().all(|i| !i.spec().unique)
                })
            }
            _ => false,
        })
    }
}

/// The batch so far: what its accepted transactions wrote.
struct PlainCheck<'s, 't> {
    state: &'s State,
    /// The LSN the next accepted transaction gets.
    next_lsn: Lsn,
    /// `(collection, _id)` of every document the accepted transactions write, with the LSN of
    /// the last one that did (the version it has on top of them).
    written: HashMap<(&'t str, Cow<'t, str>), Lsn>,
    /// The last origin each client's accepted transactions carry: its seq and LSN.
    origins: HashMap<&'t str, (u64, Lsn)>,
}

impl<'t> PlainCheck<'_, 't> {
    /// The verdict on a plain `txn`, as `apply_entry` reaches it: limits, origin, then each
    /// operation in order.
    fn check(&mut self, txn: &'t Txn) -> Result<(), Rejection> {
        check_limits(txn)?;
        if let Some(origin) = &txn.origin {
            // The client's last accepted write of this batch, else what the state says.
            match self.origins.get(origin.client.as_str()) {
                None => self.state.check_origin(origin)?,
                Some(&(last_seq, last_lsn)) => {
                    origin.validate().map_err(TxnError::InvalidOrigin)?;
                    if origin.seq <= last_seq {
                        return Err(TxnError::DuplicateOrigin {
                            client: origin.client.clone(),
                            seq: origin.seq,
                            last_seq,
                            last_lsn,
                        }
                        .into());
                    }
                }
            }
        }
        // What this transaction's writes replaced, to put back if a later one fails.
        let mut replaced = Vec::with_capacity(txn.ops.len());
        for (op_index, op) in txn.ops.iter().enumerate() {
            let (collection, doc, if_version) = match op {
                Op::Insert { collection, doc } => (collection, doc, None),
                Op::Put {
                    collection,
                    doc,
                    if_version,
                } => (collection, doc, Some(*if_version)),
                _ => unreachable!("a plain transaction only inserts and puts"),
            };
            let key = (collection.as_str(), doc.id_str());
            let current = self.written.get(&key).copied().or_else(|| {
                let coll = self.state.collection(collection)?;
                coll.get(&key.1).map(|d| d.version)
            });
            let verdict = match if_version {
                // An insert: the id must be free.
                None => match current {
                    Some(_) => Err(TxnError::AlreadyExists {
                        collection: collection.clone(),
                        id: key.1.to_string(),
                    }),
                    None => Ok(()),
                },
                // A put: the version it names, if it names one.
                Some(expected) => {
                    check_version_is(collection, &key.1, current.unwrap_or(Lsn::ZERO), expected)
                }
            };
            if let Err(error) = verdict {
                for (key, prior) in replaced.into_iter().rev() {
                    match prior {
                        Some(lsn) => self.written.insert(key, lsn),
                        None => self.written.remove(&key),
                    };
                }
                return Err(Rejection {
                    op_index: Some(op_index),
                    error,
                });
            }
            let prior = self.written.insert(key.clone(), self.next_lsn);
            replaced.push((key, prior));
        }
        if let Some(origin) = &txn.origin {
            self.origins
                .insert(origin.client.as_str(), (origin.seq, self.next_lsn));
        }
        self.next_lsn = self.next_lsn.next();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::doc::RawDoc;
    use crate::index::IndexSpec;
    use crate::log::LogEntry;
    use crate::txn::Origin;
    use crate::types::Term;

    /// Ids with and without escapes, few enough to clash often.
    const IDS: [&str; 6] = ["a", "b", "c", "d", "q\"x", "é"];
    /// `plain` no index, `indexed` a non-unique index, `unique` a unique one, `ttl` a TTL of
    /// 50 ms; `missing` never exists.
    const COLLECTIONS: [&str; 5] = ["plain", "indexed", "unique", "ttl", "missing"];

    fn insert(collection: &str, id: &str, n: u64) -> Op {
        let doc = RawDoc::from_value(&json!({"_id": id, "n": n})).unwrap();
        Op::Insert {
            collection: collection.into(),
            doc,
        }
    }

    fn put(collection: &str, id: &str, n: u64, if_version: Option<Lsn>) -> Op {
        let Op::Insert { collection, doc } = insert(collection, id, n) else {
            unreachable!("insert makes an insert")
        };
        Op::Put {
            collection,
            doc,
            if_version,
        }
    }

    fn index(collection: &str, unique: bool) -> Op {
        let spec = IndexSpec::single("by_n", "n");
        let spec = if unique { spec.unique() } else { spec };
        Op::CreateIndex {
            collection: collection.into(),
            spec,
        }
    }

    /// Applies `txn` as the next entry at `at`; a rejection is ignored (the state is unchanged).
    fn apply(state: &mut State, txn: Txn, at: u64) {
        let entry = LogEntry::new(state.applied(), Term(1), TimestampMs(at), txn);
        let _ = state.apply(&entry);
    }

    /// A state with the four collections, some documents in each (the TTL's due from 1,050 ms
    /// on), and origins of clients `c1` and `c2`.
    fn state_with(docs: &[(usize, usize, u64)], origins: &[(bool, u64)]) -> State {
        let mut state = State::new();
        let setup = vec![
            insert("plain", "setup", 0),
            insert("indexed", "setup", 0),
            insert("unique", "setup", 100),
            insert("ttl", "setup", 0),
            index("indexed", false),
            index("unique", true),
            Op::SetTtl {
                collection: "ttl".into(),
                ttl_ms: Some(50),
            },
        ];
        apply(&mut state, Txn::new(setup), 1_000);
        for &(c, id, n) in docs {
            apply(
                &mut state,
                Txn::single(insert(COLLECTIONS[c % 4], IDS[id], n)),
                1_000,
            );
        }
        for &(first, seq) in origins {
            let client = if first { "c1" } else { "c2" };
            let origin = Origin {
                client: client.into(),
                seq,
            };
            let txn = Txn::single(insert("plain", &format!("o{seq}{client}"), 0));
            apply(&mut state, txn.with_origin(origin), 1_000);
        }
        state
    }

    /// What the general check says: each transaction applied speculatively on top of the ones
    /// before it that applied, all taken off at the end.
    fn speculated(state: &mut State, txns: &[Txn], at: u64) -> Vec<Result<(), Rejection>> {
        let before = state.state_hash();
        let mut speculations = Vec::new();
        let verdicts = txns
            .iter()
            .map(|txn| {
                let entry = LogEntry::new(state.applied(), Term(1), TimestampMs(at), txn.clone());
                state
                    .apply_speculative(&entry)
                    .map(|speculation| speculations.push(speculation))
            })
            .collect();
        while let Some(speculation) = speculations.pop() {
            state.revert_speculation(speculation);
        }
        assert_eq!(state.state_hash(), before);
        verdicts
    }

    fn arb_txn() -> impl Strategy<Value = Txn> {
        // Mostly writes into the two collections in reach, so that many batches are.
        let collection = prop_oneof![
            12 => prop::sample::select(&COLLECTIONS[..2]),
            1 => prop::sample::select(&COLLECTIONS[2..]),
        ];
        // Versions up to 24 name documents of the state (LSNs from 1) and of the batch.
        let if_version = prop_oneof![Just(None), (0u64..24).prop_map(|v| Some(Lsn(v)))];
        let op = prop_oneof![
            25 => (collection.clone(), 0..IDS.len(), 0u64..4)
                .prop_map(|(c, id, n)| insert(c, IDS[id], n)),
            15 => (collection, 0..IDS.len(), 0u64..4, if_version)
                .prop_map(|(c, id, n, if_version)| put(c, IDS[id], n, if_version)),
            1 => (0..IDS.len()).prop_map(|id| Op::Delete {
                collection: "plain".into(),
                id: IDS[id].into(),
                if_version: None,
            }),
        ];
        let origin = prop_oneof![
            4 => Just(None),
            2 => (any::<bool>(), 0u64..6).prop_map(|(first, seq)| Some(Origin {
                client: if first { "c1" } else { "c2" }.into(),
                seq,
            })),
            1 => Just(Some(Origin { client: "no spaces".into(), seq: 1 })),
        ];
        (prop::collection::vec(op, 0..4), origin).prop_map(|(ops, origin)| {
            let txn = Txn::new(ops);
            match origin {
                Some(origin) => txn.with_origin(origin),
                None => txn,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Wherever the plain-write check decides, it decides as speculation does; it declines
        /// exactly the batches outside its reach.
        #[test]
        fn the_plain_write_check_decides_as_speculation_does(
            docs in prop::collection::vec((0usize..4, 0..IDS.len(), 0u64..4), 0..12),
            origins in prop::collection::vec((any::<bool>(), 1u64..4), 0..3),
            txns in prop::collection::vec(arb_txn(), 1..7),
            at in 990u64..1_100,
        ) {
            let mut state = state_with(&docs, &origins);
            let expected = speculated(&mut state, &txns, at);
            let reach = txns.iter().flat_map(|t| &t.ops).all(|op| {
                matches!(op, Op::Insert { collection, .. } | Op::Put { collection, .. }
                    if collection == "plain" || collection == "indexed")
            });
            // The TTL documents were written at 1,000 ms with a TTL of 50.
            let due = state.collection("ttl").is_some_and(|c| !c.is_empty())
                && at.max(state.last_timestamp().0) >= 1_050;
            match state.check_plain_writes(&txns, TimestampMs(at)) {
                Some(verdicts) => {
                    prop_assert!(reach && !due, "decided a batch out of its reach");
                    prop_assert_eq!(verdicts, expected);
                }
                None => prop_assert!(!reach || due, "declined a batch in its reach"),
            }
        }
    }

    #[test]
    fn a_batch_of_inserts_and_puts_is_decided_with_its_own_clashes() {
        let mut state = state_with(&[(0, 0, 1)], &[(true, 2)]);
        let origin = |seq| Origin {
            client: "c1".into(),
            seq,
        };
        let txns = [
            Txn::single(insert("plain", "d", 0)),
            // "a" is in the state.
            Txn::new(vec![insert("plain", "b", 0), insert("plain", "a", 0)]),
            // "b" was only in the rejected transaction: free.
            Txn::single(insert("plain", "b", 0)).with_origin(origin(3)),
            // Now it is taken; the same id in another collection is not.
            Txn::new(vec![insert("indexed", "b", 0), insert("plain", "b", 1)]),
            // Seq 3 was taken two transactions ago, by the second entry of the batch.
            Txn::single(insert("plain", "c", 0)).with_origin(origin(3)),
            Txn::new(vec![insert("indexed", "c", 0), insert("indexed", "c", 1)]),
            // "b" has the version of the third transaction's entry (applied + 2) now.
            Txn::single(put(
                "plain",
                "b",
                7,
                Some(state.applied().lsn.next().next()),
            )),
            // "a" exists: a put that expects none is refused.
            Txn::single(put("plain", "a", 7, Some(Lsn::ZERO))),
            // A put makes "e" exist for the insert after it; refused, the two leave "e" free.
            Txn::new(vec![put("plain", "e", 7, None), insert("plain", "e", 0)]),
            Txn::single(insert("plain", "e", 0)),
            // A refused transaction puts back the version its put replaced: "b" keeps the
            // version of the put above (applied + 3).
            Txn::new(vec![put("plain", "b", 8, None), insert("plain", "a", 0)]),
            Txn::single(put("plain", "b", 9, Some(Lsn(state.applied().lsn.0 + 3)))),
        ];
        let verdicts = state.check_plain_writes(&txns, TimestampMs(1_010)).unwrap();
        assert_eq!(verdicts, speculated(&mut state, &txns, 1_010));
        let codes: Vec<_> = verdicts
            .iter()
            .map(|v| v.as_ref().err().map(|r| (r.op_index, r.code())))
            .collect();
        use crate::error::ErrorCode;
        let Err(Rejection {
            error: TxnError::DuplicateOrigin { last_lsn, .. },
            ..
        }) = &verdicts[4]
        else {
            panic!("expected a duplicate origin, got {:?}", verdicts[4]);
        };
        assert_eq!(*last_lsn, state.applied().lsn.next().next());
        assert_eq!(
            codes,
            [
                None,
                Some((Some(1), "already_exists")),
                None,
                Some((Some(1), "already_exists")),
                Some((None, "duplicate_origin")),
                Some((Some(1), "already_exists")),
                None,
                Some((Some(0), "version_mismatch")),
                Some((Some(1), "already_exists")),
                None,
                Some((Some(1), "already_exists")),
                None,
            ]
        );
    }
}
