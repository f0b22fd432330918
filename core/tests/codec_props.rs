//! Robustness of the record codec: whatever bytes come from a disk or a socket, decoding never
//! panics, and an entry that decodes is exactly one that was encoded.
//!
//! The crc32c catches torn writes and flipped bits cheaply (it detects every burst of up to 32
//! bits, so any single changed byte); the SHA-256 chain behind it makes a wrong entry that
//! passes the crc as good as impossible. These properties hold the codec to both promises:
//! random bytes, valid framing around random bodies, truncation at every length, and bit and
//! byte damage anywhere in a buffer of several records.

use cstore_core::doc::RawDoc;
use cstore_core::log::LogEntry;
use cstore_core::log::codec::{
    DecodeError, RECORD_HEADER_BYTES, RecordKind, decode_entry, decode_record, decode_value,
    encode_entry, encode_record, encode_value,
};
use cstore_core::storage::Metadata;
use cstore_core::txn::{Op, Txn};
use cstore_core::types::{Hash, LogPosition, Lsn, ReplicaId, Term, TimestampMs};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::json;

/// Modest and fixed: the run is fast and every failure reproduces.
fn config() -> Config {
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0xC0DEC),
        failure_persistence: None,
        ..Config::default()
    }
}

fn collection() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,10}"
}

fn doc_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9-]{1,16}"
}

fn version() -> impl Strategy<Value = Option<Lsn>> {
    proptest::option::of(any::<u64>().prop_map(Lsn))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            collection(),
            doc_id(),
            any::<i64>(),
            "\\PC{0,24}",
            any::<bool>()
        )
            .prop_map(|(collection, id, n, text, flag)| Op::Insert {
                collection,
                doc: RawDoc::from_value(&json!({"_id": id, "n": n, "text": text, "f": flag}))
                    .expect("a valid document"),
            }),
        (collection(), doc_id(), "\\PC{0,24}", version()).prop_map(
            |(collection, id, text, if_version)| Op::Put {
                collection,
                doc: RawDoc::from_value(&json!({"_id": id, "nested": {"t": text}}))
                    .expect("a valid document"),
                if_version,
            }
        ),
        (collection(), doc_id(), version()).prop_map(|(collection, id, if_version)| {
            Op::Delete {
                collection,
                id,
                if_version,
            }
        }),
        (collection(), doc_id(), any::<u32>(), version()).prop_map(
            |(collection, id, n, if_version)| Op::Patch {
                collection,
                id,
                patch: json!({ "n": n }).to_string(),
                if_version,
            }
        ),
        (collection(), proptest::option::of(any::<u64>()))
            .prop_map(|(collection, ttl_ms)| Op::SetTtl { collection, ttl_ms }),
    ]
}

/// A start position, then a chain of 1..6 entries after it.
fn chain() -> impl Strategy<Value = Vec<LogEntry>> {
    let start = (0u64..1 << 40, any::<[u8; 32]>()).prop_map(|(lsn, hash)| LogPosition {
        lsn: Lsn(lsn),
        hash: if lsn == 0 { Hash::ZERO } else { Hash(hash) },
    });
    let steps = proptest::collection::vec(
        (
            0u64..1_000,
            any::<u64>(),
            proptest::collection::vec(op(), 0..4),
        ),
        1..6,
    );
    (start, steps).prop_map(|(start, steps)| {
        let mut position = start;
        steps
            .into_iter()
            .map(|(term, timestamp, ops)| {
                let entry =
                    LogEntry::new(position, Term(term), TimestampMs(timestamp), Txn::new(ops));
                position = entry.position();
                entry
            })
            .collect()
    })
}

/// The records of `entries`, one after another, and where each one ends.
fn encode_all(entries: &[LogEntry]) -> (Vec<u8>, Vec<usize>) {
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for entry in entries {
        encode_entry(entry, &mut buf);
        ends.push(buf.len());
    }
    (buf, ends)
}

/// Decodes records from the start of `buf` until the first error or the end.
fn decode_all(buf: &[u8]) -> (Vec<LogEntry>, Option<DecodeError>) {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        match decode_entry(&buf[offset..]) {
            Ok((entry, used)) => {
                assert!(used >= RECORD_HEADER_BYTES + 2, "a record has a header");
                out.push(entry);
                offset += used;
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// Tries to decode an entry at every offset of `buf`: each success must be one of `originals`,
/// found exactly where it was written.
fn every_decodable_offset_is_original(buf: &[u8], originals: &[LogEntry], ends: &[usize]) {
    for offset in 0..buf.len() {
        if let Ok((entry, used)) = decode_entry(&buf[offset..]) {
            let index = originals
                .iter()
                .position(|o| *o == entry)
                .unwrap_or_else(|| panic!("offset {offset} decoded a foreign entry {entry:?}"));
            let start = if index == 0 { 0 } else { ends[index - 1] };
            assert_eq!(offset, start, "entry {index} decoded at a shifted offset");
            assert_eq!(offset + used, ends[index], "entry {index} has its length");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every entry round-trips, alone and in a multi-record buffer, consuming exactly its bytes.
    #[test]
    fn entries_round_trip(entries in chain()) {
        let (buf, ends) = encode_all(&entries);
        let (decoded, error) = decode_all(&buf);
        prop_assert_eq!(error, None);
        prop_assert_eq!(&decoded, &entries);
        for (i, entry) in entries.iter().enumerate() {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            let (alone, used) = decode_entry(&buf[start..ends[i]]).expect("decodes alone");
            prop_assert_eq!(&alone, entry);
            prop_assert_eq!(used, ends[i] - start);
            prop_assert!(alone.verify_hash());
        }
        for pair in decoded.windows(2) {
            prop_assert!(pair[1].follows(pair[0].position()));
        }
    }

    /// Random bytes never panic any decoder, and never decode to an entry.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_record(&bytes);
        let _ = decode_value::<Metadata>(RecordKind::Metadata, &bytes);
        prop_assert!(decode_entry(&bytes).is_err());
    }

    /// Valid framing around a random body (the crc passes) reaches postcard and the hash
    /// check: still no panic, and an `Ok` entry always carries its correct hash.
    #[test]
    fn framed_random_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        kind in prop_oneof![Just(RecordKind::Entry), Just(RecordKind::Metadata)],
    ) {
        let mut buf = Vec::new();
        encode_record(kind, &body, &mut buf);
        let (found, got, used) = decode_record(&buf).expect("framing is valid");
        prop_assert_eq!(found, kind);
        prop_assert_eq!(got, &body[..]);
        prop_assert_eq!(used, buf.len());
        if let Ok((entry, _)) = decode_entry(&buf) {
            prop_assert!(entry.verify_hash());
        }
        let _ = decode_value::<Metadata>(RecordKind::Metadata, &buf);
    }

    /// Cutting a buffer of several records at any length yields exactly the records that end
    /// before the cut, then `Truncated` (or nothing, at a record boundary).
    #[test]
    fn truncation_at_every_length(entries in chain()) {
        let (buf, ends) = encode_all(&entries);
        for cut in 0..=buf.len() {
            let (decoded, error) = decode_all(&buf[..cut]);
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            prop_assert_eq!(&decoded[..], &entries[..whole], "cut at {}", cut);
            let at_boundary = cut == 0 || ends.contains(&cut);
            if at_boundary {
                prop_assert_eq!(error, None, "cut at {}", cut);
            } else {
                prop_assert!(
                    matches!(error, Some(DecodeError::Truncated { .. })),
                    "cut at {}: {:?}", cut, error
                );
            }
        }
    }

    /// A single flipped bit anywhere: the records before it decode unchanged, the damaged
    /// record fails, and no offset of the damaged buffer decodes to a foreign entry.
    #[test]
    fn bit_flip_never_yields_a_wrong_entry(entries in chain(), position in any::<usize>(), bit in 0u8..8) {
        let (mut buf, ends) = encode_all(&entries);
        let index = position % buf.len();
        buf[index] ^= 1 << bit;
        let damaged = ends.iter().position(|&end| index < end).expect("inside some record");
        let (decoded, error) = decode_all(&buf);
        prop_assert_eq!(&decoded[..], &entries[..damaged]);
        prop_assert!(error.is_some(), "a flipped bit in record {} went unnoticed", damaged);
        every_decodable_offset_is_original(&buf, &entries, &ends);
    }

    /// A byte replaced by any other value: the same promises as for a single bit.
    #[test]
    fn byte_damage_never_yields_a_wrong_entry(
        entries in chain(),
        position in any::<usize>(),
        xor in 1u8..=255,
    ) {
        let (mut buf, ends) = encode_all(&entries);
        let index = position % buf.len();
        buf[index] ^= xor;
        let damaged = ends.iter().position(|&end| index < end).expect("inside some record");
        let (decoded, error) = decode_all(&buf);
        prop_assert_eq!(&decoded[..], &entries[..damaged]);
        prop_assert!(error.is_some());
        every_decodable_offset_is_original(&buf, &entries, &ends);
    }

    /// A damaged body re-framed with a fresh, valid crc (as a buggy or malicious writer would
    /// produce) gets past the crc; the SHA-256 check must still refuse anything but the
    /// original entry.
    #[test]
    fn reframed_damage_is_caught_by_the_hash(
        entries in chain(),
        pick in any::<usize>(),
        position in any::<usize>(),
        xor in 1u8..=255,
    ) {
        let entry = &entries[pick % entries.len()];
        let mut body = postcard::to_allocvec(entry).expect("encodes");
        let index = position % body.len();
        body[index] ^= xor;
        let mut buf = Vec::new();
        encode_record(RecordKind::Entry, &body, &mut buf);
        match decode_entry(&buf) {
            Ok((decoded, _)) => prop_assert_eq!(&decoded, entry),
            Err(error) => prop_assert!(
                matches!(error, DecodeError::HashMismatch { .. } | DecodeError::Malformed(_)),
                "unexpected error {:?}", error
            ),
        }
    }

    /// Metadata records round-trip and refuse to decode as another kind.
    #[test]
    fn metadata_round_trips(term in any::<u64>(), node in any::<u64>()) {
        let metadata = Metadata { term: Term(term), node_id: ReplicaId(node) };
        let mut buf = Vec::new();
        encode_value(RecordKind::Metadata, &metadata, &mut buf);
        let (decoded, used) = decode_value::<Metadata>(RecordKind::Metadata, &buf).expect("decodes");
        prop_assert_eq!(decoded, metadata);
        prop_assert_eq!(used, buf.len());
        let is_wrong_kind = matches!(decode_entry(&buf), Err(DecodeError::WrongKind { .. }));
        prop_assert!(is_wrong_kind);
    }
}

/// Every single-bit flip of one small record, exhaustively: none goes unnoticed.
#[test]
fn every_bit_of_one_record_is_covered() {
    let doc = RawDoc::parse(r#"{"_id":"x","v":[1,2,3]}"#).expect("a valid document");
    let entry = LogEntry::new(
        LogPosition::START,
        Term(1),
        TimestampMs(1),
        Txn::single(Op::Insert {
            collection: "c".into(),
            doc,
        }),
    );
    let mut buf = Vec::new();
    encode_entry(&entry, &mut buf);
    for index in 0..buf.len() {
        for bit in 0..8 {
            let mut damaged = buf.clone();
            damaged[index] ^= 1 << bit;
            assert!(
                decode_entry(&damaged).is_err(),
                "flipping bit {bit} of byte {index} went unnoticed"
            );
        }
    }
}
