//! Replication frames on the wire: every kind round-trips, every kind of damage is a specific
//! error with a stable code, and no byte string makes decoding panic.

use cstore_core::ErrorCode;
use cstore_core::log::codec::{FORMAT_VERSION, RecordKind, encode_record};
use cstore_core::replication::{Frame, FrameError, Hello, PROTOCOL_VERSION, SnapshotResume};
use cstore_core::{Hash, LogEntry, LogPosition, Lsn, ReplicaId, Term, TimestampMs, Txn};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn config() -> Config {
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0xF4A3E),
        failure_persistence: None,
        ..Config::default()
    }
}

fn entries(n: u64) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    let mut prev = LogPosition::START;
    for i in 0..n {
        let entry = LogEntry::new(prev, Term(1), TimestampMs(i), Txn::tick());
        prev = entry.position();
        out.push(entry);
    }
    out
}

fn every_kind() -> Vec<Frame> {
    let position = entries(1)[0].position();
    vec![
        Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            replica_id: ReplicaId(7),
            term: Term(3),
            last: position,
            durable: Lsn(1),
            resume: Some(SnapshotResume {
                position,
                state_hash: Hash([9; 32]),
                offset: 12,
            }),
            collections: Some(vec!["notes".into(), "todos".into()]),
        }),
        Frame::Ack { durable: Lsn(5) },
        Frame::SnapshotAck {
            position,
            received_bytes: 99,
        },
        Frame::Welcome {
            leader_id: ReplicaId(1),
            term: Term(3),
            start: position,
        },
        Frame::Entries {
            entries: entries(3),
        },
        Frame::SnapshotBegin {
            position,
            state_hash: Hash([4; 32]),
            total_bytes: 1000,
        },
        Frame::SnapshotChunk {
            offset: 10,
            bytes: vec![1, 2, 3],
        },
        Frame::SnapshotEnd,
        Frame::Heartbeat {
            committed: position,
        },
        Frame::error("log_gap", "entry 4 does not follow 2"),
    ]
}

/// Re-frames a record body with a correct checksum.
fn record(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(RecordKind::Frame, body, &mut out);
    out
}

#[test]
fn every_kind_round_trips() {
    for frame in every_kind() {
        let bytes = frame.encode();
        assert_eq!(
            Frame::decode(&bytes).unwrap(),
            frame,
            "{}",
            frame.kind_name()
        );
    }
}

#[test]
fn each_failure_has_its_code() {
    let good = Frame::Ack { durable: Lsn(5) }.encode();
    let code = |bytes: &[u8]| Frame::decode(bytes).unwrap_err().code();

    assert_eq!(code(&good[..3]), "frame_truncated");
    assert_eq!(code(&good[..good.len() - 1]), "frame_truncated");

    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 0x40;
    assert_eq!(code(&flipped), "bad_checksum");

    let mut huge = good.clone();
    huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(code(&huge), "frame_too_large");
    assert_eq!(
        Frame::decode_limited(&good, good.len() - 1).unwrap_err(),
        FrameError::TooLarge {
            len: good.len(),
            max: good.len() - 1
        }
    );
    assert!(Frame::decode_limited(&good, good.len()).is_ok());

    let mut version = good.clone();
    version[8] = FORMAT_VERSION + 1;
    let body = version[8..].to_vec();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&version[0..4]), &body);
    version[4..8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(code(&version), "unknown_version");

    let mut entry_record = Vec::new();
    encode_record(RecordKind::Entry, &[1], &mut entry_record);
    assert_eq!(code(&entry_record), "not_a_frame");

    // A frame tag from a newer protocol.
    assert_eq!(
        Frame::decode(&record(&[10])).unwrap_err(),
        FrameError::UnknownKind(10)
    );
    assert_eq!(code(&record(&[200, 1])), "unknown_frame_kind");

    assert_eq!(code(&record(&[])), "malformed_frame");
    // An Ack (tag 1) whose varint never ends.
    assert_eq!(code(&record(&[1, 0xff])), "malformed_frame");
    // Trailing bytes, inside the body and after the record.
    assert_eq!(code(&record(&[1, 5, 0])), "malformed_frame");
    let mut two = good.clone();
    two.extend_from_slice(&good);
    assert_eq!(code(&two), "malformed_frame");
}

#[test]
fn long_error_messages_are_cut_at_a_character_boundary() {
    let message = "é".repeat(2000);
    let Frame::Error { message: cut, .. } = Frame::error("x", &message) else {
        unreachable!()
    };
    assert!(cut.len() <= 1024 && cut.len() >= 1022);
    assert!(message.starts_with(&cut));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Frame::decode(&bytes);
        let _ = Frame::decode(&record(&bytes));
    }

    #[test]
    fn damage_is_always_detected(index in 0usize..4096, bit in 0u8..8, which in 0usize..10) {
        let frame = every_kind().swap_remove(which);
        let mut bytes = frame.encode();
        let index = index % bytes.len();
        bytes[index] ^= 1 << bit;
        // A single flipped bit anywhere is caught by the length check or the crc32c.
        prop_assert!(Frame::decode(&bytes).is_err());
    }

    #[test]
    fn every_truncation_is_an_error(cut in 0usize..4096, which in 0usize..10) {
        let bytes = every_kind().swap_remove(which).encode();
        let cut = cut % bytes.len();
        prop_assert!(Frame::decode(&bytes[..cut]).is_err());
    }
}
