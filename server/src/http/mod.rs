//! The HTTP API of docs/HTTP_API.md: routes, handlers, errors, auth and limits.
//!
//! ```text
//!  request ─► front (CORS, metrics) ─► route ─► handler(Authorized<scope>, path, ?ack, precondition, body)
//!                                               │ parse and validate (extractors fail with ApiError)
//!                                               │ build a Txn ──► leader.write ──► Lsn
//!                                               │   or read under the state's lock, render, unlock
//!                                               └► JSON response, or {"error":{"code","message"}}
//! ```
//!
//! Handlers are thin: what a document, a transaction or a query means is decided in core; the
//! leader decides whether it commits. This layer turns HTTP into those calls and their
//! answers (and errors, through the one table in [`status_for`]) back into HTTP.

mod as_of;
mod auth;
mod body;
pub mod cluster;
pub mod demo;
mod docs;
mod error;
mod find;
mod forward;
mod front;
mod info;
mod params;
mod txn;
mod write_channel;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::routing::{delete, get, patch, post, put};
use metrics_exporter_prometheus::PrometheusHandle;

pub use auth::{
    Authorized, Needed, NeedsAdmin, NeedsRead, NeedsReplicate, NeedsWrite, bearer_token,
};
pub use body::{DOC_BODY_BYTES_MAX, JsonBody, TXN_BODY_BYTES_MAX};
pub use error::{ApiError, status_for};
pub use params::{Ack, CollectionPath, DocPath, MinLsn, Precondition, etag};
#[doc(hidden)]
pub use txn::decode_body_for_fuzzing;
#[doc(hidden)]
pub use write_channel::decode_message_for_fuzzing;

use crate::auth::TokenKey;
use crate::node::Node;
use crate::replicate::Replicator;

/// What every handler can reach. The router holds it in an `Arc` and hands each request a
/// clone of that: one reference count, not a clone of every part (a `PathBuf` clone is an
/// allocation, and each part's count is a cache line the two cores pass back and forth;
/// cloning the parts was about 5% of a durable insert's server CPU).
#[derive(Debug)]
pub struct AppState {
    /// The node: a leader (writes and reads) or a follower (reads; writes forwarded).
    pub node: Node,
    /// The token key; `None` runs without auth (every request allowed).
    pub auth: Option<Arc<TokenKey>>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Replication sessions, acknowledgements and watermarks (`/v1/replicate`, `?ack=`).
    pub replication: Replicator,
    /// The built demo app served at `/` ([`demo::resolve_dir`]); `None` serves a placeholder.
    pub demo_dir: Option<PathBuf>,
    /// The node's data directory, where `?as_of_lsn=` reads rebuild earlier states from the
    /// retained log; `None` answers them `unavailable`.
    pub data_dir: Option<PathBuf>,
}

/// The router with every route of docs/HTTP_API.md. The role decides who handles writes: a
/// leader commits them, a follower forwards them to its leader unchanged.
pub fn router(state: AppState) -> Router {
    let (insert, put, patch, delete, commit, commit_many, read_index) = match &state.node {
        // A cluster member that does not lead sends writes on (`cluster::to_leader`).
        Node::Leader(_) | Node::Cluster(_) => (
            post(docs::insert),
            put(docs::put),
            patch(docs::patch),
            delete(docs::delete),
            post(txn::commit),
            post(txn::commit_many),
            get(info::read_index),
        ),
        Node::Follower(_) => (
            post(forward::forward),
            put(forward::forward),
            patch(forward::forward),
            delete(forward::forward),
            post(forward::forward),
            post(forward::forward),
            // The leader's read index holds for a replica fed through this one too.
            get(forward::forward),
        ),
    };
    let site = demo::site(state.demo_dir.as_deref());
    let clustered = matches!(state.node, Node::Cluster(_));
    let state = Arc::new(state);
    let routes = Router::new()
        .route("/v1/health", get(info::health))
        .route("/v1/status", get(info::status))
        .route("/metrics", get(info::metrics))
        .route("/v1/c", get(info::collections))
        .route("/v1/c/{collection}", insert)
        // `find` shares the `{id}` route: a separate `/find` route would shadow GET of a
        // document whose id is "find". POST on any other id is 405.
        .route(
            "/v1/c/{collection}/{id}",
            get(docs::get)
                .post(find::find)
                .merge(put)
                .merge(patch)
                .merge(delete),
        )
        .route("/v1/txn", commit)
        .route("/v1/txns", commit_many)
        .route("/v1/read-index", read_index)
        .route("/v1/replicate", get(crate::replicate::endpoint::replicate))
        .route("/v1/write", get(write_channel::open))
        .route("/v1/raft/append", post(cluster::append))
        .route("/v1/raft/vote", post(cluster::vote))
        .route("/v1/raft/pre-vote", post(cluster::pre_vote))
        .route("/v1/raft/snapshot/offer", post(cluster::snapshot_offer))
        .route("/v1/raft/snapshot/chunk", post(cluster::snapshot_chunk))
        .route("/v1/raft/snapshot/install", post(cluster::snapshot_install))
        .route("/v1/raft/transfer", post(cluster::transfer_leader))
        .route("/v1/raft/hello", post(cluster::hello))
        .route("/v1/raft/read-index", get(cluster::read_index_route))
        .route("/v1/cluster/transfer", post(cluster::transfer))
        .route("/v1/cluster/add", post(cluster::add))
        .route("/v1/cluster/remove", post(cluster::remove))
        .fallback_service(site)
        .method_not_allowed_fallback(method_not_allowed);
    // Only a cluster member can find that another member leads; a single leader or a follower
    // would pass every request through the layer for nothing.
    let routes = if clustered {
        routes.layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            cluster::to_leader,
        ))
    } else {
        routes
    };
    routes
        .layer(axum::middleware::from_fn(front::front))
        .with_state(state)
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}
