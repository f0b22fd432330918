//! The bounds and timeouts of both ends of a replication connection.
//!
//! Every buffer the protocol keeps has a bound here, and every wait a timeout: at a bound the
//! sender stops and waits for acknowledgements (backpressure); past a timeout the connection
//! closes and the replica reconnects. Defaults suit a server on a LAN and a browser on a
//! decent connection; drivers and the simulator override them.

use crate::types::ReplicaId;

/// Limits of one leader-side session (one connected replica).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Most entries sent and not yet acknowledged as durable.
    pub window_entries_max: u64,
    /// Most entry bytes (or snapshot bytes) sent and not yet acknowledged.
    pub window_bytes_max: u64,
    /// Most entries asked of the driver in one `ReadEntries`; also bounds the entries a session
    /// holds between reading and sending.
    pub read_entries_max: u64,
    /// Target size of one `Entries` frame; a single larger entry goes alone.
    pub frame_bytes_max: usize,
    /// Size of one `SnapshotChunk`.
    pub snapshot_chunk_bytes: usize,
    /// A heartbeat goes out when nothing else was sent for this long.
    pub heartbeat_interval_ms: u64,
    /// Close when the replica has not said hello after this long.
    pub hello_timeout_ms: u64,
    /// Close when nothing at all came from the replica for this long (it answers heartbeats).
    pub replica_timeout_ms: u64,
    /// Close when something is in flight and no acknowledgement progressed for this long.
    pub ack_timeout_ms: u64,
    /// A replica more than this many entries behind the committed position is lagging...
    pub lag_entries_max: u64,
    /// ...and is dropped when it stays lagging for this long.
    pub lag_timeout_ms: u64,
    /// A replica whose hello is past this source's committed position (it followed another
    /// member of a cluster, and this one is still catching up, or just restarted) is waited
    /// for this long before it is taken for diverged and sent a snapshot. Below the replica's
    /// `leader_timeout_ms`, since nothing is sent meanwhile.
    pub ahead_wait_ms: u64,
    /// The newest protocol version served ([`PROTOCOL_VERSION`] unless set lower): a leader at
    /// a lower one refuses newer replicas exactly as an older build does, which is how the
    /// tests play an older leader during a rolling upgrade. Clamped to
    /// [`PROTOCOL_VERSION_MIN`]..=[`PROTOCOL_VERSION`].
    ///
    /// [`PROTOCOL_VERSION`]: crate::replication::PROTOCOL_VERSION
    /// [`PROTOCOL_VERSION_MIN`]: crate::replication::PROTOCOL_VERSION_MIN
    pub protocol_version_max: u16,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            // Room for several of a replica's persist batches, so the next arrives while it
            // fsyncs one: at 1,024 a catching-up follower waited out a round trip per batch.
            // Memory is bounded by the byte window; entries are shared with the log's tail.
            window_entries_max: 8192,
            window_bytes_max: 4 << 20,
            read_entries_max: 1024,
            frame_bytes_max: 256 << 10,
            snapshot_chunk_bytes: 64 << 10,
            heartbeat_interval_ms: 1_000,
            hello_timeout_ms: 5_000,
            replica_timeout_ms: 10_000,
            ack_timeout_ms: 10_000,
            lag_entries_max: 100_000,
            lag_timeout_ms: 60_000,
            ahead_wait_ms: 3_000,
            protocol_version_max: crate::replication::PROTOCOL_VERSION,
        }
    }
}

/// Limits of the replica side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This replica's stable identity.
    pub replica_id: ReplicaId,
    /// Close (and reconnect) when the leader sent nothing for this long; a few heartbeat
    /// intervals.
    pub leader_timeout_ms: u64,
    /// Largest snapshot accepted, in bytes; the bound on the receive buffer.
    pub snapshot_bytes_max: u64,
    /// The collections to follow; `None` follows all. A replica keeps one subscription for
    /// its life: its log and state hold only these collections (see [`Hello::collections`]).
    ///
    /// [`Hello::collections`]: crate::replication::Hello::collections
    pub subscription: Option<Vec<String>>,
}

impl ReplicaConfig {
    /// Defaults for the replica with this identity.
    pub fn new(replica_id: ReplicaId) -> ReplicaConfig {
        ReplicaConfig {
            replica_id,
            leader_timeout_ms: 5_000,
            snapshot_bytes_max: 1 << 30,
            subscription: None,
        }
    }
}
