//! How far a filter narrows one index, and the entry ranges that hold its matches.
//!
//! The planner first asks every usable index for its [`Shape`] (cheap: a few lookups), picks
//! one, and only then builds that index's byte [`ranges`]: the cartesian product of the values
//! pinned on its leading fields, each followed by the interval on the next field, or by the
//! cuts around the last pinned value.
//!
//! ```text
//! index (city, age desc), filter {city: {$in: [A, B]}, age: {$gt: 3}}
//!   shape  = 1 pinned field, then a range field
//!   ranges = [enc(A) ++ desc(age > 3)], [enc(B) ++ desc(age > 3)]   ascending, disjoint
//! ```

use std::ops::Bound;

use super::constraint::Constraints;
use super::plan::KeyRange;
use super::planner::RANGES_MAX;
use crate::index::IndexSpec;
use crate::index::key::prefix_end;

/// How far the filter narrows an index: leading fields pinned to known values, then at most
/// one field narrowed by an interval.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Leading fields pinned to known values.
    pub eq_fields: usize,
    /// The next field is narrowed by an interval.
    pub range_field: bool,
}

impl Shape {
    /// How far `constraints` narrow the index `spec`.
    pub fn of(spec: &IndexSpec, constraints: &Constraints<'_>) -> Shape {
        let mut ranges: usize = 1;
        let mut eq_fields = 0;
        for field in &spec.fields {
            let Some(constraint) = constraints.get(field.path.as_str()) else {
                break;
            };
            if let Some(points) = &constraint.points {
                ranges = ranges.saturating_mul(points.len());
                if ranges > RANGES_MAX {
                    break;
                }
                eq_fields += 1;
                continue;
            }
            return Shape {
                eq_fields,
                range_field: constraint.interval.is_some(),
            };
        }
        Shape {
            eq_fields,
            range_field: false,
        }
    }
}

/// The entry ranges of `spec` that hold every match, for its `shape`: the leading fields'
/// known values (the cartesian product), then one interval. Ascending and disjoint.
///
/// The ranges are exact on the fields they cover: an entry lies in a range exactly when its
/// pinned components equal one of the points and its next component lies in the interval
/// (see interval.rs for why the byte bounds split components exactly).
pub fn ranges(spec: &IndexSpec, constraints: &Constraints<'_>, shape: Shape) -> Vec<KeyRange> {
    let constraint = |field: usize| {
        constraints
            .get(spec.fields[field].path.as_str())
            .expect("the shape covers constrained fields only")
    };
    let pinned = &spec.fields[..shape.eq_fields];
    let points = |field: usize| {
        constraint(field)
            .points
            .as_deref()
            .expect("a pinned field has points")
    };
    let interval = shape.range_field.then(|| {
        let interval = constraint(shape.eq_fields)
            .interval
            .expect("a range field has an interval");
        (interval, spec.fields[shape.eq_fields].desc)
    });
    if interval.is_some_and(|(interval, _)| interval.is_empty()) {
        return Vec::new();
    }
    let bounds = interval.map(|(interval, desc)| interval.component_bounds(desc));
    let last_pinned_desc = pinned.last().is_some_and(|f| f.desc);
    // Shape::of kept the product within RANGES_MAX.
    let count: usize = (0..pinned.len()).map(|i| points(i).len()).product();
    let mut ranges = Vec::with_capacity(count);
    for combination in 0..count {
        // Prefix number `combination`: one point per pinned field, first field fastest.
        let mut prefix = Vec::with_capacity(32);
        let mut stride = 1;
        for (i, field) in pinned.iter().enumerate() {
            let points = points(i);
            let key = points[(combination / stride) % points.len()].key();
            stride *= points.len();
            prefix.extend(key.iter().map(|b| if field.desc { !b } else { *b }));
        }
        ranges.push(match &bounds {
            Some((lo, hi)) => KeyRange {
                lower: Bound::Included([prefix.as_slice(), lo].concat()),
                upper: Bound::Excluded([prefix.as_slice(), hi].concat()),
            },
            // The last pinned component ends the prefix: bound it with its value's cuts (see
            // interval.rs), as a prefix range would also hold longer strings ("a\0" after
            // "a").
            None if prefix.is_empty() => KeyRange::all(),
            None if last_pinned_desc => KeyRange {
                lower: Bound::Included([prefix.as_slice(), &[0x01]].concat()),
                upper: prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
            },
            None => {
                let mut upper = Vec::with_capacity(prefix.len() + 1);
                upper.extend_from_slice(&prefix);
                upper.push(0xFF);
                KeyRange {
                    lower: Bound::Included(prefix),
                    upper: Bound::Excluded(upper),
                }
            }
        });
    }
    ranges.sort_by(|a, b| lower_bytes(a).cmp(lower_bytes(b)));
    ranges
}

fn lower_bytes(range: &KeyRange) -> &[u8] {
    match &range.lower {
        Bound::Included(bytes) | Bound::Excluded(bytes) => bytes,
        Bound::Unbounded => &[],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::query::Filter;
    use crate::query::constraint::conjunct_constraints;

    #[test]
    fn product_of_pinned_values_then_interval_ascending_and_disjoint() {
        let spec = IndexSpec::compound("abc", &[("a", false), ("b", true), ("c", false)]);
        let filter = Filter::parse(&json!({
            "a": {"$in": [2, 1]}, "b": {"$in": ["x", "y", "z"]}, "c": {"$gte": 5}
        }))
        .unwrap();
        let constraints = conjunct_constraints(&filter);
        let shape = Shape::of(&spec, &constraints);
        assert_eq!((shape.eq_fields, shape.range_field), (2, true));
        let ranges = ranges(&spec, &constraints, shape);
        assert_eq!(ranges.len(), 6);
        let bounds: Vec<(&[u8], &[u8])> = ranges
            .iter()
            .map(|r| match (&r.lower, &r.upper) {
                (Bound::Included(lo), Bound::Excluded(hi)) => (lo.as_slice(), hi.as_slice()),
                other => panic!("unexpected bounds {other:?}"),
            })
            .collect();
        for (lo, hi) in &bounds {
            assert!(lo < hi);
        }
        for pair in bounds.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "ranges overlap or are out of order");
        }
        // a = 1 first; within it b descending: "z" first.
        let mut first = Vec::new();
        crate::index::key::encode_component(Some(&json!(1)), false, &mut first);
        crate::index::key::encode_component(Some(&json!("z")), true, &mut first);
        assert!(bounds[0].0.starts_with(&first));
    }
}
