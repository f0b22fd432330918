//! The replica's side of replication, as a sans-IO state machine.
//!
//! The replica's driver (a native follower, or the browser) opens a connection, sends
//! [`Replica::hello`], and feeds every frame, every completed write and every tick into the
//! machine; each call returns the [`ReplicaCommand`]s to carry out, in order.
//!
//! ```text
//!  hello() ──► AwaitWelcome ──Welcome{start == last}──────────────────────► Streaming ◄─┐
//!                   │                                                      │  Entries: │
//!                   └──Welcome{start != last}──► AwaitSnapshot             │  verify,  │
//!                                                   │ SnapshotBegin        │  Persist  │
//!                                                   ▼                      │           │
//!                              Snapshot: chunks, SnapshotAck ◄─SnapshotBegin (compacted)│
//!                                                   │ SnapshotEnd: verify, InstallSnapshot
//!                                                   └──────────────────────────────────┘
//!   driver: Persist{entries} ── persisted ──► on_persisted(lsn) ──► Send(Ack{durable})
//!                                                                    when the leader asked
//! ```
//!
//! Every entry is checked before it is persisted: its hash, its link to the entry before
//! (`follows`), and its term (never older than the entry before, never newer than the
//! leader's). Entries already received are skipped, so duplicated or replayed frames never
//! apply an entry twice; an entry that does not follow closes the connection, and the next
//! hello resumes exactly after the last entry received. An acknowledgement is only sent after
//! the driver reports the write durable. Any violation closes with a specific code and a
//! [`Remedy`](crate::replication::Remedy).
//!
//! The replica speaks protocol version 3: it acknowledges persisted entries when the leader
//! asks, not after every write. Each [`Frame::Heartbeat`] asks: it is answered with the
//! durable LSN at once, or, when entries received by then are still being persisted, once
//! they are.
//! A leader sends one right behind entries whenever it needs their acknowledgement, so at ten
//! writes a second a replica sends about one ack a second instead of ten. A welcome that
//! confirms the local chain and an installed snapshot are always acknowledged (they open the
//! leader's window).
//!
//! A leader older than this replica refuses its hello with `unsupported_protocol`. The
//! replica then closes with [`ReplicationError::ProtocolFallback`] (remedy: reconnect) and its
//! next hello speaks the version before, down to [`PROTOCOL_VERSION_MIN`]; at version 2 it
//! acknowledges every persisted batch, as replicas of that version did. Once a connection at an
//! older version ends, the next hello tries the newest again (the leader may have been
//! upgraded meanwhile). So replicas can be upgraded before their servers: a browser that loads
//! a new module keeps syncing with a server that is not upgraded yet.
//!
//! The driver must carry out `Persist` and `InstallSnapshot` in the order given, and report
//! completions in that order.

use crate::error::ErrorCode;
use crate::log::LogEntry;
use crate::replication::config::ReplicaConfig;
use crate::replication::error::ReplicationError;
use crate::replication::frame::{
    ACKS_ON_REQUEST_SINCE, Frame, FrameError, Hello, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
};
use crate::replication::incoming::IncomingSnapshot;
use crate::snapshot::Snapshot;
use crate::types::{Hash, LogPosition, Lsn, ReplicaId, Term, TimestampMs};

/// What the replica's driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaCommand {
    /// Send this frame to the leader.
    Send(Frame),
    /// Append these verified entries durably and apply them to the state, then call
    /// [`Replica::on_persisted`] with the last one's LSN (or [`Replica::on_apply_failed`]).
    Persist { entries: Vec<LogEntry> },
    /// Replace the whole local copy (log, snapshot, state) with this verified snapshot, then
    /// call [`Replica::on_snapshot_installed`].
    InstallSnapshot(Snapshot),
    /// Save this term durably (metadata) before acting on later commands.
    SaveTerm(Term),
    /// Close the connection (after sending the frames before this command); act on
    /// [`ReplicationError::remedy`].
    Close(ReplicationError),
}

/// Faults the planted-bug tests switch on, to prove the simulator catches them.
#[cfg(feature = "testing")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// Acknowledge entries as durable when they arrive instead of when persisted.
    pub ack_before_persist: bool,
    /// Accept entries without recomputing their hash.
    pub skip_hash_check: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No connection, or it closed: waiting for `hello`.
    Disconnected,
    AwaitWelcome,
    /// Welcomed; a snapshot at `start` replaces the local log.
    AwaitSnapshot {
        start: LogPosition,
    },
    /// Receiving snapshot chunks into `incoming`.
    Snapshot,
    Streaming,
}

/// The follower state of one replica.
#[derive(Debug)]
pub struct Replica {
    config: ReplicaConfig,
    /// The highest term seen.
    term: Term,
    /// The leader and term of the current connection, once welcomed.
    leader: Option<(ReplicaId, Term)>,
    phase: Phase,
    /// The last entry accepted (persisting or persisted): the chain continues after it.
    received: LogPosition,
    /// The term of the entry at `received`; `Term(0)` when unknown (after a restart or a
    /// snapshot), which only loosens the floor of the term check.
    received_term: Term,
    /// The last LSN the driver reported durable (by `on_persisted` or an install).
    persisted: Lsn,
    /// The leader has not (yet) recognised the local chain: a snapshot will replace it, or
    /// one is being installed. Nothing durable counts until the chain is confirmed.
    unconfirmed: bool,
    /// The last snapshot handed to the driver and not yet reported installed.
    latest_install: Option<LogPosition>,
    /// A snapshot being received (kept across reconnects, to resume).
    incoming: Option<IncomingSnapshot>,
    leader_committed: LogPosition,
    last_heard: TimestampMs,
    /// The leader asked for an acknowledgement of the entries through this LSN (this
    /// connection).
    ack_asked: Lsn,
    /// The durable LSN of the last `Ack` sent on this connection.
    ack_sent: Lsn,
    /// The protocol version the next hello speaks: [`PROTOCOL_VERSION`], or an older one after
    /// a leader refused a newer.
    version: u16,
    /// Welcomed at a version older than [`PROTOCOL_VERSION`]: the next hello tries the newest
    /// again.
    retry_newest: bool,
    #[cfg(feature = "testing")]
    bugs: PlantedBugs,
}

impl Replica {
    /// A replica whose durable log ends at `last`, having seen `term`.
    pub fn new(config: ReplicaConfig, last: LogPosition, term: Term) -> Replica {
        Replica {
            config,
            term,
            leader: None,
            phase: Phase::Disconnected,
            received: last,
            received_term: Term(0),
            persisted: last.lsn,
            unconfirmed: false,
            latest_install: None,
            incoming: None,
            leader_committed: last,
            last_heard: TimestampMs(0),
            ack_asked: Lsn::ZERO,
            ack_sent: Lsn::ZERO,
            version: PROTOCOL_VERSION,
            retry_newest: false,
            #[cfg(feature = "testing")]
            bugs: PlantedBugs::default(),
        }
    }

    /// Switches planted bugs on (simulator tests only).
    #[cfg(feature = "testing")]
    pub fn plant_bugs(&mut self, bugs: PlantedBugs) {
        self.bugs = bugs;
    }

    /// The highest term seen.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The last entry accepted: where the next hello resumes.
    pub fn received(&self) -> LogPosition {
        self.received
    }

    /// The last LSN known durable on a chain the leader recognised (zero while unconfirmed).
    pub fn durable_lsn(&self) -> Lsn {
        if self.unconfirmed {
            Lsn::ZERO
        } else {
            self.persisted
        }
    }

    /// The leader's last committed position, as last heard.
    pub fn leader_committed(&self) -> LogPosition {
        self.leader_committed
    }

    /// How many committed entries the replica has not yet received.
    pub fn lag(&self) -> u64 {
        self.leader_committed
            .lsn
            .0
            .saturating_sub(self.received.lsn.0)
    }

    /// The leader of the current connection, once welcomed.
    pub fn leader(&self) -> Option<(ReplicaId, Term)> {
        self.leader
    }

    /// The protocol version the last hello spoke; after an older leader refused it, the one
    /// the next hello will speak.
    pub fn protocol_version(&self) -> u16 {
        self.version
    }

    /// True while entries stream from a leader.
    pub fn is_streaming(&self) -> bool {
        self.phase == Phase::Streaming
    }

    /// True between `hello` and a close or disconnect.
    pub fn is_connected(&self) -> bool {
        self.phase != Phase::Disconnected
    }

    /// Starts a connection: the frame to send first. Call on every (re)connect.
    pub fn hello(&mut self, now: TimestampMs) -> Frame {
        self.phase = Phase::AwaitWelcome;
        self.leader = None;
        self.last_heard = now;
        self.ack_asked = Lsn::ZERO;
        self.ack_sent = Lsn::ZERO;
        if self.retry_newest {
            self.retry_newest = false;
            self.version = PROTOCOL_VERSION;
        }
        Frame::Hello(Hello {
            protocol_version: self.version,
            replica_id: self.config.replica_id,
            term: self.term,
            last: self.received,
            durable: self.durable_lsn(),
            resume: self.incoming.as_ref().map(IncomingSnapshot::resume),
            collections: self.config.subscription.clone(),
        })
    }

    /// The connection is gone (closed by either side, or lost).
    pub fn on_disconnected(&mut self) {
        self.phase = Phase::Disconnected;
        self.leader = None;
    }

    /// Decodes a frame from the wire and handles it; bad bytes close the connection.
    pub fn handle_bytes(&mut self, now: TimestampMs, bytes: &[u8]) -> Vec<ReplicaCommand> {
        self.handle_decoded(now, Frame::decode(bytes))
    }

    /// Handles what [`Frame::decode`] made of a message from the leader, for a driver that
    /// decodes elsewhere (on another thread, while this one persists): exactly
    /// [`Self::handle_bytes`] of that message.
    pub fn handle_decoded(
        &mut self,
        now: TimestampMs,
        decoded: Result<Frame, FrameError>,
    ) -> Vec<ReplicaCommand> {
        match decoded {
            Ok(frame) => self.handle_frame(now, frame),
            Err(error) if self.is_connected() => self.close(error.into()),
            Err(_) => Vec::new(),
        }
    }

    /// Handles a frame from the leader.
    pub fn handle_frame(&mut self, now: TimestampMs, frame: Frame) -> Vec<ReplicaCommand> {
        if !self.is_connected() {
            return Vec::new();
        }
        self.last_heard = now;
        let phase = self.phase;
        match frame {
            Frame::Error { code, message } => {
                self.on_disconnected();
                // An older leader refused the hello: say it again in the version before.
                if phase == Phase::AwaitWelcome
                    && code == "unsupported_protocol"
                    && self.version > PROTOCOL_VERSION_MIN
                {
                    let refused = self.version;
                    self.version -= 1;
                    return vec![ReplicaCommand::Close(ReplicationError::ProtocolFallback {
                        refused,
                        next: self.version,
                        message,
                    })];
                }
                vec![ReplicaCommand::Close(ReplicationError::Remote {
                    code,
                    message,
                })]
            }
            Frame::Welcome {
                leader_id,
                term,
                start,
            } => {
                if phase == Phase::AwaitWelcome {
                    self.handle_welcome(leader_id, term, start)
                } else if self.leader == Some((leader_id, term)) {
                    Vec::new() // a duplicate
                } else {
                    self.violation("a second Welcome from another leader")
                }
            }
            Frame::Entries { entries } if phase == Phase::Streaming => self.handle_entries(entries),
            Frame::SnapshotBegin {
                position,
                state_hash,
                total_bytes,
            } => self.handle_snapshot_begin(position, state_hash, total_bytes),
            Frame::SnapshotChunk { offset, bytes } => match phase {
                Phase::Snapshot => self.handle_chunk(offset, &bytes),
                Phase::Streaming => Vec::new(), // a duplicate of a finished transfer
                _ => self.violation("SnapshotChunk outside a snapshot transfer"),
            },
            Frame::SnapshotEnd => match phase {
                Phase::Snapshot => self.handle_snapshot_end(),
                Phase::Streaming => Vec::new(), // a duplicate of a finished transfer
                _ => self.violation("SnapshotEnd outside a snapshot transfer"),
            },
            Frame::Heartbeat { committed } => {
                if committed.lsn > self.leader_committed.lsn {
                    self.leader_committed = committed;
                }
                // The answer doubles as the replica's keepalive. Entries still being persisted
                // are acknowledged once they are (`on_persisted`), and that ack is the answer:
                // one at once would only repeat an older durable LSN.
                match phase {
                    Phase::Streaming => {
                        self.ack_asked = self.ack_asked.max(self.received.lsn);
                        if self.received.lsn > self.persisted && !self.unconfirmed {
                            Vec::new()
                        } else {
                            vec![self.ack()]
                        }
                    }
                    Phase::Snapshot => vec![self.snapshot_ack()],
                    _ => Vec::new(),
                }
            }
            other => self.violation(&format!("{} while {:?}", other.kind_name(), phase)),
        }
    }

    /// The driver durably wrote (and applied) every entry through `lsn`.
    pub fn on_persisted(&mut self, _now: TimestampMs, lsn: Lsn) -> Vec<ReplicaCommand> {
        let before = self.durable_lsn();
        // Writes complete in order, so this is the tip of whatever chain the store holds.
        self.persisted = lsn;
        if self.unconfirmed {
            return Vec::new();
        }
        assert!(
            lsn <= self.received.lsn && lsn >= before,
            "persisted {lsn} outside [{before}, {}]",
            self.received
        );
        if self.ack_asked > self.ack_sent || self.version < ACKS_ON_REQUEST_SINCE {
            self.ack_if_advanced(before)
        } else {
            Vec::new()
        }
    }

    /// The driver replaced the local copy with the snapshot at `position`.
    pub fn on_snapshot_installed(
        &mut self,
        _now: TimestampMs,
        position: LogPosition,
    ) -> Vec<ReplicaCommand> {
        let before = self.durable_lsn();
        self.persisted = position.lsn;
        if self.latest_install == Some(position) {
            self.latest_install = None;
            self.unconfirmed = false;
        }
        self.ack_if_advanced(before)
    }

    /// The driver could not apply a verified entry: the local state is broken, and the remedy
    /// is a fresh bootstrap.
    pub fn on_apply_failed(&mut self, lsn: Lsn, reason: &str) -> Vec<ReplicaCommand> {
        let reason = reason.to_owned();
        self.close(ReplicationError::ApplyFailed { lsn, reason })
    }

    /// Time passed: closes a connection whose leader went silent.
    pub fn on_tick(&mut self, now: TimestampMs) -> Vec<ReplicaCommand> {
        let silent_ms = now.0.saturating_sub(self.last_heard.0);
        if self.is_connected() && silent_ms >= self.config.leader_timeout_ms {
            return self.close(ReplicationError::LeaderTimeout { silent_ms });
        }
        Vec::new()
    }

    fn handle_welcome(
        &mut self,
        leader_id: ReplicaId,
        term: Term,
        start: LogPosition,
    ) -> Vec<ReplicaCommand> {
        if term < self.term {
            let seen = self.term;
            return self.close(ReplicationError::StaleTerm { leader: term, seen });
        }
        let mut out = Vec::new();
        if term > self.term {
            self.term = term;
            out.push(ReplicaCommand::SaveTerm(term));
        }
        self.leader = Some((leader_id, term));
        self.retry_newest = self.version < PROTOCOL_VERSION;
        if start == self.received {
            self.phase = Phase::Streaming;
            // The leader found our position on its chain: what the store holds counts, unless
            // a snapshot handed to the driver is still replacing it.
            if self.unconfirmed && self.latest_install.is_none() {
                self.unconfirmed = false;
                out.extend(self.ack_if_advanced(Lsn::ZERO));
            }
        } else {
            // The leader did not find our position on its chain (or compacted past it): a
            // snapshot replaces the local log, and nothing on the old chain counts as durable.
            self.phase = Phase::AwaitSnapshot { start };
            self.unconfirmed = true;
        }
        out
    }

    fn handle_entries(&mut self, entries: Vec<LogEntry>) -> Vec<ReplicaCommand> {
        let ceiling = self.leader.expect("streaming after welcome").1;
        let mut prev = self.received;
        let mut prev_term = self.received_term;
        let mut fresh = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.lsn <= prev.lsn {
                // Already received: skip it, but a different entry at our last position
                // means the leader's chain and ours part ways.
                if entry.lsn == prev.lsn && entry.hash != prev.hash {
                    return self.close(ReplicationError::Diverged { lsn: entry.lsn });
                }
                continue;
            }
            if !self.skip_hash_check() && !entry.verify_hash() {
                return self.close(ReplicationError::EntryHashMismatch { lsn: entry.lsn });
            }
            if !entry.follows(prev) {
                let error = ReplicationError::LogGap {
                    expected_prev: prev,
                    got: entry.lsn,
                };
                return self.close(error);
            }
            if entry.term < prev_term || entry.term > ceiling {
                return self.close(ReplicationError::TermOutOfRange {
                    lsn: entry.lsn,
                    term: entry.term,
                    floor: prev_term,
                    ceiling,
                });
            }
            prev = entry.position();
            prev_term = entry.term;
            fresh.push(entry);
        }
        if fresh.is_empty() {
            return Vec::new();
        }
        self.received = prev;
        self.received_term = prev_term;
        if self.received.lsn > self.leader_committed.lsn {
            self.leader_committed = self.received;
        }
        let mut out = vec![ReplicaCommand::Persist { entries: fresh }];
        if self.ack_before_persist() {
            out.push(ReplicaCommand::Send(Frame::Ack {
                durable: self.received.lsn,
            }));
        }
        out
    }

    fn handle_snapshot_begin(
        &mut self,
        position: LogPosition,
        state_hash: Hash,
        total_bytes: u64,
    ) -> Vec<ReplicaCommand> {
        match self.phase {
            Phase::AwaitSnapshot { start } if start == position => {}
            Phase::AwaitSnapshot { start } => {
                let what = format!("snapshot at {position}, welcomed at {start}");
                return self.violation(&what);
            }
            // The leader compacted past what it sent: the snapshot must be ahead of us.
            Phase::Streaming if position.lsn > self.received.lsn => {}
            Phase::Streaming if position == self.received => return Vec::new(), // a duplicate
            Phase::Snapshot
                if self
                    .incoming
                    .as_ref()
                    .is_some_and(|s| s.is_same(position, state_hash, total_bytes)) =>
            {
                return Vec::new(); // a duplicate
            }
            _ => {
                let what = format!("SnapshotBegin at {position} while {:?}", self.phase);
                return self.violation(&what);
            }
        }
        let keep = self
            .incoming
            .as_ref()
            .is_some_and(|s| s.is_same(position, state_hash, total_bytes));
        if !keep {
            let max = self.config.snapshot_bytes_max;
            match IncomingSnapshot::begin(position, state_hash, total_bytes, max) {
                Ok(incoming) => self.incoming = Some(incoming),
                Err(error) => {
                    self.incoming = None;
                    return self.close(error);
                }
            }
        }
        self.phase = Phase::Snapshot;
        Vec::new()
    }

    fn handle_chunk(&mut self, offset: u64, bytes: &[u8]) -> Vec<ReplicaCommand> {
        let incoming = self.incoming.as_mut().expect("receiving a snapshot");
        if let Err(error) = incoming.accept(offset, bytes) {
            return self.close(error);
        }
        vec![self.snapshot_ack()]
    }

    fn handle_snapshot_end(&mut self) -> Vec<ReplicaCommand> {
        let incoming = self.incoming.take().expect("receiving a snapshot");
        let snapshot = match incoming.finish(true) {
            Ok(snapshot) => snapshot,
            Err(error) => return self.close(error),
        };
        self.received = snapshot.position;
        self.received_term = Term(0);
        self.latest_install = Some(snapshot.position);
        if snapshot.position.lsn > self.leader_committed.lsn {
            self.leader_committed = snapshot.position;
        }
        self.phase = Phase::Streaming;
        vec![ReplicaCommand::InstallSnapshot(snapshot)]
    }

    fn ack(&mut self) -> ReplicaCommand {
        let durable = self.durable_lsn();
        self.ack_sent = durable;
        ReplicaCommand::Send(Frame::Ack { durable })
    }

    /// An ack when the durable LSN moved past `before` and the leader is listening.
    fn ack_if_advanced(&mut self, before: Lsn) -> Vec<ReplicaCommand> {
        if self.durable_lsn() > before && self.phase == Phase::Streaming {
            vec![self.ack()]
        } else {
            Vec::new()
        }
    }

    fn snapshot_ack(&self) -> ReplicaCommand {
        let incoming = self
            .incoming
            .as_ref()
            .expect("acking a snapshot being received");
        let resume = incoming.resume();
        ReplicaCommand::Send(Frame::SnapshotAck {
            position: resume.position,
            received_bytes: resume.offset,
        })
    }

    fn violation(&mut self, what: &str) -> Vec<ReplicaCommand> {
        self.close(ReplicationError::ProtocolViolation(what.to_owned()))
    }

    fn close(&mut self, error: ReplicationError) -> Vec<ReplicaCommand> {
        self.on_disconnected();
        vec![
            ReplicaCommand::Send(Frame::error(error.code(), &error.to_string())),
            ReplicaCommand::Close(error),
        ]
    }

    #[cfg(feature = "testing")]
    fn ack_before_persist(&self) -> bool {
        self.bugs.ack_before_persist
    }

    #[cfg(not(feature = "testing"))]
    fn ack_before_persist(&self) -> bool {
        false
    }

    #[cfg(feature = "testing")]
    fn skip_hash_check(&self) -> bool {
        self.bugs.skip_hash_check
    }

    #[cfg(not(feature = "testing"))]
    fn skip_hash_check(&self) -> bool {
        false
    }
}
