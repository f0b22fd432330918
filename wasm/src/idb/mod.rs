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

// The stores call IndexedDB and build for wasm32 only; the records and their decoders build
// everywhere, so that the fuzz targets (`fuzz/`, native) reach them through [`fuzzing`].
#[cfg(target_arch = "wasm32")]
mod database;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod error;
#[cfg(target_arch = "wasm32")]
mod glue;
#[cfg(target_arch = "wasm32")]
mod pending;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod records;
#[cfg(target_arch = "wasm32")]
mod store;

pub use error::IdbError;
#[cfg(target_arch = "wasm32")]
pub use pending::{
    META_NAME_BYTES_MAX, META_VALUE_BYTES_MAX, PENDING_WRITE_BYTES_MAX, PENDING_WRITES_MAX,
    PendingStore,
};
pub use records::SNAPSHOT_CHUNK_BYTES;
#[cfg(target_arch = "wasm32")]
pub use store::IdbStore;

/// The decoders of this module's IndexedDB records, callable from a native build, for the fuzz
/// targets in `fuzz/`: each takes the bytes one IndexedDB value holds, as the store reads them.
#[doc(hidden)]
pub mod fuzzing {
    use cstore_core::log::codec::RecordKind;
    use cstore_core::snapshot::Snapshot;
    use cstore_core::storage::Metadata;
    use cstore_core::types::LogPosition;

    use super::IdbError;
    use super::records::{self, PendingRecord, Span};

    /// A `log` segment stored under the key `first..=last`; the number of entries it holds.
    pub fn decode_segment(first: u64, last: u64, bytes: &[u8]) -> Result<usize, IdbError> {
        records::decode_segment(Span { first, last }, bytes).map(|entries| entries.len())
    }

    /// The records of the `snapshot` store in key order.
    pub fn decode_snapshot(records: &[Vec<u8>]) -> Result<Snapshot, IdbError> {
        records::decode_snapshot(records)
    }

    /// A `pending` write: its sequence number and the bytes of its transaction.
    pub fn decode_pending(bytes: &[u8]) -> Result<(u64, Vec<u8>), IdbError> {
        let record: PendingRecord =
            records::decode_framed(RecordKind::Metadata, bytes, "pending write")?;
        Ok((record.seq, record.bytes))
    }

    /// The records [`decode_snapshot`] reads, for seeds.
    pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<Vec<u8>> {
        records::encode_snapshot(snapshot)
    }

    /// A `pending` record and the `meta` records of a position and of core's `Metadata`, for
    /// seeds.
    pub fn encode_small(
        seq: u64,
        txn: &[u8],
        at: LogPosition,
        metadata: &Metadata,
    ) -> [Vec<u8>; 3] {
        let pending = PendingRecord {
            seq,
            bytes: txn.to_vec(),
        };
        [
            records::encode_framed(RecordKind::Metadata, &pending),
            records::encode_named("log", &at),
            records::encode_named("metadata", metadata),
        ]
    }

    /// The `meta` records: the compaction point (`"log"`) and core's `Metadata`.
    pub fn decode_meta(bytes: &[u8]) -> Result<(), IdbError> {
        let log: Result<LogPosition, _> = records::decode_named("meta", "log", bytes);
        let metadata: Result<Metadata, _> = records::decode_named("meta", "metadata", bytes);
        let client: Result<Vec<u8>, _> = records::decode_named("client_meta", "cursor", bytes);
        log.map(drop).or(metadata.map(drop)).or(client.map(drop))
    }
}
