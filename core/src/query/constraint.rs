//! What the top-level conjunction of a filter says about each field, for the planner.
//!
//! Only conditions that every matching document must satisfy can narrow an index scan: those
//! reachable from the root through `$and` (explicit or implicit). Conditions under `$or` with
//! more than one branch, under `$not`, and `$ne`/`$nin` are ignored here. That is safe because
//! the executor re-checks the whole filter on every candidate: a constraint only has to
//! describe a *superset* of the matching documents.
//!
//! Per field the planner learns: a set of exact values (`$eq`, `$in`, `$exists: false`), an
//! interval (the intersection of `$gt`/`$gte`/`$lt`/`$lte`), and whether the field must exist
//! (which decides whether a sparse index holds every match). It also learns whether nothing
//! was ignored or widened ([`Constraints::exact`]): then the constraints *are* the filter, and
//! a plan that applies all of them exactly needs no re-check (see the planner).

use std::borrow::Cow;
use std::slice;

use serde_json::Value;

use super::filter::{Cond, FieldFilter, Filter, Operand};
use super::interval::Interval;
use crate::index::key::TAG_NULL;

/// What every matching document satisfies on one field. Borrows the filter's literals: a
/// single `$eq` or `$in` costs no copy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldConstraint<'f> {
    /// The field's value is one of these (sorted by encoding, no duplicates), when known.
    /// Already filtered by `interval`; may be empty, meaning nothing matches.
    pub points: Option<Cow<'f, [Operand]>>,
    /// The field's value lies in this interval, when known.
    pub interval: Option<Interval<'f>>,
    /// The field resolves to a value in every matching document.
    pub implies_exists: bool,
    /// Every condition on the field is `$eq`, `$in`, `$gt`, `$gte`, `$lt` or `$lte`, so
    /// `points` (when set) or else `interval` says exactly which values match: nothing is
    /// dropped, nothing widened.
    pub exact: bool,
}

impl<'f> FieldConstraint<'f> {
    /// True when every matching document has the same value (encoding) at this field.
    pub fn is_constant(&self) -> bool {
        self.points.as_ref().is_some_and(|p| p.len() == 1)
    }

    fn add(&mut self, cond: &'f Cond) {
        match cond {
            Cond::Eq(op) => {
                self.implies_exists |= op.type_tag() != TAG_NULL;
                self.add_points(Cow::Borrowed(slice::from_ref(op)));
            }
            Cond::In(ops) => {
                self.implies_exists |= ops.iter().all(|op| op.type_tag() != TAG_NULL);
                self.add_points(Cow::Borrowed(ops));
            }
            // Missing encodes as null: the key is null (a superset: real nulls also pass).
            Cond::Exists(false) => {
                self.exact = false;
                self.add_points(Cow::Owned(vec![Operand::new(Value::Null)]));
            }
            Cond::Exists(true) => {
                self.exact = false;
                self.implies_exists = true;
            }
            Cond::Gt(op) | Cond::Gte(op) | Cond::Lt(op) | Cond::Lte(op) => {
                // A comparison with a non-null literal only matches values of its type.
                self.implies_exists |= op.type_tag() != TAG_NULL;
                let interval = Interval::of_cond(cond).expect("a comparison has an interval");
                self.interval = Some(match self.interval.take() {
                    Some(current) => current.intersect(interval),
                    None => interval,
                });
            }
            Cond::Ne(_) | Cond::Nin(_) | Cond::Not(_) => self.exact = false,
        }
    }

    /// Intersects the known value set with `points` (both sorted by encoding).
    fn add_points(&mut self, points: Cow<'f, [Operand]>) {
        self.points = Some(match self.points.take() {
            None => points,
            Some(current) => Cow::Owned(
                current
                    .iter()
                    .filter(|op| points.binary_search_by(|p| p.key().cmp(op.key())).is_ok())
                    .cloned()
                    .collect(),
            ),
        });
    }

    fn finish(&mut self) {
        if let (Some(points), Some(interval)) = (&mut self.points, &self.interval)
            && !points.iter().all(|op| interval.contains(op.key()))
        {
            points.to_mut().retain(|op| interval.contains(op.key()));
        }
    }
}

/// The constraints the top-level conjunction of one filter puts on each path.
#[derive(Clone, Debug)]
pub struct Constraints<'f> {
    /// One entry per constrained path, sorted by path.
    fields: Fields<'f>,
    /// The filter is the conjunction of these constraints, and each is exact: a document
    /// satisfying every constraint matches the filter.
    exact: bool,
}

impl<'f> Constraints<'f> {
    /// The constraint on `path`, if the conjunction has one.
    pub fn get(&self, path: &str) -> Option<&FieldConstraint<'f>> {
        let fields = self.fields.as_slice();
        // Most filters name a few fields: comparing lengths first rejects most of them cheaply.
        if fields.len() <= 8 {
            return fields.iter().find(|(p, _)| *p == path).map(|(_, c)| c);
        }
        fields
            .binary_search_by(|(p, _)| (*p).cmp(path))
            .ok()
            .map(|i| &fields[i].1)
    }

    /// Number of constrained paths.
    pub fn len(&self) -> usize {
        self.fields.as_slice().len()
    }

    /// True when a document satisfying every constraint matches the whole filter: the filter
    /// is a conjunction (through `$and` and one-branch `$or`) of exact field constraints.
    pub fn exact(&self) -> bool {
        self.exact
    }

    /// The paths and their constraints, sorted by path.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&'f str, &FieldConstraint<'f>)> {
        self.fields.as_slice().iter().map(|(p, c)| (*p, c))
    }
}

/// The per-path constraints, inline for the common filter on one path (no allocation).
#[derive(Clone, Debug)]
enum Fields<'f> {
    One((&'f str, FieldConstraint<'f>)),
    /// Sorted by path.
    Many(Vec<(&'f str, FieldConstraint<'f>)>),
}

impl<'f> Fields<'f> {
    fn as_slice(&self) -> &[(&'f str, FieldConstraint<'f>)] {
        match self {
            Fields::One(one) => slice::from_ref(one),
            Fields::Many(many) => many,
        }
    }
}

/// The constraints the filter's top-level conjunction puts on each path.
pub fn conjunct_constraints(filter: &Filter) -> Constraints<'_> {
    if let Filter::Field(field) = filter {
        // The most common filter, `{path: condition}`: one field, nothing to sort or merge.
        let mut constraint = FieldConstraint {
            exact: true,
            ..FieldConstraint::default()
        };
        for cond in &field.conds {
            constraint.add(cond);
        }
        constraint.finish();
        return Constraints {
            exact: constraint.exact,
            fields: Fields::One((field.path.as_str(), constraint)),
        };
    }
    let mut conjuncts = Vec::new();
    let mut exact = collect_conjuncts(filter, &mut conjuncts);
    // A stable sort keeps each path's conditions in filter order.
    conjuncts.sort_by(|a, b| a.path.cmp(&b.path));
    let mut fields: Vec<(&str, FieldConstraint<'_>)> = Vec::new();
    for field in conjuncts {
        if fields.last().is_none_or(|(path, _)| *path != field.path) {
            let fresh = FieldConstraint {
                exact: true,
                ..FieldConstraint::default()
            };
            fields.push((field.path.as_str(), fresh));
        }
        let (_, constraint) = fields.last_mut().expect("just pushed");
        for cond in &field.conds {
            constraint.add(cond);
        }
    }
    for (_, constraint) in &mut fields {
        constraint.finish();
        exact &= constraint.exact;
    }
    Constraints {
        fields: Fields::Many(fields),
        exact,
    }
}

/// Collects the field filters every match satisfies; false when some part of the filter (an
/// `$or` of several branches) is left out.
fn collect_conjuncts<'f>(filter: &'f Filter, out: &mut Vec<&'f FieldFilter>) -> bool {
    match filter {
        Filter::And(parts) => parts
            .iter()
            .fold(true, |all, p| collect_conjuncts(p, out) & all),
        Filter::Or(parts) if parts.len() == 1 => collect_conjuncts(&parts[0], out),
        Filter::Or(_) => false,
        Filter::Field(field) => {
            out.push(field);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn constraints(filter: Value) -> BTreeMap<String, FieldConstraint<'static>> {
        // Leaked: a few small filters per test, so the constraints can outlive this call.
        let filter: &'static Filter = Box::leak(Box::new(Filter::parse(&filter).unwrap()));
        conjunct_constraints(filter)
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn point_values(c: &FieldConstraint<'_>) -> Vec<Value> {
        c.points
            .as_ref()
            .unwrap()
            .iter()
            .map(|op| op.value().clone())
            .collect()
    }

    #[test]
    fn points_intersect_and_respect_intervals() {
        let c = constraints(json!({
            "a": {"$in": [1, 2, 3, "x"], "$gte": 2},
            "$and": [{"a": {"$in": [3, 2, 9]}}],
        }));
        assert_eq!(point_values(&c["a"]), [json!(2), json!(3)]);
        assert!(c["a"].implies_exists);
        assert!(!c["a"].is_constant());
        let c = constraints(json!({"a": 1, "$or": [{"a": 1}]}));
        assert!(c["a"].is_constant());
        let c = constraints(json!({"a": {"$eq": 1, "$in": [2]}}));
        assert_eq!(point_values(&c["a"]), Vec::<Value>::new());
    }

    #[test]
    fn ignores_what_not_every_match_satisfies() {
        let c = constraints(json!({
            "$or": [{"a": 1}, {"b": 2}],
            "c": {"$ne": 1, "$nin": [2], "$not": {"$eq": 3}},
        }));
        assert!(!c.contains_key("a") && !c.contains_key("b"));
        assert_eq!(c["c"], FieldConstraint::default());
    }

    #[test]
    fn exact_only_for_conjunctions_of_eq_in_and_comparisons() {
        for filter in [
            json!({}),
            json!({"a": 1}),
            json!({"a": {"$in": [1, 2]}, "b": {"$gte": 1, "$lt": 5}}),
            json!({"$and": [{"a": null}, {"$or": [{"b": "x"}]}]}),
            json!({"a": {"$in": [1, 2], "$gt": 1}}),
        ] {
            let parsed = Filter::parse(&filter).unwrap();
            assert!(conjunct_constraints(&parsed).exact(), "{filter}");
        }
        for filter in [
            json!({"a": 1, "$or": [{"b": 1}, {"c": 2}]}),
            json!({"a": {"$exists": false}}),
            json!({"a": {"$exists": true}}),
            json!({"a": 1, "b": {"$ne": 2}}),
            json!({"a": {"$nin": [1]}}),
            json!({"a": {"$not": {"$gt": 1}}}),
        ] {
            let parsed = Filter::parse(&filter).unwrap();
            assert!(!conjunct_constraints(&parsed).exact(), "{filter}");
        }
    }

    #[test]
    fn existence() {
        let c = constraints(json!({
            "a": null,
            "b": {"$in": [1, null]},
            "c": {"$gt": 0},
            "d": {"$exists": true},
            "e": {"$lte": null},
            "f": {"$in": [1, 2]},
            "g": {"$exists": false},
        }));
        let exists: Vec<&str> = c
            .iter()
            .filter(|(_, v)| v.implies_exists)
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(exists, ["c", "d", "f"]);
        assert_eq!(point_values(&c["g"]), [json!(null)]);
    }
}
