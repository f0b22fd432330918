//! Queries: the Mongo-style subset (`$eq $ne $gt $gte $lt $lte $in $nin $and $or $not
//! $exists`, dotted paths, sort, limit, skip), planned onto secondary indexes where one fits.
//!
//! Queries run wherever a replica holds data (the leader, native followers, browsers), so the
//! engine is plain functions over a [`DocSource`]: parse once, plan, execute. Filters and
//! indexes share one value order, the byte encoding of `index/key.rs`, so the planner can turn
//! predicates into index ranges that are exactly as wide as the predicates, and the executor's
//! final re-check of the whole filter makes any plan safe.
//!
//! ```text
//! JSON body ──FindQuery::parse──► FindQuery ──plan()──► Plan ──find()──► FindResult
//!                (filter tree,                 (id lookup,       (docs, plan,
//!                 sort, limit, skip)            index ranges,     examined)
//!                                               or full scan)
//! ```
//!
//! Module map: `filter.rs` (the typed tree and its semantics), `parse.rs` (filter JSON),
//! `find_query.rs` (request body, sort keys), `constraint.rs` and `interval.rs` (what a filter
//! implies per field, as byte ranges), `planner.rs`, `narrow.rs` and `plan.rs` (the choice of
//! access, the ranges of the chosen index, explain), `exec.rs` (execution) and
//! `candidates.rs` (its inner loop: the documents an access path yields), `source.rs` (what a
//! collection must provide).

mod candidates;
mod constraint;
mod error;
mod exec;
mod filter;
mod find_query;
mod interval;
mod narrow;
mod parse;
mod plan;
mod planner;
mod source;

pub use error::QueryError;
pub use exec::{CountResult, FindResult, count, find};
pub use filter::{Cond, FieldFilter, Filter, Operand};
pub use find_query::{
    FindQuery, LIMIT_MAX, SKIP_MAX, SORT_KEYS_MAX, SortKey, parse_sort, sort_key,
};
pub use parse::{FILTER_DEPTH_MAX, FILTER_TERMS_MAX, IN_VALUES_MAX};
pub use plan::{Access, IndexAccess, KeyRange, Plan};
pub use planner::{RANGES_MAX, plan};
pub use source::DocSource;
