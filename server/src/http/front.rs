//! The one layer in front of every route: cross-origin headers, request metrics and a debug
//! line per request.
//!
//! One middleware rather than a stack of them (tower-http's `CorsLayer` and `TraceLayer`, a
//! metrics middleware) because each layer's futures are polled on every wake-up of every
//! request and each built its own headers or span anew: on a durable insert the stack cost
//! more server CPU than the handler (docs/bench/single-node-insert-profile.md). What it
//! answers is fixed, so its headers are constants.
//!
//! Cross-origin requests are allowed from any origin: an app served elsewhere (the npm
//! package's usual case) reads and writes with a bearer token, never with cookies, so an
//! origin gains nothing a token does not already grant. The headers the API reads and the
//! `ETag` it answers with are allowed through. No answer depends on the request's `Origin` or
//! its preflight headers, so none carries a `Vary` for them.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
const ALLOWED_METHODS: HeaderValue = HeaderValue::from_static("GET,POST,PUT,PATCH,DELETE");
const ALLOWED_HEADERS: HeaderValue =
    HeaderValue::from_static("authorization,content-type,if-match,if-none-match");
const EXPOSED_HEADERS: HeaderValue = HeaderValue::from_static("etag");
/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: HeaderValue = HeaderValue::from_static("600");

/// Answers a preflight (`OPTIONS`, any path) itself; any other request runs its route, is
/// counted and timed (`cstore_http_requests_total`, `cstore_http_request_seconds`, labelled by
/// the route's pattern, never its path, which would make one series per document id), and
/// leaves with the cross-origin headers.
pub async fn front(request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return preflight();
    }
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    crate::metrics::record_http_request(method, route, status, elapsed);
    tracing::debug!(
        method,
        route,
        status,
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS);
    response
}

fn preflight() -> Response {
    (
        StatusCode::OK,
        [
            (ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN),
            (ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS),
            (ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS),
            (ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE),
        ],
    )
        .into_response()
}

/// The method as a label; methods outside the standard set share one label, so a client
/// cannot grow the label set without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
