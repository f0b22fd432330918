//! `POST /v1/c/{collection}/find`: core's query engine over one collection.
//!
//! The answer is built as text under the state's read lock: each document's canonical JSON
//! is spliced in as stored (no parse, no re-serialization), and the lock is released before
//! the response is written to the socket. The text is bounded by [`RESULT_BYTES_MAX`]; past
//! it the find fails with `query_too_large` rather than holding the lock and memory for an
//! answer no client should need in one piece.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use cstore_core::Lsn;
use cstore_core::query::{FindQuery, find as run_find};

use super::AppState;
use super::as_of::{AsOfLsn, state_as_of};
use super::auth::{Authorized, NeedsRead};
use super::body::{DOC_BODY_BYTES_MAX, JsonBody};
use super::docs::FindPath;
use super::error::ApiError;
use super::params::{MinLsn, check_timeout_ms, parse_consistency};

/// Largest find answer, in bytes of JSON.
pub const RESULT_BYTES_MAX: usize = 64 << 20;

/// `{"filter":…, "sort":…, "limit":n, "skip":n, "explain":bool, "min_lsn":n,
/// "min_lsn_timeout_ms":n, "as_of_lsn":n}` → `{"docs":[…],"lsn":n}` (+ `"plan"` with
/// `explain`). A missing collection has no documents. `min_lsn` and `as_of_lsn` may come from
/// the query string too (see [`MinLsn`], [`AsOfLsn`]); the body's win. With `as_of_lsn` the
/// query runs on the state right after that entry, and `lsn` is that entry's.
pub async fn find(
    _: Authorized<NeedsRead>,
    State(app): State<Arc<AppState>>,
    FindPath(collection): FindPath,
    MinLsn(mut floor): MinLsn,
    AsOfLsn(mut as_of): AsOfLsn,
    JsonBody(mut body): JsonBody<DOC_BODY_BYTES_MAX>,
) -> Result<Response, ApiError> {
    let explain = match body.as_object_mut().and_then(|map| map.remove("explain")) {
        None => false,
        Some(Value::Bool(explain)) => explain,
        Some(_) => return Err(ApiError::InvalidQuery("`explain` must be a boolean".into())),
    };
    if let Some(min_lsn) = take_u64(&mut body, "min_lsn")? {
        floor.min_lsn = Some(Lsn(min_lsn));
    }
    if let Some(lsn) = take_u64(&mut body, "as_of_lsn")? {
        as_of = Some(Lsn(lsn));
    }
    if let Some(timeout_ms) = take_u64(&mut body, "min_lsn_timeout_ms")? {
        floor.timeout_ms = check_timeout_ms(timeout_ms)?;
    }
    match body
        .as_object_mut()
        .and_then(|map| map.remove("consistency"))
    {
        None => {}
        Some(Value::String(text)) => floor.linearizable = parse_consistency(&text)?,
        Some(_) => {
            return Err(ApiError::InvalidQuery(
                "`consistency` must be a string".into(),
            ));
        }
    }
    let query = FindQuery::parse(&body)?;
    let text = match as_of {
        None => {
            app.node
                .read(floor, |state| answer(state, &collection, &query, explain))
                .await??
        }
        Some(lsn) => {
            let state = state_as_of(&app, floor, lsn).await?;
            answer(&state, &collection, &query, explain)?
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

/// The answer's JSON text for `query` over `collection` in `state`.
fn answer(
    state: &cstore_core::state::State,
    collection: &str,
    query: &FindQuery,
    explain: bool,
) -> Result<String, ApiError> {
    let lsn = state.applied().lsn;
    let Some(coll) = state.collection(collection) else {
        return Ok(format!(r#"{{"docs":[],"lsn":{lsn}}}"#));
    };
    let result = run_find(coll, query)?;
    let mut out = String::from(r#"{"docs":["#);
    for (i, stored) in result.docs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(stored.doc.as_str());
        if out.len() > RESULT_BYTES_MAX {
            return Err(ApiError::ResultTooLarge {
                limit_bytes: RESULT_BYTES_MAX,
            });
        }
    }
    write!(out, r#"],"lsn":{lsn}"#).expect("writing to a String");
    if explain {
        let mut plan = result.plan.explain();
        if let Some(map) = plan.as_object_mut() {
            map.insert("examined".into(), result.examined.into());
        }
        write!(out, r#","plan":{plan}"#).expect("writing to a String");
    }
    out.push('}');
    Ok(out)
}

/// Removes `key` from a find body: a whole number, or absent (or null).
fn take_u64(body: &mut Value, key: &str) -> Result<Option<u64>, ApiError> {
    match body.as_object_mut().and_then(|map| map.remove(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::InvalidQuery(format!("`{key}` must be a whole number"))),
    }
}
