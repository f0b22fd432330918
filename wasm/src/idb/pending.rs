//! [`PendingStore`]: the durable queue of client writes that the leader has not confirmed.
//!
//! A browser replica applies a write locally at once and must not lose it across reloads,
//! crashes or a closed laptop before the leader commits it. So the write is stored here first,
//! under its origin sequence number (the `seq` of `POST /v1/txn`'s `origin`), and removed only
//! when the confirmed log entry arrives (`remove_through`) or the leader rejects it
//! (`remove`). Beside the queue sit a few small named values the driver keeps (its client id,
//! the next seq). Values use the same framing and crc as the log, and name their own key, so
//! a damaged or misplaced record is `storage_corrupt`, never a wrong write replayed.
//!
//! Bounds: at most [`PENDING_WRITES_MAX`] writes of at most [`PENDING_WRITE_BYTES_MAX`]
//! each; a push past either fails with `storage_invalid` and stores nothing, so an app that
//! stays offline for very long gets an error instead of an unbounded database.

use cstore_core::log::codec::RecordKind;
use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbTransaction, IdbTransactionMode};

use super::IdbError;
use super::database::{CLIENT_META, Connection, PENDING, open_connection, put, value_bytes};
use super::glue::{call, key, keys_through, object_store, request, transaction, transaction_done};
use super::records::{PendingRecord, decode_framed, decode_named, encode_framed, encode_named};

/// Most writes the queue holds.
pub const PENDING_WRITES_MAX: usize = 100_000;
/// Largest pending write, in bytes (a transaction's documents are at most 16 MiB).
pub const PENDING_WRITE_BYTES_MAX: usize = 16 << 20;
/// Longest name of a metadata value, in bytes.
pub const META_NAME_BYTES_MAX: usize = 256;
/// Largest metadata value, in bytes.
pub const META_VALUE_BYTES_MAX: usize = 64 << 10;

/// The pending-write queue and the driver's small metadata, in a replica's database.
#[derive(Debug, Clone)]
pub struct PendingStore {
    connection: Connection,
}

impl PendingStore {
    /// Opens the queue of replica `name` (the same database as its [`IdbStore`]
    /// (super::IdbStore)), creating it if needed.
    pub async fn open(name: &str) -> Result<PendingStore, IdbError> {
        Ok(PendingStore::from_connection(open_connection(name).await?))
    }

    pub(crate) fn from_connection(connection: Connection) -> PendingStore {
        PendingStore { connection }
    }

    /// Closes this handle; the connection closes once every store sharing it is dropped.
    /// Dropping the handle does the same.
    pub fn close(self) {}

    fn tx(&self, store: &str, mode: IdbTransactionMode) -> Result<IdbTransaction, IdbError> {
        transaction(self.connection.db(), &[store], mode)
    }

    /// Stores write `seq` durably (replacing a write with the same seq). Resolves once the
    /// transaction is complete.
    pub async fn push(&self, seq: u64, bytes: Vec<u8>) -> Result<(), IdbError> {
        if bytes.len() > PENDING_WRITE_BYTES_MAX {
            return Err(IdbError::Invalid(format!(
                "a pending write of {} bytes exceeds {PENDING_WRITE_BYTES_MAX}",
                bytes.len()
            )));
        }
        let held = self.count().await?;
        if held >= PENDING_WRITES_MAX {
            return Err(IdbError::Invalid(format!(
                "the pending queue holds {held} writes, its limit"
            )));
        }
        let record = encode_framed(RecordKind::Metadata, &PendingRecord { seq, bytes });
        let tx = self.tx(PENDING, IdbTransactionMode::Readwrite)?;
        put(&object_store(&tx, PENDING)?, &key(seq), &record)?;
        transaction_done(&tx, "storing a pending write").await
    }

    /// Stores several writes durably in one transaction: all of them or, on an error, none.
    /// What an offline burst of writes costs: one transaction instead of two per write.
    pub async fn push_many(&self, writes: Vec<(u64, Vec<u8>)>) -> Result<(), IdbError> {
        if let Some((_, bytes)) = writes
            .iter()
            .find(|(_, bytes)| bytes.len() > PENDING_WRITE_BYTES_MAX)
        {
            return Err(IdbError::Invalid(format!(
                "a pending write of {} bytes exceeds {PENDING_WRITE_BYTES_MAX}",
                bytes.len()
            )));
        }
        let held = self.count().await?;
        if held + writes.len() > PENDING_WRITES_MAX {
            return Err(IdbError::Invalid(format!(
                "the pending queue holds {held} writes; {} more exceed its limit",
                writes.len()
            )));
        }
        let tx = self.tx(PENDING, IdbTransactionMode::Readwrite)?;
        let store = object_store(&tx, PENDING)?;
        for (seq, bytes) in writes {
            let record = encode_framed(RecordKind::Metadata, &PendingRecord { seq, bytes });
            put(&store, &key(seq), &record)?;
        }
        transaction_done(&tx, "storing pending writes").await
    }

    /// How many writes are queued.
    pub async fn count(&self) -> Result<usize, IdbError> {
        let tx = self.tx(PENDING, IdbTransactionMode::Readonly)?;
        let req = call(
            object_store(&tx, PENDING)?.count(),
            "counting pending writes",
        )?;
        let count = request(&req, "counting pending writes").await?;
        Ok(count.as_f64().unwrap_or(0.0) as usize)
    }

    /// Every queued write, in seq order, each checked (crc, and that it is the write of the
    /// seq it is stored under).
    pub async fn list(&self) -> Result<Vec<(u64, Vec<u8>)>, IdbError> {
        let tx = self.tx(PENDING, IdbTransactionMode::Readonly)?;
        let store = object_store(&tx, PENDING)?;
        let values_req = call(store.get_all(), "reading pending writes")?;
        let keys_req = call(store.get_all_keys(), "reading pending keys")?;
        let values = request(&values_req, "reading pending writes");
        let keys = request(&keys_req, "reading pending keys");
        let values: Array = values.await?.unchecked_into();
        let keys: Array = keys.await?.unchecked_into();
        let mut out = Vec::with_capacity(values.length() as usize);
        for (value, key) in values.iter().zip(keys.iter()) {
            let what = format!("pending write under key {key:?}");
            let record: PendingRecord =
                decode_framed(RecordKind::Metadata, &value_bytes(&value, &what)?, &what)?;
            if key.as_f64() != Some(record.seq as f64) {
                return Err(IdbError::Corrupt(format!("{what} is write {}", record.seq)));
            }
            out.push((record.seq, record.bytes));
        }
        Ok(out)
    }

    /// Removes every write with a seq at or below `seq` (the leader confirmed through it).
    pub async fn remove_through(&self, seq: u64) -> Result<(), IdbError> {
        self.delete(&keys_through(seq)?.into(), "removing confirmed writes")
            .await
    }

    /// Removes write `seq` (the leader rejected it). Removing a seq not held does nothing.
    pub async fn remove(&self, seq: u64) -> Result<(), IdbError> {
        self.delete(&key(seq), "removing a pending write").await
    }

    async fn delete(&self, query: &JsValue, context: &str) -> Result<(), IdbError> {
        let tx = self.tx(PENDING, IdbTransactionMode::Readwrite)?;
        call(object_store(&tx, PENDING)?.delete(query), context)?;
        transaction_done(&tx, context).await
    }

    /// The value stored under `name`, if any.
    pub async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, IdbError> {
        check_meta_name(name)?;
        let tx = self.tx(CLIENT_META, IdbTransactionMode::Readonly)?;
        let req = call(
            object_store(&tx, CLIENT_META)?.get(&name.into()),
            "reading client metadata",
        )?;
        let value = request(&req, "reading client metadata").await?;
        if value.is_undefined() {
            return Ok(None);
        }
        let bytes = value_bytes(&value, &format!("client_meta record {name:?}"))?;
        decode_named(CLIENT_META, name, &bytes).map(Some)
    }

    /// Stores `bytes` under `name` durably, replacing an earlier value.
    pub async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), IdbError> {
        check_meta_name(name)?;
        if bytes.len() > META_VALUE_BYTES_MAX {
            return Err(IdbError::Invalid(format!(
                "a metadata value of {} bytes exceeds {META_VALUE_BYTES_MAX}",
                bytes.len()
            )));
        }
        let tx = self.tx(CLIENT_META, IdbTransactionMode::Readwrite)?;
        put(
            &object_store(&tx, CLIENT_META)?,
            &name.into(),
            &encode_named(name, &bytes.to_vec()),
        )?;
        transaction_done(&tx, "storing client metadata").await
    }
}

fn check_meta_name(name: &str) -> Result<(), IdbError> {
    if name.is_empty() || name.len() > META_NAME_BYTES_MAX {
        return Err(IdbError::Invalid(format!(
            "a metadata name must have 1..={META_NAME_BYTES_MAX} bytes, {:?} has {}",
            name,
            name.len()
        )));
    }
    Ok(())
}
