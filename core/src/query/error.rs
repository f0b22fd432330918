//! Why a query was refused.
//!
//! Queries come from outside (HTTP bodies, the browser API), so every way they can be wrong is
//! an expected error with a message that names the problem and where it is. Two stable codes
//! reach the user: `invalid_query` for a query that does not make sense, and
//! `query_too_large` for one that breaks a bound (nesting, list lengths, limit, skip), so a
//! client can tell "fix your syntax" from "ask for less".

use crate::error::ErrorCode;

/// A query that cannot be run, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A part of the query that must be a JSON object is something else.
    #[error("{what} must be a JSON object")]
    NotAnObject { what: &'static str },
    /// An operator this engine does not know.
    #[error("unknown operator `{op}` at `{at}`")]
    UnknownOperator { op: String, at: String },
    /// An operator got an operand of the wrong type.
    #[error("`{op}` at `{at}` needs {expected}")]
    BadOperand {
        op: &'static str,
        at: String,
        expected: &'static str,
    },
    /// A condition object mixes `$` operators with plain field names.
    #[error(
        "the condition on `{at}` mixes operators and field names; \
         use either {{\"$op\": value, ...}} or a plain value for equality"
    )]
    MixedOperators { at: String },
    /// A field path is empty, has an empty segment, a segment starting with `$`, or is too long.
    #[error(
        "field path `{0}` is invalid: use dot-separated, non-empty names that do not start with `$` (at most 256 bytes)"
    )]
    InvalidPath(String),
    /// `$and`, `$or` and `$not` nest deeper than allowed.
    #[error("the filter nests deeper than {depth_max} levels")]
    TooDeep { depth_max: usize },
    /// A `$in` or `$nin` list is longer than allowed.
    #[error("`{op}` at `{at}` has {count} values; at most {max} are allowed")]
    TooManyValues {
        op: &'static str,
        at: String,
        count: usize,
        max: usize,
    },
    /// The filter has more conditions and list values in total than allowed.
    #[error("the filter has more than {max} conditions and values in total")]
    TooManyTerms { max: usize },
    /// The query body has a field other than `filter`, `sort`, `limit`, `skip`.
    #[error("unknown query field `{0}`; expected `filter`, `sort`, `limit` or `skip`")]
    UnknownField(String),
    /// The sort specification is malformed.
    #[error("invalid sort: {0}")]
    InvalidSort(String),
    /// A sort object with several keys: JSON objects do not keep key order here.
    #[error(
        "a sort object with {keys} keys has no reliable key order; \
         use the array form, e.g. [[\"age\", 1], [\"name\", -1]]"
    )]
    AmbiguousSortOrder { keys: usize },
    /// More sort keys than allowed.
    #[error("at most {max} sort keys are allowed")]
    TooManySortKeys { max: usize },
    /// `limit` or `skip` is not a non-negative integer.
    #[error("`{field}` must be a non-negative integer")]
    InvalidCount { field: &'static str },
    /// `limit` or `skip` is larger than allowed.
    #[error("`{field}` is {value}; at most {max} is allowed")]
    CountTooLarge {
        field: &'static str,
        value: u64,
        max: usize,
    },
}

impl ErrorCode for QueryError {
    fn code(&self) -> &'static str {
        match self {
            QueryError::TooDeep { .. }
            | QueryError::TooManyValues { .. }
            | QueryError::TooManyTerms { .. }
            | QueryError::TooManySortKeys { .. }
            | QueryError::CountTooLarge { .. } => "query_too_large",
            QueryError::NotAnObject { .. }
            | QueryError::UnknownOperator { .. }
            | QueryError::BadOperand { .. }
            | QueryError::MixedOperators { .. }
            | QueryError::InvalidPath(_)
            | QueryError::UnknownField(_)
            | QueryError::InvalidSort(_)
            | QueryError::AmbiguousSortOrder { .. }
            | QueryError::InvalidCount { .. } => "invalid_query",
        }
    }
}
