//! An in-browser leader for tests: core's `LeaderSession` per connection over an in-memory
//! log, reached through the same [`Transport`] and [`TxnSender`] traits as the real server.
//!
//! It runs the leader's half of the protocol synchronously inside `send`, so a test drives a
//! whole replica (sync loop, writer, watches) in headless Chromium without a server, and can
//! do what a server cannot be asked to: stop and restart at a precise moment, compact its log
//! (forcing a snapshot), tamper with the next entries frame (a wrong hash), and count every
//! entry and snapshot it sent (proof that a reconnect resumes without re-download).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use cstore_core::replication::{Frame, LeaderCommand, LeaderSession, SessionConfig};
use cstore_core::state::{Rejection, State};
use cstore_core::storage::{LogState, LogStore, MemoryStore, Metadata, StorageResult};
use cstore_core::{ErrorCode, LogEntry, LogPosition, Lsn, ReplicaId, Snapshot, Term, Txn};

use super::{Connection, Inbox, Incoming, Transport, TransportError};
use crate::replica::sender::{TxnOutcome, TxnSender};
use crate::time::now;

/// What the loopback leader sent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Entries sent in `Entries` frames (all sessions).
    pub entries: u64,
    /// Snapshot transfers begun.
    pub snapshots: u64,
    /// Connections accepted.
    pub connections: u64,
}

struct Slot {
    session: LeaderSession,
    inbox: Inbox,
    open: bool,
}

struct LeaderInner {
    term: Term,
    state: State,
    /// Entries after `compacted`.
    log: Vec<LogEntry>,
    compacted: LogPosition,
    slots: Vec<Slot>,
    down: bool,
    tamper_next_entries: bool,
    lose_next_answer: bool,
    sent: Sent,
}

/// The in-browser leader. Clones share it.
#[derive(Clone)]
pub struct LoopbackLeader {
    inner: Rc<RefCell<LeaderInner>>,
}

impl std::fmt::Debug for LoopbackLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackLeader")
            .field("last", &self.last())
            .finish_non_exhaustive()
    }
}

impl Default for LoopbackLeader {
    fn default() -> LoopbackLeader {
        LoopbackLeader::new()
    }
}

const LEADER_ID: ReplicaId = ReplicaId(1);

impl LoopbackLeader {
    /// A leader of term 1 with an empty log.
    pub fn new() -> LoopbackLeader {
        LoopbackLeader {
            inner: Rc::new(RefCell::new(LeaderInner {
                term: Term(1),
                state: State::new(),
                log: Vec::new(),
                compacted: LogPosition::START,
                slots: Vec::new(),
                down: false,
                tamper_next_entries: false,
                lose_next_answer: false,
                sent: Sent::default(),
            })),
        }
    }

    /// The last committed position.
    pub fn last(&self) -> LogPosition {
        self.inner.borrow().state.applied()
    }

    /// The leader's term.
    pub fn last_term(&self) -> Term {
        self.inner.borrow().term
    }

    /// A copy of the leader's state, to compare replicas against.
    pub fn state(&self) -> State {
        self.inner.borrow().state.clone()
    }

    /// What was sent so far.
    pub fn sent(&self) -> Sent {
        self.inner.borrow().sent
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.inner.borrow().slots.iter().filter(|s| s.open).count()
    }

    /// Commits a transaction and streams it to every connected replica.
    pub fn commit(&self, txn: Txn) -> Result<Lsn, Rejection> {
        let mut inner = self.inner.borrow_mut();
        let time = now();
        let timestamp = cstore_core::TimestampMs(time.0.max(inner.state.last_timestamp().0));
        let entry = LogEntry::new(inner.state.applied(), inner.term, timestamp, txn);
        inner.state.apply(&entry)?;
        let position = entry.position();
        inner.log.push(entry);
        for index in 0..inner.slots.len() {
            if inner.slots[index].open {
                let commands = inner.slots[index].session.on_committed(time, position);
                inner.run(index, commands);
            }
        }
        Ok(position.lsn)
    }

    /// Drops every entry held: later readers below this point get a snapshot.
    pub fn compact(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.compacted = inner.state.applied();
        inner.log.clear();
    }

    /// The next `Entries` frame carries an entry whose content no longer matches its hash.
    pub fn tamper_next_entries(&self) {
        self.inner.borrow_mut().tamper_next_entries = true;
    }

    /// The next write commits, but its answer is lost (the writer must resend it).
    pub fn lose_next_answer(&self) {
        self.inner.borrow_mut().lose_next_answer = true;
    }

    /// Stops serving: every connection drops, connects and writes fail until [`start`].
    ///
    /// [`start`]: LoopbackLeader::start
    pub fn stop(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.down = true;
        for slot in &mut inner.slots {
            slot.open = false;
            slot.inbox.close("connection_closed", "the leader stopped");
        }
        inner.slots.clear();
    }

    /// Serves again (the log is kept, like a restarted server's).
    pub fn start(&self) {
        self.inner.borrow_mut().down = false;
    }

    fn deliver(&self, index: usize, bytes: &[u8]) {
        let mut inner = self.inner.borrow_mut();
        if !inner.slots.get(index).is_some_and(|s| s.open) {
            return;
        }
        let commands = inner.slots[index].session.handle_bytes(now(), bytes);
        inner.run(index, commands);
    }

    fn disconnect(&self, index: usize) {
        let mut inner = self.inner.borrow_mut();
        if let Some(slot) = inner.slots.get_mut(index) {
            slot.open = false;
        }
    }
}

impl LeaderInner {
    /// Carries out a session's commands, synchronously.
    fn run(&mut self, index: usize, commands: Vec<LeaderCommand>) {
        let mut queue = std::collections::VecDeque::from(commands);
        let time = now();
        while let Some(command) = queue.pop_front() {
            match command {
                LeaderCommand::Send(frame) => {
                    let frame = self.outgoing(frame);
                    self.slots[index].inbox.push(frame.encode());
                }
                LeaderCommand::SendEntries(frame) => {
                    let frame = self.outgoing(frame.to_frame());
                    self.slots[index].inbox.push(frame.encode());
                }
                LeaderCommand::ReadEntries { from, to } => {
                    let session = &mut self.slots[index].session;
                    if from <= self.compacted.lsn {
                        queue.extend(session.on_entries_missing(time));
                    } else {
                        let base = self.compacted.lsn.0 + 1;
                        let entries =
                            self.log[(from.0 - base) as usize..(to.0 - base) as usize].to_vec();
                        queue.extend(session.on_entries(time, entries));
                    }
                }
                LeaderCommand::ReadSnapshot { .. } => {
                    self.sent.snapshots += 1;
                    let snapshot = Arc::new(self.state.snapshot());
                    queue.extend(self.slots[index].session.on_snapshot(time, snapshot));
                }
                LeaderCommand::Close(error) => {
                    let slot = &mut self.slots[index];
                    slot.inbox
                        .push(Frame::error(error.code(), &error.to_string()).encode());
                    slot.inbox.close(error.code(), &error.to_string());
                    slot.open = false;
                    return;
                }
            }
        }
    }

    fn outgoing(&mut self, frame: Frame) -> Frame {
        match frame {
            Frame::Entries { mut entries } => {
                self.sent.entries += entries.len() as u64;
                if std::mem::take(&mut self.tamper_next_entries)
                    && let Some(entry) = entries.first_mut()
                {
                    entry.timestamp.0 += 1;
                }
                Frame::Entries { entries }
            }
            other => other,
        }
    }
}

/// Connects to a [`LoopbackLeader`].
#[derive(Clone, Debug)]
pub struct LoopbackTransport {
    leader: LoopbackLeader,
}

impl LoopbackTransport {
    /// A transport to `leader`.
    pub fn new(leader: &LoopbackLeader) -> LoopbackTransport {
        LoopbackTransport {
            leader: leader.clone(),
        }
    }
}

/// One connection to the loopback leader.
#[derive(Debug)]
pub struct LoopbackConnection {
    leader: LoopbackLeader,
    index: usize,
    inbox: Inbox,
}

impl Transport for LoopbackTransport {
    type Connection = LoopbackConnection;

    async fn connect(&self) -> Result<LoopbackConnection, TransportError> {
        let mut inner = self.leader.inner.borrow_mut();
        if inner.down {
            return Err(TransportError::Connect(
                "the loopback leader is stopped".into(),
            ));
        }
        let session = LeaderSession::new(
            SessionConfig::default(),
            LEADER_ID,
            inner.term,
            inner.state.applied(),
            now(),
        );
        let inbox = Inbox::new();
        inner.slots.push(Slot {
            session,
            inbox: inbox.clone(),
            open: true,
        });
        inner.sent.connections += 1;
        Ok(LoopbackConnection {
            leader: self.leader.clone(),
            index: inner.slots.len() - 1,
            inbox,
        })
    }
}

impl Connection for LoopbackConnection {
    fn send(&self, bytes: Vec<u8>) -> Result<(), TransportError> {
        if self.inbox.is_closed() {
            return Err(TransportError::Send("the connection is closed".into()));
        }
        self.leader.deliver(self.index, &bytes);
        Ok(())
    }

    async fn recv(&self) -> Incoming {
        self.inbox.next().await
    }

    fn close(&self, reason: &str) {
        self.inbox.close("closed_by_replica", reason);
        self.leader.disconnect(self.index);
    }
}

impl TxnSender for LoopbackLeader {
    async fn send(&self, client: &str, seq: u64, txn: &Txn) -> TxnOutcome {
        if self.inner.borrow().down {
            return TxnOutcome::Retry {
                code: "network_error".into(),
                message: "the loopback leader is stopped".into(),
            };
        }
        // Like the server: a resend of the last committed seq answers its LSN again.
        let last = self.inner.borrow().state.origin(client);
        if let Some(last) = last
            && last.seq == seq
        {
            return TxnOutcome::Committed { lsn: last.lsn };
        }
        match self.commit(txn.clone()) {
            Ok(_) if std::mem::take(&mut self.inner.borrow_mut().lose_next_answer) => {
                TxnOutcome::Retry {
                    code: "network_error".into(),
                    message: "the answer was lost".into(),
                }
            }
            Ok(lsn) => TxnOutcome::Committed { lsn },
            Err(rejection) => TxnOutcome::Rejected {
                code: rejection.code().into(),
                message: rejection.to_string(),
            },
        }
    }
}

/// A `MemoryStore` that outlives the replica using it: clones share it, so a test can close a
/// replica and open another over the same data (a reload).
#[derive(Clone, Debug, Default)]
pub struct SharedMemoryStore {
    inner: Arc<Mutex<MemoryStore>>,
}

impl SharedMemoryStore {
    /// An empty store.
    pub fn new() -> SharedMemoryStore {
        SharedMemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryStore> {
        self.inner
            .lock()
            .expect("no test panics while holding the store")
    }

    /// Appends an entry after only the chain check (a test plants a corrupt record this way:
    /// the store does not verify hashes, the replica's open does).
    pub fn plant(&self, entry: LogEntry) {
        now_or_never(self.lock().append(&[entry])).expect("planted entry follows");
    }
}

/// The output of a `MemoryStore` future, which completes on its first poll.
fn now_or_never<F: std::future::Future>(future: F) -> F::Output {
    use futures::FutureExt;
    future
        .now_or_never()
        .expect("MemoryStore futures complete at once")
}

// Each call locks for one `MemoryStore` call, which completes on its first poll, so no
// lock is ever held across a suspension.
impl LogStore for SharedMemoryStore {
    async fn append(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        now_or_never(self.lock().append(entries))
    }

    async fn read_range(&self, from: Lsn, to: Lsn) -> StorageResult<Vec<LogEntry>> {
        now_or_never(self.lock().read_range(from, to))
    }

    async fn state(&self) -> StorageResult<LogState> {
        now_or_never(self.lock().state())
    }

    async fn truncate_suffix(&mut self, from: Lsn) -> StorageResult<()> {
        now_or_never(self.lock().truncate_suffix(from))
    }

    async fn compact_prefix(&mut self, through: Lsn) -> StorageResult<()> {
        now_or_never(self.lock().compact_prefix(through))
    }

    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        now_or_never(self.lock().save_snapshot(snapshot))
    }

    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        now_or_never(self.lock().install_snapshot(snapshot))
    }

    async fn load_snapshot(&self) -> StorageResult<Option<Snapshot>> {
        now_or_never(self.lock().load_snapshot())
    }

    async fn save_metadata(&mut self, metadata: &Metadata) -> StorageResult<()> {
        now_or_never(self.lock().save_metadata(metadata))
    }

    async fn load_metadata(&self) -> StorageResult<Option<Metadata>> {
        now_or_never(self.lock().load_metadata())
    }
}
