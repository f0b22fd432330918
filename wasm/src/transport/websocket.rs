//! The browser `WebSocket` transport: binary messages, one replication frame each.
//!
//! Browsers cannot set headers on a WebSocket, so a token travels as `?token=` (the server
//! accepts both). Messages are received as `ArrayBuffer`s and queued in the connection's
//! bounded [`Inbox`]; a text message is a protocol error and closes the connection. Sending
//! refuses to grow the socket's own buffer past [`SEND_BUFFERED_MAX`], so a stalled network
//! cannot make the tab hold an unbounded backlog. The event handlers are detached when the
//! connection is dropped.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use super::{Connection, Inbox, Incoming, Transport, TransportError};
use crate::time::Signal;

/// Most bytes the socket may hold unsent before `send` fails.
pub const SEND_BUFFERED_MAX: u32 = 8 << 20;

/// Opens WebSockets to one `ws(s)://…/v1/replicate` URL.
#[derive(Clone, Debug)]
pub struct WebSocketTransport {
    url: String,
}

impl WebSocketTransport {
    /// A transport to `url`, with `token` (if any) added as the `token` query parameter.
    pub fn new(url: &str, token: Option<&str>) -> WebSocketTransport {
        let url = match token {
            Some(token) => {
                let separator = if url.contains('?') { '&' } else { '?' };
                let token: String = js_sys::encode_uri_component(token).into();
                format!("{url}{separator}token={token}")
            }
            None => url.to_owned(),
        };
        WebSocketTransport { url }
    }
}

type Handler<E> = Closure<dyn FnMut(E)>;

/// What a socket's messages are: binary (replication frames) or text (the write channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frames {
    Binary,
    Text,
}

/// A browser WebSocket whose messages go to a bounded [`Inbox`] (a message of the other kind
/// closes it with 1003 and `protocol_violation`), with its handlers detached and the socket
/// closed when dropped: what the replication connection and the write channel share.
#[derive(Debug)]
pub(crate) struct BrowserSocket {
    socket: WebSocket,
    inbox: Inbox,
    _on_message: Handler<MessageEvent>,
    _on_close: Handler<CloseEvent>,
    _on_error: Handler<Event>,
    _on_open: Handler<Event>,
}

impl BrowserSocket {
    /// Opens `url` and resolves once it is open; `Err` with a message when it did not (a
    /// browser tells no more). `closed` turns a close event into the inbox's code and reason.
    pub(crate) async fn open(
        url: &str,
        frames: Frames,
        closed: fn(&CloseEvent) -> (String, String),
    ) -> Result<BrowserSocket, String> {
        let shown = strip_query(url).to_owned();
        let socket = WebSocket::new(url).map_err(|e| describe(&e, "invalid WebSocket URL"))?;
        if frames == Frames::Binary {
            socket.set_binary_type(BinaryType::Arraybuffer);
        }
        let inbox = Inbox::new();
        let opened = Signal::new();
        let on_open = {
            let opened = opened.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| opened.fire())
        };
        let on_message = {
            let inbox = inbox.clone();
            let socket = socket.clone();
            let path = shown.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let data = event.data();
                let message = match frames {
                    Frames::Binary => data
                        .dyn_into::<js_sys::ArrayBuffer>()
                        .ok()
                        .map(|buffer| js_sys::Uint8Array::new(&buffer).to_vec()),
                    Frames::Text => data.as_string().map(String::into_bytes),
                };
                match message {
                    Some(bytes) => inbox.push(bytes),
                    None => {
                        let (other, only) = match frames {
                            Frames::Binary => ("text", "binary frames only"),
                            Frames::Text => ("binary", "text frames only"),
                        };
                        inbox.close(
                            "protocol_violation",
                            &format!("a {other} message on {path}"),
                        );
                        let _ = socket.close_with_code_and_reason(1003, only);
                    }
                }
            })
        };
        let on_close = {
            let inbox = inbox.clone();
            let opened = opened.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                let (code, reason) = closed(&event);
                inbox.close(&code, &reason);
                opened.fire();
            })
        };
        let on_error = {
            let inbox = inbox.clone();
            let opened = opened.clone();
            let message = format!("the WebSocket to {shown} failed");
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                inbox.close("connection_error", &message);
                opened.fire();
            })
        };
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        socket.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let open = BrowserSocket {
            socket,
            inbox,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
            _on_open: on_open,
        };
        opened.wait().await;
        if open.socket.ready_state() != WebSocket::OPEN {
            return Err(format!("WebSocket to {shown} did not open"));
        }
        Ok(open)
    }

    /// Fails when the socket is not open or already holds [`SEND_BUFFERED_MAX`] bytes unsent.
    pub(crate) fn ready_to_send(&self) -> Result<(), String> {
        if !self.is_open() {
            return Err("the WebSocket is not open".into());
        }
        if self.socket.buffered_amount() > SEND_BUFFERED_MAX {
            return Err(format!(
                "over {SEND_BUFFERED_MAX} bytes wait in the socket's send buffer"
            ));
        }
        Ok(())
    }

    /// The socket, to send on.
    pub(crate) fn socket(&self) -> &WebSocket {
        &self.socket
    }

    /// The next message, or the close (after which it keeps answering the close).
    pub(crate) async fn next(&self) -> Incoming {
        self.inbox.next().await
    }

    /// Whether the socket is open and not closed by either side.
    pub(crate) fn is_open(&self) -> bool {
        !self.inbox.is_closed() && self.socket.ready_state() == WebSocket::OPEN
    }

    /// Closes the socket from this side (normal close).
    pub(crate) fn close(&self, reason: &str) {
        self.inbox.close("closed_by_replica", reason);
        // A reason is at most 123 bytes; ours are short codes.
        let reason: String = reason.chars().take(60).collect();
        let _ = self.socket.close_with_code_and_reason(1000, &reason);
    }
}

impl Drop for BrowserSocket {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        self.socket.set_onerror(None);
        let state = self.socket.ready_state();
        if state == WebSocket::OPEN || state == WebSocket::CONNECTING {
            let _ = self.socket.close();
        }
    }
}

/// One open browser WebSocket of the replication protocol.
#[derive(Debug)]
pub struct WebSocketConnection {
    socket: BrowserSocket,
}

impl Transport for WebSocketTransport {
    type Connection = WebSocketConnection;

    async fn connect(&self) -> Result<WebSocketConnection, TransportError> {
        let closed = |event: &CloseEvent| {
            let reason = format!("closed with {} {}", event.code(), event.reason());
            ("connection_closed".to_owned(), reason)
        };
        let socket = BrowserSocket::open(&self.url, Frames::Binary, closed)
            .await
            .map_err(TransportError::Connect)?;
        Ok(WebSocketConnection { socket })
    }
}

impl Connection for WebSocketConnection {
    fn send(&self, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.socket.ready_to_send().map_err(TransportError::Send)?;
        self.socket
            .socket()
            .send_with_u8_array(&bytes)
            .map_err(|e| TransportError::Send(describe(&e, "WebSocket.send failed")))
    }

    async fn recv(&self) -> Incoming {
        self.socket.next().await
    }

    fn close(&self, reason: &str) {
        self.socket.close(reason);
    }
}

/// A URL without its query (which may hold a token), for messages.
fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The message of a thrown JS value, or `fallback`.
pub(crate) fn describe(value: &wasm_bindgen::JsValue, fallback: &str) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| fallback.to_owned())
}
