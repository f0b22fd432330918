//! The HTTP edge of cluster mode: Raft messages between members (`/v1/raft/…`), the operator's
//! routes (`/v1/cluster/…`), and the layer that sends writes to the leader.
//!
//! ```text
//!  write on a member ─► leads?  yes ─► the write handler (Raft client_write)
//!                               no  ─► ?redirect=1 ─► 307 Location: leader URL + path
//!                                      else ────────► forwarded to the leader, its answer back
//!                                      no leader known (election) ─► wait ≤ 2 election
//!                                      timeouts, then 503 not_leader
//!  /v1/raft/{append,vote,pre-vote,transfer}           postcard in, postcard out (admin scope)
//!  /v1/raft/snapshot/{offer,chunk,install}             the same, a snapshot in resumable chunks
//!  /v1/cluster/{transfer,add,remove}                   JSON, admin scope, run on the leader
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openraft::errors::{Fatal, RaftError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use cstore_core::Lsn;

use super::AppState;
use super::auth::{Authorized, NeedsAdmin};
use super::error::ApiError;
use super::forward::{FORWARDED_BY, forward_to};
use crate::cluster::network::{CLUSTER_HEADER, MESSAGE_BYTES_MAX, POSTCARD};
use crate::cluster::snapshot_transfer::{
    Receiver, SNAPSHOT_CHUNK_BYTES_MAX, SnapshotChunk, SnapshotHeld, SnapshotInstall,
    SnapshotOffer, TransferError,
};
use crate::cluster::types::ClusterTypes;
use crate::cluster::{Cluster, ClusterError};
use crate::leader::WriteError;

fn member(app: &AppState) -> Result<&Cluster, ApiError> {
    app.node.cluster().ok_or(ApiError::NotClustered)
}

/// The member a Raft message is for, after checking the sender belongs to the same cluster
/// (when both know their cluster's identity: a fresh member knows none yet).
fn member_of_same_cluster<'a>(
    app: &'a AppState,
    headers: &HeaderMap,
) -> Result<&'a Cluster, ApiError> {
    let cluster = member(app)?;
    let theirs = headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok());
    if let (Some(ours), Some(theirs)) = (cluster.cluster_id(), theirs)
        && ours != theirs
    {
        metrics::counter!("cstore_cluster_wrong_cluster_messages_total").increment(1);
        return Err(ClusterError::WrongCluster {
            ours,
            theirs: theirs.to_string(),
        }
        .into());
    }
    Ok(cluster)
}

async fn decode<T: DeserializeOwned>(request: Request, limit: usize) -> Result<T, ApiError> {
    let bytes = to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| ApiError::BodyTooLarge { limit_bytes: limit })?;
    postcard::from_bytes(&bytes)
        .map_err(|e| ApiError::InvalidJson(format!("not a Raft message (postcard): {e}")))
}

fn postcard_response<T: Serialize>(value: &T) -> Response {
    match postcard::to_allocvec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, POSTCARD)], bytes).into_response(),
        Err(e) => ApiError::Internal(format!("encode a Raft answer: {e}")).into_response(),
    }
}

fn fatal(e: Fatal<ClusterTypes>) -> RaftError<ClusterTypes> {
    RaftError::Fatal(e)
}

/// Hands a Raft message to this member's openraft and returns its answer: the one shape of
/// every `/v1/raft/…` message route (same cluster, bounded postcard body in, postcard out).
async fn relay<Message, Answer, Call, Fut>(
    app: &AppState,
    request: Request,
    limit_bytes: usize,
    call: Call,
) -> Result<Response, ApiError>
where
    Message: DeserializeOwned,
    Answer: Serialize,
    Call: FnOnce(crate::cluster::types::Raft, Message) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let cluster = member_of_same_cluster(app, request.headers())?;
    let raft = cluster.raft().clone();
    let message = decode(request, limit_bytes).await?;
    Ok(postcard_response(&call(raft, message).await))
}

/// `POST /v1/raft/append`.
pub async fn append(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    relay(&app, request, MESSAGE_BYTES_MAX, |raft, rpc| async move {
        raft.append_entries(rpc).await
    })
    .await
}

/// `POST /v1/raft/vote`.
pub async fn vote(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    relay(&app, request, MESSAGE_BYTES_MAX, |raft, rpc| async move {
        raft.vote(rpc).await
    })
    .await
}

/// `POST /v1/raft/pre-vote`.
pub async fn pre_vote(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    relay(&app, request, MESSAGE_BYTES_MAX, |raft, rpc| async move {
        raft.pre_vote(rpc).await
    })
    .await
}

/// Runs `f` on the snapshot receiver, on the blocking pool (it writes and reads files).
async fn on_receiver<T: Send + 'static>(
    cluster: &Cluster,
    f: impl FnOnce(&Receiver) -> Result<T, TransferError> + Send + 'static,
) -> Result<T, ApiError> {
    let receiver = std::sync::Arc::clone(cluster.snapshot_receiver());
    tokio::task::spawn_blocking(move || f(&receiver))
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot receiver task: {e}")))?
        .map_err(|e| ApiError::Cluster(ClusterError::Transfer(e)))
}

/// Answers a transfer step the way the Raft routes answer (a postcard `Result`).
fn held_response(held: SnapshotHeld) -> Response {
    postcard_response(&Ok::<_, RaftError<ClusterTypes>>(held))
}

/// `POST /v1/raft/snapshot/offer`: the leader will send this snapshot; the answer says how
/// many of its bytes this member holds already (a cut transfer resumes from there).
pub async fn snapshot_offer(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let cluster = member_of_same_cluster(&app, request.headers())?.clone();
    let offer: SnapshotOffer = decode(request, MESSAGE_BYTES_MAX).await?;
    let held = on_receiver(&cluster, move |r| r.offer(&offer)).await?;
    Ok(held_response(held))
}

/// `POST /v1/raft/snapshot/chunk`: bytes of the snapshot offered, checked by their hash and
/// offset before they are kept.
pub async fn snapshot_chunk(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let cluster = member_of_same_cluster(&app, request.headers())?.clone();
    let chunk: SnapshotChunk = decode(request, SNAPSHOT_CHUNK_BYTES_MAX + 4096).await?;
    let held = on_receiver(&cluster, move |r| r.chunk(&chunk)).await?;
    Ok(held_response(held))
}

/// `POST /v1/raft/snapshot/install`: every chunk was sent; the whole snapshot is checked
/// against its SHA-256 and handed to openraft.
pub async fn snapshot_install(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let cluster = member_of_same_cluster(&app, request.headers())?.clone();
    let install: SnapshotInstall = decode(request, MESSAGE_BYTES_MAX).await?;
    let (id, total_bytes) = (install.id, install.total_bytes);
    let bytes = on_receiver(&cluster, move |r| r.complete(&id, total_bytes)).await?;
    let snapshot = openraft::alias::SnapshotOf::<ClusterTypes, std::io::Cursor<Vec<u8>>> {
        meta: install.meta,
        snapshot: std::io::Cursor::new(bytes),
    };
    let answer = cluster
        .raft()
        .install_full_snapshot(install.vote, snapshot)
        .await
        .map_err(fatal);
    if answer.is_ok() {
        on_receiver(&cluster, move |r| {
            r.installed(&id);
            Ok(())
        })
        .await?;
    }
    Ok(postcard_response(&answer))
}

/// `POST /v1/raft/transfer`: the leader hands its office to this member.
pub async fn transfer_leader(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    relay(&app, request, MESSAGE_BYTES_MAX, |raft, rpc| async move {
        raft.handle_transfer_leader(rpc).await.map_err(fatal)
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HelloBody {
    members: std::collections::BTreeMap<u64, String>,
}

/// `POST /v1/raft/hello {"members": {...}}`: whether this member belongs to a cluster yet and
/// was started with the same member list (the lowest-id member asks before it initializes a
/// fresh cluster).
pub async fn hello(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    super::JsonBody(body): super::JsonBody<65536>,
) -> Result<Json<crate::cluster::Hello>, ApiError> {
    let cluster = member(&app)?;
    let HelloBody { members } = parse_body(body)?;
    Ok(Json(cluster.hello(&members).await))
}

/// `GET /v1/raft/read-index`: the leader's read index, for a linearizable read on another
/// member.
pub async fn read_index_route(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let cluster = member(&app)?;
    let lsn = cluster.read_index().await?;
    Ok(Json(json!({"lsn": lsn.0})))
}

/// The read index for a linearizable read on `cluster`: its own when it leads, else the
/// leader's, asked over HTTP.
pub async fn read_index(cluster: &Cluster) -> Result<Lsn, ClusterError> {
    if cluster.is_leader() {
        return cluster.read_index().await;
    }
    let wait = Duration::from_millis(cluster.config().election_timeout_ms * 2);
    let Some((_, url)) = cluster.wait_for_leader(wait).await else {
        return Err(ClusterError::NotLeader { leader_url: None });
    };
    let mut request = cluster
        .http()
        .get(format!("{url}/v1/raft/read-index"))
        .timeout(Duration::from_secs(5));
    if let Some(token) = &cluster.config().token {
        request = request.bearer_auth(token);
    }
    let failed = |e: String| ClusterError::Failed(format!("read index from {url}: {e}"));
    let answer = request.send().await.map_err(|e| failed(e.to_string()))?;
    let status = answer.status();
    let body: Value = answer.json().await.map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!("{status}: {body}")));
    }
    body.get("lsn")
        .and_then(Value::as_u64)
        .map(Lsn)
        .ok_or_else(|| failed(format!("no lsn in {body}")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: u64,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    id: u64,
    url: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    id: u64,
}

fn parse_body<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// `POST /v1/cluster/transfer {"to": N}`: moves leadership to voter N.
pub async fn transfer(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    super::JsonBody(body): super::JsonBody<4096>,
) -> Result<Json<Value>, ApiError> {
    let cluster = member(&app)?;
    let TransferBody { to } = parse_body(body)?;
    let leader = cluster.transfer(to).await?;
    Ok(Json(json!({"leader_id": leader})))
}

/// `POST /v1/cluster/add {"id": N, "url": U}`: adds a member (learner, then voter).
pub async fn add(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    super::JsonBody(body): super::JsonBody<4096>,
) -> Result<Json<Value>, ApiError> {
    let cluster = member(&app)?;
    let AddBody { id, url } = parse_body(body)?;
    cluster.add_member(id, &url).await?;
    Ok(Json(json!({"added": id})))
}

/// `POST /v1/cluster/remove {"id": N}`: removes a member.
pub async fn remove(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
    super::JsonBody(body): super::JsonBody<4096>,
) -> Result<Json<Value>, ApiError> {
    let cluster = member(&app)?;
    let RemoveBody { id } = parse_body(body)?;
    cluster.remove_member(id).await?;
    Ok(Json(json!({"removed": id})))
}

/// True for requests only the leader can carry out: document and transaction writes (not
/// `find`, a POST on `/v1/c/{collection}/{id}`), and membership and transfer changes.
fn leader_only(method: &Method, path: &str) -> bool {
    if path.starts_with("/v1/cluster/") {
        return *method == Method::POST;
    }
    if path == "/v1/txn" || path == "/v1/txns" {
        return *method == Method::POST;
    }
    let Some(rest) = path.strip_prefix("/v1/c/") else {
        return false;
    };
    let segments = rest.split('/').filter(|s| !s.is_empty()).count();
    match segments {
        1 => *method == Method::POST,
        2 => matches!(*method, Method::PUT | Method::PATCH | Method::DELETE),
        _ => false,
    }
}

/// The layer in front of every route on a cluster member: requests only the leader can carry
/// out go to the leader (see the module docs); everything else runs here.
pub async fn to_leader(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(cluster) = app.node.cluster() else {
        return next.run(request).await;
    };
    if !leader_only(request.method(), request.uri().path()) || cluster.is_leader() {
        return next.run(request).await;
    }
    // Forwarded once already: answer here (`not_leader`) rather than pass it on again.
    if request.headers().contains_key(FORWARDED_BY) {
        return next.run(request).await;
    }
    let wait = Duration::from_millis(cluster.config().election_timeout_ms * 2);
    let leader = match cluster.leader() {
        Some(leader) => Some(leader),
        None => cluster.wait_for_leader(wait).await,
    };
    let Some((leader_id, url)) = leader else {
        return ApiError::Write(WriteError::NotLeader { leader_url: None }).into_response();
    };
    if leader_id == cluster.config().node_id {
        return next.run(request).await;
    }
    let redirect = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "redirect=1" || kv == "redirect=true")
    });
    if redirect {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, format!("{url}{path}"))
            .body(Body::empty())
            .unwrap_or_else(|e| ApiError::Internal(e.to_string()).into_response());
    }
    metrics::counter!("cstore_cluster_forwarded_writes_total").increment(1);
    match forward_to(
        &url,
        cluster.http(),
        Some(cluster.config().node_id),
        request,
    )
    .await
    {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_requests_need_the_leader() {
        assert!(leader_only(&Method::POST, "/v1/c/notes"));
        assert!(leader_only(&Method::PUT, "/v1/c/notes/a"));
        assert!(leader_only(&Method::PATCH, "/v1/c/notes/a"));
        assert!(leader_only(&Method::DELETE, "/v1/c/notes/a"));
        assert!(leader_only(&Method::POST, "/v1/txn"));
        assert!(leader_only(&Method::POST, "/v1/cluster/transfer"));
        assert!(!leader_only(&Method::POST, "/v1/c/notes/find"));
        assert!(!leader_only(&Method::GET, "/v1/c/notes/a"));
        assert!(!leader_only(&Method::GET, "/v1/status"));
        assert!(!leader_only(&Method::POST, "/v1/raft/append"));
        assert!(!leader_only(&Method::GET, "/v1/replicate"));
    }
}
