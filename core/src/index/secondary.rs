//! A secondary index: a sorted set of `(key, document id)` pairs kept in step with the
//! collection on every change.
//!
//! Each entry is one byte string, the encoded key followed by the encoded id, so entries with
//! equal keys stay distinct and sort by id; a range over keys is a range over this set.
//! A unique index additionally refuses a second id under a key it already holds.

use std::borrow::Cow;
use std::ops::Bound;

use serde_json::Value;

use crate::doc::FieldSource;
use crate::packed::{self, PackedSet};

use super::key::{encode_component, encode_str};
use super::spec::IndexSpec;

/// The encoded key of one document in one index (without the id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexKey(pub Vec<u8>);

/// A secondary index over one collection.
#[derive(Clone, Debug)]
pub struct SecondaryIndex {
    spec: IndexSpec,
    /// `key ++ encode_str(id)` for every indexed document, packed (about the entry's bytes
    /// and 4 more each, where a `BTreeSet<Box<[u8]>>` took about 70 bytes for a 20-byte one).
    entries: PackedSet,
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
            entries: PackedSet::new(),
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
        self.entries_with_key(&key.0)
            .map(|e| decode_id(&e[key.0.len()..]).expect("index entries end with an id"))
            .find(|other| other != id)
            .map(Cow::into_owned)
    }

    /// Adds `(key, id)`. Uniqueness must have been checked with [`Self::conflict`].
    pub fn insert(&mut self, key: &IndexKey, id: &str) {
        debug_assert!(
            self.conflict(key, id).is_none(),
            "unique index {} violated",
            self.spec.name
        );
        self.entries.insert(&entry(key, id));
    }

    /// Removes `(key, id)`; it must be present.
    pub fn remove(&mut self, key: &IndexKey, id: &str) {
        let removed = self.entries.remove(&entry(key, id));
        assert!(
            removed,
            "index {} lost track of document {id}",
            self.spec.name
        );
    }

    /// The ids of the documents whose key is exactly `key`, in id order.
    #[cfg(test)]
    fn ids_with_key<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = String> + 'a {
        let key_len = key.len();
        self.entries_with_key(key)
            .filter_map(move |e| decode_id(&e[key_len..]).map(Cow::into_owned))
    }

    /// The entries whose key is exactly `key`: those from `key ++ [0x01]` up to `key ++ [0xFF]`.
    ///
    /// After a whole key comes the id, whose first byte is neither `0x00` nor `0xFF` (valid
    /// UTF-8 without control characters). A longer key that starts with `key` extends its last
    /// string component through an escaped NUL: the next byte is `0xFF` when that component is
    /// ascending, `0x00` when descending (`"a"` inverted is `FC 9E FF`, `"a\0"` inverted is
    /// `FC 9E FF 00 FF`). Both fall outside the bounds, so neither direction leaks a neighbour.
    fn entries_with_key<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        // Both bounds in one buffer: `key 01 key FF`.
        let mut bounds = Vec::with_capacity(2 * key.len() + 2);
        bounds.extend_from_slice(key);
        bounds.push(0x01);
        bounds.extend_from_slice(key);
        bounds.push(0xFF);
        let (lower, upper) = bounds.split_at(key.len() + 1);
        self.entries_between(Bound::Included(lower), Bound::Excluded(upper))
    }

    /// The raw entries (`key ++ encoded id`) between two bounds, in order, without
    /// allocating; split one into key and id with [`Self::split_entry`].
    pub fn entries_between(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Entries<'_> {
        Entries {
            range: self.entries.range(lower, upper),
        }
    }

    /// Every entry in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.entries.iter()
    }
}

/// The raw entries of an index between two bounds, walked from either end.
#[derive(Clone, Debug)]
pub struct Entries<'s> {
    range: packed::SetRange<'s>,
}

impl<'s> Iterator for Entries<'s> {
    type Item = &'s [u8];

    fn next(&mut self) -> Option<&'s [u8]> {
        self.range.next()
    }
}

impl<'s> DoubleEndedIterator for Entries<'s> {
    fn next_back(&mut self) -> Option<&'s [u8]> {
        self.range.next_back()
    }
}

fn entry(key: &IndexKey, id: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(key.0.len() + id.len() + 1);
    bytes.extend_from_slice(&key.0);
    encode_str(id, &mut bytes);
    bytes
}

/// Decodes an escaped, terminated id (the tail of an entry), without a copy when it has no
/// escaped `0x00` (stored ids never do: `validate_id` refuses control characters), so reading
/// candidates allocates nothing.
pub fn decode_id(tail: &[u8]) -> Option<Cow<'_, str>> {
    let end = tail.iter().position(|&b| b == 0x00)?;
    if tail.get(end + 1) != Some(&0xFF) {
        return std::str::from_utf8(&tail[..end]).ok().map(Cow::Borrowed);
    }
    let mut out = Vec::with_capacity(tail.len());
    let mut i = 0;
    while i < tail.len() {
        match tail[i] {
            0x00 if tail.get(i + 1) == Some(&0xFF) => {
                out.push(0x00);
                i += 2;
            }
            0x00 => return String::from_utf8(out).ok().map(Cow::Owned),
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
    // One copy of the walk per direction: the inversion is decided at compile time.
    let end = if desc {
        value_len::<true>(bytes, 0)?
    } else {
        value_len::<false>(bytes, 0)?
    };
    (end <= bytes.len()).then_some(end)
}

/// The end of the value encoded from `start` (possibly past the end of `bytes` for a
/// truncated number or boolean; the caller checks).
fn value_len<const DESC: bool>(bytes: &[u8], start: usize) -> Option<usize> {
    let at = |i: usize| bytes.get(i).map(|b| if DESC { !*b } else { *b });
    match at(start)? {
        super::key::TAG_NULL => Some(start + 1),
        super::key::TAG_NUMBER => Some(start + 9),
        super::key::TAG_BOOL => Some(start + 2),
        super::key::TAG_STRING => str_end::<DESC>(bytes, start + 1),
        super::key::TAG_ARRAY => {
            let mut i = start + 1;
            while at(i)? != 0x00 {
                i = value_len::<DESC>(bytes, i)?;
            }
            Some(i + 1)
        }
        super::key::TAG_OBJECT => {
            let mut i = start + 1;
            while at(i)? == 0x01 {
                i = value_len::<DESC>(bytes, str_end::<DESC>(bytes, i + 1)?)?;
            }
            (at(i)? == 0x00).then_some(i + 1)
        }
        _ => None,
    }
}

/// The end of the escaped, terminated string that starts at `i`: just past its `0x00` (`0xFF`
/// when inverted) that is not followed by the escape byte.
fn str_end<const DESC: bool>(bytes: &[u8], mut i: usize) -> Option<usize> {
    let (end, escape) = if DESC { (0xFF, 0x00) } else { (0x00, 0xFF) };
    loop {
        i += bytes.get(i..)?.iter().position(|&b| b == end)?;
        if bytes.get(i + 1) == Some(&escape) {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

impl SecondaryIndex {
    /// Splits an entry of this index into its key and the document id, borrowing the id from
    /// the entry when it has no escapes.
    pub fn split_entry<'e>(&self, entry: &'e [u8]) -> (&'e [u8], Cow<'e, str>) {
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

    /// A descending string component followed by an escaped NUL sorts right after the shorter
    /// string's key: `"a"` and `"a\0"` must not see each other's ids.
    #[test]
    fn keys_extended_through_nul_are_other_keys() {
        for desc in [false, true] {
            let mut spec = IndexSpec::single("e", "e").unique();
            spec.fields[0].desc = desc;
            let mut idx = SecondaryIndex::new(spec);
            let long = idx.key_for(&json!({"e": "a\u{0}"})).unwrap();
            idx.insert(&long, "x");
            let short = idx.key_for(&json!({"e": "a"})).unwrap();
            assert_eq!(idx.conflict(&short, "y"), None, "desc={desc}");
            assert_eq!(idx.ids_with_key(&short.0).count(), 0, "desc={desc}");
            idx.insert(&short, "y");
            assert_eq!(idx.conflict(&long, "z"), Some("x".into()), "desc={desc}");
            assert_eq!(idx.conflict(&short, "z"), Some("y".into()), "desc={desc}");
        }
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

    /// The length of every kind of encoding, in both directions, whatever follows it.
    #[test]
    fn component_lengths() {
        let values = [
            json!(null),
            json!(-2.5),
            json!(true),
            json!(""),
            json!("a\u{0}"),
            json!("\u{0}\u{0}b\u{0}"),
            json!([]),
            json!([1, "x\u{0}", [null, {"k\u{0}": false}]]),
            json!({}),
            json!({"a": {"b\u{0}": ["c\u{0}", 2]}, "z": ""}),
        ];
        for value in &values {
            for desc in [false, true] {
                let mut enc = Vec::new();
                encode_component(Some(value), desc, &mut enc);
                // What can follow: an id byte, an ascending tag, a descending tag.
                for tail in [&b"id\x00"[..], &[0x01], &[0xFE]] {
                    let entry = [enc.as_slice(), tail].concat();
                    assert_eq!(
                        component_len(&entry, desc),
                        Some(enc.len()),
                        "{value} {desc}"
                    );
                }
            }
        }
        assert_eq!(
            component_len(&[0x02, 0, 0], false),
            None,
            "a truncated number"
        );
        assert_eq!(
            component_len(&[0x03, b'a'], false),
            None,
            "an unterminated string"
        );
        assert_eq!(component_len(&[0x09], false), None, "an unknown tag");
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
            assert_eq!((k, got.as_ref()), (key.0.as_slice(), id.as_str()));
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
