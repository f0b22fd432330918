//! The browser replica: a full local copy of the leader's data, kept in sync, readable at
//! once and writable offline.
//!
//! Three pieces share one [`Shared`](shared::Shared) state on the browser's single thread:
//! the sync loop ([`driver`]: core's `Replica` over a transport and a `LogStore`), the writer
//! ([`writer`]: the durable pending queue, drained over the leader's write channel
//! `/v1/write` or `POST /v1/txns`), and the app's calls on
//! [`ReplicaHandle`] (reads straight from memory, writes applied at once and handed to the
//! writer). Listeners (watches, status, rejections) are called from one coalesced flush after
//! each batch of changes ([`shared`]).
//!
//! ```text
//!              ┌──────────── ReplicaHandle (get/find/count, insert/put/update/remove, watch)
//!              ▼                   │ writes
//!   Shared { LocalState, Status, Watches } ◄── SyncLoop ◄── Transport ◄── leader /v1/replicate
//!              ▲                   │                └──► LogStore (IndexedDB)
//!              └──── Writer ◄──────┘ ──► PendingQueue ──► TxnSender ──► leader /v1/write
//!                                                                       (or /v1/txns)
//! ```
//!
//! Everything here is generic over the store, transport, queue and sender, so the browser
//! tests run the very same code against an in-browser leader and in-memory stores.

pub mod channel_sender;
pub mod driver;
pub mod local;
pub mod members;
pub mod network;
pub mod pending;
pub mod sender;
pub mod shared;
pub mod status;
pub mod watch;
pub mod writer;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use cstore_core::doc::{IdGenerator, RawDoc, ensure_id};
use cstore_core::query::{Filter, FindQuery, count, find};
use cstore_core::storage::{LogStore, StorageError};
use cstore_core::{DocRef, ErrorCode, Lsn, Op, StoredDoc, Txn};
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use serde_json::Value;

use cstore_core::state::PendingWrite;
use cstore_core::txn::Origin;
use driver::{SyncLoop, load, wipe};
use local::LocalState;
use network::{NetworkWatch, navigator_online};
use pending::{MetaStore, PendingQueue};
use sender::TxnSender;
use shared::{RejectedListener, SharedRef, StatusListener, changed, schedule_flush, update_status};
use status::Status;
use watch::{WatchCallback, WatchId};
use writer::Writer;

use crate::error::ReplicaError;
use crate::time::{now, random_u64, sleep};
use crate::transport::Transport;

/// Most writes waiting for the leader; past it writes fail with `too_many_pending`.
pub const PENDING_MAX: usize = 10_000;

/// First reconnect or write-retry delay's base, in milliseconds: the sync loop and the writer
/// each wait out core's jittered [`Backoff`](cstore_core::replication::Backoff) from here.
pub const BACKOFF_START_MS: u64 = 100;
/// Largest reconnect or write-retry delay, in milliseconds.
pub const BACKOFF_CAP_MS: u64 = 5_000;

/// Longest wait of a linearizable read for the local copy to apply the read index.
pub const LINEARIZABLE_WAIT_MS: u64 = 10_000;
/// The name of the remembered subscription in the local database's metadata.
const SUBSCRIPTION_META: &str = "subscription";

/// Asks the cluster for its read index: the LSN a linearizable read waits for, or (code,
/// message).
pub type ReadIndexFn = Rc<dyn Fn() -> LocalBoxFuture<'static, Result<Lsn, (String, String)>>>;

/// How a replica behaves beyond its parts.
#[derive(Clone, Default)]
pub struct Settings {
    /// The collections to follow; `None` follows all. Reads, watches and writes of other
    /// collections fail with `not_subscribed`.
    pub subscription: Option<Vec<String>>,
    /// Where linearizable reads get their read index; `None`: they fail with `unavailable`.
    pub read_index: Option<ReadIndexFn>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("subscription", &self.subscription)
            .field("read_index", &self.read_index.is_some())
            .finish()
    }
}

/// What a replica is built from.
#[derive(Debug)]
pub struct Parts<S, T, P, X> {
    /// The durable log (IndexedDB in a browser).
    pub store: S,
    /// The connection to the leader's `/v1/replicate`.
    pub transport: T,
    /// The durable queue of pending writes.
    pub pending: P,
    /// How writes reach the leader.
    pub sender: X,
}

/// A running replica. Dropping it does not stop it: call [`ReplicaHandle::close`].
#[derive(Debug)]
pub struct ReplicaHandle {
    shared: SharedRef,
    ids: RefCell<IdGenerator>,
    next_seq: Cell<u64>,
    client: String,
    done: RefCell<Vec<oneshot::Receiver<()>>>,
    network: RefCell<Option<NetworkWatch>>,
    /// Sorted, without duplicates.
    subscription: Option<Vec<String>>,
    /// The settings opened with (for the read index).
    settings: Settings,
}

/// A random client id: 16 characters of `[A-Za-z0-9]`.
fn new_client_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bits = random_u64() as u128 | ((random_u64() as u128) << 64);
    (0..16)
        .map(|_| {
            let c = ALPHABET[(bits % 62) as usize] as char;
            bits /= 62;
            c
        })
        .collect()
}

impl ReplicaHandle {
    /// Opens a replica: loads the local copy (discarding it if corrupt), reloads and re-applies
    /// pending writes, then starts syncing and writing in the background.
    pub async fn open<S, T, P, X>(parts: Parts<S, T, P, X>) -> Result<ReplicaHandle, ReplicaError>
    where
        S: LogStore + 'static,
        T: Transport + 'static,
        P: PendingQueue + MetaStore + 'static,
        X: TxnSender + 'static,
    {
        ReplicaHandle::open_with(parts, Settings::default()).await
    }

    /// Opens a replica with `settings` (see [`ReplicaHandle::open`]). A local copy made for
    /// another subscription than `settings.subscription` is discarded (a rebootstrap): it
    /// lacks the collections now asked for.
    pub async fn open_with<S, T, P, X>(
        parts: Parts<S, T, P, X>,
        settings: Settings,
    ) -> Result<ReplicaHandle, ReplicaError>
    where
        S: LogStore + 'static,
        T: Transport + 'static,
        P: PendingQueue + MetaStore + 'static,
        X: TxnSender + 'static,
    {
        let Parts {
            mut store,
            transport,
            mut pending,
            sender,
        } = parts;
        let mut rebootstraps = 0;
        let mut last_error = None;
        let mut opened = match load(&mut store).await {
            Ok(opened) => opened,
            Err(error @ StorageError::Corrupt(_)) => {
                last_error = Some((error.code(), error.to_string()));
                rebootstraps = 1;
                wipe(&mut store).await?;
                load(&mut store).await?
            }
            Err(error) => return Err(error.into()),
        };
        // Sorted and deduplicated by inserting in order (a few names): a sort of strings would
        // be about 5 KB of wasm that nothing else needs.
        let subscription = settings.subscription.map(|names| {
            let mut sorted: Vec<String> = Vec::with_capacity(names.len());
            for name in names {
                if let Err(at) = sorted.binary_search(&name) {
                    sorted.insert(at, name);
                }
            }
            sorted
        });
        let wanted = match &subscription {
            Some(names) => serde_json::to_vec(names).expect("names serialize"),
            None => b"*".to_vec(),
        };
        let held = pending.get_meta(SUBSCRIPTION_META).await?;
        if held.as_ref() != Some(&wanted) {
            // A copy made for other collections (or from before subscriptions were recorded,
            // when it followed everything) cannot serve these: start over unless it is empty.
            let empty = opened.last.lsn == Lsn::ZERO;
            let unrecorded_full = held.is_none() && subscription.is_none();
            if !empty && !unrecorded_full {
                last_error = Some((
                    "subscription_changed",
                    "the local copy followed other collections: fetched again".to_owned(),
                ));
                rebootstraps += 1;
                wipe(&mut store).await?;
                opened = load(&mut store).await?;
            }
            pending.put_meta(SUBSCRIPTION_META, &wanted).await?;
        }
        let loaded = pending.load().await?;
        let client = match loaded.client {
            // A wiped local log forgot which of this client's writes committed; with nothing
            // pending, a fresh client id cannot collide with them.
            Some(client) if rebootstraps == 0 || !loaded.writes.is_empty() => client,
            _ => {
                let client = new_client_id();
                pending.save_client(&client).await?;
                client
            }
        };
        // Numbering continues after both the last queued write and the last one the log says
        // committed (the queue is empty after every write was confirmed, and another tab may
        // have written under this client id).
        let committed = opened.state.origin(&client).map_or(0, |record| record.seq);
        let next_seq = loaded
            .writes
            .last()
            .map_or(1, |(seq, _)| seq + 1)
            .max(committed + 1);
        let restored: Vec<PendingWrite> = loaded
            .writes
            .into_iter()
            .map(|(seq, txn)| PendingWrite { seq, txn })
            .collect();

        let shared: SharedRef = Rc::default();
        let touched = {
            let mut inner = shared.borrow_mut();
            // The state moves into the shared local data; the sync loop needs the rest.
            let state = std::mem::take(&mut opened.state);
            inner.local = LocalState::new(state, &client);
            inner.status.online = navigator_online();
            inner.status.rebootstraps = rebootstraps;
            if let Some((code, message)) = last_error {
                inner.status.set_error(code, &message);
            }
            inner.local.restore_pending(restored)
        };
        changed(&shared, &touched);

        let sync = SyncLoop::new(
            shared.clone(),
            store,
            transport,
            &opened,
            subscription.clone(),
        );
        let writer = Writer::new(shared.clone(), pending, sender, client.clone());
        let (sync_done, sync_wait) = oneshot::channel();
        let (writer_done, writer_wait) = oneshot::channel();
        wasm_bindgen_futures::spawn_local(async move {
            sync.run().await;
            let _ = sync_done.send(());
        });
        wasm_bindgen_futures::spawn_local(async move {
            writer.run().await;
            let _ = writer_done.send(());
        });
        let network = NetworkWatch::start(&shared);
        Ok(ReplicaHandle {
            shared,
            ids: RefCell::new(IdGenerator::new(random_u64())),
            next_seq: Cell::new(next_seq),
            client,
            done: RefCell::new(vec![sync_wait, writer_wait]),
            network: RefCell::new(Some(network)),
            subscription,
            settings: Settings {
                subscription: None,
                read_index: settings.read_index,
            },
        })
    }

    /// Fails with `not_subscribed` unless this replica follows `collection`.
    pub fn check_subscribed(&self, collection: &str) -> Result<(), ReplicaError> {
        match &self.subscription {
            Some(names)
                if names
                    .binary_search_by(|n| n.as_str().cmp(collection))
                    .is_err() =>
            {
                Err(ReplicaError::NotSubscribed(collection.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// The collections followed (`None`: all), sorted.
    pub fn subscription(&self) -> Option<Vec<String>> {
        self.subscription.clone()
    }

    /// Waits until a read here sees every write acknowledged anywhere in the cluster before
    /// this call began: asks for the read index, then waits until the local copy applied it.
    /// Offline (no connection) fails with `offline`; no answer, no quorum or a wait past
    /// [`LINEARIZABLE_WAIT_MS`] with `unavailable`: never a stale answer. Returns the LSN
    /// waited for.
    pub async fn read_barrier(&self) -> Result<Lsn, ReplicaError> {
        {
            let status = &self.shared.borrow().status;
            if status.closed {
                return Err(ReplicaError::Closed);
            }
            if !status.online || !status.connected {
                return Err(ReplicaError::Offline(
                    "a linearizable read needs a connection to the cluster".into(),
                ));
            }
        }
        let Some(read_index) = self.settings.read_index.clone() else {
            return Err(ReplicaError::Unavailable(
                "this replica has no server to ask for a read index".into(),
            ));
        };
        let lsn = read_index()
            .await
            .map_err(|(code, message)| ReplicaError::Unavailable(format!("{code}: {message}")))?;
        let waiter = {
            let mut inner = self.shared.borrow_mut();
            if inner.local.applied().lsn >= lsn {
                None
            } else {
                let (sender, receiver) = oneshot::channel();
                inner.applied_waiters.push((lsn, sender));
                Some(receiver)
            }
        };
        if let Some(waiter) = waiter {
            use futures::future::{Either, select};
            match select(waiter, Box::pin(sleep(LINEARIZABLE_WAIT_MS))).await {
                Either::Left((Ok(()), _)) => {}
                Either::Left((Err(_), _)) => return Err(ReplicaError::Closed),
                Either::Right(_) => {
                    let applied = self.shared.borrow().local.applied().lsn;
                    return Err(ReplicaError::Unavailable(format!(
                        "the local copy reached {applied}, not the read index {lsn}, in \
                         {LINEARIZABLE_WAIT_MS} ms"
                    )));
                }
            }
        }
        Ok(lsn)
    }

    /// This client's identity (the `origin.client` of its writes).
    pub fn client_id(&self) -> &str {
        &self.client
    }

    /// The shared state (tests and the JS layer read through it).
    pub fn shared(&self) -> &SharedRef {
        &self.shared
    }

    /// The document `id` of `collection` as reads see it (pending writes included).
    pub fn get(&self, collection: &str, id: &str) -> Option<StoredDoc> {
        let inner = self.shared.borrow();
        inner
            .local
            .current()
            .collection(collection)?
            .get(id)
            .map(DocRef::to_stored)
    }

    /// Runs `read` on the document `id` without copying it.
    pub fn with_doc<R>(
        &self,
        collection: &str,
        id: &str,
        read: impl FnOnce(Option<DocRef<'_>>) -> R,
    ) -> R {
        let inner = self.shared.borrow();
        let doc = inner
            .local
            .current()
            .collection(collection)
            .and_then(|c| c.get(id));
        read(doc)
    }

    /// Runs a find query; `visit` sees the result documents in order.
    pub fn find_with<R>(
        &self,
        collection: &str,
        query: &FindQuery,
        visit: impl FnOnce(&[DocRef<'_>]) -> R,
    ) -> Result<R, ReplicaError> {
        let inner = self.shared.borrow();
        match inner.local.current().collection(collection) {
            Some(coll) => Ok(visit(&find(coll, query)?.docs)),
            None => {
                query.validate()?;
                Ok(visit(&[]))
            }
        }
    }

    /// Runs a find query and copies the result.
    pub fn find(
        &self,
        collection: &str,
        query: &FindQuery,
    ) -> Result<Vec<StoredDoc>, ReplicaError> {
        self.find_with(collection, query, |docs| {
            docs.iter().map(|d| d.to_stored()).collect()
        })
    }

    /// Counts matching documents.
    pub fn count(&self, collection: &str, filter: &Filter) -> usize {
        let inner = self.shared.borrow();
        inner
            .local
            .current()
            .collection(collection)
            .map_or(0, |coll| count(coll, filter).count)
    }

    /// The transaction inserting `doc` into `collection` (an `_id` is generated when it has
    /// none), and the document's id.
    pub fn insert_txn(
        &self,
        collection: &str,
        mut doc: Value,
    ) -> Result<(String, Txn), ReplicaError> {
        if !doc.is_object() {
            return Err(ReplicaError::InvalidArgument(
                "a document must be an object".into(),
            ));
        }
        ensure_id(&mut doc, || self.ids.borrow_mut().next_id(now()));
        let doc = RawDoc::from_value(&doc)?;
        let id = doc.id();
        let collection = collection.to_owned();
        Ok((id, Txn::single(Op::Insert { collection, doc })))
    }

    /// The transaction creating or replacing `doc` (which carries its `_id`), and the id.
    pub fn put_txn(&self, collection: &str, doc: Value) -> Result<(String, Txn), ReplicaError> {
        if !doc.get("_id").is_some_and(Value::is_string) {
            return Err(ReplicaError::InvalidArgument(
                "put needs a document with a string `_id`".into(),
            ));
        }
        let doc = RawDoc::from_value(&doc)?;
        let id = doc.id();
        let op = Op::Put {
            collection: collection.to_owned(),
            doc,
            if_version: None,
        };
        Ok((id, Txn::single(op)))
    }

    /// The transaction merging an RFC 7386 `patch` into document `id`.
    pub fn update_txn(
        &self,
        collection: &str,
        id: &str,
        patch: &Value,
    ) -> Result<Txn, ReplicaError> {
        if !patch.is_object() {
            return Err(ReplicaError::InvalidArgument(
                "a patch must be an object".into(),
            ));
        }
        Ok(Txn::single(Op::Patch {
            collection: collection.to_owned(),
            id: id.to_owned(),
            patch: patch.to_string(),
            if_version: None,
        }))
    }

    /// The transaction removing document `id`.
    pub fn remove_txn(&self, collection: &str, id: &str) -> Txn {
        Txn::single(Op::Delete {
            collection: collection.to_owned(),
            id: id.to_owned(),
            if_version: None,
        })
    }

    /// Inserts a document (an `_id` is generated when it has none); resolves with the id once
    /// the write is queued durably.
    pub async fn insert(&self, collection: &str, doc: Value) -> Result<String, ReplicaError> {
        let (id, txn) = self.insert_txn(collection, doc)?;
        self.write(txn).await?;
        Ok(id)
    }

    /// Creates or replaces the document with the `_id` it carries.
    pub async fn put(&self, collection: &str, doc: Value) -> Result<String, ReplicaError> {
        let (id, txn) = self.put_txn(collection, doc)?;
        self.write(txn).await?;
        Ok(id)
    }

    /// Merges an RFC 7386 patch into document `id`.
    pub async fn update(
        &self,
        collection: &str,
        id: &str,
        patch: &Value,
    ) -> Result<(), ReplicaError> {
        let txn = self.update_txn(collection, id, patch)?;
        self.write(txn).await.map(|_| ())
    }

    /// Removes document `id`.
    pub async fn remove(&self, collection: &str, id: &str) -> Result<(), ReplicaError> {
        self.write(self.remove_txn(collection, id))
            .await
            .map(|_| ())
    }

    /// Applies a transaction locally at once and queues it for the leader; resolves with its
    /// sequence number once it is queued durably. A transaction that does not apply locally
    /// fails at once and is not queued.
    pub async fn write(&self, txn: Txn) -> Result<u64, ReplicaError> {
        for op in &txn.ops {
            self.check_subscribed(op.collection())?;
        }
        let seq = self.next_seq.get();
        let txn = txn.with_origin(Origin {
            client: self.client.clone(),
            seq,
        });
        let saved = {
            let mut inner = self.shared.borrow_mut();
            if inner.status.closed {
                return Err(ReplicaError::Closed);
            }
            let pending = inner.local.pending_count();
            if pending >= PENDING_MAX {
                return Err(ReplicaError::TooManyPending(pending));
            }
            let touched = inner.local.apply_local(seq, txn.clone())?;
            self.next_seq.set(seq + 1);
            let (done, saved) = oneshot::channel();
            inner.to_save.push_back((seq, txn, done));
            inner.writer_wake.fire();
            drop(inner);
            changed(&self.shared, &touched);
            saved
        };
        match saved.await {
            Ok(Ok(())) => Ok(seq),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(ReplicaError::Closed),
        }
    }

    /// Watches `query` on `collection`: `callback` gets the result now (one microtask later)
    /// and again after every batch of changes that alters it.
    pub fn watch(
        &self,
        collection: &str,
        query: FindQuery,
        callback: WatchCallback,
    ) -> Result<WatchId, ReplicaError> {
        self.check_subscribed(collection)?;
        query.validate()?;
        let id = self
            .shared
            .borrow_mut()
            .watches
            .add(collection.to_owned(), query, callback)
            .ok_or_else(|| ReplicaError::InvalidArgument("too many watches".into()))?;
        schedule_flush(&self.shared);
        Ok(id)
    }

    /// Stops a watch; true if it existed.
    pub fn unwatch(&self, id: WatchId) -> bool {
        self.shared.borrow_mut().watches.remove(id)
    }

    /// Records that the local copy was found damaged and discarded before this open (the
    /// store could not even be opened): counted as a rebootstrap, with its error.
    pub fn note_recovered(&self, code: &str, message: &str) {
        update_status(&self.shared, |status| {
            status.rebootstraps += 1;
            status.set_error(code, message);
        });
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.shared.borrow().status.clone()
    }

    /// Calls `listener` after every batch of status changes.
    pub fn on_status(&self, listener: StatusListener) {
        self.shared.borrow_mut().on_status(listener);
    }

    /// Calls `listener` for every write the leader refuses.
    pub fn on_rejected(&self, listener: RejectedListener) {
        self.shared.borrow_mut().on_rejected(listener);
    }

    /// Resolves when every pending write is confirmed or rejected (or the replica closes).
    pub async fn flush(&self) {
        let waiter = self.shared.borrow_mut().flush_waiter();
        let _ = waiter.await;
    }

    /// Stops syncing and writing and waits for both loops to end; pending writes stay queued
    /// durably for the next open. Closing twice is harmless.
    pub async fn close(&self) {
        update_status(&self.shared, |s| {
            s.closed = true;
            s.connected = false;
        });
        {
            let mut inner = self.shared.borrow_mut();
            inner.sync_wake.fire();
            inner.writer_wake.fire();
            inner.release_flush_waiters();
            inner.applied_waiters.clear();
        }
        self.network.borrow_mut().take();
        let done: Vec<_> = self.done.borrow_mut().drain(..).collect();
        for task in done {
            let _ = task.await;
        }
    }
}
