//! A lazy view of a document's top-level fields, for the hot paths of apply.
//!
//! Applying an insert needs the `_id` and the indexed fields, not a tree of the whole
//! document. A `DocView` splits the canonical text into its top-level `(name, raw value)` pairs
//! without allocating the values, and parses a field only when asked. On a typical small
//! document this is several times cheaper than building a `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

#[cfg(test)]
use super::RawDoc;
use super::{DocText, ID_FIELD};
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
    /// `(name, raw JSON text of the value)`, in the document's (sorted) key order.
    fields: Vec<(Cow<'a, str>, &'a str)>,
}

impl fmt::Debug for DocView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.fields.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<'a> DocView<'a> {
    /// Splits a document's text into its top-level fields.
    ///
    /// This is a structural scan, not a parser: it relies on the text being what `RawDoc`
    /// guarantees, compact JSON written by serde_json (no whitespace, valid escapes, balanced
    /// brackets), so it only has to find where each key and value ends.
    pub fn new(doc: impl Into<DocText<'a>>) -> DocView<'a> {
        let text = doc.into().as_str();
        let bytes = text.as_bytes();
        assert_eq!(bytes[0], b'{', "RawDoc holds a JSON object");
        let mut fields = Vec::with_capacity(8);
        let mut i = 1;
        if bytes[i] == b'}' {
            return DocView { fields };
        }
        loop {
            let key_end = string_end(bytes, i);
            let key = unescape(&text[i..key_end]);
            debug_assert_eq!(bytes[key_end], b':');
            let value_start = key_end + 1;
            i = value_end(bytes, value_start);
            fields.push((key, &text[value_start..i]));
            match bytes[i] {
                b',' => i += 1,
                b'}' => break,
                other => unreachable!("unexpected byte {other:#x} after a value"),
            }
        }
        DocView { fields }
    }

    fn raw(&self, name: &str) -> Option<&'a str> {
        // Canonical documents have their keys sorted, so a binary search finds a field.
        self.fields
            .binary_search_by(|(k, _)| k.as_ref().cmp(name))
            .ok()
            .map(|i| self.fields[i].1)
    }

    /// The document's `_id`, borrowed from the text when it has no escapes.
    pub fn id(&self) -> Cow<'a, str> {
        unescape(self.raw(ID_FIELD).expect("RawDoc has an _id"))
    }
}

/// A document's `_id`, borrowed from the text when it has no escapes, found by skipping the
/// fields before it (without splitting the rest, as [`DocView::new`] does).
pub(super) fn id_of(text: &str) -> Cow<'_, str> {
    const ID_KEY: &str = "\"_id\"";
    // Most documents have no key that sorts before `_id` (upper case, digits), and an id
    // without escapes: then the id is the text up to the next quote.
    if let Some(rest) = text.strip_prefix("{\"_id\":\"")
        && let Some(end) = rest.bytes().position(|b| b == b'"' || b == b'\\')
        && rest.as_bytes()[end] == b'"'
    {
        return Cow::Borrowed(&rest[..end]);
    }
    let bytes = text.as_bytes();
    assert_eq!(bytes[0], b'{', "RawDoc holds a JSON object");
    let mut i = 1;
    loop {
        assert_eq!(bytes[i], b'"', "RawDoc has an _id");
        let key_end = string_end(bytes, i);
        let value_start = key_end + 1;
        let value_stop = value_end(bytes, value_start);
        if &text[i..key_end] == ID_KEY {
            return unescape(&text[value_start..value_stop]);
        }
        i = value_stop + 1;
    }
}

/// The text of a JSON string literal (with its quotes) as a string, borrowed when it has no
/// escapes.
fn unescape(literal: &str) -> Cow<'_, str> {
    let inner = &literal[1..literal.len() - 1];
    if inner.contains('\\') {
        Cow::Owned(serde_json::from_str(literal).expect("a valid JSON string"))
    } else {
        Cow::Borrowed(inner)
    }
}

/// The index just past the string literal that starts at `start` (an opening quote).
fn string_end(bytes: &[u8], start: usize) -> usize {
    debug_assert_eq!(bytes[start], b'"');
    let mut i = start + 1;
    loop {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
}

/// The index just past the value that starts at `start`.
fn value_end(bytes: &[u8], start: usize) -> usize {
    match bytes[start] {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match bytes[i] {
                    b'"' => {
                        i = string_end(bytes, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while !matches!(bytes[i], b',' | b'}' | b']') {
                i += 1;
            }
            i
        }
    }
}

impl FieldSource for DocView<'_> {
    fn field(&self, path: &str) -> Option<Cow<'_, Value>> {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        let value: Value = serde_json::from_str(self.raw(head)?).expect("valid JSON");
        match rest {
            None => Some(Cow::Owned(value)),
            Some(rest) => lookup_path(&value, rest).cloned().map(Cow::Owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
        let empty_ish = RawDoc::from_value(&json!({"_id": "e"})).unwrap();
        assert_eq!(DocView::new(&empty_ish).id(), "e");
        assert_eq!(id_of(doc.as_str()), "a\"b");
        let ordered = RawDoc::from_value(&json!({"A": [{"_id": 1}], "_id": "i", "b": 2})).unwrap();
        assert_eq!(id_of(ordered.as_str()), "i");
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[a-z\"\\\\,:{}\\[\\] \u{0}-\u{1f}é]{0,6}".prop_map(Value::String),
        ]
    }

    fn nested() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c\"\\\\,:]{1,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The scan agrees with a full parse on every field of random documents, including
        /// keys and strings full of quotes, backslashes, brackets and control characters.
        #[test]
        fn scan_agrees_with_parse(
            id in "[a-z\"\\\\]{1,5}",
            fields in prop::collection::btree_map("[a-d\"\\\\{:,]{1,3}", nested(), 0..6),
        ) {
            let mut value = Value::Object(fields.into_iter().collect());
            value["_id"] = json!(id);
            let doc = RawDoc::from_value(&value).unwrap();
            let view = DocView::new(&doc);
            prop_assert_eq!(view.id(), id.as_str());
            prop_assert_eq!(id_of(doc.as_str()), id.as_str());
            for (key, expected) in value.as_object().unwrap() {
                let got = view.field(key);
                prop_assert_eq!(got.as_deref(), Some(expected), "field {}", key);
            }
            prop_assert_eq!(view.fields.len(), value.as_object().unwrap().len());
        }
    }
}
