//! The durable queue of writes made here and not yet committed by the leader.
//!
//! A write is acknowledged to the app only once it is in this queue, so a reload, a crash or
//! a closed tab loses nothing: on open the queue is read back and its writes re-applied over
//! the local state, and the writer sends them again. The queue also keeps this client's
//! identity (random, chosen on first open), which with each write's sequence number names
//! the write to the leader (`origin`), making a resend after a lost answer harmless.
//!
//! [`PendingQueue`] is the seam: `MemoryPending` here for tests and stores without
//! durability; the IndexedDB one lives with the IndexedDB store.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use cstore_core::log::codec::{decode_entry, encode_entry};
use cstore_core::storage::{StorageError, StorageResult};
use cstore_core::{Hash, LogEntry, LogPosition, Lsn, Term, TimestampMs, Txn};

/// What the queue held at open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingLoad {
    /// This client's identity, if one was saved.
    pub client: Option<String>,
    /// The writes, in sequence order.
    pub writes: Vec<(u64, Txn)>,
}

/// A durable queue of pending writes. Every call is durable when its future resolves.
pub trait PendingQueue {
    /// Everything the queue holds.
    fn load(&self) -> impl Future<Output = StorageResult<PendingLoad>>;
    /// Saves this client's identity.
    fn save_client(&mut self, client: &str) -> impl Future<Output = StorageResult<()>>;
    /// Adds write `seq` (greater than every seq held).
    fn push(&mut self, seq: u64, txn: &Txn) -> impl Future<Output = StorageResult<()>>;
    /// Adds several writes (seqs ascending, above every seq held) in one durable step: all or
    /// none.
    fn push_many(&mut self, writes: &[(u64, Txn)]) -> impl Future<Output = StorageResult<()>>;
    /// Removes write `seq` (confirmed or rejected); removing an absent seq is no error.
    fn remove(&mut self, seq: u64) -> impl Future<Output = StorageResult<()>>;
    /// Removes every write at or below `seq`, in one durable step.
    fn remove_through(&mut self, seq: u64) -> impl Future<Output = StorageResult<()>>;
}

/// Small named values kept beside the queue, in the same database: the identity of the store
/// the replica follows (`cluster.rs`) and the collections it subscribed to.
pub trait MetaStore {
    /// The value stored under `name`, if any.
    fn get_meta(&self, name: &str) -> impl Future<Output = StorageResult<Option<Vec<u8>>>>;
    /// Stores `value` under `name` durably.
    fn put_meta(&self, name: &str, value: &[u8]) -> impl Future<Output = StorageResult<()>>;
}

/// The bytes of queued write `seq`: the log-record framing core already has (length,
/// crc32c, SHA-256), as an unchained entry at LSN `seq`. Damage is caught when it is read
/// back, and no second encoding of transactions ships in the module.
pub fn encode_write(seq: u64, txn: &Txn) -> Vec<u8> {
    let prev = LogPosition {
        lsn: Lsn(seq.saturating_sub(1)),
        hash: Hash::ZERO,
    };
    let entry = LogEntry::new(prev, Term(0), TimestampMs(0), txn.clone());
    let mut bytes = Vec::new();
    encode_entry(&entry, &mut bytes);
    bytes
}

/// Decodes what [`encode_write`] wrote for write `seq`.
pub fn decode_write(seq: u64, bytes: &[u8]) -> StorageResult<Txn> {
    let corrupt = |what: String| StorageError::Corrupt(format!("pending write {seq}: {what}"));
    let (entry, used) = decode_entry(bytes).map_err(|e| corrupt(e.to_string()))?;
    if used != bytes.len() || entry.lsn != Lsn(seq) {
        return Err(corrupt(format!(
            "holds write {} in {used} of {} bytes",
            entry.lsn,
            bytes.len()
        )));
    }
    Ok(entry.txn)
}

/// A queue in memory. Clones share the contents, so a test can "reload" a replica by
/// opening another one over a clone.
#[derive(Clone, Debug, Default)]
pub struct MemoryPending {
    inner: Rc<RefCell<PendingLoadMap>>,
}

#[derive(Debug, Default)]
struct PendingLoadMap {
    client: Option<String>,
    writes: BTreeMap<u64, Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
}

impl MemoryPending {
    /// An empty queue.
    pub fn new() -> MemoryPending {
        MemoryPending::default()
    }

    /// How many writes it holds.
    pub fn len(&self) -> usize {
        self.inner.borrow().writes.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PendingQueue for MemoryPending {
    async fn load(&self) -> StorageResult<PendingLoad> {
        let inner = self.inner.borrow();
        let writes = inner
            .writes
            .iter()
            .map(|(seq, bytes)| Ok((*seq, decode_write(*seq, bytes)?)))
            .collect::<StorageResult<Vec<_>>>()?;
        Ok(PendingLoad {
            client: inner.client.clone(),
            writes,
        })
    }

    async fn save_client(&mut self, client: &str) -> StorageResult<()> {
        self.inner.borrow_mut().client = Some(client.to_owned());
        Ok(())
    }

    async fn push(&mut self, seq: u64, txn: &Txn) -> StorageResult<()> {
        let mut inner = self.inner.borrow_mut();
        if inner
            .writes
            .last_key_value()
            .is_some_and(|(last, _)| *last >= seq)
        {
            return Err(StorageError::Invalid(format!(
                "pending seq {seq} is not the highest"
            )));
        }
        inner.writes.insert(seq, encode_write(seq, txn));
        Ok(())
    }

    async fn push_many(&mut self, writes: &[(u64, Txn)]) -> StorageResult<()> {
        let mut inner = self.inner.borrow_mut();
        let mut last = inner.writes.last_key_value().map(|(seq, _)| *seq);
        for (seq, _) in writes {
            if last.is_some_and(|last| last >= *seq) {
                return Err(StorageError::Invalid(format!(
                    "pending seq {seq} is not the highest"
                )));
            }
            last = Some(*seq);
        }
        for (seq, txn) in writes {
            inner.writes.insert(*seq, encode_write(*seq, txn));
        }
        Ok(())
    }

    async fn remove(&mut self, seq: u64) -> StorageResult<()> {
        self.inner.borrow_mut().writes.remove(&seq);
        Ok(())
    }

    async fn remove_through(&mut self, seq: u64) -> StorageResult<()> {
        self.inner.borrow_mut().writes.retain(|s, _| *s > seq);
        Ok(())
    }
}

impl MetaStore for MemoryPending {
    async fn get_meta(&self, name: &str) -> StorageResult<Option<Vec<u8>>> {
        Ok(self.inner.borrow().meta.get(name).cloned())
    }

    async fn put_meta(&self, name: &str, value: &[u8]) -> StorageResult<()> {
        let mut inner = self.inner.borrow_mut();
        inner.meta.insert(name.to_owned(), value.to_vec());
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
impl MetaStore for crate::idb::PendingStore {
    async fn get_meta(&self, name: &str) -> StorageResult<Option<Vec<u8>>> {
        Ok(crate::idb::PendingStore::get_meta(self, name).await?)
    }

    async fn put_meta(&self, name: &str, value: &[u8]) -> StorageResult<()> {
        Ok(crate::idb::PendingStore::put_meta(self, name, value).await?)
    }
}

/// The name of the client id in the pending store's metadata.
#[cfg(target_arch = "wasm32")]
const CLIENT_META: &str = "client_id";

/// The IndexedDB queue (in the replica's own database) as the writer's queue.
#[cfg(target_arch = "wasm32")]
impl PendingQueue for crate::idb::PendingStore {
    async fn load(&self) -> StorageResult<PendingLoad> {
        let client = match self.get_meta(CLIENT_META).await? {
            Some(bytes) => Some(
                String::from_utf8(bytes)
                    .map_err(|_| StorageError::Corrupt("client id is not UTF-8".into()))?,
            ),
            None => None,
        };
        let writes = self
            .list()
            .await?
            .into_iter()
            .map(|(seq, bytes)| Ok((seq, decode_write(seq, &bytes)?)))
            .collect::<StorageResult<Vec<_>>>()?;
        Ok(PendingLoad { client, writes })
    }

    async fn save_client(&mut self, client: &str) -> StorageResult<()> {
        Ok(self.put_meta(CLIENT_META, client.as_bytes()).await?)
    }

    async fn push(&mut self, seq: u64, txn: &Txn) -> StorageResult<()> {
        Ok(crate::idb::PendingStore::push(self, seq, encode_write(seq, txn)).await?)
    }

    async fn push_many(&mut self, writes: &[(u64, Txn)]) -> StorageResult<()> {
        let encoded = writes
            .iter()
            .map(|(seq, txn)| (*seq, encode_write(*seq, txn)))
            .collect();
        Ok(crate::idb::PendingStore::push_many(self, encoded).await?)
    }

    async fn remove(&mut self, seq: u64) -> StorageResult<()> {
        Ok(crate::idb::PendingStore::remove(self, seq).await?)
    }

    async fn remove_through(&mut self, seq: u64) -> StorageResult<()> {
        Ok(crate::idb::PendingStore::remove_through(self, seq).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::Op;
    use cstore_core::doc::RawDoc;
    use cstore_core::txn::Origin;

    #[test]
    fn writes_round_trip_and_damage_is_caught() {
        let txn = Txn::single(Op::Insert {
            collection: "c".into(),
            doc: RawDoc::parse(r#"{"_id":"a","n":1}"#).unwrap(),
        })
        .with_origin(Origin {
            client: "me".into(),
            seq: 7,
        });
        let bytes = encode_write(7, &txn);
        assert_eq!(decode_write(7, &bytes).unwrap(), txn);
        assert!(decode_write(8, &bytes).is_err(), "filed under another seq");
        for at in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert!(matches!(
                decode_write(7, &damaged),
                Err(StorageError::Corrupt(_))
            ));
        }
        assert!(decode_write(7, &bytes[..bytes.len() - 3]).is_err());
    }
}
