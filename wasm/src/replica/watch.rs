//! Live queries: each watch is a collection and a query whose result is pushed to a callback
//! whenever a batch of changes (replicated or local) changes it.
//!
//! Changes mark the watches of the collections they touch as dirty; a single flush later (one
//! microtask after the batch, see `shared.rs`) re-runs each dirty watch once and calls its
//! callback only if the result differs from the last one delivered (ids and document text).
//! So a burst of entries costs one evaluation and at most one callback per watch.

use std::rc::Rc;

use cstore_core::StoredDoc;
use cstore_core::query::{FindQuery, find};
use cstore_core::state::State;

use super::local::Touched;

/// Most watches one replica holds.
pub const WATCHES_MAX: usize = 1024;

/// What a watch callback receives: the current result, sorted and limited as queried.
pub type WatchCallback = Rc<dyn Fn(&[StoredDoc])>;

/// An identifier of a watch, for `unwatch`.
pub type WatchId = u32;

struct Watch {
    collection: String,
    query: FindQuery,
    callback: WatchCallback,
    /// The result last delivered; `None` before the first delivery.
    last: Option<Vec<StoredDoc>>,
    dirty: bool,
}

/// Every watch of one replica.
#[derive(Default)]
pub struct Watches {
    /// Sorted by id (at most [`WATCHES_MAX`]): a vector rather than a map, one map type less
    /// in the wasm module.
    watches: Vec<(WatchId, Watch)>,
    next_id: WatchId,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches")
            .field("count", &self.watches.len())
            .finish()
    }
}

impl Watches {
    /// Adds a watch, dirty so the next flush delivers its first result. `None` when the
    /// bound is reached.
    pub fn add(
        &mut self,
        collection: String,
        query: FindQuery,
        callback: WatchCallback,
    ) -> Option<WatchId> {
        if self.watches.len() >= WATCHES_MAX {
            return None;
        }
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        let watch = Watch {
            collection,
            query,
            callback,
            last: None,
            dirty: true,
        };
        // Ids grow until they wrap around (after 2^32 watches), so this is nearly always a
        // push; an id still in use after the wrap is replaced, as a map's insert would.
        match self.watches.binary_search_by_key(&id, |(id, _)| *id) {
            Ok(at) => self.watches[at].1 = watch,
            Err(at) => self.watches.insert(at, (id, watch)),
        }
        Some(id)
    }

    /// Removes a watch; true if it existed.
    pub fn remove(&mut self, id: WatchId) -> bool {
        match self.watches.binary_search_by_key(&id, |(id, _)| *id) {
            Ok(at) => {
                self.watches.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// How many watches there are.
    pub fn len(&self) -> usize {
        self.watches.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// Marks the watches of the touched collections dirty; true if any is dirty now.
    pub fn mark(&mut self, touched: &Touched) -> bool {
        let mut any = false;
        for (_, watch) in &mut self.watches {
            if touched.contains(&watch.collection) {
                watch.dirty = true;
            }
            any |= watch.dirty;
        }
        any
    }

    /// True when some watch waits for a flush.
    pub fn any_dirty(&self) -> bool {
        self.watches.iter().any(|(_, w)| w.dirty)
    }

    /// Re-runs every dirty watch against `state`; returns the callbacks to call with their
    /// new results (those whose result changed, or never delivered). Callbacks are called by
    /// the caller after it lets go of the state.
    pub fn evaluate(&mut self, state: &State) -> Vec<(WatchCallback, Vec<StoredDoc>)> {
        let mut due = Vec::new();
        for (_, watch) in self.watches.iter_mut().filter(|(_, w)| w.dirty) {
            watch.dirty = false;
            let docs: Vec<StoredDoc> = match state.collection(&watch.collection) {
                // The query was validated when the watch was added.
                Some(collection) => find(collection, &watch.query)
                    .map(|r| r.docs.into_iter().map(|d| d.to_stored()).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let same = watch.last.as_ref().is_some_and(|last| {
                last.len() == docs.len() && last.iter().zip(&docs).all(|(a, b)| a.doc == b.doc)
            });
            if !same {
                watch.last = Some(docs.clone());
                due.push((watch.callback.clone(), docs));
            }
        }
        due
    }
}
