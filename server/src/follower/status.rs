//! What a follower reports about its replication: `/v1/status` and `/metrics` read it.

use cstore_core::{Lsn, ReplicaId, Term};

/// Where the replication connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Opening the WebSocket.
    Connecting,
    /// Said hello; a snapshot may be arriving.
    Connected,
    /// Entries stream from the leader.
    Streaming,
    /// Waiting (backoff) before the next attempt.
    Waiting,
    /// Replication stopped (remedy `stop`, or the local store failed); reads go on.
    Stopped,
}

impl Connection {
    /// The snake_case name in `/v1/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Connected => "connected",
            Connection::Streaming => "streaming",
            Connection::Waiting => "waiting",
            Connection::Stopped => "stopped",
        }
    }
}

/// The last error that ended a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastError {
    /// Its stable code.
    pub code: String,
    /// Its message.
    pub message: String,
}

/// Replication progress, updated by the replication task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The highest term seen (durable in the metadata).
    pub term: Term,
    /// The leader of the current connection.
    pub leader_id: Option<ReplicaId>,
    /// The last LSN durable in the local log.
    pub durable_lsn: Lsn,
    /// The leader's committed LSN as last heard.
    pub leader_committed_lsn: Lsn,
    /// Committed entries not received yet.
    pub lag: u64,
    /// The connection's state.
    pub connection: Connection,
    /// The replication URL followed now (or tried last).
    pub url: String,
    /// Times the follower moved to another member of its `--follow` list.
    pub member_switches: u64,
    /// Why the last connection ended, if one did.
    pub last_error: Option<LastError>,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Bytes of replication frames received.
    pub bytes_received: u64,
    /// Entries persisted from the leader.
    pub entries_received: u64,
    /// Snapshots installed.
    pub snapshot_installs: u64,
    /// The replication protocol version of the last hello: the newest, or an older one while
    /// the leader is older than this build (it refused the newest).
    pub protocol_version: u16,
}

/// What `/v1/status` reports about a follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerStatus {
    /// This node's identity.
    pub node_id: ReplicaId,
    /// The highest term seen.
    pub term: Term,
    /// The replication URL followed now.
    pub leader_url: String,
    /// Every URL it may follow (`--follow`).
    pub urls: Vec<String>,
    /// The last entry applied to the state (every applied entry is durable here).
    pub applied_lsn: Lsn,
    /// Replication progress.
    pub progress: Progress,
}
