//! The bytes stored under each key, and the checks made when they are read back.
//!
//! Values are core's framed records (`[len][crc32c][version][kind][postcard]`), held as
//! `Uint8Array`s: a log value (a segment) is the records of consecutive entries back to back,
//! exactly as in a WAL segment file on the server; every other value is one record. The crc
//! catches flipped and cut bytes; log entries carry their SHA-256 chain and snapshots their
//! state hash, both checked on load. Every value is also tied to its key (a segment's entries
//! must be exactly the LSNs its key names, a chunk names its index, a metadata value its
//! name), so a valid value copied under the wrong key is caught too: a read returns the right
//! data or `storage_corrupt`, never other data.
//!
//! This file is plain Rust (no JS types) so the rules are easy to read and test.

use cstore_core::log::LogEntry;
use cstore_core::log::codec::{RecordKind, decode_entry, decode_value, encode_entry, encode_value};
use cstore_core::snapshot::Snapshot;
use cstore_core::types::{Hash, LogPosition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::IdbError;

/// Snapshot data is stored in chunks of at most this many bytes, so no single IndexedDB
/// value is huge (browsers copy each value whole, and some cap a value's size).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// A record of the `snapshot` object store: key 0 holds the header, keys `1..=chunks` the data.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SnapshotRecord {
    /// What the chunks add up to.
    Header {
        position: LogPosition,
        state_hash: Hash,
        data_bytes: u64,
        chunks: u32,
    },
    /// Bytes `(index - 1) * SNAPSHOT_CHUNK_BYTES ..` of the data.
    Chunk { index: u32, data: Vec<u8> },
}

/// A small value stored under a name: the name goes inside, so a swapped value is caught.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Named<T> {
    pub name: String,
    pub value: T,
}

/// A record of the `pending` object store: one client write waiting for the leader.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PendingRecord {
    pub seq: u64,
    pub bytes: Vec<u8>,
}

/// An append writes its entries as values ("segments") of about this many bytes: one value
/// per entry costs IndexedDB far more than the bytes (the benchmark measured ten times fewer
/// entries per second), while values of a few hundred KiB stay cheap to copy and to rewrite
/// when a truncation cuts one. A segment holds at least one entry, so a single entry larger
/// than this gets a segment of its own.
pub const SEGMENT_BYTES_TARGET: usize = 256 << 10;

/// The LSNs a segment holds, `first..=last`: its key in the `log` object store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub first: u64,
    pub last: u64,
}

impl Span {
    pub fn contains(self, lsn: u64) -> bool {
        (self.first..=self.last).contains(&lsn)
    }
}

/// Splits `entries` into segments of about [`SEGMENT_BYTES_TARGET`] bytes: each segment's
/// span and its framed entry records back to back, as a WAL segment file holds them.
pub(crate) fn encode_segments(entries: &[LogEntry]) -> Vec<(Span, Vec<u8>)> {
    let mut out: Vec<(Span, Vec<u8>)> = Vec::new();
    let mut bytes = Vec::new();
    let mut first = None;
    for entry in entries {
        first.get_or_insert(entry.lsn.0);
        encode_entry(entry, &mut bytes);
        if bytes.len() >= SEGMENT_BYTES_TARGET {
            let span = Span {
                first: first.take().expect("set above"),
                last: entry.lsn.0,
            };
            out.push((span, std::mem::take(&mut bytes)));
        }
    }
    if let (Some(first), Some(last)) = (first, entries.last()) {
        out.push((
            Span {
                first,
                last: last.lsn.0,
            },
            bytes,
        ));
    }
    out
}

/// Decodes the segment stored under `span`: every record whole (crc, hash), exactly the
/// entries `span.first..=span.last` in order, each continuing the chain of the one before.
pub(crate) fn decode_segment(span: Span, bytes: &[u8]) -> Result<Vec<LogEntry>, IdbError> {
    let what = |lsn: u64| format!("log segment {}..={} at lsn {lsn}", span.first, span.last);
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut offset = 0;
    let mut lsn = span.first;
    while offset < bytes.len() {
        let (entry, used) = decode_entry(&bytes[offset..])
            .map_err(|e| IdbError::Corrupt(format!("{}: {e}", what(lsn))))?;
        if entry.lsn.0 != lsn || lsn > span.last {
            return Err(IdbError::Corrupt(format!(
                "{} holds entry {}",
                what(lsn),
                entry.lsn
            )));
        }
        if let Some(prev) = entries.last()
            && !entry.follows(prev.position())
        {
            return Err(IdbError::Corrupt(format!(
                "{}: the entry does not continue the chain",
                what(lsn)
            )));
        }
        entries.push(entry);
        offset += used;
        lsn += 1;
    }
    if lsn != span.last + 1 {
        return Err(IdbError::Corrupt(format!(
            "{}: the segment ends early",
            what(lsn)
        )));
    }
    Ok(entries)
}

/// Any value as one framed record of `kind`.
pub(crate) fn encode_framed<T: Serialize>(kind: RecordKind, value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(kind, value, &mut out);
    out
}

/// Decodes one framed record of `kind` that must fill `bytes` exactly; `what` names it in
/// errors.
pub(crate) fn decode_framed<T: DeserializeOwned>(
    kind: RecordKind,
    bytes: &[u8],
    what: &str,
) -> Result<T, IdbError> {
    let (value, used) =
        decode_value(kind, bytes).map_err(|e| IdbError::Corrupt(format!("{what}: {e}")))?;
    if used != bytes.len() {
        return Err(IdbError::Corrupt(format!(
            "{what}: {} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// A named metadata value.
pub(crate) fn encode_named<T: Serialize>(name: &str, value: &T) -> Vec<u8> {
    encode_framed(
        RecordKind::Metadata,
        &Named {
            name: name.to_owned(),
            value,
        },
    )
}

/// Decodes the value stored under `name`, checking it is that name's.
pub(crate) fn decode_named<T: DeserializeOwned>(
    store: &str,
    name: &str,
    bytes: &[u8],
) -> Result<T, IdbError> {
    let what = format!("{store} record {name:?}");
    let named: Named<T> = decode_framed(RecordKind::Metadata, bytes, &what)?;
    if named.name != name {
        return Err(IdbError::Corrupt(format!(
            "{what} holds the value of {:?}",
            named.name
        )));
    }
    Ok(named.value)
}

/// The records of a snapshot: header first, then its chunks, in key order `0..`.
pub(crate) fn encode_snapshot(snapshot: &Snapshot) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = snapshot.data.chunks(SNAPSHOT_CHUNK_BYTES).collect();
    let header = SnapshotRecord::Header {
        position: snapshot.position,
        state_hash: snapshot.state_hash,
        data_bytes: snapshot.data.len() as u64,
        chunks: u32::try_from(chunks.len()).expect("fewer than 4G chunks"),
    };
    let mut out = Vec::with_capacity(chunks.len() + 1);
    out.push(encode_framed(RecordKind::Snapshot, &header));
    for (i, data) in chunks.into_iter().enumerate() {
        let chunk = SnapshotRecord::Chunk {
            index: u32::try_from(i + 1).expect("fewer than 4G chunks"),
            data: data.to_vec(),
        };
        out.push(encode_framed(RecordKind::Snapshot, &chunk));
    }
    out
}

/// Rebuilds a snapshot from the records of the `snapshot` store in key order, checking the
/// header, every chunk's index and size, and the state hash of the whole.
pub(crate) fn decode_snapshot(records: &[Vec<u8>]) -> Result<Snapshot, IdbError> {
    let corrupt = |why: String| IdbError::Corrupt(format!("snapshot: {why}"));
    let (first, rest) = records
        .split_first()
        .ok_or_else(|| corrupt("no records".into()))?;
    let SnapshotRecord::Header {
        position,
        state_hash,
        data_bytes,
        chunks,
    } = decode_framed(RecordKind::Snapshot, first, "snapshot header")?
    else {
        return Err(corrupt("the header record holds a chunk".into()));
    };
    let expected_chunks = (data_bytes as usize).div_ceil(SNAPSHOT_CHUNK_BYTES);
    if chunks as usize != expected_chunks || rest.len() != expected_chunks {
        return Err(corrupt(format!(
            "{data_bytes} bytes need {expected_chunks} chunks; the header says {chunks}, \
             the store holds {}",
            rest.len()
        )));
    }
    let mut data = Vec::with_capacity(data_bytes as usize);
    for (i, bytes) in rest.iter().enumerate() {
        let what = format!("snapshot chunk {}", i + 1);
        let SnapshotRecord::Chunk { index, data: part } =
            decode_framed(RecordKind::Snapshot, bytes, &what)?
        else {
            return Err(corrupt(format!("{what} is a header")));
        };
        let last = i + 1 == rest.len();
        let size_ok = if last {
            !part.is_empty() && part.len() <= SNAPSHOT_CHUNK_BYTES
        } else {
            part.len() == SNAPSHOT_CHUNK_BYTES
        };
        if index as usize != i + 1 || !size_ok {
            return Err(corrupt(format!(
                "{what} has index {index} and {} bytes",
                part.len()
            )));
        }
        data.extend_from_slice(&part);
    }
    let snapshot = Snapshot {
        position,
        state_hash,
        data,
    };
    if snapshot.data.len() as u64 != data_bytes || !snapshot.verify() {
        return Err(corrupt(format!(
            "the data at {position} does not match its state hash"
        )));
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::storage::conformance::{entries_after, snapshot_at};
    use cstore_core::types::{Lsn, Term};
    use wasm_bindgen_test::wasm_bindgen_test;

    fn corrupt(result: Result<Vec<LogEntry>, IdbError>) -> bool {
        matches!(result, Err(IdbError::Corrupt(_)))
    }

    #[wasm_bindgen_test]
    fn segments_round_trip_and_check_their_span() {
        let entries = entries_after(LogPosition::START, 5, Term(1), "t");
        let segments = encode_segments(&entries[1..4]);
        assert_eq!(segments.len(), 1, "small entries share a segment");
        let (span, bytes) = segments[0].clone();
        assert_eq!(span, Span { first: 2, last: 4 });
        assert_eq!(decode_segment(span, &bytes), Ok(entries[1..4].to_vec()));
        for wrong in [(1, 3), (2, 3), (2, 5), (3, 5)] {
            let wrong = Span {
                first: wrong.0,
                last: wrong.1,
            };
            assert!(corrupt(decode_segment(wrong, &bytes)), "{wrong:?}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 0x10;
        assert!(corrupt(decode_segment(span, &flipped)));
        assert!(corrupt(decode_segment(span, &bytes[..bytes.len() - 3])));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(corrupt(decode_segment(span, &longer)));
        assert!(corrupt(decode_segment(span, &[])));
    }

    #[wasm_bindgen_test]
    fn large_batches_split_into_bounded_segments() {
        let entries = entries_after(LogPosition::START, 5_000, Term(1), "t");
        let segments = encode_segments(&entries);
        assert!(segments.len() > 1);
        let mut next = 1;
        for (span, bytes) in &segments {
            assert_eq!(span.first, next);
            assert!(bytes.len() < SEGMENT_BYTES_TARGET + 1_000);
            let decoded = decode_segment(*span, bytes).expect("decodes");
            assert_eq!(decoded[..], entries[next as usize - 1..span.last as usize]);
            next = span.last + 1;
        }
        assert_eq!(next, 5_001);
    }

    #[wasm_bindgen_test]
    fn snapshots_round_trip_in_chunks() {
        for size in [0, 1, SNAPSHOT_CHUNK_BYTES, 2 * SNAPSHOT_CHUNK_BYTES + 5] {
            let position = entries_after(LogPosition::START, 1, Term(1), "s")[0].position();
            let snapshot = snapshot_at(position, size, 3);
            let records = encode_snapshot(&snapshot);
            assert_eq!(records.len(), 1 + size.div_ceil(SNAPSHOT_CHUNK_BYTES));
            assert_eq!(decode_snapshot(&records), Ok(snapshot));
        }
    }

    #[wasm_bindgen_test]
    fn snapshot_damage_is_corrupt() {
        let position = entries_after(LogPosition::START, 1, Term(1), "s")[0].position();
        let snapshot = snapshot_at(position, SNAPSHOT_CHUNK_BYTES + 10, 3);
        let records = encode_snapshot(&snapshot);
        // A chunk missing, two swapped, the header dropped: each is refused.
        let cases = [
            records[..2].to_vec(),
            vec![records[0].clone(), records[2].clone(), records[1].clone()],
            records[1..].to_vec(),
        ];
        for case in cases {
            assert!(matches!(decode_snapshot(&case), Err(IdbError::Corrupt(_))));
        }
    }

    #[wasm_bindgen_test]
    fn named_values_check_their_name() {
        let bytes = encode_named("log", &Lsn(4));
        assert_eq!(decode_named::<Lsn>("meta", "log", &bytes), Ok(Lsn(4)));
        assert!(matches!(
            decode_named::<Lsn>("meta", "metadata", &bytes),
            Err(IdbError::Corrupt(_))
        ));
    }
}
