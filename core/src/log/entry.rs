//! Log entries and the hash chain that links them.
//!
//! ```text
//!   entry n-1                      entry n
//! ┌─────────────────────┐        ┌──────────────────────────────────────────────────────┐
//! │ ... hash ───────────┼──────► │ prev_hash                                            │
//! └─────────────────────┘        │ header = postcard(lsn, term, ts, origin, op_count)   │
//!                                │ hash = SHA-256(prev_hash ‖ header ‖ SHA-256(op 1) ‖ …)│
//!                                └──────────────────────────────────────────────────────┘
//! ```
//!
//! An operation's hash is SHA-256 of its postcard encoding, so a reader holding an entry's
//! record can hash each operation's bytes where they sit (see `walk.rs`), and a replica that
//! does not subscribe to an operation's collection receives only its hash.
//!
//! Any replica can verify the whole history it holds, and two replicas detect divergence by
//! comparing a single (lsn, hash) pair.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::txn::{OmittedOp, Op, Txn};
use crate::types::{Hash, LogPosition, Lsn, Term, TimestampMs};

/// One committed transaction at one position in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Gap-free position, starting at 1.
    pub lsn: Lsn,
    /// Term of the leader that wrote it.
    pub term: Term,
    /// The leader's clock when it wrote it; drives TTL expiry on every replica alike.
    pub timestamp: TimestampMs,
    /// What the entry does.
    pub txn: Txn,
    /// Hash of the entry at `lsn - 1` (`Hash::ZERO` for the first entry).
    pub prev_hash: Hash,
    /// SHA-256 over `prev_hash` and the encoded body.
    pub hash: Hash,
}

/// The hashed header of an entry; the operations' hashes follow it. `O` is [`Origin`](crate::txn::Origin) or a
/// borrowed mirror that encodes the same way.
#[derive(Serialize)]
struct Body<'a, O> {
    lsn: Lsn,
    term: Term,
    timestamp: TimestampMs,
    origin: &'a Option<O>,
    op_count: u64,
}

/// The fields of an entry that its hash covers besides the operations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HashedHeader<'a, O> {
    pub prev: Hash,
    pub lsn: Lsn,
    pub term: Term,
    pub timestamp: TimestampMs,
    pub origin: &'a Option<O>,
}

impl<O: Serialize> HashedHeader<'_, O> {
    /// SHA-256(prev ‖ postcard(header) ‖ op hash 1 ‖ …): `present` are the hashes of the
    /// operations carried, in order, and `omitted` places the others among them. `None` when
    /// `omitted` is not a valid set of positions (out of order, repeated or past the end).
    pub fn hash(
        &self,
        present: impl ExactSizeIterator<Item = Hash>,
        omitted: &[OmittedOp],
    ) -> Option<Hash> {
        let count = present.len() + omitted.len();
        let body = Body {
            lsn: self.lsn,
            term: self.term,
            timestamp: self.timestamp,
            origin: self.origin,
            op_count: count as u64,
        };
        let mut hasher = Sha256::new();
        hasher.update(self.prev.0);
        // The header is small: encode it on the stack unless an odd origin makes it long.
        let mut buf = [0u8; 160];
        match postcard::to_slice(&body, &mut buf) {
            Ok(encoded) => hasher.update(encoded),
            Err(_) => hasher
                .update(postcard::to_allocvec(&body).expect("encoding into a Vec cannot fail")),
        }
        let mut present = present;
        let mut omitted = omitted.iter().peekable();
        for index in 0..count as u32 {
            match omitted.next_if(|o| o.index == index) {
                Some(o) => hasher.update(o.hash.0),
                None => hasher.update(present.next()?.0),
            }
        }
        if omitted.next().is_some() || present.next().is_some() {
            return None;
        }
        Some(Hash(hasher.finalize().into()))
    }
}

impl LogEntry {
    /// Builds the entry after `prev` and computes its hash.
    pub fn new(prev: LogPosition, term: Term, timestamp: TimestampMs, txn: Txn) -> LogEntry {
        let lsn = prev.lsn.next();
        let hash = compute_hash(prev.hash, lsn, term, timestamp, &txn)
            .expect("a transaction without omitted operations hashes");
        LogEntry {
            lsn,
            term,
            timestamp,
            txn,
            prev_hash: prev.hash,
            hash,
        }
    }

    /// The hash this entry should carry, computed from its contents; `None` when its
    /// omitted operations are malformed (which no hash can match).
    pub fn compute_hash(&self) -> Option<Hash> {
        compute_hash(
            self.prev_hash,
            self.lsn,
            self.term,
            self.timestamp,
            &self.txn,
        )
    }

    /// True when the stored hash matches the contents.
    pub fn verify_hash(&self) -> bool {
        self.compute_hash() == Some(self.hash)
    }

    /// The entry as a replica subscribed to the collections `keep` accepts receives it: the
    /// other operations replaced by their hashes, the hash unchanged. `None` when nothing is
    /// left out.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Option<LogEntry> {
        Some(LogEntry {
            lsn: self.lsn,
            term: self.term,
            timestamp: self.timestamp,
            txn: self.txn.filtered(keep)?,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }

    /// True when this entry directly follows `prev` in a chain.
    pub fn follows(&self, prev: LogPosition) -> bool {
        self.lsn == prev.lsn.next() && self.prev_hash == prev.hash
    }

    /// Where this entry stands: its lsn and hash.
    pub fn position(&self) -> LogPosition {
        LogPosition {
            lsn: self.lsn,
            hash: self.hash,
        }
    }
}

fn compute_hash(
    prev: Hash,
    lsn: Lsn,
    term: Term,
    timestamp: TimestampMs,
    txn: &Txn,
) -> Option<Hash> {
    let header = HashedHeader {
        prev,
        lsn,
        term,
        timestamp,
        origin: &txn.origin,
    };
    header.hash(txn.ops.iter().map(Op::hash), &txn.omitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(n: u8) -> Txn {
        Txn::single(Op::Delete {
            collection: "c".into(),
            id: n.to_string(),
            if_version: None,
        })
    }

    #[test]
    fn chain_links_and_verifies() {
        let a = LogEntry::new(LogPosition::START, Term(1), TimestampMs(10), txn(1));
        let b = LogEntry::new(a.position(), Term(1), TimestampMs(11), txn(2));
        assert_eq!(a.lsn, Lsn(1));
        assert_eq!(b.lsn, Lsn(2));
        assert!(a.follows(LogPosition::START));
        assert!(b.follows(a.position()));
        assert!(a.verify_hash() && b.verify_hash());
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn any_change_breaks_the_hash() {
        let a = LogEntry::new(LogPosition::START, Term(1), TimestampMs(10), txn(1));
        let mut changed = a.clone();
        changed.term = Term(2);
        assert!(!changed.verify_hash());
        let mut changed = a.clone();
        changed.timestamp = TimestampMs(11);
        assert!(!changed.verify_hash());
        let mut changed = a.clone();
        changed.txn = txn(9);
        assert!(!changed.verify_hash());
        let mut changed = a;
        changed.prev_hash = Hash([1; 32]);
        assert!(!changed.verify_hash());
    }

    fn mixed() -> LogEntry {
        let put = |collection: &str, id: &str| Op::Put {
            collection: collection.into(),
            doc: crate::doc::RawDoc::from_value(&serde_json::json!({"_id": id})).unwrap(),
            if_version: None,
        };
        let txn = Txn::new(vec![
            put("a", "1"),
            put("b", "2"),
            put("a", "3"),
            put("c", "4"),
        ]);
        LogEntry::new(LogPosition::START, Term(1), TimestampMs(10), txn)
    }

    #[test]
    fn a_filtered_entry_keeps_its_hash_and_verifies() {
        let entry = mixed();
        assert!(entry.filtered(|_| true).is_none(), "nothing to leave out");
        let only_a = entry.filtered(|c| c == "a").unwrap();
        assert_eq!(only_a.hash, entry.hash);
        assert_eq!(only_a.txn.ops.len(), 2);
        assert_eq!(
            only_a
                .txn
                .omitted
                .iter()
                .map(|o| o.index)
                .collect::<Vec<_>>(),
            [1, 3]
        );
        assert!(only_a.verify_hash());
        // Filtering again, more narrowly, still verifies; so does leaving everything out.
        let none = only_a.filtered(|_| false).unwrap();
        assert!(none.txn.ops.is_empty() && none.txn.omitted.len() == 4);
        assert!(none.verify_hash());
        assert_eq!(none.txn.op_hashes(), entry.txn.op_hashes());
    }

    #[test]
    fn a_tampered_filtered_entry_does_not_verify() {
        let filtered = mixed().filtered(|c| c == "a").unwrap();
        let mut changed = filtered.clone();
        changed.txn.omitted[0].hash = Hash([7; 32]);
        assert!(!changed.verify_hash());
        // Positions must be ascending, distinct and inside the transaction.
        for index in [0, 3, 9] {
            let mut changed = filtered.clone();
            changed.txn.omitted[0].index = index;
            assert!(!changed.verify_hash(), "omitted index {index}");
        }
        let mut changed = filtered.clone();
        changed.txn.omitted.swap(0, 1);
        assert!(!changed.verify_hash());
        let mut changed = filtered;
        changed.txn.ops.pop();
        assert!(!changed.verify_hash());
    }
}
