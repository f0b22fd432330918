//! The sync loop: core's [`Replica`] driven over a [`Transport`] and a [`LogStore`].
//!
//! ```text
//!  open: store ─► snapshot + entries ─► confirmed State      (corrupt? wipe, count a rebootstrap)
//!  loop: connect ─► hello ─► frames ─► Replica ─► commands:
//!          Send             ─► connection
//!          Persist          ─► store.append, then State.apply, then on_persisted (ack)
//!                              (frames queued meanwhile are taken in the same step and
//!                              their Persists joined: one append, one apply)
//!          InstallSnapshot  ─► verify, store.install_snapshot, replace State, on_snapshot_installed
//!          SaveTerm         ─► store metadata
//!          Close(error)     ─► Reconnect: backoff │ Rebootstrap: wipe, fresh hello │ Stop
//! ```
//!
//! Persist-then-apply-then-ack is the order that keeps an acknowledged entry durable and a
//! visible one persisted. A reconnect says hello with the last entry held, so nothing is
//! downloaded twice. A hash failure, a diverged log or an entry the local state refuses
//! means the local copy (or the stream) cannot be trusted: the driver discards the local
//! copy, counts it in `status().rebootstraps`, and bootstraps from the leader again; wrong
//! data is never shown, because nothing unverified is applied.

use std::collections::VecDeque;
use std::pin::pin;

use cstore_core::replication::{
    Backoff, Remedy, Replica, ReplicaCommand, ReplicaConfig, ReplicationError,
};
use cstore_core::state::State;
use cstore_core::storage::{LogStore, Metadata, StorageError};
use cstore_core::{ErrorCode, LogPosition, Lsn, ReplicaId, Snapshot, Term};
use futures::FutureExt;
use futures::future::{Either, select};

use super::shared::{SharedRef, changed, unless_closed, update_status};
use super::{BACKOFF_CAP_MS, BACKOFF_START_MS};
use crate::time::{now, random_u64, sleep, sleep_or};
use crate::transport::{Connection, Incoming, Transport};

/// How often the driver ticks the replica (leader silence detection) while connected.
pub const TICK_MS: u64 = 1_000;
/// The local log is compacted behind a fresh snapshot once it holds this many entries past
/// the last one, or as many entries as there are documents if that is more (so the cost of
/// encoding snapshots stays proportional to the entries applied).
pub const COMPACT_ENTRIES_MIN: u64 = 4096;
/// Entries read from the store at a time when opening.
const OPEN_READ_BATCH: u64 = 4096;
/// Most frames handled in one step of the sync loop: frames that arrived while the last step
/// was persisting are taken together, up to this many.
pub const COALESCE_FRAMES_MAX: usize = 64;

/// Joins adjacent `Persist` commands into one. Each applied step re-applies every pending
/// local write on top of the confirmed state (the overlay's rebase), so a leader that commits
/// in many small batches (a drain over the write channel: a batch per arrival) would cost one
/// rebase of the whole queue per batch; joined, the entries that queued up meanwhile cost
/// one. The order of everything else is kept, and `on_persisted` takes the tip of what was
/// persisted, so one acknowledgement covers the joined entries.
fn merge_persists(commands: Vec<ReplicaCommand>) -> VecDeque<ReplicaCommand> {
    let mut merged: VecDeque<ReplicaCommand> = VecDeque::with_capacity(commands.len());
    for command in commands {
        match (merged.back_mut(), command) {
            (
                Some(ReplicaCommand::Persist { entries }),
                ReplicaCommand::Persist { entries: more },
            ) => {
                entries.extend(more);
            }
            (_, command) => merged.push_back(command),
        }
    }
    merged
}

/// What the local store held at open.
#[derive(Debug)]
pub struct Opened {
    /// The state rebuilt from the snapshot and entries.
    pub state: State,
    /// The last entry held.
    pub last: LogPosition,
    /// The last entry compacted away (the snapshot's), zero if none.
    pub compacted: Lsn,
    /// Term and identity.
    pub metadata: Metadata,
}

/// Why the store's contents could not be loaded (any of these: wipe and bootstrap again).
fn corrupt(message: String) -> StorageError {
    StorageError::Corrupt(message)
}

/// Loads the local copy: metadata (an identity is chosen on first open), the snapshot, the
/// entries after it, applied in order.
pub async fn load<S: LogStore>(store: &mut S) -> Result<Opened, StorageError> {
    let metadata = match store.load_metadata().await? {
        Some(metadata) => metadata,
        None => {
            let metadata = Metadata {
                term: Term(0),
                node_id: ReplicaId(random_u64() | 1),
            };
            store.save_metadata(&metadata).await?;
            metadata
        }
    };
    let log = store.state().await?;
    let mut state = match store.load_snapshot().await? {
        Some(snapshot) => {
            State::from_snapshot(&snapshot).map_err(|e| corrupt(format!("stored snapshot: {e}")))?
        }
        None => State::new(),
    };
    if state.applied().lsn.next() < log.first {
        return Err(corrupt(format!(
            "entries start at {} but the snapshot ends at {}",
            log.first,
            state.applied()
        )));
    }
    let mut from = state.applied().lsn.next();
    let end = log.last.lsn.next();
    while from < end {
        let to = Lsn((from.0 + OPEN_READ_BATCH).min(end.0));
        for entry in store.read_range(from, to).await? {
            if !entry.verify_hash() {
                return Err(corrupt(format!(
                    "stored entry {} fails its hash",
                    entry.lsn
                )));
            }
            state
                .apply(&entry)
                .map_err(|e| corrupt(format!("stored entry {}: {e}", entry.lsn)))?;
        }
        from = to;
    }
    if state.applied() != log.last {
        return Err(corrupt(format!(
            "the store ends at {} but its entries reach {}",
            log.last,
            state.applied()
        )));
    }
    Ok(Opened {
        state,
        last: log.last,
        compacted: log.first.prev(),
        metadata,
    })
}

/// Discards everything the store holds of the log (metadata stays).
pub async fn wipe<S: LogStore>(store: &mut S) -> Result<(), StorageError> {
    store
        .install_snapshot(&Snapshot::new(LogPosition::START, State::new().encode()))
        .await
}

/// How a connection ended.
enum SessionEnd {
    /// The app closed the replica.
    Closed,
    /// The connection dropped or could not send; reconnect.
    Lost { code: String, message: String },
    /// The protocol closed it with an error: act on its remedy.
    Error(ReplicationError),
}

/// The sync loop of one replica. Returns when the replica is closed (or must stop).
#[derive(Debug)]
pub struct SyncLoop<S, T> {
    shared: SharedRef,
    store: S,
    transport: T,
    replica: Replica,
    config: ReplicaConfig,
    metadata: Metadata,
    /// Where the store's log starts (behind its snapshot).
    compacted: Lsn,
}

impl<S: LogStore, T: Transport> SyncLoop<S, T> {
    /// A loop over a store already loaded (see [`load`]; its `state` is not used here).
    /// `subscription`: the collections to follow (`None`: all).
    pub fn new(
        shared: SharedRef,
        store: S,
        transport: T,
        opened: &Opened,
        subscription: Option<Vec<String>>,
    ) -> SyncLoop<S, T> {
        let mut config = ReplicaConfig::new(opened.metadata.node_id);
        config.leader_timeout_ms = 5 * TICK_MS;
        config.subscription = subscription;
        let replica = Replica::new(config.clone(), opened.last, opened.metadata.term);
        SyncLoop {
            shared,
            store,
            transport,
            replica,
            config,
            metadata: opened.metadata.clone(),
            compacted: opened.compacted,
        }
    }

    fn closed(&self) -> bool {
        self.shared.borrow().status.closed
    }

    /// Runs until the replica is closed.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(BACKOFF_START_MS, BACKOFF_CAP_MS);
        loop {
            if self.closed() {
                return;
            }
            if !self.shared.borrow().status.online {
                let wake = self.shared.borrow().sync_wake.clone();
                wake.wait().await;
                continue;
            }
            let wake = self.shared.borrow().sync_wake.clone();
            self.transport
                .resume_from(self.shared.borrow().local.applied().lsn.0);
            let Some(connected) =
                unless_closed(&self.shared, &wake, self.transport.connect()).await
            else {
                return;
            };
            self.report_members();
            let end = match connected {
                Ok(connection) => {
                    let end = self.session(&connection, &mut backoff).await;
                    self.replica.on_disconnected();
                    update_status(&self.shared, |s| s.connected = false);
                    end
                }
                Err(error) => SessionEnd::Lost {
                    code: error.code().into(),
                    message: error.to_string(),
                },
            };
            match end {
                SessionEnd::Closed => return,
                SessionEnd::Lost { code, message } => {
                    update_status(&self.shared, |s| s.set_error(&code, &message));
                }
                SessionEnd::Error(error) => {
                    update_status(&self.shared, |s| {
                        s.set_error(error.code(), &error.to_string())
                    });
                    match remedy(&error) {
                        Remedy::Reconnect => {}
                        Remedy::Rebootstrap => {
                            self.rebootstrap().await;
                            // Straight back: the fresh copy needs the leader now.
                            backoff.reset();
                            continue;
                        }
                        Remedy::Stop => return,
                    }
                }
            }
            if self.closed() {
                return;
            }
            let wake = self.shared.borrow().sync_wake.clone();
            sleep_or(backoff.next_delay_ms(js_sys::Math::random()), &wake).await;
        }
    }

    /// Copies what a transport over several members learned into the status: where the
    /// connection is, how often it moved, and members refused (the newest also as the error).
    fn report_members(&self) {
        let Some(report) = self.transport.report() else {
            return;
        };
        update_status(&self.shared, |s| {
            if report.refused.len() > s.refused_members.len()
                && let Some(refused) = report.refused.last()
            {
                s.set_error(&refused.code, &refused.message);
            }
            s.member = report.connected_url;
            s.member_switches = report.switches;
            s.refused_members = report.refused;
        });
    }

    /// Discards the local copy and starts over from an empty log.
    async fn rebootstrap(&mut self) {
        if let Err(error) = wipe(&mut self.store).await {
            // The store cannot even be reset: keep trying after a pause rather than spin.
            update_status(&self.shared, |s| {
                s.set_error(error.code(), &error.to_string())
            });
            sleep(1_000).await;
        }
        self.replica = Replica::new(self.config.clone(), LogPosition::START, self.replica.term());
        self.compacted = Lsn::ZERO;
        let touched = self
            .shared
            .borrow_mut()
            .local
            .replace_confirmed(State::new());
        changed(&self.shared, &touched);
        update_status(&self.shared, |s| s.rebootstraps += 1);
    }

    async fn session(&mut self, connection: &T::Connection, backoff: &mut Backoff) -> SessionEnd {
        let hello = self.replica.hello(now());
        if let Err(error) = connection.send(hello.encode()) {
            return lost(error.code(), &error.to_string());
        }
        let mut last_tick = now();
        loop {
            let event = {
                let recv = pin!(connection.recv());
                let wake = self.shared.borrow().sync_wake.wait();
                let timer = pin!(sleep(TICK_MS));
                match select(select(recv, wake), timer).await {
                    Either::Left((Either::Left((incoming, _)), _)) => Some(incoming),
                    Either::Left((Either::Right(_), _)) => None,
                    Either::Right(_) => None,
                }
            };
            if self.closed() {
                connection.close("replica closed");
                return SessionEnd::Closed;
            }
            if !self.shared.borrow().status.online {
                connection.close("browser offline");
                return lost("offline", "the browser went offline");
            }
            let time = now();
            let mut commands = Vec::new();
            let mut closed = None;
            match event {
                Some(Incoming::Frame(bytes)) => {
                    commands.extend(self.replica.handle_bytes(time, &bytes));
                    // Frames that queued up meanwhile are handled now too, so their entries
                    // are persisted and applied in one step (see `merge_persists`).
                    let mut taken = 1;
                    let closing = |c: &ReplicaCommand| matches!(c, ReplicaCommand::Close(_));
                    while taken < COALESCE_FRAMES_MAX && !commands.iter().any(closing) {
                        match connection.recv().now_or_never() {
                            Some(Incoming::Frame(bytes)) => {
                                commands.extend(self.replica.handle_bytes(time, &bytes));
                                taken += 1;
                            }
                            Some(Incoming::Closed { code, reason }) => {
                                closed = Some((code, reason));
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Some(Incoming::Closed { code, reason }) => return lost(&code, &reason),
                None => {}
            }
            if time.0.saturating_sub(last_tick.0) >= TICK_MS {
                last_tick = time;
                commands.extend(self.replica.on_tick(time));
            }
            if let Err(end) = self.carry_out(connection, commands).await {
                return end;
            }
            if let Some((code, reason)) = closed {
                return lost(&code, &reason);
            }
            if self.replica.is_streaming() {
                backoff.reset();
            }
            let connected = self.replica.is_streaming();
            let leader_lsn = self.replica.leader_committed().lsn;
            let was_connected = self.shared.borrow().status.connected;
            update_status(&self.shared, |s| {
                s.connected = connected;
                s.leader_lsn = leader_lsn;
            });
            if connected && !was_connected {
                // A (re)connection, after a failover say: writes waiting out a backoff go now.
                self.shared.borrow().writer_wake.fire();
            }
        }
    }

    /// Carries out commands in order (and those their completions produce).
    async fn carry_out(
        &mut self,
        connection: &T::Connection,
        commands: Vec<ReplicaCommand>,
    ) -> Result<(), SessionEnd> {
        let mut queue = merge_persists(commands);
        while let Some(command) = queue.pop_front() {
            match command {
                ReplicaCommand::Send(frame) => {
                    if let Err(error) = connection.send(frame.encode()) {
                        return Err(lost(error.code(), &error.to_string()));
                    }
                }
                ReplicaCommand::Persist { entries } => {
                    let first = entries.first().expect("Persist carries entries").lsn;
                    let last = entries.last().expect("Persist carries entries").lsn;
                    if let Err(error) = self.store.append(&entries).await {
                        queue.extend(self.replica.on_apply_failed(first, &error.to_string()));
                        continue;
                    }
                    let applied = self.shared.borrow_mut().local.apply_confirmed(&entries);
                    match applied {
                        Ok(touched) => {
                            changed(&self.shared, &touched);
                            queue.extend(self.replica.on_persisted(now(), last));
                            self.compact_if_due(last).await;
                        }
                        Err((lsn, rejection)) => {
                            let reason = format!("{} ({})", rejection, rejection.code());
                            queue.extend(self.replica.on_apply_failed(lsn, &reason));
                        }
                    }
                }
                ReplicaCommand::InstallSnapshot(snapshot) => {
                    let position = snapshot.position;
                    let installed = match State::from_snapshot(&snapshot) {
                        Ok(state) => match self.store.install_snapshot(&snapshot).await {
                            Ok(()) => Ok(state),
                            Err(error) => Err(error.to_string()),
                        },
                        Err(error) => Err(error.to_string()),
                    };
                    match installed {
                        Ok(state) => {
                            self.compacted = position.lsn;
                            let touched = self.shared.borrow_mut().local.replace_confirmed(state);
                            changed(&self.shared, &touched);
                            queue.extend(self.replica.on_snapshot_installed(now(), position));
                        }
                        Err(reason) => {
                            queue.extend(self.replica.on_apply_failed(position.lsn, &reason));
                        }
                    }
                }
                ReplicaCommand::SaveTerm(term) => {
                    self.metadata.term = term;
                    if let Err(error) = self.store.save_metadata(&self.metadata).await {
                        let reason = format!("saving term {term}: {error}");
                        queue.extend(self.replica.on_apply_failed(Lsn::ZERO, &reason));
                    }
                }
                ReplicaCommand::Close(error) => {
                    connection.close(error.code());
                    return Err(SessionEnd::Error(error));
                }
            }
        }
        Ok(())
    }
}

impl<S: LogStore, T: Transport> SyncLoop<S, T> {
    /// Keeps the local log bounded: past the threshold, saves a snapshot of the state at
    /// `applied` and drops the entries behind it. A failure only leaves the log longer.
    async fn compact_if_due(&mut self, applied: Lsn) {
        let threshold = {
            let inner = self.shared.borrow();
            COMPACT_ENTRIES_MIN.max(inner.local.doc_count() as u64)
        };
        if applied.0.saturating_sub(self.compacted.0) < threshold {
            return;
        }
        let snapshot = self.shared.borrow_mut().local.snapshot();
        assert_eq!(
            snapshot.position.lsn, applied,
            "the state is at the entry just persisted"
        );
        let saved = match self.store.save_snapshot(&snapshot).await {
            Ok(()) => self.store.compact_prefix(applied).await,
            Err(error) => Err(error),
        };
        match saved {
            Ok(()) => self.compacted = applied,
            Err(error) => {
                update_status(&self.shared, |s| {
                    s.set_error(error.code(), &error.to_string())
                });
            }
        }
    }
}

fn lost(code: &str, message: &str) -> SessionEnd {
    SessionEnd::Lost {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// What the browser does after a close. Core's remedy, made stricter for what a browser can
/// not trust: an entry or snapshot failing its hash, or a log that diverged, means the copy
/// (or what feeds it) is suspect, so it is fetched again whole.
fn remedy(error: &ReplicationError) -> Remedy {
    match error.code() {
        "hash_mismatch" | "snapshot_hash_mismatch" | "diverged" => Remedy::Rebootstrap,
        _ => error.remedy(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::Txn;
    use cstore_core::replication::Frame;
    use cstore_core::{LogEntry, TimestampMs};

    fn entries(from: u64, count: u64) -> Vec<LogEntry> {
        let mut prev = LogPosition::default();
        let mut chain = Vec::new();
        for lsn in 1..from + count {
            let entry = LogEntry::new(prev, Term(1), TimestampMs(lsn), Txn::new(Vec::new()));
            prev = LogPosition {
                lsn: entry.lsn,
                hash: entry.hash,
            };
            if lsn >= from {
                chain.push(entry);
            }
        }
        chain
    }

    fn persisted(command: &ReplicaCommand) -> Option<Vec<u64>> {
        match command {
            ReplicaCommand::Persist { entries } => Some(entries.iter().map(|e| e.lsn.0).collect()),
            _ => None,
        }
    }

    #[test]
    fn adjacent_persists_join_and_the_rest_keeps_its_order() {
        let ack = || ReplicaCommand::Send(Frame::Ack { durable: Lsn(1) });
        let commands = vec![
            ReplicaCommand::Persist {
                entries: entries(1, 2),
            },
            ReplicaCommand::Persist {
                entries: entries(3, 1),
            },
            ReplicaCommand::Persist {
                entries: entries(4, 2),
            },
            ack(),
            ReplicaCommand::Persist {
                entries: entries(6, 1),
            },
            ReplicaCommand::SaveTerm(Term(2)),
            ReplicaCommand::Persist {
                entries: entries(7, 1),
            },
        ];
        let merged: Vec<ReplicaCommand> = merge_persists(commands).into();
        assert_eq!(merged.len(), 5);
        assert_eq!(persisted(&merged[0]), Some(vec![1, 2, 3, 4, 5]));
        assert!(matches!(merged[1], ReplicaCommand::Send(Frame::Ack { .. })));
        assert_eq!(persisted(&merged[2]), Some(vec![6]));
        assert!(matches!(merged[3], ReplicaCommand::SaveTerm(Term(2))));
        assert_eq!(persisted(&merged[4]), Some(vec![7]));
    }
}
