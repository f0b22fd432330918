//! Writes on a follower (and on a cluster member that does not lead): forwarded to the leader
//! over HTTP, answered with the leader's answer.
//!
//! A client talks to one API whichever node it reaches. The follower does not parse or check
//! the write: it passes the method, path, query (`?ack=`, `?if_version=`), body and the
//! headers that carry meaning (`Authorization`, `Content-Type`, `If-Match`, `If-None-Match`)
//! to the leader, and returns the leader's status, body and `ETag` unchanged. The answer's
//! `lsn` lets the client read its own write here with `?min_lsn=`.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::body::TXN_BODY_BYTES_MAX;
use super::error::ApiError;

/// Request headers passed to the leader.
const FORWARDED_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
];

/// Response headers passed back to the client.
const RETURNED_HEADERS: [HeaderName; 2] = [header::CONTENT_TYPE, header::ETAG];

/// Marks a request one member forwarded to another, so it is never forwarded again (two
/// members that each think the other leads, during an election, would pass it back and forth).
pub const FORWARDED_BY: &str = "x-cstore-forwarded-by";

/// Any write route on a follower.
pub async fn forward(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let follower = app
        .node
        .follower()
        .expect("forwarding routes are mounted on followers only");
    let response = forward_to(
        &follower.leader_http_base(),
        follower.http_client(),
        None,
        request,
    )
    .await?;
    metrics::counter!("cstore_follower_forwarded_writes_total").increment(1);
    Ok(response)
}

/// Sends `request` to the node at `base` (`http://host:port`) and returns its answer; `by`
/// marks it as forwarded by that cluster member.
pub async fn forward_to(
    base: &str,
    http: &reqwest::Client,
    by: Option<u64>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    // The leader's own limit is the largest of any write route; it checks the exact one.
    let limit = parts
        .extensions
        .get::<crate::edge::RequestEdge>()
        .map_or(TXN_BODY_BYTES_MAX, |edge| edge.bodies.txn_body_bytes_max);
    let body = to_bytes(body, limit)
        .await
        .map_err(|e| match super::body::body_read_error(e) {
            timeout @ ApiError::BodyTimeout(_) => timeout,
            _ => ApiError::BodyTooLarge { limit_bytes: limit },
        })?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let url = format!("{base}{path}");
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|e| ApiError::Internal(format!("method {}: {e}", parts.method)))?;
    let mut outgoing = http.request(method, &url).body(body);
    if let Some(by) = by {
        outgoing = outgoing.header(FORWARDED_BY, by.to_string());
    }
    for name in FORWARDED_HEADERS {
        for value in parts.headers.get_all(&name) {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let unavailable = |e: reqwest::Error| ApiError::LeaderUnavailable {
        leader: base.to_string(),
        reason: e.to_string(),
    };
    let answer = outgoing.send().await.map_err(unavailable)?;
    let status = StatusCode::from_u16(answer.status().as_u16())
        .map_err(|e| ApiError::Internal(format!("leader status: {e}")))?;
    let mut response = Response::builder().status(status);
    for name in RETURNED_HEADERS {
        if let Some(value) = answer.headers().get(name.as_str()) {
            response = response.header(name, value.as_bytes());
        }
    }
    let bytes = answer.bytes().await.map_err(unavailable)?;
    Ok(response
        .body(Body::from(bytes))
        .map_err(|e| ApiError::Internal(format!("forwarded response: {e}")))?
        .into_response())
}
