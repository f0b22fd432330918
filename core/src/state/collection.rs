//! One collection: its documents by `_id`, its secondary indexes, and its TTL bookkeeping.
//!
//! Every write goes through [`Collection::write`], which checks every unique index before it
//! changes anything, so a refused write leaves the collection exactly as it was; then it moves
//! the document's entries in all indexes and in the expiry queue. The indexes therefore always
//! hold exactly one entry per (indexed) document.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::doc::{DocRef, DocView, FieldSource, StoredDoc};
use crate::index::{IndexKey, IndexSpec, SecondaryIndex};
use crate::txn::CollectionOptions;
use crate::types::TimestampMs;

use super::docs::{DocMap, Docs};
use super::error::TxnError;

/// When each document of a TTL collection expires, by id and in time order.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExpiryQueue {
    by_id: BTreeMap<Box<str>, TimestampMs>,
    queue: BTreeSet<(TimestampMs, Box<str>)>,
}

impl ExpiryQueue {
    fn set(&mut self, id: &str, at: Option<TimestampMs>) {
        if let Some(old) = self.by_id.remove(id) {
            self.queue.remove(&(old, Box::from(id)));
        }
        if let Some(at) = at {
            self.by_id.insert(Box::from(id), at);
            self.queue.insert((at, Box::from(id)));
        }
    }

    fn get(&self, id: &str) -> Option<TimestampMs> {
        self.by_id.get(id).copied()
    }

    fn first(&self) -> Option<TimestampMs> {
        self.queue.first().map(|(at, _)| *at)
    }

    fn due(&self, now: TimestampMs) -> Vec<Box<str>> {
        self.queue
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

/// A collection's documents and their expiry times, taken in strictly ascending `_id` order:
/// how a snapshot's collection is loaded, each document copied once into its run.
#[derive(Default)]
pub(crate) struct SortedDocs {
    docs: DocMap,
    expiry: ExpiryQueue,
}

impl SortedDocs {
    /// Appends `doc`, whose id must follow every id taken.
    pub(crate) fn push(&mut self, doc: DocRef<'_>, expires_at: Option<TimestampMs>) {
        if expires_at.is_some() {
            self.expiry.set(&doc.doc.id_str(), expires_at);
        }
        self.docs.push(doc);
    }

    /// The documents taken, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = DocRef<'_>> {
        self.docs.iter()
    }
}

/// What a document looked like before a write, enough to undo the write.
pub(crate) type PriorDoc = Option<(StoredDoc, Option<TimestampMs>)>;

/// A named set of documents with secondary indexes.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    options: CollectionOptions,
    docs: DocMap,
    indexes: Vec<SecondaryIndex>,
    expiry: ExpiryQueue,
    /// While an image of the state is built in steps (see `image::ImageBuilder`): each
    /// document changed since the image began, as it was then (`None`: it was not there),
    /// kept at its first change. Every change of a document goes through [`Self::write`],
    /// which keeps it; changes to the collection as a whole spoil the image instead.
    frozen: Option<BTreeMap<Box<str>, PriorDoc>>,
}

impl Collection {
    /// An empty collection.
    pub fn new(options: CollectionOptions) -> Collection {
        Collection {
            options,
            ..Collection::default()
        }
    }

    /// The options it was created with (TTL may have changed since).
    pub fn options(&self) -> &CollectionOptions {
        &self.options
    }

    /// The document with this `_id`.
    pub fn get(&self, id: &str) -> Option<DocRef<'_>> {
        self.docs.get(id)
    }

    /// Every document, in `_id` order.
    pub fn scan(&self) -> Docs<'_> {
        self.docs.iter()
    }

    /// The secondary indexes, in creation order.
    pub fn indexes(&self) -> &[SecondaryIndex] {
        &self.indexes
    }

    /// The secondary index with this name.
    pub fn index(&self, name: &str) -> Option<&SecondaryIndex> {
        self.indexes.iter().find(|i| i.spec().name == name)
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when it holds no document.
    pub fn is_empty(&self) -> bool {
        self.docs.len() == 0
    }

    /// When the document expires, in a TTL collection.
    pub fn expires_at(&self, id: &str) -> Option<TimestampMs> {
        self.expiry.get(id)
    }

    /// The earliest expiry of any document.
    pub fn next_expiry(&self) -> Option<TimestampMs> {
        self.expiry.first()
    }

    pub(crate) fn due(&self, now: TimestampMs) -> Vec<Box<str>> {
        self.expiry.due(now)
    }

    /// The expiry a document written at `now` gets.
    pub(crate) fn expiry_for(&self, now: TimestampMs) -> Option<TimestampMs> {
        self.options
            .ttl_ms
            .map(|ttl| TimestampMs(now.0.saturating_add(ttl)))
    }

    /// Writes `new` under `id` (or removes `id` when `new` is `None`), with `fields` a view of
    /// `new` for the index keys. `precondition` sees the current document first. Checks unique
    /// indexes next: on any failure nothing changes. Returns the document and expiry that were
    /// there before. One lookup in the document map does it all: this is the hot path.
    pub(crate) fn write(
        &mut self,
        name: &str,
        id: &str,
        precondition: impl FnOnce(Option<DocRef<'_>>) -> Result<(), TxnError>,
        new: Option<(DocRef<'_>, &dyn FieldSource)>,
        expires_at: Option<TimestampMs>,
    ) -> Result<PriorDoc, TxnError> {
        let Collection {
            docs,
            indexes,
            expiry,
            frozen,
            ..
        } = self;
        let writes = new.is_some();
        let prior = docs.write(id, |old| {
            precondition(old)?;
            if !indexes.is_empty() {
                let old = old.map(|d| DocView::new(d.doc));
                let mut moves: Vec<(Option<IndexKey>, Option<IndexKey>)> =
                    Vec::with_capacity(indexes.len());
                for index in indexes.iter() {
                    let old_key = old.as_ref().and_then(|v| index.key_for(v));
                    let new_key = new.as_ref().and_then(|(_, v)| index.key_for(*v));
                    if let Some(key) = &new_key
                        && let Some(existing) = index.conflict(key, id)
                    {
                        return Err(TxnError::UniqueViolation {
                            collection: name.to_string(),
                            index: index.spec().name.clone(),
                            existing,
                        });
                    }
                    moves.push((old_key, new_key));
                }
                for (index, (old_key, new_key)) in indexes.iter_mut().zip(moves) {
                    if old_key == new_key {
                        continue;
                    }
                    if let Some(key) = old_key {
                        index.remove(&key, id);
                    }
                    if let Some(key) = new_key {
                        index.insert(&key, id);
                    }
                }
            }
            Ok(new.map(|(doc, _)| doc))
        })?;
        let prior_expiry = expiry.get(id);
        if prior_expiry.is_some() || expires_at.is_some() {
            expiry.set(id, if writes { expires_at } else { None });
        }
        let prior = prior.map(|doc| (doc, prior_expiry));
        if let Some(frozen) = frozen
            && !frozen.contains_key(id)
        {
            frozen.insert(Box::from(id), prior.clone());
        }
        Ok(prior)
    }

    /// Puts back what [`Self::write`] returned. Restoring a state that held before cannot
    /// conflict; if it does, the undo log is broken.
    pub(crate) fn restore(&mut self, name: &str, id: &str, prior: PriorDoc) {
        let result = match prior {
            Some((doc, expires_at)) => {
                let value = doc.doc.to_value();
                self.write(
                    name,
                    id,
                    |_| Ok(()),
                    Some((doc.to_ref(), &value as &dyn FieldSource)),
                    expires_at,
                )
            }
            None => self.write(name, id, |_| Ok(()), None, None),
        };
        assert!(result.is_ok(), "undo of {name}/{id} conflicted: {result:?}");
    }

    /// Builds a new index over the existing documents.
    pub(crate) fn create_index(&mut self, name: &str, spec: IndexSpec) -> Result<(), TxnError> {
        let mut index = SecondaryIndex::new(spec);
        for doc in self.docs.iter() {
            if let Some(key) = index.key_for(&DocView::new(doc.doc)) {
                let id = doc.doc.id_str();
                if let Some(existing) = index.conflict(&key, &id) {
                    return Err(TxnError::UniqueViolation {
                        collection: name.to_string(),
                        index: index.spec().name.clone(),
                        existing,
                    });
                }
                index.insert(&key, &id);
            }
        }
        self.indexes.push(index);
        Ok(())
    }

    /// Removes an index, returning it and its position (for undo).
    pub(crate) fn take_index(&mut self, name: &str) -> Option<(usize, SecondaryIndex)> {
        let position = self.indexes.iter().position(|i| i.spec().name == name)?;
        Some((position, self.indexes.remove(position)))
    }

    /// Puts an index back where it was.
    pub(crate) fn put_index(&mut self, position: usize, index: SecondaryIndex) {
        self.indexes.insert(position, index);
    }

    /// Drops the most recently created index (undo of a create).
    pub(crate) fn pop_index(&mut self) {
        self.indexes
            .pop()
            .expect("undo of an index that was created");
    }

    /// Sets the TTL; every existing document then expires `ttl_ms` after `now`. Returns the
    /// previous options and expiry queue for undo.
    pub(crate) fn set_ttl(
        &mut self,
        ttl_ms: Option<u64>,
        now: TimestampMs,
    ) -> (CollectionOptions, ExpiryQueue) {
        let prior = (self.options.clone(), std::mem::take(&mut self.expiry));
        self.options.ttl_ms = ttl_ms;
        if let Some(at) = self.expiry_for(now) {
            let ids: Vec<Box<str>> = self.docs.iter().map(|d| d.doc.id_str().into()).collect();
            for id in ids {
                self.expiry.set(&id, Some(at));
            }
        }
        prior
    }

    /// Undoes [`Self::set_ttl`].
    pub(crate) fn restore_ttl(&mut self, prior: (CollectionOptions, ExpiryQueue)) {
        (self.options, self.expiry) = prior;
    }

    /// Starts keeping documents as they are now, at their first change (`true`), or stops.
    pub(super) fn freeze(&mut self, on: bool) {
        self.frozen = on.then(BTreeMap::new);
    }

    /// Whether it keeps documents for an image.
    #[cfg(test)]
    pub(super) fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Visits the documents after the id `after` (all of them when `None`) as they were when
    /// the collection was frozen, in id order, passing each to `emit` with its expiry: the
    /// live document where it has not changed since, what was kept where it has (skipped if
    /// it was not there then). Visits at most `budget` ids (counted down, whether or not a
    /// document is emitted for them) and returns the last one visited, or `None` once no id
    /// is left after `after`.
    pub(super) fn frozen_docs_after(
        &self,
        after: Option<&str>,
        budget: &mut usize,
        mut emit: impl FnMut(DocRef<'_>, Option<TimestampMs>),
    ) -> Option<Box<str>> {
        assert!(*budget > 0, "a step visits at least one id");
        let frozen = self.frozen.as_ref().expect("the collection is frozen");
        let from = (
            after.map_or(Bound::Unbounded, Bound::Excluded),
            Bound::Unbounded,
        );
        let mut live = self
            .docs
            .after(after)
            .map(|doc| (doc.doc.id_str(), doc))
            .peekable();
        let mut kept = frozen.range::<str, _>(from).peekable();
        let mut last: Option<Cow<'_, str>> = None;
        while *budget > 0 {
            let take_kept = match (live.peek(), kept.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((live_id, _)), Some((kept_id, _))) => {
                    let (kept_id, live_id): (&str, &str) = (kept_id, live_id);
                    kept_id <= live_id
                }
            };
            let id = if take_kept {
                let (id, prior) = kept.next().expect("peeked");
                if live.peek().is_some_and(|(live_id, _)| **live_id == **id) {
                    live.next();
                }
                if let Some((doc, expires_at)) = prior {
                    emit(doc.to_ref(), *expires_at);
                }
                Cow::Borrowed(&**id)
            } else {
                let (id, doc) = live.next().expect("peeked");
                emit(doc, self.expiry.get(&id));
                id
            };
            last = Some(id);
            *budget -= 1;
        }
        if live.peek().is_none() && kept.peek().is_none() {
            return None;
        }
        last.map(|id| Box::from(&*id))
    }

    /// Rebuilds a collection from snapshot parts: documents with their expiries, strictly
    /// ascending by id (the caller checked), then indexes. The runs of documents are filled
    /// in turn, without a search.
    pub(crate) fn rebuild(
        name: &str,
        options: CollectionOptions,
        specs: Vec<IndexSpec>,
        docs: SortedDocs,
    ) -> Result<Collection, TxnError> {
        let mut collection = Collection::new(options);
        collection.docs = docs.docs;
        collection.expiry = docs.expiry;
        for spec in specs {
            spec.validate()?;
            collection.create_index(name, spec)?;
        }
        Ok(collection)
    }
}

impl crate::query::DocSource for Collection {
    fn get(&self, id: &str) -> Option<DocRef<'_>> {
        self.docs.get(id)
    }

    fn scan(&self) -> Box<dyn Iterator<Item = DocRef<'_>> + '_> {
        Box::new(self.docs.iter())
    }

    fn indexes(&self) -> &[SecondaryIndex] {
        &self.indexes
    }
}
