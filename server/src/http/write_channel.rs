//! `GET /v1/write`: the write channel, a WebSocket of pipelined transactions (docs/HTTP_API.md,
//! "Write channel").
//!
//! ```text
//!  socket ─► wait for a message ─► take what else has arrived (≤ BATCH_MAX, no waiting)
//!               ▲                    │ each: {"req"?, "ops", "origin"?} or {"req"?, "txns"}
//!               │                    │   ─► txn::commit_each
//!               │                    ▼   (parse, write_many: one commit batch, ack policy)
//!               └──── flush ◄── one text answer per message, in order, with its "req"
//!                                    │   (a list's answer: {"req", "results": […]})
//!                                    │ a passing failure (5xx but ack_unknown): close 1013
//! ```
//!
//! One batch is in flight per channel: while it commits, the next messages wait in the socket,
//! and become the next batch. So a client that pipelines gets batches as large as its window
//! (its writes share fsyncs with each other and with everyone else's), and the order rule of
//! `POST /v1/txns` holds across the whole channel: no transaction is written after one that
//! failed for a passing reason, because the channel closes there and what was not yet read is
//! never written.

use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use cstore_core::ErrorCode;
use futures::{FutureExt, SinkExt};
use serde_json::Value;
use tracing::debug;

use super::AppState;
use super::auth::{Authorized, NeedsWrite};
use super::body::TXN_BODY_BYTES_MAX;
use super::error::ApiError;
use super::params::Ack;
use super::txn::{self, TXNS_MAX};
use crate::edge::{Limit, RequestEdge};
use crate::leader::WriteError;
use crate::node::Node;

/// Most transactions committed as one batch of a channel (as in one `POST /v1/txns`).
pub const BATCH_MAX: usize = TXNS_MAX;

/// Initial read buffer of a channel's socket (tungstenite's default is 128 KiB); it grows for
/// large messages, up to the transaction body bound.
const READ_BUFFER_BYTES: usize = 16 << 10;

/// WebSocket close codes (RFC 6455 and IANA's registry).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// `GET /v1/write` (WebSocket upgrade). Everything that can be refused is refused before the
/// upgrade, with the API's usual JSON errors.
pub async fn open(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    ack: Result<Ack, ApiError>,
    edge: Option<Extension<RequestEdge>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let auth = match Authorized::<NeedsWrite>::for_socket(app.auth.as_deref(), &headers, &uri) {
        Ok(auth) => auth,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let ack = match ack {
        Ok(ack) => ack,
        Err(error) => return error.into_response(),
    };
    if app.replication.is_stopping() {
        return ApiError::ShuttingDown.into_response();
    }
    // A channel is not forwarded: the client opens it where the writes commit. Checked before
    // the upgrade, so that a browser, which learns nothing from a failed upgrade, can ask with a
    // plain `GET /v1/write` and be told where the leader is.
    let not_leader = match &app.node {
        Node::Leader(_) => None,
        Node::Cluster(cluster) if cluster.is_leader() => None,
        Node::Cluster(cluster) => Some(cluster.leader().map(|(_, url)| url)),
        Node::Follower(follower) => Some(Some(follower.leader_http_base())),
    };
    if let Some(leader_url) = not_leader {
        return ApiError::Write(WriteError::NotLeader { leader_url }).into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return ApiError::UpgradeRequired(rejection.body_text()).into_response(),
    };
    // The channel holds its connection's `--max-connections` permit for its life (the socket
    // stays open after the upgrade).
    let (held, message_bytes_max) = match edge {
        Some(Extension(edge)) => (
            Some(Arc::clone(&edge.connection)),
            edge.bodies.txn_body_bytes_max,
        ),
        None => (None, TXN_BODY_BYTES_MAX),
    };
    if let Some(claims) = &auth.claims {
        tracing::info!(sub = %claims.sub, "write channel opened");
    }
    // Counted from here, so that a stop waits for this channel's close frame (taken before the
    // upgrade: a stop that begins meanwhile closes the channel as soon as it runs).
    let live = app.replication.channel_guard();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(message_bytes_max)
        .max_frame_size(message_bytes_max)
        .on_upgrade(move |socket| async move {
            metrics::gauge!("cstore_write_channels").increment(1.0);
            run(&app, socket, &auth, &ack).await;
            metrics::gauge!("cstore_write_channels").decrement(1.0);
            drop(held);
            drop(live);
        })
}

/// How a channel ends.
enum End {
    /// The client closed it, or the connection broke: nothing more to say.
    Gone,
    /// Close with this code and reason (an error code).
    Close(u16, &'static str),
}

/// Serves one channel until it ends.
async fn run(app: &AppState, mut socket: WebSocket, auth: &Authorized<NeedsWrite>, ack: &Ack) {
    let mut stopping = app.replication.stopping();
    let end = loop {
        let first = tokio::select! {
            message = socket.recv() => message,
            _ = stopping.wait_for(|stop| *stop) => break End::Close(CLOSE_GOING_AWAY, "shutting_down"),
        };
        // Each message's tag and shape, in order, and the transactions of them all.
        let mut messages: Vec<(Value, Shape)> = Vec::new();
        let mut items: Vec<txn::Parsed> = Vec::new();
        let mut after = None;
        for message in std::iter::once(Some(first))
            .chain(std::iter::repeat_with(|| socket.recv().now_or_never()))
        {
            match message {
                // Nothing more has arrived: commit what has.
                None => break,
                Some(Some(Ok(Message::Text(text)))) => {
                    let (req, shape, txns) =
                        received(&mut || app.node.generate_id(), text.as_bytes());
                    messages.push((req, shape));
                    items.extend(txns);
                }
                Some(Some(Ok(Message::Binary(_)))) => messages.push((
                    Value::Null,
                    Shape::Refused(ApiError::InvalidTxn(
                        "a transaction is a text message (JSON); this was binary".into(),
                    )),
                )),
                // tungstenite answers pings itself.
                Some(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Some(Some(Ok(Message::Close(_))) | None) => {
                    after = Some(End::Gone);
                    break;
                }
                Some(Some(Err(error))) => {
                    after = Some(read_failed(error));
                    break;
                }
            }
            // Refused messages count too: a flood of them is answered in bounded batches.
            if items.len() >= BATCH_MAX || messages.len() >= BATCH_MAX {
                break;
            }
        }
        if !messages.is_empty() {
            metrics::counter!("cstore_write_channel_txns_total").increment(items.len() as u64);
            let mut results = txn::commit_each(app, auth, ack, items).await.into_iter();
            let mut passing = None;
            let mut answer = |result: Result<txn::Written, ApiError>| {
                // A passing failure ends the channel after its answers (see the module docs).
                if let Err(error) = &result
                    && is_passing(error)
                {
                    passing.get_or_insert(error.code());
                }
                txn::result_body(result)
            };
            for (req, shape) in messages {
                let mut body = match shape {
                    Shape::Refused(error) => txn::result_body(Err(error)),
                    Shape::List(count) => {
                        let answers: Vec<Value> =
                            results.by_ref().take(count).map(&mut answer).collect();
                        serde_json::json!({ "results": answers })
                    }
                    Shape::One => answer(results.next().expect("one result per transaction")),
                };
                if let Value::Object(map) = &mut body {
                    map.insert("req".into(), req);
                }
                let text = Utf8Bytes::from(body.to_string());
                if socket.feed(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            if socket.flush().await.is_err() {
                return;
            }
            if let Some(code) = passing {
                break End::Close(close_code(code), code);
            }
        }
        if let Some(end) = after {
            break end;
        }
    };
    if let End::Close(code, reason) = end {
        debug!(code, reason, "closing a write channel");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
}

/// The decoding of one write channel message as the channel does it, from the bytes of a text
/// message to the transactions it would commit, for the fuzz targets in `fuzz/`.
/// Inserts without an `_id` get `fuzz-1`, `fuzz-2`, …. Where the short way takes a message, it
/// panics unless the general way reads the same tag, shape and transactions of it.
#[doc(hidden)]
pub fn decode_message_for_fuzzing(bytes: &[u8]) -> Result<Vec<cstore_core::Txn>, ApiError> {
    let (req, shape, parsed) = received_in_general(&mut txn::fuzz_ids(), bytes);
    // A list's length, or `None` for one transaction.
    let list = match &shape {
        Shape::List(count) => Some(*count),
        _ => None,
    };
    let general = match shape {
        Shape::Refused(error) => Err(error),
        _ => parsed.into_iter().map(|p| p.map(|(txn, _)| txn)).collect(),
    };
    if let Some(fast) = txn::fast_message(&mut txn::fuzz_ids(), bytes) {
        let general = general.as_ref().expect("the short way took it");
        let fast_txns: Vec<cstore_core::Txn> = fast.txns.into_iter().map(|(t, _)| t).collect();
        assert_eq!(&fast_txns, general, "the short way made other transactions");
        assert_eq!(
            fast.req.map_or(Value::Null, Value::from),
            req,
            "another req"
        );
        let fast_list = fast.list.then_some(fast_txns.len());
        assert_eq!(fast_list, list, "another shape");
    }
    general
}

/// What a client message carried, and so the shape of its answer.
enum Shape {
    /// One transaction: answered with its result.
    One,
    /// A list of this many: answered with `{"results": […]}`.
    List(usize),
    /// Nothing that can be committed: answered with this error, nothing written.
    Refused(ApiError),
}

/// Reads a client message: a JSON object holding one transaction (`{"ops", "origin"?}`) or a
/// list (`{"txns": [{"ops", "origin"?}, …]}`, 1 to [`TXNS_MAX`]), with an optional `"req"`.
/// Returns its tag (`null` when it has none or could not be read), its shape and its
/// transactions, each as it parsed. Inserts and puts of canonical documents are read without
/// a JSON tree (`txn::fast_message`); anything else the general way, with the same results.
fn received(new_id: &mut dyn FnMut() -> String, bytes: &[u8]) -> (Value, Shape, Vec<txn::Parsed>) {
    if let Some(fast) = txn::fast_message(new_id, bytes) {
        let req = fast.req.map_or(Value::Null, Value::from);
        let shape = if fast.list {
            Shape::List(fast.txns.len())
        } else {
            Shape::One
        };
        return (req, shape, fast.txns.into_iter().map(Ok).collect());
    }
    received_in_general(new_id, bytes)
}

/// [`received`] through a JSON tree.
fn received_in_general(
    new_id: &mut dyn FnMut() -> String,
    bytes: &[u8],
) -> (Value, Shape, Vec<txn::Parsed>) {
    let (req, shape, txns) = read_in_general(bytes);
    (req, shape, txn::parse_each(new_id, txns))
}

/// A message's tag, shape and transaction bodies, through a JSON tree.
fn read_in_general(bytes: &[u8]) -> (Value, Shape, Vec<Value>) {
    let refused = |req: Value, error: ApiError| (req, Shape::Refused(error), Vec::new());
    let mut map = match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            let error = ApiError::InvalidTxn(
                "a message is an object {\"ops\": […]} or {\"txns\": […]}".into(),
            );
            return refused(Value::Null, error);
        }
        Err(error) => return refused(Value::Null, ApiError::InvalidJson(error.to_string())),
    };
    let req = match map.remove("req") {
        None | Some(Value::Null) => Value::Null,
        Some(req @ Value::Number(_)) if req.is_u64() => req,
        Some(_) => {
            let error = ApiError::InvalidTxn("`req` must be a non-negative integer".into());
            return refused(Value::Null, error);
        }
    };
    if map.contains_key("txns") {
        return match txn::parse_many(Value::Object(map)) {
            Ok(txns) => (req, Shape::List(txns.len()), txns),
            Err(error) => refused(req, error),
        };
    }
    (req, Shape::One, vec![Value::Object(map)])
}

/// A failure after which later transactions must not be written: a `5xx` (no leader, no
/// quorum, storage failed, stopping), except `ack_unknown`, whose write did commit.
fn is_passing(error: &ApiError) -> bool {
    error.status().is_server_error() && error.code() != "ack_unknown"
}

/// The close code for a passing failure.
fn close_code(code: &str) -> u16 {
    if code == "shutting_down" {
        CLOSE_GOING_AWAY
    } else {
        CLOSE_TRY_AGAIN_LATER
    }
}

/// How a channel ends when reading fails: a message over the bound is closed with 1009
/// (`body_too_large`); any other error means the connection is gone.
fn read_failed(error: axum::Error) -> End {
    let too_big = error
        .into_inner()
        .downcast::<tokio_tungstenite::tungstenite::Error>()
        .is_ok_and(|error| matches!(*error, tokio_tungstenite::tungstenite::Error::Capacity(_)));
    if too_big {
        Limit::BodySize.tripped();
        End::Close(CLOSE_TOO_BIG, "body_too_large")
    } else {
        End::Gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a message reads as: its tag, its list length (`None` for one transaction) and its
    /// transactions, or the code of the error it is refused with.
    type Read = (Value, Option<usize>, Result<Vec<cstore_core::Txn>, String>);

    type Reader = fn(&mut dyn FnMut() -> String, &[u8]) -> (Value, Shape, Vec<txn::Parsed>);

    /// Reads `message` with `reader`, with ids `fuzz-1`, `fuzz-2`, ….
    fn read_with(reader: Reader, message: &str) -> Read {
        let (req, shape, parsed) = reader(&mut txn::fuzz_ids(), message.as_bytes());
        let list = match shape {
            Shape::Refused(error) => return (req, None, Err(error.code().to_string())),
            Shape::One => None,
            Shape::List(count) => Some(count),
        };
        let txns = parsed
            .into_iter()
            .map(|p| p.map(|(txn, _)| txn).map_err(|e| e.code().to_string()))
            .collect();
        (req, list, txns)
    }

    /// As the channel reads it.
    fn read(message: &str) -> Read {
        read_with(received, message)
    }

    const ONE: &str = r#""ops":[{"collection":"notes","doc":{"_id":"a","n":1},"op":"insert"},{"collection":"notes","doc":{"n":2},"op":"insert"}]"#;
    const OTHER: &str = r#"{"ops":[{"collection":"notes","doc":{"_id":"b"},"if_version":null,"op":"put"}],"origin":{"client":"app","seq":3}}"#;

    #[test]
    fn canonical_messages_take_the_short_way_to_what_the_general_way_reads() {
        let messages = [
            format!("{{{ONE}}}"),
            format!(r#"{{"req":5,{ONE}}}"#),
            format!(r#"{{{ONE},"req":null}}"#),
            OTHER.to_string(),
            format!(r#"{{"req":9,"txns":[{{{ONE}}},{OTHER}]}}"#),
            format!(r#"{{"txns":[{OTHER}]}}"#),
            format!(r#"{{{ONE},"origin":null}}"#),
        ];
        for message in &messages {
            assert!(
                txn::fast_message(&mut txn::fuzz_ids(), message.as_bytes()).is_some(),
                "the short way takes {message}"
            );
            let read = read(message);
            assert_eq!(read, read_with(received_in_general, message), "{message}");
            assert!(read.2.is_ok(), "{message}");
            assert!(decode_message_for_fuzzing(message.as_bytes()).is_ok());
        }
        let (req, list, txns) = read(&messages[4]);
        assert_eq!(req, serde_json::json!(9));
        assert_eq!(list, Some(2));
        assert_eq!(txns.unwrap().len(), 2);
        let (req, list, _) = read(&messages[0]);
        assert_eq!((req, list), (Value::Null, None));
    }

    #[test]
    fn other_messages_go_the_general_way_with_its_answers() {
        let messages = [
            // Tags the general way refuses.
            format!(r#"{{"req":-1,{ONE}}}"#),
            format!(r#"{{"req":1.0,{ONE}}}"#),
            format!(r#"{{"req":"x",{ONE}}}"#),
            // Shapes it refuses: an empty or mixed list, an unknown field, both shapes.
            r#"{"txns":[]}"#.to_string(),
            format!(r#"{{"txns":[{OTHER}],"origin":{{"client":"c","seq":1}}}}"#),
            format!(r#"{{"extra":1,{ONE}}}"#),
            format!(r#"{{{ONE},"txns":[{OTHER}]}}"#),
            // A field there as `null` is there: a list takes no `origin` and no `ops`, one
            // transaction no `txns`.
            format!(r#"{{"txns":[{OTHER}],"origin":null}}"#),
            format!(r#"{{"ops":null,"txns":[{OTHER}]}}"#),
            format!(r#"{{{ONE},"txns":null}}"#),
            // Not canonical, or not inserts and puts: the general way commits them.
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"n":1,"_id":"a"}}]}"#.to_string(),
            r#"{"req":2,"ops":[{"op":"delete","collection":"notes","id":"a"}]}"#.to_string(),
            format!(
                r#"{{"txns":[{OTHER},{{"ops":[{{"op":"delete","collection":"n","id":"a"}}]}}]}}"#
            ),
            "[]".to_string(),
            "{".to_string(),
        ];
        for message in &messages {
            assert!(
                txn::fast_message(&mut txn::fuzz_ids(), message.as_bytes()).is_none(),
                "the short way leaves {message}"
            );
            let _ = decode_message_for_fuzzing(message.as_bytes());
        }
        // What the general way answers, for a few of them.
        assert_eq!(read(&messages[0]).2.unwrap_err(), "invalid_txn");
        assert_eq!(read(&messages[3]).2.unwrap_err(), "invalid_txn");
        for null_there in &messages[7..10] {
            assert_eq!(
                read(null_there).2.unwrap_err(),
                "invalid_txn",
                "{null_there}"
            );
        }
        assert!(read(&messages[10]).2.is_ok());
        assert_eq!(read(&messages[12]).1, Some(2));
        assert_eq!(read(&messages[14]).2.unwrap_err(), "invalid_json");
    }
}
