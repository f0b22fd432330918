//! `GET /v1/replicate`: the WebSocket endpoint replicas connect to.
//!
//! The request is authorized before the upgrade: a token with scope `replicate` (granted by
//! `read` and up; a token limited to collections must subscribe within them), from
//! `Authorization: Bearer …` or, because browsers cannot set headers on a WebSocket, from
//! `?token=…` (the header wins when both are given). Then the connection is upgraded
//! ([`upgrade`](super::upgrade)) with the message size bounded to [`FRAME_BYTES_MAX`] and
//! handed to a [`connection`](super::connection) task on the sessions' runtime. Errors before
//! the upgrade are the API's usual JSON errors.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, extract::FromRef};

use cstore_core::replication::FRAME_BYTES_MAX;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;

use super::Replicator;
use super::upgrade::{Socket, Upgrade};
use crate::edge::{Limit, RequestEdge};
use crate::http::{ApiError, AppState, Authorized, NeedsReplicate};

/// Initial read buffer of a replication socket (tungstenite's default is 128 KiB).
const READ_BUFFER_BYTES: usize = 4 << 10;

impl FromRef<Arc<AppState>> for Replicator {
    fn from_ref(state: &Arc<AppState>) -> Replicator {
        state.replication.clone()
    }
}

/// `GET /v1/replicate` (WebSocket upgrade).
pub async fn replicate(
    State(replicator): State<Replicator>,
    headers: HeaderMap,
    uri: Uri,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    edge: Option<Extension<RequestEdge>>,
    mut request: Request,
) -> Response {
    let allowed = match authorize(&replicator, &headers, &uri) {
        Ok(allowed) => allowed,
        Err(error) => return error.into_response(),
    };
    let upgrade = match Upgrade::accept(&mut request) {
        Ok(upgrade) => upgrade,
        Err(why) => return ApiError::UpgradeRequired(why).into_response(),
    };
    if replicator.is_stopping() {
        return ApiError::ShuttingDown.into_response();
    }
    // The session holds a `--max-replication-sessions` permit and its connection's
    // `--max-connections` permit (the socket stays open after the upgrade) for its life.
    let (held, frame_bytes_max) = match edge {
        Some(Extension(edge)) => match Arc::clone(&edge.sessions).try_acquire_owned() {
            Ok(session) => (
                Some((session, edge.connection)),
                edge.bodies.frame_bytes_max,
            ),
            Err(_) => {
                Limit::ReplicationSessions.tripped();
                return ApiError::TooManySessions {
                    max: edge.sessions_max,
                }
                .into_response();
            }
        },
        None => (None, FRAME_BYTES_MAX),
    };
    let addr = connect.map(|Extension(ConnectInfo(addr))| addr);
    // A replica sends small frames (hello, acks): a small read buffer keeps a thousand
    // connections cheap; it grows for the rare large message, up to the bound.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(frame_bytes_max))
        .max_frame_size(Some(frame_bytes_max));
    let response = upgrade.response();
    let sessions = replicator.sessions_handle().cloned();
    // On the runtime that drives the session, so the socket is registered with its reactor.
    let session = async move {
        match upgrade.socket(config).await {
            Ok(Socket::Tcp(socket)) => {
                super::connection::run(replicator, socket, addr, allowed).await
            }
            Ok(Socket::Upgraded(socket)) => {
                super::connection::run(replicator, socket, addr, allowed).await
            }
            Err(error) => debug!(?addr, %error, "replication upgrade failed"),
        }
        drop(held);
    };
    // The task owns the session and its permits; nothing waits for it here, so a connection
    // costs one task, not a second one parked on the first.
    match sessions {
        Some(sessions) => drop(sessions.spawn(session)),
        None => drop(tokio::spawn(session)),
    }
    response
}

/// Checks the token of a replication request, from the header or `?token=`. Returns the
/// collections the token is limited to (`None`: all), which the replica's hello must keep to.
fn authorize(
    replicator: &Replicator,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<Vec<String>>, ApiError> {
    // Scope `replicate` (granted by `read` and up). A token limited to collections may
    // subscribe only to those (checked at its hello).
    let key = replicator.auth().map(|key| &**key);
    let Some(claims) = Authorized::<NeedsReplicate>::for_socket(key, headers, uri)?.claims else {
        return Ok(None);
    };
    tracing::info!(sub = %claims.sub, collections = ?claims.collections, "replication authorized");
    Ok(claims.collections)
}
