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
mod error;
mod image;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

pub use collection::Collection;
pub use error::{Rejection, TxnError};
pub use image::SnapshotError;

use crate::doc::{DocView, RawDoc, StoredDoc, merge_patch, validate_collection_name};
use crate::index::SecondaryIndex;
use crate::index::spec::INDEXES_PER_COLLECTION_MAX;
use crate::log::LogEntry;
use crate::snapshot::Snapshot;
use crate::txn::{CollectionOptions, Op, TXN_BYTES_MAX, TXN_OPS_MAX, Txn};
use crate::types::{Hash, LogPosition, Lsn, TimestampMs};
use collection::{ExpiryQueue, PriorDoc};

/// Every collection, and the log position the state reflects.
#[derive(Clone, Debug, Default)]
pub struct State {
    collections: BTreeMap<String, Collection>,
    applied: LogPosition,
    last_timestamp: TimestampMs,
}

/// What applying an entry did beyond its operations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Documents removed by TTL expiry before the operations ran: (collection, id).
    pub expired: Vec<(String, String)>,
}

/// How to undo one step of a transaction. Borrowed names point into the entry being applied.
enum Undo<'t> {
    Doc {
        collection: &'t str,
        id: Box<str>,
        prior: PriorDoc,
    },
    CollectionCreated {
        name: &'t str,
    },
    CollectionDropped {
        name: &'t str,
        collection: Box<Collection>,
    },
    IndexCreated {
        collection: &'t str,
    },
    IndexDropped {
        collection: &'t str,
        position: usize,
        index: SecondaryIndex,
    },
    TtlSet {
        collection: &'t str,
        prior: Box<(CollectionOptions, ExpiryQueue)>,
    },
    Expired {
        collection: String,
        id: Box<str>,
        prior: PriorDoc,
    },
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
        if !entry.follows(self.applied) {
            return Err(TxnError::OutOfOrder {
                applied: self.applied,
                got: entry.lsn,
            }
            .into());
        }
        check_limits(&entry.txn)?;
        // The clock never goes back inside the state, even if an entry's does.
        let now = entry.timestamp.max(self.last_timestamp);
        let mut undo = Vec::new();
        let applied = Applied {
            expired: self.expire(now, &mut undo),
        };
        let last = entry.txn.ops.len().saturating_sub(1);
        for (op_index, op) in entry.txn.ops.iter().enumerate() {
            // Nothing can fail after the last operation, so its document undo is never needed.
            let record = op_index != last;
            if let Err(error) = self.apply_op(op, entry.lsn, now, record, &mut undo) {
                self.rollback(undo);
                return Err(Rejection {
                    op_index: Some(op_index),
                    error,
                });
            }
        }
        self.applied = entry.position();
        self.last_timestamp = now;
        Ok(applied)
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
                validate_collection_name(collection)?;
                if self.collections.contains_key(collection) {
                    return Err(TxnError::CollectionExists(collection.clone()));
                }
                self.collections
                    .insert(collection.clone(), Collection::new(options.clone()));
                undo.push(Undo::CollectionCreated { name: collection });
                return Ok(());
            }
            Op::DropCollection { collection } => {
                let dropped = self
                    .collections
                    .remove(collection)
                    .ok_or_else(|| TxnError::CollectionNotFound(collection.clone()))?;
                undo.push(Undo::CollectionDropped {
                    name: collection,
                    collection: Box::new(dropped),
                });
                return Ok(());
            }
            Op::CreateIndex { collection, spec } => {
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
                undo.push(Undo::IndexCreated { collection });
                return Ok(());
            }
            Op::DropIndex { collection, name } => {
                let coll = self.existing_mut(collection)?;
                let (position, index) =
                    coll.take_index(name)
                        .ok_or_else(|| TxnError::IndexNotFound {
                            collection: collection.clone(),
                            index: name.clone(),
                        })?;
                undo.push(Undo::IndexDropped {
                    collection,
                    position,
                    index,
                });
                return Ok(());
            }
            Op::SetTtl { collection, ttl_ms } => {
                let coll = self.existing_mut(collection)?;
                let prior = coll.set_ttl(*ttl_ms, now);
                undo.push(Undo::TtlSet {
                    collection,
                    prior: Box::new(prior),
                });
                return Ok(());
            }
            Op::Insert { collection, doc } => {
                let view = DocView::new(doc);
                let id = view.id();
                let coll = self.writable(collection, undo)?;
                let absent = |old: Option<&StoredDoc>| match old {
                    Some(_) => Err(TxnError::AlreadyExists {
                        collection: collection.clone(),
                        id: id.to_string(),
                    }),
                    None => Ok(()),
                };
                let stored = StoredDoc {
                    version: lsn,
                    doc: doc.clone(),
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
                    |old: Option<&StoredDoc>| check_version(collection, &id, old, *if_version);
                let stored = StoredDoc {
                    version: lsn,
                    doc: doc.clone(),
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
                let stored = StoredDoc { version: lsn, doc };
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
                let exists = |old: Option<&StoredDoc>| match old {
                    None => Err(not_found(collection, id)),
                    Some(_) => check_version(collection, id, old, *if_version),
                };
                let prior = coll.write(collection, id, exists, None, None)?;
                (collection, Cow::Borrowed(id.as_str()), prior)
            }
        };
        if record {
            undo.push(Undo::Doc {
                collection,
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
            validate_collection_name(name)?;
            self.collections
                .insert(name.clone(), Collection::new(CollectionOptions::default()));
            undo.push(Undo::CollectionCreated { name });
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
                        .get_mut(collection)
                        .expect("undo: collection")
                        .restore(collection, &id, prior);
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
                        .remove(name)
                        .expect("undo: created collection");
                }
                Undo::CollectionDropped { name, collection } => {
                    self.collections.insert(name.to_string(), *collection);
                }
                Undo::IndexCreated { collection } => {
                    self.collections
                        .get_mut(collection)
                        .expect("undo: collection")
                        .pop_index();
                }
                Undo::IndexDropped {
                    collection,
                    position,
                    index,
                } => {
                    self.collections
                        .get_mut(collection)
                        .expect("undo: collection")
                        .put_index(position, index);
                }
                Undo::TtlSet { collection, prior } => {
                    self.collections
                        .get_mut(collection)
                        .expect("undo: collection")
                        .restore_ttl(*prior);
                }
            }
        }
    }

    /// The canonical encoding of the whole state (what a snapshot holds).
    pub fn encode(&self) -> Vec<u8> {
        image::encode(self)
    }

    /// A snapshot of the state at its applied position.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.applied, self.encode())
    }

    /// The SHA-256 of the canonical encoding: equal states have equal hashes.
    pub fn state_hash(&self) -> Hash {
        crate::snapshot::hash_bytes(&self.encode())
    }

    /// Rebuilds the state a snapshot holds, after checking its hash and every document.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<State, SnapshotError> {
        if !snapshot.verify() {
            return Err(SnapshotError::HashMismatch);
        }
        let state = image::decode(&snapshot.data)?;
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
    current: Option<&StoredDoc>,
    expected: Option<Lsn>,
) -> Result<(), TxnError> {
    let actual = current.map_or(Lsn::ZERO, |d| d.version);
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
