//! Routes about the server rather than the data: the placeholder page, health, status,
//! metrics and the list of collections.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Authorized, NeedsAdmin, NeedsRead, NeedsReplicate};
use super::error::ApiError;
use crate::node::{Node, ReadFloor};

/// `GET /` when no demo app is built (see [`super::demo`]): says how to build it.
pub async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

const INDEX_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Collection Store</title></head>
<body>
<h1>Collection Store</h1>
<p>This server is running, but it found no built demo app to serve here.</p>
<p>Build it with <code>web/scripts/build.sh</code> (or start everything with
<code>scripts/run.sh</code>), then start <code>cstore serve</code> from the repository root,
or point it at the built directory with <code>--demo-dir web/dist/demo</code>
(or <code>CSTORE_DEMO_DIR</code>).</p>
<p>HTTP API (see docs/HTTP_API.md):</p>
<ul>
<li><a href="/v1/health">GET /v1/health</a></li>
<li><a href="/v1/status">GET /v1/status</a></li>
<li><a href="/v1/c">GET /v1/c</a> (collections)</li>
<li><a href="/metrics">GET /metrics</a> (Prometheus)</li>
<li>POST /v1/c/{collection}, GET|PUT|PATCH|DELETE /v1/c/{collection}/{id},
POST /v1/c/{collection}/find, POST /v1/txn</li>
</ul>
</body></html>
"#;

/// `GET /v1/health`: the process answers. Needs no token.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /v1/read-index`: `{"lsn": n}`, an LSN at or after every write acknowledged before
/// the request (see `Node::read_index`). A replica that has applied it answers a
/// linearizable read locally.
pub async fn read_index(
    _: Authorized<NeedsRead>,
    State(app): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let lsn = app.node.read_index().await?;
    Ok(Json(json!({ "lsn": lsn.0 })))
}

/// `GET /v1/status`: role, term and log positions; on a follower also its leader and how
/// replication goes.
pub async fn status(
    _: Authorized<NeedsReplicate>,
    State(app): State<Arc<AppState>>,
) -> Json<Value> {
    match &app.node {
        Node::Leader(leader) => {
            let status = leader.status();
            Json(json!({
                "role": "leader",
                "term": status.term.0,
                "node_id": status.node_id.to_string(),
                // On the leader every entry is applied before it is appended: the last entry
                // of the log is the last applied one.
                "last_lsn": status.applied_lsn.0,
                "committed_lsn": status.committed_lsn.0,
                "applied_lsn": status.applied_lsn.0,
                "leader_url": null,
                "replicas": app.replication.status_replicas(),
                "watermarks": app.replication.status_watermarks(),
                "storage": status.storage.as_str(),
            }))
        }
        Node::Follower(follower) => {
            let status = follower.status();
            let progress = &status.progress;
            let last_error = progress
                .last_error
                .as_ref()
                .map(|e| json!({"code": e.code, "message": e.message}));
            Json(json!({
                "role": "follower",
                "term": status.term.0,
                "node_id": status.node_id.to_string(),
                // Every entry a follower holds is durable and applied.
                "last_lsn": progress.durable_lsn.0,
                "committed_lsn": progress.durable_lsn.0,
                "applied_lsn": status.applied_lsn.0,
                "leader_url": status.leader_url,
                "replicas": app.replication.status_replicas(),
                "watermarks": app.replication.status_watermarks(),
                "follower": {
                    "urls": status.urls,
                    "member_switches": progress.member_switches,
                    "leader_id": progress.leader_id.map(|id| id.to_string()),
                    "durable_lsn": progress.durable_lsn.0,
                    "leader_committed_lsn": progress.leader_committed_lsn.0,
                    "lag": progress.lag,
                    "connection": progress.connection.as_str(),
                    "last_error": last_error,
                    "reconnects": progress.reconnects,
                    "bytes_received": progress.bytes_received,
                    "entries_received": progress.entries_received,
                    "snapshot_installs": progress.snapshot_installs,
                    "protocol_version": progress.protocol_version,
                },
            }))
        }
        Node::Cluster(cluster) => {
            let status = cluster.status();
            Json(json!({
                "role": status.role,
                "term": status.term.0,
                "node_id": status.node_id.to_string(),
                "leader_id": status.leader_id.map(|id| id.to_string()),
                "leader_url": status.leader_url,
                "cluster_id": status.cluster_id,
                "init_error": status.init_error,
                "members": status.members,
                "last_lsn": status.last_lsn.0,
                "committed_lsn": status.committed_lsn.0,
                "applied_lsn": status.applied.lsn.0,
                "applied_hash": status.applied.hash.to_hex(),
                "replicas": app.replication.status_replicas(),
                "watermarks": app.replication.status_watermarks(),
                "storage": status.storage,
            }))
        }
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(
    _: Authorized<NeedsAdmin>,
    State(app): State<Arc<AppState>>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render() + &app.replication.render_metrics(),
    )
}

/// `GET /v1/c`: every collection with its size, indexes and TTL.
/// A token limited to collections sees only those.
pub async fn collections(
    auth: Authorized<NeedsRead>,
    State(app): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let collections: Vec<Value> = app
        .node
        .read(ReadFloor::default(), |state| {
            state
                .collections()
                .filter(|(name, _)| auth.may_use(name))
                .map(|(name, c)| {
                    let indexes: Vec<_> = c.indexes().iter().map(|i| i.spec().clone()).collect();
                    json!({
                        "name": name,
                        "count": c.len(),
                        "indexes": indexes,
                        "ttl_ms": c.options().ttl_ms,
                    })
                })
                .collect()
        })
        .await?;
    Ok(Json(json!({ "collections": collections })))
}
