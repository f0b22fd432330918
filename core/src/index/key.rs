//! Order-preserving byte encoding of JSON values, for index keys and sort keys.
//!
//! Comparing two encodings byte by byte gives the same answer as comparing the values, so
//! index ranges are plain `BTreeMap` ranges and sorting is a byte sort. Every encoding is
//! self-delimiting (no value's encoding is a proper prefix of another's), which makes a
//! compound key the plain concatenation of its components.
//!
//! Values of different types order by type first, as in MongoDB:
//!
//! ```text
//! null (and missing) < numbers < strings < objects < arrays < booleans
//!   0x01               0x02      0x03      0x04      0x05     0x06
//! ```
//!
//! - numbers: 8 bytes, the IEEE-754 bits of the f64 made order-preserving (flip the sign bit of
//!   positives, invert negatives); `-0.0` is encoded as `0.0`. Integers beyond 2^53 lose
//!   precision, as they do in JavaScript.
//! - strings: UTF-8 bytes with `0x00` escaped as `0x00 0xFF`, ended by `0x00`.
//! - objects: `0x01 key value` per field in key order, ended by `0x00`.
//! - arrays: each element's encoding (which never starts with `0x00`), ended by `0x00`.
//! - booleans: `0x00` for false, `0x01` for true.
//!
//! A descending component is the same bytes, each inverted.

use serde_json::Value;

/// Type tag of `null` and of a missing field.
pub const TAG_NULL: u8 = 0x01;
/// Type tag of numbers.
pub const TAG_NUMBER: u8 = 0x02;
/// Type tag of strings.
pub const TAG_STRING: u8 = 0x03;
/// Type tag of objects.
pub const TAG_OBJECT: u8 = 0x04;
/// Type tag of arrays.
pub const TAG_ARRAY: u8 = 0x05;
/// Type tag of booleans.
pub const TAG_BOOL: u8 = 0x06;

/// The type tag a value's encoding starts with (ascending).
pub fn type_tag(value: &Value) -> u8 {
    match value {
        Value::Null => TAG_NULL,
        Value::Number(_) => TAG_NUMBER,
        Value::String(_) => TAG_STRING,
        Value::Object(_) => TAG_OBJECT,
        Value::Array(_) => TAG_ARRAY,
        Value::Bool(_) => TAG_BOOL,
    }
}

/// Appends the encoding of `value` (or of a missing field, for `None`) to `out`; inverted when
/// `desc`.
pub fn encode_component(value: Option<&Value>, desc: bool, out: &mut Vec<u8>) {
    let start = out.len();
    match value {
        None => out.push(TAG_NULL),
        Some(v) => encode_value(v, out),
    }
    if desc {
        for byte in &mut out[start..] {
            *byte = !*byte;
        }
    }
}

/// Appends the ascending encoding of `value` to `out`.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(b) => {
            out.push(TAG_BOOL);
            out.push(u8::from(*b));
        }
        Value::Number(n) => {
            out.push(TAG_NUMBER);
            out.extend_from_slice(&encode_f64(n.as_f64().unwrap_or(0.0)));
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            encode_str(s, out);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                encode_value(item, out);
            }
            out.push(0x00);
        }
        Value::Object(map) => {
            out.push(TAG_OBJECT);
            for (key, item) in map {
                out.push(0x01);
                encode_str(key, out);
                encode_value(item, out);
            }
            out.push(0x00);
        }
    }
}

/// Appends an escaped, terminated string (no type tag).
pub fn encode_str(s: &str, out: &mut Vec<u8>) {
    for &byte in s.as_bytes() {
        out.push(byte);
        if byte == 0x00 {
            out.push(0xFF);
        }
    }
    out.push(0x00);
}

/// The order-preserving 8 bytes of a float.
pub fn encode_f64(x: f64) -> [u8; 8] {
    let x = if x == 0.0 { 0.0 } else { x }; // -0.0 == 0.0
    let bits = x.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ordered.to_be_bytes()
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// when there is none (the prefix is all `0xFF`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Compares two values in index order.
pub fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    let (mut ka, mut kb) = (Vec::new(), Vec::new());
    encode_value(a, &mut ka);
    encode_value(b, &mut kb);
    ka.cmp(&kb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::cmp::Ordering;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(v, &mut out);
        out
    }

    #[test]
    fn type_order() {
        let ordered = [
            json!(null),
            json!(-1e300),
            json!(-1),
            json!(0),
            json!(0.5),
            json!(7),
            json!(1e300),
            json!(""),
            json!("a"),
            json!("a\u{0}"),
            json!("ab"),
            json!("b"),
            json!({}),
            json!({"a": 1}),
            json!({"a": 1, "b": 0}),
            json!({"b": 0}),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            json!(false),
            json!(true),
        ];
        for pair in ordered.windows(2) {
            assert!(enc(&pair[0]) < enc(&pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(enc(&json!(-0.0)), enc(&json!(0)));
    }

    #[test]
    fn descending_inverts_order() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_component(Some(&json!("a")), true, &mut a);
        encode_component(Some(&json!("ab")), true, &mut b);
        assert!(a > b);
    }

    #[test]
    fn prefix_end_works() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|i| json!(i)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-c\u{0}]{0,4}".prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The reference order, written directly over values.
    fn reference_cmp(a: &Value, b: &Value) -> Ordering {
        let rank = |v: &Value| type_tag(v);
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x
                .as_f64()
                .unwrap()
                .partial_cmp(&y.as_f64().unwrap())
                .unwrap(),
            (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            (Value::Array(x), Value::Array(y)) => {
                for (i, j) in x.iter().zip(y) {
                    let o = reference_cmp(i, j);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
            (Value::Object(x), Value::Object(y)) => {
                for ((ki, vi), (kj, vj)) in x.iter().zip(y) {
                    let o = ki
                        .as_bytes()
                        .cmp(kj.as_bytes())
                        .then_with(|| reference_cmp(vi, vj));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
            _ => rank(a).cmp(&rank(b)),
        }
    }

    proptest! {
        #[test]
        fn encoding_preserves_order(a in value(), b in value()) {
            prop_assert_eq!(enc(&a).cmp(&enc(&b)), reference_cmp(&a, &b), "{} vs {}", a, b);
        }

        #[test]
        fn encoding_is_self_delimiting(a in value(), b in value(), tail in any::<u8>()) {
            // Appending anything to a's encoding never makes it equal b's, unless a == b.
            let mut ea = enc(&a);
            let eb = enc(&b);
            if a != b {
                prop_assert!(!eb.starts_with(&ea));
            }
            ea.push(tail);
            prop_assert_ne!(ea, eb);
        }
    }
}
