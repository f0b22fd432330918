//! A lazy view of a document's top-level fields, for the hot paths of apply.
//!
//! Applying an insert needs the `_id` and the indexed fields, not a tree of the whole
//! document. A `DocView` splits the canonical text into its top-level `(name, raw value)` pairs
//! without allocating the values, and parses a field only when asked. On a typical small
//! document this is several times cheaper than building a `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{ID_FIELD, RawDoc};
use crate::index::lookup_path;

/// Anything whose fields can be looked up by dotted path: a parsed value or a lazy view.
pub trait FieldSource {
    /// The value at `path`, if present.
    fn field(&self, path: &str) -> Option<Cow<'_, Value>>;
}

impl FieldSource for Value {
    fn field(&self, path: &str) -> Option<Cow<'_, Value>> {
        lookup_path(self, path).map(Cow::Borrowed)
    }
}

/// The top-level fields of a document, values unparsed.
pub struct DocView<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl fmt::Debug for DocView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.fields.iter().map(|(k, v)| (k, v.get())))
            .finish()
    }
}

impl<'a> DocView<'a> {
    /// Splits a document's text. A `RawDoc` is a valid object, so this cannot fail.
    pub fn new(doc: &'a RawDoc) -> DocView<'a> {
        let mut de = serde_json::Deserializer::from_str(doc.as_str());
        let fields = de
            .deserialize_map_fields()
            .expect("RawDoc holds a JSON object");
        DocView { fields }
    }

    fn raw(&self, name: &str) -> Option<&'a RawValue> {
        // Canonical documents have their keys sorted, so a binary search finds a field.
        self.fields
            .binary_search_by(|(k, _)| k.as_ref().cmp(name))
            .ok()
            .map(|i| self.fields[i].1)
    }

    /// The document's `_id`, borrowed from the text when it has no escapes.
    pub fn id(&self) -> Cow<'a, str> {
        let raw = self.raw(ID_FIELD).expect("RawDoc has an _id");
        let id: Cow<'a, str> = serde_json::from_str(raw.get()).expect("RawDoc's _id is a string");
        id
    }
}

impl FieldSource for DocView<'_> {
    fn field(&self, path: &str) -> Option<Cow<'_, Value>> {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        let value: Value = serde_json::from_str(self.raw(head)?.get()).expect("valid JSON");
        match rest {
            None => Some(Cow::Owned(value)),
            Some(rest) => lookup_path(&value, rest).cloned().map(Cow::Owned),
        }
    }
}

trait MapFields<'a> {
    fn deserialize_map_fields(&mut self) -> serde_json::Result<Vec<(Cow<'a, str>, &'a RawValue)>>;
}

impl<'a> MapFields<'a> for serde_json::Deserializer<serde_json::de::StrRead<'a>> {
    fn deserialize_map_fields(&mut self) -> serde_json::Result<Vec<(Cow<'a, str>, &'a RawValue)>> {
        struct Fields;
        impl<'a> Visitor<'a> for Fields {
            type Value = Vec<(Cow<'a, str>, &'a RawValue)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'a>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<BorrowedKey<'a>>()? {
                    fields.push((key.0, map.next_value::<&'a RawValue>()?));
                }
                Ok(fields)
            }
        }
        serde::Deserializer::deserialize_map(self, Fields)
    }
}

/// A map key borrowed from the text when it can be.
struct BorrowedKey<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl<'de> Visitor<'de> for Key {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn view_matches_value() {
        let value = json!({"_id": "a\"b", "n": 1, "o": {"p": [1, {"q": true}]}, "z": null});
        let doc = RawDoc::from_value(&value).unwrap();
        let view = DocView::new(&doc);
        assert_eq!(view.id(), "a\"b");
        for path in [
            "_id",
            "n",
            "o",
            "o.p",
            "o.p.1.q",
            "z",
            "missing",
            "o.missing",
            "n.x",
        ] {
            assert_eq!(view.field(path), value.field(path), "{path}");
        }
    }
}
