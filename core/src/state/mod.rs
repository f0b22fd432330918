//! The database state: collections of documents with their indexes, changed only by applying
//! log entries in order.
//!
//! ```text
//!              apply(entry n)
//!   State@n-1 ───────────────► State@n         (or Rejection, and State@n-1 unchanged)
//!      │  1. entry follows the applied position (lsn and prev_hash)
//!      │  2. expire TTL documents due at entry.timestamp (the leader's clock)
//!      │  3. apply each operation, recording how to undo it
//!      └─ on any failure: undo in reverse order
//! ```
//!
//! The leader applies an entry before making it durable and discards it if it is rejected; a
//! replica applies entries the leader already accepted, so a rejection there means divergence.
//! Both run the same code, which is what keeps every replica's state identical.

mod collection;
mod docs;
mod error;
mod image;
mod origins;
mod overlay;
mod plain_writes;
mod speculation;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

pub use collection::Collection;
pub use docs::Docs;
pub use error::{Rejection, TxnError};
pub use image::{ImageBuilder, ImageStep, SnapshotError};
use origins::Origins;
pub use origins::{ORIGIN_RETENTION_MS, ORIGINS_MAX, OriginRecord};
pub use overlay::{Overlay, PendingWrite};
pub use speculation::Speculation;

use crate::doc::{
    DocRef, DocView, RawDoc, merge_patch, validate_collection_name, validate_stored_collection_name,
};
use crate::index::SecondaryIndex;
use crate::index::spec::INDEXES_PER_COLLECTION_MAX;
use crate::log::LogEntry;
use crate::snapshot::Snapshot;
use crate::txn::{CollectionOptions, Op, Origin, TXN_BYTES_MAX, TXN_OPS_MAX, Txn};
use crate::types::{Hash, LogPosition, Lsn, TimestampMs};
use collection::{ExpiryQueue, PriorDoc};

/// Every collection, and the log position the state reflects.
#[derive(Clone, Debug, Default)]
pub struct State {
    collections: BTreeMap<String, Collection>,
    applied: LogPosition,
    last_timestamp: TimestampMs,
    /// Per client, its last committed write (see [`Origin`]).
    origins: Origins,
    /// How many tentative transactions sit on top (see [`Overlay`]) or speculative entries
    /// (see [`Speculation`]); log entries apply only when there are none.
    tentative: usize,
    /// Origins recorded by speculative entries on top, which `check_origin` sees first.
    speculative_origins: BTreeMap<String, OriginRecord>,
    /// The image being built in steps, if any (see [`State::begin_image`]): while it is,
    /// every collection keeps its documents as they were when it began.
    image: Option<u64>,
    /// How many images were begun, to tell a step of an old image from one of the current.
    images_begun: u64,
}

/// What applying an entry did beyond its operations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Documents removed by TTL expiry before the operations ran: (collection, id).
    pub expired: Vec<(String, String)>,
}

/// How to undo one step of a transaction. Names borrow from the entry being applied, or are
/// owned when the undo must outlive it (a tentative transaction of an [`Overlay`]).
enum Undo<'t> {
    Doc {
        collection: Cow<'t, str>,
        id: Box<str>,
        prior: PriorDoc,
    },
    CollectionCreated {
        name: Cow<'t, str>,
    },
    CollectionDropped {
        name: Cow<'t, str>,
        collection: Box<Collection>,
    },
    IndexCreated {
        collection: Cow<'t, str>,
    },
    IndexDropped {
        collection: Cow<'t, str>,
        position: usize,
        index: SecondaryIndex,
    },
    TtlSet {
        collection: Cow<'t, str>,
        prior: Box<(CollectionOptions, ExpiryQueue)>,
    },
    Expired {
        collection: String,
        id: Box<str>,
        prior: PriorDoc,
    },
}

impl Undo<'_> {
    fn into_owned(self) -> Undo<'static> {
        let own = |name: Cow<'_, str>| Cow::Owned(name.into_owned());
        match self {
            Undo::Doc {
                collection,
                id,
                prior,
            } => Undo::Doc {
                collection: own(collection),
                id,
                prior,
            },
            Undo::CollectionCreated { name } => Undo::CollectionCreated { name: own(name) },
            Undo::CollectionDropped { name, collection } => Undo::CollectionDropped {
                name: own(name),
                collection,
            },
            Undo::IndexCreated { collection } => Undo::IndexCreated {
                collection: own(collection),
            },
            Undo::IndexDropped {
                collection,
                position,
                index,
            } => Undo::IndexDropped {
                collection: own(collection),
                position,
                index,
            },
            Undo::TtlSet { collection, prior } => Undo::TtlSet {
                collection: own(collection),
                prior,
            },
            Undo::Expired {
                collection,
                id,
                prior,
            } => Undo::Expired {
                collection,
                id,
                prior,
            },
        }
    }
}

/// A transaction applied on top of the state for show (see [`Overlay`]), and how to take it
/// off again.
pub(crate) struct Tentative {
    undo: Vec<Undo<'static>>,
}

impl State {
    /// An empty state, before the first entry.
    pub fn new() -> State {
        State::default()
    }

    /// The last entry applied.
    pub fn applied(&self) -> LogPosition {
        self.applied
    }

    /// The timestamp of the last entry applied.
    pub fn last_timestamp(&self) -> TimestampMs {
        self.last_timestamp
    }

    /// The collection with this name.
    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.get(name)
    }

    /// Every collection, by name.
    pub fn collections(&self) -> impl Iterator<Item = (&str, &Collection)> {
        self.collections.iter().map(|(name, c)| (name.as_str(), c))
    }

    /// The last committed write of this client, if the state remembers one.
    pub fn origin(&self, client: &str) -> Option<OriginRecord> {
        self.origins.get(client)
    }

    /// Checks an origin against the state: valid, and newer than the client's last commit.
    pub fn check_origin(&self, origin: &Origin) -> Result<(), TxnError> {
        origin.validate().map_err(TxnError::InvalidOrigin)?;
        let last = self
            .speculative_origins
            .get(&origin.client)
            .copied()
            .or_else(|| self.origins.get(&origin.client));
        match last {
            Some(last) if origin.seq <= last.seq => Err(TxnError::DuplicateOrigin {
                client: origin.client.clone(),
                seq: origin.seq,
                last_seq: last.seq,
                last_lsn: last.lsn,
            }),
            _ => Ok(()),
        }
    }

    /// The earliest time at which some document expires. The leader appends an entry (an
    /// empty transaction will do) at or after this time to make the expiry happen.
    pub fn next_expiry(&self) -> Option<TimestampMs> {
        self.collections
            .values()
            .filter_map(Collection::next_expiry)
            .min()
    }

    /// Applies the next entry: all of it, or nothing.
    pub fn apply(&mut self, entry: &LogEntry) -> Result<Applied, Rejection> {
        assert_eq!(
            self.tentative, 0,
            "log entries apply only with no tentative transactions on top"
        );
        // Nothing can fail after the last operation, so its document undo is never needed.
        let (_undo, applied, now) = self.apply_entry(entry, false)?;
        if let Some(origin) = &entry.txn.origin {
            let record = OriginRecord {
                seq: origin.seq,
                lsn: entry.lsn,
                at: now,
            };
            self.origins.record(&origin.client, record);
        }
        self.applied = entry.position();
        self.last_timestamp = now;
        Ok(applied)
    }

    /// What [`State::apply`] and [`State::apply_speculative`] share: checks `entry` against
    /// the state (position, limits, origin) and applies its expiry and its operations, all or
    /// nothing. Returns the undo log, what expired, and the entry's clock (never behind the
    /// state's). `undo_last` keeps the undo of the last operation too, which only an entry
    /// that will be taken off again needs.
    fn apply_entry<'t>(
        &mut self,
        entry: &'t LogEntry,
        undo_last: bool,
    ) -> Result<(Vec<Undo<'t>>, Applied, TimestampMs), Rejection> {
        if !entry.follows(self.applied) {
            return Err(TxnError::OutOfOrder {
                applied: self.applied,
                got: entry.lsn,
            }
            .into());
        }
        check_limits(&entry.txn)?;
        if let Some(origin) = &entry.txn.origin {
            self.check_origin(origin)?;
        }
        // The clock never goes back inside the state, even if an entry's does.
        let now = entry.timestamp.max(self.last_timestamp);
        let mut undo = Vec::new();
        let applied = Applied {
            expired: self.expire(now, &mut undo),
        };
        let last = entry.txn.ops.len().saturating_sub(1);
        for (op_index, op) in entry.txn.ops.iter().enumerate() {
            let record = undo_last || op_index != last;
            if let Err(error) = self.apply_op(op, entry.lsn, now, record, &mut undo) {
                self.rollback(undo);
                return Err(Rejection {
                    op_index: Some(op_index),
                    error,
                });
            }
        }
        Ok((undo, applied, now))
    }

    /// Applies a transaction for show, on top of the applied log: its documents get the next
    /// LSN as their version, nothing expires, the applied position and the origin records do
    /// not move. All of it, or nothing. The returned record takes it off again
    /// ([`State::revert`]); until every tentative transaction is reverted, log entries do not
    /// apply and the state has no snapshot.
    pub(crate) fn apply_tentative(&mut self, txn: &Txn) -> Result<Tentative, Rejection> {
        check_limits(txn)?;
        if let Some(origin) = &txn.origin {
            self.check_origin(origin)?;
        }
        let version = self.applied.lsn.next();
        let now = self.last_timestamp;
        let mut undo = Vec::new();
        for (op_index, op) in txn.ops.iter().enumerate() {
            if let Err(error) = self.apply_op(op, version, now, true, &mut undo) {
                self.rollback(undo);
                return Err(Rejection {
                    op_index: Some(op_index),
                    error,
                });
            }
        }
        self.tentative += 1;
        Ok(Tentative {
            undo: undo.into_iter().map(Undo::into_owned).collect(),
        })
    }

    /// Takes a tentative transaction off. They must come off in the reverse order of
    /// [`State::apply_tentative`].
    pub(crate) fn revert(&mut self, tentative: Tentative) {
        self.tentative = self
            .tentative
            .checked_sub(1)
            .expect("revert without a tentative transaction");
        self.rollback(tentative.undo);
    }

    fn expire<'t>(&mut self, now: TimestampMs, undo: &mut Vec<Undo<'t>>) -> Vec<(String, String)> {
        let mut expired = Vec::new();
        for (name, collection) in &mut self.collections {
            for id in collection.due(now) {
                let prior = collection
                    .write(name, &id, |_| Ok(()), None, None)
                    .expect("removal cannot conflict");
                expired.push((name.clone(), id.to_string()));
                undo.push(Undo::Expired {
                    collection: name.clone(),
                    id,
                    prior,
                });
            }
        }
        expired
    }

    /// Applies one operation. `record` says whether to log how to undo a document write;
    /// structural changes (collections, indexes, TTL) are always logged.
    fn apply_op<'t>(
        &mut self,
        op: &'t Op,
        lsn: Lsn,
        now: TimestampMs,
        record: bool,
        undo: &mut Vec<Undo<'t>>,
    ) -> Result<(), TxnError> {
        let (collection, id, prior) = match op {
            Op::CreateCollection {
                collection,
                options,
            } => {
                self.stop_image();
                validate_collection_name(collection)?;
                if self.collections.contains_key(collection) {
                    return Err(TxnError::CollectionExists(collection.clone()));
                }
                self.collections
                    .insert(collection.clone(), Collection::new(options.clone()));
                undo.push(Undo::CollectionCreated {
                    name: Cow::Borrowed(collection),
                });
                return Ok(());
            }
            Op::DropCollection { collection } => {
                self.stop_image();
                let dropped = self
                    .collections
                    .remove(collection)
                    .ok_or_else(|| TxnError::CollectionNotFound(collection.clone()))?;
                undo.push(Undo::CollectionDropped {
                    name: Cow::Borrowed(collection),
                    collection: Box::new(dropped),
                });
                return Ok(());
            }
            Op::CreateIndex { collection, spec } => {
                self.stop_image();
                spec.validate()?;
                let coll = self.existing_mut(collection)?;
                if coll.index(&spec.name).is_some() {
                    return Err(TxnError::IndexExists {
                        collection: collection.clone(),
                        index: spec.name.clone(),
                    });
                }
                if coll.indexes().len() >= INDEXES_PER_COLLECTION_MAX {
                    return Err(TxnError::TooManyIndexes(collection.clone()));
                }
                coll.create_index(collection, spec.clone())?;
                undo.push(Undo::IndexCreated {
                    collection: Cow::Borrowed(collection),
                });
                return Ok(());
            }
            Op::DropIndex { collection, name } => {
                self.stop_image();
                let coll = self.existing_mut(collection)?;
                let (position, index) =
                    coll.take_index(name)
                        .ok_or_else(|| TxnError::IndexNotFound {
                            collection: collection.clone(),
                            index: name.clone(),
                        })?;
                undo.push(Undo::IndexDropped {
                    collection: Cow::Borrowed(collection),
                    position,
                    index,
                });
                return Ok(());
            }
            Op::SetTtl { collection, ttl_ms } => {
                self.stop_image();
                let coll = self.existing_mut(collection)?;
                let prior = coll.set_ttl(*ttl_ms, now);
                undo.push(Undo::TtlSet {
                    collection: Cow::Borrowed(collection),
                    prior: Box::new(prior),
                });
                return Ok(());
            }
            Op::Insert { collection, doc } => {
                let view = DocView::new(doc);
                let id = view.id();
                let coll = self.writable(collection, undo)?;
                let absent = |old: Option<DocRef<'_>>| match old {
                    Some(_) => Err(TxnError::AlreadyExists {
                        collection: collection.clone(),
                        id: id.to_string(),
                    }),
                    None => Ok(()),
                };
                let stored = DocRef {
                    version: lsn,
                    doc: doc.text(),
                };
                let expires_at = coll.expiry_for(now);
                let prior =
                    coll.write(collection, &id, absent, Some((stored, &view)), expires_at)?;
                (collection, id, prior)
            }
            Op::Put {
                collection,
                doc,
                if_version,
            } => {
                let view = DocView::new(doc);
                let id = view.id();
                let coll = self.writable(collection, undo)?;
                let version =
                    |old: Option<DocRef<'_>>| check_version(collection, &id, old, *if_version);
                let stored = DocRef {
                    version: lsn,
                    doc: doc.text(),
                };
                let expires_at = coll.expiry_for(now);
                let prior =
                    coll.write(collection, &id, version, Some((stored, &view)), expires_at)?;
                (collection, id, prior)
            }
            Op::Patch {
                collection,
                id,
                patch,
                if_version,
            } => {
                let coll = self.existing_mut(collection)?;
                let current = coll.get(id).ok_or_else(|| not_found(collection, id))?;
                check_version(collection, id, Some(current), *if_version)?;
                let patch: Value =
                    serde_json::from_str(patch).map_err(|_| TxnError::InvalidPatch)?;
                let changes_id = patch.get("_id").is_some_and(|v| v.as_str() != Some(id));
                if !patch.is_object() || changes_id {
                    return Err(TxnError::InvalidPatch);
                }
                let mut value = current.doc.to_value();
                merge_patch(&mut value, &patch);
                let doc = RawDoc::from_value(&value)?;
                let stored = DocRef {
                    version: lsn,
                    doc: doc.text(),
                };
                let expires_at = coll.expiry_for(now);
                let prior = coll.write(
                    collection,
                    id,
                    |_| Ok(()),
                    Some((stored, &value)),
                    expires_at,
                )?;
                (collection, Cow::Borrowed(id.as_str()), prior)
            }
            Op::Delete {
                collection,
                id,
                if_version,
            } => {
                let coll = self.existing_mut(collection)?;
                let exists = |old: Option<DocRef<'_>>| match old {
                    None => Err(not_found(collection, id)),
                    Some(_) => check_version(collection, id, old, *if_version),
                };
                let prior = coll.write(collection, id, exists, None, None)?;
                (collection, Cow::Borrowed(id.as_str()), prior)
            }
        };
        if record {
            undo.push(Undo::Doc {
                collection: Cow::Borrowed(collection),
                id: Box::from(id.as_ref()),
                prior,
            });
        }
        Ok(())
    }

    fn existing_mut(&mut self, name: &str) -> Result<&mut Collection, TxnError> {
        self.collections
            .get_mut(name)
            .ok_or_else(|| TxnError::CollectionNotFound(name.into()))
    }

    /// The collection to write a document into, created (with default options) if needed.
    fn writable<'t>(
        &mut self,
        name: &'t String,
        undo: &mut Vec<Undo<'t>>,
    ) -> Result<&mut Collection, TxnError> {
        if !self.collections.contains_key(name) {
            self.stop_image();
            validate_stored_collection_name(name)?;
            self.collections
                .insert(name.clone(), Collection::new(CollectionOptions::default()));
            undo.push(Undo::CollectionCreated {
                name: Cow::Borrowed(name),
            });
        }
        Ok(self
            .collections
            .get_mut(name)
            .expect("present or just created"))
    }

    fn rollback(&mut self, undo: Vec<Undo<'_>>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Doc {
                    collection,
                    id,
                    prior,
                } => {
                    self.collections
                        .get_mut(collection.as_ref())
                        .expect("undo: collection")
                        .restore(&collection, &id, prior);
                }
                Undo::Expired {
                    collection,
                    id,
                    prior,
                } => {
                    self.collections
                        .get_mut(&collection)
                        .expect("undo: collection")
                        .restore(&collection, &id, prior);
                }
                Undo::CollectionCreated { name } => {
                    self.collections
                        .remove(name.as_ref())
                        .expect("undo: created collection");
                }
                Undo::CollectionDropped { name, collection } => {
                    self.collections.insert(name.to_string(), *collection);
                }
                Undo::IndexCreated { collection } => {
                    self.collections
                        .get_mut(collection.as_ref())
                        .expect("undo: collection")
                        .pop_index();
                }
                Undo::IndexDropped {
                    collection,
                    position,
                    index,
                } => {
                    self.collections
                        .get_mut(collection.as_ref())
                        .expect("undo: collection")
                        .put_index(position, index);
                }
                Undo::TtlSet { collection, prior } => {
                    self.collections
                        .get_mut(collection.as_ref())
                        .expect("undo: collection")
                        .restore_ttl(*prior);
                }
            }
        }
    }

    /// The canonical encoding of the whole state (what a snapshot holds).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_capacity(0)
    }

    /// [`State::encode`] into a buffer of `capacity` bytes to start with: a caller that
    /// encodes again and again (checkpoints) passes about the last image's size, so the buffer
    /// is not grown, copied and faulted in by doubling each time.
    pub fn encode_with_capacity(&self, capacity: usize) -> Vec<u8> {
        assert_eq!(
            self.tentative, 0,
            "a state with tentative writes has no image"
        );
        image::encode(self, capacity)
    }

    /// Begins an image of the state as it is now, to be encoded in steps
    /// ([`State::image_step`]) between which entries go on applying: until
    /// [`State::end_image`], each collection keeps the documents that change as they were
    /// (a copy of each at its first change), so the steps encode the state of now. The bytes
    /// are those [`State::encode`] gives now. Creating or dropping a collection or an index,
    /// or setting a TTL, spoils the image (rare operations, which would have to keep whole
    /// collections): its steps then say [`ImageStep::Spoiled`]. Beginning another image
    /// spoils this one. Its bytes come out a step at a time
    /// ([`ImageBuilder::take_encoded`]), or whole when it ends.
    pub fn begin_image(&mut self) -> ImageBuilder {
        assert_eq!(
            self.tentative, 0,
            "a state with tentative writes has no image"
        );
        self.images_begun += 1;
        self.image = Some(self.images_begun);
        for collection in self.collections.values_mut() {
            collection.freeze(true);
        }
        image::ImageBuilder::begin(self, self.images_begun)
    }

    /// Encodes up to `docs_max` more documents of `builder`'s image (at least one). Takes
    /// the state only to read it: run it under a read lock, a step at a time, and writers
    /// wait for one step at most.
    pub fn image_step(&self, builder: &mut ImageBuilder, docs_max: usize) -> ImageStep {
        if self.image != Some(builder.id()) {
            return ImageStep::Spoiled;
        }
        builder.step(self, docs_max.max(1))
    }

    /// Ends `builder`'s image: the collections stop keeping documents. Returns the image's
    /// position and bytes if every step is done and nothing spoiled it.
    pub fn end_image(&mut self, builder: ImageBuilder) -> Option<(LogPosition, Vec<u8>)> {
        if self.image != Some(builder.id()) {
            return None;
        }
        self.stop_image();
        builder.finish()
    }

    /// Ends the image being built, if any: its builder's steps then say it is spoiled. Called
    /// before every change the collections do not keep (of a collection as a whole).
    fn stop_image(&mut self) {
        if self.image.take().is_some() {
            for collection in self.collections.values_mut() {
                collection.freeze(false);
            }
        }
    }

    /// A snapshot of the state at its applied position.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.applied, self.encode())
    }

    /// The SHA-256 of the canonical encoding: equal states have equal hashes.
    pub fn state_hash(&self) -> Hash {
        crate::snapshot::hash_bytes(&self.encode())
    }

    /// The snapshot a replica subscribed to the collections `keep` accepts gets: the same
    /// position, only those collections (and every origin record), its own state hash.
    pub fn filter_snapshot(
        snapshot: &Snapshot,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Snapshot, SnapshotError> {
        if !snapshot.verify() {
            return Err(SnapshotError::HashMismatch);
        }
        let data = image::filter(&snapshot.data, keep)?;
        Ok(Snapshot::new(snapshot.position, data))
    }

    /// The leader timestamp of the last entry a snapshot's state includes, read from the head
    /// of its image without decoding the documents (the hash is not checked here).
    pub fn snapshot_last_timestamp(snapshot: &Snapshot) -> Result<TimestampMs, SnapshotError> {
        let (applied, last_timestamp) = image::head(&snapshot.data)?;
        if applied != snapshot.position {
            return Err(SnapshotError::Malformed(format!(
                "snapshot at {} holds state at {applied}",
                snapshot.position
            )));
        }
        Ok(last_timestamp)
    }

    /// Rebuilds the state a snapshot holds, after checking its hash and every document.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<State, SnapshotError> {
        if !snapshot.verify() {
            return Err(SnapshotError::HashMismatch);
        }
        State::from_verified_snapshot(snapshot)
    }

    /// Rebuilds the state of a snapshot this store saved in its own data directory, at a
    /// restart ([`LogStore::load_snapshot_state`](crate::storage::LogStore::load_snapshot_state)).
    /// The data is not hashed here: the caller must check it against the state hash, before or
    /// while this runs, and drop the result (a panic included) on a mismatch. Its documents
    /// are not proved canonical again: every writer of such a file made it from a state or
    /// fully checked it first (see `image::decode_own`). The order of names and ids, the
    /// versions, the index specs and the origin records are still checked, as by
    /// [`State::from_snapshot`].
    pub fn from_own_snapshot(snapshot: &Snapshot) -> Result<State, SnapshotError> {
        let state = image::decode_own(&snapshot.data)?;
        State::at_position(state, snapshot)
    }

    /// [`State::from_snapshot`] after the hash check.
    fn from_verified_snapshot(snapshot: &Snapshot) -> Result<State, SnapshotError> {
        let state = image::decode(&snapshot.data)?;
        State::at_position(state, snapshot)
    }

    /// `state`, decoded from `snapshot`, when it is at the snapshot's position.
    fn at_position(state: State, snapshot: &Snapshot) -> Result<State, SnapshotError> {
        if state.applied != snapshot.position {
            return Err(SnapshotError::Malformed(format!(
                "snapshot at {} holds state at {}",
                snapshot.position, state.applied
            )));
        }
        Ok(state)
    }
}

fn check_limits(txn: &Txn) -> Result<(), Rejection> {
    if txn.ops.len() > TXN_OPS_MAX {
        let msg = format!("{} operations; the limit is {TXN_OPS_MAX}", txn.ops.len());
        return Err(TxnError::TooLarge(msg).into());
    }
    let bytes: usize = txn.ops.iter().map(Op::payload_bytes).sum();
    if bytes > TXN_BYTES_MAX {
        let msg = format!("{bytes} bytes of documents; the limit is {TXN_BYTES_MAX}");
        return Err(TxnError::TooLarge(msg).into());
    }
    Ok(())
}

fn not_found(collection: &str, id: &str) -> TxnError {
    TxnError::NotFound {
        collection: collection.to_string(),
        id: id.to_string(),
    }
}

fn check_version(
    collection: &str,
    id: &str,
    current: Option<DocRef<'_>>,
    expected: Option<Lsn>,
) -> Result<(), TxnError> {
    check_version_is(
        collection,
        id,
        current.map_or(Lsn::ZERO, |d| d.version),
        expected,
    )
}

/// [`check_version`] given the current version (`Lsn::ZERO` for no document).
fn check_version_is(
    collection: &str,
    id: &str,
    actual: Lsn,
    expected: Option<Lsn>,
) -> Result<(), TxnError> {
    match expected {
        Some(expected) if expected != actual => Err(TxnError::VersionMismatch {
            collection: collection.to_string(),
            id: id.to_string(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
