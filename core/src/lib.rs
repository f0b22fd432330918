//! # cstore-core
//!
//! The platform-neutral heart of Collection Store: documents, secondary indexes, queries,
//! transactions, the hash-chained log, snapshots and the storage trait.
//!
//! Core is sans-IO. It never reads a clock, never spawns, and never touches a socket, a file or
//! the DOM; time and randomness come in as arguments. Drivers (the `cstore` server, the wasm
//! replica) do the IO around it.

pub mod doc;
pub mod error;
pub mod index;
pub mod log;
mod packed;
pub mod query;
pub mod replication;
#[cfg(feature = "testing")]
pub mod sim;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod txn;
pub mod types;

pub use doc::{DocError, DocRef, DocText, RawDoc, StoredDoc};
pub use error::ErrorCode;
pub use log::LogEntry;
pub use snapshot::Snapshot;
pub use txn::{Op, Txn};
pub use types::{Hash, LogPosition, Lsn, ReplicaId, Term, TimestampMs};
