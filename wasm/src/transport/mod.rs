//! How the browser replica reaches its leader: a connection that carries one replication
//! frame per message, in both directions.
//!
//! The driver is written against the [`Transport`] trait so the same sync loop runs over the
//! browser's `WebSocket` ([`websocket::WebSocketTransport`]) and, in tests, over an
//! in-browser leader ([`loopback`], feature `testing`) that runs core's `LeaderSession` on a
//! `MemoryStore` and can inject faults. A connection delivers what arrives through a bounded
//! [`Inbox`]: the leader's window already bounds what it has in flight, and a peer that
//! overruns the inbox anyway gets the connection closed, never unbounded memory.

pub mod cluster;
pub mod http;
mod inbox;
#[cfg(feature = "testing")]
pub mod loopback;
pub mod websocket;
pub mod write_channel;

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
    /// Every server given holds another store than the one this replica follows.
    #[error("{0}")]
    WrongCluster(String),
}

impl ErrorCode for TransportError {
    fn code(&self) -> &'static str {
        match self {
            TransportError::Connect(_) => "connect_failed",
            TransportError::Send(_) => "send_failed",
            TransportError::WrongCluster(_) => "wrong_cluster",
        }
    }
}

/// Opens connections to one leader.
pub trait Transport {
    /// An open connection.
    type Connection: Connection;

    /// Opens a connection; resolves once it is usable.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, TransportError>>;

    /// Which of several servers the last connection reached, and which were refused; `None`
    /// for a transport to one fixed server.
    fn report(&self) -> Option<MembersReport> {
        None
    }

    /// The replica will resume after `lsn`: a transport that can choose among servers skips
    /// those that have not applied that far yet (they would send a snapshot instead).
    fn resume_from(&self, lsn: u64) {
        let _ = lsn;
    }
}

/// What a transport over several servers reports after a connect (see `cluster.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembersReport {
    /// The HTTP base of the member connected (or last connected).
    pub connected_url: Option<String>,
    /// How often the connection moved to another member.
    pub switches: u64,
    /// Members refused for holding another store.
    pub refused: Vec<crate::replica::members::Refused>,
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
