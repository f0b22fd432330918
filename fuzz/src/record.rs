//! Building well-framed records out of fuzz input, so that mutations reach past the crc32c.
//!
//! A random byte string almost never carries a valid crc32c, and an entry record whose bytes
//! changed never matches its SHA-256: a fuzzer that only feeds raw bytes tests the checksum
//! and little else. Targets therefore read their input in one of two modes, chosen by a flag
//! bit of its first byte:
//!
//! ```text
//!  raw      the bytes as they are: tests framing, checksums, limits
//!  sealed   [len: u16 LE][payload] chunks; each payload becomes one record with a valid
//!           crc32c (payload = version | kind | body, so versions and kinds are fuzzed too);
//!           with `relink`, an entry payload whose body decodes is given the next LSN, the
//!           previous hash and its own hash, so the chain and the documents are reached
//! ```

use cstore_core::log::LogEntry;
use cstore_core::log::codec::{RecordKind, encode_entry};
use cstore_core::replication::Frame;
use cstore_core::types::{LogPosition, Lsn};

/// Frames `payload` as one record: `len | crc32c(len ‖ payload) | payload`.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("fuzz inputs are small");
    let len_bytes = len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits `data` into `[len: u16 LE][bytes]` chunks; a chunk longer than what is left takes
/// what is left.
pub fn chunks(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// The inverse of [`chunks`], for seeds.
pub fn unchunk<B: AsRef<[u8]>>(parts: &[B]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let part = part.as_ref();
        let len = u16::try_from(part.len()).expect("seed chunks are small");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// The payload of a record (`version | kind | body`), for seeds: a record without its
/// length and checksum.
pub fn payload_of(record: &[u8]) -> &[u8] {
    &record[8..]
}

/// Seals each chunk of `data` into a record. With `relink = Some(prev)`, each entry payload
/// whose body decodes as a `LogEntry` is rewritten to follow the previous one from `prev`
/// with a correct hash; other payloads are sealed as they are.
pub fn build_records(data: &[u8], relink: Option<LogPosition>) -> Vec<Vec<u8>> {
    build_chain(data, relink).0
}

/// [`build_records`], and the position of the last relinked entry (`relink` itself when
/// there was none).
pub fn build_chain(
    data: &[u8],
    relink: Option<LogPosition>,
) -> (Vec<Vec<u8>>, Option<LogPosition>) {
    let mut prev = relink;
    let records = chunks(data)
        .into_iter()
        .map(|payload| {
            if let Some(at) = prev
                && payload.len() >= 2
                && payload[1] == RecordKind::Entry as u8
                && let Ok(mut entry) = postcard::from_bytes::<LogEntry>(&payload[2..])
            {
                entry.lsn = Lsn(at.lsn.0.saturating_add(1));
                entry.prev_hash = at.hash;
                if let Some(hash) = entry.compute_hash() {
                    entry.hash = hash;
                    prev = Some(entry.position());
                    let mut out = Vec::new();
                    encode_entry(&entry, &mut out);
                    return out;
                }
            }
            seal(payload)
        })
        .collect();
    (records, prev)
}

/// The records of [`build_records`] back to back.
pub fn build_bytes(data: &[u8], relink: Option<LogPosition>) -> Vec<u8> {
    build_records(data, relink).concat()
}

/// The bytes a target decodes: the rest of the input as it is, or in sealed mode its chunks
/// sealed into records (entry records chained from the start with `relink`).
pub fn input_bytes(mode: Mode, rest: &[u8]) -> Vec<u8> {
    if mode.sealed {
        build_bytes(rest, mode.relink.then_some(LogPosition::START))
    } else {
        rest.to_vec()
    }
}

/// Two seeds per session of frames: the encoded frames back to back (raw mode), and their
/// payloads for the sealed mode to seal again.
pub fn session_seeds(sessions: Vec<Vec<Frame>>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for session in sessions {
        let encoded: Vec<Vec<u8>> = session.iter().map(Frame::encode).collect();
        let mut raw = vec![mode_byte(false, false, 0)];
        raw.extend(unchunk(&encoded));
        out.push(raw);
        let payloads: Vec<&[u8]> = encoded.iter().map(|b| payload_of(b)).collect();
        let mut sealed = vec![mode_byte(true, false, 0)];
        sealed.extend(unchunk(&payloads));
        out.push(sealed);
    }
    out
}

/// The first byte's flags and the rest of an input.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// Bit 0: the rest is `[len][payload]` chunks to seal, not raw bytes.
    pub sealed: bool,
    /// Bit 1: relink entry records (sealed mode only).
    pub relink: bool,
    /// Bits 2..8, for the target's own choices.
    pub choice: u8,
}

/// Splits an input into its mode byte and the rest (`None` for an empty input).
pub fn mode(data: &[u8]) -> Option<(Mode, &[u8])> {
    let (&first, rest) = data.split_first()?;
    let mode = Mode {
        sealed: first & 1 != 0,
        relink: first & 2 != 0,
        choice: first >> 2,
    };
    Some((mode, rest))
}

/// The mode byte for seeds.
pub fn mode_byte(sealed: bool, relink: bool, choice: u8) -> u8 {
    u8::from(sealed) | (u8::from(relink) << 1) | (choice << 2)
}
