//! Parsing Mongo-style filter JSON into the typed [`Filter`] tree.
//!
//! Filters arrive from outside, so the parser is strict: an unknown operator, an operand of the
//! wrong type or a condition that mixes operators with field names is an error naming the
//! place, never a silently ignored clause (a misspelled `$gte` that matched everything would be
//! a data leak). Work is bounded: nesting depth, `$in` list length and the total number of
//! conditions and values all have limits, so a hostile filter cannot make matching expensive.
//!
//! ```text
//! {"age": {"$gt": 1, "$lt": 5}, "$or": [{"city": "Oslo"}, {"vip": true}]}
//!   => And[ Field(age: [Gt 1, Lt 5]), Or[ Field(city: [Eq "Oslo"]), Field(vip: [Eq true]) ] ]
//! ```

use serde_json::{Map, Value};

use super::error::QueryError;
use super::filter::{Cond, FieldFilter, Filter, Operand};
use crate::index::spec::valid_path;

/// Deepest nesting of `$and`, `$or` and `$not`.
pub const FILTER_DEPTH_MAX: usize = 16;
/// Most values in one `$in` or `$nin` list.
pub const IN_VALUES_MAX: usize = 1_000;
/// Most conditions plus list values in one filter.
pub const FILTER_TERMS_MAX: usize = 10_000;

impl Filter {
    /// Parses a filter object such as `{"age": {"$gte": 18}, "address.city": "Oslo"}`.
    /// `null` is accepted as the empty filter.
    pub fn parse(value: &Value) -> Result<Filter, QueryError> {
        if value.is_null() {
            return Ok(Filter::all());
        }
        Parser { terms: 0 }.filter(value, 0)
    }
}

struct Parser {
    /// Conditions and list values seen so far.
    terms: usize,
}

impl Parser {
    fn count(&mut self, terms: usize) -> Result<(), QueryError> {
        self.terms = self.terms.saturating_add(terms);
        if self.terms > FILTER_TERMS_MAX {
            return Err(QueryError::TooManyTerms {
                max: FILTER_TERMS_MAX,
            });
        }
        Ok(())
    }

    fn filter(&mut self, value: &Value, depth: usize) -> Result<Filter, QueryError> {
        if depth > FILTER_DEPTH_MAX {
            return Err(QueryError::TooDeep {
                depth_max: FILTER_DEPTH_MAX,
            });
        }
        let map = value
            .as_object()
            .ok_or(QueryError::NotAnObject { what: "a filter" })?;
        let mut parts = Vec::with_capacity(map.len());
        for (key, operand) in map {
            let part = match key.as_str() {
                "$and" => Filter::And(self.list("$and", operand, depth)?),
                "$or" => Filter::Or(self.list("$or", operand, depth)?),
                op if op.starts_with('$') => {
                    return Err(QueryError::UnknownOperator {
                        op: op.to_string(),
                        at: "the top of a filter".to_string(),
                    });
                }
                path => Filter::Field(self.field(path, operand, depth)?),
            };
            parts.push(part);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Filter::And(parts)
        })
    }

    fn list(
        &mut self,
        op: &'static str,
        operand: &Value,
        depth: usize,
    ) -> Result<Vec<Filter>, QueryError> {
        let items = operand
            .as_array()
            .filter(|items| !items.is_empty())
            .ok_or_else(|| QueryError::BadOperand {
                op,
                at: op.to_string(),
                expected: "a non-empty array of filter objects",
            })?;
        self.count(items.len())?;
        items
            .iter()
            .map(|item| self.filter(item, depth + 1))
            .collect()
    }

    fn field(
        &mut self,
        path: &str,
        operand: &Value,
        depth: usize,
    ) -> Result<FieldFilter, QueryError> {
        if !valid_path(path) {
            return Err(QueryError::InvalidPath(path.to_string()));
        }
        let conds = match operator_object(path, operand)? {
            Some(ops) => self.conds(path, ops, depth)?,
            None => {
                self.count(1)?;
                vec![Cond::Eq(Operand::new(operand.clone()))]
            }
        };
        Ok(FieldFilter {
            path: path.to_string(),
            conds,
        })
    }

    fn conds(
        &mut self,
        path: &str,
        ops: &Map<String, Value>,
        depth: usize,
    ) -> Result<Vec<Cond>, QueryError> {
        ops.iter()
            .map(|(op, operand)| self.cond(path, op, operand, depth))
            .collect()
    }

    fn cond(
        &mut self,
        path: &str,
        op: &str,
        operand: &Value,
        depth: usize,
    ) -> Result<Cond, QueryError> {
        self.count(1)?;
        let literal = || Operand::new(operand.clone());
        Ok(match op {
            "$eq" => Cond::Eq(literal()),
            "$ne" => Cond::Ne(literal()),
            "$gt" => Cond::Gt(literal()),
            "$gte" => Cond::Gte(literal()),
            "$lt" => Cond::Lt(literal()),
            "$lte" => Cond::Lte(literal()),
            "$in" => Cond::In(self.values("$in", path, operand)?),
            "$nin" => Cond::Nin(self.values("$nin", path, operand)?),
            "$exists" => Cond::Exists(operand.as_bool().ok_or_else(|| QueryError::BadOperand {
                op: "$exists",
                at: path.to_string(),
                expected: "true or false",
            })?),
            "$not" => {
                if depth + 1 > FILTER_DEPTH_MAX {
                    return Err(QueryError::TooDeep {
                        depth_max: FILTER_DEPTH_MAX,
                    });
                }
                let inner = operator_object(path, operand)?
                    .filter(|ops| !ops.is_empty())
                    .ok_or_else(|| QueryError::BadOperand {
                        op: "$not",
                        at: path.to_string(),
                        expected: "an object of operators, e.g. {\"$gt\": 5}",
                    })?;
                Cond::Not(self.conds(path, inner, depth + 1)?)
            }
            other => {
                return Err(QueryError::UnknownOperator {
                    op: other.to_string(),
                    at: path.to_string(),
                });
            }
        })
    }

    /// The operand of `$in`/`$nin`: an array, bounded, sorted by encoding, deduplicated.
    fn values(
        &mut self,
        op: &'static str,
        path: &str,
        operand: &Value,
    ) -> Result<Vec<Operand>, QueryError> {
        let items = operand.as_array().ok_or_else(|| QueryError::BadOperand {
            op,
            at: path.to_string(),
            expected: "an array of values",
        })?;
        if items.len() > IN_VALUES_MAX {
            return Err(QueryError::TooManyValues {
                op,
                at: path.to_string(),
                count: items.len(),
                max: IN_VALUES_MAX,
            });
        }
        self.count(items.len())?;
        let mut values: Vec<Operand> = items.iter().cloned().map(Operand::new).collect();
        values.sort_by(|a, b| a.key().cmp(b.key()));
        values.dedup_by(|a, b| a.key() == b.key());
        Ok(values)
    }
}

/// `Some(ops)` when `operand` is an object of `$` operators, `None` when it is a literal for
/// implicit equality (including `{}` and objects of plain fields). Mixing both is an error.
fn operator_object<'v>(
    path: &str,
    operand: &'v Value,
) -> Result<Option<&'v Map<String, Value>>, QueryError> {
    let Some(map) = operand.as_object() else {
        return Ok(None);
    };
    let operators = map.keys().filter(|k| k.starts_with('$')).count();
    if operators == 0 {
        Ok(None)
    } else if operators == map.len() {
        Ok(Some(map))
    } else {
        Err(QueryError::MixedOperators {
            at: path.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorCode;

    fn parse(v: Value) -> Result<Filter, QueryError> {
        Filter::parse(&v)
    }

    #[test]
    fn shapes() {
        assert_eq!(parse(json!({})).unwrap(), Filter::all());
        assert_eq!(parse(json!(null)).unwrap(), Filter::all());
        assert_eq!(
            parse(json!({"age": 3})).unwrap(),
            Filter::Field(FieldFilter {
                path: "age".into(),
                conds: vec![Cond::Eq(Operand::new(json!(3)))],
            })
        );
        let Filter::Field(f) = parse(json!({"age": {"$gt": 1, "$lt": 5}})).unwrap() else {
            panic!("one field")
        };
        assert_eq!(f.conds.len(), 2);
        let Filter::And(parts) = parse(json!({"a": 1, "b": 2, "$or": [{"c": 3}]})).unwrap() else {
            panic!("implicit and")
        };
        assert_eq!(parts.len(), 3);
        // A plain object is a literal for equality, not operators.
        assert_eq!(
            parse(json!({"a": {"b": 1}})).unwrap(),
            Filter::Field(FieldFilter {
                path: "a".into(),
                conds: vec![Cond::Eq(Operand::new(json!({"b": 1})))],
            })
        );
    }

    #[test]
    fn in_values_are_sorted_and_deduplicated() {
        let Filter::Field(f) = parse(json!({"a": {"$in": ["x", 2, 1, 2.0, null]}})).unwrap() else {
            panic!("one field")
        };
        let Cond::In(values) = &f.conds[0] else {
            panic!("in")
        };
        let got: Vec<&Value> = values.iter().map(Operand::value).collect();
        assert_eq!(got, [&json!(null), &json!(1), &json!(2), &json!("x")]);
    }

    fn err(v: Value) -> QueryError {
        Filter::parse(&v).unwrap_err()
    }

    #[test]
    fn refuses_bad_filters_with_named_reasons() {
        let e = err(json!({"a": {"$gte": 1, "$regex": "x"}}));
        assert_eq!(
            e,
            QueryError::UnknownOperator {
                op: "$regex".into(),
                at: "a".into()
            }
        );
        assert_eq!(e.code(), "invalid_query");
        assert!(e.to_string().contains("$regex"), "{e}");
        assert!(matches!(
            err(json!({"$nor": []})),
            QueryError::UnknownOperator { .. }
        ));
        assert!(matches!(err(json!([1])), QueryError::NotAnObject { .. }));
        assert!(matches!(
            err(json!({"$and": []})),
            QueryError::BadOperand { op: "$and", .. }
        ));
        assert!(matches!(
            err(json!({"$or": {"a": 1}})),
            QueryError::BadOperand { op: "$or", .. }
        ));
        assert!(matches!(
            err(json!({"$or": [1]})),
            QueryError::NotAnObject { .. }
        ));
        assert!(matches!(
            err(json!({"a": {"$in": 1}})),
            QueryError::BadOperand { op: "$in", .. }
        ));
        assert!(matches!(
            err(json!({"a": {"$nin": "x"}})),
            QueryError::BadOperand { op: "$nin", .. }
        ));
        assert!(matches!(
            err(json!({"a": {"$exists": 1}})),
            QueryError::BadOperand { op: "$exists", .. }
        ));
        assert!(matches!(
            err(json!({"a": {"$not": 3}})),
            QueryError::BadOperand { op: "$not", .. }
        ));
        assert!(matches!(
            err(json!({"a": {"$not": {}}})),
            QueryError::BadOperand { op: "$not", .. }
        ));
        assert!(matches!(
            err(json!({"a": {"$not": {"b": 1}}})),
            QueryError::BadOperand { op: "$not", .. }
        ));
        assert_eq!(
            err(json!({"a": {"$gt": 1, "b": 2}})),
            QueryError::MixedOperators { at: "a".into() }
        );
        for path in ["", "a..b", "a.$b", &"x".repeat(257)] {
            assert_eq!(
                err(json!({ path: 1 })),
                QueryError::InvalidPath(path.to_string()),
                "{path:?}"
            );
        }
    }

    #[test]
    fn bounds() {
        let mut deep = json!({"a": 1});
        for _ in 0..FILTER_DEPTH_MAX + 1 {
            deep = json!({ "$and": [deep] });
        }
        let e = err(deep);
        assert_eq!(
            e,
            QueryError::TooDeep {
                depth_max: FILTER_DEPTH_MAX
            }
        );
        assert_eq!(e.code(), "query_too_large");
        let mut ok = json!({"a": 1});
        for _ in 0..FILTER_DEPTH_MAX {
            ok = json!({ "$or": [ok] });
        }
        assert!(Filter::parse(&ok).is_ok());

        let mut nots = json!({"$eq": 1});
        for _ in 0..FILTER_DEPTH_MAX + 1 {
            nots = json!({ "$not": nots });
        }
        assert!(matches!(
            err(json!({ "a": nots })),
            QueryError::TooDeep { .. }
        ));

        let many: Vec<u32> = (0..=IN_VALUES_MAX as u32).collect();
        assert!(matches!(
            err(json!({"a": {"$in": many}})),
            QueryError::TooManyValues {
                op: "$in",
                count: 1001,
                ..
            }
        ));
        let enough: Vec<u32> = (0..IN_VALUES_MAX as u32).collect();
        let wide: Vec<Value> = (0..11)
            .map(|i| json!({ format!("f{i}"): {"$in": enough} }))
            .collect();
        assert_eq!(
            err(json!({ "$and": wide })),
            QueryError::TooManyTerms {
                max: FILTER_TERMS_MAX
            }
        );
    }
}
