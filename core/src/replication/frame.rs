//! Replication frames: the messages a leader and a replica exchange, and their binary form.
//!
//! A frame travels as one WebSocket binary message (or one message of any other transport that
//! keeps message boundaries). Its bytes are one record in the log's framing, kind `Frame`, so
//! the wire shares the disk's checksum and version rules:
//!
//! ```text
//! [len: u32][crc32c: u32][format version: u8][kind = Frame: u8][frame tag: u8][postcard body]
//!                                                               └─ the serde variant index
//! ```
//!
//! The frame tag is checked before postcard sees the body, so a frame from a newer protocol is
//! reported as `unknown_frame_kind`, not as a vague decoding failure. Decoding any bytes never
//! panics: every failure is a [`FrameError`] with a stable code. The protocol version proper
//! travels in [`Hello`]; the leader refuses versions it does not speak.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::log::LogEntry;
use crate::log::codec::{
    DecodeError, RECORD_HEADER_BYTES, RECORD_PAYLOAD_MAX, RecordKind, decode_record, encode_value,
};
use crate::types::{Hash, LogPosition, Lsn, ReplicaId, Term};

/// The replication protocol version this build's replicas speak.
///
/// - Version 2: entries carry `Txn::origin` (log format version 2).
/// - Version 3: the frames are version 2's; the replica acknowledges persisted entries only when
///   asked. Every [`Frame::Heartbeat`] asks, and the leader sends one with entries when an
///   answer is needed (see [`Frame::Heartbeat`]). A version 2 replica acknowledges every
///   persisted batch.
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest replica protocol version a leader of this build serves, and the oldest a replica
/// of this build falls back to when a leader refuses its newest ([`Replica`]'s hello).
///
/// [`Replica`]: crate::replication::Replica
pub const PROTOCOL_VERSION_MIN: u16 = 2;
/// The first version whose replicas acknowledge only when asked.
pub(crate) const ACKS_ON_REQUEST_SINCE: u16 = 3;
/// Largest frame, in bytes, that [`Frame::decode`] accepts: one record of the largest size.
/// A single entry always fits (a transaction is at most 16 MiB of documents); batches of
/// entries are cut far below this by the leader's `frame_bytes_max`.
pub const FRAME_BYTES_MAX: usize = RECORD_HEADER_BYTES + RECORD_PAYLOAD_MAX;
/// Longest error message put on the wire; longer ones are cut (at a character boundary).
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;
/// How many frame kinds this version knows; tags at or above it are unknown.
const FRAME_KINDS: u8 = 10;

/// The replica's opening frame: who it is, where its log ends, and what it has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the replica speaks ([`PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// The replica's stable identity.
    pub replica_id: ReplicaId,
    /// The highest term the replica has seen; a leader of an older term is stale.
    pub term: Term,
    /// The last entry the replica holds or is persisting: streaming continues after it.
    pub last: LogPosition,
    /// The last LSN the replica holds durably on the chain that ends at `last`.
    pub durable: Lsn,
    /// A snapshot the replica was receiving when its last connection dropped, if any.
    pub resume: Option<SnapshotResume>,
    /// The collections the replica follows (`None`: all). The leader sends the other
    /// collections' operations as hashes only (`Txn::omitted`), so every entry still verifies,
    /// and snapshots holding only these collections. At most [`SUBSCRIPTION_COLLECTIONS_MAX`]
    /// valid collection names.
    pub collections: Option<Vec<String>>,
}

/// Most collections one replica may subscribe to by name.
pub const SUBSCRIPTION_COLLECTIONS_MAX: usize = 1024;

/// Where an interrupted snapshot transfer stopped, so a reconnect can continue it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResume {
    /// The position of the snapshot being received.
    pub position: LogPosition,
    /// Its state hash.
    pub state_hash: Hash,
    /// How many of its bytes the replica holds.
    pub offset: u64,
}

/// One message of the replication protocol. Variants are never reordered or removed: the tag
/// is the variant index.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Replica → leader, first frame of a connection.
    Hello(Hello),
    /// Replica → leader: every entry through `durable` is durable on the replica.
    Ack {
        /// The replica's durable LSN.
        durable: Lsn,
    },
    /// Replica → leader: this many bytes of the snapshot at `position` have arrived. The
    /// position tells a late ack of an earlier transfer from one of the current transfer.
    SnapshotAck {
        /// The snapshot being received.
        position: LogPosition,
        /// Bytes received, from the start of the snapshot.
        received_bytes: u64,
    },
    /// Leader → replica, answer to `Hello`. When `start` is the replica's `last`, entries
    /// follow; otherwise a snapshot at `start` follows, then the entries after it.
    Welcome {
        /// The leader's identity.
        leader_id: ReplicaId,
        /// The leader's term.
        term: Term,
        /// Where the replica's log will continue.
        start: LogPosition,
    },
    /// Leader → replica: consecutive committed entries.
    Entries {
        /// In LSN order, each following the one before.
        entries: Vec<LogEntry>,
    },
    /// Leader → replica: a snapshot transfer starts.
    SnapshotBegin {
        /// The last entry the snapshot's state includes.
        position: LogPosition,
        /// SHA-256 of the snapshot bytes.
        state_hash: Hash,
        /// Length of the snapshot bytes.
        total_bytes: u64,
    },
    /// Leader → replica: a piece of the snapshot bytes.
    SnapshotChunk {
        /// Where `bytes` start within the snapshot.
        offset: u64,
        /// The piece.
        bytes: Vec<u8>,
    },
    /// Leader → replica: every snapshot byte was sent.
    SnapshotEnd,
    /// Leader → replica: the leader is alive and has committed through `committed`; it asks for
    /// an [`Frame::Ack`]. The replica answers with its durable LSN (also its keepalive): at once,
    /// or, when entries it received are still being persisted, once they are.
    ///
    /// A leader sends one when nothing else was sent for a heartbeat interval, and, to a
    /// replica of protocol version 3, right after entries when it needs their acknowledgement:
    /// a write waits for replicas, its window is half full, or it has not asked for a
    /// heartbeat interval.
    Heartbeat {
        /// The leader's last committed entry.
        committed: LogPosition,
    },
    /// Either way: the sender is closing the connection for this reason.
    Error {
        /// A stable snake_case code (see [`ErrorCode`]).
        code: String,
        /// A human-readable explanation.
        message: String,
    },
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Entries and chunks can be megabytes: show their extent, not their contents.
        match self {
            Frame::Entries { entries } => match (entries.first(), entries.last()) {
                (Some(first), Some(last)) => write!(f, "Entries({}..={})", first.lsn, last.lsn),
                _ => f.write_str("Entries(empty)"),
            },
            Frame::SnapshotChunk { offset, bytes } => {
                write!(
                    f,
                    "SnapshotChunk {{ offset: {offset}, bytes: {} }}",
                    bytes.len()
                )
            }
            Frame::Hello(hello) => write!(f, "Hello({hello:?})"),
            Frame::Ack { durable } => write!(f, "Ack {{ durable: {durable} }}"),
            Frame::SnapshotAck {
                position,
                received_bytes,
            } => write!(
                f,
                "SnapshotAck {{ position: {position}, received_bytes: {received_bytes} }}"
            ),
            Frame::Welcome {
                leader_id,
                term,
                start,
            } => write!(
                f,
                "Welcome {{ leader_id: {leader_id}, term: {term}, start: {start} }}"
            ),
            Frame::SnapshotBegin {
                position,
                state_hash,
                total_bytes,
            } => write!(
                f,
                "SnapshotBegin {{ position: {position}, state_hash: {state_hash:?}, total_bytes: {total_bytes} }}"
            ),
            Frame::SnapshotEnd => f.write_str("SnapshotEnd"),
            Frame::Heartbeat { committed } => write!(f, "Heartbeat {{ committed: {committed} }}"),
            Frame::Error { code, message } => write!(f, "Error({code}: {message})"),
        }
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("frame checksum mismatch")]
    BadChecksum,
    #[error("unknown frame format version {0}")]
    UnknownVersion(u8),
    #[error("record is not a replication frame")]
    NotAFrame,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame is malformed: {0}")]
    Malformed(String),
}

impl ErrorCode for FrameError {
    fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "frame_too_large",
            FrameError::Truncated { .. } => "frame_truncated",
            FrameError::BadChecksum => "bad_checksum",
            FrameError::UnknownVersion(_) => "unknown_version",
            FrameError::NotAFrame => "not_a_frame",
            FrameError::UnknownKind(_) => "unknown_frame_kind",
            FrameError::Malformed(_) => "malformed_frame",
        }
    }
}

impl From<DecodeError> for FrameError {
    fn from(error: DecodeError) -> FrameError {
        match error {
            DecodeError::Truncated { needed, available } => {
                FrameError::Truncated { needed, available }
            }
            DecodeError::TooLarge { len } => FrameError::TooLarge {
                len,
                max: FRAME_BYTES_MAX,
            },
            DecodeError::BadChecksum { .. } => FrameError::BadChecksum,
            DecodeError::UnknownVersion(version) => FrameError::UnknownVersion(version),
            DecodeError::UnknownKind(_) | DecodeError::WrongKind { .. } => FrameError::NotAFrame,
            DecodeError::Malformed(why) => FrameError::Malformed(why),
            DecodeError::HashMismatch { lsn } => {
                FrameError::Malformed(format!("entry {lsn} does not match its hash"))
            }
        }
    }
}

impl Frame {
    /// An `Error` frame; the message is cut to [`ERROR_MESSAGE_BYTES_MAX`].
    pub fn error(code: &str, message: &str) -> Frame {
        let mut end = message.len().min(ERROR_MESSAGE_BYTES_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Frame::Error {
            code: code.to_owned(),
            message: message[..end].to_owned(),
        }
    }

    /// The variant's name, for logs and protocol-violation messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Ack { .. } => "Ack",
            Frame::SnapshotAck { .. } => "SnapshotAck",
            Frame::Welcome { .. } => "Welcome",
            Frame::Entries { .. } => "Entries",
            Frame::SnapshotBegin { .. } => "SnapshotBegin",
            Frame::SnapshotChunk { .. } => "SnapshotChunk",
            Frame::SnapshotEnd => "SnapshotEnd",
            Frame::Heartbeat { .. } => "Heartbeat",
            Frame::Error { .. } => "Error",
        }
    }

    /// The frame's bytes: one record of kind `Frame`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the frame's bytes to `out`. A frame above [`FRAME_BYTES_MAX`] is a bug of the
    /// sender (the leader cuts batches far below it) and panics.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_value(RecordKind::Frame, self, out);
    }

    /// Decodes one frame that must fill `bytes` exactly, up to [`FRAME_BYTES_MAX`].
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        Frame::decode_limited(bytes, FRAME_BYTES_MAX)
    }

    /// Decodes one frame that must fill `bytes` exactly and be at most `max_bytes` long. A
    /// browser replica can pass a lower bound than the leader's default.
    pub fn decode_limited(bytes: &[u8], max_bytes: usize) -> Result<Frame, FrameError> {
        let max = max_bytes.min(FRAME_BYTES_MAX);
        if bytes.len() > max {
            return Err(FrameError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        // The declared length is checked against the bound before anything else is trusted.
        if let Some(len) = bytes.get(0..4) {
            let declared = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let total = declared.saturating_add(RECORD_HEADER_BYTES);
            if total > max {
                return Err(FrameError::TooLarge { len: total, max });
            }
        }
        let (kind, body, used) = decode_record(bytes)?;
        if kind != RecordKind::Frame {
            return Err(FrameError::NotAFrame);
        }
        if used != bytes.len() {
            return Err(FrameError::Malformed(format!(
                "{} bytes after the frame",
                bytes.len() - used
            )));
        }
        let tag = *body
            .first()
            .ok_or_else(|| FrameError::Malformed("empty frame body".into()))?;
        if tag >= FRAME_KINDS {
            return Err(FrameError::UnknownKind(tag));
        }
        let (frame, rest) = postcard::take_from_bytes::<Frame>(body)
            .map_err(|e| FrameError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(FrameError::Malformed(format!(
                "{} trailing bytes in the frame body",
                rest.len()
            )));
        }
        Ok(frame)
    }
}

/// The encoded size of an entry inside an `Entries` frame, for the leader's byte window.
pub fn entry_wire_bytes(entry: &LogEntry) -> usize {
    postcard::serialize_with_flavor(entry, postcard::ser_flavors::Size::default())
        .expect("measuring cannot fail")
}
