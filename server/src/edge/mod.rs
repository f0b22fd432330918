//! The network edge: how the server accepts connections and bounds what a client can hold.
//!
//! `axum::serve` has no header timeout, no connection limit and no idle timeout, so a client
//! that opens connections and sends half a head holds a file descriptor each, forever. This
//! module runs the accept loop itself and serves each connection with hyper's HTTP/1.1
//! machinery (upgrades kept for `/v1/replicate`):
//!
//! ```text
//!  accept ─► permit of --max-connections? ──no──► refuse: 503 too_many_connections, close
//!              │ yes                               (at most REFUSALS_MAX at once, else close)
//!              ▼
//!  connection task: TrackedIo (bytes in/out) ─► ConnDeadlines (header, idle) ─► close on expiry
//!              │  hyper http1 + upgrades; each request gets a RequestEdge extension
//!              ▼  (the permit, the body limits) and a body with a total deadline
//!  router ─► handlers; /v1/replicate takes a --max-replication-sessions permit and keeps the
//!            connection permit for the WebSocket's life
//! ```
//!
//! Every limit that trips is counted in `cstore_limit_tripped_total{limit}` (see [`Limit`]),
//! and the flags, defaults and tests are listed in docs/LIMITS.md.

pub mod body;
pub mod deadlines;
pub mod io;
pub mod listener;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use body::{BodyTimedOut, DeadlineBody};
pub use deadlines::ConnDeadlines;
pub use listener::serve;

/// A limit of the edge (or of a request's content) that can trip; its label in
/// `cstore_limit_tripped_total{limit}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A request head did not arrive within `--header-timeout-ms`.
    HeaderTimeout,
    /// A kept-alive connection was silent for `--idle-timeout-ms` (or stopped reading an answer).
    IdleTimeout,
    /// A request body did not arrive within `--body-timeout-ms`.
    BodyTimeout,
    /// A connection beyond `--max-connections`.
    Connections,
    /// A WebSocket session beyond `--max-replication-sessions`.
    ReplicationSessions,
    /// A body beyond the route's bound (`--doc-body-max-bytes`, `--txn-body-max-bytes`).
    BodySize,
    /// A document beyond core's 1 MiB (or nested deeper than 64).
    DocumentSize,
    /// A transaction beyond core's operation count or bytes.
    TxnSize,
    /// A query beyond core's bounds (filter depth, `$in`, limit, skip, sort keys, result size).
    QuerySize,
    /// JSON nested deeper than the parser's recursion limit (128).
    JsonDepth,
    /// A replication message from a replica beyond `--frame-max-bytes`.
    FrameSize,
    /// A replica that sent nothing, acknowledged nothing or read nothing for
    /// `--replica-timeout-ms` (or never said hello).
    ReplicaTimeout,
}

impl Limit {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::HeaderTimeout => "header_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::BodyTimeout => "body_timeout",
            Limit::Connections => "connections",
            Limit::ReplicationSessions => "replication_sessions",
            Limit::BodySize => "body_size",
            Limit::DocumentSize => "document_size",
            Limit::TxnSize => "txn_size",
            Limit::QuerySize => "query_size",
            Limit::JsonDepth => "json_depth",
            Limit::FrameSize => "frame_size",
            Limit::ReplicaTimeout => "replica_timeout",
        }
    }

    /// Counts one trip in `cstore_limit_tripped_total{limit}`.
    pub fn tripped(self) {
        metrics::counter!("cstore_limit_tripped_total", "limit" => self.as_str()).increment(1);
    }
}

/// Default of `--max-connections`: well under the usual hard file limit (the server raises its
/// soft limit to the hard one at start), with room for the data files and peers.
pub const CONNECTIONS_MAX_DEFAULT: u64 = 4096;
/// Default of `--max-replication-sessions`. Each holds at most a window of 4 MiB in flight.
pub const REPLICATION_SESSIONS_MAX_DEFAULT: u64 = 1024;
/// Default of `--header-timeout-ms`.
pub const HEADER_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default of `--idle-timeout-ms`.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Default of `--body-timeout-ms` (a 32 MiB transaction at ~1 MB/s).
pub const BODY_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default of `--replica-timeout-ms` (the leader's heartbeat goes out every second).
pub const REPLICA_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// The edge's settings (from `cstore serve` flags).
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Most connections open at once (WebSockets included).
    pub connections_max: usize,
    /// Most `/v1/replicate` WebSocket sessions at once.
    pub replication_sessions_max: usize,
    /// A request head (the first on a connection from accept, later ones from their first
    /// byte) must arrive within this.
    pub header_timeout: Duration,
    /// A connection between requests may be silent this long.
    pub idle_timeout: Duration,
    /// A request body must arrive in full within this, from the end of its head.
    pub body_timeout: Duration,
    /// The body bounds handlers apply.
    pub bodies: BodyLimits,
    /// Serve TLS with this configuration (`--tls-cert`, `--tls-key`); `None` for plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Per-route body bounds, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// Document routes (insert, put, patch) and find.
    pub doc_body_bytes_max: usize,
    /// `/v1/txn` and `/v1/txns`.
    pub txn_body_bytes_max: usize,
    /// A WebSocket message from a replica.
    pub frame_bytes_max: usize,
}

impl Default for BodyLimits {
    fn default() -> BodyLimits {
        BodyLimits {
            doc_body_bytes_max: crate::http::DOC_BODY_BYTES_MAX,
            txn_body_bytes_max: crate::http::TXN_BODY_BYTES_MAX,
            frame_bytes_max: cstore_core::replication::FRAME_BYTES_MAX,
        }
    }
}

/// What the edge hands every request (as an extension): the connection's permit (a WebSocket
/// keeps it for its life) and the limits handlers apply. Absent in in-process tests, where
/// handlers fall back to the defaults.
#[derive(Clone, Debug)]
pub struct RequestEdge {
    /// The connection's `--max-connections` permit.
    pub connection: Arc<OwnedSemaphorePermit>,
    /// The `--max-replication-sessions` permits.
    pub sessions: Arc<Semaphore>,
    /// `--max-replication-sessions`.
    pub sessions_max: usize,
    /// The body bounds.
    pub bodies: BodyLimits,
}

impl EdgeConfig {
    /// The settings `cstore serve`'s flags ask for.
    pub fn from_args(args: &crate::cli::ServeArgs) -> EdgeConfig {
        EdgeConfig {
            connections_max: args.max_connections as usize,
            replication_sessions_max: args.max_replication_sessions as usize,
            header_timeout: Duration::from_millis(args.header_timeout_ms),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            bodies: BodyLimits {
                doc_body_bytes_max: args.doc_body_max_bytes as usize,
                txn_body_bytes_max: args.txn_body_max_bytes as usize,
                frame_bytes_max: args.frame_max_bytes as usize,
            },
            tls: None,
        }
    }
}

/// The replication sessions' limits with `--replica-timeout-ms`: a replica that sends nothing
/// (not even its answer to the heartbeat), acknowledges nothing in flight, or leaves a send
/// blocked for that long is dropped; one that never says hello is dropped after at most 5 s.
/// Heartbeats go out at least four times per timeout. A replica ahead of this source is waited
/// for at most half the timeout (default 3 s): nothing is sent to it meanwhile, so it says
/// nothing either, and a longer wait would drop it for silence.
pub fn session_config(replica_timeout_ms: u64) -> cstore_core::replication::SessionConfig {
    let defaults = cstore_core::replication::SessionConfig::default();
    cstore_core::replication::SessionConfig {
        replica_timeout_ms,
        ack_timeout_ms: replica_timeout_ms,
        hello_timeout_ms: defaults.hello_timeout_ms.min(replica_timeout_ms),
        heartbeat_interval_ms: defaults
            .heartbeat_interval_ms
            .min(replica_timeout_ms / 4)
            .max(1),
        ahead_wait_ms: defaults.ahead_wait_ms.min(replica_timeout_ms / 2),
        ..defaults
    }
}

/// File descriptors kept for everything that is not a client connection (data files, peers,
/// the follower's and the Raft network's clients).
const FDS_RESERVED: u64 = 256;

/// Raises the soft limit on open files to the hard one (many systems start services at 1024)
/// and warns when `connections_max` still does not fit under it: past the limit accepts fail
/// and the server cannot open its files.
pub fn raise_fd_limit(connections_max: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    if (connections_max as u64).saturating_add(FDS_RESERVED) > soft {
        tracing::warn!(
            connections_max,
            open_files_limit = soft,
            "--max-connections is above what the open-files limit leaves for connections: \
             raise `ulimit -n` or lower --max-connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_timeouts_follow_the_replica_timeout() {
        let defaults = cstore_core::replication::SessionConfig::default();
        assert_eq!(session_config(REPLICA_TIMEOUT_MS_DEFAULT), defaults);
        let short = session_config(2_000);
        assert_eq!(short.replica_timeout_ms, 2_000);
        assert_eq!(short.ack_timeout_ms, 2_000);
        assert_eq!(short.hello_timeout_ms, 2_000);
        assert_eq!(short.heartbeat_interval_ms, 500);
        assert_eq!(short.ahead_wait_ms, 1_000);
        // The smallest accepted timeout still heartbeats often enough.
        let tiny = session_config(500);
        assert!(tiny.heartbeat_interval_ms * 4 <= 500 && tiny.ahead_wait_ms < 500);
    }
}
