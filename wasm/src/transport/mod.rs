//! How the browser replica reaches its leader: a connection that carries one replication
//! frame per message, in both directions.
//!
//! The driver is written against the [`Transport`] trait so the same sync loop runs over the
//! browser's `WebSocket` ([`websocket::WebSocketTransport`]) and, in tests, over an
//! in-browser leader ([`loopback`], feature `testing`) that runs core's `LeaderSession` on a
//! `MemoryStore` and can inject faults. A connection delivers what arrives through a bounded
//! [`Inbox`]: the leader's window already bounds what it has in flight, and a peer that
//! overruns the inbox anyway gets the connection closed, never unbounded memory.

mod inbox;
#[cfg(feature = "testing")]
pub mod loopback;
pub mod websocket;

use std::future::Future;

use cstore_core::ErrorCode;

pub use inbox::{INBOX_BYTES_MAX, INBOX_FRAMES_MAX, Inbox, Incoming};

/// Why a connection could not be opened or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be opened (refused, DNS, TLS, HTTP error on upgrade).
    #[error("could not connect: {0}")]
    Connect(String),
    /// Sending failed: the connection is closed or its send buffer is full.
    #[error("send failed: {0}")]
    Send(String),
}

impl ErrorCode for TransportError {
    fn code(&self) -> &'static str {
        match self {
            TransportError::Connect(_) => "connect_failed",
            TransportError::Send(_) => "send_failed",
        }
    }
}

/// Opens connections to one leader.
pub trait Transport {
    /// An open connection.
    type Connection: Connection;

    /// Opens a connection; resolves once it is usable.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, TransportError>>;
}

/// One open connection. Dropping it closes it.
pub trait Connection {
    /// Sends one frame's bytes as one message.
    fn send(&self, bytes: Vec<u8>) -> Result<(), TransportError>;

    /// The next frame, or the close (after which it keeps answering the close).
    fn recv(&self) -> impl Future<Output = Incoming>;

    /// Closes the connection (a normal close with this reason).
    fn close(&self, reason: &str);
}
