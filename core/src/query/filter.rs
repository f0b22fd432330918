//! The typed filter tree and what it means for one document.
//!
//! A filter is parsed once (see `parse.rs`) into this tree, with every literal already encoded
//! in the index key order of `index/key.rs`. Matching then compares byte strings, so a filter
//! and an index can never disagree about what "greater" or "equal" means: the planner may use
//! an index range only because `$gt 5` here is exactly "the encoding is above `enc(5)` and has
//! the number type tag", which is also what the range covers.
//!
//! Semantics, in one place:
//!
//! - A field is looked up by its dotted path with [`lookup_path`] (a numeric step indexes into
//!   an array). A missing field compares as `null`.
//! - Equality is whole-value equality of encodings: `{"tags": "a"}` does **not** match
//!   `{"tags": ["a", "b"]}` (no implicit array-element matching, unlike MongoDB), and `1` equals
//!   `1.0`. `$eq null` matches `null` and missing.
//! - Comparisons use type bracketing: `$gt 5` matches only numbers above 5, `$lt "m"` only
//!   strings below `"m"`; within a type the order is the index order. `$gte null` and
//!   `$lte null` match `null` and missing; `$gt null` and `$lt null` match nothing.
//! - `$ne x` is `not $eq x` and `$nin` is `not $in`, so both match documents missing the field.
//! - `$exists: true` means the path resolves to a value (`null` counts), `false` that it does
//!   not.
//! - `$not` negates an object of operators (all of which must hold for it to be false).

use serde_json::Value;

use crate::doc::FieldSource;
use crate::index::key::encode_component;

/// A literal from a filter together with its ascending index-key encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct Operand {
    value: Value,
    key: Vec<u8>,
}

impl Operand {
    /// Encodes `value` once, for every comparison that follows.
    pub fn new(value: Value) -> Operand {
        let mut key = Vec::new();
        encode_component(Some(&value), false, &mut key);
        Operand { value, key }
    }

    /// The literal as given.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The ascending encoding of the literal (as in `index/key.rs`).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The type tag of the literal (its encoding's first byte).
    pub fn type_tag(&self) -> u8 {
        self.key[0]
    }
}

/// One condition on the value at a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// `$eq` (and implicit equality): same encoding; `null` also matches missing.
    Eq(Operand),
    /// `$ne`: not `$eq`.
    Ne(Operand),
    /// `$gt`: same type, greater.
    Gt(Operand),
    /// `$gte`: same type, greater or equal.
    Gte(Operand),
    /// `$lt`: same type, less.
    Lt(Operand),
    /// `$lte`: same type, less or equal.
    Lte(Operand),
    /// `$in`: equal to one of the values, kept sorted by encoding without duplicates.
    In(Vec<Operand>),
    /// `$nin`: not `$in`; values sorted by encoding without duplicates.
    Nin(Vec<Operand>),
    /// `$exists`: the path resolves (true) or does not (false).
    Exists(bool),
    /// `$not`: false exactly when all the inner conditions hold.
    Not(Vec<Cond>),
}

/// Conditions on one dotted path; all must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldFilter {
    /// Dotted path into the document, e.g. `"address.city"` or `"_id"`.
    pub path: String,
    /// The conditions, all of which must hold. Never empty.
    pub conds: Vec<Cond>,
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// All parts hold. `And(vec![])` matches every document.
    And(Vec<Filter>),
    /// At least one part holds. Never empty.
    Or(Vec<Filter>),
    /// Conditions on one field.
    Field(FieldFilter),
}

/// The value at a path, with its encoding computed at most once however many conditions
/// look at it.
struct Probe<'v> {
    value: Option<&'v Value>,
    key: Option<Vec<u8>>,
}

impl Probe<'_> {
    fn key(&mut self) -> &[u8] {
        let value = self.value;
        self.key.get_or_insert_with(|| {
            let mut key = Vec::new();
            encode_component(value, false, &mut key);
            key
        })
    }
}

impl Cond {
    fn holds(&self, probe: &mut Probe<'_>) -> bool {
        match self {
            Cond::Eq(op) => probe.key() == op.key(),
            Cond::Ne(op) => probe.key() != op.key(),
            Cond::Gt(op) => same_type_and(probe.key(), op, |k, o| k > o),
            Cond::Gte(op) => same_type_and(probe.key(), op, |k, o| k >= o),
            Cond::Lt(op) => same_type_and(probe.key(), op, |k, o| k < o),
            Cond::Lte(op) => same_type_and(probe.key(), op, |k, o| k <= o),
            Cond::In(ops) => contains(ops, probe.key()),
            Cond::Nin(ops) => !contains(ops, probe.key()),
            Cond::Exists(wanted) => probe.value.is_some() == *wanted,
            Cond::Not(conds) => !conds.iter().all(|c| c.holds(probe)),
        }
    }
}

fn same_type_and(key: &[u8], op: &Operand, cmp: impl Fn(&[u8], &[u8]) -> bool) -> bool {
    key[0] == op.type_tag() && cmp(key, op.key())
}

fn contains(sorted: &[Operand], key: &[u8]) -> bool {
    sorted.binary_search_by(|op| op.key().cmp(key)).is_ok()
}

impl FieldFilter {
    /// True when every condition holds for the value at `path` in `doc`.
    pub fn matches<D: FieldSource + ?Sized>(&self, doc: &D) -> bool {
        let value = doc.field(&self.path);
        let mut probe = Probe {
            value: value.as_deref(),
            key: None,
        };
        self.conds.iter().all(|c| c.holds(&mut probe))
    }
}

impl Filter {
    /// The filter that matches every document (`{}`).
    pub fn all() -> Filter {
        Filter::And(Vec::new())
    }

    /// True for the filter that matches every document without looking at it.
    pub fn is_all(&self) -> bool {
        matches!(self, Filter::And(parts) if parts.is_empty())
    }

    /// True when `doc` (a whole document: a parsed value or a lazy [`crate::doc::DocView`])
    /// passes this filter.
    pub fn matches<D: FieldSource + ?Sized>(&self, doc: &D) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(|p| p.matches(doc)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(doc)),
            Filter::Field(field) => field.matches(doc),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hits(filter: Value, doc: Value) -> bool {
        Filter::parse(&filter).unwrap().matches(&doc)
    }

    #[test]
    fn eq_is_whole_value_and_null_matches_missing() {
        assert!(hits(json!({"a": 3}), json!({"a": 3})));
        assert!(hits(json!({"a": 3}), json!({"a": 3.0})));
        assert!(!hits(json!({"a": 3}), json!({"a": "3"})));
        assert!(!hits(json!({"a": "x"}), json!({"a": ["x", "y"]})));
        assert!(hits(json!({"a": ["x", "y"]}), json!({"a": ["x", "y"]})));
        assert!(!hits(json!({"a": ["x", "y"]}), json!({"a": ["y", "x"]})));
        assert!(hits(json!({"a": {"b": 1}}), json!({"a": {"b": 1}})));
        assert!(!hits(
            json!({"a": {"b": 1}}),
            json!({"a": {"b": 1, "c": 2}})
        ));
        assert!(hits(json!({"a": {"$eq": null}}), json!({"a": null})));
        assert!(hits(json!({"a": null}), json!({"b": 1})));
        assert!(!hits(json!({"a": null}), json!({"a": 0})));
    }

    #[test]
    fn ne_matches_missing_and_other_types() {
        assert!(hits(json!({"a": {"$ne": 3}}), json!({})));
        assert!(hits(json!({"a": {"$ne": 3}}), json!({"a": "3"})));
        assert!(!hits(json!({"a": {"$ne": 3}}), json!({"a": 3})));
        assert!(!hits(json!({"a": {"$ne": null}}), json!({})));
        assert!(hits(json!({"a": {"$ne": null}}), json!({"a": false})));
    }

    #[test]
    fn comparisons_use_type_bracketing() {
        let gt5 = json!({"a": {"$gt": 5}});
        assert!(hits(gt5.clone(), json!({"a": 6})));
        assert!(hits(gt5.clone(), json!({"a": 5.5})));
        assert!(!hits(gt5.clone(), json!({"a": 5})));
        assert!(
            !hits(gt5.clone(), json!({"a": "z"})),
            "strings are not numbers"
        );
        assert!(!hits(gt5.clone(), json!({"a": true})));
        assert!(!hits(gt5, json!({})));
        assert!(hits(json!({"a": {"$gte": 5}}), json!({"a": 5})));
        assert!(hits(json!({"a": {"$lt": 5}}), json!({"a": -1e9})));
        assert!(!hits(json!({"a": {"$lt": 5}}), json!({"a": null})));
        assert!(hits(json!({"a": {"$lte": 5}}), json!({"a": 5})));
        assert!(!hits(json!({"a": {"$lte": 5}}), json!({"a": 5.01})));
        assert!(hits(json!({"s": {"$lt": "b"}}), json!({"s": "abc"})));
        assert!(!hits(json!({"s": {"$lt": "b"}}), json!({"s": 1})));
        assert!(hits(json!({"s": {"$gt": "b"}}), json!({"s": "b\u{0}"})));
        assert!(hits(json!({"b": {"$gt": false}}), json!({"b": true})));
        assert!(hits(json!({"o": {"$gt": {}}}), json!({"o": {"a": 1}})));
        assert!(!hits(json!({"o": {"$gt": {}}}), json!({"o": [1]})));
        assert!(hits(json!({"r": {"$lt": [2]}}), json!({"r": [1, 9]})));
    }

    #[test]
    fn null_comparisons() {
        assert!(hits(json!({"a": {"$gte": null}}), json!({})));
        assert!(hits(json!({"a": {"$lte": null}}), json!({"a": null})));
        assert!(!hits(json!({"a": {"$gte": null}}), json!({"a": 0})));
        assert!(!hits(json!({"a": {"$gt": null}}), json!({"a": null})));
        assert!(!hits(json!({"a": {"$lt": null}}), json!({})));
    }

    #[test]
    fn several_operators_on_one_field() {
        let f = json!({"a": {"$gt": 1, "$lt": 5}});
        assert!(hits(f.clone(), json!({"a": 3})));
        assert!(!hits(f.clone(), json!({"a": 5})));
        assert!(!hits(f, json!({"a": 1})));
    }

    #[test]
    fn in_and_nin() {
        let f = json!({"a": {"$in": [1, "x", null]}});
        assert!(hits(f.clone(), json!({"a": 1.0})));
        assert!(hits(f.clone(), json!({"a": "x"})));
        assert!(hits(f.clone(), json!({})));
        assert!(!hits(f, json!({"a": 2})));
        assert!(!hits(json!({"a": {"$in": []}}), json!({"a": 1})));
        let n = json!({"a": {"$nin": [1, 2]}});
        assert!(hits(n.clone(), json!({})));
        assert!(hits(n.clone(), json!({"a": 3})));
        assert!(!hits(n, json!({"a": 2})));
        assert!(hits(json!({"a": {"$nin": []}}), json!({"a": 1})));
    }

    #[test]
    fn exists() {
        assert!(hits(json!({"a": {"$exists": true}}), json!({"a": null})));
        assert!(!hits(json!({"a": {"$exists": true}}), json!({})));
        assert!(hits(json!({"a.b": {"$exists": false}}), json!({"a": 1})));
        assert!(!hits(
            json!({"a.b": {"$exists": false}}),
            json!({"a": {"b": 0}})
        ));
    }

    #[test]
    fn not_negates_an_operator_object() {
        let f = json!({"a": {"$not": {"$gt": 1, "$lt": 5}}});
        assert!(!hits(f.clone(), json!({"a": 3})));
        assert!(hits(f.clone(), json!({"a": 7})));
        assert!(hits(f.clone(), json!({"a": "3"})));
        assert!(hits(f, json!({})));
    }

    #[test]
    fn and_or_and_implicit_and() {
        let doc = json!({"a": 1, "b": "x"});
        assert!(hits(json!({"a": 1, "b": "x"}), doc.clone()));
        assert!(!hits(json!({"a": 1, "b": "y"}), doc.clone()));
        assert!(hits(json!({"$and": [{"a": 1}, {"b": "x"}]}), doc.clone()));
        assert!(hits(json!({"$or": [{"a": 2}, {"b": "x"}]}), doc.clone()));
        assert!(!hits(json!({"$or": [{"a": 2}, {"b": "y"}]}), doc.clone()));
        assert!(hits(
            json!({"$or": [{"a": 2}, {"$and": [{"a": 1}, {"b": {"$exists": true}}]}], "b": "x"}),
            doc.clone()
        ));
        assert!(hits(json!({}), doc));
    }

    #[test]
    fn dotted_paths_and_id() {
        let doc = json!({"_id": "k1", "address": {"city": "Oslo"}, "tags": ["a", "b"]});
        assert!(hits(json!({"address.city": "Oslo"}), doc.clone()));
        assert!(hits(json!({"tags.1": "b"}), doc.clone()));
        assert!(!hits(json!({"address.city.x": "Oslo"}), doc.clone()));
        assert!(hits(json!({"_id": {"$in": ["k0", "k1"]}}), doc.clone()));
        assert!(hits(json!({"_id": {"$gt": "k"}}), doc));
    }
}
