//! The one error type of the HTTP layer, and the one table from stable codes to statuses.
//!
//! Everything that can go wrong in a request (a core rejection, a leader failure, a bad
//! token, a malformed body, axum's own routing failures) becomes an [`ApiError`], whose
//! response is always `{"error": {"code", "message"}}`. The status is looked up from the code
//! in [`status_for`], the table docs/HTTP_API.md publishes, so a code can never reach a client
//! with two different statuses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::{error, warn};

use cstore_core::ErrorCode;
use cstore_core::doc::DocError;
use cstore_core::query::QueryError;
use cstore_core::state::Rejection;

use cstore_core::Lsn;

use crate::auth::AuthError;
use crate::edge::Limit;
use crate::leader::WriteError;
use crate::node::ReadError;
use crate::replicate::AckUnknown;
use crate::replicate::{AckPolicy, InvalidAck};

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The leader refused or could not commit the write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A read could not be served (`min_lsn` not reached, or the leader failed).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A follower could not reach its leader to forward a write.
    #[error("the leader at {leader} cannot be reached to forward the write: {reason}")]
    LeaderUnavailable {
        /// The leader's HTTP base.
        leader: String,
        /// What failed.
        reason: String,
    },
    /// A document, id or collection name is invalid.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The request is not authorized.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// `?ack=` is not a policy.
    #[error(transparent)]
    InvalidAck(#[from] InvalidAck),
    /// `?ack_timeout_ms=` is not a number of milliseconds in range.
    #[error("invalid ack_timeout_ms: {0}")]
    InvalidAckTimeout(String),
    /// The write is durable on the leader; whether enough replicas hold it is unknown.
    #[error(
        "write {} is durable on the leader, but its replication (`ack={policy}`) is unknown: {why}",
        lsn.0
    )]
    AckUnknown {
        /// The write's LSN (also in the error body).
        lsn: Lsn,
        /// The policy asked for.
        policy: AckPolicy,
        /// Why it is unknown.
        why: AckUnknown,
    },
    /// The server is stopping (a `/v1/replicate` upgrade during shutdown).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// `/v1/replicate` without a WebSocket upgrade.
    #[error("this route needs a WebSocket upgrade: {0}")]
    UpgradeRequired(String),
    /// The body is not JSON (or is empty).
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is not `application/json`.
    #[error("the body must be sent with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// The body is larger than the route accepts.
    #[error("the body is larger than this route's limit of {limit_bytes} bytes")]
    BodyTooLarge {
        /// The route's limit.
        limit_bytes: usize,
    },
    /// The body did not arrive within `--body-timeout-ms`.
    #[error("{0}")]
    BodyTimeout(String),
    /// `/v1/replicate` beyond `--max-replication-sessions`.
    #[error(
        "the server serves its maximum of {max} replication sessions \
         (--max-replication-sessions); retry later"
    )]
    TooManySessions {
        /// The bound.
        max: usize,
    },
    /// A precondition (`?if_version=`, `If-Match`, `If-None-Match`) does not parse.
    #[error("invalid precondition: {0}")]
    InvalidVersion(String),
    /// A PUT whose body `_id` differs from the path.
    #[error("the body's `_id` {body:?} does not match the path's {path:?}")]
    IdMismatch {
        /// The id in the path.
        path: String,
        /// The id in the body.
        body: String,
    },
    /// A PATCH body that is not a merge-patch object.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// A `/v1/txn` body of the wrong shape.
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    /// A find body of the wrong shape outside what core parses, or a bad query string.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A filter, sort, limit or skip the query engine refuses.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A find whose answer would pass the response bound.
    #[error("the result is larger than {limit_bytes} bytes: ask for less with `limit` and `skip`")]
    ResultTooLarge {
        /// The bound.
        limit_bytes: usize,
    },
    /// An error inside one operation of a transaction.
    #[error("operation {op_index}: {source}")]
    InOp {
        /// The operation's position in `ops`.
        op_index: usize,
        /// What was wrong with it.
        source: Box<ApiError>,
    },
    /// No such document.
    #[error("no document with `_id` {id:?} in `{collection}`")]
    NotFound {
        /// The collection asked for.
        collection: String,
        /// The id asked for.
        id: String,
    },
    /// No such collection.
    #[error("collection `{0}` does not exist")]
    CollectionNotFound(String),
    /// No route has this path.
    #[error("no route for {method} {path}")]
    RouteNotFound {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// The route exists but not with this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// A cluster operation was refused (transfer, membership change, read index).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The route exists only in cluster mode.
    #[error("this server is not a cluster member (start it with --node-id and --cluster)")]
    NotClustered,
    /// A read at `?as_of_lsn=` that cannot be answered.
    #[error(transparent)]
    AsOf(#[from] crate::backup::AsOfError),
    /// A bug or an unexpected failure; details are in the server log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ErrorCode for ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::Write(e) => e.code(),
            ApiError::Read(e) => e.code(),
            ApiError::LeaderUnavailable { .. } => "leader_unavailable",
            ApiError::Doc(e) => e.code(),
            ApiError::Auth(e) => e.code(),
            ApiError::InvalidAck(_) => "invalid_ack",
            ApiError::InvalidAckTimeout(_) => "invalid_ack",
            ApiError::AckUnknown { .. } => "ack_unknown",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::UpgradeRequired(_) => "upgrade_required",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::TooManySessions { .. } => "too_many_sessions",
            ApiError::InvalidVersion(_) => "invalid_version",
            ApiError::IdMismatch { .. } => "invalid_id",
            ApiError::InvalidPatch(_) => "invalid_patch",
            ApiError::InvalidTxn(_) => "invalid_txn",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::Query(e) => e.code(),
            ApiError::ResultTooLarge { .. } => "query_too_large",
            ApiError::InOp { source, .. } => source.code(),
            ApiError::NotFound { .. } => "not_found",
            ApiError::CollectionNotFound(_) => "collection_not_found",
            ApiError::RouteNotFound { .. } => "route_not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Cluster(e) => e.code(),
            ApiError::NotClustered => "not_clustered",
            ApiError::AsOf(e) => e.code(),
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> ApiError {
        ApiError::Write(WriteError::Rejected(rejection))
    }
}

impl ApiError {
    /// Marks this error as concerning operation `op_index` of a transaction.
    pub fn in_op(self, op_index: usize) -> ApiError {
        ApiError::InOp {
            op_index,
            source: Box::new(self),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        status_for(self.code())
    }
}

/// The status every stable code is answered with: the table of docs/HTTP_API.md.
pub fn status_for(code: &str) -> StatusCode {
    match code {
        "invalid_json"
        | "invalid_document"
        | "invalid_id"
        | "invalid_collection_name"
        | "invalid_query"
        | "invalid_patch"
        | "invalid_index"
        | "invalid_txn"
        | "invalid_ack"
        | "invalid_origin"
        | "invalid_version" => StatusCode::BAD_REQUEST,
        // A query over the engine's bounds (nesting, list lengths, limit, skip, result size):
        // the request is well-formed but asks for too much; not a body-size problem (413).
        "query_too_large" => StatusCode::BAD_REQUEST,
        // `?consistency=linearizable` on a read replica, which cannot promise it.
        "consistency_unavailable" => StatusCode::BAD_REQUEST,
        "missing_token" | "invalid_token" | "token_expired" => StatusCode::UNAUTHORIZED,
        "forbidden" | "collection_forbidden" => StatusCode::FORBIDDEN,
        "not_found"
        | "collection_not_found"
        | "index_not_found"
        | "route_not_found"
        | "unknown_member"
        | "not_clustered" => StatusCode::NOT_FOUND,
        "invalid_url" | "last_voter" => StatusCode::BAD_REQUEST,
        "snapshot_chunk_corrupt" | "snapshot_chunk_invalid" | "snapshot_hash_mismatch" => {
            StatusCode::BAD_REQUEST
        }
        "snapshot_offset_mismatch" | "snapshot_id_mismatch" | "snapshot_incomplete" => {
            StatusCode::CONFLICT
        }
        "snapshot_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        // `?as_of_lsn=` below the retained log, or past what this node applied.
        "lsn_compacted" => StatusCode::GONE,
        "lsn_ahead" => StatusCode::BAD_REQUEST,
        "already_exists" | "unique_violation" | "collection_exists" | "index_exists"
        | "too_many_indexes" | "duplicate_origin" | "duplicate_member" | "wrong_cluster" => {
            StatusCode::CONFLICT
        }
        "version_mismatch" => StatusCode::PRECONDITION_FAILED,
        "body_too_large" | "document_too_large" | "txn_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "upgrade_required" => StatusCode::UPGRADE_REQUIRED,
        "body_timeout" => StatusCode::REQUEST_TIMEOUT,
        // The write is durable locally; its replication did not confirm in time.
        "ack_unknown" => StatusCode::GATEWAY_TIMEOUT,
        "min_lsn_timeout" => StatusCode::GATEWAY_TIMEOUT,
        "shutting_down"
        | "overloaded"
        | "leader_unavailable"
        | "not_leader"
        | "unavailable"
        | "cluster_change_failed"
        | "storage_failed"
        | "too_many_connections"
        | "too_many_sessions" => StatusCode::SERVICE_UNAVAILABLE,
        // Nothing of the write was made durable; writes resume once space is freed.
        "disk_full" => StatusCode::INSUFFICIENT_STORAGE,
        // `out_of_order` from the state means the leader built an entry that does not follow
        // its own log: a bug, reported as internal.
        "internal" | "storage_io" | "out_of_order" => StatusCode::INTERNAL_SERVER_ERROR,
        other => {
            debug_assert!(false, "error code {other:?} has no status in the table");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl ApiError {
    /// The JSON error object: `{"code", "message"}` and what the client needs to act on it.
    pub fn body(&self) -> Value {
        let code = self.code();
        let message = self.to_string();
        match self {
            // The client must learn the LSN: the write happened, only its replication is unknown.
            ApiError::AckUnknown { lsn, .. } => {
                json!({"code": code, "message": message, "lsn": lsn.0})
            }
            // The client learns where to go instead.
            ApiError::Write(WriteError::NotLeader { leader_url })
            | ApiError::Cluster(crate::cluster::ClusterError::NotLeader { leader_url }) => {
                json!({"code": code, "message": message, "leader_url": leader_url})
            }
            _ => json!({"code": code, "message": message}),
        }
    }
}

impl ApiError {
    /// The content limit this error reports, counted in `cstore_limit_tripped_total{limit}`
    /// (the edge counts its own: timeouts, connections, sessions).
    fn limit_tripped(&self) -> Option<Limit> {
        match self.code() {
            "body_too_large" => Some(Limit::BodySize),
            "document_too_large" => Some(Limit::DocumentSize),
            "txn_too_large" => Some(Limit::TxnSize),
            "query_too_large" => Some(Limit::QuerySize),
            "invalid_json" if self.to_string().contains("recursion limit exceeded") => {
                Some(Limit::JsonDepth)
            }
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(limit) = self.limit_tripped() {
            limit.tripped();
        }
        let status = self.status();
        let body = self.body();
        if status.is_server_error() {
            error!(code = self.code(), message = %self, "request failed");
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            warn!(code = self.code(), message = %self, "request refused");
        }
        (status, Json(json!({ "error": body }))).into_response()
    }
}
