//! A query plan: how the executor finds its candidate documents, and whether it must sort.
//!
//! A plan is a promise of a *superset*: the candidates it yields include every matching
//! document, and the executor re-checks the whole filter on each one. So a plan can make a query
//! slow, never wrong. The one exception is a plan marked [`Plan::exact`], whose candidates are
//! provably the matches themselves (see the planner): there the re-check is redundant and runs
//! only in debug builds, as an assertion. [`Plan::explain`] renders the choice for users
//! (`"explain"` in the API).

use std::ops::Bound;

use serde_json::{Value, json};

/// How candidates are found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every document, in `_id` order.
    FullScan,
    /// These `_id`s, in ascending order, looked up one by one.
    IdLookup {
        /// Distinct ids, ascending.
        ids: Vec<String>,
    },
    /// Ranges of one secondary index.
    Index(IndexAccess),
}

/// A walk over ranges of one secondary index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexAccess {
    /// Position of the index in [`super::DocSource::indexes`].
    pub position: usize,
    /// The index's name, checked against the position when the plan runs.
    pub name: String,
    /// Disjoint entry ranges in ascending byte order.
    pub ranges: Vec<KeyRange>,
    /// Walk the ranges backwards (equal keys still come in ascending `_id` order).
    pub reverse: bool,
    /// Leading index fields pinned by equality or `$in`.
    pub eq_fields: usize,
    /// The next field is narrowed by a range.
    pub range_field: bool,
    /// The walk yields documents in the requested sort order.
    pub sorted_by_index: bool,
}

/// A range of raw index entries (`key ++ encoded id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound on entries.
    pub lower: Bound<Vec<u8>>,
    /// Upper bound on entries.
    pub upper: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every entry.
    pub fn all() -> KeyRange {
        KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }
}

/// The planner's decision for one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Where candidates come from.
    pub access: Access,
    /// Matches must be sorted in memory (the access order is not the requested order).
    pub in_memory_sort: bool,
    /// Every candidate matches the filter: the access narrows exactly on every field the
    /// filter constrains, and the filter says nothing else. The executor then skips its
    /// re-check (asserting it in debug builds).
    pub exact: bool,
}

impl Plan {
    /// The plan as JSON, e.g. `{"strategy":"index_range","index":"by_age","ranges":1,
    /// "sorted_by_index":true,...}`, `{"strategy":"full_scan",...}` or
    /// `{"strategy":"id_lookup","ids":2,...}`. `index_scan` is a walk over a whole index,
    /// chosen for its order.
    pub fn explain(&self) -> Value {
        match &self.access {
            Access::FullScan => json!({
                "strategy": "full_scan",
                "in_memory_sort": self.in_memory_sort,
            }),
            Access::IdLookup { ids } => json!({
                "strategy": "id_lookup",
                "ids": ids.len(),
                "in_memory_sort": self.in_memory_sort,
            }),
            Access::Index(index) => json!({
                "strategy": if index.eq_fields == 0 && !index.range_field {
                    "index_scan"
                } else {
                    "index_range"
                },
                "index": index.name,
                "ranges": index.ranges.len(),
                "eq_fields": index.eq_fields,
                "range_field": index.range_field,
                "reverse": index.reverse,
                "sorted_by_index": index.sorted_by_index,
                "in_memory_sort": self.in_memory_sort,
            }),
        }
    }
}
