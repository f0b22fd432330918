//! Carrying out the state machines' commands: the simulated drivers of the leader and the
//! replicas, and the network and IO between them.
//!
//! ```text
//! packets due ──► session.handle_bytes / machine.handle_bytes ──► commands
//! LeaderCommand:  Send ─► network   ReadEntries/ReadSnapshot ─► delayed leader IO ─► on_entries…
//! ReplicaCommand: Send ─► network   Persist/InstallSnapshot ─► replica node (apply now, write later)
//!                 Close ─► both ends disconnect; the replica reconnects after a backoff
//! ```

use cstore_core::replication::{
    Frame, LeaderCommand, LeaderSession, Remedy, ReplicaCommand, WaitOutcome,
};
use cstore_core::storage::StorageError;
use cstore_core::{ErrorCode, TimestampMs};

use super::leader::{LEADER_ID, LeaderIo, LiveSession};
use super::network::{ConnId, Dir};
use super::replica::Completed;
use super::{AckedWrite, World};

impl World {
    pub(super) fn ts(&self) -> TimestampMs {
        TimestampMs(self.now)
    }

    pub(super) fn session(&mut self, conn: ConnId) -> &mut LeaderSession {
        &mut self
            .leader
            .sessions
            .get_mut(&conn)
            .expect("live session")
            .session
    }

    /// Both ends learn that the connection closed.
    pub(super) fn disconnect(&mut self, r: usize) {
        if let Some(conn) = self.replicas[r].conn.take() {
            self.leader.sessions.remove(&conn);
            self.net.cut(&mut self.rng, conn);
            self.replicas[r].machine.on_disconnected();
            self.replicas[r].reconnect_at = self.now + self.rng.range(5, 50);
        }
        self.replicas[r].closing = false;
    }

    /// Replicas whose leader closed learn of it once the frames sent before the close arrived.
    pub(super) fn closings(&mut self) {
        for r in 0..self.replicas.len() {
            let node = &self.replicas[r];
            if node.closing
                && let Some(conn) = node.conn
                && !self.net.in_flight(conn, Dir::ToReplica)
            {
                self.disconnect(r);
            }
        }
    }

    pub(super) fn leader_commands(&mut self, conn: ConnId, commands: Vec<LeaderCommand>) {
        let Some(r) = self.leader.sessions.get(&conn).map(|s| s.replica) else {
            return;
        };
        for command in commands {
            match command {
                LeaderCommand::Send(frame) => {
                    let bytes = frame.encode();
                    self.net
                        .send(&mut self.rng, self.now, r, conn, Dir::ToReplica, bytes);
                }
                LeaderCommand::SendEntries(frame) => {
                    let bytes = frame.encode();
                    self.net
                        .send(&mut self.rng, self.now, r, conn, Dir::ToReplica, bytes);
                }
                LeaderCommand::ReadEntries { from, to } => {
                    let due = self.now + self.rng.range(0, self.knobs.io_delay_ms_max);
                    self.leader
                        .io
                        .push((due, conn, LeaderIo::Read { from, to }));
                }
                LeaderCommand::ReadSnapshot { min_lsn } => {
                    let due = self.now + self.rng.range(0, self.knobs.io_delay_ms_max);
                    self.leader
                        .io
                        .push((due, conn, LeaderIo::Snapshot { min_lsn }));
                }
                LeaderCommand::Close(error) => {
                    *self.report.closes.entry(error.code()).or_default() += 1;
                    if self.trace {
                        eprintln!("{} ms replica {r} closed: {error}", self.now);
                    }
                    // A leader's close is a WebSocket close: the frames it sent before (its
                    // `Error` frame among them) arrive first, unless the network loses them,
                    // and the replica learns of the close after them.
                    self.leader.sessions.remove(&conn);
                    self.replicas[r].closing = true;
                    return;
                }
            }
        }
    }

    pub(super) fn replica_commands(&mut self, r: usize, commands: Vec<ReplicaCommand>) {
        for command in commands {
            let delay = self.rng.range(0, self.knobs.persist_delay_ms_max);
            match command {
                ReplicaCommand::Send(frame) => {
                    if let Some(conn) = self.replicas[r].conn {
                        let bytes = frame.encode();
                        self.net
                            .send(&mut self.rng, self.now, r, conn, Dir::ToLeader, bytes);
                    }
                }
                ReplicaCommand::Persist { entries } => {
                    self.replicas[r].persist(self.now, delay, entries);
                }
                ReplicaCommand::InstallSnapshot(snapshot) => {
                    // Writing a whole snapshot takes longer than appending a few entries.
                    self.replicas[r].install(self.now, delay * 4, snapshot);
                    self.report.snapshots_installed += 1;
                }
                ReplicaCommand::SaveTerm(term) => self.replicas[r].durable_term = term,
                ReplicaCommand::Close(error) => {
                    *self.report.closes.entry(error.code()).or_default() += 1;
                    if self.trace {
                        eprintln!("{} ms replica {r} closed: {error}", self.now);
                    }
                    if error.remedy() != Remedy::Reconnect {
                        self.failure.get_or_insert(format!(
                            "replica {r} closed with {error} ({:?}); the simulation never calls for it",
                            error.remedy()
                        ));
                    }
                    self.disconnect(r);
                    return;
                }
            }
        }
    }

    pub(super) fn deliver(&mut self) {
        for packet in self.net.due(self.now) {
            let r = packet.replica;
            let Some(conn) = self.replicas[r].conn else {
                continue;
            };
            if packet.conn != conn && !packet.leaked {
                continue;
            }
            if self.trace {
                let frame = Frame::decode(&packet.bytes);
                eprintln!(
                    "{} ms {:?} replica {r} {conn:?}: {frame:?}",
                    self.now, packet.dir
                );
            }
            match packet.dir {
                // The leader closed this connection; the replica has not noticed yet.
                Dir::ToLeader if !self.leader.sessions.contains_key(&conn) => {}
                Dir::ToLeader => {
                    let now = self.ts();
                    let commands = self.session(conn).handle_bytes(now, &packet.bytes);
                    self.leader_commands(conn, commands);
                }
                Dir::ToReplica => {
                    let now = self.ts();
                    let commands = self.replicas[r].machine.handle_bytes(now, &packet.bytes);
                    self.replica_commands(r, commands);
                }
            }
        }
    }

    pub(super) fn leader_io(&mut self) {
        let now = self.now;
        let mut due: Vec<(u64, ConnId, LeaderIo)> = Vec::new();
        let mut i = 0;
        while i < self.leader.io.len() {
            if self.leader.io[i].0 <= now {
                due.push(self.leader.io.remove(i));
            } else {
                i += 1;
            }
        }
        for (_, conn, io) in due {
            if !self.leader.sessions.contains_key(&conn) {
                continue; // the connection closed meanwhile
            }
            let ts = self.ts();
            let commands = match io {
                LeaderIo::Read { from, to } => match self.leader.read(from, to) {
                    Ok(entries) => self.session(conn).on_entries(ts, entries),
                    Err(StorageError::Missing(_)) => self.session(conn).on_entries_missing(ts),
                    Err(error) => panic!("leader read failed: {error}"),
                },
                LeaderIo::Snapshot { min_lsn } => {
                    let snapshot = self.leader.snapshot_at_least(min_lsn);
                    self.session(conn).on_snapshot(ts, snapshot)
                }
            };
            self.leader_commands(conn, commands);
        }
    }

    pub(super) fn replica_io(&mut self) {
        for r in 0..self.replicas.len() {
            while let Some(done) = self.replicas[r].complete_io(self.now) {
                let ts = self.ts();
                let machine = &mut self.replicas[r].machine;
                let commands = match done {
                    Ok(Completed::Persisted(lsn)) => machine.on_persisted(ts, lsn),
                    Ok(Completed::Installed(position)) => {
                        machine.on_snapshot_installed(ts, position)
                    }
                    Err(message) => {
                        self.failure
                            .get_or_insert(format!("replica {r}: {message}"));
                        Vec::new()
                    }
                };
                self.replica_commands(r, commands);
            }
        }
    }

    pub(super) fn ticks(&mut self) {
        let conns: Vec<ConnId> = self.leader.sessions.keys().copied().collect();
        for conn in conns {
            if self.leader.sessions.contains_key(&conn) {
                let now = self.ts();
                let commands = self.session(conn).on_tick(now);
                self.leader_commands(conn, commands);
            }
        }
        for r in 0..self.replicas.len() {
            let now = self.ts();
            let commands = self.replicas[r].machine.on_tick(now);
            self.replica_commands(r, commands);
        }
    }

    pub(super) fn reconnects(&mut self) {
        for r in 0..self.replicas.len() {
            let node = &self.replicas[r];
            if node.conn.is_some()
                || node.reconnect_at > self.now
                || self.net.is_isolated(r, self.now)
            {
                continue;
            }
            self.next_conn += 1;
            let conn = ConnId(self.next_conn);
            let session = LeaderSession::new(
                self.leader.config.clone(),
                LEADER_ID,
                self.leader.term,
                self.leader.committed(),
                self.ts(),
            );
            self.leader.sessions.insert(
                conn,
                LiveSession {
                    replica: r,
                    session,
                },
            );
            self.replicas[r].conn = Some(conn);
            let now = self.ts();
            let hello = self.replicas[r].machine.hello(now).encode();
            self.net
                .send(&mut self.rng, self.now, r, conn, Dir::ToLeader, hello);
        }
    }

    pub(super) fn resolve_waits(&mut self) {
        self.leader.sync_acks();
        for (id, outcome) in self.leader.acks.poll(self.ts()) {
            let waiting = self.leader.waits.remove(&id).expect("a registered wait");
            match outcome {
                WaitOutcome::Durable => {
                    self.report.acked_writes += 1;
                    self.acked.push(AckedWrite {
                        lsn: waiting.lsn,
                        replicas: waiting.replicas,
                    });
                }
                WaitOutcome::Unknown => self.report.unknown_writes += 1,
            }
        }
    }
}
