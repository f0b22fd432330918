//! Extractors for what a request says outside its body: path segments, `?ack=`, and
//! preconditions. Each validates what it extracts, so a handler only ever sees a valid
//! collection name, a valid id, a policy it can honour and a well-formed precondition.

use std::time::Duration;

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Uri, header};

use cstore_core::Lsn;
use cstore_core::doc::{DocError, validate_collection_name, validate_id};

use super::error::ApiError;
use crate::node::{MIN_LSN_TIMEOUT_MS_MAX, ReadFloor};
use crate::replicate::{AckPolicy, AckUnknown, InvalidAck};

/// The `{collection}` of a route, validated.
#[derive(Debug)]
pub struct CollectionPath(pub String);

/// The `{collection}` and `{id}` of a route, validated.
#[derive(Debug)]
pub struct DocPath {
    /// A valid collection name.
    pub collection: String,
    /// A valid document id.
    pub id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for CollectionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let collection = path_param(parts, state, "collection").await?;
        validate_collection_name(&collection)?;
        Ok(CollectionPath(collection))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DocPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let collection = path_param(parts, state, "collection").await?;
        validate_collection_name(&collection)?;
        let id = path_param(parts, state, "id").await?;
        validate_id(&id)?;
        Ok(DocPath { collection, id })
    }
}

/// One percent-decoded path parameter. A segment that does not decode to UTF-8 is an invalid
/// name or id, reported as such.
async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    key: &str,
) -> Result<String, ApiError> {
    let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
        .await
        .map_err(|rejection| match rejection {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } if key == "collection" => {
                    DocError::InvalidCollectionName("<not UTF-8>".into()).into()
                }
                ErrorKind::InvalidUtf8InPathParam { .. } => DocError::InvalidId.into(),
                _ => ApiError::Internal(format!("path parameters: {e}")),
            },
            other => ApiError::Internal(format!("path parameters: {other}")),
        })?;
    params
        .into_iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value)
        .ok_or_else(|| ApiError::Internal(format!("route has no `{{{key}}}` parameter")))
}

/// Default of `?ack_timeout_ms=`.
pub const ACK_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Largest `?ack_timeout_ms=`.
pub const ACK_TIMEOUT_MS_MAX: u64 = 60_000;

/// The `?ack=` and `?ack_timeout_ms=` of a write: parsed on every write route.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    /// When the write may be answered.
    pub policy: AckPolicy,
    /// How long to wait for replica acknowledgements before answering `ack_unknown`.
    pub timeout_ms: u64,
}

impl Ack {
    /// Take before the write commits, and keep until [`Ack::settle`] returns: while a write
    /// will wait for replicas, the sessions ask replicas that acknowledge on request with
    /// every batch of entries (`Hub::hold_acks`), so this write's entries never go out unasked.
    /// `None` when the policy waits for no replica acknowledgement.
    pub fn hold<'a>(&self, app: &'a super::AppState) -> Option<crate::replicate::AcksHeld<'a>> {
        match self.policy {
            AckPolicy::Local => None,
            // In cluster mode `all` waits for the voters, not for replicas.
            AckPolicy::All if app.node.cluster().is_some() => None,
            AckPolicy::Replicas(_) | AckPolicy::All => Some(app.replication.hub().hold_acks()),
        }
    }

    /// Waits until the write at `lsn` (durable on this node) satisfies the policy; a timeout
    /// is `ack_unknown`, carrying the LSN.
    ///
    /// In cluster mode the write is already committed (durable on a majority of voters) when
    /// it gets here, which is what `local` means there; `all` waits until every voter holds
    /// it too; `replicas:N` counts this member's read replicas on top of the commit.
    pub async fn settle(&self, app: &super::AppState, lsn: Lsn) -> Result<(), ApiError> {
        let timeout = Duration::from_millis(self.timeout_ms);
        let unknown = |why| ApiError::AckUnknown {
            lsn,
            policy: self.policy,
            why,
        };
        if let (Some(cluster), AckPolicy::All) = (app.node.cluster(), self.policy) {
            return if cluster.wait_voters_hold(lsn, timeout).await {
                Ok(())
            } else {
                Err(unknown(AckUnknown::Timeout {
                    timeout_ms: self.timeout_ms,
                }))
            };
        }
        app.replication
            .wait_acked(lsn, self.policy, timeout)
            .await
            .map_err(unknown)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ack {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let policy = match query_value(&parts.uri, "ack")? {
            QueryValue::Absent => AckPolicy::default(),
            QueryValue::Repeated => {
                return Err(ApiError::InvalidAck(InvalidAck(
                    "(`ack` given more than once)".into(),
                )));
            }
            QueryValue::One(text) => text.parse::<AckPolicy>()?,
        };
        let timeout_ms = match query_value(&parts.uri, "ack_timeout_ms")? {
            QueryValue::Absent => ACK_TIMEOUT_MS_DEFAULT,
            QueryValue::Repeated => {
                return Err(ApiError::InvalidAckTimeout(
                    "`ack_timeout_ms` is given more than once".into(),
                ));
            }
            QueryValue::One(text) => text
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=ACK_TIMEOUT_MS_MAX).contains(ms))
                .ok_or_else(|| {
                    ApiError::InvalidAckTimeout(format!(
                        "{text:?}: use a number of milliseconds from 1 to {ACK_TIMEOUT_MS_MAX}"
                    ))
                })?,
        };
        Ok(Ack { policy, timeout_ms })
    }
}

/// How fresh a read must be: `?min_lsn=N` (the state must include LSN `N`, e.g. the client's
/// own write) and `?min_lsn_timeout_ms=T` (how long to wait for it; default 5000, at most
/// 60000). A find may give both in its body instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinLsn(pub ReadFloor);

impl<S: Send + Sync> FromRequestParts<S> for MinLsn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut floor = ReadFloor::default();
        if let Some(text) = single_query(&parts.uri, "min_lsn")? {
            floor.min_lsn = Some(Lsn(parse_u64(&text, "min_lsn")?));
        }
        if let Some(text) = single_query(&parts.uri, "min_lsn_timeout_ms")? {
            floor.timeout_ms = check_timeout_ms(parse_u64(&text, "min_lsn_timeout_ms")?)?;
        }
        if let Some(text) = single_query(&parts.uri, "consistency")? {
            floor.linearizable = parse_consistency(&text)?;
        }
        Ok(MinLsn(floor))
    }
}

/// `consistency=local` (the default: this node's state, with `min_lsn` if given) or
/// `consistency=linearizable`; true for the latter.
pub fn parse_consistency(text: &str) -> Result<bool, ApiError> {
    match text {
        "local" => Ok(false),
        "linearizable" => Ok(true),
        other => Err(ApiError::InvalidQuery(format!(
            "`consistency` {other:?} is not `local` or `linearizable`"
        ))),
    }
}

/// A `min_lsn_timeout_ms` within bounds.
pub fn check_timeout_ms(timeout_ms: u64) -> Result<u64, ApiError> {
    if timeout_ms > MIN_LSN_TIMEOUT_MS_MAX {
        return Err(ApiError::InvalidQuery(format!(
            "`min_lsn_timeout_ms` {timeout_ms} is over the limit of {MIN_LSN_TIMEOUT_MS_MAX}"
        )));
    }
    Ok(timeout_ms)
}

fn single_query(uri: &Uri, key: &str) -> Result<Option<String>, ApiError> {
    match query_value(uri, key)? {
        QueryValue::Absent => Ok(None),
        QueryValue::One(text) => Ok(Some(text)),
        QueryValue::Repeated => Err(ApiError::InvalidQuery(format!(
            "`{key}` is given more than once"
        ))),
    }
}

/// `?key=N`, a whole number, when given once.
pub(super) fn single_u64(uri: &Uri, key: &str) -> Result<Option<u64>, ApiError> {
    single_query(uri, key)?
        .map(|text| parse_u64(&text, key))
        .transpose()
}

fn parse_u64(text: &str, key: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .map_err(|_| ApiError::InvalidQuery(format!("`{key}` {text:?} is not a whole number")))
}

/// A write's precondition on the document's version, from `?if_version=N`, `If-Match: "N"`
/// or `If-None-Match: *` (which is `if_version=0`: "must not exist"). When several are given
/// they must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precondition(pub Option<Lsn>);

impl<S: Send + Sync> FromRequestParts<S> for Precondition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut found: Vec<(&str, Lsn)> = Vec::new();
        match query_value(&parts.uri, "if_version")? {
            QueryValue::Absent => {}
            QueryValue::Repeated => {
                return Err(ApiError::InvalidVersion(
                    "`if_version` is given more than once".into(),
                ));
            }
            QueryValue::One(text) => {
                found.push(("if_version", parse_version(&text, "if_version")?))
            }
        }
        if let Some(value) = single_header(&parts.headers, header::IF_MATCH)? {
            if value == "*" {
                return Err(ApiError::InvalidVersion(
                    "`If-Match: *` is not supported: send the version from the ETag".into(),
                ));
            }
            found.push(("If-Match", parse_version(&value, "If-Match")?));
        }
        if let Some(value) = single_header(&parts.headers, header::IF_NONE_MATCH)? {
            if value != "*" {
                return Err(ApiError::InvalidVersion(
                    "on a write, `If-None-Match` must be `*` (\"must not exist\")".into(),
                ));
            }
            found.push(("If-None-Match", Lsn::ZERO));
        }
        if let Some(((first, a), (second, b))) = found
            .iter()
            .zip(found.iter().skip(1))
            .find(|((_, a), (_, b))| a != b)
        {
            return Err(ApiError::InvalidVersion(format!(
                "{first} ({}) and {second} ({}) disagree",
                a.0, b.0
            )));
        }
        Ok(Precondition(found.first().map(|(_, lsn)| *lsn)))
    }
}

/// The ETag of a document version: its LSN in quotes.
pub fn etag(version: Lsn) -> String {
    format!("\"{}\"", version.0)
}

/// A version as a client may write it: `N` or `"N"` (an ETag).
fn parse_version(text: &str, source: &str) -> Result<Lsn, ApiError> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidVersion(format!(
            "{source} {text:?} is not a version (a document's LSN, e.g. \"12\")"
        )));
    }
    digits
        .parse::<u64>()
        .map(Lsn)
        .map_err(|_| ApiError::InvalidVersion(format!("{source} {text:?} is out of range")))
}

/// What the query string says about one key.
enum QueryValue {
    Absent,
    One(String),
    Repeated,
}

/// The value of `key` in the query string. Other keys are ignored.
fn query_value(uri: &Uri, key: &str) -> Result<QueryValue, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::InvalidQuery(format!("the query string does not parse: {e}")))?;
    let mut values = pairs.into_iter().filter(|(k, _)| k == key).map(|(_, v)| v);
    Ok(match (values.next(), values.next()) {
        (None, _) => QueryValue::Absent,
        (Some(value), None) => QueryValue::One(value),
        (Some(_), Some(_)) => QueryValue::Repeated,
    })
}

/// The value of a header that may appear at most once.
fn single_header(headers: &HeaderMap, name: HeaderName) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(&name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(|v| Some(v.trim().to_string()))
            .map_err(|_| ApiError::InvalidVersion(format!("{name} is not ASCII"))),
        (Some(_), Some(_)) => Err(ApiError::InvalidVersion(format!(
            "{name} is given more than once"
        ))),
    }
}
