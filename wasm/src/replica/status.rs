//! What the replica reports about itself: connection, positions, pending writes, last error.
//!
//! One plain struct, updated by the driver and the writer, read by `status()` and pushed to
//! `onStatus` listeners (coalesced with the watch notifications, see `shared.rs`).

use cstore_core::Lsn;

use super::members::Refused;

/// The role of this node, as far as the app cares: a browser replica always follows.
pub const ROLE: &str = "replica";

/// An error the replica hit and recovered from (or not): stable code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastError {
    /// Stable snake_case code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// The replica's state, as `replica.status()` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The browser says it has a network (`navigator.onLine`).
    pub online: bool,
    /// A replication connection is open and streaming.
    pub connected: bool,
    /// The last LSN applied to the local confirmed state.
    pub applied_lsn: Lsn,
    /// The leader's last committed LSN, as last heard.
    pub leader_lsn: Lsn,
    /// Writes made here that the leader has not confirmed yet.
    pub pending_writes: usize,
    /// The last error, if any since open.
    pub last_error: Option<LastError>,
    /// How many times the local copy was discarded and fetched again.
    pub rebootstraps: u64,
    /// The HTTP base of the server the replication connection is (or last was) on, when the
    /// replica follows several.
    pub member: Option<String>,
    /// How often the connection moved to another member of the cluster.
    pub member_switches: u64,
    /// Servers refused for holding another store (`wrong_cluster`).
    pub refused_members: Vec<Refused>,
    /// The replica was closed.
    pub closed: bool,
}

impl Status {
    /// Committed entries not yet applied here.
    pub fn lag(&self) -> u64 {
        self.leader_lsn.0.saturating_sub(self.applied_lsn.0)
    }

    /// Records an error.
    pub fn set_error(&mut self, code: &str, message: &str) {
        self.last_error = Some(LastError {
            code: code.to_owned(),
            message: message.to_owned(),
        });
    }
}
