//! Value intervals and how they become byte ranges of an index component.
//!
//! A range predicate such as `$gt 5` selects an interval of the value order: above 5 and below
//! the first non-number. The planner intersects such intervals per field and then has to turn
//! them into bounds on index entries, for ascending and for descending components.
//!
//! The interval's ends are [`Cut`]s: points *between* values. Each cut maps to one byte string
//! that splits an index component the same way, whichever role (lower or upper end) it plays:
//!
//! ```text
//! cut                 ascending component      descending component (bytes inverted)
//! TypeStart(t)        [t]                      [!t + 1]
//! Before(v)           enc(v)                   prefix_end(!enc(v))
//! After(v)            enc(v) ++ [0xFF]         !enc(v) ++ [0x01]
//!
//! ascending:  values in [lo, hi)  <=>  component bytes in [asc(lo),  asc(hi))
//! descending: values in [lo, hi)  <=>  component bytes in [desc(hi), desc(lo))
//! ```
//!
//! `After(v)` is not `prefix_end(enc(v))` because string encodings are not prefix-free:
//! `enc("a") = 03 61 00` is a prefix of `enc("a\0") = 03 61 00 FF 00`, and `"a\0" > "a"`. What
//! makes entries decodable (and these cuts exact) is the byte that follows a component inside
//! an entry: the next component's type tag (`01..=06`, inverted `F9..=FE`) or the first byte
//! of the id (UTF-8, so never `FF`; and never `00`, as `validate_id` refuses empty ids and
//! control characters). So after an ascending component there is never `FF`, and after a
//! descending one never `00`:
//!
//! ```text
//! ascending, v = "a":   03 61 00 <rest ≠ FF>   <   03 61 00 FF   <=   03 61 00 FF 00 .. ("a\0"..)
//! descending, v = "a":  FC 9E FF 00 .. ("a\0"..)   <   FC 9E FF 01   <=   FC 9E FF <rest ≥ 01>
//! ```

use std::cmp::Ordering;

use super::filter::{Cond, Operand};
use crate::index::key::prefix_end;

/// A point between values in the index order. Cuts borrow the encodings of the filter's
/// literals, so planning a range allocates only the final byte bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut<'f> {
    /// Below every value with type tag `t` and above every value with a smaller tag.
    TypeStart(u8),
    /// Just below the value with this ascending encoding.
    Before(&'f [u8]),
    /// Just above the value with this ascending encoding.
    After(&'f [u8]),
}

impl Cut<'_> {
    /// The byte string that splits an ascending component at this cut, as a head and a tail
    /// to concatenate (so comparing cuts allocates nothing).
    fn asc_parts(&self) -> (&[u8], &'static [u8]) {
        match self {
            Cut::TypeStart(tag) => (std::slice::from_ref(tag), &[]),
            Cut::Before(enc) => (enc, &[]),
            Cut::After(enc) => (enc, &[0xFF]),
        }
    }

    /// The bytes of [`Self::asc_parts`], in order.
    fn asc_iter(&self) -> impl Iterator<Item = u8> + '_ {
        let (head, tail) = self.asc_parts();
        head.iter().chain(tail).copied()
    }

    /// The byte string that splits a component at this cut, in the component's direction.
    pub fn bytes(&self, desc: bool) -> Vec<u8> {
        if !desc {
            let (head, tail) = self.asc_parts();
            return [head, tail].concat();
        }
        match self {
            Cut::TypeStart(tag) => vec![!*tag + 1],
            Cut::Before(enc) => end_of(&invert(enc)),
            Cut::After(enc) => {
                let mut bytes = invert(enc);
                bytes.push(0x01);
                bytes
            }
        }
    }

    fn cmp(&self, other: &Cut<'_>) -> Ordering {
        self.asc_iter().cmp(other.asc_iter())
    }

    /// Compares an ascending value encoding with this cut's ascending bytes.
    fn cmp_key(&self, key: &[u8]) -> Ordering {
        key.iter().copied().cmp(self.asc_iter())
    }
}

/// `prefix_end` of an inverted encoding. Encodings start with a type tag in 1..=6 (inverted:
/// 0xF9..=0xFE), so there is always a byte to increment.
fn end_of(enc: &[u8]) -> Vec<u8> {
    prefix_end(enc).expect("an encoding starts with a byte below 0xFF")
}

fn invert(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| !b).collect()
}

/// The values between two cuts: above `lo` and below `hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval<'f> {
    /// Lower end.
    pub lo: Cut<'f>,
    /// Upper end.
    pub hi: Cut<'f>,
}

impl<'f> Interval<'f> {
    /// The interval a comparison condition selects, with type bracketing; `None` for any
    /// other condition.
    pub fn of_cond(cond: &'f Cond) -> Option<Interval<'f>> {
        let type_start = |op: &Operand| Cut::TypeStart(op.type_tag());
        let type_end = |op: &Operand| Cut::TypeStart(op.type_tag() + 1);
        let (lo, hi) = match cond {
            Cond::Gt(op) => (Cut::After(op.key()), type_end(op)),
            Cond::Gte(op) => (Cut::Before(op.key()), type_end(op)),
            Cond::Lt(op) => (type_start(op), Cut::Before(op.key())),
            Cond::Lte(op) => (type_start(op), Cut::After(op.key())),
            _ => return None,
        };
        Some(Interval { lo, hi })
    }

    /// The values in both intervals.
    #[must_use]
    pub fn intersect(self, other: Interval<'f>) -> Interval<'f> {
        let lo = if self.lo.cmp(&other.lo) == Ordering::Less {
            other.lo
        } else {
            self.lo
        };
        let hi = if self.hi.cmp(&other.hi) == Ordering::Greater {
            other.hi
        } else {
            self.hi
        };
        Interval { lo, hi }
    }

    /// True when no value lies between the cuts.
    pub fn is_empty(&self) -> bool {
        self.lo.cmp(&self.hi) != Ordering::Less
    }

    /// True when the value with this ascending encoding lies in the interval.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.lo.cmp_key(key) != Ordering::Less && self.hi.cmp_key(key) == Ordering::Less
    }

    /// The component bytes `[lower, upper)` of this interval in an index component of the given
    /// direction.
    pub fn component_bounds(&self, desc: bool) -> (Vec<u8>, Vec<u8>) {
        if desc {
            (self.hi.bytes(true), self.lo.bytes(true))
        } else {
            (self.lo.bytes(false), self.hi.bytes(false))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::index::key::encode_component;

    fn enc(v: &Value, desc: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode_component(Some(v), desc, &mut out);
        out
    }

    fn values() -> Vec<Value> {
        vec![
            json!(null),
            json!(-3),
            json!(0),
            json!(2.5),
            json!(5),
            json!(9),
            json!(""),
            json!("a"),
            json!("a\u{0}"),
            json!("a\u{0}\u{0}"),
            json!("a\u{0}b"),
            json!("ab"),
            json!("b"),
            json!({}),
            json!({"a": 1}),
            json!([]),
            json!([1, 2]),
            json!(false),
            json!(true),
        ]
    }

    /// Every interval from a comparison selects exactly the values the condition matches, in
    /// both directions; the byte bounds followed by anything else still classify correctly.
    #[test]
    fn bounds_agree_with_conditions() {
        for operand in values() {
            for cond in [
                Cond::Gt(Operand::new(operand.clone())),
                Cond::Gte(Operand::new(operand.clone())),
                Cond::Lt(Operand::new(operand.clone())),
                Cond::Lte(Operand::new(operand.clone())),
            ] {
                let interval = Interval::of_cond(&cond).unwrap();
                let filter = crate::query::filter::FieldFilter {
                    path: "x".into(),
                    conds: vec![cond.clone()],
                };
                for desc in [false, true] {
                    let (lower, upper) = interval.component_bounds(desc);
                    for value in values() {
                        let wanted = filter.matches(&json!({ "x": value }));
                        // What can follow a component in an entry: an id, or another
                        // component (ascending or descending).
                        for tail in [
                            &b"id\x00"[..],
                            &[0x01],
                            &[0x03, 0x00],
                            &[0xFE],
                            &[0xF9, 0xFF],
                        ] {
                            let mut entry = enc(&value, desc);
                            entry.extend_from_slice(tail);
                            let inside = lower <= entry && entry < upper;
                            assert_eq!(
                                inside, wanted,
                                "{cond:?} desc={desc} value={value} tail={tail:?}"
                            );
                        }
                        assert_eq!(interval.contains(&enc(&value, false)), wanted);
                    }
                }
            }
        }
    }

    /// Comparing cuts without building their bytes agrees with comparing the bytes.
    #[test]
    fn cut_order_is_byte_order() {
        let keys: Vec<Vec<u8>> = values().iter().map(|v| enc(v, false)).collect();
        let mut cuts: Vec<Cut<'_>> = (1..=7).map(Cut::TypeStart).collect();
        for key in &keys {
            cuts.push(Cut::Before(key));
            cuts.push(Cut::After(key));
        }
        for a in &cuts {
            for b in &cuts {
                assert_eq!(a.cmp(b), a.bytes(false).cmp(&b.bytes(false)), "{a:?} {b:?}");
            }
            for key in &keys {
                assert_eq!(a.cmp_key(key), key.as_slice().cmp(&a.bytes(false)));
            }
        }
    }

    #[test]
    fn intersection() {
        let op = |v: Value| Operand::new(v);
        // Intervals borrow their conditions' encodings.
        let conds = [
            Cond::Gt(op(json!(1))),
            Cond::Lt(op(json!(5))),
            Cond::Lt(op(json!("m"))),
            Cond::Gte(op(json!(2))),
            Cond::Lte(op(json!(2))),
            Cond::Lt(op(json!(2))),
        ];
        let [gt, lt, strings, ge, le, lt2] =
            conds.each_ref().map(|c| Interval::of_cond(c).unwrap());
        let both = gt.intersect(lt);
        assert!(!both.is_empty());
        assert!(both.contains(&enc(&json!(3), false)));
        assert!(!both.contains(&enc(&json!(5), false)));
        assert!(
            gt.intersect(strings).is_empty(),
            "numbers and strings never overlap"
        );
        assert!(!ge.intersect(le).is_empty());
        assert!(ge.intersect(lt2).is_empty());
    }
}
