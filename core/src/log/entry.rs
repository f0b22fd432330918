//! Log entries and the hash chain that links them.
//!
//! ```text
//!   entry n-1                      entry n
//! ┌─────────────────────┐        ┌──────────────────────────────────────────┐
//! │ ... hash ───────────┼──────► │ prev_hash                                │
//! └─────────────────────┘        │ body = postcard(lsn, term, ts, txn)      │
//!                                │ hash = SHA-256(prev_hash ‖ body)         │
//!                                └──────────────────────────────────────────┘
//! ```
//!
//! Any replica can verify the whole history it holds, and two replicas detect divergence by
//! comparing a single (lsn, hash) pair.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::txn::Txn;
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

/// The hashed part of an entry, borrowed so hashing does not copy the transaction.
#[derive(Serialize)]
struct Body<'a> {
    lsn: Lsn,
    term: Term,
    timestamp: TimestampMs,
    txn: &'a Txn,
}

impl LogEntry {
    /// Builds the entry after `prev` and computes its hash.
    pub fn new(prev: LogPosition, term: Term, timestamp: TimestampMs, txn: Txn) -> LogEntry {
        let lsn = prev.lsn.next();
        let hash = compute_hash(prev.hash, lsn, term, timestamp, &txn);
        LogEntry {
            lsn,
            term,
            timestamp,
            txn,
            prev_hash: prev.hash,
            hash,
        }
    }

    /// The hash this entry should carry, computed from its contents.
    pub fn compute_hash(&self) -> Hash {
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
        self.compute_hash() == self.hash
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

fn compute_hash(prev: Hash, lsn: Lsn, term: Term, timestamp: TimestampMs, txn: &Txn) -> Hash {
    let body = postcard::to_allocvec(&Body {
        lsn,
        term,
        timestamp,
        txn,
    })
    .expect("encoding into a Vec cannot fail");
    let mut hasher = Sha256::new();
    hasher.update(prev.0);
    hasher.update(&body);
    Hash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::Op;

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
}
