//! Record framing for disk and wire.
//!
//! ```text
//! ┌──────────┬─────────────┬─────────┬──────┬──────────────────────┐
//! │ len: u32 │ crc32c: u32 │ version │ kind │ body (postcard)      │
//! │   LE     │   LE        │   u8    │  u8  │                      │
//! └──────────┴─────────────┴─────────┴──────┴──────────────────────┘
//!             └ covers len ‖ payload ┘└──────── payload: len bytes ──┘
//! ```
//!
//! The crc32c finds a torn or flipped record cheaply; for log entries the SHA-256 chain then
//! proves integrity end to end, and [`decode_entry`] checks it, so a decoded entry is never
//! a wrong one. Decoding any byte string returns a typed error and never panics.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorCode;
use crate::log::LogEntry;
use crate::types::Lsn;

/// Bytes before the payload: length and checksum.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Largest payload accepted, in bytes. A transaction is at most 16 MiB of documents; this
/// leaves room for its framing and stops a corrupt length from asking for gigabytes.
pub const RECORD_PAYLOAD_MAX: usize = 32 << 20;
/// The current format version, the first payload byte. Version 2 added `Txn::origin`; records
/// of version 1 are refused as an unknown version, never misread.
pub const FORMAT_VERSION: u8 = 2;

/// What a record holds, the second payload byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A [`LogEntry`].
    Entry = 1,
    /// A snapshot header or chunk.
    Snapshot = 2,
    /// Store metadata (term, node id).
    Metadata = 3,
    /// A replication protocol frame.
    Frame = 4,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        Some(match byte {
            1 => RecordKind::Entry,
            2 => RecordKind::Snapshot,
            3 => RecordKind::Metadata,
            4 => RecordKind::Frame,
            _ => return None,
        })
    }
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends before the record does: at the end of a file, a torn tail.
    #[error("record truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("record payload of {len} bytes exceeds the limit of {RECORD_PAYLOAD_MAX}")]
    TooLarge { len: usize },
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("expected a {expected:?} record, found {found:?}")]
    WrongKind {
        expected: RecordKind,
        found: RecordKind,
    },
    #[error("record body is malformed: {0}")]
    Malformed(String),
    #[error("entry {lsn} does not match its hash")]
    HashMismatch { lsn: Lsn },
}

impl ErrorCode for DecodeError {
    fn code(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::TooLarge { .. } => "frame_too_large",
            DecodeError::BadChecksum { .. } => "bad_checksum",
            DecodeError::UnknownVersion(_) => "unknown_version",
            DecodeError::UnknownKind(_) | DecodeError::WrongKind { .. } => "unknown_kind",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::HashMismatch { .. } => "hash_mismatch",
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload)
}

/// The same sum in the browser module, without the crate's 8 KiB of tables (see `log::crc`).
#[cfg(target_arch = "wasm32")]
fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    use super::crc::crc32c_append;
    crc32c_append(crc32c_append(0, &len_bytes), payload)
}

/// Appends one framed record with the given kind and body.
pub fn encode_record(kind: RecordKind, body: &[u8], out: &mut Vec<u8>) {
    let start = open_record(kind, out);
    out.extend_from_slice(body);
    close_record(out, start);
}

/// Appends one framed record holding `value` encoded with postcard.
///
/// The body is encoded in place after the header, which is filled in once its length is
/// known: a body of its own (postcard's `to_allocvec`) grew by doubling from nothing for every
/// record and was copied again, and on the leader's commit thread those fresh pages were about
/// a tenth of its time (`perf`, `cstore-load --mode txn`, 2026-12-07). The bytes are the same as
/// [`encode_record`] of the body (a test holds them to it).
pub fn encode_value<T: Serialize>(kind: RecordKind, value: &T, out: &mut Vec<u8>) {
    let start = open_record(kind, out);
    postcard::serialize_with_flavor(value, Append(out)).expect("encoding into a Vec cannot fail");
    close_record(out, start);
}

/// Appends a record's header with its length and checksum still zero, and the version and
/// kind that begin its payload; returns where the record starts. The body follows, then
/// [`close_record`].
fn open_record(kind: RecordKind, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    start
}

/// Fills in the length and checksum of the record that starts at `start` and runs to the end
/// of `out`.
fn close_record(out: &mut [u8], start: usize) {
    let len = out.len() - start - RECORD_HEADER_BYTES;
    assert!(
        len <= RECORD_PAYLOAD_MAX,
        "refusing to write a {len}-byte record"
    );
    let len_bytes = u32::try_from(len).expect("bounded above").to_le_bytes();
    let crc = checksum(len_bytes, &out[start + RECORD_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// postcard's output appended to a `Vec` that already holds bytes.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes the record at the start of `buf`: its kind, its body, and the bytes it took.
pub fn decode_record(buf: &[u8]) -> Result<(RecordKind, &[u8], usize), DecodeError> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Err(DecodeError::Truncated {
            needed: RECORD_HEADER_BYTES,
            available: buf.len(),
        });
    }
    let len_bytes: [u8; 4] = buf[0..4].try_into().expect("4 bytes");
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > RECORD_PAYLOAD_MAX {
        return Err(DecodeError::TooLarge { len });
    }
    let total = RECORD_HEADER_BYTES + len;
    if buf.len() < total {
        return Err(DecodeError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    let payload = &buf[RECORD_HEADER_BYTES..total];
    let computed = checksum(len_bytes, payload);
    if computed != stored {
        return Err(DecodeError::BadChecksum { stored, computed });
    }
    if payload.len() < 2 {
        return Err(DecodeError::Malformed(
            "payload shorter than its header".into(),
        ));
    }
    if payload[0] != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion(payload[0]));
    }
    let kind = RecordKind::from_byte(payload[1]).ok_or(DecodeError::UnknownKind(payload[1]))?;
    Ok((kind, &payload[2..], total))
}

/// Decodes a record of the expected kind into a value. The body must be consumed exactly.
pub fn decode_value<T: DeserializeOwned>(
    expected: RecordKind,
    buf: &[u8],
) -> Result<(T, usize), DecodeError> {
    let (kind, body, used) = decode_record(buf)?;
    if kind != expected {
        return Err(DecodeError::WrongKind {
            expected,
            found: kind,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok((value, used))
}

/// Appends the framed record of a log entry.
pub fn encode_entry(entry: &LogEntry, out: &mut Vec<u8>) {
    encode_value(RecordKind::Entry, entry, out);
}

/// Decodes the log entry at the start of `buf` and checks its hash. Returns the entry and
/// the bytes it took. An operation whose bytes are not postcard's own encoding of it (an
/// overlong varint, say) fails the hash: the hash covers the bytes as stored.
pub fn decode_entry(buf: &[u8]) -> Result<(LogEntry, usize), DecodeError> {
    let (kind, body, used) = decode_record(buf)?;
    if kind != RecordKind::Entry {
        return Err(DecodeError::WrongKind {
            expected: RecordKind::Entry,
            found: kind,
        });
    }
    // One pass: each operation is hashed from its bytes in the record (see `walk.rs`).
    Ok((super::walk::decode_entry_body(body)?, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RawDoc;
    use crate::txn::{Op, Txn};
    use crate::types::{LogPosition, Term, TimestampMs};

    fn entry() -> LogEntry {
        let doc = RawDoc::parse(r#"{"_id":"a","n":1}"#).unwrap();
        let txn = Txn::single(Op::Insert {
            collection: "c".into(),
            doc,
        });
        LogEntry::new(LogPosition::START, Term(1), TimestampMs(5), txn)
    }

    #[test]
    fn a_value_encoded_in_place_is_the_record_of_its_body() {
        let entry = entry();
        let body = postcard::to_allocvec(&entry).unwrap();
        let mut expected = b"earlier bytes".to_vec();
        encode_record(RecordKind::Entry, &body, &mut expected);
        let mut out = b"earlier bytes".to_vec();
        encode_value(RecordKind::Entry, &entry, &mut out);
        assert_eq!(out, expected);
        let (decoded, used) = decode_entry(&out[13..]).unwrap();
        assert_eq!((decoded, used), (entry, out.len() - 13));
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode_entry(&entry(), &mut buf);
        encode_entry(&entry(), &mut buf);
        let (first, used) = decode_entry(&buf).unwrap();
        assert_eq!(first, entry());
        let (second, used2) = decode_entry(&buf[used..]).unwrap();
        assert_eq!(second, entry());
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn each_failure_has_its_error() {
        let mut good = Vec::new();
        encode_entry(&entry(), &mut good);

        assert!(matches!(
            decode_entry(&good[..5]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode_entry(&good[..good.len() - 1]),
            Err(DecodeError::Truncated { .. })
        ));

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode_entry(&flipped),
            Err(DecodeError::BadChecksum { .. })
        ));

        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_entry(&huge),
            Err(DecodeError::TooLarge { .. })
        ));

        let mut other = Vec::new();
        encode_record(RecordKind::Metadata, &[0], &mut other);
        assert!(matches!(
            decode_entry(&other),
            Err(DecodeError::WrongKind { .. })
        ));

        // A well-framed record whose version byte is unknown.
        let mut version = Vec::new();
        encode_record(RecordKind::Entry, &[], &mut version);
        version[8] = 9;
        let crc = checksum(version[0..4].try_into().unwrap(), &version[8..]);
        version[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_entry(&version).unwrap_err(),
            DecodeError::UnknownVersion(9)
        );

        // A well-framed entry whose hash field was changed, checksum recomputed.
        let mut forged = entry();
        forged.hash = crate::types::Hash([7; 32]);
        let mut buf = Vec::new();
        encode_entry(&forged, &mut buf);
        assert_eq!(
            decode_entry(&buf).unwrap_err(),
            DecodeError::HashMismatch { lsn: Lsn(1) }
        );
    }
}
