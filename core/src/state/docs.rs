//! A collection's documents by `_id`, packed: their texts back to back in runs of about
//! [`DOC_RUN_BYTES`], with a version and a 4-byte end each (see `packed.rs`).
//!
//! A `BTreeMap<Box<str>, StoredDoc>` paid, besides the document's text, a heap block for the
//! id, one for the text (malloc rounds each up and adds its header), and a 40-byte slot in a
//! node that ids made in time order leave about half full: 130 bytes for a 110-byte document.
//! Here a document costs its text, 12 bytes, and its run's share of one map slot.
//!
//! The id is not stored apart: it is read from the text when a search compares it
//! (`DocText::id_str`, which for the usual document, `{"_id":"…` first, is the text up to the
//! next quote).

use std::borrow::Cow;
use std::ops::Bound;

use crate::doc::{DocRef, DocText, StoredDoc};
use crate::packed::{Change, Range, Run, Runs, Strip, insert_lean, trim_lean};
use crate::types::Lsn;

/// The bytes a run of documents holds before it splits.
pub(crate) const DOC_RUN_BYTES: usize = 4096;

/// Documents back to back, in id order, with their versions.
#[derive(Clone, Debug, Default)]
pub(crate) struct DocRun {
    texts: Strip<String>,
    versions: Vec<Lsn>,
}

impl DocRun {
    fn doc(&self, i: usize) -> DocRef<'_> {
        DocRef {
            version: self.versions[i],
            doc: DocText::of_raw_text(self.texts.get(i)),
        }
    }

    fn insert(&mut self, i: usize, doc: DocRef<'_>) {
        self.texts.insert(i, doc.doc.as_str());
        insert_lean(&mut self.versions, i, doc.version);
    }

    fn replace(&mut self, i: usize, doc: DocRef<'_>) {
        self.texts.replace(i, doc.doc.as_str());
        self.versions[i] = doc.version;
    }

    fn remove(&mut self, i: usize) {
        self.texts.remove(i);
        self.versions.remove(i);
        trim_lean(&mut self.versions);
    }
}

impl Run for DocRun {
    const BYTES: usize = DOC_RUN_BYTES;

    fn len(&self) -> usize {
        self.versions.len()
    }
    fn size(&self) -> usize {
        self.texts.size()
    }
    fn key(&self, i: usize) -> Cow<'_, [u8]> {
        match DocText::of_raw_text(self.texts.get(i)).id_str() {
            Cow::Borrowed(id) => Cow::Borrowed(id.as_bytes()),
            Cow::Owned(id) => Cow::Owned(id.into_bytes()),
        }
    }
    fn split_off(&mut self, at: usize) -> Self {
        let versions = self.versions.split_off(at);
        self.versions.shrink_to_fit();
        DocRun {
            texts: self.texts.split_off(at),
            versions,
        }
    }
    fn append(&mut self, next: Self) {
        self.texts.append(next.texts);
        self.versions.reserve_exact(next.versions.len());
        self.versions.extend(next.versions);
    }
    fn split_point(&self, inserted: Option<usize>) -> usize {
        self.texts.split_point(inserted)
    }
}

/// A collection's documents by `_id` (see the module's doc).
#[derive(Clone, Debug, Default)]
pub(crate) struct DocMap {
    runs: Runs<DocRun>,
}

impl DocMap {
    /// Builds the map from documents strictly ascending by id, filling each run in turn.
    #[cfg(test)]
    pub(crate) fn from_sorted<'d>(docs: impl IntoIterator<Item = DocRef<'d>>) -> DocMap {
        let mut map = DocMap::default();
        for doc in docs {
            map.push(doc);
        }
        map
    }

    /// Appends `doc`, whose id must follow every id held: it fills the last run, with no search.
    pub(crate) fn push(&mut self, doc: DocRef<'_>) {
        let id = doc.doc.id_str();
        self.runs
            .push(id.as_bytes(), |run| run.insert(run.len(), doc));
    }

    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<DocRef<'_>> {
        let (run, i) = self.runs.find(id.as_bytes())?;
        Some(run.doc(i))
    }

    /// Writes the document with id `id`: `decide` sees the one there now and returns what to
    /// put in its place (`None` removes it), or an error, which changes nothing. Returns what
    /// was there before. One search does it all. `id` must be the new document's id.
    pub(crate) fn write<'n, E>(
        &mut self,
        id: &str,
        decide: impl FnOnce(Option<DocRef<'_>>) -> Result<Option<DocRef<'n>>, E>,
    ) -> Result<Option<StoredDoc>, E> {
        self.runs.edit(id.as_bytes(), |run, at| {
            let new = match decide(at.ok().map(|i| run.doc(i))) {
                Ok(new) => new,
                Err(error) => return (Err(error), Change::Kept),
            };
            debug_assert!(
                new.as_ref().is_none_or(|doc| doc.doc.id_str() == id),
                "a document written under another id"
            );
            match (at, new) {
                (Ok(i), Some(doc)) => {
                    let prior = run.doc(i).to_stored();
                    run.replace(i, doc);
                    (Ok(Some(prior)), Change::Replaced)
                }
                (Ok(i), None) => {
                    let prior = run.doc(i).to_stored();
                    run.remove(i);
                    (Ok(Some(prior)), Change::Removed)
                }
                (Err(i), Some(doc)) => {
                    run.insert(i, doc);
                    (Ok(None), Change::Inserted(i))
                }
                (Err(_), None) => (Ok(None), Change::Kept),
            }
        })
    }

    /// The documents with ids after `after` (all when `None`), in id order, from either end.
    pub(crate) fn after(
        &self,
        after: Option<&str>,
    ) -> impl DoubleEndedIterator<Item = DocRef<'_>> + Clone {
        let lower = after.map_or(Bound::Unbounded, |id| Bound::Excluded(id.as_bytes()));
        self.runs
            .range(lower, Bound::Unbounded)
            .map(|(run, i)| run.doc(i))
    }

    /// Every document, in id order.
    pub(crate) fn iter(&self) -> Docs<'_> {
        Docs(self.runs.iter(), self.len())
    }
}

/// Every document of a [`DocMap`] in id order, and how many are left.
#[derive(Clone, Debug)]
pub struct Docs<'s>(Range<'s, DocRun>, usize);

impl<'s> Iterator for Docs<'s> {
    type Item = DocRef<'s>;

    fn next(&mut self) -> Option<DocRef<'s>> {
        let (run, i) = self.0.next()?;
        self.1 -= 1;
        Some(run.doc(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl ExactSizeIterator for Docs<'_> {}

impl DoubleEndedIterator for Docs<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let (run, i) = self.0.next_back()?;
        self.1 -= 1;
        Some(run.doc(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RawDoc;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// A document whose `_id` comes first but for every third `n`, which has a key (`A`)
    /// that sorts before it.
    fn doc(id: &str, n: u64) -> StoredDoc {
        let mut value = json!({"_id": id, "n": n, "pad": "x".repeat(n as usize % 300)});
        if n.is_multiple_of(3) {
            value["A"] = json!(n);
        }
        StoredDoc {
            version: Lsn(n),
            doc: RawDoc::from_value(&value).unwrap(),
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Put(String, u64),
        Remove(String),
        Refuse(String),
        After(Option<String>, Vec<bool>),
    }

    /// Ids over a small alphabet with characters that need escapes (`"`, `\`): with the
    /// documents whose `_id` is not first, they take the slow way of reading an id.
    fn id() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ab\"\\\\]{1,4}").unwrap()
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (id(), 0u64..1000).prop_map(|(id, n)| Step::Put(id, n)),
            3 => id().prop_map(Step::Remove),
            1 => id().prop_map(Step::Refuse),
            1 => (proptest::option::of(id()), proptest::collection::vec(any::<bool>(), 0..20))
                .prop_map(|(after, ends)| Step::After(after, ends)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The map answers as a `BTreeMap` by id does, step by step.
        #[test]
        fn agrees_with_a_btree_map(steps in proptest::collection::vec(step(), 1..300)) {
            let mut map = DocMap::default();
            let mut model: BTreeMap<String, StoredDoc> = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Put(id, n) => {
                        let new = doc(&id, n);
                        let prior = map.write(&id, |old| {
                            assert_eq!(old.map(DocRef::to_stored).as_ref(), model.get(&id));
                            Ok::<_, ()>(Some(new.to_ref()))
                        });
                        prop_assert_eq!(prior, Ok(model.insert(id, new)));
                    }
                    Step::Remove(id) => {
                        let prior = map.write(&id, |_| Ok::<_, ()>(None));
                        prop_assert_eq!(prior, Ok(model.remove(&id)));
                    }
                    Step::Refuse(id) => {
                        prop_assert_eq!(map.write(&id, |_| Err("no")), Err("no"));
                    }
                    Step::After(after, ends) => {
                        let mut got = map.after(after.as_deref());
                        let lower = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                        let mut want = model.range::<str, _>((lower, Bound::Unbounded));
                        for back in ends {
                            let found = if back { got.next_back() } else { got.next() };
                            let expected = if back { want.next_back() } else { want.next() };
                            prop_assert_eq!(found.map(DocRef::to_stored), expected.map(|(_, d)| d.clone()));
                        }
                        prop_assert!(got.map(DocRef::to_stored).eq(want.map(|(_, d)| d.clone())));
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            map.runs.check();
            for (id, stored) in &model {
                prop_assert_eq!(map.get(id).map(DocRef::to_stored), Some(stored.clone()));
            }
            prop_assert!(map.iter().rev().map(DocRef::to_stored).eq(model.values().rev().cloned()));
            let rebuilt = DocMap::from_sorted(model.values().map(StoredDoc::to_ref));
            rebuilt.runs.check();
            prop_assert!(rebuilt.iter().map(DocRef::to_stored).eq(model.values().cloned()));
        }
    }

    /// Documents far larger than a run (up to 200 KB) among small ones, written, rewritten to
    /// another size and removed in a scattered order: the map stays the model's.
    #[test]
    fn documents_larger_than_a_run() {
        let sized = |i: u64, round: u64| {
            let pad = match (i * 7 + round) % 5 {
                0 => 200_000,
                1 => 9_000,
                _ => (i % 40) as usize,
            };
            StoredDoc {
                version: Lsn(round * 1000 + i),
                doc: RawDoc::from_value(&json!({"_id": format!("{i:03}"), "pad": "y".repeat(pad)}))
                    .unwrap(),
            }
        };
        let mut map = DocMap::default();
        let mut model: BTreeMap<String, StoredDoc> = BTreeMap::new();
        for round in 0..3 {
            for i in (0..120).map(|i| (i * 37 + round * 11) % 120) {
                let new = sized(i, round);
                let id = new.doc.id();
                let prior = map.write(&id, |_| Ok::<_, ()>(Some(new.to_ref())));
                assert_eq!(prior, Ok(model.insert(id, new)));
                map.runs.check();
            }
            for i in (0..120).filter(|i| (i + round) % 3 == 0) {
                let id = format!("{i:03}");
                let prior = map.write(&id, |_| Ok::<_, ()>(None));
                assert_eq!(prior, Ok(model.remove(&id)));
                map.runs.check();
            }
            assert!(
                map.iter()
                    .map(DocRef::to_stored)
                    .eq(model.values().cloned())
            );
        }
    }

    #[test]
    fn documents_in_id_order_fill_their_runs() {
        let docs: Vec<StoredDoc> = (0..20_000)
            .map(|i| doc(&format!("{i:08}"), i % 50))
            .collect();
        let mut map = DocMap::default();
        for d in &docs {
            map.write(&d.doc.id(), |_| Ok::<_, ()>(Some(d.to_ref())))
                .unwrap();
        }
        let rebuilt = DocMap::from_sorted(docs.iter().map(StoredDoc::to_ref));
        for map in [&map, &rebuilt] {
            map.runs.check();
            assert_eq!(map.len(), 20_000);
            let bytes: usize = docs.iter().map(|d| d.doc.len()).sum();
            let runs = map.runs.run_count();
            assert!(
                bytes * 100 / (runs * DOC_RUN_BYTES) >= 90,
                "{runs} runs for {bytes} bytes"
            );
        }
        assert!(map.iter().map(DocRef::to_stored).eq(docs.iter().cloned()));
    }
}
