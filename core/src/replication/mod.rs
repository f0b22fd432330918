//! Replication from the leader to its replicas, as sans-IO state machines.
//!
//! The leader streams its committed log to every replica over a connection that keeps message
//! boundaries (a WebSocket). Neither side here does IO: the leader's driver holds one
//! [`LeaderSession`] per connection, the replica's driver one [`Replica`]; both feed in frames,
//! completions and the time, and carry out the commands that come back. So the server (tokio),
//! the browser (wasm) and the deterministic simulator in `core/tests/` all run the same
//! protocol code. When a connection drops, both drivers wait out the same jittered
//! [`Backoff`] before they say hello again.
//!
//! ```text
//!  leader driver                                              replica driver
//!  ─────────────                                              ──────────────
//!  LeaderSession ◄──── Hello{last, durable} ─────────────────  Replica::hello()
//!   │ ReadEntries/ReadSnapshot ─► log store                       │
//!   ├──── Welcome{start} ─────────────────────────────────────►  │
//!   ├──── SnapshotBegin, SnapshotChunk…, SnapshotEnd ─────────►  │ InstallSnapshot ─► store
//!   │ ◄── SnapshotAck{received_bytes} ──────────────────────────  │
//!   ├──── Entries{entries} (window: entries and bytes) ───────►  │ Persist ─► store + state
//!   │ ◄── Ack{durable} ─────────────────────────────────────────  │ on_persisted(lsn)
//!   ├──── Heartbeat{committed} ───────────────────────────────►  │
//!   ▼                                                             ▼
//!  AckTracker: durable-on-N, `replicas:N` / `all` waits with deadlines (Unknown at timeout)
//! ```
//!
//! # Driving both ends
//!
//! A leader with two committed entries and an empty replica, wired directly (a real driver
//! sends `frame.encode()` over its socket and decodes with `handle_bytes`):
//!
//! ```
//! use std::collections::VecDeque;
//! use cstore_core::replication::{
//!     Frame, LeaderCommand, LeaderSession, Replica, ReplicaCommand, ReplicaConfig, SessionConfig,
//! };
//! use cstore_core::{LogEntry, LogPosition, Lsn, ReplicaId, Term, TimestampMs, Txn};
//!
//! let mut log = vec![LogEntry::new(LogPosition::START, Term(1), TimestampMs(1), Txn::tick())];
//! log.push(LogEntry::new(log[0].position(), Term(1), TimestampMs(2), Txn::tick()));
//! let committed = log[1].position();
//! let now = TimestampMs(10);
//!
//! let mut session = LeaderSession::new(SessionConfig::default(), ReplicaId(1), Term(1), committed, now);
//! let mut replica = Replica::new(ReplicaConfig::new(ReplicaId(7)), LogPosition::START, Term(0));
//! let mut persisted: Vec<LogEntry> = Vec::new();
//!
//! let mut to_leader = VecDeque::from([replica.hello(now)]);
//! let mut to_replica = VecDeque::new();
//! while !to_leader.is_empty() || !to_replica.is_empty() {
//!     while let Some(frame) = to_leader.pop_front() {
//!         let mut commands = VecDeque::from(session.handle_frame(now, frame));
//!         while let Some(command) = commands.pop_front() {
//!             match command {
//!                 LeaderCommand::Send(frame) => to_replica.push_back(frame),
//!                 LeaderCommand::SendEntries(frame) => to_replica.push_back(frame.to_frame()),
//!                 LeaderCommand::ReadEntries { from, to } => {
//!                     let entries = log[(from.0 - 1) as usize..(to.0 - 1) as usize].to_vec();
//!                     commands.extend(session.on_entries(now, entries));
//!                 }
//!                 LeaderCommand::ReadSnapshot { .. } => unreachable!("nothing was compacted"),
//!                 LeaderCommand::Close(error) => panic!("{error}"),
//!             }
//!         }
//!     }
//!     while let Some(frame) = to_replica.pop_front() {
//!         let mut commands = VecDeque::from(replica.handle_frame(now, frame));
//!         while let Some(command) = commands.pop_front() {
//!             match command {
//!                 ReplicaCommand::Send(frame) => to_leader.push_back(frame),
//!                 ReplicaCommand::Persist { entries } => {
//!                     // Append durably and apply to the state here, then report.
//!                     let last = entries.last().unwrap().lsn;
//!                     persisted.extend(entries);
//!                     commands.extend(replica.on_persisted(now, last));
//!                 }
//!                 ReplicaCommand::SaveTerm(_) => {}
//!                 ReplicaCommand::InstallSnapshot(_) => unreachable!(),
//!                 ReplicaCommand::Close(error) => panic!("{error}"),
//!             }
//!         }
//!     }
//! }
//! assert_eq!(persisted, log);
//! // The replica acknowledges when asked. Every heartbeat asks; a session sends one when it
//! // was quiet for a heartbeat interval, and right behind entries that something waits for.
//! assert_eq!(session.durable_lsn(), Lsn(0));
//! let later = TimestampMs(now.0 + SessionConfig::default().heartbeat_interval_ms);
//! for command in session.on_tick(later) {
//!     let LeaderCommand::Send(heartbeat) = command else { unreachable!() };
//!     for answer in replica.handle_frame(later, heartbeat) {
//!         let ReplicaCommand::Send(ack) = answer else { unreachable!() };
//!         assert!(session.handle_frame(later, ack).is_empty());
//!     }
//! }
//! assert_eq!(session.durable_lsn(), Lsn(2));
//! assert_eq!(session.lag(), 0);
//! ```

mod backoff;
mod config;
mod entries_frame;
mod error;
mod frame;
mod incoming;
mod leader_session;
mod replica;
mod watermarks;

pub use backoff::Backoff;
pub use config::{ReplicaConfig, SessionConfig};
pub use entries_frame::EntriesFrame;
pub use error::{Remedy, ReplicationError};
pub use frame::{
    ERROR_MESSAGE_BYTES_MAX, FRAME_BYTES_MAX, Frame, FrameError, Hello, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN, SUBSCRIPTION_COLLECTIONS_MAX, SnapshotResume, entry_wire_bytes,
};
pub use leader_session::{LeaderCommand, LeaderSession};
#[cfg(feature = "testing")]
pub use replica::PlantedBugs;
pub use replica::{Replica, ReplicaCommand};
pub use watermarks::{AckError, AckTracker, Needed, WaitId, WaitOutcome};
