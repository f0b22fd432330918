//! Documents: validated JSON objects with a string `_id`, stored as canonical compact JSON text.
//!
//! A document enters the store once, is validated and canonicalized (object keys sorted, no
//! insignificant whitespace), and from then on travels as text: in the log, in snapshots and on
//! the wire. Parsing happens only where a value is needed (index keys, filters). The canonical
//! form makes the bytes that get hashed independent of how the client formatted its JSON.

mod canonical;
mod view;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ErrorCode;
use crate::types::{Lsn, TimestampMs};

pub use view::{DocView, FieldSource};

/// The field that names a document.
pub const ID_FIELD: &str = "_id";
/// Largest canonical document, in bytes.
pub const DOC_BYTES_MAX: usize = 1 << 20;
/// Longest `_id`, in bytes.
pub const ID_BYTES_MAX: usize = 256;
/// Deepest nesting of objects and arrays inside a document.
pub const DEPTH_MAX: usize = 64;
/// Longest collection name, in bytes.
pub const COLLECTION_NAME_BYTES_MAX: usize = 64;

/// Why a document, an id or a collection name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("document is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("document must be a JSON object")]
    NotAnObject,
    #[error("document has no `_id`")]
    MissingId,
    #[error(
        "`_id` must be a non-empty string of at most {ID_BYTES_MAX} bytes without control characters"
    )]
    InvalidId,
    #[error("document is {size} bytes; the limit is {DOC_BYTES_MAX}")]
    TooLarge { size: usize },
    #[error("document nests deeper than {DEPTH_MAX} levels")]
    TooDeep,
    #[error("field name `{0}` is not allowed: names must not be empty or start with `$`")]
    InvalidFieldName(String),
    #[error(
        "collection name `{0}` is invalid: use 1-{COLLECTION_NAME_BYTES_MAX} characters from [A-Za-z0-9_.-], starting with a letter or digit"
    )]
    InvalidCollectionName(String),
}

impl ErrorCode for DocError {
    fn code(&self) -> &'static str {
        match self {
            DocError::InvalidJson(_) => "invalid_json",
            DocError::NotAnObject
            | DocError::MissingId
            | DocError::TooDeep
            | DocError::InvalidFieldName(_) => "invalid_document",
            DocError::InvalidId => "invalid_id",
            DocError::TooLarge { .. } => "document_too_large",
            DocError::InvalidCollectionName(_) => "invalid_collection_name",
        }
    }
}

/// Canonical compact JSON text of a document object. Constructed only through validation, so
/// holding one means: an object, canonical, within limits, with a valid string `_id`.
///
/// Deserializing one validates it again and requires the canonical form: a hash proves bytes
/// were not changed in transit, not that whoever made them was honest. That check is one
/// borrowed pass over the text, without building a `Value` (see `canonical.rs`).
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RawDoc(Box<str>);

impl<'de> Deserialize<'de> for RawDoc {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawDoc, D::Error> {
        let text = String::deserialize(deserializer)?;
        // One borrowed pass proves the text canonical (see `canonical.rs`); the slow path
        // runs only for text that fails it, to say why.
        if canonical::is_canonical(&text) {
            return Ok(RawDoc(text.into_boxed_str()));
        }
        let doc = RawDoc::parse(&text).map_err(serde::de::Error::custom)?;
        assert_ne!(
            doc.as_str(),
            text,
            "the canonical check refused canonical text"
        );
        Err(serde::de::Error::custom(
            "document is not in canonical form",
        ))
    }
}

impl RawDoc {
    /// Validates and canonicalizes a parsed document. It must carry a valid `_id`.
    pub fn from_value(value: &Value) -> Result<RawDoc, DocError> {
        let obj = value.as_object().ok_or(DocError::NotAnObject)?;
        match obj.get(ID_FIELD) {
            None => return Err(DocError::MissingId),
            Some(Value::String(id)) => validate_id(id)?,
            Some(_) => return Err(DocError::InvalidId),
        }
        validate_fields(value, 0)?;
        let text = serde_json::to_string(value).expect("serializing a Value cannot fail");
        if text.len() > DOC_BYTES_MAX {
            return Err(DocError::TooLarge { size: text.len() });
        }
        Ok(RawDoc(text.into_boxed_str()))
    }

    /// Parses and validates document text from outside.
    pub fn parse(text: &str) -> Result<RawDoc, DocError> {
        if text.len() > 2 * DOC_BYTES_MAX {
            return Err(DocError::TooLarge { size: text.len() });
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| DocError::InvalidJson(e.to_string()))?;
        RawDoc::from_value(&value)
    }

    /// The document `text` is, taken as it is when it is already canonical: what a client that
    /// writes canonical JSON sends (the browser replica does), without building a tree. Text
    /// that is canonical but for a missing `_id` gets the id `new_id()` makes, at its place in
    /// key order, as [`ensure_id`] then [`RawDoc::from_value`] would put it; `new_id` returns
    /// `None` where an `_id` is required. `None` means the text needs the general path (parse,
    /// [`ensure_id`], [`RawDoc::from_value`]), which gives the same document or says what is
    /// wrong; `Some` is always what that path gives.
    pub fn from_canonical(text: &str, new_id: impl FnOnce() -> Option<String>) -> Option<RawDoc> {
        let at = match canonical::id_slot(text)? {
            canonical::IdSlot::Present => return Some(RawDoc(text.into())),
            canonical::IdSlot::Missing { at } => at,
        };
        let id = new_id()?;
        validate_id(&id).ok()?;
        let id = serde_json::to_string(&id).expect("a string serializes");
        let (before, after) = text.split_at(at);
        let mut out = String::with_capacity(text.len() + ID_FIELD.len() + id.len() + 4);
        out.push_str(before);
        match (after.starts_with('}'), before.len() > 1) {
            // Before a key: the members before it keep their comma.
            (false, _) => write_id_member(&mut out, &id, "", ","),
            // Last, after other members.
            (true, true) => write_id_member(&mut out, &id, ",", ""),
            // Alone in `{}`.
            (true, false) => write_id_member(&mut out, &id, "", ""),
        }
        out.push_str(after);
        (out.len() <= DOC_BYTES_MAX).then(|| RawDoc(out.into_boxed_str()))
    }

    /// Document text read back from a record of the store's own log whose crc and hash were
    /// checked: canonical when it was written, and unchanged since (see
    /// [`decode_own_entry`](crate::log::decode_own_entry) for why). Debug builds check the
    /// form anyway, and return `None` when it is not (a bug where the log was written).
    pub(crate) fn from_own_log(text: &str) -> Option<RawDoc> {
        DocText::from_own_log(text).map(DocText::to_raw)
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, borrowed as the state lends its documents.
    pub fn text(&self) -> DocText<'_> {
        DocText(&self.0)
    }

    /// Parses the text back into a value. The text was produced by serde_json from a value, so
    /// failure is a bug.
    pub fn to_value(&self) -> Value {
        self.text().to_value()
    }

    /// The document's `_id`.
    pub fn id(&self) -> String {
        self.text().id()
    }

    /// The document's `_id`, borrowed from the text when it has no escapes.
    pub fn id_str(&self) -> std::borrow::Cow<'_, str> {
        self.text().id_str()
    }

    /// Length of the canonical text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a document is at least `{"_id":""}`-sized. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `"_id":<quoted>` between `before` and `after`.
fn write_id_member(out: &mut String, quoted: &str, before: &str, after: &str) {
    out.push_str(before);
    out.push('"');
    out.push_str(ID_FIELD);
    out.push_str("\":");
    out.push_str(quoted);
    out.push_str(after);
}

impl fmt::Debug for RawDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawDoc({})", self.0)
    }
}

/// Checks an `_id` value.
pub fn validate_id(id: &str) -> Result<(), DocError> {
    if id.is_empty() || id.len() > ID_BYTES_MAX || id.chars().any(char::is_control) {
        return Err(DocError::InvalidId);
    }
    Ok(())
}

/// Checks a collection name: short, and safe to use in URLs and file names.
pub fn validate_collection_name(name: &str) -> Result<(), DocError> {
    let ok = !name.is_empty()
        && name.len() <= COLLECTION_NAME_BYTES_MAX
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(DocError::InvalidCollectionName(name.to_string()))
    }
}

/// The collection where a cluster keeps its membership (one document, `membership`), written
/// only by the consensus layer's membership entries, never by a client: its name is one that
/// [`validate_collection_name`] refuses, so no API request can name it.
pub const CLUSTER_COLLECTION: &str = "_cluster";

/// Checks a collection name found in the log or a snapshot: a client's name, or
/// [`CLUSTER_COLLECTION`].
pub fn validate_stored_collection_name(name: &str) -> Result<(), DocError> {
    if name == CLUSTER_COLLECTION {
        return Ok(());
    }
    validate_collection_name(name)
}

fn validate_fields(value: &Value, depth: usize) -> Result<(), DocError> {
    if depth > DEPTH_MAX {
        return Err(DocError::TooDeep);
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key.is_empty() || key.starts_with('$') {
                    return Err(DocError::InvalidFieldName(key.clone()));
                }
                validate_fields(child, depth + 1)?;
            }
        }
        Value::Array(items) => {
            for child in items {
                validate_fields(child, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Applies an RFC 7386 JSON merge patch: objects merge recursively, `null` removes a field,
/// anything else replaces. `_id` cannot be changed by a patch (the caller checks).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let target_map = target.as_object_mut().expect("made an object above");
            for (key, patch_value) in patch_map {
                if patch_value.is_null() {
                    target_map.remove(key);
                } else {
                    merge_patch(
                        target_map.entry(key.clone()).or_insert(Value::Null),
                        patch_value,
                    );
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A document as the store holds it: the canonical text and the LSN that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDoc {
    /// The LSN of the entry that last wrote this document: its version.
    pub version: Lsn,
    /// The canonical JSON text.
    pub doc: RawDoc,
}

impl StoredDoc {
    /// The document borrowed, as the state lends its own.
    pub fn to_ref(&self) -> DocRef<'_> {
        DocRef {
            version: self.version,
            doc: self.doc.text(),
        }
    }
}

/// The canonical text of a document, borrowed: what a [`RawDoc`] holds, where the state keeps
/// it (documents are packed many to a buffer there, not one allocation each). Made only from
/// a `RawDoc`'s text, so it has what a `RawDoc` guarantees.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DocText<'a>(&'a str);

impl<'a> DocText<'a> {
    /// Text that was a [`RawDoc`]'s (the state's packed documents).
    pub(crate) fn of_raw_text(text: &'a str) -> DocText<'a> {
        DocText(text)
    }

    /// Document text the store wrote itself and read back checked by crc and hash, borrowed
    /// (see [`RawDoc::from_own_log`]). Debug builds check the form anyway.
    pub(crate) fn from_own_log(text: &'a str) -> Option<DocText<'a>> {
        if cfg!(debug_assertions) && !canonical::is_canonical(text) {
            return None;
        }
        Some(DocText(text))
    }

    /// The canonical JSON text.
    pub fn as_str(self) -> &'a str {
        self.0
    }

    /// Parses the text into a value (see [`RawDoc::to_value`]).
    pub fn to_value(self) -> Value {
        serde_json::from_str(self.0).expect("RawDoc holds valid JSON")
    }

    /// The document's `_id`.
    pub fn id(self) -> String {
        self.id_str().into_owned()
    }

    /// The document's `_id`, borrowed from the text when it has no escapes.
    pub fn id_str(self) -> std::borrow::Cow<'a, str> {
        view::id_of(self.0)
    }

    /// An owned copy.
    pub fn to_raw(self) -> RawDoc {
        RawDoc(self.0.into())
    }
}

impl<'a> From<&'a RawDoc> for DocText<'a> {
    fn from(doc: &'a RawDoc) -> DocText<'a> {
        doc.text()
    }
}

impl fmt::Debug for DocText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocText({})", self.0)
    }
}

/// A stored document borrowed from the state: its version and its text. It serializes as the
/// [`StoredDoc`] it is a copy of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DocRef<'a> {
    /// The LSN of the entry that last wrote this document: its version.
    pub version: Lsn,
    /// The canonical JSON text.
    pub doc: DocText<'a>,
}

impl DocRef<'_> {
    /// An owned copy.
    pub fn to_stored(self) -> StoredDoc {
        StoredDoc {
            version: self.version,
            doc: self.doc.to_raw(),
        }
    }
}

/// Gives `value` the id `new_id()` makes when it has no `_id` (the id is made only then).
/// Values that are not objects are left alone for validation to refuse.
pub fn ensure_id(value: &mut Value, new_id: impl FnOnce() -> String) {
    if let Value::Object(map) = value
        && !map.contains_key(ID_FIELD)
    {
        map.insert(ID_FIELD.to_string(), Value::String(new_id()));
    }
}

/// Makes document ids that sort by creation time: 12 hex digits of milliseconds, then 14 of
/// a counter seeded from randomness. Time and randomness are arguments: core reads neither.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    last_ms: u64,
    counter: u64,
}

impl IdGenerator {
    /// A generator whose counter starts at `random` (mixed, so that two generators seeded
    /// close together still diverge).
    pub fn new(random: u64) -> IdGenerator {
        IdGenerator {
            last_ms: 0,
            counter: random.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 8,
        }
    }

    /// The next id at time `now`. Ids from one generator are strictly increasing even if the
    /// clock steps back: the time part never decreases.
    pub fn next_id(&mut self, now: TimestampMs) -> String {
        self.last_ms = self.last_ms.max(now.0);
        self.counter = (self.counter + 1) & ((1 << 56) - 1);
        format!(
            "{:012x}{:014x}",
            self.last_ms & ((1 << 48) - 1),
            self.counter
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonicalizes_key_order_and_whitespace() {
        let a = RawDoc::parse(r#"{ "b": 1, "_id": "x", "a": [1, 2] }"#).unwrap();
        let b = RawDoc::parse(r#"{"a":[1,2],"_id":"x","b":1}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), r#"{"_id":"x","a":[1,2],"b":1}"#);
        assert_eq!(a.id(), "x");
    }

    #[test]
    fn refuses_bad_documents() {
        assert_eq!(RawDoc::parse("[1]").unwrap_err(), DocError::NotAnObject);
        assert_eq!(
            RawDoc::parse(r#"{"a":1}"#).unwrap_err(),
            DocError::MissingId
        );
        assert_eq!(
            RawDoc::parse(r#"{"_id":7}"#).unwrap_err(),
            DocError::InvalidId
        );
        assert_eq!(
            RawDoc::parse(r#"{"_id":""}"#).unwrap_err(),
            DocError::InvalidId
        );
        assert_eq!(
            RawDoc::parse("{\"_id\":\"a\\u0000\"}").unwrap_err(),
            DocError::InvalidId
        );
        assert!(matches!(RawDoc::parse("{"), Err(DocError::InvalidJson(_))));
        assert!(matches!(
            RawDoc::parse(r#"{"_id":"a","$set":1}"#),
            Err(DocError::InvalidFieldName(_))
        ));
        let mut deep = json!(1);
        for _ in 0..70 {
            deep = json!({ "x": deep });
        }
        deep["_id"] = json!("d");
        assert_eq!(RawDoc::from_value(&deep).unwrap_err(), DocError::TooDeep);
        let big = json!({"_id": "b", "s": "x".repeat(DOC_BYTES_MAX)});
        assert!(matches!(
            RawDoc::from_value(&big),
            Err(DocError::TooLarge { .. })
        ));
    }

    #[test]
    fn deserializing_validates() {
        let good: RawDoc = serde_json::from_str(r#""{\"_id\":\"a\"}""#).unwrap();
        assert_eq!(good.id(), "a");
        for bad in [
            r#""{\"_id\":1}""#,
            r#""not json""#,
            r#""{ \"_id\": \"a\" }""#,
        ] {
            assert!(serde_json::from_str::<RawDoc>(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// What the leader canonicalizes, a replica accepts as canonical: floats and escapes
        /// survive the round trip exactly (serde_json's `float_roundtrip` is required for this).
        #[test]
        fn canonical_text_round_trips(
            f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL,
            i in proptest::prelude::any::<i64>(),
            s in "\\PC{0,8}",
        ) {
            let doc = RawDoc::from_value(&json!({"_id": "x", "f": f, "i": i, "s": s})).unwrap();
            let wire = serde_json::to_string(&doc).unwrap();
            let back: RawDoc = serde_json::from_str(&wire).unwrap();
            proptest::prop_assert_eq!(back, doc);
        }
    }

    #[test]
    fn ensure_id_fills_only_missing() {
        let mut ids = IdGenerator::new(1);
        let mut a = json!({"x": 1});
        ensure_id(&mut a, || ids.next_id(TimestampMs(5)));
        assert!(a["_id"].is_string());
        let mut b = json!({"_id": "given"});
        ensure_id(&mut b, || unreachable!("b has an _id: no id is made"));
        assert_eq!(b["_id"], "given");
    }

    #[test]
    fn collection_names() {
        assert!(validate_collection_name("notes").is_ok());
        assert!(validate_collection_name("a.b-c_9").is_ok());
        for bad in ["", "_x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_collection_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": 3});
        merge_patch(
            &mut doc,
            &json!({"a": {"b": null, "e": 4}, "d": [1], "f": "g"}),
        );
        assert_eq!(doc, json!({"a": {"c": 2, "e": 4}, "d": [1], "f": "g"}));
    }

    #[test]
    fn ids_increase_and_differ() {
        let mut g = IdGenerator::new(42);
        let a = g.next_id(TimestampMs(1000));
        let b = g.next_id(TimestampMs(999)); // clock stepped back
        let c = g.next_id(TimestampMs(2000));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), 26);
        let mut other = IdGenerator::new(43);
        assert_ne!(other.next_id(TimestampMs(1000)), a);
    }
}
