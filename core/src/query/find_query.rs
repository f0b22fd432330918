//! A whole find request: filter, sort, limit and skip, and the sort order it asks for.
//!
//! The JSON body is `{"filter": {...}, "sort": ..., "limit": n, "skip": n}`, every field
//! optional. Sort order must be unambiguous, and in this workspace a JSON object does not keep
//! its key order (serde_json's `Map` is a `BTreeMap` here), so these forms are accepted:
//!
//! ```text
//! "sort": {"age": -1}                      one key: an object is fine
//! "sort": [["age", 1], ["name", -1]]       pairs, most significant first
//! "sort": [{"age": 1}, {"name": -1}]       one-key objects, most significant first
//! ```
//!
//! An object with two or more keys is refused with a message pointing to the array form,
//! rather than sorted in an order the user did not write. Directions are `1` and `-1`.
//!
//! Sorting compares the concatenated index-order encodings of the sort fields (missing sorts
//! as `null`), then the `_id`: every result order is total and deterministic.

use serde_json::{Map, Value};

use super::error::QueryError;
use super::filter::Filter;
use crate::doc::FieldSource;
use crate::index::key::{encode_component, encode_str};
use crate::index::spec::valid_path;

/// Largest `limit`.
pub const LIMIT_MAX: usize = 10_000;
/// Largest `skip`: skipped documents are still read and matched.
pub const SKIP_MAX: usize = 100_000;
/// Most sort keys.
pub const SORT_KEYS_MAX: usize = 8;

/// One sort key: a dotted path and a direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// Dotted path into the document.
    pub path: String,
    /// Descending when true.
    pub desc: bool,
}

impl SortKey {
    /// An ascending sort key.
    pub fn asc(path: &str) -> SortKey {
        SortKey {
            path: path.to_string(),
            desc: false,
        }
    }

    /// A descending sort key.
    pub fn desc(path: &str) -> SortKey {
        SortKey {
            path: path.to_string(),
            desc: true,
        }
    }
}

/// A find request.
#[derive(Clone, Debug, PartialEq)]
pub struct FindQuery {
    /// Which documents.
    pub filter: Filter,
    /// Result order, most significant first; ties (and an empty sort) go by `_id` ascending.
    pub sort: Vec<SortKey>,
    /// At most this many documents; `None` for all. `Some(0)` returns nothing.
    pub limit: Option<usize>,
    /// Leave out this many matching documents first.
    pub skip: usize,
}

impl Default for FindQuery {
    fn default() -> FindQuery {
        FindQuery::all()
    }
}

impl FindQuery {
    /// Every document in `_id` order.
    pub fn all() -> FindQuery {
        FindQuery {
            filter: Filter::all(),
            sort: Vec::new(),
            limit: None,
            skip: 0,
        }
    }

    /// Parses a request body `{filter, sort, limit, skip}`; `null` is the empty request.
    pub fn parse(body: &Value) -> Result<FindQuery, QueryError> {
        let empty = Map::new();
        let map = match body {
            Value::Null => &empty,
            Value::Object(map) => map,
            _ => {
                return Err(QueryError::NotAnObject {
                    what: "a find request",
                });
            }
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "filter" | "sort" | "limit" | "skip"))
        {
            return Err(QueryError::UnknownField(unknown.clone()));
        }
        let null = Value::Null;
        let query = FindQuery {
            filter: Filter::parse(map.get("filter").unwrap_or(&null))?,
            sort: parse_sort(map.get("sort").unwrap_or(&null))?,
            limit: parse_count(map.get("limit").unwrap_or(&null), "limit", LIMIT_MAX)?,
            skip: parse_count(map.get("skip").unwrap_or(&null), "skip", SKIP_MAX)?.unwrap_or(0),
        };
        query.validate()?;
        Ok(query)
    }

    /// Checks the bounds a parsed query already meets; for queries built in code.
    pub fn validate(&self) -> Result<(), QueryError> {
        if let Some(limit) = self.limit {
            check_count("limit", limit as u64, LIMIT_MAX)?;
        }
        check_count("skip", self.skip as u64, SKIP_MAX)?;
        check_sort(&self.sort)
    }

    /// The byte string this query sorts `doc` by (see [`sort_key`]).
    pub fn sort_key<D: FieldSource + ?Sized>(&self, doc: &D) -> Vec<u8> {
        sort_key(&self.sort, doc)
    }
}

/// The byte string that orders `doc` under `sort`: each sort field's index-order encoding
/// (inverted when descending; missing encodes as `null`), then the `_id`. Comparing two of
/// these compares the documents in result order.
pub fn sort_key<D: FieldSource + ?Sized>(sort: &[SortKey], doc: &D) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 * (sort.len() + 1));
    for k in sort {
        encode_component(doc.field(&k.path).as_deref(), k.desc, &mut key);
    }
    let id = doc.field(crate::doc::ID_FIELD);
    let id = id.as_deref().and_then(Value::as_str);
    encode_str(id.expect("stored documents have a string _id"), &mut key);
    key
}

/// Parses the `sort` field in one of the accepted forms (see the module docs).
pub fn parse_sort(value: &Value) -> Result<Vec<SortKey>, QueryError> {
    let keys = match value {
        Value::Null => Vec::new(),
        Value::Object(map) => match map.len() {
            0 => Vec::new(),
            1 => {
                let (path, dir) = map.iter().next().expect("one key");
                vec![sort_entry(path, dir)?]
            }
            keys => return Err(QueryError::AmbiguousSortOrder { keys }),
        },
        Value::Array(items) => {
            if items.len() > SORT_KEYS_MAX {
                return Err(QueryError::TooManySortKeys { max: SORT_KEYS_MAX });
            }
            items.iter().map(sort_item).collect::<Result<_, _>>()?
        }
        _ => {
            return Err(QueryError::InvalidSort(
                "use {\"path\": 1 or -1} or an array like [[\"age\", 1], [\"name\", -1]]"
                    .to_string(),
            ));
        }
    };
    check_sort(&keys)?;
    Ok(keys)
}

fn sort_item(item: &Value) -> Result<SortKey, QueryError> {
    match item {
        Value::Array(pair) if pair.len() == 2 => match &pair[0] {
            Value::String(path) => sort_entry(path, &pair[1]),
            _ => Err(bad_sort_item()),
        },
        Value::Object(map) if map.len() == 1 => {
            let (path, dir) = map.iter().next().expect("one key");
            sort_entry(path, dir)
        }
        _ => Err(bad_sort_item()),
    }
}

fn bad_sort_item() -> QueryError {
    QueryError::InvalidSort(
        "each entry of a sort array must be [\"path\", 1 or -1] or {\"path\": 1 or -1}".to_string(),
    )
}

fn sort_entry(path: &str, dir: &Value) -> Result<SortKey, QueryError> {
    let desc = match dir.as_i64() {
        Some(1) => false,
        Some(-1) => true,
        _ => {
            return Err(QueryError::InvalidSort(format!(
                "the direction of `{path}` must be 1 or -1, not {dir}"
            )));
        }
    };
    Ok(SortKey {
        path: path.to_string(),
        desc,
    })
}

fn check_sort(keys: &[SortKey]) -> Result<(), QueryError> {
    if keys.len() > SORT_KEYS_MAX {
        return Err(QueryError::TooManySortKeys { max: SORT_KEYS_MAX });
    }
    for (i, key) in keys.iter().enumerate() {
        if !valid_path(&key.path) {
            return Err(QueryError::InvalidPath(key.path.clone()));
        }
        if keys[..i].iter().any(|k| k.path == key.path) {
            return Err(QueryError::InvalidSort(format!(
                "`{}` appears twice",
                key.path
            )));
        }
    }
    Ok(())
}

fn parse_count(
    value: &Value,
    field: &'static str,
    max: usize,
) -> Result<Option<usize>, QueryError> {
    if value.is_null() {
        return Ok(None);
    }
    let n = value.as_u64().ok_or(QueryError::InvalidCount { field })?;
    check_count(field, n, max)?;
    Ok(Some(usize::try_from(n).expect("bounded by max")))
}

fn check_count(field: &'static str, value: u64, max: usize) -> Result<(), QueryError> {
    if value > max as u64 {
        return Err(QueryError::CountTooLarge { field, value, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn parses_a_full_body() {
        let q = FindQuery::parse(&json!({
            "filter": {"age": {"$gte": 18}},
            "sort": [["age", -1], {"name": 1}],
            "limit": 10,
            "skip": 5
        }))
        .unwrap();
        assert_eq!(q.sort, [SortKey::desc("age"), SortKey::asc("name")]);
        assert_eq!((q.limit, q.skip), (Some(10), 5));
        assert_eq!(
            q.filter,
            Filter::parse(&json!({"age": {"$gte": 18}})).unwrap()
        );
        assert_eq!(FindQuery::parse(&json!({})).unwrap(), FindQuery::all());
        assert_eq!(FindQuery::parse(&json!(null)).unwrap(), FindQuery::all());
        let q = FindQuery::parse(&json!({"sort": {"a.b": -1}, "limit": null})).unwrap();
        assert_eq!(q.sort, [SortKey::desc("a.b")]);
        assert_eq!(q.limit, None);
    }

    #[test]
    fn refuses_ambiguous_or_bad_sorts() {
        let e = parse_sort(&json!({"a": 1, "b": -1})).unwrap_err();
        assert_eq!(e, QueryError::AmbiguousSortOrder { keys: 2 });
        assert!(e.to_string().contains("[[\"age\", 1]"), "{e}");
        assert_eq!(e.code(), "invalid_query");
        for bad in [
            json!("age"),
            json!({"a": 0}),
            json!({"a": "asc"}),
            json!([["a"]]),
            json!([[1, 1]]),
            json!([{"a": 1, "b": 1}]),
            json!([["a", 1], ["a", -1]]),
        ] {
            assert!(
                matches!(parse_sort(&bad), Err(QueryError::InvalidSort(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_sort(&json!({"$a": 1})),
            Err(QueryError::InvalidPath(_))
        ));
        let many: Vec<Value> = (0..=SORT_KEYS_MAX)
            .map(|i| json!([format!("f{i}"), 1]))
            .collect();
        assert_eq!(
            parse_sort(&Value::Array(many)).unwrap_err().code(),
            "query_too_large"
        );
    }

    #[test]
    fn refuses_bad_bodies_and_counts() {
        assert_eq!(
            FindQuery::parse(&json!({"filtre": {}})).unwrap_err(),
            QueryError::UnknownField("filtre".into())
        );
        assert!(matches!(
            FindQuery::parse(&json!([1])),
            Err(QueryError::NotAnObject { .. })
        ));
        for bad in [json!(-1), json!(1.5), json!("3")] {
            assert_eq!(
                FindQuery::parse(&json!({ "limit": bad })).unwrap_err(),
                QueryError::InvalidCount { field: "limit" }
            );
        }
        let e = FindQuery::parse(&json!({ "limit": LIMIT_MAX + 1 })).unwrap_err();
        assert_eq!(e.code(), "query_too_large");
        assert!(FindQuery::parse(&json!({ "limit": LIMIT_MAX })).is_ok());
        assert!(matches!(
            FindQuery::parse(&json!({ "skip": SKIP_MAX + 1 })),
            Err(QueryError::CountTooLarge { field: "skip", .. })
        ));
        let built = FindQuery {
            limit: Some(LIMIT_MAX + 1),
            ..FindQuery::all()
        };
        assert!(built.validate().is_err());
    }

    #[test]
    fn sort_keys_order_documents() {
        let sort = [SortKey::asc("a"), SortKey::desc("b")];
        let k = |doc: Value| sort_key(&sort, &doc);
        // a ascending first; missing a sorts as null, before numbers.
        assert!(k(json!({"_id": "z"})) < k(json!({"_id": "a", "a": 1})));
        assert!(k(json!({"_id": "z", "a": 1})) < k(json!({"_id": "a", "a": 2})));
        // b descending within equal a.
        assert!(k(json!({"_id": "z", "a": 1, "b": 9})) < k(json!({"_id": "a", "a": 1, "b": 1})));
        // ties by _id ascending.
        assert!(k(json!({"_id": "a", "a": 1, "b": 1})) < k(json!({"_id": "b", "a": 1, "b": 1})));
    }
}
