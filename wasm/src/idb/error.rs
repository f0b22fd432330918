//! The IndexedDB layer's errors, each with a stable code.
//!
//! IndexedDB fails in ways a file system does not: it may be missing altogether (some private
//! modes, sandboxed iframes, opaque origins), an upgrade may be blocked by another tab that
//! keeps an old connection open, and the browser may refuse a write for quota. The replica
//! driver and the app need to tell these apart (ask the user to close other tabs, free space,
//! or fall back to a memory replica), so each has its own variant and code. Stored bytes that
//! fail their checks are `storage_corrupt`, the same code core's [`StorageError::Corrupt`]
//! carries, so a driver has one code to watch for before it re-bootstraps.

use cstore_core::error::ErrorCode;
use cstore_core::storage::StorageError;
use wasm_bindgen::{JsCast, JsValue};

/// Why an IndexedDB operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdbError {
    /// No usable IndexedDB: the global has none, or the browser refuses to open databases
    /// here (private mode, opaque origin, disabled storage).
    #[error("IndexedDB is not available here: {0}")]
    Unavailable(String),
    /// Opening or deleting the database waits on another connection (another tab) that
    /// does not close.
    #[error("IndexedDB database {0:?} is blocked by another open connection (another tab?)")]
    Blocked(String),
    /// The browser refused a write for lack of space.
    #[error("IndexedDB quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The database on disk was written by a newer version of this package.
    #[error("IndexedDB database has a newer schema than this package understands: {0}")]
    VersionTooNew(String),
    /// Stored bytes failed their checksum or hash, do not decode, are of the wrong type, or
    /// do not belong under their key.
    #[error("IndexedDB record is corrupt: {0}")]
    Corrupt(String),
    /// A request or transaction failed for another reason (the message says which).
    #[error("IndexedDB request failed: {0}")]
    Failed(String),
    /// The caller broke a rule of the API (a value too large, a queue full).
    #[error("invalid IndexedDB store request: {0}")]
    Invalid(String),
}

impl ErrorCode for IdbError {
    fn code(&self) -> &'static str {
        match self {
            IdbError::Unavailable(_) => "idb_unavailable",
            IdbError::Blocked(_) => "idb_blocked",
            IdbError::QuotaExceeded(_) => "quota_exceeded",
            IdbError::VersionTooNew(_) => "idb_version_too_new",
            IdbError::Corrupt(_) => "storage_corrupt",
            IdbError::Failed(_) => "idb_failed",
            IdbError::Invalid(_) => "storage_invalid",
        }
    }
}

impl IdbError {
    /// Maps a thrown value or a `DOMException` from IndexedDB to a variant by its `name`.
    pub(crate) fn from_js(context: &str, value: &JsValue) -> IdbError {
        let (name, message) = match value.dyn_ref::<web_sys::DomException>() {
            Some(dom) => (dom.name(), dom.message()),
            None => match value.dyn_ref::<js_sys::Error>() {
                Some(error) => (String::from(error.name()), String::from(error.message())),
                None => (String::new(), format!("{value:?}")),
            },
        };
        let text = format!("{context}: {name}: {message}");
        match name.as_str() {
            "QuotaExceededError" => IdbError::QuotaExceeded(text),
            "VersionError" => IdbError::VersionTooNew(text),
            "SecurityError" | "InvalidAccessError" => IdbError::Unavailable(text),
            _ => IdbError::Failed(text),
        }
    }
}

/// The trait [`LogStore`](cstore_core::storage::LogStore) speaks core's [`StorageError`]:
/// corruption and bad requests map one to one, and every platform failure becomes `Io` with
/// this layer's code at the front of its message (`"quota_exceeded: ..."`), so it is not lost.
impl From<IdbError> for StorageError {
    fn from(error: IdbError) -> StorageError {
        match error {
            IdbError::Corrupt(message) => StorageError::Corrupt(message),
            IdbError::Invalid(message) => StorageError::Invalid(message),
            other => StorageError::Io(format!("{}: {other}", other.code())),
        }
    }
}
