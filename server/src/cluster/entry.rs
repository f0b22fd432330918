//! openraft entries ⇄ cstore log entries: one mapping, used by the log store (which writes
//! them to the file WAL) and the state machine (which applies them).
//!
//! ```text
//!   openraft entry (index i, term t)           cstore LogEntry (lsn i + 1, term t)
//!   ─────────────────────────────────          ─────────────────────────────────────────────
//!   Blank                                 ⇄    empty txn, timestamp 0
//!   Normal(Proposal { timestamp, txn })   ⇄    txn, timestamp
//!   Membership(m)                         ⇄    one Put of `_cluster/membership`, timestamp 0
//! ```
//!
//! openraft numbers entries from 0 (the first membership entry of `initialize`); LSNs start at
//! 1 (`Lsn::ZERO` is the empty log), so `lsn = index + 1` everywhere. Every member computes an
//! entry's hash from its own previous hash and these fields, so by Raft's log matching the
//! SHA-256 chain is the same on every member, across terms, and a committed entry can be
//! proven anywhere by one `(lsn, hash)` pair. Blank and membership entries are real entries:
//! LSNs stay gap-free and the chain covers them. A membership entry is stored as a document
//! in a collection no client can name, so read replicas and browsers learn the members' URLs
//! from the log they already follow.

use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use cstore_core::doc::{CLUSTER_COLLECTION, RawDoc};
use cstore_core::log::LogEntry;
use cstore_core::{LogPosition, Lsn, Op, Term, TimestampMs, Txn};

use super::types::{Proposal, RaftEntry, RaftLogId, RaftMembership};

/// The id of the membership document in [`CLUSTER_COLLECTION`].
pub const MEMBERSHIP_DOC_ID: &str = "membership";

/// The LSN of the entry at openraft `index`.
pub fn lsn_of(index: u64) -> Lsn {
    Lsn(index + 1)
}

/// The openraft index of the entry at `lsn` (which must not be `Lsn::ZERO`).
pub fn index_of(lsn: Lsn) -> u64 {
    assert!(lsn.0 > 0, "Lsn::ZERO is no entry");
    lsn.0 - 1
}

/// The log id of a cstore entry.
pub fn log_id_of(entry: &LogEntry) -> RaftLogId {
    RaftLogId::new_term_index(entry.term.0, index_of(entry.lsn))
}

/// The term of a log id.
pub fn term_of(log_id: &RaftLogId) -> Term {
    Term(**log_id.committed_leader_id())
}

/// The membership document: the configuration with the log id that set it.
#[derive(Serialize, Deserialize)]
struct MembershipDoc {
    #[serde(rename = "_id")]
    id: String,
    term: u64,
    index: u64,
    membership: RaftMembership,
}

/// The cstore entry after `prev` for an openraft entry. `prev` must be the position before it.
pub fn to_log_entry(prev: LogPosition, entry: &RaftEntry) -> LogEntry {
    let lsn = lsn_of(entry.log_id.index());
    assert_eq!(
        prev.lsn.next(),
        lsn,
        "entry {lsn} converted after {}",
        prev.lsn
    );
    let term = term_of(&entry.log_id);
    let (timestamp, txn) = match &entry.payload {
        EntryPayload::Blank => (TimestampMs(0), Txn::tick()),
        EntryPayload::Normal(proposal) => (proposal.timestamp, proposal.txn.clone()),
        EntryPayload::Membership(membership) => {
            (TimestampMs(0), membership_txn(&entry.log_id, membership))
        }
    };
    LogEntry::new(prev, term, timestamp, txn)
}

fn membership_txn(log_id: &RaftLogId, membership: &RaftMembership) -> Txn {
    let doc = MembershipDoc {
        id: MEMBERSHIP_DOC_ID.into(),
        term: term_of(log_id).0,
        index: log_id.index(),
        membership: membership.clone(),
    };
    let value = serde_json::to_value(&doc).expect("a membership encodes as JSON");
    let doc = RawDoc::from_value(&value).expect("a membership document is a valid document");
    Txn::single(Op::Put {
        collection: CLUSTER_COLLECTION.into(),
        doc,
        if_version: None,
    })
}

/// The membership an entry carries, when it is a membership entry.
pub fn membership_of(entry: &LogEntry) -> Option<RaftMembership> {
    match entry.txn.ops.as_slice() {
        [
            Op::Put {
                collection, doc, ..
            },
        ] if collection == CLUSTER_COLLECTION => {
            serde_json::from_str::<MembershipDoc>(doc.as_str())
                .ok()
                .map(|d| d.membership)
        }
        _ => None,
    }
}

/// The openraft entry a cstore entry stores.
pub fn to_raft_entry(entry: &LogEntry) -> RaftEntry {
    let payload = if let Some(membership) = membership_of(entry) {
        EntryPayload::Membership(membership)
    } else if entry.timestamp == TimestampMs(0) && entry.txn == Txn::tick() {
        EntryPayload::Blank
    } else {
        EntryPayload::Normal(Proposal {
            timestamp: entry.timestamp,
            txn: entry.txn.clone(),
        })
    };
    RaftEntry {
        log_id: log_id_of(entry),
        payload,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn log_id(term: u64, index: u64) -> RaftLogId {
        RaftLogId::new_term_index(term, index)
    }

    fn insert(id: &str) -> Txn {
        let doc = RawDoc::from_value(&serde_json::json!({"_id": id})).unwrap();
        Txn::single(Op::Insert {
            collection: "c".into(),
            doc,
        })
    }

    #[test]
    fn every_payload_round_trips_and_chains() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            1,
            openraft::BasicNode {
                addr: "http://127.0.0.1:7071".into(),
            },
        );
        let membership = RaftMembership::new(vec![[1].into()], nodes).unwrap();
        let entries = vec![
            RaftEntry {
                log_id: log_id(0, 0),
                payload: EntryPayload::Membership(membership),
            },
            RaftEntry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Blank,
            },
            RaftEntry {
                log_id: log_id(1, 2),
                payload: EntryPayload::Normal(Proposal {
                    timestamp: TimestampMs(1_700_000_000_000),
                    txn: insert("a"),
                }),
            },
            RaftEntry {
                log_id: log_id(2, 3),
                payload: EntryPayload::Normal(Proposal {
                    timestamp: TimestampMs(5),
                    txn: Txn::tick(),
                }),
            },
        ];
        let mut prev = LogPosition::START;
        for entry in &entries {
            let stored = to_log_entry(prev, entry);
            assert!(stored.verify_hash());
            assert!(stored.follows(prev));
            assert_eq!(stored.lsn, lsn_of(entry.log_id.index()));
            assert_eq!(&to_raft_entry(&stored), entry);
            prev = stored.position();
        }
        // The same entries give the same chain on any member.
        let mut again = LogPosition::START;
        for entry in &entries {
            again = to_log_entry(again, entry).position();
        }
        assert_eq!(again, prev);
    }

    #[test]
    fn a_client_put_is_no_membership() {
        let entry = LogEntry::new(LogPosition::START, Term(1), TimestampMs(1), insert("x"));
        assert!(membership_of(&entry).is_none());
        assert!(matches!(
            to_raft_entry(&entry).payload,
            EntryPayload::Normal(_)
        ));
    }
}
