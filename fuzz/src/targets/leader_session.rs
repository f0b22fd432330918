//! A replica's side of a replication session, as the leader sees it: a sequence of frames
//! (hello, acknowledgements, snapshot acknowledgements, anything) fed to core's
//! `LeaderSession` over a log of a few entries, whose reads the harness serves as the leader's
//! driver does. Replicas include browsers: their bytes are outside bytes.

use std::sync::Arc;

use cstore_core::replication::{LeaderCommand, LeaderSession, SessionConfig};
use cstore_core::{ReplicaId, Term, TimestampMs};

use crate::record::{build_records, chunks, mode, session_seeds};
use crate::seeds;

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let messages: Vec<Vec<u8>> = if mode.sealed {
        build_records(rest, None)
    } else {
        chunks(rest).into_iter().map(<[u8]>::to_vec).collect()
    };
    let log = seeds::entries();
    let snapshot = Arc::new(
        seeds::snapshots()
            .pop()
            .expect("a snapshot of the whole log"),
    );
    let committed = log.last().expect("entries").position();
    // Small windows and chunks, so that a few acknowledgements walk through them.
    let config = SessionConfig {
        window_entries_max: 2,
        read_entries_max: 2,
        snapshot_chunk_bytes: 64,
        ..SessionConfig::default()
    };
    let mut now = TimestampMs(1_000);
    let mut session = LeaderSession::new(config, ReplicaId(1), Term(2), committed, now);
    for message in &messages {
        now = TimestampMs(now.0 + 10);
        let mut commands = session.handle_bytes(now, message);
        let mut rounds = 0;
        while !commands.is_empty() && rounds < 16 {
            rounds += 1;
            let mut next = Vec::new();
            for command in commands {
                match command {
                    LeaderCommand::ReadEntries { from, to } => {
                        let (from, to) = (from.0 as usize, to.0 as usize);
                        if from >= 1 && from < to && to <= log.len() + 1 {
                            next.extend(session.on_entries(now, log[from - 1..to - 1].to_vec()));
                        } else {
                            next.extend(session.on_entries_missing(now));
                        }
                    }
                    LeaderCommand::ReadSnapshot { .. } => {
                        next.extend(session.on_snapshot(now, Arc::clone(&snapshot)));
                    }
                    LeaderCommand::Send(_)
                    | LeaderCommand::SendEntries(_)
                    | LeaderCommand::Close(_) => {}
                }
            }
            commands = next;
        }
        if session.is_closed() {
            return;
        }
    }
    let _ = session.on_tick(TimestampMs(now.0 + 60_000));
}

pub fn seeds() -> Vec<Vec<u8>> {
    session_seeds(seeds::replica_sides())
}
