//! Real values made by the real encoders, from which every target's seeds are built, and the
//! small state the write and query targets run against.

use std::path::Path;
use std::sync::OnceLock;

use cstore_core::log::LogEntry;
use cstore_core::log::codec::encode_entry;
use cstore_core::replication::{Frame, Hello, PROTOCOL_VERSION, SnapshotResume};
use cstore_core::snapshot::Snapshot;
use cstore_core::state::State;
use cstore_core::storage::{LogStore, Metadata};
use cstore_core::{Hash, LogPosition, Lsn, ReplicaId, Term, TimestampMs, Txn};
use cstore_server::http::decode_body_for_fuzzing;
use cstore_server::wal::{FileStore, WalOptions};

/// Transaction bodies covering every operation of `POST /v1/txn`.
pub fn txn_bodies() -> Vec<&'static str> {
    vec![
        r#"{"ops":[{"op":"create_collection","collection":"notes"},{"op":"create_collection","collection":"tmp","ttl_ms":5000}]}"#,
        r#"{"ops":[{"op":"create_index","collection":"notes","index":{"name":"by_n","fields":[{"path":"n"}]}},{"op":"create_index","collection":"notes","index":{"name":"by_tag_n","fields":[{"path":"tag"},{"path":"n","desc":true}],"sparse":true}}]}"#,
        r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a","n":1,"tag":"x","body":"hello"}},{"op":"insert","collection":"notes","doc":{"_id":"b","n":2.5,"tag":"y","nested":{"k":[1,2,{"z":null}]}}},{"op":"insert","collection":"notes","doc":{"n":-3,"tag":"x"}}]}"#,
        r#"{"ops":[{"op":"put","collection":"notes","doc":{"_id":"c","n":3,"tag":"\u00e9t\u00e9"},"if_version":null},{"op":"patch","collection":"notes","id":"a","patch":{"n":10,"body":null}},{"op":"insert","collection":"tmp","doc":{"_id":"t1","v":true}}],"origin":{"client":"fuzz-client","seq":1}}"#,
        r#"{"ops":[{"op":"delete","collection":"notes","id":"b","if_version":3},{"op":"set_ttl","collection":"tmp","ttl_ms":null}]}"#,
        r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"d","n":[1,2],"tag":"z","big":12345678901234567890}},{"op":"drop_index","collection":"notes","name":"by_n"},{"op":"drop_collection","collection":"tmp"}]}"#,
    ]
}

/// Find bodies covering every operator, sort, limit and skip.
pub fn find_bodies() -> Vec<&'static str> {
    vec![
        r#"null"#,
        r#"{"filter":{"n":{"$gt":1,"$lt":5}}}"#,
        r#"{"filter":{"tag":"x","n":{"$gte":-3}},"sort":[["n",-1]],"limit":2}"#,
        r#"{"filter":{"$or":[{"tag":{"$in":["x","z"]}},{"n":{"$exists":false}}]},"skip":1}"#,
        r#"{"filter":{"$and":[{"tag":{"$ne":"y"}},{"n":{"$not":{"$lte":2}}}]},"sort":[["tag",1],["n",1]]}"#,
        r#"{"filter":{"nested.k":{"$nin":[1,[1,2]]},"body":null},"sort":[["_id",-1]]}"#,
    ]
}

/// The entries of [`txn_bodies`], chained from the start of the log (made once a process:
/// targets use them on every input).
pub fn entries() -> Vec<LogEntry> {
    static ENTRIES: OnceLock<Vec<LogEntry>> = OnceLock::new();
    ENTRIES
        .get_or_init(|| {
            let mut prev = LogPosition::START;
            let mut out = Vec::new();
            for (i, body) in txn_bodies().iter().enumerate() {
                let txns =
                    decode_body_for_fuzzing(body.as_bytes(), false).expect("seed bodies parse");
                for txn in txns {
                    let at = TimestampMs(1_000 * (i as u64 + 1));
                    let entry = LogEntry::new(prev, Term(1), at, txn);
                    prev = entry.position();
                    out.push(entry);
                }
            }
            out
        })
        .clone()
}

/// The framed records of [`entries`].
pub fn entry_records() -> Vec<Vec<u8>> {
    entries()
        .iter()
        .map(|entry| {
            let mut out = Vec::new();
            encode_entry(entry, &mut out);
            out
        })
        .collect()
}

/// The state after the first five entries (a collection `notes` with two indexes, documents
/// of several shapes, an origin), shared by the targets that need one.
pub fn base_state() -> State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let mut state = State::new();
            for entry in entries().iter().take(5) {
                state.apply(entry).expect("seed entries apply");
            }
            state
        })
        .clone()
}

/// Snapshots of an empty state, the base state and the state after every entry.
pub fn snapshots() -> Vec<Snapshot> {
    static SNAPSHOTS: OnceLock<Vec<Snapshot>> = OnceLock::new();
    SNAPSHOTS
        .get_or_init(|| {
            let mut all = State::new();
            for entry in entries() {
                all.apply(&entry).expect("seed entries apply");
            }
            vec![
                State::new().snapshot(),
                base_state().snapshot(),
                all.snapshot(),
            ]
        })
        .clone()
}

/// One frame of every kind.
pub fn frames() -> Vec<Frame> {
    let snapshot = base_state().snapshot();
    let entries = entries();
    vec![
        Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            replica_id: ReplicaId(7),
            term: Term(1),
            last: entries[1].position(),
            durable: Lsn(2),
            resume: Some(SnapshotResume {
                position: snapshot.position,
                state_hash: snapshot.state_hash,
                offset: 10,
            }),
            collections: Some(vec!["notes".into()]),
        }),
        Frame::Ack { durable: Lsn(3) },
        Frame::SnapshotAck {
            position: snapshot.position,
            received_bytes: 100,
        },
        Frame::Welcome {
            leader_id: ReplicaId(1),
            term: Term(1),
            start: LogPosition::START,
        },
        Frame::Entries {
            entries: entries[..3].to_vec(),
        },
        Frame::SnapshotBegin {
            position: snapshot.position,
            state_hash: snapshot.state_hash,
            total_bytes: snapshot.data.len() as u64,
        },
        Frame::SnapshotChunk {
            offset: 0,
            bytes: snapshot.data.clone(),
        },
        Frame::SnapshotEnd,
        Frame::Heartbeat {
            committed: entries[2].position(),
        },
        Frame::error("lagging", "the replica fell too far behind"),
    ]
}

/// Sessions a leader could send: a stream from the start, and a snapshot then a stream.
pub fn sessions() -> Vec<Vec<Frame>> {
    let entries = entries();
    let snapshot = base_state().snapshot();
    let (head, tail) = snapshot.data.split_at(snapshot.data.len() / 2);
    let welcome = |start| Frame::Welcome {
        leader_id: ReplicaId(1),
        term: Term(2),
        start,
    };
    vec![
        vec![
            welcome(LogPosition::START),
            Frame::Entries {
                entries: entries[..2].to_vec(),
            },
            Frame::Heartbeat {
                committed: entries[1].position(),
            },
            Frame::Entries {
                entries: entries[2..].to_vec(),
            },
        ],
        vec![
            welcome(snapshot.position),
            Frame::SnapshotBegin {
                position: snapshot.position,
                state_hash: snapshot.state_hash,
                total_bytes: snapshot.data.len() as u64,
            },
            Frame::SnapshotChunk {
                offset: 0,
                bytes: head.to_vec(),
            },
            Frame::SnapshotChunk {
                offset: head.len() as u64,
                bytes: tail.to_vec(),
            },
            Frame::SnapshotEnd,
            Frame::Entries {
                entries: entries[5..].to_vec(),
            },
        ],
    ]
}

/// Sessions a replica could send: a hello from the start then acknowledgements; a hello from
/// a position the leader does not hold (a snapshot follows) then snapshot acknowledgements;
/// a resume of a snapshot transfer.
pub fn replica_sides() -> Vec<Vec<Frame>> {
    let entries = entries();
    let snapshot = snapshots().pop().expect("snapshots");
    let hello = |last: LogPosition, resume: Option<SnapshotResume>| {
        Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            replica_id: ReplicaId(7),
            term: Term(1),
            last,
            durable: last.lsn,
            resume,
            collections: None,
        })
    };
    let acks = |lsns: &[u64]| -> Vec<Frame> {
        lsns.iter()
            .map(|&l| Frame::Ack { durable: Lsn(l) })
            .collect()
    };
    let mut from_start = vec![hello(LogPosition::START, None)];
    from_start.extend(acks(&[1, 2, 3, 4, 5, 6]));
    let stranger = LogPosition {
        lsn: Lsn(3),
        hash: Hash([9; 32]),
    };
    let mut by_snapshot = vec![hello(stranger, None)];
    for received in [64u64, 128, 192, snapshot.data.len() as u64] {
        by_snapshot.push(Frame::SnapshotAck {
            position: snapshot.position,
            received_bytes: received,
        });
    }
    let resume = SnapshotResume {
        position: snapshot.position,
        state_hash: snapshot.state_hash,
        offset: 64,
    };
    let mut resumed = vec![hello(entries[1].position(), Some(resume))];
    resumed.push(Frame::SnapshotAck {
        position: snapshot.position,
        received_bytes: snapshot.data.len() as u64,
    });
    resumed.extend(acks(&[6]));
    let subscribed = vec![Frame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        replica_id: ReplicaId(8),
        term: Term(2),
        last: LogPosition::START,
        durable: Lsn::ZERO,
        resume: None,
        collections: Some(vec!["notes".into(), "tmp".into()]),
    })];
    vec![from_start, by_snapshot, resumed, subscribed]
}

/// The files of a real data directory (name relative to it, bytes): a few small segments,
/// a snapshot, a compaction point, the meta record.
pub fn data_dir_files() -> Vec<(String, Vec<u8>)> {
    let dir = std::env::temp_dir().join(format!("cstore-fuzz-seed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let options = WalOptions {
            segment_bytes_max: 600,
            ..WalOptions::default()
        };
        let mut store = FileStore::open_with(&dir, options).expect("seed store");
        let entries = entries();
        let mut state = State::new();
        futures::executor::block_on(async {
            store.append(&entries[..3]).await.expect("append");
            for entry in &entries[..3] {
                state.apply(entry).expect("seed entries apply");
            }
            store
                .save_snapshot(&state.snapshot())
                .await
                .expect("snapshot");
            store.compact_prefix(Lsn(2)).await.expect("compact");
            store.append(&entries[3..]).await.expect("append");
            store
                .save_metadata(&Metadata {
                    term: Term(1),
                    node_id: ReplicaId(9),
                })
                .await
                .expect("metadata");
        });
    }
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files);
    let _ = std::fs::remove_dir_all(&dir);
    files.sort();
    files
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("seed dir") {
        let path = entry.expect("seed dir entry").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let name = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.push((name, std::fs::read(&path).expect("seed file")));
        }
    }
}

/// The IndexedDB snapshot store's records for each of [`snapshots`].
pub fn idb_snapshot_records() -> Vec<Vec<Vec<u8>>> {
    snapshots()
        .iter()
        .map(cstore_wasm::idb::fuzzing::encode_snapshot)
        .collect()
}

/// IndexedDB records by the target's choice: a pending write (2), meta records (3).
pub fn idb_small_records() -> Vec<(u8, Vec<u8>)> {
    let txn: &Txn = &entries()[2].txn;
    let txn_bytes = serde_json::to_vec(txn).unwrap_or_default();
    let [pending, log, metadata] = cstore_wasm::idb::fuzzing::encode_small(
        4,
        &txn_bytes,
        LogPosition {
            lsn: Lsn(3),
            hash: Hash([7; 32]),
        },
        &Metadata {
            term: Term(2),
            node_id: ReplicaId(3),
        },
    );
    vec![(2, pending), (3, log), (3, metadata)]
}
