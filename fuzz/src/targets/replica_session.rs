//! A leader's side of a replication session, as the replica sees it: a sequence of frames
//! (each one WebSocket message) fed to core's `Replica`, whose commands the harness carries
//! out the way a driver does (entries persisted, a snapshot's state decoded and installed).

use cstore_core::replication::{Replica, ReplicaCommand, ReplicaConfig};
use cstore_core::state::State;
use cstore_core::{LogPosition, ReplicaId, Term, TimestampMs};

use crate::record::{build_records, chunks, mode, session_seeds};
use crate::seeds;

/// A replica with a small snapshot bound, so that a claimed size above it is refused early.
fn replica() -> Replica {
    let mut config = ReplicaConfig::new(ReplicaId(7));
    config.snapshot_bytes_max = 1 << 20;
    Replica::new(config, LogPosition::START, Term(1))
}

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let messages: Vec<Vec<u8>> = if mode.sealed {
        build_records(rest, None)
    } else {
        chunks(rest).into_iter().map(<[u8]>::to_vec).collect()
    };
    let mut replica = replica();
    let mut now = TimestampMs(1_000);
    let _ = replica.hello(now);
    for message in &messages {
        now = TimestampMs(now.0 + 10);
        let mut commands = replica.handle_bytes(now, message);
        // Carry out the commands as a driver would, including those they lead to.
        let mut rounds = 0;
        while !commands.is_empty() && rounds < 8 {
            rounds += 1;
            let mut next = Vec::new();
            for command in commands {
                match command {
                    ReplicaCommand::Persist { entries } => {
                        if let Some(last) = entries.last() {
                            next.extend(replica.on_persisted(now, last.lsn));
                        }
                    }
                    ReplicaCommand::InstallSnapshot(snapshot) => {
                        match State::from_snapshot(&snapshot) {
                            Ok(_) => {
                                next.extend(replica.on_snapshot_installed(now, snapshot.position))
                            }
                            Err(e) => next.extend(
                                replica.on_apply_failed(snapshot.position.lsn, &e.to_string()),
                            ),
                        }
                    }
                    ReplicaCommand::Close(_) => {
                        replica.on_disconnected();
                        let _ = replica.hello(now);
                    }
                    ReplicaCommand::Send(_) | ReplicaCommand::SaveTerm(_) => {}
                }
            }
            commands = next;
        }
    }
    let _ = replica.on_tick(TimestampMs(now.0 + 60_000));
}

pub fn seeds() -> Vec<Vec<u8>> {
    session_seeds(seeds::sessions())
}
