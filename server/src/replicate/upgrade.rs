//! The WebSocket handshake of `/v1/replicate`, done here rather than by axum's
//! `WebSocketUpgrade`, so that a session gets its TCP socket itself and registers it with the
//! reactor of the runtime it runs on.
//!
//! Sessions run on threads of their own (`sessions`). Through axum's upgrade their sockets
//! stayed registered with the edge's reactor: every acknowledgement a replica sent was seen by
//! an edge worker's `epoll_wait` and handed across threads to the session's (12,700
//! `epoll_wait`s and about 8,000 extra context switches a second with 10,000 replicas at 10
//! writes/s, docs/bench/fanout-profile.md). Here the upgraded connection's `TcpStream` is taken
//! out of hyper, deregistered from the edge's reactor and registered again on the session's
//! runtime, with the bytes hyper had already read after the request kept in front of it. A TLS
//! connection keeps hyper's upgraded stream (its socket is inside the TLS session).
//!
//! ```text
//!  GET /v1/replicate ─► check (GET, Connection: upgrade, Upgrade: websocket, version 13, key)
//!        │                    └─ refused ─► 426 upgrade_required
//!        ▼
//!  101 Switching Protocols (Sec-WebSocket-Accept) ── hyper hands over the connection ──►
//!  session task: TcpStream → std → TcpStream on this runtime ─► WebSocketStream (server role)
//! ```

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, Request, StatusCode, Version};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::edge::io::TrackedIo;

/// An accepted handshake: the answer to send, and the connection to come.
#[derive(Debug)]
pub struct Upgrade {
    accept: String,
    on_upgrade: OnUpgrade,
}

/// A replication socket: a plain TCP connection moved to the session's runtime, or hyper's
/// upgraded stream (TLS). `cstore_replication_sockets_total{kind="tcp"|"tls"}` counts each.
#[derive(Debug)]
pub enum Socket {
    Tcp(WebSocketStream<TcpStream>),
    Upgraded(WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>),
}

/// The WebSocket version this server speaks (RFC 6455).
const VERSION_13: &str = "13";

impl Upgrade {
    /// Checks that `request` asks for a WebSocket (RFC 6455, section 4.2.1) and takes its
    /// connection for later; `Err` says what is missing, for a `426 upgrade_required`.
    pub fn accept<B>(request: &mut Request<B>) -> Result<Upgrade, String> {
        if request.version() > Version::HTTP_11 {
            return Err("a WebSocket upgrade needs HTTP/1.1".into());
        }
        if request.method() != Method::GET {
            return Err("a WebSocket upgrade must be a GET".into());
        }
        let headers = request.headers();
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err("`Connection` header did not include `upgrade`".into());
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err("`Upgrade` header did not include `websocket`".into());
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != VERSION_13.as_bytes())
        {
            return Err("`Sec-WebSocket-Version` header did not include `13`".into());
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err("`Sec-WebSocket-Key` header missing".into());
        };
        let accept = derive_accept_key(key.as_bytes());
        let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
            return Err("the connection cannot be upgraded".into());
        };
        Ok(Upgrade { accept, on_upgrade })
    }

    /// The `101 Switching Protocols` answer (send it, then await [`Upgrade::socket`]).
    pub fn response(&self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept = HeaderValue::from_str(&self.accept).expect("base64 is a valid header value");
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }

    /// The WebSocket, once hyper has sent the answer and handed the connection over. Call it
    /// on the runtime that will drive the socket: a plain TCP socket is registered there.
    pub async fn socket(self, config: WebSocketConfig) -> std::io::Result<Socket> {
        let upgraded = self.on_upgrade.await.map_err(std::io::Error::other)?;
        match upgraded.downcast::<TokioIo<TrackedIo<TcpStream>>>() {
            Ok(parts) => {
                // `into_std` deregisters the socket from the edge's reactor; `from_std`
                // registers it with the current runtime's.
                let tcp = parts.io.into_inner().into_inner().into_std()?;
                let tcp = TcpStream::from_std(tcp)?;
                let read = parts.read_buf.to_vec();
                let socket =
                    WebSocketStream::from_partially_read(tcp, read, Role::Server, Some(config))
                        .await;
                metrics::counter!("cstore_replication_sockets_total", "kind" => "tcp").increment(1);
                Ok(Socket::Tcp(socket))
            }
            Err(upgraded) => {
                let io = TokioIo::new(upgraded);
                let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                metrics::counter!("cstore_replication_sockets_total", "kind" => "tls").increment(1);
                Ok(Socket::Upgraded(socket))
            }
        }
    }
}

/// True when the comma-separated header `name` holds `token` (case-insensitive), as
/// `Connection: keep-alive, Upgrade` does.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/v1/replicate");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    const GOOD: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn each_missing_part_of_the_handshake_is_named() {
        for (i, (name, _)) in GOOD.iter().enumerate() {
            let mut headers = GOOD.to_vec();
            headers.remove(i);
            let why = Upgrade::accept(&mut request(&headers)).unwrap_err();
            let named = why.to_ascii_lowercase().contains(name);
            assert!(named, "without {name}: {why}");
        }
        let mut headers = GOOD.to_vec();
        headers[2].1 = "8";
        let why = Upgrade::accept(&mut request(&headers)).unwrap_err();
        assert!(why.contains("13"), "{why}");
        let mut post = request(GOOD);
        *post.method_mut() = Method::POST;
        assert!(Upgrade::accept(&mut post).unwrap_err().contains("GET"));
    }

    #[test]
    fn a_request_outside_a_server_connection_cannot_be_upgraded() {
        // Every header is right, but no hyper connection put an `OnUpgrade` in it.
        let why = Upgrade::accept(&mut request(GOOD)).unwrap_err();
        assert!(why.contains("cannot be upgraded"), "{why}");
    }

    #[test]
    fn the_answer_switches_protocols_with_rfc_6455s_accept_key() {
        let mut asked = request(GOOD);
        // What hyper puts in a request on a connection served `with_upgrades` (this one will
        // never complete: no connection is behind it).
        let on_upgrade = hyper::upgrade::on(request(&[]));
        asked.extensions_mut().insert(on_upgrade);
        let upgrade = Upgrade::accept(&mut asked).unwrap();
        assert!(asked.extensions().get::<OnUpgrade>().is_none(), "taken");
        let response = upgrade.response();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let headers = response.headers();
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
        // RFC 6455, section 1.3: this key gives this accept value.
        assert_eq!(
            headers[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn connection_tokens_are_matched_whole_and_without_case() {
        let headers = request(&[("connection", "keep-alive, UPGRADE")]);
        assert!(has_token(headers.headers(), header::CONNECTION, "upgrade"));
        let headers = request(&[("connection", "upgrades")]);
        assert!(!has_token(headers.headers(), header::CONNECTION, "upgrade"));
    }
}
