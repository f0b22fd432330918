//! Reading JSON request bodies with a size bound, into the JSON error shape.
//!
//! axum's `Json` extractor answers a wrong content type or a bad body in plain text with its
//! own statuses; [`JsonBody`] does the same checks in the order a client can act on (media
//! type, then size, then syntax) and fails with [`ApiError`]s. The bound is checked against
//! `Content-Length` first and then while streaming, so a lying or chunked client cannot make
//! the server buffer more than the limit.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use serde_json::Value;

use super::error::ApiError;
use crate::edge::RequestEdge;
use crate::edge::body::is_body_timeout;

/// Largest body of a document route (insert, put, patch) and of a find, in bytes. Canonical
/// documents are limited to 1 MiB by core; the slack is for the client's whitespace.
pub const DOC_BODY_BYTES_MAX: usize = 2 << 20;
/// Largest body of `/v1/txn`, in bytes.
pub const TXN_BODY_BYTES_MAX: usize = 32 << 20;

/// A request body parsed as JSON, at most `LIMIT` bytes, sent as `application/json`.
#[derive(Debug)]
pub struct JsonBody<const LIMIT: usize>(pub Value);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for JsonBody<LIMIT> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBytes(bytes) = JsonBytes::<LIMIT>::from_request(request, state).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

/// A request body as [`JsonBody`] checks it (media type, size, not empty), left as bytes for
/// a route that reads it without building a tree first (`/v1/txn`, `/v1/txns` and
/// `POST /v1/c/{c}`). Its syntax is not checked yet: [`parse_json`] says what is wrong with
/// it in the same words as `JsonBody`.
#[derive(Debug)]
pub struct JsonBytes<const LIMIT: usize>(pub Vec<u8>);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for JsonBytes<LIMIT> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        if !is_json(&parts.headers) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = configured_limit(parts.extensions.get::<RequestEdge>(), LIMIT);
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(declared) = declared.filter(|n| *n > limit as u64) {
            if declared <= DRAIN_BYTES_MAX {
                drain(body.into_data_stream()).await;
            }
            return Err(ApiError::BodyTooLarge { limit_bytes: limit });
        }
        let bytes = read_bounded(body, limit).await?;
        if bytes.is_empty() {
            return Err(ApiError::InvalidJson("the body is empty".into()));
        }
        Ok(JsonBytes(bytes))
    }
}

/// A body's bytes as a JSON tree, or `400 invalid_json` saying where they are wrong.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// The bound a route of compile-time bound `route_limit` applies: the document and
/// transaction routes take theirs from `--doc-body-max-bytes` / `--txn-body-max-bytes` (when
/// the request came through the edge), the small cluster routes keep their own.
fn configured_limit(edge: Option<&RequestEdge>, route_limit: usize) -> usize {
    match edge {
        Some(edge) if route_limit == DOC_BODY_BYTES_MAX => edge.bodies.doc_body_bytes_max,
        Some(edge) if route_limit == TXN_BODY_BYTES_MAX => edge.bodies.txn_body_bytes_max,
        _ => route_limit,
    }
}

/// True for `application/json` and its `+json` relatives (`application/merge-patch+json` is
/// what RFC 7386 names for PATCH bodies), with or without parameters such as `charset`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let mime = mime.trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Most bytes of an oversized body read and thrown away before answering 413.
const DRAIN_BYTES_MAX: u64 = 64 << 20;
/// Longest time spent doing so.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Collects the body, failing as soon as it passes `limit` bytes.
async fn read_bounded(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(body_read_error)?;
        if bytes.len() + chunk.len() > limit {
            drain(stream).await;
            return Err(ApiError::BodyTooLarge { limit_bytes: limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The error of a body that could not be read: its deadline passed (`408 body_timeout`), or
/// the connection failed.
pub(super) fn body_read_error(error: axum::Error) -> ApiError {
    let timed_out =
        std::error::Error::source(&error).is_some_and(is_body_timeout) || is_body_timeout(&error);
    if timed_out {
        ApiError::BodyTimeout(error.to_string())
    } else {
        ApiError::InvalidJson(format!("reading the body: {error}"))
    }
}

/// Reads and discards the rest of a body (bounded in bytes and time) before an error answer.
/// Closing a connection with unread request bytes makes the kernel send a reset, which can
/// destroy the answer before the client reads it; draining first is the "lingering close" of
/// RFC 9112 §9.6. A body past the bounds gets its answer anyway, and may see the reset.
async fn drain(mut stream: axum::body::BodyDataStream) {
    let discard = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_BYTES_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}
