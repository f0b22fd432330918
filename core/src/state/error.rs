//! Why a transaction was rejected. The leader turns these into client errors; on a replica,
//! a rejection of a logged entry means divergence (or a bug) and is treated as fatal there.

use crate::doc::DocError;
use crate::error::ErrorCode;
use crate::index::IndexSpecError;
use crate::types::{LogPosition, Lsn};

/// A reason to reject a transaction, with the operation it concerns where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("a document with `_id` {id:?} already exists in `{collection}`")]
    AlreadyExists { collection: String, id: String },
    #[error("no document with `_id` {id:?} in `{collection}`")]
    NotFound { collection: String, id: String },
    #[error("`{collection}`/{id:?} is at version {actual}, not {expected}")]
    VersionMismatch {
        collection: String,
        id: String,
        expected: Lsn,
        actual: Lsn,
    },
    #[error(
        "unique index `{index}` on `{collection}` already holds that key (document {existing:?})"
    )]
    UniqueViolation {
        collection: String,
        index: String,
        existing: String,
    },
    #[error("collection `{0}` does not exist")]
    CollectionNotFound(String),
    #[error("collection `{0}` already exists")]
    CollectionExists(String),
    #[error("index `{index}` already exists on `{collection}`")]
    IndexExists { collection: String, index: String },
    #[error("no index `{index}` on `{collection}`")]
    IndexNotFound { collection: String, index: String },
    #[error("`{0}` already has the maximum number of indexes")]
    TooManyIndexes(String),
    #[error(transparent)]
    InvalidIndex(#[from] IndexSpecError),
    #[error(transparent)]
    InvalidDocument(#[from] DocError),
    #[error("a patch must be a JSON object that leaves `_id` unchanged")]
    InvalidPatch,
    #[error("transaction too large: {0}")]
    TooLarge(String),
    #[error("entry {got} does not follow the applied position {applied}")]
    OutOfOrder { applied: LogPosition, got: Lsn },
    #[error("invalid origin: {0}")]
    InvalidOrigin(String),
    #[error(
        "client {client:?} already committed write {last_seq} (at lsn {last_lsn}); write {seq} is not newer"
    )]
    DuplicateOrigin {
        client: String,
        seq: u64,
        last_seq: u64,
        last_lsn: Lsn,
    },
}

impl ErrorCode for TxnError {
    fn code(&self) -> &'static str {
        match self {
            TxnError::AlreadyExists { .. } => "already_exists",
            TxnError::NotFound { .. } => "not_found",
            TxnError::VersionMismatch { .. } => "version_mismatch",
            TxnError::UniqueViolation { .. } => "unique_violation",
            TxnError::CollectionNotFound(_) => "collection_not_found",
            TxnError::CollectionExists(_) => "collection_exists",
            TxnError::IndexExists { .. } => "index_exists",
            TxnError::IndexNotFound { .. } => "index_not_found",
            TxnError::TooManyIndexes(_) => "too_many_indexes",
            TxnError::InvalidIndex(e) => e.code(),
            TxnError::InvalidDocument(e) => e.code(),
            TxnError::InvalidPatch => "invalid_patch",
            TxnError::TooLarge(_) => "txn_too_large",
            TxnError::OutOfOrder { .. } => "out_of_order",
            TxnError::InvalidOrigin(_) => "invalid_origin",
            TxnError::DuplicateOrigin { .. } => "duplicate_origin",
        }
    }
}

/// A rejected transaction: the error and, where it concerns one, the index of the operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{error}", op_index.map(|i| format!("operation {i}: ")).unwrap_or_default())]
pub struct Rejection {
    /// The failing operation's position in the transaction.
    pub op_index: Option<usize>,
    /// What went wrong.
    pub error: TxnError,
}

impl ErrorCode for Rejection {
    fn code(&self) -> &'static str {
        self.error.code()
    }
}

impl From<TxnError> for Rejection {
    fn from(error: TxnError) -> Rejection {
        Rejection {
            op_index: None,
            error,
        }
    }
}
