//! The browser `WebSocket` of the write channel, `GET /v1/write` (docs/HTTP_API.md): text
//! messages, each out (one transaction, or a list of them) answered by one back, in order.
//!
//! This file only moves text; which transaction an answer belongs to, and what it means, is
//! the sender's business (`replica/channel_sender.rs`). Answers are queued in a bounded
//! [`Inbox`] (their UTF-8 bytes): the sender reads only answers to what it sent, so a server
//! that sends more than the inbox holds gets the channel closed. A close is reported with a
//! stable code: the server's error code when it closes with 1013 (try again later) or 1001
//! (going away) and names one, `message_too_big` for 1009, `connection_closed` otherwise.
//! Like the replication socket, the token travels as `?token=` (browsers cannot set headers
//! on a WebSocket), and the event handlers are detached when the channel is dropped.

use web_sys::CloseEvent;

use super::Incoming;
use super::websocket::{BrowserSocket, Frames, describe};

/// The write channel's path on a server.
pub const WRITE_CHANNEL_PATH: &str = "/v1/write";

/// The `ws(s)://…/v1/write` URL of the server whose HTTP base is `http_base`, with `token`
/// (if any) as the `token` query parameter; `None` if the base is not `http(s)://`.
pub fn write_channel_url(http_base: &str, token: Option<&str>) -> Option<String> {
    let base = http_base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}{WRITE_CHANNEL_PATH}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}{WRITE_CHANNEL_PATH}")
    } else {
        return None;
    };
    Some(match token {
        Some(token) => format!("{ws}?token={}", encode_component(token)),
        None => ws,
    })
}

/// `encodeURIComponent` for the characters a token can hold (natively: the same rule, so the
/// URL is testable without a browser).
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The stable code of a close: the server's error code on 1013, 1001 and 1009 (it names why:
/// `not_leader`, `shutting_down`, `body_too_large`, …; 1009 is `body_too_large` unnamed too),
/// else `connection_closed`.
pub fn close_code(code: u16, reason: &str) -> String {
    let named = !reason.is_empty()
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    match code {
        1013 | 1001 | 1009 if named => reason.to_owned(),
        1009 => "body_too_large".to_owned(),
        _ => "connection_closed".to_owned(),
    }
}

/// One open write channel.
#[derive(Debug)]
pub struct WriteChannel {
    socket: BrowserSocket,
}

impl WriteChannel {
    /// Opens a channel to `url` (from [`write_channel_url`]); resolves once it is open. `Err`
    /// says the upgrade did not happen: a browser tells no more (no status, no body), so
    /// the caller asks the server over HTTP why, if it wants to know.
    pub async fn open(url: &str) -> Result<WriteChannel, String> {
        let closed = |event: &CloseEvent| {
            let reason = event.reason();
            let code = close_code(event.code(), &reason);
            let message = format!("the write channel closed with {} {reason}", event.code());
            (code, message)
        };
        let socket = BrowserSocket::open(url, Frames::Text, closed).await?;
        Ok(WriteChannel { socket })
    }

    /// Sends one message's text (a transaction or a list). Fails when the channel is not open
    /// or the socket already holds [`SEND_BUFFERED_MAX`](super::websocket::SEND_BUFFERED_MAX)
    /// bytes unsent.
    pub fn send(&self, text: &str) -> Result<(), String> {
        self.socket.ready_to_send()?;
        self.socket
            .socket()
            .send_with_str(text)
            .map_err(|e| describe(&e, "WebSocket.send failed"))
    }

    /// The next answer's text, or the close (after which it keeps answering the close).
    pub async fn next(&self) -> Result<String, (String, String)> {
        match self.socket.next().await {
            Incoming::Frame(bytes) => String::from_utf8(bytes)
                .map_err(|_| ("bad_response".into(), "an answer that is not UTF-8".into())),
            Incoming::Closed { code, reason } => Err((code, reason)),
        }
    }

    /// Whether the channel is open and not closed by either side.
    pub fn is_open(&self) -> bool {
        self.socket.is_open()
    }

    /// Closes the channel (normal close).
    pub fn close(&self, reason: &str) {
        self.socket.close(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_comes_from_the_http_base() {
        assert_eq!(
            write_channel_url("http://127.0.0.1:7070/", None).unwrap(),
            "ws://127.0.0.1:7070/v1/write"
        );
        assert_eq!(
            write_channel_url("https://db.example", Some("a b/c+=")).unwrap(),
            "wss://db.example/v1/write?token=a%20b%2Fc%2B%3D"
        );
        assert_eq!(write_channel_url("ws://x", None), None);
    }

    #[test]
    fn closes_carry_the_servers_code_when_it_names_one() {
        assert_eq!(close_code(1013, "not_leader"), "not_leader");
        assert_eq!(close_code(1001, "shutting_down"), "shutting_down");
        assert_eq!(close_code(1013, ""), "connection_closed");
        assert_eq!(close_code(1013, "Not A Code"), "connection_closed");
        assert_eq!(close_code(1009, "body_too_large"), "body_too_large");
        assert_eq!(close_code(1009, "too big"), "body_too_large");
        assert_eq!(close_code(1006, ""), "connection_closed");
        assert_eq!(close_code(1000, "done"), "connection_closed");
    }
}
