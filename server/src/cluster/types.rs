//! openraft's type configuration for a cstore cluster, and the data that travels through it.
//!
//! A proposal ([`Proposal`]) is a client transaction with the leader's clock; openraft puts it
//! in the log, and every member turns each log entry into a hash-chained [`LogEntry`] the same
//! way (see `entry.rs`). What applying an entry did comes back to the proposer as an
//! [`Outcome`].

use std::fmt;

use serde::{Deserialize, Serialize};

use cstore_core::state::Rejection;
use cstore_core::{Lsn, TimestampMs, Txn};

openraft::declare_raft_types!(
    /// The cluster's Raft types: standard Raft leader ids (one leader per term, so a log id is
    /// `(term, index)` like our `(term, lsn)`), members addressed by their HTTP base URL.
    pub ClusterTypes:
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// A type configuration with this cluster's data types: [`ClusterTypes`], and any other that
/// differs from it only in the async runtime (the deterministic simulation in
/// `server/tests/cluster_sim` runs openraft with a seeded RNG and ordered watch channels). The
/// state machine serves every such configuration.
pub trait CstoreTypeConfig:
    openraft::RaftTypeConfig<
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        Entry = RaftEntry,
    >
{
}

impl<C> CstoreTypeConfig for C where
    C: openraft::RaftTypeConfig<
            D = Proposal,
            R = Outcome,
            NodeId = u64,
            Node = openraft::BasicNode,
            Term = u64,
            LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
            Entry = RaftEntry,
        >
{
}

/// The openraft handle of a member.
pub type Raft = openraft::Raft<ClusterTypes, super::state_machine::StateMachine>;
/// An openraft log entry of this cluster.
pub type RaftEntry = openraft::Entry<
    <openraft::impls::leader_id_std::LeaderId<u64, u64> as openraft::vote::RaftLeaderId>::Committed,
    openraft::EntryPayload<Proposal, u64, openraft::BasicNode>,
>;
/// A log id: `(term, index)`.
pub type RaftLogId = openraft::alias::LogIdOf<ClusterTypes>;
/// A vote.
pub type RaftVote = openraft::alias::VoteOf<ClusterTypes>;
/// A membership configuration.
pub type RaftMembership = openraft::Membership<u64, openraft::BasicNode>;
/// A membership with the log id that set it.
pub type RaftStoredMembership = openraft::alias::StoredMembershipOf<ClusterTypes>;
/// Snapshot metadata.
pub type RaftSnapshotMeta = openraft::alias::SnapshotMetaOf<ClusterTypes>;

/// A client transaction proposed to the cluster, stamped with the leader's clock (which drives
/// TTL expiry on every member alike).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposing leader's clock.
    pub timestamp: TimestampMs,
    /// What to do.
    pub txn: Txn,
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "txn of {} ops at {}",
            self.txn.op_count(),
            self.timestamp
        )
    }
}

/// What applying a committed entry did: its LSN, and the rejection when the transaction did
/// not apply (it then stays in the log as a no-op on every member, decided by the same state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The entry's LSN.
    pub lsn: Lsn,
    /// Why the transaction did not apply, if it did not.
    pub rejection: Option<Rejection>,
}

// openraft's `serde` feature asks every response type to be serializable, but an outcome only
// travels from the state machine to the proposer in the same process: it is never encoded.
// The impls below encode the LSN and the error code for debugging output and refuse to decode.
impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use cstore_core::error::ErrorCode;
        (self.lsn, self.rejection.as_ref().map(|r| r.code())).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Outcome, D::Error> {
        Err(serde::de::Error::custom(
            "an outcome stays in the process that applied it",
        ))
    }
}
