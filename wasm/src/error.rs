//! The errors the browser replica hands to JavaScript, each with a stable snake_case code.
//!
//! JavaScript code branches on `error.code`, never on messages, so every failure crossing the
//! boundary becomes an `Error` whose `code` property is one of these codes (or, for a write
//! the leader refused, the leader's own code). Lower layers' errors keep their codes.

use cstore_core::ErrorCode;
use cstore_core::doc::DocError;
use cstore_core::query::QueryError;
use cstore_core::state::Rejection;
use cstore_core::storage::StorageError;
use wasm_bindgen::JsValue;

/// Why a call on the browser replica failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// `Replica.open` options are missing or malformed.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// An argument of another call is malformed (not an object, not a string, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A document failed validation.
    #[error(transparent)]
    Document(#[from] DocError),
    /// A query failed to parse or exceeds a bound.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A local write does not apply to the local state.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The local store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The pending-write queue is full: too many writes wait for the leader.
    #[error("{0} writes are already pending; wait for some to be confirmed")]
    TooManyPending(usize),
    /// The replica was closed.
    #[error("the replica is closed")]
    Closed,
    /// The collection is not among those the replica was opened to follow.
    #[error("collection `{0}` is not among the collections this replica follows")]
    NotSubscribed(String),
    /// A linearizable read needs the server, and the replica has no connection to one.
    #[error("offline: {0}")]
    Offline(String),
    /// A linearizable read could not get (or reach) the cluster's read index in time.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ErrorCode for ReplicaError {
    fn code(&self) -> &'static str {
        match self {
            ReplicaError::InvalidOptions(_) => "invalid_options",
            ReplicaError::InvalidArgument(_) => "invalid_argument",
            ReplicaError::Document(e) => e.code(),
            ReplicaError::Query(e) => e.code(),
            ReplicaError::Rejected(e) => e.code(),
            ReplicaError::Storage(e) => e.code(),
            ReplicaError::TooManyPending(_) => "too_many_pending",
            ReplicaError::Closed => "closed",
            ReplicaError::NotSubscribed(_) => "not_subscribed",
            ReplicaError::Offline(_) => "offline",
            ReplicaError::Unavailable(_) => "unavailable",
        }
    }
}

/// A JavaScript `Error` with `message` and a `code` property.
pub fn js_error(code: &str, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    // Setting a property on a fresh Error cannot fail.
    let _ = js_sys::Reflect::set(&error, &"code".into(), &code.into());
    error.into()
}

impl From<ReplicaError> for JsValue {
    fn from(error: ReplicaError) -> JsValue {
        js_error(error.code(), &error.to_string())
    }
}
