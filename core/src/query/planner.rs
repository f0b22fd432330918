//! The planner: picks how to find candidates, and whether the result needs an in-memory sort.
//!
//! ```text
//!  filter ──► top-level constraints per field (constraint.rs)
//!               │
//!               ├─ `_id` pinned by $eq/$in ─────────────► IdLookup (ids ascending)
//!               │
//!               ├─ for each usable index: leading fields pinned by $eq/$in,
//!               │  then at most one range field ─────────► ranges (cartesian product of the
//!               │                                          pinned values × the interval)
//!               │  score = (pinned fields, has range, gives the sort order, unique & fully
//!               │           pinned); the best non-trivial score wins, first index on ties
//!               │
//!               ├─ no index narrows, but one walks in the sort order ─► IndexScan (whole index)
//!               │
//!               └─ otherwise ──────────────────────────► FullScan (`_id` order)
//! ```
//!
//! Orders are compared as lists of `(path, direction)`. Every order ends with `_id`
//! ascending (the tie-break; an index's entries end with the id), anything after the first
//! `_id` is irrelevant, and a field pinned to a single value by the filter is constant among
//! matches, so it is left out of both sides. An index walked backwards yields equal keys in
//! ascending `_id` order (the executor reverses each run of equal keys), so its order is its
//! fields with every direction flipped, then `_id` ascending. An empty sort asks for `_id`
//! order, so a result never depends on which plan was chosen, or on which indexes a replica has.
//!
//! A sparse index is used only when the filter implies one of its fields exists: otherwise a
//! matching document could be missing from the index.
//!
//! A plan is *exact* ([`Plan::exact`]) when its candidates are the matches themselves, so the
//! executor can skip its re-check. That holds when three things do: the filter is a
//! conjunction of `$eq`, `$in`, `$gt`, `$gte`, `$lt` and `$lte` conditions (no `$or` of several
//! branches, no negation, no `$exists`, whose `false` is planned as `null`, which real nulls
//! share); every field it constrains is covered by the access (a pinned field or the range
//! field of the chosen index, or `_id` for a lookup); and the access applies those
//! constraints exactly, which the byte bounds do (interval.rs proves the cuts, `ranges`
//! bounds each pinned prefix by its value's cuts). `{"email": x}` on an index of `email` is
//! exact; `{"email": x, "age": 3}` on the same index is not.

use std::borrow::Cow;
use std::iter;

use super::constraint::{Constraints, FieldConstraint, conjunct_constraints};
use super::filter::Filter;
use super::find_query::SortKey;
use super::narrow::{Shape, ranges};
use super::plan::{Access, IndexAccess, Plan};
use crate::doc::ID_FIELD;
use crate::index::{IndexSpec, SecondaryIndex};

/// Most ranges one index plan may walk (the product of the `$in` list lengths it uses). A
/// field whose values would pass this bound is left to the re-check instead.
pub const RANGES_MAX: usize = 1_024;

/// Chooses how to run a query with this filter and sort over these indexes.
pub fn plan(filter: &Filter, sort: &[SortKey], indexes: &[SecondaryIndex]) -> Plan {
    let constraints = conjunct_constraints(filter);
    // Without a sort the order asked for is `_id` order: no need to build it (unless `_id` is
    // pinned, which leaves the empty order).
    let by_id: &[(&str, bool)] = &[(ID_FIELD, false)];
    let required = if sort.is_empty() && !is_constant(ID_FIELD, &constraints) {
        Cow::Borrowed(by_id)
    } else {
        Cow::Owned(normalized(
            sort.iter().map(|k| (k.path.as_str(), k.desc)),
            &constraints,
        ))
    };
    let scan_sorted = same_order(iter::empty(), &required, &constraints);

    if let Some(points) = constraints.get(ID_FIELD).and_then(|c| c.points.as_ref()) {
        // Points are sorted by encoding, which for strings is their byte order.
        let ids = points
            .iter()
            .filter_map(|op| op.value().as_str().map(str::to_string))
            .collect();
        return Plan {
            access: Access::IdLookup { ids },
            in_memory_sort: !scan_sorted,
            // A document found under an id has that `_id`, and the points are exactly the
            // `_id`s that pass (a non-string point matches no document).
            exact: constraints.exact() && constraints.len() == 1,
        };
    }

    let mut best: Option<Choice> = None;
    for (position, index) in indexes.iter().enumerate() {
        let spec = index.spec();
        if !holds_every_match(spec, &constraints) {
            continue;
        }
        let shape = Shape::of(spec, &constraints);
        // A walk of the whole index is only worth it for an order the scan does not give.
        let narrows = shape.eq_fields > 0 || shape.range_field;
        if !narrows && scan_sorted {
            continue;
        }
        let fields = |flip: bool| {
            spec.fields
                .iter()
                .map(move |f| (f.path.as_str(), f.desc ^ flip))
        };
        let forward = same_order(fields(false), &required, &constraints);
        let reverse = !forward && same_order(fields(true), &required, &constraints);
        let sorted_by_index = forward || reverse;
        if !narrows && !sorted_by_index {
            continue;
        }
        let score = Score {
            eq_fields: shape.eq_fields,
            range_field: shape.range_field,
            sorted_by_index,
            unique_point: spec.unique && shape.eq_fields == spec.fields.len(),
        };
        if best.as_ref().is_none_or(|top| score > top.score) {
            best = Some(Choice {
                score,
                position,
                shape,
                reverse,
            });
        }
    }
    // Ranges are built for the winner only.
    match best {
        Some(choice) => {
            let spec = indexes[choice.position].spec();
            let covered = choice.shape.eq_fields + usize::from(choice.shape.range_field);
            Plan {
                access: Access::Index(IndexAccess {
                    position: choice.position,
                    name: spec.name.clone(),
                    ranges: ranges(spec, &constraints, choice.shape),
                    reverse: choice.reverse,
                    eq_fields: choice.shape.eq_fields,
                    range_field: choice.shape.range_field,
                    sorted_by_index: choice.score.sorted_by_index,
                }),
                in_memory_sort: !choice.score.sorted_by_index,
                // The ranges hold exactly the documents whose covered fields pass their
                // constraints (see `ranges`); when those are all the filter says, every
                // candidate matches.
                exact: constraints.exact() && covered == constraints.len(),
            }
        }
        None => Plan {
            access: Access::FullScan,
            in_memory_sort: !scan_sorted,
            exact: constraints.exact() && constraints.len() == 0,
        },
    }
}

/// How good an index plan is; compared field by field, most important first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    eq_fields: usize,
    range_field: bool,
    sorted_by_index: bool,
    unique_point: bool,
}

/// The best index so far.
struct Choice {
    score: Score,
    position: usize,
    shape: Shape,
    reverse: bool,
}

/// The order `keys` then `_id` ascending, cut after the first `_id`, without the fields the
/// filter pins to one value.
fn normalized<'p>(
    keys: impl Iterator<Item = (&'p str, bool)>,
    constraints: &Constraints<'_>,
) -> Vec<(&'p str, bool)> {
    let mut order = Vec::new();
    for (path, desc) in keys.chain(iter::once((ID_FIELD, false))) {
        if !is_constant(path, constraints) {
            order.push((path, desc));
        }
        if path == ID_FIELD {
            break;
        }
    }
    order
}

/// True when `normalized(keys)` equals `order`; stops at the first difference, allocates
/// nothing.
fn same_order<'p>(
    keys: impl Iterator<Item = (&'p str, bool)>,
    order: &[(&str, bool)],
    constraints: &Constraints<'_>,
) -> bool {
    let mut wanted = order.iter();
    for (path, desc) in keys.chain(iter::once((ID_FIELD, false))) {
        if !is_constant(path, constraints) && wanted.next() != Some(&(path, desc)) {
            return false;
        }
        if path == ID_FIELD {
            break;
        }
    }
    wanted.next().is_none()
}

/// True when the filter pins `path` to one value.
fn is_constant(path: &str, constraints: &Constraints<'_>) -> bool {
    constraints
        .get(path)
        .is_some_and(FieldConstraint::is_constant)
}

/// False for a sparse index that may lack some matching documents.
fn holds_every_match(spec: &IndexSpec, constraints: &Constraints<'_>) -> bool {
    !spec.sparse
        || spec.fields.iter().any(|f| {
            constraints
                .get(f.path.as_str())
                .is_some_and(|c| c.implies_exists)
        })
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use serde_json::{Value, json};

    use super::*;

    fn index(name: &str, fields: &[(&str, bool)]) -> SecondaryIndex {
        SecondaryIndex::new(IndexSpec::compound(name, fields))
    }

    fn with_flags(idx: SecondaryIndex, unique: bool, sparse: bool) -> SecondaryIndex {
        let mut spec = idx.spec().clone();
        spec.unique = unique;
        spec.sparse = sparse;
        SecondaryIndex::new(spec)
    }

    fn explain(filter: Value, sort: &[SortKey], indexes: &[SecondaryIndex]) -> Value {
        plan(&Filter::parse(&filter).unwrap(), sort, indexes).explain()
    }

    fn indexes() -> Vec<SecondaryIndex> {
        vec![
            index("by_age", &[("age", false)]),
            index("by_city_age", &[("city", false), ("age", true)]),
            index("by_name_desc", &[("name", true)]),
        ]
    }

    #[test]
    fn id_equality_and_in_are_lookups() {
        let p = explain(json!({"_id": "a", "age": 3}), &[], &indexes());
        assert_eq!(p["strategy"], "id_lookup");
        assert_eq!(p["ids"], 1);
        let filter = Filter::parse(&json!({"_id": {"$in": ["c", "a", "b", "a", 7]}})).unwrap();
        let p = plan(&filter, &[], &indexes());
        assert_eq!(
            p.access,
            Access::IdLookup {
                ids: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        assert!(!p.in_memory_sort);
        let p = plan(&filter, &[SortKey::desc("_id")], &indexes());
        assert!(p.in_memory_sort);
        // A range on _id cannot use the primary order here.
        assert_eq!(
            explain(json!({"_id": {"$gt": "a"}}), &[], &[])["strategy"],
            "full_scan"
        );
    }

    #[test]
    fn a_single_id_needs_no_sort() {
        for sort in [vec![], vec![SortKey::desc("_id")]] {
            let p = plan(
                &Filter::parse(&json!({"_id": "a"})).unwrap(),
                &sort,
                &indexes(),
            );
            assert_eq!(
                p.access,
                Access::IdLookup {
                    ids: vec!["a".into()]
                }
            );
            assert!(!p.in_memory_sort, "{sort:?}");
        }
    }

    #[test]
    fn equality_on_an_index_field_is_a_range() {
        let p = explain(json!({"age": 30}), &[], &indexes());
        assert_eq!(p["strategy"], "index_range");
        assert_eq!(p["index"], "by_age");
        assert_eq!(p["ranges"], 1);
        assert_eq!(p["eq_fields"], 1);
        // Pinned to one value, the walk is in _id order: no sort needed.
        assert_eq!(p["sorted_by_index"], true);
        assert_eq!(p["in_memory_sort"], false);
    }

    #[test]
    fn in_on_a_leading_field_gives_several_ranges() {
        let p = explain(json!({"age": {"$in": [3, 1, 2]}}), &[], &indexes());
        assert_eq!(
            (p["index"].clone(), p["ranges"].clone()),
            (json!("by_age"), json!(3))
        );
        assert_eq!(p["in_memory_sort"], true, "three keys: not in _id order");
        let p = explain(
            json!({"age": {"$in": [3, 1]}}),
            &[SortKey::asc("age")],
            &indexes(),
        );
        assert_eq!(p["sorted_by_index"], true);
    }

    #[test]
    fn more_equality_fields_win_then_range_then_sort() {
        let p = explain(json!({"city": "Oslo", "age": 3}), &[], &indexes());
        assert_eq!(
            (p["index"].clone(), p["eq_fields"].clone()),
            (json!("by_city_age"), json!(2))
        );
        let p = explain(json!({"city": "Oslo", "age": {"$gt": 3}}), &[], &indexes());
        assert_eq!(p["index"], "by_city_age");
        assert_eq!(p["range_field"], true);
        let p = explain(json!({"age": {"$gt": 3}}), &[], &indexes());
        assert_eq!(
            (p["index"].clone(), p["range_field"].clone()),
            (json!("by_age"), json!(true))
        );
        // Same shape on two indexes: the one that also gives the order wins.
        let two = vec![
            index("a_then_b", &[("a", false), ("b", false)]),
            index("a_then_c", &[("a", false), ("c", false)]),
        ];
        let p = explain(json!({"a": 1}), &[SortKey::asc("c")], &two);
        assert_eq!(
            (p["index"].clone(), p["sorted_by_index"].clone()),
            (json!("a_then_c"), json!(true))
        );
        let p = explain(json!({"a": 1}), &[SortKey::asc("b")], &two);
        assert_eq!(p["index"], "a_then_b");
        // A unique index fully pinned beats an equal non-unique one.
        let pair = vec![
            index("plain", &[("e", false)]),
            with_flags(index("uniq", &[("e", false)]), true, false),
        ];
        assert_eq!(explain(json!({"e": "x"}), &[], &pair)["index"], "uniq");
    }

    #[test]
    fn a_range_needs_the_previous_fields_pinned() {
        // by_city_age cannot serve a range on age alone; by_age can.
        let only = vec![index("by_city_age", &[("city", false), ("age", true)])];
        assert_eq!(
            explain(json!({"age": {"$gt": 3}}), &[], &only)["strategy"],
            "full_scan"
        );
        let p = explain(json!({"city": {"$gte": "M"}, "age": 3}), &[], &only);
        assert_eq!(
            (p["eq_fields"].clone(), p["range_field"].clone()),
            (json!(0), json!(true))
        );
    }

    #[test]
    fn sparse_indexes_need_the_field_to_exist() {
        let sparse = vec![with_flags(index("s", &[("a", false)]), false, true)];
        assert_eq!(
            explain(json!({"a": null}), &[], &sparse)["strategy"],
            "full_scan"
        );
        assert_eq!(
            explain(json!({"a": {"$in": [1, null]}}), &[], &sparse)["strategy"],
            "full_scan"
        );
        assert_eq!(
            explain(json!({"a": {"$exists": false}}), &[], &sparse)["strategy"],
            "full_scan"
        );
        assert_eq!(
            explain(json!({}), &[SortKey::asc("a")], &sparse)["strategy"],
            "full_scan"
        );
        assert_eq!(explain(json!({"a": 1}), &[], &sparse)["index"], "s");
        assert_eq!(
            explain(json!({"a": {"$gt": 1}}), &[], &sparse)["index"],
            "s"
        );
        let p = explain(
            json!({"a": {"$exists": true}}),
            &[SortKey::asc("a")],
            &sparse,
        );
        assert_eq!(
            (p["strategy"].clone(), p["sorted_by_index"].clone()),
            (json!("index_scan"), json!(true))
        );
        // Dense: null and missing are indexed, so equality to null can use it.
        let dense = vec![index("d", &[("a", false)])];
        assert_eq!(explain(json!({"a": null}), &[], &dense)["index"], "d");
    }

    #[test]
    fn sort_only_walks_the_index_forward_or_backward() {
        let p = explain(json!({}), &[SortKey::asc("age")], &indexes());
        assert_eq!(p["strategy"], "index_scan");
        assert_eq!(
            (p["reverse"].clone(), p["in_memory_sort"].clone()),
            (json!(false), json!(false))
        );
        let p = explain(json!({"x": 1}), &[SortKey::desc("age")], &indexes());
        assert_eq!(
            (p["index"].clone(), p["reverse"].clone()),
            (json!("by_age"), json!(true))
        );
        let p = explain(json!({}), &[SortKey::desc("name")], &indexes());
        assert_eq!(
            (p["index"].clone(), p["reverse"].clone()),
            (json!("by_name_desc"), json!(false))
        );
        let p = explain(
            json!({}),
            &[SortKey::asc("city"), SortKey::desc("age")],
            &indexes(),
        );
        assert_eq!(p["index"], "by_city_age");
        let p = explain(
            json!({}),
            &[SortKey::desc("city"), SortKey::asc("age")],
            &indexes(),
        );
        assert_eq!(
            (p["index"].clone(), p["reverse"].clone()),
            (json!("by_city_age"), json!(true))
        );
        // A prefix of a compound index does not give the order (ties must go by _id).
        let p = explain(json!({}), &[SortKey::asc("city")], &indexes());
        assert_eq!(
            (p["strategy"].clone(), p["in_memory_sort"].clone()),
            (json!("full_scan"), json!(true))
        );
        // A trailing _id ascending is the tie-break anyway.
        let p = explain(
            json!({}),
            &[SortKey::asc("age"), SortKey::asc("_id")],
            &indexes(),
        );
        assert_eq!(p["index"], "by_age");
        let p = explain(
            json!({}),
            &[SortKey::asc("age"), SortKey::desc("_id")],
            &indexes(),
        );
        assert_eq!(p["strategy"], "full_scan");
        // The _id order itself is the scan's.
        let p = explain(json!({}), &[SortKey::asc("_id")], &indexes());
        assert_eq!(
            (p["strategy"].clone(), p["in_memory_sort"].clone()),
            (json!("full_scan"), json!(false))
        );
        // Without a sort, no index is walked just for its order.
        assert_eq!(explain(json!({}), &[], &indexes())["strategy"], "full_scan");
    }

    #[test]
    fn pinned_fields_do_not_disturb_the_order() {
        let p = explain(json!({"city": "Oslo"}), &[SortKey::desc("age")], &indexes());
        assert_eq!(
            (p["index"].clone(), p["sorted_by_index"].clone()),
            (json!("by_city_age"), json!(true))
        );
        let p = explain(json!({"city": "Oslo"}), &[SortKey::asc("age")], &indexes());
        assert_eq!(
            (p["reverse"].clone(), p["sorted_by_index"].clone()),
            (json!(true), json!(true))
        );
        let p = explain(
            json!({"city": {"$in": ["A", "B"]}}),
            &[SortKey::asc("age")],
            &indexes(),
        );
        assert_eq!(p["in_memory_sort"], true, "two cities interleave ages");
        let p = explain(
            json!({"age": 7}),
            &[SortKey::asc("age"), SortKey::asc("name")],
            &indexes(),
        );
        assert_eq!(p["in_memory_sort"], true);
        let p = explain(
            json!({"age": 7, "name": "x"}),
            &[SortKey::asc("age"), SortKey::asc("name")],
            &indexes(),
        );
        assert_eq!(p["in_memory_sort"], false);
    }

    #[test]
    fn no_usable_predicate_is_a_full_scan() {
        for filter in [
            json!({"zzz": 1}),
            json!({"$or": [{"age": 1}, {"city": "x"}]}),
            json!({"age": {"$ne": 1}}),
            json!({"age": {"$nin": [1]}}),
            json!({"age": {"$not": {"$gt": 1}}}),
        ] {
            assert_eq!(
                explain(filter.clone(), &[], &indexes())["strategy"],
                "full_scan",
                "{filter}"
            );
        }
        assert_eq!(
            explain(json!({"$or": [{"age": 1}]}), &[], &indexes())["index"],
            "by_age"
        );
    }

    #[test]
    fn contradictions_give_no_ranges() {
        let p = explain(json!({"age": {"$gt": 5, "$lt": 2}}), &[], &indexes());
        assert_eq!(
            (p["index"].clone(), p["ranges"].clone()),
            (json!("by_age"), json!(0))
        );
        let p = explain(json!({"age": {"$in": [1, 2], "$gte": 9}}), &[], &indexes());
        assert_eq!(p["ranges"], 0);
    }

    #[test]
    fn too_many_ranges_stop_at_the_bound() {
        let a: Vec<u32> = (0..100).collect();
        let b: Vec<u32> = (0..100).collect();
        let two = vec![index("ab", &[("a", false), ("b", false)])];
        let p = explain(json!({"a": {"$in": a}, "b": {"$in": b}}), &[], &two);
        assert_eq!(
            (p["eq_fields"].clone(), p["ranges"].clone()),
            (json!(1), json!(100))
        );
    }

    /// Exact plans skip the executor's re-check, so only a filter the access path answers
    /// whole may be marked exact.
    #[test]
    fn exact_only_when_the_access_covers_the_whole_filter() {
        let exact = |filter: Value, indexes: &[SecondaryIndex]| {
            plan(&Filter::parse(&filter).unwrap(), &[], indexes).exact
        };
        let uniq = vec![with_flags(index("e", &[("e", false)]), true, false)];
        for (filter, indexes) in [
            (json!({}), vec![]),
            (json!({"age": 30}), indexes()),
            (json!({"age": {"$in": [1, 2], "$lt": 2}}), indexes()),
            (json!({"age": {"$gte": 10, "$lt": 20}}), indexes()),
            (json!({"city": "Oslo", "age": {"$gt": 3}}), indexes()),
            (json!({"$and": [{"city": "Oslo"}, {"age": 3}]}), indexes()),
            (json!({"_id": {"$in": ["a", "b"]}}), indexes()),
            (json!({"e": null}), uniq.clone()),
        ] {
            assert!(exact(filter.clone(), &indexes), "{filter}");
        }
        for (filter, indexes) in [
            // Conditions the access does not apply.
            (json!({"age": 30}), vec![]),
            (json!({"age": 30, "zzz": 1}), indexes()),
            (json!({"_id": "a", "age": 3}), indexes()),
            (json!({"city": {"$gt": "A"}, "age": 3}), indexes()),
            (json!({"age": {"$gt": 3, "$ne": 5}}), indexes()),
            (
                json!({"age": 3, "$or": [{"city": "x"}, {"name": "y"}]}),
                indexes(),
            ),
            // $exists: false is pinned to null, which real nulls share.
            (json!({"e": {"$exists": false}}), uniq),
        ] {
            assert!(!exact(filter.clone(), &indexes), "{filter}");
        }
        // Past RANGES_MAX the second field is left to the re-check.
        let a: Vec<u32> = (0..100).collect();
        let two = vec![index("ab", &[("a", false), ("b", false)])];
        assert!(!exact(
            json!({"a": {"$in": a.clone()}, "b": {"$in": a}}),
            &two
        ));
    }

    #[test]
    fn descending_ranges_are_inverted() {
        let desc = vec![index("d", &[("a", true)])];
        let filter = Filter::parse(&json!({"a": {"$in": [1, 2, 3]}})).unwrap();
        let Access::Index(access) = plan(&filter, &[], &desc).access else {
            panic!("index plan")
        };
        // Ascending byte order of a descending component is descending value order.
        let mut lowers: Vec<Vec<u8>> = Vec::new();
        for range in &access.ranges {
            let Bound::Included(lower) = &range.lower else {
                panic!()
            };
            lowers.push(lower.clone());
        }
        let mut three = Vec::new();
        crate::index::key::encode_component(Some(&json!(3)), true, &mut three);
        assert!(lowers[0].starts_with(&three), "3 comes first");
        assert!(lowers.windows(2).all(|w| w[0] < w[1]));
    }
}
