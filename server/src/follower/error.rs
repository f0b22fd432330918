//! Why a follower's connection to its leader ended, with a stable code for `/v1/status`.
//!
//! Protocol faults come from core as [`ReplicationError`] with their own codes and remedies;
//! this layer adds what only the driver sees: the socket, the WebSocket handshake and the
//! local store.

use cstore_core::error::ErrorCode;
use cstore_core::replication::{Remedy, ReplicationError};
use cstore_core::storage::StorageError;

/// A reason the replication connection ended (or never started).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    /// No TCP connection, or the WebSocket handshake failed below HTTP.
    #[error("cannot connect to the leader at {url}: {reason}")]
    Connect {
        /// The leader's URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered the upgrade with an HTTP status: not a cstore leader, or a
    /// missing or refused token.
    #[error("the server at {url} refused the replication upgrade with HTTP {status}")]
    Handshake {
        /// The leader's URL.
        url: String,
        /// The HTTP status it answered.
        status: u16,
    },
    /// The server at `url` belongs to another store than the one this replica follows (its
    /// `cluster_id` differs): never followed.
    #[error(
        "the server at {url} belongs to another cluster (cluster_id {found:?}, this replica follows {expected:?})"
    )]
    WrongCluster {
        /// The member's URL.
        url: String,
        /// The cluster this replica follows.
        expected: String,
        /// What the member says.
        found: Option<String>,
    },
    /// The connection broke after it was made.
    #[error("the connection to the leader was lost: {0}")]
    ConnectionLost(String),
    /// The protocol ended the connection (either side), with core's code and remedy.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The local store failed: replication stops (reads go on) until a restart; out of space
    /// (nothing was written) is retried after a backoff instead.
    #[error("the local store failed: {0}")]
    Storage(#[from] StorageError),
}

impl ErrorCode for FollowError {
    fn code(&self) -> &'static str {
        match self {
            FollowError::Connect { .. } => "connect_failed",
            FollowError::Handshake { .. } => "handshake_refused",
            FollowError::WrongCluster { .. } => "wrong_cluster",
            FollowError::ConnectionLost(_) => "connection_lost",
            FollowError::Replication(e) => e.code(),
            FollowError::Storage(e) => e.code(),
        }
    }
}

impl FollowError {
    /// What the driver does next.
    pub fn remedy(&self) -> Remedy {
        match self {
            FollowError::Replication(e) => e.remedy(),
            // Out of space left the store as it was (nothing appended, nothing applied): try
            // again later, from what the store holds.
            FollowError::Storage(StorageError::Full(_)) => Remedy::Reconnect,
            // After a failed write nothing is known about the store until it is reopened.
            FollowError::Storage(_) => Remedy::Stop,
            _ => Remedy::Reconnect,
        }
    }
}
