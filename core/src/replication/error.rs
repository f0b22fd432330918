//! Why a replication connection closes, and what the driver should do about it.
//!
//! Both ends close a connection with a [`ReplicationError`]: its stable code goes into the
//! `Error` frame and the driver's logs, and its [`Remedy`] tells the driver whether to
//! reconnect, to discard the local copy first, or to stop. Most faults (a torn frame, a gap
//! after reordering, a timeout, a diverged log) heal by reconnecting: the hello carries the
//! replica's position and the leader picks the right start, a snapshot if need be.

use crate::error::ErrorCode;
use crate::replication::frame::FrameError;
use crate::types::{LogPosition, Lsn, Term};

/// What the driver does after a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Reconnect (with backoff) and say hello again; the protocol finds the way.
    Reconnect,
    /// Discard the local copy (log, snapshot, state) and reconnect from an empty log: the
    /// leader then sends a snapshot. Used when the local state itself cannot be trusted.
    Rebootstrap,
    /// Do not retry: the peer needs an upgrade or a different configuration.
    Stop,
}

/// A reason to close a replication connection, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// Bytes from the peer are not a valid frame.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer speaks a protocol version this build does not.
    #[error("protocol version {got} is not supported (this side speaks {min} to {max})")]
    UnsupportedProtocol { got: u16, min: u16, max: u16 },
    /// A frame that makes no sense at this point of the conversation.
    #[error("protocol violation: {0}")]
    ProtocolViolation(String),
    /// The leader's term is older than one the replica has seen.
    #[error("leader term {leader} is older than term {seen} already seen")]
    StaleTerm { leader: Term, seen: Term },
    /// An entry's term is older than the entry before it, or newer than its leader's.
    #[error("entry {lsn} has term {term}, outside [{floor}, {ceiling}]")]
    TermOutOfRange {
        lsn: Lsn,
        term: Term,
        floor: Term,
        ceiling: Term,
    },
    /// An entry does not match its own hash.
    #[error("entry {lsn} does not match its hash")]
    EntryHashMismatch { lsn: Lsn },
    /// An entry does not follow the last one received: something was lost or reordered.
    #[error("entry {got} does not follow {expected_prev}")]
    LogGap {
        expected_prev: LogPosition,
        got: Lsn,
    },
    /// An entry at a position the replica holds has a different hash.
    #[error("entry {lsn} differs from the one held: the logs diverged")]
    Diverged { lsn: Lsn },
    /// The snapshot announced is larger than the replica accepts.
    #[error("snapshot of {total_bytes} bytes exceeds the limit of {max_bytes}")]
    SnapshotTooLarge { total_bytes: u64, max_bytes: u64 },
    /// A snapshot chunk starts past the bytes received so far, or runs past the end.
    #[error("snapshot chunk at {offset} (+{len}) does not continue {received} of {total} bytes")]
    SnapshotGap {
        offset: u64,
        len: u64,
        received: u64,
        total: u64,
    },
    /// The snapshot ended before all its bytes arrived.
    #[error("snapshot ended with {received} of {total} bytes")]
    SnapshotIncomplete { received: u64, total: u64 },
    /// The snapshot bytes do not match the announced state hash.
    #[error("snapshot bytes do not match the state hash")]
    SnapshotHashMismatch,
    /// The driver could not apply an entry the replica verified: the local state is broken.
    #[error("applying entry {lsn} failed: {reason}")]
    ApplyFailed { lsn: Lsn, reason: String },
    /// The leader sent nothing for too long.
    #[error("no frame from the leader for {silent_ms} ms")]
    LeaderTimeout { silent_ms: u64 },
    /// The replica did not say hello in time.
    #[error("no hello within {waited_ms} ms")]
    HelloTimeout { waited_ms: u64 },
    /// The replica sent nothing for too long.
    #[error("no frame from the replica for {silent_ms} ms")]
    ReplicaTimeout { silent_ms: u64 },
    /// Frames are in flight and the replica acknowledged none of them for too long.
    #[error("no acknowledgement progress for {stalled_ms} ms")]
    AckTimeout { stalled_ms: u64 },
    /// The replica stayed too far behind for too long.
    #[error("replica lags {lag} entries behind for over {lagging_ms} ms")]
    ReplicaLagging { lag: u64, lagging_ms: u64 },
    /// The replica acknowledged an entry it was never sent.
    #[error("ack for {durable} beyond the last entry sent, {sent}")]
    AckBeyondSent { durable: Lsn, sent: Lsn },
    /// The hello's subscription names too many collections, or invalid names.
    #[error("invalid subscription: {0}")]
    InvalidSubscription(String),
    /// The replica's credentials are limited to collections and its hello asks for more (or
    /// for every collection).
    #[error("subscription not allowed: {0}")]
    SubscriptionForbidden(String),
    /// The leader's own snapshot could not be filtered for a subscription (a leader bug or
    /// a damaged snapshot).
    #[error("the leader's snapshot is unusable: {0}")]
    LeaderSnapshot(String),
    /// The peer closed with an `Error` frame.
    #[error("peer closed: {code}: {message}")]
    Remote { code: String, message: String },
    /// The leader refused the hello's protocol version (`unsupported_protocol`): it is older
    /// than this replica. The next hello speaks the version before.
    #[error(
        "the leader refused protocol version {refused} ({message}); the next hello speaks version {next}"
    )]
    ProtocolFallback {
        refused: u16,
        next: u16,
        message: String,
    },
}

impl ErrorCode for ReplicationError {
    fn code(&self) -> &'static str {
        match self {
            ReplicationError::Frame(error) => error.code(),
            ReplicationError::UnsupportedProtocol { .. } => "unsupported_protocol",
            ReplicationError::ProtocolViolation(_) => "protocol_violation",
            ReplicationError::StaleTerm { .. } => "stale_term",
            ReplicationError::TermOutOfRange { .. } => "term_out_of_range",
            ReplicationError::EntryHashMismatch { .. } => "hash_mismatch",
            ReplicationError::LogGap { .. } => "log_gap",
            ReplicationError::Diverged { .. } => "diverged",
            ReplicationError::SnapshotTooLarge { .. } => "snapshot_too_large",
            ReplicationError::SnapshotGap { .. } => "snapshot_gap",
            ReplicationError::SnapshotIncomplete { .. } => "snapshot_incomplete",
            ReplicationError::SnapshotHashMismatch => "snapshot_hash_mismatch",
            ReplicationError::ApplyFailed { .. } => "apply_failed",
            ReplicationError::LeaderTimeout { .. } => "leader_timeout",
            ReplicationError::HelloTimeout { .. } => "hello_timeout",
            ReplicationError::ReplicaTimeout { .. } => "replica_timeout",
            ReplicationError::AckTimeout { .. } => "ack_timeout",
            ReplicationError::ReplicaLagging { .. } => "replica_lagging",
            ReplicationError::AckBeyondSent { .. } => "ack_beyond_sent",
            ReplicationError::InvalidSubscription(_) => "invalid_subscription",
            ReplicationError::SubscriptionForbidden(_) => "collection_forbidden",
            ReplicationError::LeaderSnapshot(_) => "leader_snapshot_unusable",
            ReplicationError::Remote { .. } => "peer_error",
            ReplicationError::ProtocolFallback { .. } => "protocol_fallback",
        }
    }
}

impl ReplicationError {
    /// What the side that sees this error should do next.
    pub fn remedy(&self) -> Remedy {
        match self {
            ReplicationError::UnsupportedProtocol { .. }
            | ReplicationError::SnapshotTooLarge { .. }
            | ReplicationError::InvalidSubscription(_)
            | ReplicationError::SubscriptionForbidden(_) => Remedy::Stop,
            ReplicationError::ApplyFailed { .. } => Remedy::Rebootstrap,
            ReplicationError::Remote { code, .. } => match code.as_str() {
                "unsupported_protocol"
                | "snapshot_too_large"
                | "invalid_subscription"
                | "collection_forbidden" => Remedy::Stop,
                "apply_failed" => Remedy::Rebootstrap,
                _ => Remedy::Reconnect,
            },
            _ => Remedy::Reconnect,
        }
    }
}
