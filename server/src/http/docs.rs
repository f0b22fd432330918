//! Routes on single documents: insert, get, put, patch, delete, and find (which shares the
//! `/v1/c/{collection}/{id}` route, see [`super::router`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use cstore_core::doc::{DocError, ID_FIELD, RawDoc, ensure_id};
use cstore_core::{Lsn, Op, Txn};

use super::AppState;
use super::as_of::{AsOfLsn, state_as_of};
use super::auth::{Authorized, NeedsRead, NeedsWrite};
use super::body::{DOC_BODY_BYTES_MAX, JsonBody, JsonBytes, parse_json};
use super::error::ApiError;
use super::params::{Ack, CollectionPath, DocPath, MinLsn, Precondition, etag};

/// A document body.
type DocBody = JsonBody<DOC_BODY_BYTES_MAX>;

/// `POST /v1/c/{collection}`: inserts a document, generating `_id` when absent. A body that is
/// a canonical document already (but perhaps for its `_id`) is taken as it is, without a tree
/// (see `RawDoc::from_canonical`); any other goes through one, with the same result.
pub async fn insert(
    _: Authorized<NeedsWrite>,
    State(app): State<Arc<AppState>>,
    CollectionPath(collection): CollectionPath,
    ack: Ack,
    JsonBytes(body): JsonBytes<DOC_BODY_BYTES_MAX>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let canonical = std::str::from_utf8(&body)
        .ok()
        .and_then(|text| RawDoc::from_canonical(text, || Some(app.node.generate_id())));
    let doc = match canonical {
        Some(doc) => doc,
        None => {
            let mut value = parse_json(&body)?;
            ensure_id(&mut value, || app.node.generate_id());
            RawDoc::from_value(&value)?
        }
    };
    let id = doc.id();
    let _held = ack.hold(&app);
    let lsn = app
        .node
        .write(Txn::single(Op::Insert { collection, doc }))
        .await?;
    ack.settle(&app, lsn).await?;
    Ok((StatusCode::CREATED, written(&id, lsn)))
}

/// `GET /v1/c/{collection}/{id}`: the document's canonical text, its version as the ETag.
/// `If-None-Match` with the current ETag answers 304; `?min_lsn=` waits for a fresh enough
/// state (see [`MinLsn`]); `?as_of_lsn=` reads the state right after that entry (see
/// [`AsOfLsn`]).
pub async fn get(
    _: Authorized<NeedsRead>,
    State(app): State<Arc<AppState>>,
    DocPath { collection, id }: DocPath,
    MinLsn(floor): MinLsn,
    AsOfLsn(as_of): AsOfLsn,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Copy the text out under the lock; the response is written after it is released.
    let (version, text) = match as_of {
        None => {
            app.node
                .read(floor, |state| lookup(state, &collection, &id))
                .await??
        }
        Some(lsn) => lookup(&state_as_of(&app, floor, lsn).await?, &collection, &id)?,
    };
    let tag = etag(version);
    if none_match(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::ETAG, tag),
        ],
        text,
    )
        .into_response())
}

/// A document's version and canonical text in `state`.
fn lookup(
    state: &cstore_core::state::State,
    collection: &str,
    id: &str,
) -> Result<(Lsn, String), ApiError> {
    let coll = state
        .collection(collection)
        .ok_or_else(|| ApiError::CollectionNotFound(collection.to_string()))?;
    coll.get(id)
        .map(|stored| (stored.version, stored.doc.as_str().to_string()))
        .ok_or_else(|| ApiError::NotFound {
            collection: collection.to_string(),
            id: id.to_string(),
        })
}

/// `PUT /v1/c/{collection}/{id}`: creates or replaces. The body's `_id`, if any, must equal
/// the path's.
pub async fn put(
    _: Authorized<NeedsWrite>,
    State(app): State<Arc<AppState>>,
    DocPath { collection, id }: DocPath,
    ack: Ack,
    Precondition(if_version): Precondition,
    JsonBody(mut value): DocBody,
) -> Result<Json<Value>, ApiError> {
    let Value::Object(map) = &mut value else {
        return Err(DocError::NotAnObject.into());
    };
    match map.get(ID_FIELD) {
        None => {
            map.insert(ID_FIELD.into(), Value::String(id.clone()));
        }
        Some(Value::String(body)) if *body == id => {}
        Some(Value::String(body)) => {
            return Err(ApiError::IdMismatch {
                path: id,
                body: body.clone(),
            });
        }
        Some(_) => return Err(DocError::InvalidId.into()),
    }
    let doc = RawDoc::from_value(&value)?;
    let op = Op::Put {
        collection,
        doc,
        if_version,
    };
    let _held = ack.hold(&app);
    let lsn = app.node.write(Txn::single(op)).await?;
    ack.settle(&app, lsn).await?;
    Ok(written(&id, lsn))
}

/// `PATCH /v1/c/{collection}/{id}`: an RFC 7386 merge patch into an existing document.
pub async fn patch(
    _: Authorized<NeedsWrite>,
    State(app): State<Arc<AppState>>,
    DocPath { collection, id }: DocPath,
    ack: Ack,
    Precondition(if_version): Precondition,
    JsonBody(value): DocBody,
) -> Result<Json<Value>, ApiError> {
    if !value.is_object() {
        return Err(ApiError::InvalidPatch(
            "a merge patch must be a JSON object".into(),
        ));
    }
    let op = Op::Patch {
        collection,
        id: id.clone(),
        patch: value.to_string(),
        if_version,
    };
    let _held = ack.hold(&app);
    let lsn = app.node.write(Txn::single(op)).await?;
    ack.settle(&app, lsn).await?;
    Ok(written(&id, lsn))
}

/// `DELETE /v1/c/{collection}/{id}`.
pub async fn delete(
    _: Authorized<NeedsWrite>,
    State(app): State<Arc<AppState>>,
    DocPath { collection, id }: DocPath,
    ack: Ack,
    Precondition(if_version): Precondition,
) -> Result<Json<Value>, ApiError> {
    let op = Op::Delete {
        collection,
        id: id.clone(),
        if_version,
    };
    let _held = ack.hold(&app);
    let lsn = app.node.write(Txn::single(op)).await?;
    ack.settle(&app, lsn).await?;
    Ok(written(&id, lsn))
}

/// The `{collection}` of `POST /v1/c/{collection}/find`; any other `{id}` is 405, checked
/// before the body is read.
#[derive(Debug)]
pub struct FindPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for FindPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let DocPath { collection, id } = DocPath::from_request_parts(parts, state).await?;
        if id != "find" {
            return Err(ApiError::MethodNotAllowed {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
            });
        }
        Ok(FindPath(collection))
    }
}

/// `{"id": …, "lsn": …}`, the answer to every single-document write.
fn written(id: &str, lsn: Lsn) -> Json<Value> {
    Json(json!({"id": id, "lsn": lsn.0}))
}

/// True when `If-None-Match` names `tag` (or is `*`).
fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}
