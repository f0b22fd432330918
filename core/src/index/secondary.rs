//! A secondary index: a sorted set of `(key, document id)` pairs kept in step with the
//! collection on every change.
//!
//! Each entry is one byte string, the encoded key followed by the encoded id, so entries with
//! equal keys stay distinct and sort by id; a range over keys is a range over this set.
//! A unique index additionally refuses a second id under a key it already holds.

use std::collections::BTreeSet;
use std::ops::Bound;

use serde_json::Value;

use crate::doc::FieldSource;

use super::key::{encode_component, encode_str, prefix_end};
use super::spec::IndexSpec;

/// The encoded key of one document in one index (without the id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexKey(pub Vec<u8>);

/// A secondary index over one collection.
#[derive(Clone, Debug)]
pub struct SecondaryIndex {
    spec: IndexSpec,
    /// `key ++ encode_str(id)` for every indexed document.
    entries: BTreeSet<Box<[u8]>>,
}

/// Looks up a dotted path in a document. A path step into an array by position (`"tags.0"`)
/// is supported; anything else that is not an object ends the path.
pub fn lookup_path<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = doc;
    for segment in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

impl SecondaryIndex {
    /// An empty index. The spec must have been validated.
    pub fn new(spec: IndexSpec) -> SecondaryIndex {
        SecondaryIndex {
            spec,
            entries: BTreeSet::new(),
        }
    }

    /// The spec this index was made from.
    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    /// Number of indexed documents.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no document is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key of `doc` in this index, or `None` when the index is sparse and the document has
    /// none of the indexed fields.
    pub fn key_for<F: FieldSource + ?Sized>(&self, doc: &F) -> Option<IndexKey> {
        let mut key = Vec::with_capacity(32);
        let mut any_present = false;
        for field in &self.spec.fields {
            let value = doc.field(&field.path);
            any_present |= value.is_some();
            encode_component(value.as_deref(), field.desc, &mut key);
        }
        if self.spec.sparse && !any_present {
            return None;
        }
        Some(IndexKey(key))
    }

    /// For a unique index: the id of a document other than `id` that already holds `key`.
    pub fn conflict(&self, key: &IndexKey, id: &str) -> Option<String> {
        if !self.spec.unique {
            return None;
        }
        self.ids_with_key(&key.0).find(|other| other != id)
    }

    /// Adds `(key, id)`. Uniqueness must have been checked with [`Self::conflict`].
    pub fn insert(&mut self, key: &IndexKey, id: &str) {
        debug_assert!(
            self.conflict(key, id).is_none(),
            "unique index {} violated",
            self.spec.name
        );
        self.entries.insert(entry(key, id));
    }

    /// Removes `(key, id)`; it must be present.
    pub fn remove(&mut self, key: &IndexKey, id: &str) {
        let removed = self.entries.remove(entry(key, id).as_ref());
        assert!(
            removed,
            "index {} lost track of document {id}",
            self.spec.name
        );
    }

    /// The ids of the documents whose key is exactly `key`, in id order.
    pub fn ids_with_key<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = String> + 'a {
        let lower = key.to_vec();
        let upper = prefix_end(key);
        let key_len = key.len();
        self.range(
            Bound::Included(lower),
            upper.map_or(Bound::Unbounded, Bound::Excluded),
        )
        .filter_map(move |e| decode_id(&e[key_len..]))
    }

    /// The raw entries (`key ++ encoded id`) between two bounds, in order; split one into key
    /// and id with [`Self::split_entry`].
    pub fn range(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        // BTreeSet::range panics on inverted or equal-excluded bounds; such a range is empty.
        let empty = match (&lower, &upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        };
        let lower = lower.map(Vec::into_boxed_slice);
        let upper = upper.map(Vec::into_boxed_slice);
        let iter = if empty {
            None
        } else {
            Some(self.entries.range((lower, upper)))
        };
        iter.into_iter().flatten().map(AsRef::as_ref)
    }

    /// Every entry in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.entries.iter().map(AsRef::as_ref)
    }
}

fn entry(key: &IndexKey, id: &str) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(key.0.len() + id.len() + 1);
    bytes.extend_from_slice(&key.0);
    encode_str(id, &mut bytes);
    bytes.into_boxed_slice()
}

/// Decodes an escaped, terminated id (the tail of an entry).
pub fn decode_id(tail: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(tail.len());
    let mut i = 0;
    while i < tail.len() {
        match tail[i] {
            0x00 if tail.get(i + 1) == Some(&0xFF) => {
                out.push(0x00);
                i += 2;
            }
            0x00 => return String::from_utf8(out).ok(),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Length of the encoded component at the start of `bytes` (inverted when `desc`), or `None`
/// when the bytes end early or are not an encoding.
pub fn component_len(bytes: &[u8], desc: bool) -> Option<usize> {
    let at = |i: usize| bytes.get(i).map(|b| if desc { !*b } else { *b });
    fn value_len(at: &dyn Fn(usize) -> Option<u8>, start: usize) -> Option<usize> {
        let str_end = |mut i: usize| -> Option<usize> {
            loop {
                match at(i)? {
                    0x00 if at(i + 1) == Some(0xFF) => i += 2,
                    0x00 => return Some(i + 1),
                    _ => i += 1,
                }
            }
        };
        match at(start)? {
            super::key::TAG_NULL => Some(start + 1),
            super::key::TAG_NUMBER => Some(start + 9),
            super::key::TAG_BOOL => Some(start + 2),
            super::key::TAG_STRING => str_end(start + 1),
            super::key::TAG_ARRAY => {
                let mut i = start + 1;
                while at(i)? != 0x00 {
                    i = value_len(at, i)?;
                }
                Some(i + 1)
            }
            super::key::TAG_OBJECT => {
                let mut i = start + 1;
                while at(i)? == 0x01 {
                    i = value_len(at, str_end(i + 1)?)?;
                }
                (at(i)? == 0x00).then_some(i + 1)
            }
            _ => None,
        }
    }
    let end = value_len(&at, 0)?;
    (end <= bytes.len()).then_some(end)
}

impl SecondaryIndex {
    /// Splits an entry of this index into its key and the document id.
    pub fn split_entry<'e>(&self, entry: &'e [u8]) -> (&'e [u8], String) {
        let mut key_len = 0;
        for field in &self.spec.fields {
            key_len += component_len(&entry[key_len..], field.desc)
                .expect("index entries are well-formed encodings");
        }
        let id = decode_id(&entry[key_len..]).expect("index entries end with an id");
        (&entry[..key_len], id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sparse_and_dense_keys() {
        let dense = SecondaryIndex::new(IndexSpec::single("a", "a"));
        let sparse = SecondaryIndex::new(IndexSpec::single("a", "a").sparse());
        assert!(dense.key_for(&json!({"_id": "x"})).is_some());
        assert!(sparse.key_for(&json!({"_id": "x"})).is_none());
        assert_eq!(
            dense.key_for(&json!({"a": null})),
            dense.key_for(&json!({}))
        );
    }

    #[test]
    fn unique_conflicts() {
        let mut idx = SecondaryIndex::new(IndexSpec::single("email", "email").unique());
        let key = idx.key_for(&json!({"email": "a@x"})).unwrap();
        assert_eq!(idx.conflict(&key, "1"), None);
        idx.insert(&key, "1");
        assert_eq!(
            idx.conflict(&key, "1"),
            None,
            "a document does not clash with itself"
        );
        assert_eq!(idx.conflict(&key, "2"), Some("1".to_string()));
        idx.remove(&key, "1");
        assert_eq!(idx.conflict(&key, "2"), None);
        assert!(idx.is_empty());
    }

    #[test]
    fn ids_with_key_in_order() {
        let mut idx = SecondaryIndex::new(IndexSpec::single("c", "city"));
        for (id, city) in [("3", "Oslo"), ("1", "Oslo"), ("2", "Rome"), ("0", "Os")] {
            let key = idx.key_for(&json!({ "city": city })).unwrap();
            idx.insert(&key, id);
        }
        let oslo = idx.key_for(&json!({"city": "Oslo"})).unwrap();
        assert_eq!(idx.ids_with_key(&oslo.0).collect::<Vec<_>>(), ["1", "3"]);
    }

    #[test]
    fn split_entries() {
        let mut spec = IndexSpec::single("c", "a");
        spec.fields.push(crate::index::IndexField {
            path: "b".into(),
            desc: true,
        });
        let mut idx = SecondaryIndex::new(spec);
        let docs = [
            json!({"a": [1, {"x": "\u{0}"}], "b": "q\u{0}r"}),
            json!({"a": null, "b": {"k": [true, 2.5]}}),
            json!({"b": false}),
        ];
        for (i, doc) in docs.iter().enumerate() {
            let key = idx.key_for(doc).unwrap();
            let id = format!("id\u{0}{i}");
            idx.insert(&key, &id);
            let entry = idx.iter().find(|e| e.starts_with(&key.0)).unwrap().to_vec();
            let (k, got) = idx.split_entry(&entry);
            assert_eq!((k, got.as_str()), (key.0.as_slice(), id.as_str()));
        }
    }

    #[test]
    fn dotted_paths() {
        let doc = json!({"a": {"b": [10, {"c": 3}]}});
        assert_eq!(lookup_path(&doc, "a.b.0"), Some(&json!(10)));
        assert_eq!(lookup_path(&doc, "a.b.1.c"), Some(&json!(3)));
        assert_eq!(lookup_path(&doc, "a.x"), None);
        assert_eq!(lookup_path(&doc, "a.b.c"), None);
    }
}
