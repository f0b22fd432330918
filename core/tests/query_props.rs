//! Property: whatever indexes exist and whatever plan is chosen, `find` returns exactly what a
//! brute-force scan returns (filter every document, sort, skip, limit), ids compared in order.
//!
//! The reference here is written independently of the engine: it evaluates the generated
//! filter tree directly with `compare_values` and type tags, and sorts with a comparator over
//! values rather than encoded keys. Documents, indexes (single, compound, unique, sparse,
//! descending), filters, sorts, limits and skips are all random over small domains so that
//! collisions, nulls, missing fields, NUL-extended strings and type mixes are frequent.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use cstore_core::doc::{DocRef, RawDoc, StoredDoc};
use cstore_core::index::key::{compare_values, type_tag};
use cstore_core::index::{IndexField, IndexSpec, SecondaryIndex, lookup_path};
use cstore_core::query::{DocSource, Filter, FindQuery, count, find};
use cstore_core::types::Lsn;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const PATHS: [&str; 4] = ["a", "b", "n.x", "_id"];

/// Documents in a map; indexes kept in step by the test, refusing unique clashes.
struct Mem {
    docs: BTreeMap<String, StoredDoc>,
    values: BTreeMap<String, Value>,
    indexes: Vec<SecondaryIndex>,
}

impl Mem {
    fn new(specs: Vec<IndexSpec>) -> Mem {
        Mem {
            docs: BTreeMap::new(),
            values: BTreeMap::new(),
            indexes: specs.into_iter().map(SecondaryIndex::new).collect(),
        }
    }

    /// Inserts unless a unique index already holds the document's key.
    fn insert(&mut self, doc: Value) {
        let raw = RawDoc::from_value(&doc).unwrap();
        let id = raw.id();
        let keys: Vec<_> = self.indexes.iter().map(|i| i.key_for(&doc)).collect();
        let clash = self.indexes.iter().zip(&keys).any(|(index, key)| {
            key.as_ref()
                .is_some_and(|k| index.conflict(k, &id).is_some())
        });
        if clash {
            return;
        }
        for (index, key) in self.indexes.iter_mut().zip(&keys) {
            if let Some(key) = key {
                index.insert(key, &id);
            }
        }
        self.docs.insert(
            id.clone(),
            StoredDoc {
                version: Lsn(1),
                doc: raw,
            },
        );
        self.values.insert(id, doc);
    }
}

impl DocSource for Mem {
    fn get(&self, id: &str) -> Option<DocRef<'_>> {
        self.docs.get(id).map(StoredDoc::to_ref)
    }
    fn scan(&self) -> Box<dyn Iterator<Item = DocRef<'_>> + '_> {
        Box::new(self.docs.values().map(StoredDoc::to_ref))
    }
    fn indexes(&self) -> &[SecondaryIndex] {
        &self.indexes
    }
}

fn domain() -> Vec<Value> {
    vec![
        json!(null),
        json!(-1),
        json!(0),
        json!(1),
        json!(1.5),
        json!(2),
        json!(""),
        json!("a"),
        json!("a\u{0}"),
        json!("a\u{0}b"),
        json!("b"),
        json!({"x": 1}),
        json!([1]),
        json!([1, 2]),
        json!(false),
        json!(true),
        json!("d3"),
        json!("d7"),
    ]
}

/// Strings around the NUL escape: `enc("a")` is a prefix of `enc("a\0")`.
fn nul_domain() -> Vec<Value> {
    ["", "a", "a\u{0}", "a\u{0}\u{0}", "a\u{0}b", "ab", "b"]
        .iter()
        .map(|s| json!(s))
        .chain([json!(null), json!(1)])
        .collect()
}

fn value(dom: &[Value]) -> impl Strategy<Value = Value> + use<> {
    prop::sample::select(dom.to_vec())
}

fn maybe_value(dom: &[Value]) -> impl Strategy<Value = Option<Value>> + use<> {
    prop_oneof![1 => Just(None), 4 => value(dom).prop_map(Some)]
}

/// A document body without `_id`: fields a, b, and n (an object with x, or a scalar).
fn doc_body(dom: &[Value]) -> impl Strategy<Value = Value> + use<> {
    let n = prop_oneof![
        2 => Just(None),
        4 => maybe_value(dom).prop_map(|x| {
            let mut m = Map::new();
            if let Some(x) = x {
                m.insert("x".into(), x);
            }
            Some(Value::Object(m))
        }),
        1 => value(dom).prop_map(Some),
    ];
    (maybe_value(dom), maybe_value(dom), n).prop_map(|(a, b, n)| {
        let mut m = Map::new();
        for (key, v) in [("a", a), ("b", b), ("n", n)] {
            if let Some(v) = v {
                m.insert(key.to_string(), v);
            }
        }
        Value::Object(m)
    })
}

fn path() -> impl Strategy<Value = String> {
    prop::sample::select(PATHS.to_vec()).prop_map(str::to_string)
}

fn index_spec(n: usize) -> impl Strategy<Value = IndexSpec> {
    (
        prop::sample::subsequence(PATHS.to_vec(), 1..=2).prop_shuffle(),
        prop::collection::vec(any::<bool>(), 2),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.3),
    )
        .prop_map(move |(paths, desc, unique, sparse)| IndexSpec {
            name: format!("i{n}"),
            fields: paths
                .iter()
                .zip(desc)
                .map(|(p, d)| IndexField {
                    path: p.to_string(),
                    desc: d,
                })
                .collect(),
            unique,
            sparse,
        })
}

fn index_specs() -> impl Strategy<Value = Vec<IndexSpec>> {
    prop_oneof![1 => Just(0usize), 4 => 1usize..=4]
        .prop_flat_map(|n| (0..n).map(index_spec).collect::<Vec<_>>())
}

/// A filter, as the test understands it.
#[derive(Clone, Debug)]
enum F {
    /// `{path: {op: value}}`, or `{path: value}` for implicit equality.
    Cmp(String, &'static str, Value),
    /// Several operators on one path.
    Multi(String, Vec<(&'static str, Value)>),
    /// `$in` (false) or `$nin` (true).
    In(String, Vec<Value>, bool),
    Exists(String, bool),
    /// `{path: {"$not": {op: value}}}`.
    Not(String, &'static str, Value),
    And(Vec<F>),
    Or(Vec<F>),
}

const OPS: [&str; 7] = ["=", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte"];

fn leaf(dom: &[Value]) -> impl Strategy<Value = F> + use<> {
    let op = prop::sample::select(OPS.to_vec());
    let range_op = prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte", "$eq", "$ne"]);
    prop_oneof![
        4 => (path(), op.clone(), value(dom)).prop_map(|(p, o, v)| F::Cmp(p, o, v)),
        2 => (path(), prop::collection::btree_map(range_op.clone(), value(dom), 1..=3))
            .prop_map(|(p, ops)| F::Multi(p, ops.into_iter().collect())),
        2 => (path(), prop::collection::vec(value(dom), 0..4), any::<bool>())
            .prop_map(|(p, vs, neg)| F::In(p, vs, neg)),
        1 => (path(), any::<bool>()).prop_map(|(p, b)| F::Exists(p, b)),
        1 => (path(), range_op, value(dom)).prop_map(|(p, o, v)| F::Not(p, o, v)),
    ]
}

fn filter(dom: &[Value]) -> impl Strategy<Value = F> + use<> {
    leaf(dom).prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 0..=3).prop_map(F::And),
            1 => prop::collection::vec(inner, 1..=3).prop_map(F::Or),
        ]
    })
}

/// Mostly a top-level conjunction of simple conditions (what indexes can serve), sometimes any
/// tree.
fn top_filter(dom: &[Value]) -> impl Strategy<Value = F> + use<> {
    prop_oneof![
        2 => filter(dom),
        3 => prop::collection::vec(leaf(dom), 1..=3).prop_map(F::And),
    ]
}

fn render(f: &F) -> Value {
    match f {
        F::Cmp(p, "=", v) => json!({ p: v }),
        F::Cmp(p, op, v) => json!({ p: { *op: v } }),
        F::Multi(p, ops) => {
            let m: Map<String, Value> = ops
                .iter()
                .map(|(o, v)| (o.to_string(), v.clone()))
                .collect();
            json!({ p: m })
        }
        F::In(p, vs, neg) => json!({ p: { if *neg { "$nin" } else { "$in" }: vs } }),
        F::Exists(p, b) => json!({ p: { "$exists": b } }),
        F::Not(p, op, v) => json!({ p: { "$not": { *op: v } } }),
        F::And(parts) if parts.is_empty() => json!({}),
        F::And(parts) => json!({ "$and": parts.iter().map(render).collect::<Vec<_>>() }),
        F::Or(parts) => json!({ "$or": parts.iter().map(render).collect::<Vec<_>>() }),
    }
}

/// The reference semantics: missing is null; comparisons only within one type.
fn holds(op: &str, field: Option<&Value>, v: &Value) -> bool {
    let f = field.unwrap_or(&Value::Null);
    let ord = compare_values(f, v);
    let same_type = type_tag(f) == type_tag(v);
    match op {
        "=" | "$eq" => ord == Ordering::Equal,
        "$ne" => ord != Ordering::Equal,
        "$gt" => same_type && ord == Ordering::Greater,
        "$gte" => same_type && ord != Ordering::Less,
        "$lt" => same_type && ord == Ordering::Less,
        "$lte" => same_type && ord != Ordering::Greater,
        other => unreachable!("{other}"),
    }
}

fn eval(f: &F, doc: &Value) -> bool {
    match f {
        F::Cmp(p, op, v) => holds(op, lookup_path(doc, p), v),
        F::Multi(p, ops) => ops.iter().all(|(op, v)| holds(op, lookup_path(doc, p), v)),
        F::In(p, vs, neg) => vs.iter().any(|v| holds("$eq", lookup_path(doc, p), v)) != *neg,
        F::Exists(p, b) => lookup_path(doc, p).is_some() == *b,
        F::Not(p, op, v) => !holds(op, lookup_path(doc, p), v),
        F::And(parts) => parts.iter().all(|x| eval(x, doc)),
        F::Or(parts) => parts.iter().any(|x| eval(x, doc)),
    }
}

fn reference_cmp(sort: &[(String, bool)], x: &Value, y: &Value) -> Ordering {
    for (path, desc) in sort {
        let null = Value::Null;
        let a = lookup_path(x, path).unwrap_or(&null);
        let b = lookup_path(y, path).unwrap_or(&null);
        let ord = compare_values(a, b);
        let ord = if *desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    x["_id"].as_str().cmp(&y["_id"].as_str())
}

fn sort_spec() -> impl Strategy<Value = Vec<(String, bool)>> {
    (
        prop::sample::subsequence(PATHS.to_vec(), 0..=3).prop_shuffle(),
        prop::collection::vec(any::<bool>(), 3),
    )
        .prop_map(|(paths, desc)| {
            paths
                .iter()
                .zip(desc)
                .map(|(p, d)| (p.to_string(), d))
                .collect()
        })
}

fn limit() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![2 => Just(None), 3 => (0usize..6).prop_map(Some)]
}

fn check(
    bodies: Vec<Value>,
    specs: Vec<IndexSpec>,
    f: F,
    sort: Vec<(String, bool)>,
    limit: Option<usize>,
    skip: usize,
) -> Result<(), TestCaseError> {
    let mut mem = Mem::new(specs);
    for (i, mut body) in bodies.into_iter().enumerate() {
        body["_id"] = json!(format!("d{i}"));
        mem.insert(body);
    }
    let sort_json: Vec<Value> = sort
        .iter()
        .map(|(p, d)| json!([p, if *d { -1 } else { 1 }]))
        .collect();
    let body = json!({"filter": render(&f), "sort": sort_json, "limit": limit, "skip": skip});
    let query = FindQuery::parse(&body).map_err(|e| TestCaseError::fail(format!("{body}: {e}")))?;
    let result = find(&mem, &query).unwrap();
    let got: Vec<String> = result.docs.iter().map(|d| d.doc.id()).collect();

    let mut matching: Vec<&Value> = mem.values.values().filter(|d| eval(&f, d)).collect();
    let matched = matching.len();
    matching.sort_by(|x, y| reference_cmp(&sort, x, y));
    let wanted: Vec<String> = matching
        .into_iter()
        .skip(skip)
        .take(limit.unwrap_or(usize::MAX))
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect();
    prop_assert_eq!(
        &got,
        &wanted,
        "query {} plan {}",
        body,
        result.plan.explain()
    );
    prop_assert!(result.examined <= mem.docs.len());

    let counted = count(&mem, &query.filter);
    prop_assert_eq!(counted.count, matched, "count of {}", body);
    // The parsed filter agrees with the reference on every document, too.
    let parsed = Filter::parse(&render(&f)).unwrap();
    for doc in mem.values.values() {
        prop_assert_eq!(
            parsed.matches(doc),
            eval(&f, doc),
            "{} on {}",
            render(&f),
            doc
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn find_equals_brute_force(
        bodies in prop::collection::vec(doc_body(&domain()), 0..24),
        specs in index_specs(),
        f in top_filter(&domain()),
        sort in sort_spec(),
        limit in limit(),
        skip in prop_oneof![3 => Just(0usize), 2 => 0usize..4],
    ) {
        check(bodies, specs, f, sort, limit, skip)?;
    }

    /// Strings that extend each other through NUL, where a prefix range would be wrong.
    #[test]
    fn nul_extended_strings_equal_brute_force(
        bodies in prop::collection::vec(doc_body(&nul_domain()), 0..24),
        specs in index_specs(),
        f in prop::collection::vec(leaf(&nul_domain()), 1..=2).prop_map(F::And),
        sort in sort_spec(),
        limit in limit(),
    ) {
        check(bodies, specs, f, sort, limit, 0)?;
    }
}
