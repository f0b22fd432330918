//! What the top-level conjunction of a filter says about each field, for the planner.
//!
//! Only conditions that every matching document must satisfy can narrow an index scan: those
//! reachable from the root through `$and` (explicit or implicit). Conditions under `$or` with
//! more than one branch, under `$not`, and `$ne`/`$nin` are ignored here. That is always safe,
//! because the executor re-checks the whole filter on every candidate: a constraint only has to
//! describe a *superset* of the matching documents.
//!
//! Per field the planner learns: a set of exact values (`$eq`, `$in`, `$exists: false`), an
//! interval (the intersection of `$gt`/`$gte`/`$lt`/`$lte`), and whether the field must exist
//! (which decides whether a sparse index holds every match).

use std::collections::BTreeMap;

use serde_json::Value;

use super::filter::{Cond, FieldFilter, Filter, Operand};
use super::interval::Interval;
use crate::index::key::TAG_NULL;

/// What every matching document satisfies on one field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldConstraint {
    /// The field's value is one of these (sorted by encoding, no duplicates), when known.
    /// Already filtered by `interval`; may be empty, meaning nothing matches.
    pub points: Option<Vec<Operand>>,
    /// The field's value lies in this interval, when known.
    pub interval: Option<Interval>,
    /// The field resolves to a value in every matching document.
    pub implies_exists: bool,
}

impl FieldConstraint {
    /// True when every matching document has the same value (encoding) at this field.
    pub fn is_constant(&self) -> bool {
        self.points.as_ref().is_some_and(|p| p.len() == 1)
    }

    fn add(&mut self, cond: &Cond) {
        match cond {
            Cond::Eq(op) => {
                self.implies_exists |= op.type_tag() != TAG_NULL;
                self.add_points(vec![op.clone()]);
            }
            Cond::In(ops) => {
                self.implies_exists |= ops.iter().all(|op| op.type_tag() != TAG_NULL);
                self.add_points(ops.clone());
            }
            // Missing encodes as null: the key is null (a superset: real nulls also pass).
            Cond::Exists(false) => self.add_points(vec![Operand::new(Value::Null)]),
            Cond::Exists(true) => self.implies_exists = true,
            Cond::Gt(op) | Cond::Gte(op) | Cond::Lt(op) | Cond::Lte(op) => {
                // A comparison with a non-null literal only matches values of its type.
                self.implies_exists |= op.type_tag() != TAG_NULL;
                let interval = Interval::of_cond(cond).expect("a comparison has an interval");
                self.interval = Some(match self.interval.take() {
                    Some(current) => current.intersect(interval),
                    None => interval,
                });
            }
            Cond::Ne(_) | Cond::Nin(_) | Cond::Not(_) => {}
        }
    }

    /// Intersects the known value set with `points` (both sorted by encoding).
    fn add_points(&mut self, points: Vec<Operand>) {
        self.points = Some(match self.points.take() {
            None => points,
            Some(current) => current
                .into_iter()
                .filter(|op| points.binary_search_by(|p| p.key().cmp(op.key())).is_ok())
                .collect(),
        });
    }

    fn finish(&mut self) {
        if let (Some(points), Some(interval)) = (&mut self.points, &self.interval) {
            points.retain(|op| interval.contains(op.key()));
        }
    }
}

/// The constraints the filter's top-level conjunction puts on each path.
pub fn conjunct_constraints(filter: &Filter) -> BTreeMap<&str, FieldConstraint> {
    let mut fields = Vec::new();
    collect_conjuncts(filter, &mut fields);
    let mut out: BTreeMap<&str, FieldConstraint> = BTreeMap::new();
    for field in fields {
        let constraint = out.entry(field.path.as_str()).or_default();
        for cond in &field.conds {
            constraint.add(cond);
        }
    }
    for constraint in out.values_mut() {
        constraint.finish();
    }
    out
}

fn collect_conjuncts<'f>(filter: &'f Filter, out: &mut Vec<&'f FieldFilter>) {
    match filter {
        Filter::And(parts) => parts.iter().for_each(|p| collect_conjuncts(p, out)),
        Filter::Or(parts) if parts.len() == 1 => collect_conjuncts(&parts[0], out),
        Filter::Or(_) => {}
        Filter::Field(field) => out.push(field),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn constraints(filter: Value) -> BTreeMap<String, FieldConstraint> {
        let filter = Filter::parse(&filter).unwrap();
        conjunct_constraints(&filter)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn point_values(c: &FieldConstraint) -> Vec<Value> {
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
