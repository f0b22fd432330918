//! The leader's side of one replication connection, as a sans-IO state machine.
//!
//! The leader's driver makes one [`LeaderSession`] per connected replica and feeds it what
//! happens: frames from the replica, commits, ticks of its clock, and the results of reads it
//! was asked to make. Each call returns the [`LeaderCommand`]s to carry out, in order.
//!
//! ```text
//!            Hello{last, durable}
//! AwaitHello ───────────────────► last == committed or START ─────────────► Streaming
//!                 │                otherwise ReadEntries{last..last+1}        ▲   │
//!                 ▼                                                          │   │ Entries within
//!             Locating ── hash matches ──────────────────────────────────────┘   │ the window,
//!                 │ hash differs / entry compacted / still ahead after a wait    │ ReadEntries,
//!                 ▼                                                              │ Heartbeat
//!            AwaitSnapshot ──ReadSnapshot{min_lsn}──► Begin, Chunk…, End ───────►│
//!                 ▲                                                              │
//!                 └──────────── ReadEntries answered "missing" (compacted) ──────┘
//! ```
//!
//! A replica ahead of this source's committed position (in a cluster it followed another
//! member, and this one just restarted or lags) is first waited for (`AwaitCommitted`, at most
//! `ahead_wait_ms`): once this source commits that far it is located like any other, so
//! moving between members never costs a snapshot. Only a replica still ahead after the wait is
//! taken for diverged.
//!
//! Memory stays bounded whatever the replica does: at most one read batch is held, the window
//! caps entries and bytes sent but not acknowledged, and the snapshot is shared (`Arc`) with
//! the driver. A replica that stops answering, stops acknowledging, or lags too long is closed
//! rather than waited for, so it can never stall the leader.
//!
//! Only acknowledgements on a chain the leader verified count: `durable_lsn` is zero until the
//! replica's position was found in the leader's log (or it installed the leader's snapshot), so
//! a diverged replica never counts towards `replicas:N`.

mod window;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::doc::validate_collection_name;
use crate::error::ErrorCode;
use crate::log::LogEntry;
use crate::replication::config::SessionConfig;
use crate::replication::entries_frame::EntriesFrame;
use crate::replication::error::ReplicationError;
use crate::replication::frame::{
    ACKS_ON_REQUEST_SINCE, Frame, Hello, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
    SUBSCRIPTION_COLLECTIONS_MAX,
};
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::types::{Hash, LogPosition, Lsn, ReplicaId, Term, TimestampMs};

/// What the leader's driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderCommand {
    /// Send this frame to the replica.
    Send(Frame),
    /// Send these entries to the replica: a [`Frame::Entries`] whose entries are shared with
    /// what the driver read, never copied ([`EntriesFrame::encode`] gives the frame's bytes).
    SendEntries(EntriesFrame),
    /// Read the committed entries `from <= lsn < to` and call [`LeaderSession::on_entries`],
    /// or [`LeaderSession::on_entries_missing`] if some are compacted away. At most
    /// `read_entries_max` entries; one read is outstanding at a time.
    ReadEntries { from: Lsn, to: Lsn },
    /// Fetch the latest snapshot and call [`LeaderSession::on_snapshot`]. Its LSN must be at
    /// least `min_lsn`: when the latest is older, take a fresh checkpoint. (A diverged replica
    /// must never be moved back behind entries it held, and may have acknowledged, on the
    /// leader's chain.) A leader that never compacted may answer with the empty state's
    /// snapshot at `LogPosition::START` when `min_lsn` is zero.
    ReadSnapshot { min_lsn: Lsn },
    /// Close the connection (after sending the frames before this command).
    Close(ReplicationError),
}

/// A snapshot being sent.
#[derive(Debug)]
struct Transfer {
    snapshot: Arc<Snapshot>,
    sent_bytes: u64,
    acked_bytes: u64,
}

#[derive(Debug)]
enum Phase {
    AwaitHello,
    /// Waiting for the entry at the replica's last LSN, to compare hashes.
    Locating,
    /// The replica is past the committed position: waiting until this source commits that far
    /// (or `ahead_wait_ms` passes since `since`).
    AwaitCommitted {
        since: TimestampMs,
    },
    /// Waiting for the driver's snapshot, at `min_lsn` or later.
    AwaitSnapshot {
        min_lsn: Lsn,
    },
    Snapshot(Transfer),
    Streaming,
    Closed,
}

/// The leader's state for one connected replica.
#[derive(Debug)]
pub struct LeaderSession {
    config: SessionConfig,
    leader_id: ReplicaId,
    term: Term,
    phase: Phase,
    hello: Option<Hello>,
    /// The collections the replica follows, from its hello; `None`: all.
    subscription: Option<BTreeSet<String>>,
    /// The collections the replica's credentials allow it to follow; `None`: all. Its hello
    /// must subscribe within them.
    allowed: Option<BTreeSet<String>>,
    welcomed: bool,
    /// The leader's last committed entry: the end of what may be sent.
    committed: LogPosition,
    /// The last entry sent (or the start the replica continues from).
    sent: LogPosition,
    /// Durable on the replica, on a chain the leader verified.
    acked: Lsn,
    /// Entries sent on this connection and not yet acknowledged, with their sizes.
    in_flight: VecDeque<(Lsn, u64)>,
    in_flight_bytes: u64,
    /// Entries read and not yet sent (at most one read batch), shared with the driver's log.
    pending: VecDeque<Arc<LogEntry>>,
    /// The outstanding read, if any.
    reading: Option<(Lsn, Lsn)>,
    opened_at: TimestampMs,
    last_heard: TimestampMs,
    last_sent: TimestampMs,
    /// When acknowledgements last progressed (or sending into an empty window began).
    progress_at: TimestampMs,
    /// The replica acknowledges entries only when asked (protocol version 3): see
    /// [`Frame::Heartbeat`].
    acks_on_request: bool,
    /// `sent` when an acknowledgement was last asked for (by any heartbeat), and when.
    ack_asked: Lsn,
    ack_asked_at: TimestampMs,
    /// Some write waits for replicas to acknowledge it ([`Self::set_acks_awaited`]).
    acks_awaited: bool,
    lagging_since: Option<TimestampMs>,
}

impl LeaderSession {
    /// A session for a connection that just opened, on a leader of `term` whose last committed
    /// entry is `committed`. A session serves one term: when the leader's term changes, the
    /// driver closes every session, and the replicas reconnect and learn the new term.
    pub fn new(
        config: SessionConfig,
        leader_id: ReplicaId,
        term: Term,
        committed: LogPosition,
        now: TimestampMs,
    ) -> LeaderSession {
        assert!(config.window_entries_max > 0 && config.read_entries_max > 0);
        assert!(config.window_bytes_max > 0 && config.snapshot_chunk_bytes > 0);
        LeaderSession {
            config,
            leader_id,
            term,
            phase: Phase::AwaitHello,
            hello: None,
            subscription: None,
            allowed: None,
            welcomed: false,
            committed,
            sent: LogPosition::START,
            acked: Lsn::ZERO,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            pending: VecDeque::new(),
            reading: None,
            opened_at: now,
            last_heard: now,
            last_sent: now,
            progress_at: now,
            acks_on_request: false,
            ack_asked: Lsn::ZERO,
            ack_asked_at: now,
            acks_awaited: false,
            lagging_since: None,
        }
    }

    /// The replica's identity, once it said hello.
    pub fn replica_id(&self) -> Option<ReplicaId> {
        self.hello.as_ref().map(|h| h.replica_id)
    }

    /// The protocol version the replica's hello spoke, once it said hello.
    pub fn protocol_version(&self) -> Option<u16> {
        self.hello.as_ref().map(|h| h.protocol_version)
    }

    /// The replica's durable LSN on the leader's chain, for watermarks.
    pub fn durable_lsn(&self) -> Lsn {
        self.acked
    }

    /// How many committed entries the replica does not yet hold durably.
    pub fn lag(&self) -> u64 {
        self.committed.lsn.0.saturating_sub(self.acked.0)
    }

    /// The last entry sent to the replica.
    pub fn sent(&self) -> LogPosition {
        self.sent
    }

    /// True once the session closed; the driver drops it.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// True while entries stream (as opposed to locating the start or sending a snapshot).
    pub fn is_streaming(&self) -> bool {
        matches!(self.phase, Phase::Streaming)
    }

    /// Decodes a frame from the wire and handles it; bad bytes close the session.
    pub fn handle_bytes(&mut self, now: TimestampMs, bytes: &[u8]) -> Vec<LeaderCommand> {
        match Frame::decode(bytes) {
            Ok(frame) => self.handle_frame(now, frame),
            Err(error) if !self.is_closed() => self.close(error.into()),
            Err(_) => Vec::new(),
        }
    }

    /// Handles a frame from the replica.
    pub fn handle_frame(&mut self, now: TimestampMs, frame: Frame) -> Vec<LeaderCommand> {
        if self.is_closed() {
            return Vec::new();
        }
        self.last_heard = now;
        match frame {
            Frame::Hello(hello) => self.handle_hello(now, hello),
            Frame::Ack { durable } => self.handle_ack(now, durable),
            Frame::SnapshotAck {
                position,
                received_bytes,
            } => self.handle_snapshot_ack(now, position, received_bytes),
            Frame::Error { code, message } => {
                self.phase = Phase::Closed;
                vec![LeaderCommand::Close(ReplicationError::Remote {
                    code,
                    message,
                })]
            }
            other => self.violation(format!("a replica sent {}", other.kind_name())),
        }
    }

    /// Limits the replica to `collections` (its token's): a hello that subscribes to every
    /// collection or to another one closes the session with `collection_forbidden`. The
    /// driver calls it before the hello arrives.
    pub fn limit_collections(&mut self, collections: impl IntoIterator<Item = String>) {
        assert!(self.hello.is_none(), "limits are set before the hello");
        self.allowed = Some(collections.into_iter().collect());
    }

    /// Handles the replica's hello: decides where its log continues.
    pub fn handle_hello(&mut self, now: TimestampMs, hello: Hello) -> Vec<LeaderCommand> {
        if self.is_closed() {
            return Vec::new();
        }
        self.last_heard = now;
        if let Some(first) = &self.hello {
            // A duplicated hello changes nothing; a different one is a confused peer.
            if *first == hello {
                return Vec::new();
            }
            return self.violation("a second, different Hello".into());
        }
        let max = self
            .config
            .protocol_version_max
            .clamp(PROTOCOL_VERSION_MIN, PROTOCOL_VERSION);
        if !(PROTOCOL_VERSION_MIN..=max).contains(&hello.protocol_version) {
            return self.close(ReplicationError::UnsupportedProtocol {
                got: hello.protocol_version,
                min: PROTOCOL_VERSION_MIN,
                max,
            });
        }
        if hello.term > self.term {
            return self.close(ReplicationError::StaleTerm {
                leader: self.term,
                seen: hello.term,
            });
        }
        if let Some(collections) = &hello.collections {
            let valid = collections.len() <= SUBSCRIPTION_COLLECTIONS_MAX
                && collections
                    .iter()
                    .all(|name| validate_collection_name(name).is_ok());
            if !valid {
                return self.close(ReplicationError::InvalidSubscription(format!(
                    "name at most {SUBSCRIPTION_COLLECTIONS_MAX} valid collections"
                )));
            }
            self.subscription = Some(collections.iter().cloned().collect());
        }
        // An empty log has no hash: a hello at LSN 0 with one would be streamed from a position
        // no entry follows (found by the `leader_session` fuzz target).
        if hello.last.lsn == Lsn::ZERO && hello.last.hash != Hash::ZERO {
            return self.violation("a Hello at lsn 0 with a hash".into());
        }
        if let Some(allowed) = &self.allowed {
            let outside = match &self.subscription {
                None => Some("every collection".to_string()),
                Some(wanted) => wanted
                    .iter()
                    .find(|c| !allowed.contains(*c))
                    .map(|c| format!("collection {c:?}")),
            };
            if let Some(outside) = outside {
                return self.close(ReplicationError::SubscriptionForbidden(format!(
                    "the token allows only {allowed:?}; the hello asks for {outside}"
                )));
            }
        }
        let last = hello.last;
        self.acks_on_request = hello.protocol_version >= ACKS_ON_REQUEST_SINCE;
        // The periodic ask (a heartbeat interval after the last) is spread over the interval
        // by replica: replicas that connected together would otherwise all be asked, and
        // answer, in the same few milliseconds of every interval. (Reasoned, not measured:
        // docs/bench/fanout-profile.md.)
        let phase = hello.replica_id.0 % self.config.heartbeat_interval_ms.max(1);
        self.ack_asked_at = TimestampMs(now.0.saturating_sub(phase));
        self.hello = Some(hello);
        let mut out = Vec::new();
        if last == self.committed || last.lsn == Lsn::ZERO {
            self.begin_streaming(now, last, &mut out);
        } else if last.lsn > self.committed.lsn {
            // Ahead of what this source committed: wait for it to get there (see the module
            // docs); `on_tick` gives up after `ahead_wait_ms`.
            self.phase = Phase::AwaitCommitted { since: now };
        } else {
            self.locate(last, &mut out);
        }
        out
    }

    /// Looks for the replica's last entry in this source's log.
    fn locate(&mut self, last: LogPosition, out: &mut Vec<LeaderCommand>) {
        self.phase = Phase::Locating;
        self.read(last.lsn, last.lsn.next(), out);
    }

    /// The leader committed through `position`.
    pub fn on_committed(&mut self, now: TimestampMs, position: LogPosition) -> Vec<LeaderCommand> {
        assert!(
            position.lsn >= self.committed.lsn,
            "committed position went back from {} to {position}",
            self.committed
        );
        self.committed = position;
        let mut out = Vec::new();
        if let Phase::AwaitCommitted { .. } = self.phase {
            let last = self.hello.as_ref().expect("awaiting after hello").last;
            if last == position {
                self.begin_streaming(now, last, &mut out);
            } else if last.lsn <= position.lsn {
                self.locate(last, &mut out);
            }
            return out;
        }
        self.pump(now, &mut out);
        out
    }

    /// The entries of the outstanding `ReadEntries`, all of them, in order: owned, or shared
    /// (`Arc`) with the driver's log so that many sessions stream them without copies.
    pub fn on_entries<E: Into<Arc<LogEntry>>>(
        &mut self,
        now: TimestampMs,
        entries: Vec<E>,
    ) -> Vec<LeaderCommand> {
        if self.is_closed() {
            return Vec::new();
        }
        let (from, to) = self.reading.take().expect("entries arrived without a read");
        let entries: Vec<Arc<LogEntry>> = entries.into_iter().map(Into::into).collect();
        assert!(
            entries.len() as u64 == to.0 - from.0 && entries.first().map(|e| e.lsn) == Some(from),
            "read of {from}..{to} answered with {} entries",
            entries.len()
        );
        let mut out = Vec::new();
        match self.phase {
            Phase::Locating => {
                let hello = self.hello.as_ref().expect("locating after hello");
                let last = hello.last;
                if entries[0].position() == last {
                    self.begin_streaming(now, last, &mut out);
                } else {
                    // Diverged somewhere at or before `last`: where exactly is unknown, so the
                    // snapshot must cover all of it.
                    self.request_snapshot(last.lsn, &mut out);
                }
            }
            Phase::Streaming => {
                assert!(
                    entries[0].follows(self.sent),
                    "read entry {} does not follow sent {}",
                    from,
                    self.sent
                );
                match &self.subscription {
                    None => self.pending.extend(entries),
                    Some(keep) => self.pending.extend(entries.into_iter().map(|entry| {
                        match entry.filtered(|c| keep.contains(c)) {
                            Some(filtered) => Arc::new(filtered),
                            None => entry,
                        }
                    })),
                }
                self.pump(now, &mut out);
            }
            _ => unreachable!("reads are only made while locating or streaming"),
        }
        out
    }

    /// The outstanding `ReadEntries` could not be served: entries from `from` on were
    /// compacted away. The replica gets the snapshot instead.
    pub fn on_entries_missing(&mut self, _now: TimestampMs) -> Vec<LeaderCommand> {
        if self.is_closed() {
            return Vec::new();
        }
        let (from, _) = self.reading.take().expect("missing entries without a read");
        let mut out = Vec::new();
        self.pending.clear();
        // Compacted through `from` at least: any snapshot since covers it.
        self.request_snapshot(from, &mut out);
        out
    }

    /// The snapshot asked for by `ReadSnapshot`.
    pub fn on_snapshot(&mut self, now: TimestampMs, snapshot: Arc<Snapshot>) -> Vec<LeaderCommand> {
        if self.is_closed() {
            return Vec::new();
        }
        let Phase::AwaitSnapshot { min_lsn } = self.phase else {
            panic!("snapshot arrived without a request");
        };
        let position = snapshot.position;
        assert!(
            position.lsn >= min_lsn,
            "snapshot at {position} is older than the {min_lsn} asked for"
        );
        let snapshot = match &self.subscription {
            None => snapshot,
            Some(keep) => match State::filter_snapshot(&snapshot, |c| keep.contains(c)) {
                Ok(filtered) => Arc::new(filtered),
                Err(error) => {
                    return self.close(ReplicationError::LeaderSnapshot(format!(
                        "at {position}: {error}"
                    )));
                }
            },
        };
        let mut out = Vec::new();
        let hello = self.hello.as_ref().expect("snapshot after hello");
        // A transfer an earlier connection began continues where the replica stopped.
        let offset = match hello.resume {
            Some(resume)
                if resume.position == position
                    && resume.state_hash == snapshot.state_hash
                    && resume.offset <= snapshot.data.len() as u64 =>
            {
                resume.offset
            }
            _ => 0,
        };
        if self.welcomed {
            // Mid-stream: the entries after `sent` were compacted, so the snapshot is past it.
            assert!(
                position.lsn > self.sent.lsn,
                "snapshot at {position} does not cover the compacted entries after {}",
                self.sent
            );
        } else {
            if hello.last == position {
                // The replica holds exactly this snapshot (it bootstrapped from it).
                self.begin_streaming(now, position, &mut out);
                return out;
            }
            self.welcome(now, position, &mut out);
        }
        self.send(
            now,
            Frame::SnapshotBegin {
                position,
                state_hash: snapshot.state_hash,
                total_bytes: snapshot.data.len() as u64,
            },
            &mut out,
        );
        self.progress_at = now;
        self.phase = Phase::Snapshot(Transfer {
            snapshot,
            sent_bytes: offset,
            acked_bytes: offset,
        });
        self.pump(now, &mut out);
        out
    }

    /// When [`on_tick`](Self::on_tick) next has something to do: a timeout to enforce, a
    /// heartbeat to send, a lag to start or stop timing. `None` once closed; a time at or
    /// before the present means at once.
    ///
    /// Until then a tick is a no-op, so a driver need not tick on a fixed period (ten
    /// thousand sessions ticking every 250 ms cost a leader 40,000 wake-ups a second): it
    /// sleeps until this time, and after each event looks again and sleeps less if the time
    /// moved earlier. Waking early is harmless; it only looks again.
    pub fn tick_due(&self) -> Option<TimestampMs> {
        let c = &self.config;
        let after = |t: TimestampMs, ms: u64| TimestampMs(t.0.saturating_add(ms));
        let mut due = after(self.last_heard, c.replica_timeout_ms);
        match &self.phase {
            Phase::Closed => return None,
            Phase::AwaitHello => due = due.min(after(self.opened_at, c.hello_timeout_ms)),
            Phase::AwaitCommitted { since } => due = due.min(after(*since, c.ahead_wait_ms)),
            _ => {}
        }
        if self.has_in_flight() {
            due = due.min(after(self.progress_at, c.ack_timeout_ms));
        }
        let lagging = self.is_streaming() && self.lag() > c.lag_entries_max;
        match (lagging, self.lagging_since) {
            (true, Some(since)) => due = due.min(after(since, c.lag_timeout_ms)),
            // The lag began or ended since the last tick, which starts or stops its clock.
            (true, None) | (false, Some(_)) => due = TimestampMs(0),
            (false, None) => {}
        }
        if self.welcomed {
            due = due.min(after(self.last_sent, c.heartbeat_interval_ms));
        }
        Some(due)
    }

    /// Time passed: heartbeats and timeouts.
    pub fn on_tick(&mut self, now: TimestampMs) -> Vec<LeaderCommand> {
        let c = &self.config;
        let since = |t: TimestampMs| now.0.saturating_sub(t.0);
        match &self.phase {
            Phase::Closed => return Vec::new(),
            Phase::AwaitHello if since(self.opened_at) >= c.hello_timeout_ms => {
                let waited_ms = since(self.opened_at);
                return self.close(ReplicationError::HelloTimeout { waited_ms });
            }
            Phase::AwaitCommitted { since: from } if since(*from) >= c.ahead_wait_ms => {
                // Still ahead: it holds entries this source never committed, so it diverged.
                let mut out = Vec::new();
                let min_lsn = self.committed.lsn;
                self.request_snapshot(min_lsn, &mut out);
                return out;
            }
            _ => {}
        }
        if since(self.last_heard) >= c.replica_timeout_ms {
            let silent_ms = since(self.last_heard);
            return self.close(ReplicationError::ReplicaTimeout { silent_ms });
        }
        if self.has_in_flight() && since(self.progress_at) >= c.ack_timeout_ms {
            let stalled_ms = since(self.progress_at);
            return self.close(ReplicationError::AckTimeout { stalled_ms });
        }
        if self.is_streaming() && self.lag() > c.lag_entries_max {
            let since_lagging = since(*self.lagging_since.get_or_insert(now));
            if since_lagging >= c.lag_timeout_ms {
                let lag = self.lag();
                return self.close(ReplicationError::ReplicaLagging {
                    lag,
                    lagging_ms: since_lagging,
                });
            }
        } else {
            self.lagging_since = None;
        }
        let mut out = Vec::new();
        if self.welcomed && since(self.last_sent) >= c.heartbeat_interval_ms {
            self.send_heartbeat(now, &mut out);
        }
        out
    }

    /// Whether some write waits for replicas to acknowledge it (`ack=replicas:N` or `all`).
    /// While one does, a replica that acknowledges only when asked is asked with every batch of
    /// entries sent. The driver sets this before it hands the session anything that may send
    /// entries, from a flag raised before such a write commits: the entries of a waiting write
    /// are then always sent with an ask, and no session needs waking when a write starts to
    /// wait.
    pub fn set_acks_awaited(&mut self, awaited: bool) {
        self.acks_awaited = awaited;
    }

    fn handle_ack(&mut self, now: TimestampMs, durable: Lsn) -> Vec<LeaderCommand> {
        match self.phase {
            Phase::AwaitHello => self.violation("Ack before Hello".into()),
            Phase::Streaming => {
                if durable > self.sent.lsn {
                    let sent = self.sent.lsn;
                    return self.close(ReplicationError::AckBeyondSent { durable, sent });
                }
                let mut out = Vec::new();
                if durable > self.acked {
                    self.acked = durable;
                    self.progress_at = now;
                    while let Some(&(lsn, bytes)) = self.in_flight.front()
                        && lsn <= durable
                    {
                        self.in_flight.pop_front();
                        self.in_flight_bytes -= bytes;
                    }
                    self.pump(now, &mut out);
                }
                out
            }
            // While the start is located or a snapshot replaces the replica's log, its acks
            // may concern a chain the leader has not verified: they do not count.
            _ => Vec::new(),
        }
    }

    fn handle_snapshot_ack(
        &mut self,
        now: TimestampMs,
        position: LogPosition,
        received: u64,
    ) -> Vec<LeaderCommand> {
        let Phase::Snapshot(transfer) = &mut self.phase else {
            // Late acks of a transfer that already ended are harmless.
            return Vec::new();
        };
        if transfer.snapshot.position != position {
            // A late ack of an earlier transfer (the leader compacted again since).
            return Vec::new();
        }
        if received > transfer.sent_bytes {
            let what = format!(
                "SnapshotAck for {received} bytes, {} sent",
                transfer.sent_bytes
            );
            return self.violation(what);
        }
        let mut out = Vec::new();
        if received > transfer.acked_bytes {
            transfer.acked_bytes = received;
            self.progress_at = now;
            self.pump(now, &mut out);
        }
        out
    }

    fn welcome(&mut self, now: TimestampMs, start: LogPosition, out: &mut Vec<LeaderCommand>) {
        self.welcomed = true;
        let frame = Frame::Welcome {
            leader_id: self.leader_id,
            term: self.term,
            start,
        };
        self.send(now, frame, out);
    }

    /// The replica's log continues after `start`, which is on the leader's chain.
    fn begin_streaming(
        &mut self,
        now: TimestampMs,
        start: LogPosition,
        out: &mut Vec<LeaderCommand>,
    ) {
        let durable = self.hello.as_ref().expect("streaming after hello").durable;
        self.welcome(now, start, out);
        self.sent = start;
        self.acked = durable.min(start.lsn);
        self.progress_at = now;
        self.phase = Phase::Streaming;
        self.pump(now, out);
    }

    fn request_snapshot(&mut self, min_lsn: Lsn, out: &mut Vec<LeaderCommand>) {
        self.phase = Phase::AwaitSnapshot { min_lsn };
        out.push(LeaderCommand::ReadSnapshot { min_lsn });
    }

    pub(super) fn read(&mut self, from: Lsn, to: Lsn, out: &mut Vec<LeaderCommand>) {
        assert!(self.reading.is_none() && from < to);
        self.reading = Some((from, to));
        out.push(LeaderCommand::ReadEntries { from, to });
    }

    /// A heartbeat, which also asks the replica to acknowledge what it was sent.
    pub(super) fn send_heartbeat(&mut self, now: TimestampMs, out: &mut Vec<LeaderCommand>) {
        self.ack_asked = self.sent.lsn;
        self.ack_asked_at = now;
        let committed = self.committed;
        self.send(now, Frame::Heartbeat { committed }, out);
    }

    pub(super) fn send(&mut self, now: TimestampMs, frame: Frame, out: &mut Vec<LeaderCommand>) {
        self.last_sent = now;
        out.push(LeaderCommand::Send(frame));
    }

    fn violation(&mut self, what: String) -> Vec<LeaderCommand> {
        self.close(ReplicationError::ProtocolViolation(what))
    }

    fn close(&mut self, error: ReplicationError) -> Vec<LeaderCommand> {
        self.phase = Phase::Closed;
        self.pending.clear();
        vec![
            LeaderCommand::Send(Frame::error(error.code(), &error.to_string())),
            LeaderCommand::Close(error),
        ]
    }
}
