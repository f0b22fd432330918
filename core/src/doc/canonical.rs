//! Proving stored document text canonical in one borrowed pass, without building a tree.
//!
//! Every document read back from the log or a snapshot must be exactly what
//! [`RawDoc::from_value`](super::RawDoc::from_value) writes: a hash proves the bytes were not
//! changed, not that whoever wrote them was honest. The obvious proof (parse into a
//! `serde_json::Value`, validate, serialize again, compare) allocates a map per object and a
//! string per key and value, and was about half the cost of recovery. This module proves the
//! same thing by reading the text once, allocating nothing for documents without floats or
//! escaped ids:
//!
//! ```text
//!  text ─► object ─► "key" (escapes exactly as serde_json writes them; keys strictly
//!            │        ascending by their unescaped bytes; not empty, not `$…`)
//!            ├─────► value: string | integer (in u64/i64 range, serde_json's digits)
//!            │              | float (parsed, then re-formatted as serde_json formats it)
//!            │              | true | false | null | array | object (depth ≤ DEPTH_MAX)
//!            └─────► top level: a valid string `_id`, at most DOC_BYTES_MAX bytes in all
//! ```
//!
//! It must accept exactly what the slow path accepts; the property tests below compare the two
//! on random documents and on random mutations of them.

use super::{DEPTH_MAX, DOC_BYTES_MAX, ID_FIELD, validate_id};

/// True when `text` is exactly the canonical text of a valid document: what
/// `RawDoc::from_value(&serde_json::from_str(text)?)?.as_str()` returns, and equal to `text`.
pub(crate) fn is_canonical(text: &str) -> bool {
    matches!(id_slot(text), Some(IdSlot::Present))
}

/// Where a document's `_id` is in canonical text, or would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdSlot {
    /// The text is a canonical document as it is ([`is_canonical`]).
    Present,
    /// The text has no `_id` and is otherwise canonical: `"_id":…` belongs at this byte offset,
    /// in front of the first key that sorts after it, or of the closing brace.
    Missing { at: usize },
}

/// Where the `_id` of `text` is, or belongs when the text is canonical but for a missing
/// `_id`; `None` when the text is not canonical (or its `_id` is not valid). The inserts of a
/// client that writes canonical JSON (the browser replica does) take their id here without a
/// tree being built.
pub(crate) fn id_slot(text: &str) -> Option<IdSlot> {
    if text.len() > DOC_BYTES_MAX || !text.starts_with('{') {
        return None;
    }
    let mut checker = Checker {
        text,
        at: 0,
        slot: None,
    };
    checker.object(0, true)?;
    (checker.at == text.len()).then_some(checker.slot?)
}

/// A cursor over the text. Every method returns `None` as soon as the text is not canonical.
struct Checker<'a> {
    text: &'a str,
    at: usize,
    /// The top-level object's `_id`, once it is closed.
    slot: Option<IdSlot>,
}

impl<'a> Checker<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > DEPTH_MAX {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth, false),
            b'[' => self.array(depth),
            b'"' => self.string().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.at..].starts_with(word).then(|| {
            self.at += word.len();
        })
    }

    /// An object at `depth`; `top` for the document itself, whose `_id` (valid when present)
    /// ends in `self.slot`.
    fn object(&mut self, depth: usize, top: bool) -> Option<()> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            if top {
                self.slot = Some(IdSlot::Missing { at: self.at - 1 });
            }
            return Some(());
        }
        let mut previous: Option<&'a str> = None;
        let mut slot = None;
        loop {
            let key_at = self.at;
            let key = self.string()?;
            if key.is_empty() || key.starts_with('$') {
                return None;
            }
            if previous.is_some_and(|previous| !key_before(previous, key)) {
                return None;
            }
            previous = Some(key);
            self.expect(b':')?;
            if top && key == ID_FIELD {
                let id = self.string()?;
                if id.contains('\\') {
                    validate_id(&unescape(id)).ok()?;
                } else {
                    validate_id(id).ok()?;
                }
                slot = Some(IdSlot::Present);
            } else {
                if top && slot.is_none() && key_before(ID_FIELD, key) {
                    slot = Some(IdSlot::Missing { at: key_at });
                }
                self.value(depth + 1)?;
            }
            match self.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        if top {
            self.slot = Some(slot.unwrap_or(IdSlot::Missing { at: self.at - 1 }));
        }
        Some(())
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.expect(b'[')?;
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.value(depth + 1)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string literal escaped as serde_json escapes it; returns its text between the quotes,
    /// still escaped.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        loop {
            self.skip_plain(bytes);
            match *bytes.get(self.at)? {
                b'"' => break,
                b'\\' => {
                    self.at += 1;
                    match self.next()? {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => {}
                        b'u' => {
                            let code = hex4(bytes.get(self.at..self.at + 4)?)?;
                            // serde_json writes `\u00xx` only for control characters that
                            // have no short escape.
                            if code >= 0x20 || matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.at += 4;
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let inner = &self.text[start..self.at];
        self.at += 1;
        Some(inner)
    }

    /// Moves past string bytes that need no attention (not `"`, `\\` or a control character),
    /// eight at a time: most of a document's text is such bytes.
    fn skip_plain(&mut self, bytes: &[u8]) {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
        const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
        // Nonzero when some byte of `v` is zero (exact as a yes/no answer).
        let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
        while let Some(chunk) = bytes.get(self.at..self.at + 8) {
            let v = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            // Nonzero when some byte is below 0x20.
            let control = v.wrapping_sub(ONES * 0x20) & !v & HIGHS;
            if control | has_zero(v ^ QUOTES) | has_zero(v ^ BACKSLASHES) != 0 {
                return;
            }
            self.at += 8;
        }
    }

    /// A number as serde_json writes a `Value` number: integers in `i64`/`u64` range as plain
    /// digits, anything else as the shortest float text that reads back to the same `f64`.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        let negative = self.eat(b'-');
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut float = false;
        if self.eat(b'.') {
            float = true;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.at += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.some_digits()?;
        }
        let token = &self.text[start..self.at];
        if !float {
            // `-0` reads back as the float -0.0 and is written `-0.0`; out-of-range
            // integers become floats too.
            let in_range = if negative {
                token != "-0" && token.parse::<i64>().is_ok()
            } else {
                token.parse::<u64>().is_ok()
            };
            return in_range.then_some(());
        }
        let value = parse_float(token)?;
        if !value.is_finite() {
            return None;
        }
        let mut buf = [0u8; 40];
        let mut out: &mut [u8] = &mut buf;
        serde_json::to_writer(&mut out, &value).ok()?;
        let written = 40 - out.len();
        (buf[..written] == *token.as_bytes()).then_some(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// A float token's value: `str::parse` natively; in the browser module serde_json's own reader,
/// which the module has anyway (`str::parse::<f64>` would add core's decimal tables to it:
/// 13 KB gzipped, docs/bench/wasm-size.md). Both round correctly, so both give the same `f64`.
#[cfg(not(target_arch = "wasm32"))]
fn parse_float(token: &str) -> Option<f64> {
    token.parse().ok()
}

#[cfg(target_arch = "wasm32")]
fn parse_float(token: &str) -> Option<f64> {
    serde_json::from_str(token).ok()
}

fn hex4(digits: &[u8]) -> Option<u32> {
    // Lowercase only: serde_json writes lowercase hex digits.
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u32::from(v))
    })
}

/// True when the key escaped as `a` sorts strictly before the key escaped as `b`, comparing
/// their unescaped bytes (the order of a `BTreeMap<String, _>`).
fn key_before(a: &str, b: &str) -> bool {
    if !a.contains('\\') && !b.contains('\\') {
        return a < b;
    }
    unescaped_bytes(a).lt(unescaped_bytes(b))
}

/// The bytes a checked string literal's inside stands for.
fn unescaped_bytes(inner: &str) -> impl Iterator<Item = u8> + '_ {
    let bytes = inner.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let byte = *bytes.get(i)?;
        if byte != b'\\' {
            i += 1;
            return Some(byte);
        }
        let (decoded, used) = match bytes[i + 1] {
            b'b' => (0x08, 2),
            b't' => (0x09, 2),
            b'n' => (0x0a, 2),
            b'f' => (0x0c, 2),
            b'r' => (0x0d, 2),
            b'u' => {
                let code = hex4(&bytes[i + 2..i + 6]).expect("checked by `string`");
                (u8::try_from(code).expect("checked below 0x20"), 6)
            }
            other => (other, 2),
        };
        i += used;
        Some(decoded)
    })
}

/// A checked string literal's inside, unescaped.
fn unescape(inner: &str) -> String {
    let bytes: Vec<u8> = unescaped_bytes(inner).collect();
    String::from_utf8(bytes).expect("escapes decode to ASCII; the rest was UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RawDoc;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// The slow path: parse into a tree, validate, serialize, compare.
    fn slow(text: &str) -> bool {
        RawDoc::parse(text).is_ok_and(|doc| doc.as_str() == text)
    }

    fn agree(text: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(is_canonical(text), slow(text), "on {:?}", text);
        Ok(())
    }

    #[test]
    fn examples_agree_with_the_slow_path() {
        let cases = [
            r#"{"_id":"a"}"#,
            r#"{"_id":"a","n":1}"#,
            r#"{"_id":"a","n":-0}"#,
            r#"{"_id":"a","n":-0.0}"#,
            r#"{"_id":"a","n":0.0}"#,
            r#"{"_id":"a","n":1.0}"#,
            r#"{"_id":"a","n":1e16}"#,
            r#"{"_id":"a","n":1e+16}"#,
            r#"{"_id":"a","n":1E16}"#,
            r#"{"_id":"a","n":1.0e16}"#,
            r#"{"_id":"a","n":10000000000000000.0}"#,
            r#"{"_id":"a","n":1e-7}"#,
            r#"{"_id":"a","n":1e400}"#,
            r#"{"_id":"a","n":0.1}"#,
            r#"{"_id":"a","n":01}"#,
            r#"{"_id":"a","n":1.}"#,
            r#"{"_id":"a","n":18446744073709551615}"#,
            r#"{"_id":"a","n":18446744073709551616}"#,
            r#"{"_id":"a","n":1.8446744073709552e19}"#,
            r#"{"_id":"a","n":-9223372036854775808}"#,
            r#"{"_id":"a","n":-9223372036854775809}"#,
            r#"{"_id":"a","n":-9.223372036854776e18}"#,
            r#"{"_id":"a","s":"\u001f\b\t\n\f\r\"\\/é"}"#,
            r#"{"_id":"a","s":"\u001F"}"#,
            r#"{"_id":"a","s":"\u0008"}"#,
            r#"{"_id":"a","s":"\u0041"}"#,
            r#"{"_id":"a","s":"\/"}"#,
            "{\"_id\":\"a\",\"s\":\"\u{7f}\u{85}\"}",
            "{\"_id\":\"a\u{85}\"}",
            r#"{"_id":"a\"b"}"#,
            r#"{"_id":"a\u0001"}"#,
            r#"{"_id":""}"#,
            r#"{"_id":1}"#,
            r#"{"a":1}"#,
            r#"{}"#,
            r#"[]"#,
            r#"{"_id":"a","":1}"#,
            r#"{"_id":"a","$x":1}"#,
            r#"{"_id":"a","o":{"$x":1}}"#,
            r#"{"_id":"a","o":[{"b":1,"a":2}]}"#,
            r#"{"_id":"a","a":1,"a":2}"#,
            r#"{"_id":"a","a\"":1,"a#":2}"#,
            r#"{"_id":"a","a#":1,"a\"":2}"#,
            r#"{"_id":"a","a":1,"a\u0000":2}"#,
            r#"{"_id":"a","b":1,"a":2}"#,
            r#"{"_id":"a","x":true,"y":false,"z":null}"#,
            r#"{"_id":"a","x":tru}"#,
            r#"{"_id":"a"} "#,
            r#"{ "_id":"a"}"#,
            r#"{"_id":"a"}{"#,
        ];
        for text in cases {
            assert_eq!(is_canonical(text), slow(text), "{text}");
        }
        // Keys sort by bytes: "A" < "_id" < "a".
        assert!(is_canonical(r#"{"A":1,"_id":"a","a":2}"#));
    }

    #[test]
    fn depth_and_size_limits_agree() {
        for levels in 60..70 {
            let nested = |inner: &str| "[".repeat(levels) + inner + &"]".repeat(levels);
            for inner in ["", "1", "{}"] {
                let text = format!(r#"{{"_id":"a","x":{}}}"#, nested(inner));
                assert_eq!(is_canonical(&text), slow(&text), "{levels} {inner:?}");
            }
        }
        let fill = |n: usize| format!(r#"{{"_id":"a","s":"{}"}}"#, "x".repeat(n));
        let overhead = fill(0).len();
        for text in [
            fill(DOC_BYTES_MAX - overhead),
            fill(DOC_BYTES_MAX - overhead + 1),
        ] {
            assert_eq!(is_canonical(&text), slow(&text), "{} bytes", text.len());
        }
        assert!(is_canonical(&fill(DOC_BYTES_MAX - overhead)));
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-c\"\\\\/$\u{0}-\u{1f}\u{7f}\u{85}é€😀 ]{0,6}|[a-z\"\\\\\u{1}\u{1f} ]{6,30}"
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            prop_oneof![
                Just(i64::MIN),
                Just(i64::MIN + 1),
                Just(i64::MAX),
                Just(-1),
                Just(0)
            ]
            .prop_map(|i| json!(i)),
            prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 53)].prop_map(|u| json!(u)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            prop_oneof![
                Just(-0.0),
                Just(0.1),
                Just(1e16),
                Just(1e15),
                Just(1.5e-7),
                Just(f64::MAX),
                Just(f64::MIN_POSITIVE),
                Just(5e-324)
            ]
            .prop_map(|f: f64| json!(f)),
            text().prop_map(Value::String),
        ]
    }

    fn nested() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn document() -> impl Strategy<Value = String> {
        (
            prop_oneof![text().prop_map(Value::String), leaf()],
            prop::collection::btree_map(text(), nested(), 0..5),
        )
            .prop_map(|(id, fields)| {
                let mut value = Value::Object(fields.into_iter().collect());
                value["_id"] = id;
                serde_json::to_string(&value).unwrap()
            })
    }

    /// One edit of a text, by characters so the result stays a `str`.
    #[derive(Debug, Clone)]
    enum Edit {
        Delete(usize, usize),
        Insert(usize, char),
        Replace(usize, char),
        Swap(usize),
        Duplicate(usize, usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let interesting = prop::sample::select(vec![
            ' ', '"', '\\', ',', ':', '{', '}', '[', ']', '0', '1', '9', '-', '+', '.', 'e', 'E',
            'u', 'a', 'A', '$', '_', 'n', 't', '\n', '\u{1}', 'é', '/',
        ]);
        prop_oneof![
            (any::<usize>(), 1..4usize).prop_map(|(at, n)| Edit::Delete(at, n)),
            (any::<usize>(), interesting.clone()).prop_map(|(at, c)| Edit::Insert(at, c)),
            (any::<usize>(), interesting).prop_map(|(at, c)| Edit::Replace(at, c)),
            any::<usize>().prop_map(Edit::Swap),
            (any::<usize>(), 1..8usize).prop_map(|(at, n)| Edit::Duplicate(at, n)),
        ]
    }

    fn apply(text: &str, edit: &Edit) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        if chars.is_empty() {
            return String::new();
        }
        let len = chars.len();
        match *edit {
            Edit::Delete(at, n) => {
                let at = at % len;
                chars.drain(at..(at + n).min(len));
            }
            Edit::Insert(at, c) => chars.insert(at % (len + 1), c),
            Edit::Replace(at, c) => chars[at % len] = c,
            Edit::Swap(at) => chars.swap(at % len, (at + 1) % len),
            Edit::Duplicate(at, n) => {
                let at = at % len;
                let span: Vec<char> = chars[at..(at + n).min(len)].to_vec();
                chars.splice(at..at, span);
            }
        }
        chars.into_iter().collect()
    }

    /// The general path for an insert: parse, give it `id` when it has none, canonicalize.
    fn slow_insert(text: &str, id: &str) -> Option<String> {
        let mut value: Value = serde_json::from_str(text).ok()?;
        crate::doc::ensure_id(&mut value, || id.to_string());
        RawDoc::from_value(&value)
            .ok()
            .map(|doc| doc.as_str().to_string())
    }

    /// Whatever `RawDoc::from_canonical` takes, the general path gives the same document.
    fn insert_agrees(text: &str) -> Result<(), TestCaseError> {
        let fast = RawDoc::from_canonical(text, || Some("gen\"1".into()));
        if let Some(fast) = &fast {
            prop_assert_eq!(
                Some(fast.as_str().to_string()),
                slow_insert(text, "gen\"1"),
                "on {:?}",
                text
            );
        }
        // Where an id is required, text without one is left to the general path.
        let required = RawDoc::from_canonical(text, || None);
        prop_assert_eq!(required.is_some(), is_canonical(text), "on {:?}", text);
        Ok(())
    }

    #[test]
    fn a_missing_id_goes_in_key_order() {
        let id = || Some("x".to_string());
        let cases = [
            ("{}", r#"{"_id":"x"}"#),
            (r#"{"A":1}"#, r#"{"A":1,"_id":"x"}"#),
            (r#"{"a":1}"#, r#"{"_id":"x","a":1}"#),
            (r#"{"A":1,"b":{"c":2}}"#, r#"{"A":1,"_id":"x","b":{"c":2}}"#),
            (r#"{"A":1,"Z":2}"#, r#"{"A":1,"Z":2,"_id":"x"}"#),
            (
                r#"{"_":1,"_i":2,"_ie":3}"#,
                r#"{"_":1,"_i":2,"_id":"x","_ie":3}"#,
            ),
            (r#"{"_id":"own","a":1}"#, r#"{"_id":"own","a":1}"#),
        ];
        for (text, expected) in cases {
            let doc = RawDoc::from_canonical(text, id).expect(text);
            assert_eq!(doc.as_str(), expected);
            assert_eq!(Some(expected.to_string()), slow_insert(text, "x"));
        }
        let quoted = RawDoc::from_canonical(r#"{"a":1}"#, || Some("q\"\\".into())).unwrap();
        assert_eq!(quoted.as_str(), r#"{"_id":"q\"\\","a":1}"#);
        assert_eq!(quoted.id(), "q\"\\");
        // What the general path refuses or must say something about: left to it.
        for (text, new_id) in [
            (r#"{"a":1}"#, None),
            (r#"{"a":1}"#, Some(String::new())),
            (r#"{"a":1}"#, Some("a\u{1}".to_string())),
            (r#"{"b":1,"a":2}"#, Some("x".to_string())),
            (r#"{ "a":1}"#, Some("x".to_string())),
            (r#"{"_id":1}"#, Some("x".to_string())),
            (r#"{"_id":"","a":1}"#, Some("x".to_string())),
            (r#"{"$a":1}"#, Some("x".to_string())),
            ("[]", Some("x".to_string())),
        ] {
            assert_eq!(
                RawDoc::from_canonical(text, || new_id.clone()),
                None,
                "{text}"
            );
        }
        let fill = |n: usize| format!(r#"{{"s":"{}"}}"#, "x".repeat(n));
        let room = DOC_BYTES_MAX - r#"{"_id":"x","s":""}"#.len();
        assert!(RawDoc::from_canonical(&fill(room), id).is_some());
        assert_eq!(RawDoc::from_canonical(&fill(room + 1), id), None);
        assert_eq!(slow_insert(&fill(room + 1), "x"), None);
    }

    fn document_without_id() -> impl Strategy<Value = String> {
        prop::collection::btree_map(text(), nested(), 0..5).prop_map(|fields| {
            serde_json::to_string(&Value::Object(fields.into_iter().collect())).unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Canonical documents without an `_id` (as serde_json writes them) take one by the fast
        /// path exactly when the general path takes them, and as it does; with their own `_id`,
        /// they are taken as they are.
        #[test]
        fn inserts_agree_on_random_documents(
            without in document_without_id(),
            with in document(),
        ) {
            insert_agrees(&without)?;
            insert_agrees(&with)?;
            let fast = RawDoc::from_canonical(&without, || Some("gen\"1".into()));
            prop_assert_eq!(fast.is_some(), slow_insert(&without, "gen\"1").is_some());
        }

        /// Edited documents, with and without an `_id`: whatever the fast path takes, the
        /// general path gives the same.
        #[test]
        fn inserts_agree_on_mutated_documents(
            text in prop_oneof![document(), document_without_id()],
            edits in prop::collection::vec(edit(), 1..4),
        ) {
            let mut mutated = text;
            for edit in &edits {
                mutated = apply(&mutated, edit);
                insert_agrees(&mutated)?;
            }
        }

        /// Random documents (escapes, unicode, controls, `$` keys, floats, integers at their
        /// bounds, nesting) as serde_json writes them: both checks agree, and whatever the slow
        /// path canonicalizes, the fast one accepts.
        #[test]
        fn agrees_on_random_documents(text in document()) {
            agree(&text)?;
            if let Ok(doc) = RawDoc::parse(&text) {
                prop_assert!(is_canonical(doc.as_str()), "{}", doc.as_str());
            }
        }

        /// Edited documents, mostly not canonical: both checks agree on every one.
        #[test]
        fn agrees_on_mutated_documents(
            text in document(),
            edits in prop::collection::vec(edit(), 1..4),
        ) {
            let mut mutated = text;
            for edit in &edits {
                mutated = apply(&mutated, edit);
                agree(&mutated)?;
            }
        }

        /// Number tokens of every shape, alone in a field.
        #[test]
        fn agrees_on_number_tokens(token in "-?(0|[1-9][0-9]{0,21})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?") {
            agree(&format!(r#"{{"_id":"a","n":{token}}}"#))?;
        }

        /// The browser module reads float tokens with serde_json (`parse_float`), native builds
        /// with `str::parse`: the same finite values, and neither reads a value too large.
        #[test]
        fn both_float_readers_agree(token in "-?(0|[1-9][0-9]{0,21})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?") {
            let native = token.parse::<f64>().ok().filter(|v| v.is_finite());
            let browser = serde_json::from_str::<f64>(&token).ok().filter(|v| v.is_finite());
            prop_assert_eq!(native.map(f64::to_bits), browser.map(f64::to_bits));
        }
    }
}
