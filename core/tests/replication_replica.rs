//! The replica state machine, fed frames one at a time: each test compares the exact commands
//! out.

use cstore_core::ErrorCode;
use cstore_core::replication::{
    Frame, Hello, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, Remedy, Replica, ReplicaCommand,
    ReplicaConfig, ReplicationError, SnapshotResume,
};
use cstore_core::{Hash, LogEntry, LogPosition, Lsn, ReplicaId, Snapshot, Term, TimestampMs, Txn};

const LEADER: ReplicaId = ReplicaId(1);
const ME: ReplicaId = ReplicaId(7);

fn t(ms: u64) -> TimestampMs {
    TimestampMs(ms)
}

/// Entries 1..=n; entries 1-3 have term 1, later ones term 2.
fn log(n: u64) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    let mut prev = LogPosition::START;
    for i in 0..n {
        let term = if i < 3 { Term(1) } else { Term(2) };
        let entry = LogEntry::new(prev, term, TimestampMs(i), Txn::tick());
        prev = entry.position();
        out.push(entry);
    }
    out
}

fn config() -> ReplicaConfig {
    ReplicaConfig {
        replica_id: ME,
        leader_timeout_ms: 1_000,
        snapshot_bytes_max: 100,
        subscription: None,
    }
}

fn replica(last: LogPosition, term: u64) -> Replica {
    Replica::new(config(), last, Term(term))
}

fn welcome(term: u64, start: LogPosition) -> Frame {
    Frame::Welcome {
        leader_id: LEADER,
        term: Term(term),
        start,
    }
}

fn entries(log: &[LogEntry], from: u64, to: u64) -> Vec<LogEntry> {
    log[(from - 1) as usize..to as usize].to_vec()
}

fn frame(log: &[LogEntry], from: u64, to: u64) -> Frame {
    Frame::Entries {
        entries: entries(log, from, to),
    }
}

fn persist(log: &[LogEntry], from: u64, to: u64) -> ReplicaCommand {
    ReplicaCommand::Persist {
        entries: entries(log, from, to),
    }
}

fn ack(lsn: u64) -> ReplicaCommand {
    ReplicaCommand::Send(Frame::Ack { durable: Lsn(lsn) })
}

fn snapshot_ack(snapshot: &Snapshot, bytes: u64) -> ReplicaCommand {
    ReplicaCommand::Send(Frame::SnapshotAck {
        position: snapshot.position,
        received_bytes: bytes,
    })
}

/// A streaming replica with an empty log, welcomed by a leader of term 2.
fn streaming() -> Replica {
    let mut r = replica(LogPosition::START, 2);
    r.hello(t(0));
    assert_eq!(r.handle_frame(t(0), welcome(2, LogPosition::START)), []);
    r
}

fn closed_with(commands: &[ReplicaCommand]) -> (&'static str, Remedy) {
    match commands {
        [
            ReplicaCommand::Send(Frame::Error { code, .. }),
            ReplicaCommand::Close(error),
        ] => {
            assert_eq!(code, error.code());
            (error.code(), error.remedy())
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

fn snapshot_frames(snapshot: &Snapshot) -> (Frame, Frame, Frame) {
    let begin = Frame::SnapshotBegin {
        position: snapshot.position,
        state_hash: snapshot.state_hash,
        total_bytes: snapshot.data.len() as u64,
    };
    let half = snapshot.data.len() / 2;
    let first = Frame::SnapshotChunk {
        offset: 0,
        bytes: snapshot.data[..half].to_vec(),
    };
    let second = Frame::SnapshotChunk {
        offset: half as u64,
        bytes: snapshot.data[half..].to_vec(),
    };
    (begin, first, second)
}

#[test]
fn hello_carries_the_position_the_durable_lsn_and_the_term() {
    let log = log(3);
    let mut r = replica(log[2].position(), 4);
    assert_eq!(
        r.hello(t(0)),
        Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            replica_id: ME,
            term: Term(4),
            last: log[2].position(),
            durable: Lsn(3),
            resume: None,
            collections: None,
        })
    );
    assert!(r.is_connected() && !r.is_streaming());
}

fn heartbeat(log: &[LogEntry], lsn: u64) -> Frame {
    Frame::Heartbeat {
        committed: log[lsn as usize - 1].position(),
    }
}

#[test]
fn entries_are_persisted_then_acknowledged_never_before() {
    let log = log(5);
    let mut r = streaming();
    assert_eq!(
        r.handle_frame(t(1), frame(&log, 1, 3)),
        [persist(&log, 1, 3)]
    );
    // The leader asks (a heartbeat behind the entries) before they are persisted: the entries
    // are acknowledged once they are, and that is the answer.
    assert_eq!(r.handle_frame(t(1), heartbeat(&log, 3)), []);
    assert_eq!(
        r.handle_frame(t(2), frame(&log, 4, 5)),
        [persist(&log, 4, 5)]
    );
    assert_eq!((r.received(), r.durable_lsn()), (log[4].position(), Lsn(0)));
    assert_eq!(r.on_persisted(t(3), Lsn(3)), [ack(3)]);
    // Entries 4 and 5 came after the ask: nobody waits for them.
    assert_eq!(r.on_persisted(t(4), Lsn(5)), []);
    assert_eq!(r.durable_lsn(), Lsn(5));
    // Heartbeats are answered with the durable LSN (the replica's keepalive).
    assert_eq!(r.handle_frame(t(5), heartbeat(&log, 5)), [ack(5)]);
    assert_eq!(r.lag(), 0);
}

#[test]
fn an_ask_is_answered_until_everything_received_before_it_is_acknowledged() {
    let log = log(6);
    let mut r = streaming();
    r.handle_frame(t(1), frame(&log, 1, 2));
    r.handle_frame(t(1), frame(&log, 3, 4));
    assert_eq!(r.handle_frame(t(2), heartbeat(&log, 4)), []);
    // Persisted in two writes: each is acknowledged, since the ask covers both.
    assert_eq!(r.on_persisted(t(3), Lsn(2)), [ack(2)]);
    r.handle_frame(t(3), frame(&log, 5, 6));
    assert_eq!(r.on_persisted(t(4), Lsn(4)), [ack(4)]);
    assert_eq!(r.on_persisted(t(5), Lsn(6)), []);
    // A new connection starts with nothing asked.
    r.on_disconnected();
    r.hello(t(6));
    assert_eq!(
        r.handle_frame(t(7), welcome(2, log[5].position())),
        [],
        "nothing new became durable"
    );
    assert_eq!(r.handle_frame(t(8), heartbeat(&log, 6)), [ack(6)]);
}

#[test]
fn duplicated_and_replayed_entries_are_skipped() {
    let log = log(6);
    let mut r = streaming();
    assert_eq!(
        r.handle_frame(t(1), frame(&log, 1, 3)),
        [persist(&log, 1, 3)]
    );
    assert_eq!(r.handle_frame(t(2), frame(&log, 1, 3)), []);
    assert_eq!(
        r.handle_frame(t(3), frame(&log, 2, 5)),
        [persist(&log, 4, 5)]
    );
    assert_eq!(r.handle_frame(t(4), frame(&log, 5, 5)), []);
    assert_eq!(r.received(), log[4].position());
}

#[test]
fn a_gap_a_bad_hash_or_a_bad_term_closes_with_its_code() {
    let log = log(6);

    let mut r = streaming();
    r.handle_frame(t(1), frame(&log, 1, 2));
    let out = r.handle_frame(t(2), frame(&log, 4, 4));
    assert_eq!(closed_with(&out), ("log_gap", Remedy::Reconnect));
    assert!(!r.is_connected());
    // Frames after the close are ignored; the next hello resumes after entry 2.
    assert_eq!(r.handle_frame(t(3), frame(&log, 3, 3)), []);
    let Frame::Hello(hello) = r.hello(t(4)) else {
        unreachable!()
    };
    assert_eq!(hello.last, log[1].position());

    let mut r = streaming();
    let mut forged = entries(&log, 1, 2);
    forged[1].timestamp = TimestampMs(999);
    let out = r.handle_frame(t(1), Frame::Entries { entries: forged });
    assert_eq!(closed_with(&out), ("hash_mismatch", Remedy::Reconnect));
    assert_eq!(
        r.received(),
        LogPosition::START,
        "nothing of a bad frame is kept"
    );

    let mut r = streaming();
    r.handle_frame(t(1), frame(&log, 1, 2));
    let mut other = entries(&log, 2, 2);
    other[0].timestamp = TimestampMs(77);
    other[0].hash = other[0].compute_hash().unwrap();
    let out = r.handle_frame(t(2), Frame::Entries { entries: other });
    assert_eq!(closed_with(&out), ("diverged", Remedy::Reconnect));

    // An entry of an older term than the one before it.
    let mut r = streaming();
    let mut prev = LogPosition::START;
    let mut backwards = Vec::new();
    for term in [2, 1] {
        let entry = LogEntry::new(prev, Term(term), TimestampMs(1), Txn::tick());
        prev = entry.position();
        backwards.push(entry);
    }
    let out = r.handle_frame(t(1), Frame::Entries { entries: backwards });
    assert_eq!(closed_with(&out), ("term_out_of_range", Remedy::Reconnect));

    // An entry of a newer term than its leader's.
    let mut r = replica(LogPosition::START, 1);
    r.hello(t(0));
    r.handle_frame(t(0), welcome(1, LogPosition::START));
    let out = r.handle_frame(t(1), frame(&log, 1, 4));
    assert_eq!(closed_with(&out), ("term_out_of_range", Remedy::Reconnect));
}

#[test]
fn terms_only_go_forward() {
    let mut r = replica(LogPosition::START, 3);
    r.hello(t(0));
    let out = r.handle_frame(t(1), welcome(2, LogPosition::START));
    assert_eq!(closed_with(&out), ("stale_term", Remedy::Reconnect));

    r.hello(t(2));
    assert_eq!(
        r.handle_frame(t(3), welcome(5, LogPosition::START)),
        [ReplicaCommand::SaveTerm(Term(5))]
    );
    assert_eq!(r.term(), Term(5));
    assert_eq!(r.leader(), Some((LEADER, Term(5))));
    // A duplicated welcome is harmless; one from another leader is not.
    assert_eq!(r.handle_frame(t(4), welcome(5, LogPosition::START)), []);
    let out = r.handle_frame(t(5), welcome(6, LogPosition::START));
    assert_eq!(closed_with(&out), ("protocol_violation", Remedy::Reconnect));
}

#[test]
fn frames_out_of_place_are_violations() {
    let log = log(2);
    let mut r = replica(LogPosition::START, 0);
    r.hello(t(0));
    let out = r.handle_frame(t(1), frame(&log, 1, 1));
    assert_eq!(closed_with(&out), ("protocol_violation", Remedy::Reconnect));

    let mut r = streaming();
    let out = r.handle_frame(t(1), Frame::Ack { durable: Lsn(1) });
    assert_eq!(closed_with(&out), ("protocol_violation", Remedy::Reconnect));

    let mut r = streaming();
    let out = r.handle_bytes(t(1), &[0; 12]);
    assert_eq!(closed_with(&out), ("bad_checksum", Remedy::Reconnect));
}

#[test]
fn a_snapshot_is_collected_verified_and_installed_then_acknowledged() {
    let log = log(5);
    let snapshot = Snapshot::new(log[2].position(), (0..40).collect());
    let (begin, first, second) = snapshot_frames(&snapshot);
    // A diverged replica: the leader welcomes it at the snapshot's position.
    let forked = LogPosition {
        lsn: Lsn(4),
        hash: Hash([6; 32]),
    };
    let mut r = replica(forked, 2);
    r.hello(t(0));
    assert_eq!(r.handle_frame(t(1), welcome(2, snapshot.position)), []);
    assert_eq!(r.durable_lsn(), Lsn::ZERO, "the old chain does not count");
    assert_eq!(r.handle_frame(t(2), begin.clone()), []);
    assert_eq!(
        r.handle_frame(t(3), first.clone()),
        [snapshot_ack(&snapshot, 20)]
    );
    // Duplicates are harmless.
    assert_eq!(r.handle_frame(t(4), begin), []);
    assert_eq!(r.handle_frame(t(4), first), [snapshot_ack(&snapshot, 20)]);
    assert_eq!(r.handle_frame(t(5), second), [snapshot_ack(&snapshot, 40)]);
    assert_eq!(
        r.handle_frame(t(6), Frame::SnapshotEnd),
        [ReplicaCommand::InstallSnapshot(snapshot.clone())]
    );
    assert_eq!(r.received(), snapshot.position);
    // Entries after the snapshot stream at once.
    assert_eq!(
        r.handle_frame(t(7), frame(&log, 4, 4)),
        [persist(&log, 4, 4)]
    );
    // The old chain's writes finishing late do not count; the install does.
    assert_eq!(r.on_persisted(t(8), Lsn(4)), []);
    assert_eq!(r.durable_lsn(), Lsn::ZERO);
    assert_eq!(r.on_snapshot_installed(t(9), snapshot.position), [ack(3)]);
    assert_eq!(r.on_persisted(t(10), Lsn(4)), [], "not asked for");
    assert_eq!(r.handle_frame(t(11), heartbeat(&log, 4)), [ack(4)]);
}

#[test]
fn snapshot_damage_closes_with_its_code() {
    let log = log(3);
    let snapshot = Snapshot::new(log[2].position(), (0..40).collect());
    let start = |r: &mut Replica| {
        r.hello(t(0));
        r.handle_frame(t(0), welcome(2, snapshot.position));
    };
    let (begin, first, second) = snapshot_frames(&snapshot);

    let mut r = replica(LogPosition::START, 2);
    start(&mut r);
    r.handle_frame(t(1), begin.clone());
    let out = r.handle_frame(t(2), second.clone());
    assert_eq!(closed_with(&out), ("snapshot_gap", Remedy::Reconnect));

    let mut r = replica(LogPosition::START, 2);
    start(&mut r);
    r.handle_frame(t(1), begin.clone());
    r.handle_frame(t(2), first.clone());
    let out = r.handle_frame(t(3), Frame::SnapshotEnd);
    assert_eq!(
        closed_with(&out),
        ("snapshot_incomplete", Remedy::Reconnect)
    );

    let mut r = replica(LogPosition::START, 2);
    start(&mut r);
    r.handle_frame(t(1), begin);
    r.handle_frame(t(2), first);
    let Frame::SnapshotChunk { offset, mut bytes } = second else {
        unreachable!()
    };
    bytes[0] ^= 1;
    r.handle_frame(t(3), Frame::SnapshotChunk { offset, bytes });
    let out = r.handle_frame(t(4), Frame::SnapshotEnd);
    assert_eq!(
        closed_with(&out),
        ("snapshot_hash_mismatch", Remedy::Reconnect)
    );

    let mut r = replica(LogPosition::START, 2);
    start(&mut r);
    let too_big = Frame::SnapshotBegin {
        position: snapshot.position,
        state_hash: snapshot.state_hash,
        total_bytes: 101,
    };
    assert_eq!(
        closed_with(&r.handle_frame(t(1), too_big)),
        ("snapshot_too_large", Remedy::Stop)
    );

    let mut r = replica(LogPosition::START, 2);
    start(&mut r);
    let elsewhere = Frame::SnapshotBegin {
        position: log[1].position(),
        state_hash: snapshot.state_hash,
        total_bytes: 40,
    };
    let out = r.handle_frame(t(1), elsewhere);
    assert_eq!(closed_with(&out), ("protocol_violation", Remedy::Reconnect));
}

#[test]
fn an_interrupted_snapshot_resumes_after_reconnecting() {
    let log = log(3);
    let snapshot = Snapshot::new(log[2].position(), (0..40).collect());
    let (begin, first, second) = snapshot_frames(&snapshot);
    let mut r = replica(LogPosition::START, 2);
    r.hello(t(0));
    r.handle_frame(t(0), welcome(2, snapshot.position));
    r.handle_frame(t(1), begin.clone());
    r.handle_frame(t(2), first);
    r.on_disconnected();
    let Frame::Hello(hello) = r.hello(t(3)) else {
        unreachable!()
    };
    assert_eq!(
        hello.resume,
        Some(SnapshotResume {
            position: snapshot.position,
            state_hash: snapshot.state_hash,
            offset: 20
        })
    );
    r.handle_frame(t(4), welcome(2, snapshot.position));
    assert_eq!(r.handle_frame(t(5), begin), []);
    assert_eq!(r.handle_frame(t(6), second), [snapshot_ack(&snapshot, 40)]);
    assert_eq!(
        r.handle_frame(t(7), Frame::SnapshotEnd),
        [ReplicaCommand::InstallSnapshot(snapshot)]
    );
}

#[test]
fn a_snapshot_mid_stream_keeps_counting_the_confirmed_chain() {
    let log = log(8);
    let snapshot = Snapshot::new(log[5].position(), (0..10).collect());
    let (begin, first, second) = snapshot_frames(&snapshot);
    let mut r = streaming();
    r.handle_frame(t(1), frame(&log, 1, 2));
    assert_eq!(r.handle_frame(t(2), begin), []);
    assert_eq!(
        r.on_persisted(t(3), Lsn(2)),
        [],
        "no entry acks during a transfer"
    );
    assert_eq!(r.durable_lsn(), Lsn(2));
    r.handle_frame(t(4), first);
    r.handle_frame(t(5), second);
    r.handle_frame(t(6), Frame::SnapshotEnd);
    // A late duplicate of the finished transfer is ignored.
    assert_eq!(r.handle_frame(t(7), Frame::SnapshotEnd), []);
    assert_eq!(r.on_snapshot_installed(t(8), snapshot.position), [ack(6)]);
}

#[test]
fn a_silent_leader_is_left() {
    let mut r = streaming();
    assert_eq!(r.on_tick(t(999)), []);
    let out = r.on_tick(t(1_000));
    assert_eq!(closed_with(&out), ("leader_timeout", Remedy::Reconnect));
    assert_eq!(r.on_tick(t(5_000)), []);
}

#[test]
fn a_failed_apply_asks_for_a_fresh_bootstrap() {
    let mut r = streaming();
    let out = r.on_apply_failed(Lsn(1), "unique violation");
    assert_eq!(closed_with(&out), ("apply_failed", Remedy::Rebootstrap));
}

#[test]
fn an_error_from_the_leader_closes_with_its_remedy() {
    let mut r = streaming();
    let out = r.handle_frame(t(1), Frame::error("unsupported_protocol", "speak 2"));
    let [ReplicaCommand::Close(error)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(error.code(), "peer_error");
    assert_eq!(error.remedy(), Remedy::Stop);
    assert!(
        matches!(error, ReplicationError::Remote { code, .. } if code == "unsupported_protocol")
    );
}

fn hello_version(r: &mut Replica, now: u64) -> u16 {
    let Frame::Hello(hello) = r.hello(t(now)) else {
        unreachable!()
    };
    hello.protocol_version
}

#[test]
fn an_older_leader_that_refuses_the_version_is_greeted_in_the_one_before() {
    let log = log(4);
    let mut r = replica(LogPosition::START, 2);
    assert_eq!(hello_version(&mut r, 0), PROTOCOL_VERSION);
    // A leader of an older build answers the hello with `unsupported_protocol` and closes.
    let out = r.handle_frame(
        t(1),
        Frame::error(
            "unsupported_protocol",
            "protocol version 3 is not supported (this side speaks 2)",
        ),
    );
    let [ReplicaCommand::Close(error)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(
        (error.code(), error.remedy()),
        ("protocol_fallback", Remedy::Reconnect)
    );
    assert!(matches!(
        error,
        ReplicationError::ProtocolFallback { refused: 3, next: 2, message } if message.contains("speaks 2")
    ));
    assert!(!r.is_connected());

    // The next hello speaks version 2, and a version 2 replica acknowledges every persisted
    // batch unasked, as replicas of that version did.
    assert_eq!(hello_version(&mut r, 2), 2);
    assert_eq!(r.protocol_version(), 2);
    assert_eq!(r.handle_frame(t(3), welcome(2, LogPosition::START)), []);
    assert_eq!(
        r.handle_frame(t(4), frame(&log, 1, 2)),
        [persist(&log, 1, 2)]
    );
    assert_eq!(r.on_persisted(t(5), Lsn(2)), [ack(2)]);
    r.handle_frame(t(6), frame(&log, 3, 4));
    assert_eq!(r.on_persisted(t(7), Lsn(4)), [ack(4)]);

    // That connection ends; the leader may have been upgraded meanwhile, so the next hello
    // tries the newest version again.
    r.on_disconnected();
    assert_eq!(hello_version(&mut r, 8), PROTOCOL_VERSION);
    assert_eq!(r.handle_frame(t(9), welcome(2, log[3].position())), []);
    r.handle_frame(
        t(10),
        Frame::Heartbeat {
            committed: log[3].position(),
        },
    );
    r.on_disconnected();
    assert_eq!(
        hello_version(&mut r, 11),
        PROTOCOL_VERSION,
        "welcomed at the newest"
    );
}

#[test]
fn a_refusal_of_the_oldest_version_stops() {
    let mut r = replica(LogPosition::START, 2);
    r.hello(t(0));
    let refused = || Frame::error("unsupported_protocol", "speak 4");
    let out = r.handle_frame(t(1), refused());
    assert!(matches!(
        out.as_slice(),
        [ReplicaCommand::Close(
            ReplicationError::ProtocolFallback { .. }
        )]
    ));
    // Each version down to the oldest is tried once, then the replica stops: the leader is
    // newer than anything it speaks.
    for version in (PROTOCOL_VERSION_MIN..PROTOCOL_VERSION).rev() {
        assert_eq!(hello_version(&mut r, 2), version);
        let out = r.handle_frame(t(3), refused());
        let [ReplicaCommand::Close(error)] = out.as_slice() else {
            panic!("{out:?}")
        };
        if version > PROTOCOL_VERSION_MIN {
            assert_eq!(error.code(), "protocol_fallback");
        } else {
            assert_eq!((error.code(), error.remedy()), ("peer_error", Remedy::Stop));
        }
    }
    // Refused again, it does not go below the oldest.
    assert_eq!(hello_version(&mut r, 4), PROTOCOL_VERSION_MIN);
}

#[test]
fn a_chain_the_leader_confirms_again_counts_again() {
    let log = log(3);
    let mut r = replica(log[2].position(), 2);
    r.hello(t(0));
    // A welcome elsewhere (say, a stale one) puts the local chain in doubt...
    assert_eq!(r.handle_frame(t(1), welcome(2, log[0].position())), []);
    assert_eq!(r.durable_lsn(), Lsn::ZERO);
    r.on_disconnected();
    let Frame::Hello(hello) = r.hello(t(2)) else {
        unreachable!()
    };
    assert_eq!((hello.last, hello.durable), (log[2].position(), Lsn::ZERO));
    // ...until a leader finds its position on its own chain.
    assert_eq!(
        r.handle_frame(t(3), welcome(2, log[2].position())),
        [ack(3)]
    );
    assert_eq!(r.durable_lsn(), Lsn(3));
}
