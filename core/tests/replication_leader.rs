//! The leader session, fed inputs one at a time: each test compares the exact commands out.

use std::sync::Arc;

use cstore_core::ErrorCode;
use cstore_core::replication::{
    EntriesFrame, Frame, Hello, LeaderCommand, LeaderSession, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN, ReplicationError, SessionConfig, SnapshotResume, entry_wire_bytes,
};
use cstore_core::{Hash, LogEntry, LogPosition, Lsn, ReplicaId, Snapshot, Term, TimestampMs, Txn};

const LEADER: ReplicaId = ReplicaId(1);
const TERM: Term = Term(2);

fn t(ms: u64) -> TimestampMs {
    TimestampMs(ms)
}

fn log(n: u64) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    let mut prev = LogPosition::START;
    for i in 0..n {
        let entry = LogEntry::new(prev, Term(1 + i / 5), TimestampMs(i), Txn::tick());
        prev = entry.position();
        out.push(entry);
    }
    out
}

fn config() -> SessionConfig {
    SessionConfig {
        window_entries_max: 4,
        window_bytes_max: 1 << 20,
        read_entries_max: 3,
        frame_bytes_max: 1 << 20,
        snapshot_chunk_bytes: 10,
        heartbeat_interval_ms: 100,
        hello_timeout_ms: 500,
        replica_timeout_ms: 1_000,
        ack_timeout_ms: 800,
        lag_entries_max: 10,
        lag_timeout_ms: 2_000,
        ahead_wait_ms: 300,
        protocol_version_max: PROTOCOL_VERSION,
    }
}

fn session(log: &[LogEntry], config: SessionConfig) -> LeaderSession {
    let committed = log.last().map_or(LogPosition::START, LogEntry::position);
    LeaderSession::new(config, LEADER, TERM, committed, t(0))
}

/// A hello of protocol version 2, whose replica acknowledges every persisted batch unasked:
/// most tests here are about the window alone. `hello_asked` is the current version's.
fn hello(last: LogPosition, durable: u64) -> Frame {
    Frame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION_MIN,
        replica_id: ReplicaId(7),
        term: Term(1),
        last,
        durable: Lsn(durable),
        resume: None,
        collections: None,
    })
}

/// A hello of this build's replicas (protocol version 3): they acknowledge when asked.
fn hello_asked(last: LogPosition, durable: u64) -> Frame {
    let mut frame = hello(last, durable);
    let Frame::Hello(h) = &mut frame else {
        unreachable!()
    };
    h.protocol_version = PROTOCOL_VERSION;
    frame
}

/// A session with room for 100 entries in flight that reads `read_max` at a time, whose
/// replica (protocol version 3: it acknowledges when asked) said hello at `hello_at`.
fn asked_session(log: &[LogEntry], read_max: u64, hello_at: u64) -> LeaderSession {
    let roomy = SessionConfig {
        window_entries_max: 100,
        read_entries_max: read_max,
        ..config()
    };
    let mut s = session(log, roomy);
    s.handle_frame(t(hello_at), hello_asked(LogPosition::START, 0));
    s
}

/// A heartbeat: the leader is alive, and asks for an acknowledgement.
fn ask(log: &[LogEntry]) -> LeaderCommand {
    LeaderCommand::Send(Frame::Heartbeat {
        committed: log.last().map_or(LogPosition::START, LogEntry::position),
    })
}

fn welcome(start: LogPosition) -> LeaderCommand {
    LeaderCommand::Send(Frame::Welcome {
        leader_id: LEADER,
        term: TERM,
        start,
    })
}

fn read(from: u64, to: u64) -> LeaderCommand {
    LeaderCommand::ReadEntries {
        from: Lsn(from),
        to: Lsn(to),
    }
}

/// Entries with LSNs `from..=to` of `log`.
fn entries(log: &[LogEntry], from: u64, to: u64) -> Vec<LogEntry> {
    log[(from - 1) as usize..to as usize].to_vec()
}

fn send_entries(log: &[LogEntry], from: u64, to: u64) -> LeaderCommand {
    let shared = entries(log, from, to).into_iter().map(Arc::new).collect();
    LeaderCommand::SendEntries(EntriesFrame::new(shared, true))
}

fn ack(lsn: u64) -> Frame {
    Frame::Ack { durable: Lsn(lsn) }
}

fn snapshot_at(position: LogPosition, len: usize) -> Arc<Snapshot> {
    Arc::new(Snapshot::new(position, (0..len as u8).collect()))
}

fn chunk(snapshot: &Snapshot, from: usize, to: usize) -> LeaderCommand {
    LeaderCommand::Send(Frame::SnapshotChunk {
        offset: from as u64,
        bytes: snapshot.data[from..to].to_vec(),
    })
}

fn snapshot_ack(snapshot: &Snapshot, received_bytes: u64) -> Frame {
    Frame::SnapshotAck {
        position: snapshot.position,
        received_bytes,
    }
}

fn begin(snapshot: &Snapshot) -> LeaderCommand {
    LeaderCommand::Send(Frame::SnapshotBegin {
        position: snapshot.position,
        state_hash: snapshot.state_hash,
        total_bytes: snapshot.data.len() as u64,
    })
}

/// The error code of a session's closing commands: an `Error` frame, then `Close`.
fn closed_with(commands: &[LeaderCommand]) -> &'static str {
    match commands {
        [
            LeaderCommand::Send(Frame::Error { code, .. }),
            LeaderCommand::Close(error),
        ] => {
            assert_eq!(code, error.code());
            error.code()
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn a_caught_up_replica_is_welcomed_and_streams_new_commits() {
    let log = log(6);
    let mut s = session(&log[..5], config());
    assert_eq!(
        s.handle_frame(t(1), hello(log[4].position(), 5)),
        [welcome(log[4].position())]
    );
    assert!(s.is_streaming());
    assert_eq!(
        (s.durable_lsn(), s.lag(), s.replica_id()),
        (Lsn(5), 0, Some(ReplicaId(7)))
    );
    assert_eq!(s.on_committed(t(2), log[5].position()), [read(6, 7)]);
    assert_eq!(
        s.on_entries(t(3), entries(&log, 6, 6)),
        [send_entries(&log, 6, 6)]
    );
    assert_eq!(s.lag(), 1);
    assert_eq!(s.handle_frame(t(4), ack(6)), []);
    assert_eq!((s.durable_lsn(), s.lag()), (Lsn(6), 0));
}

/// Found by the fuzz target `leader_session` (fuzz/): a hello at LSN 0 with a nonzero hash was
/// streamed from there, and the first entry read (whose previous hash is zero) failed the
/// session's assertion that it follows what was sent: a replica's bytes panicked the leader.
#[test]
fn fuzz_regression_a_hello_at_lsn_0_with_a_hash_is_a_violation() {
    let log = log(3);
    let mut s = session(&log, config());
    let bogus = LogPosition {
        lsn: Lsn::ZERO,
        hash: Hash([0x1c; 32]),
    };
    let out = s.handle_frame(t(1), hello(bogus, 0));
    assert_eq!(closed_with(&out), "protocol_violation");
    assert!(s.is_closed());
    // The bytes as the fuzzer sent them (a sealed frame: kind Hello, position 0 with a hash).
    let mut s = session(&log, config());
    let mut frame = Vec::new();
    cstore_core::log::codec::encode_value(
        cstore_core::log::codec::RecordKind::Frame,
        &Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            replica_id: ReplicaId(7),
            term: Term(1),
            last: LogPosition {
                lsn: Lsn::ZERO,
                hash: Hash([
                    0, 0, 0x1c, 0x9e, 0xb0, 0x87, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ]),
            },
            durable: Lsn::ZERO,
            resume: None,
            collections: None,
        }),
        &mut frame,
    );
    assert_eq!(
        closed_with(&s.handle_bytes(t(1), &frame)),
        "protocol_violation"
    );
    // A hello at the start of an empty log is still welcomed there.
    let mut s = session(&log, config());
    let out = s.handle_frame(t(1), hello(LogPosition::START, 0));
    assert_eq!(out.first(), Some(&welcome(LogPosition::START)));
}

#[test]
fn the_entry_window_bounds_what_is_in_flight() {
    let log = log(10);
    let mut s = session(&log, config());
    assert_eq!(
        s.handle_frame(t(1), hello(LogPosition::START, 0)),
        [welcome(LogPosition::START), read(1, 4)]
    );
    // Three sent, one more fits the window of four.
    assert_eq!(
        s.on_entries(t(2), entries(&log, 1, 3)),
        [send_entries(&log, 1, 3), read(4, 5)]
    );
    assert_eq!(
        s.on_entries(t(3), entries(&log, 4, 4)),
        [send_entries(&log, 4, 4)]
    );
    // Window full: a stale ack changes nothing, a new one opens room for two.
    assert_eq!(s.handle_frame(t(4), ack(0)), []);
    assert_eq!(s.handle_frame(t(5), ack(2)), [read(5, 7)]);
    assert_eq!(
        s.on_entries(t(6), entries(&log, 5, 6)),
        [send_entries(&log, 5, 6)]
    );
    assert_eq!(s.handle_frame(t(7), ack(6)), [read(7, 10)]);
    assert_eq!(
        s.on_entries(t(8), entries(&log, 7, 9)),
        [send_entries(&log, 7, 9), read(10, 11)]
    );
    assert_eq!(
        s.on_entries(t(9), entries(&log, 10, 10)),
        [send_entries(&log, 10, 10)]
    );
    assert_eq!(s.handle_frame(t(10), ack(10)), []);
    assert_eq!(
        (s.durable_lsn(), s.lag(), s.sent()),
        (Lsn(10), 0, log[9].position())
    );
}

#[test]
fn the_byte_window_and_frame_size_cut_batches() {
    let log = log(4);
    let size = |lsn: usize| entry_wire_bytes(&log[lsn - 1]) as u64;
    let config = SessionConfig {
        window_bytes_max: size(1) + size(2),
        frame_bytes_max: 1,
        ..config()
    };
    let mut s = session(&log, config);
    s.handle_frame(t(1), hello(LogPosition::START, 0));
    // Two fit the byte window, each in its own frame; the third waits in the session.
    assert_eq!(
        s.on_entries(t(2), entries(&log, 1, 3)),
        [send_entries(&log, 1, 1), send_entries(&log, 2, 2)]
    );
    assert_eq!(
        s.handle_frame(t(3), ack(1)),
        [send_entries(&log, 3, 3), read(4, 5)]
    );
}

#[test]
fn an_oversized_entry_still_goes_into_an_empty_window() {
    let log = log(2);
    let config = SessionConfig {
        window_bytes_max: 1,
        ..config()
    };
    let mut s = session(&log, config);
    s.handle_frame(t(1), hello(LogPosition::START, 0));
    assert_eq!(
        s.on_entries(t(2), entries(&log, 1, 2)),
        [send_entries(&log, 1, 1)]
    );
    assert_eq!(s.handle_frame(t(3), ack(1)), [send_entries(&log, 2, 2)]);
}

#[test]
fn a_replica_found_in_the_log_continues_after_its_position() {
    let log = log(8);
    let mut s = session(&log, config());
    assert_eq!(
        s.handle_frame(t(1), hello(log[4].position(), 3)),
        [read(5, 6)]
    );
    assert!(!s.is_streaming());
    assert_eq!(s.durable_lsn(), Lsn::ZERO);
    assert_eq!(
        s.on_entries(t(2), entries(&log, 5, 5)),
        [welcome(log[4].position()), read(6, 8)]
    );
    // Its durable prefix counts; the two entries it is still persisting are in flight.
    assert_eq!(s.durable_lsn(), Lsn(3));
}

fn read_snapshot(min_lsn: u64) -> LeaderCommand {
    LeaderCommand::ReadSnapshot {
        min_lsn: Lsn(min_lsn),
    }
}

#[test]
fn a_diverged_replica_gets_the_snapshot_and_its_acks_count_only_after() {
    let log = log(10);
    let mut s = session(
        &log,
        SessionConfig {
            window_bytes_max: 20,
            ..config()
        },
    );
    let forked = LogPosition {
        lsn: Lsn(5),
        hash: Hash([3; 32]),
    };
    assert_eq!(s.handle_frame(t(1), hello(forked, 5)), [read(5, 6)]);
    // Diverged at or before 5: the snapshot must not be older than 5.
    assert_eq!(s.on_entries(t(2), entries(&log, 5, 5)), [read_snapshot(5)]);
    let snap = snapshot_at(log[5].position(), 25);
    assert_eq!(
        s.on_snapshot(t(3), snap.clone()),
        [
            welcome(snap.position),
            begin(&snap),
            chunk(&snap, 0, 10),
            chunk(&snap, 10, 20)
        ]
    );
    // Acks about the replica's old chain do not count.
    assert_eq!(s.handle_frame(t(4), ack(5)), []);
    assert_eq!(s.durable_lsn(), Lsn::ZERO);
    // The whole snapshot is in flight until the replica installed it: no entries yet.
    assert_eq!(
        s.handle_frame(t(5), snapshot_ack(&snap, 10)),
        [
            chunk(&snap, 20, 25),
            LeaderCommand::Send(Frame::SnapshotEnd)
        ]
    );
    assert!(s.is_streaming());
    assert_eq!(s.handle_frame(t(6), ack(6)), [read(7, 10)]);
    assert_eq!(s.durable_lsn(), Lsn(6));
    // Twenty bytes of window: one entry at a time.
    assert_eq!(
        s.on_entries(t(7), entries(&log, 7, 9)),
        [send_entries(&log, 7, 7)]
    );
}

#[test]
#[should_panic(expected = "older than")]
fn a_snapshot_older_than_asked_for_is_a_driver_bug() {
    let log = log(6);
    let mut s = session(&log, config());
    let forked = LogPosition {
        lsn: Lsn(5),
        hash: Hash([3; 32]),
    };
    s.handle_frame(t(1), hello(forked, 5));
    s.on_entries(t(2), entries(&log, 5, 5));
    s.on_snapshot(t(3), snapshot_at(log[2].position(), 25));
}

#[test]
fn a_replica_still_ahead_after_the_wait_has_diverged() {
    let log = log(4);
    let mut s = session(&log, config());
    let ahead = LogPosition {
        lsn: Lsn(9),
        hash: Hash([1; 32]),
    };
    // First it is waited for (it may have followed a member that is further along)...
    assert_eq!(s.handle_frame(t(1), hello(ahead, 9)), []);
    assert_eq!(s.on_tick(t(200)), []);
    // ...then, still ahead, it gets the snapshot.
    assert_eq!(s.on_tick(t(301)), [read_snapshot(4)]);
}

#[test]
fn a_replica_ahead_streams_once_this_source_commits_that_far() {
    // What a replica that moves to a member still catching up meets: no snapshot.
    let full = log(8);
    let mut s = session(&full[..3], config());
    assert_eq!(s.handle_frame(t(1), hello(full[5].position(), 6)), []);
    assert_eq!(s.on_committed(t(2), full[4].position()), []);
    // Committed past its position: located like any replica, then streamed.
    assert_eq!(s.on_committed(t(3), full[7].position()), [read(6, 7)]);
    assert_eq!(
        s.on_entries(t(4), entries(&full, 6, 6)),
        [welcome(full[5].position()), read(7, 9)]
    );
    // Committed exactly at its position: welcomed at once.
    let mut s = session(&full[..3], config());
    s.handle_frame(t(1), hello(full[5].position(), 6));
    assert_eq!(
        s.on_committed(t(2), full[5].position()),
        [welcome(full[5].position())]
    );
    // A different entry at its position: diverged after all.
    let mut s = session(&full[..3], config());
    let forked = LogPosition {
        lsn: Lsn(5),
        hash: Hash([3; 32]),
    };
    s.handle_frame(t(1), hello(forked, 5));
    assert_eq!(s.on_committed(t(2), full[6].position()), [read(5, 6)]);
    assert_eq!(s.on_entries(t(3), entries(&full, 5, 5)), [read_snapshot(5)]);
}

#[test]
fn a_replica_holding_the_snapshot_itself_streams_after_it() {
    let log = log(6);
    let mut s = session(&log, config());
    assert_eq!(
        s.handle_frame(t(1), hello(log[1].position(), 2)),
        [read(2, 3)]
    );
    // Compacted through 2: the snapshot there is exactly what the replica holds.
    assert_eq!(s.on_entries_missing(t(2)), [read_snapshot(2)]);
    assert_eq!(
        s.on_snapshot(t(3), snapshot_at(log[1].position(), 30)),
        [welcome(log[1].position()), read(3, 6)]
    );
    assert_eq!(s.durable_lsn(), Lsn(2));
}

#[test]
fn compaction_during_streaming_switches_to_the_snapshot_without_a_new_welcome() {
    let log = log(9);
    let mut s = session(&log, config());
    s.handle_frame(t(1), hello(LogPosition::START, 0));
    assert_eq!(s.on_entries_missing(t(2)), [read_snapshot(1)]);
    let snap = snapshot_at(log[4].position(), 15);
    assert_eq!(
        s.on_snapshot(t(3), snap.clone()),
        [
            begin(&snap),
            chunk(&snap, 0, 10),
            chunk(&snap, 10, 15),
            LeaderCommand::Send(Frame::SnapshotEnd),
        ]
    );
    // Five entries are "in flight" until the replica acknowledges the installed snapshot.
    assert_eq!(s.handle_frame(t(4), ack(5)), [read(6, 9)]);
}

#[test]
fn an_interrupted_snapshot_resumes_at_the_replicas_offset() {
    let log = log(8);
    let snap = snapshot_at(log[2].position(), 25);
    let mut s = session(&log, config());
    let mut frame = hello(LogPosition::START, 0);
    let Frame::Hello(h) = &mut frame else {
        unreachable!()
    };
    h.last = LogPosition {
        lsn: Lsn(2),
        hash: Hash([5; 32]),
    };
    h.resume = Some(SnapshotResume {
        position: snap.position,
        state_hash: snap.state_hash,
        offset: 20,
    });
    assert_eq!(s.handle_frame(t(1), frame), [read(2, 3)]);
    assert_eq!(s.on_entries(t(2), entries(&log, 2, 2)), [read_snapshot(2)]);
    assert_eq!(
        s.on_snapshot(t(3), snap.clone()),
        [
            welcome(snap.position),
            begin(&snap),
            chunk(&snap, 20, 25),
            LeaderCommand::Send(Frame::SnapshotEnd),
            read(4, 5),
        ]
    );
}

#[test]
fn bad_acks_and_bad_frames_close_the_session() {
    let log = log(3);
    let mut s = session(&log, config());
    s.handle_frame(t(1), hello(LogPosition::START, 0));
    assert_eq!(
        closed_with(&s.handle_frame(t(2), ack(1))),
        "ack_beyond_sent"
    );
    assert!(s.is_closed());
    // A closed session ignores everything, including late reads.
    assert_eq!(s.on_tick(t(10_000)), []);
    assert_eq!(s.on_entries(t(3), entries(&log, 1, 3)), []);

    let mut s = session(&log, config());
    let junk = s.handle_bytes(t(1), &[1, 2, 3]);
    assert_eq!(closed_with(&junk), "frame_truncated");

    let mut s = session(&log, config());
    assert_eq!(
        closed_with(&s.handle_frame(t(1), ack(0))),
        "protocol_violation"
    );

    let mut s = session(&log, config());
    s.handle_frame(t(1), hello(LogPosition::START, 0));
    let entries_from_replica = Frame::Entries { entries: vec![] };
    assert_eq!(
        closed_with(&s.handle_frame(t(2), entries_from_replica)),
        "protocol_violation"
    );
}

#[test]
fn hello_is_checked_and_a_duplicate_is_harmless() {
    let log = log(3);
    let mut s = session(&log, config());
    let first = hello(log[2].position(), 3);
    assert_eq!(
        s.handle_frame(t(1), first.clone()),
        [welcome(log[2].position())]
    );
    assert_eq!(s.handle_frame(t(2), first), []);
    let other = hello(LogPosition::START, 0);
    assert_eq!(
        closed_with(&s.handle_frame(t(3), other)),
        "protocol_violation"
    );

    let mut s = session(&log, config());
    let mut newer = hello(LogPosition::START, 0);
    let Frame::Hello(h) = &mut newer else {
        unreachable!()
    };
    h.protocol_version = PROTOCOL_VERSION + 1;
    let out = s.handle_frame(t(1), newer);
    assert_eq!(closed_with(&out), "unsupported_protocol");
    let LeaderCommand::Close(error) = &out[1] else {
        unreachable!()
    };
    assert_eq!(error.remedy(), cstore_core::replication::Remedy::Stop);
    assert_eq!(
        error.to_string(),
        format!(
            "protocol version {} is not supported (this side speaks 2 to {PROTOCOL_VERSION})",
            PROTOCOL_VERSION + 1
        )
    );
    let mut s = session(&log, config());
    let mut older = hello(LogPosition::START, 0);
    let Frame::Hello(h) = &mut older else {
        unreachable!()
    };
    h.protocol_version = PROTOCOL_VERSION_MIN - 1;
    assert_eq!(
        closed_with(&s.handle_frame(t(1), older)),
        "unsupported_protocol"
    );
    // Both versions this build serves are welcomed.
    for frame in [
        hello(LogPosition::START, 0),
        hello_asked(LogPosition::START, 0),
    ] {
        let mut s = session(&log, config());
        let out = s.handle_frame(t(1), frame);
        assert_eq!(out.first(), Some(&welcome(LogPosition::START)));
    }
    // A leader set to serve at most version 2 (how the tests play an older build) refuses this
    // build's replicas as an older build does, and still serves version 2.
    let older_leader = SessionConfig {
        protocol_version_max: PROTOCOL_VERSION_MIN,
        ..config()
    };
    let mut s = session(&log, older_leader.clone());
    let out = s.handle_frame(t(1), hello_asked(LogPosition::START, 0));
    assert_eq!(closed_with(&out), "unsupported_protocol");
    let LeaderCommand::Close(error) = &out[1] else {
        unreachable!()
    };
    assert_eq!(
        error.to_string(),
        format!("protocol version {PROTOCOL_VERSION} is not supported (this side speaks 2 to 2)")
    );
    let mut s = session(&log, older_leader);
    let out = s.handle_frame(t(1), hello(LogPosition::START, 0));
    assert_eq!(out.first(), Some(&welcome(LogPosition::START)));

    let mut s = session(&log, config());
    let mut ahead = hello(LogPosition::START, 0);
    let Frame::Hello(h) = &mut ahead else {
        unreachable!()
    };
    h.term = Term(3);
    assert_eq!(closed_with(&s.handle_frame(t(1), ahead)), "stale_term");
}

#[test]
fn heartbeats_fill_silence() {
    let log = log(2);
    let mut s = session(&log, config());
    s.handle_frame(t(0), hello(log[1].position(), 2));
    assert_eq!(s.on_tick(t(99)), []);
    let heartbeat = LeaderCommand::Send(Frame::Heartbeat {
        committed: log[1].position(),
    });
    assert_eq!(s.on_tick(t(100)), std::slice::from_ref(&heartbeat));
    assert_eq!(s.on_tick(t(150)), []);
    assert_eq!(s.on_tick(t(200)), [heartbeat]);
}

#[test]
fn a_silent_or_stalled_or_lagging_replica_is_dropped() {
    let log = log(30);

    let mut s = session(&log, config());
    assert_eq!(s.on_tick(t(499)), []);
    assert_eq!(closed_with(&s.on_tick(t(500))), "hello_timeout");

    // Caught up and answering heartbeats: kept; silent: dropped.
    let mut s = session(&log[..2], config());
    s.handle_frame(t(0), hello(log[1].position(), 2));
    s.on_tick(t(900));
    s.handle_frame(t(950), ack(2));
    assert!(
        !s.on_tick(t(1_900))
            .iter()
            .any(|c| matches!(c, LeaderCommand::Close(_)))
    );
    assert_eq!(closed_with(&s.on_tick(t(1_950))), "replica_timeout");

    // Entries in flight and keepalives that acknowledge nothing new.
    let mut s = session(&log[..2], config());
    s.handle_frame(t(0), hello(LogPosition::START, 0));
    s.on_entries(t(0), entries(&log, 1, 2));
    s.handle_frame(t(500), ack(0));
    assert_eq!(
        s.on_tick(t(799)),
        [LeaderCommand::Send(Frame::Heartbeat {
            committed: log[1].position()
        })]
    );
    assert_eq!(closed_with(&s.on_tick(t(800))), "ack_timeout");

    // Keeping up with acks but more than ten behind for two seconds.
    let config = SessionConfig {
        ack_timeout_ms: 1_000_000,
        replica_timeout_ms: 1_000_000,
        ..config()
    };
    let mut s = session(&log[..5], config);
    s.handle_frame(t(0), hello(log[4].position(), 5));
    s.on_committed(t(0), log[29].position());
    s.on_tick(t(10));
    assert!(
        !s.on_tick(t(2_009))
            .iter()
            .any(|c| matches!(c, LeaderCommand::Close(_)))
    );
    let out = s.on_tick(t(2_010));
    assert_eq!(closed_with(&out), "replica_lagging");
    let LeaderCommand::Close(ReplicationError::ReplicaLagging { lag, .. }) = &out[1] else {
        unreachable!()
    };
    assert_eq!(*lag, 25);
}

/// `tick_due` is exactly when a tick first acts: a millisecond before, a tick does nothing.
fn assert_due(s: &mut LeaderSession, due: u64) {
    assert_eq!(s.tick_due(), Some(t(due)));
    assert_eq!(s.on_tick(t(due - 1)), []);
    assert_eq!(s.tick_due(), Some(t(due)));
}

#[test]
fn a_tick_is_due_when_a_rule_fires_and_not_before() {
    let log = log(30);
    let quiet = SessionConfig {
        heartbeat_interval_ms: 1_000_000,
        ..config()
    };

    // No hello.
    let mut s = session(&log, config());
    assert_due(&mut s, 500);
    assert_eq!(closed_with(&s.on_tick(t(500))), "hello_timeout");
    assert_eq!(s.tick_due(), None);

    // Heartbeats after silence on the leader's side, timed from the last frame sent.
    let mut s = session(&log[..2], config());
    s.handle_frame(t(0), hello(log[1].position(), 2));
    assert_due(&mut s, 100);
    assert!(!s.on_tick(t(100)).is_empty());
    s.on_committed(t(130), log[2].position());
    s.on_entries(t(130), entries(&log, 3, 3));
    assert_due(&mut s, 230);

    // Silence on the replica's side.
    let mut s = session(&log[..2], quiet.clone());
    s.handle_frame(t(0), hello(log[1].position(), 2));
    s.handle_frame(t(150), ack(2));
    assert_due(&mut s, 1_150);
    assert_eq!(closed_with(&s.on_tick(t(1_150))), "replica_timeout");

    // Entries in flight and no acknowledgement.
    let mut s = session(&log[..2], quiet.clone());
    s.handle_frame(t(0), hello(LogPosition::START, 0));
    s.on_entries(t(0), entries(&log, 1, 2));
    s.handle_frame(t(500), ack(0));
    assert_due(&mut s, 800);
    assert_eq!(closed_with(&s.on_tick(t(800))), "ack_timeout");

    // Ahead of the committed position.
    let mut s = session(&log[..4], config());
    let ahead = LogPosition {
        lsn: Lsn(9),
        hash: Hash([1; 32]),
    };
    s.handle_frame(t(1), hello(ahead, 9));
    assert_due(&mut s, 301);
    assert_eq!(s.on_tick(t(301)), [read_snapshot(4)]);

    // Lagging: due at once to start the clock, then when it runs out; catching up stops it.
    let patient = SessionConfig {
        ack_timeout_ms: 1_000_000,
        replica_timeout_ms: 1_000_000,
        ..quiet
    };
    let mut s = session(&log[..5], patient);
    s.handle_frame(t(0), hello(log[4].position(), 5));
    let mut out = s.on_committed(t(0), log[29].position());
    assert_eq!(s.tick_due(), Some(t(0)));
    assert_eq!(s.on_tick(t(10)), []);
    assert_due(&mut s, 2_010);
    for round in 0.. {
        assert!(round < 20, "the replica does not catch up");
        if s.lag() <= 10 {
            break;
        }
        for command in std::mem::take(&mut out) {
            if let LeaderCommand::ReadEntries { from, to } = command {
                out.extend(s.on_entries(t(20), entries(&log, from.0, to.0 - 1)));
            }
        }
        out.extend(s.handle_frame(t(20), ack(s.sent().lsn.0)));
    }
    assert_eq!(s.tick_due(), Some(t(0)));
    assert_eq!(s.on_tick(t(30)), []);
    assert_eq!(s.tick_due(), Some(t(1_000_020)));
}

#[test]
fn an_error_from_the_replica_closes_without_an_answer() {
    let log = log(1);
    let mut s = session(&log, config());
    let out = s.handle_frame(t(0), Frame::error("log_gap", "lost one"));
    assert_eq!(
        out,
        [LeaderCommand::Close(ReplicationError::Remote {
            code: "log_gap".into(),
            message: "lost one".into()
        })]
    );
    assert!(s.is_closed());
}

#[test]
fn a_late_snapshot_ack_of_an_earlier_transfer_is_ignored() {
    let log = log(9);
    let config = SessionConfig {
        window_bytes_max: 10,
        ..config()
    };
    let mut s = session(&log, config);
    s.handle_frame(t(1), hello(LogPosition::START, 0));
    s.on_entries_missing(t(2));
    let first = snapshot_at(log[2].position(), 10);
    s.on_snapshot(t(3), first.clone());
    s.handle_frame(t(4), ack(3));
    // Compacted again before the replica caught up: a second transfer in the same session.
    assert_eq!(s.on_entries_missing(t(5)), [read_snapshot(4)]);
    let second = snapshot_at(log[6].position(), 30);
    assert_eq!(
        s.on_snapshot(t(6), second.clone()),
        [begin(&second), chunk(&second, 0, 10)]
    );
    // The first transfer's last ack arrives late: it says nothing about the second.
    assert_eq!(s.handle_frame(t(7), snapshot_ack(&first, 10)), []);
    assert!(!s.is_closed());
    assert_eq!(
        s.handle_frame(t(8), snapshot_ack(&second, 10)),
        [chunk(&second, 10, 20)]
    );
}

fn subscribed_hello(collections: Vec<String>) -> Frame {
    let Frame::Hello(hello) = hello(LogPosition::START, 0) else {
        unreachable!()
    };
    Frame::Hello(Hello {
        collections: Some(collections),
        ..hello
    })
}

#[test]
fn a_subscribed_replica_gets_other_collections_as_hashes_and_a_filtered_snapshot() {
    use cstore_core::Op;
    use cstore_core::doc::RawDoc;
    use cstore_core::state::State;

    let put = |collection: &str, id: &str| Op::Put {
        collection: collection.into(),
        doc: RawDoc::from_value(&serde_json::json!({"_id": id})).unwrap(),
        if_version: None,
    };
    let mut state = State::new();
    let mut log = Vec::new();
    for txn in [
        Txn::new(vec![put("notes", "n1"), put("secrets", "s1")]),
        Txn::single(put("secrets", "s2")),
        Txn::single(put("notes", "n2")),
    ] {
        let entry = LogEntry::new(state.applied(), Term(1), t(1), txn);
        state.apply(&entry).unwrap();
        log.push(entry);
    }
    let mut s = session(&log, config());
    let commands = s.handle_frame(t(1), subscribed_hello(vec!["notes".into()]));
    assert_eq!(commands, [welcome(LogPosition::START), read(1, 4)]);
    let commands = s.on_entries(t(2), log.clone());
    let [LeaderCommand::SendEntries(frame)] = &commands[..] else {
        panic!("expected one Entries frame, got {commands:?}");
    };
    assert!(
        !frame.is_as_committed(),
        "filtered entries are this session's own"
    );
    let sent = frame.entries();
    assert_eq!(sent.len(), 3);
    for (sent, full) in sent.iter().zip(&log) {
        assert_eq!(sent.position(), full.position());
        assert!(sent.verify_hash(), "entry {} verifies", sent.lsn);
        assert!(sent.txn.ops.iter().all(|op| op.collection() == "notes"));
    }
    assert_eq!(sent[0].txn.omitted.len(), 1);
    assert_eq!(
        *sent[2], log[2],
        "an entry with nothing to leave out goes as it is"
    );

    // The snapshot a subscribed replica bootstraps from holds only its collections.
    let mut replica_state = State::new();
    for entry in sent {
        replica_state.apply(entry).unwrap();
    }
    let filtered = State::filter_snapshot(&state.snapshot(), |c| c == "notes").unwrap();
    assert_eq!(filtered.position, state.applied());
    assert_eq!(filtered.state_hash, replica_state.state_hash());
    let rebuilt = State::from_snapshot(&filtered).unwrap();
    assert!(rebuilt.collection("secrets").is_none());
    assert_eq!(rebuilt.collection("notes").unwrap().len(), 2);
}

#[test]
fn a_replica_limited_to_collections_subscribes_within_them() {
    let log = log(2);
    let limited = |hello_frame: Frame| {
        let mut s = session(&log, config());
        s.limit_collections(["notes".to_string(), "todos".to_string()]);
        s.handle_frame(t(1), hello_frame)
    };
    for refused in [
        hello(LogPosition::START, 0),
        subscribed_hello(vec!["notes".into(), "secrets".into()]),
    ] {
        let commands = limited(refused);
        assert_eq!(closed_with(&commands), "collection_forbidden");
        let LeaderCommand::Close(error) = &commands[1] else {
            unreachable!()
        };
        assert_eq!(error.remedy(), cstore_core::replication::Remedy::Stop);
    }
    let commands = limited(subscribed_hello(vec!["todos".into()]));
    assert!(
        !commands
            .iter()
            .any(|c| matches!(c, LeaderCommand::Close(_))),
        "{commands:?}"
    );
}

#[test]
fn an_invalid_subscription_closes_the_session_for_good() {
    let log = log(2);
    for collections in [
        vec!["bad name!".to_string()],
        vec![String::new()],
        (0..2000).map(|i| format!("c{i}")).collect(),
    ] {
        let mut s = session(&log, config());
        let commands = s.handle_frame(t(1), subscribed_hello(collections));
        assert_eq!(closed_with(&commands), "invalid_subscription");
        let LeaderCommand::Close(error) = &commands[1] else {
            unreachable!()
        };
        assert_eq!(error.remedy(), cstore_core::replication::Remedy::Stop);
    }
}

#[test]
fn a_replica_that_acks_on_request_is_asked_when_the_window_is_half_full() {
    let log = log(10);
    let config = SessionConfig {
        window_entries_max: 8,
        ..config()
    };
    let mut s = session(&log, config);
    assert_eq!(
        s.handle_frame(t(1), hello_asked(LogPosition::START, 0)),
        [welcome(LogPosition::START), read(1, 4)]
    );
    // Three entries in a window of eight: nothing depends on their ack yet.
    assert_eq!(
        s.on_entries(t(2), entries(&log, 1, 3)),
        [send_entries(&log, 1, 3), read(4, 7)]
    );
    // Six in flight: half full, so a heartbeat rides behind the entries.
    assert_eq!(
        s.on_entries(t(3), entries(&log, 4, 6)),
        [send_entries(&log, 4, 6), ask(&log), read(7, 9)]
    );
    assert_eq!(
        s.on_entries(t(4), entries(&log, 7, 8)),
        [send_entries(&log, 7, 8), ask(&log)]
    );
    // The answer opens the window; when it is half full again, the entries ask again.
    assert_eq!(s.handle_frame(t(5), ack(6)), [read(9, 11)]);
    assert_eq!(
        s.on_entries(t(6), entries(&log, 9, 10)),
        [send_entries(&log, 9, 10), ask(&log)]
    );
}

#[test]
fn a_replica_that_acks_on_request_is_asked_with_the_entries_while_a_write_waits() {
    let log = log(4);
    let mut s = asked_session(&log[..2], 10, 1);
    // A write waits (the flag is raised before it commits): its entries carry an ask.
    s.set_acks_awaited(true);
    assert_eq!(
        s.on_entries(t(2), entries(&log, 1, 2)),
        [send_entries(&log, 1, 2), ask(&log[..2])]
    );
    assert_eq!(s.handle_frame(t(3), ack(2)), []);
    // Nobody waits any more: entries go out unasked (the window has room, a second has not
    // passed).
    s.set_acks_awaited(false);
    assert_eq!(s.on_committed(t(4), log[3].position()), [read(3, 5)]);
    assert_eq!(
        s.on_entries(t(5), entries(&log, 3, 4)),
        [send_entries(&log, 3, 4)]
    );
}

#[test]
fn a_replica_that_acks_on_request_is_asked_once_a_heartbeat_interval_while_entries_flow() {
    let log = log(6);
    let mut s = asked_session(&log, 10, 1);
    assert_eq!(
        s.on_entries(t(2), entries(&log, 1, 6)),
        [send_entries(&log, 1, 6)]
    );
    // Sending kept the idle heartbeat away until 102; it asks for what was sent.
    assert_eq!(s.on_tick(t(101)), []);
    assert_eq!(s.on_tick(t(102)), [ask(&log)]);
    assert_eq!(s.handle_frame(t(103), ack(6)), []);
}

#[test]
fn entries_flowing_past_a_heartbeat_interval_carry_an_ask() {
    let log = log(6);
    let mut s = asked_session(&log, 1, 1);
    assert_eq!(
        s.on_entries(t(50), entries(&log, 1, 1)),
        [send_entries(&log, 1, 1), read(2, 3)]
    );
    assert_eq!(
        s.on_entries(t(99), entries(&log, 2, 2)),
        [send_entries(&log, 2, 2), read(3, 4)]
    );
    // No ask since the session opened at 0: the next entries carry one.
    assert_eq!(
        s.on_entries(t(100), entries(&log, 3, 3)),
        [send_entries(&log, 3, 3), ask(&log), read(4, 5)]
    );
    assert_eq!(
        s.on_entries(t(150), entries(&log, 4, 4)),
        [send_entries(&log, 4, 4), read(5, 6)]
    );
    assert_eq!(
        s.on_entries(t(200), entries(&log, 5, 5)),
        [send_entries(&log, 5, 5), ask(&log), read(6, 7)]
    );
}

#[test]
fn the_periodic_ask_is_spread_over_the_interval_by_replica() {
    let log = log(2);
    // Replica 7, heartbeat interval 100: its asks fall 7 ms earlier than a hello-time clock.
    let mut s = asked_session(&log, 1, 500);
    assert_eq!(
        s.on_entries(t(592), entries(&log, 1, 1)),
        [send_entries(&log, 1, 1), read(2, 3)]
    );
    assert_eq!(
        s.on_entries(t(593), entries(&log, 2, 2)),
        [send_entries(&log, 2, 2), ask(&log)]
    );
}

#[test]
fn a_replica_of_version_2_is_never_asked_with_entries() {
    let log = log(4);
    let mut s = session(&log, config());
    s.handle_frame(t(1), hello(LogPosition::START, 0));
    s.set_acks_awaited(true);
    assert_eq!(
        s.on_entries(t(200), entries(&log, 1, 3)),
        [send_entries(&log, 1, 3), read(4, 5)]
    );
}
