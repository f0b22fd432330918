//! IndexedDB storage for the browser replica: [`IdbStore`] (core's `LogStore`) and
//! [`PendingStore`] (the durable queue of writes waiting for the leader).
//!
//! A browser replica must keep its copy of the log and its unconfirmed writes across reloads
//! and crashes, and IndexedDB is the one durable, transactional store every browser has. Both
//! types live in one database per replica name, so a re-bootstrap can drop everything with one
//! [`IdbStore::destroy`]. The records are core's framed bytes, the same as the server's WAL,
//! so the checks a native replica makes on load (crc32c, SHA-256 chain, snapshot hash) are
//! made here too; damaged data is reported as `storage_corrupt` and never returned.
//!
//! ```text
//!   replica driver ──► IdbStore (LogStore) ──┐
//!                  └─► PendingStore ─────────┴─► database (schema, shared connection)
//!                                                  └─► glue (request/transaction futures)
//!                                                        └─► web-sys
//!   records.rs: the bytes of every value (segments, snapshot chunks, named values) and
//!   their checks, in plain Rust
//! ```
//!
//! Errors are [`IdbError`]s with stable codes (`idb_unavailable`, `idb_blocked`,
//! `quota_exceeded`, `idb_version_too_new`, `storage_corrupt`, `idb_failed`,
//! `storage_invalid`); through the `LogStore` trait they become core's `StorageError`.

mod database;
mod error;
mod glue;
mod pending;
mod records;
mod store;

pub use error::IdbError;
pub use pending::{
    META_NAME_BYTES_MAX, META_VALUE_BYTES_MAX, PENDING_WRITE_BYTES_MAX, PENDING_WRITES_MAX,
    PendingStore,
};
pub use records::SNAPSHOT_CHUNK_BYTES;
pub use store::IdbStore;
