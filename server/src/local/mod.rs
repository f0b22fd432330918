//! The local copy: a node's store, the [`State`] readers see, the replication tail and the
//! applied watch, changed together and only through one door.
//!
//! Every native role keeps one: the single-node leader (`leader`), the read replica
//! (`follower`). It is recovered the same way for both (the last snapshot, then the log after
//! it: [`recover`]) and it only ever holds entries that are durable — committed, in the
//! leader's words — so a reader, a replication session or a snapshot never sees what a crash
//! could take back:
//!
//! ```text
//!  leader commit thread:  check on a speculation ─► store.append (fsync) ─┐
//!  follower:              entries from the leader ─► store.append (fsync) ─┤
//!                                                                          ▼
//!                     LocalCopy::apply_committed(entries) ─► State::apply ─► LogTail::push
//!                                                          ─► applied watch (readers, min_lsn)
//!  snapshot installed / log discarded ─► LocalCopy::install / discard ─► state, tail, watch reset
//! ```
//!
//! [`LocalCopy`] is the owner (the thread that writes the store holds it); [`Local`] is what
//! it shares with readers, the HTTP handlers and replication sessions ([`LocalSource`]).
//! Nothing outside this module moves the state, the tail or the watch.

mod recovery;
mod source;
#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::state::{Speculation, State};
use cstore_core::storage::{LogStore, Metadata, StorageError};
use cstore_core::{LogPosition, Lsn, Term};

use crate::replicate::LogTail;

pub use recovery::StartError;
use recovery::recover;
pub use source::{CommittedCopy, LocalSource};

/// The part of a local copy that readers share: the state, the tail of recent entries and
/// the applied position, all of them durable.
#[derive(Debug)]
pub struct Local {
    state: RwLock<State>,
    /// The applied (and durable) LSN; `min_lsn` readers and snapshot requests wait on it.
    applied: watch::Sender<Lsn>,
    /// Recent applied entries, for replication sessions.
    tail: LogTail,
}

impl Local {
    fn new(state: State, tail_bytes_max: u64) -> Local {
        let (applied, _) = watch::channel(state.applied().lsn);
        let tail = LogTail::new(state.applied(), tail_bytes_max);
        Local {
            state: RwLock::new(state),
            applied,
            tail,
        }
    }

    /// Runs `f` on the state under the read lock. Keep `f` short: it delays the writer.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().expect("state lock poisoned"))
    }

    /// The last LSN applied (and durable).
    pub fn applied_lsn(&self) -> Lsn {
        *self.applied.borrow()
    }

    /// Watches the applied LSN.
    pub fn applied(&self) -> watch::Receiver<Lsn> {
        self.applied.subscribe()
    }

    /// Waits until the state has applied `lsn`, at most `timeout`. True when it has; false on
    /// a timeout or once the copy's owner is gone.
    pub async fn wait_applied(&self, lsn: Lsn, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|at| *at >= lsn))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    /// The recent entries, for replication sessions.
    pub fn tail(&self) -> &LogTail {
        &self.tail
    }
}

/// Why a change to the local copy failed.
#[derive(Debug)]
pub enum LocalError {
    /// The store failed; what reached the disk is unknown.
    Storage(StorageError),
    /// An entry or snapshot does not apply: the local state is broken (or, on a leader, a bug).
    Apply {
        /// The entry (or the snapshot's position) that does not apply.
        lsn: Lsn,
        /// Why.
        reason: String,
    },
}

/// A node's store and the [`Local`] copy it shares with readers. Held by the one thread that
/// writes the store.
#[derive(Debug)]
pub struct LocalCopy<S> {
    store: S,
    metadata: Metadata,
    local: Arc<Local>,
}

impl<S: LogStore> LocalCopy<S> {
    /// Recovers the copy from `store` (see [`recover`]; a new store gets `fresh_term`), with a
    /// tail of at most `tail_bytes_max` bytes. Also returns how many entries were replayed.
    pub async fn recover(
        mut store: S,
        fresh_term: Term,
        tail_bytes_max: u64,
    ) -> Result<(LocalCopy<S>, u64), StartError> {
        let (metadata, state, replayed) = recover(&mut store, fresh_term).await?;
        let local = Arc::new(Local::new(state, tail_bytes_max));
        Ok((
            LocalCopy {
                store,
                metadata,
                local,
            },
            replayed,
        ))
    }

    /// What readers share.
    pub fn local(&self) -> &Arc<Local> {
        &self.local
    }

    /// The metadata saved in the store (term, node id).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The store, for what is not the copy's business (side records).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, to close it (dropping releases its directory lock).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Checks proposals on top of the state without changing it: `check` applies entries with
    /// [`State::apply_speculative`] and keeps each [`Speculation`] in the vector it is given;
    /// every one is reverted, newest first, before the state's lock is let go. Readers never
    /// see a speculation (they wait for the lock).
    pub fn speculate<R>(&self, check: impl FnOnce(&mut State, &mut Vec<Speculation>) -> R) -> R {
        let mut state = self.local.state.write().expect("state lock poisoned");
        let before = state.applied();
        let mut speculations = Vec::new();
        let result = check(&mut state, &mut speculations);
        while let Some(speculation) = speculations.pop() {
            state.revert_speculation(speculation);
        }
        assert_eq!(
            state.applied(),
            before,
            "a speculation was left on the state"
        );
        result
    }

    /// Appends `entries` to the store durably (one fsync). They reach readers only through
    /// [`Self::apply_committed`] afterwards.
    pub async fn append(&mut self, entries: &[LogEntry]) -> Result<(), StorageError> {
        self.store.append(entries).await
    }

    /// The one door through which entries reach the state: applies `entries` (durable, in
    /// order, continuing the state), pushes them to the tail, then moves the applied watch.
    /// When one does not apply, those before it are applied and published, and the error
    /// names it.
    pub fn apply_committed(&self, mut entries: Vec<LogEntry>) -> Result<(), LocalError> {
        let mut failed = None;
        {
            let mut state = self.local.state.write().expect("state lock poisoned");
            for (i, entry) in entries.iter().enumerate() {
                if let Err(rejection) = state.apply(entry) {
                    failed = Some((
                        i,
                        LocalError::Apply {
                            lsn: entry.lsn,
                            reason: rejection.to_string(),
                        },
                    ));
                    break;
                }
            }
        }
        let error = failed.map(|(i, error)| {
            entries.truncate(i);
            error
        });
        if let Some(last) = entries.last().map(|entry| entry.lsn) {
            // Sessions learn of the new position from the tail, after the entries are in it;
            // readers waiting for `min_lsn` learn it last, when everything else is in place.
            self.local.tail.push(entries);
            self.local.applied.send_replace(last);
        }
        error.map_or(Ok(()), Err)
    }

    /// Entries the store holds beyond the state (an append that failed after part of it was
    /// synced): applies them, so the state is again exactly what is durable. Returns how many.
    pub async fn catch_up_with_store(&mut self) -> Result<u64, LocalError> {
        let applied = self.local.read(|state| state.applied().lsn);
        let last = self
            .store
            .state()
            .await
            .map_err(LocalError::Storage)?
            .last
            .lsn;
        if last <= applied {
            return Ok(0);
        }
        let entries = self
            .store
            .read_range(applied.next(), last.next())
            .await
            .map_err(LocalError::Storage)?;
        let count = entries.len() as u64;
        self.apply_committed(entries)?;
        Ok(count)
    }

    /// Replaces the whole copy with `snapshot`: the store first, then the state, tail and
    /// watch. `durable` runs in between (the snapshot is durable, readers do not see it yet).
    pub async fn install(
        &mut self,
        snapshot: &Snapshot,
        durable: impl FnOnce(),
    ) -> Result<(), LocalError> {
        let state = State::from_snapshot(snapshot).map_err(|e| LocalError::Apply {
            lsn: snapshot.position.lsn,
            reason: e.to_string(),
        })?;
        self.store
            .install_snapshot(snapshot)
            .await
            .map_err(LocalError::Storage)?;
        durable();
        self.replace_state(state);
        Ok(())
    }

    /// Discards the log and the state: the copy starts again from nothing.
    pub async fn discard(&mut self) -> Result<(), StorageError> {
        let empty = State::new();
        self.store.install_snapshot(&empty.snapshot()).await?;
        self.replace_state(empty);
        Ok(())
    }

    /// Writes a snapshot of the state and compacts the log behind it. Returns the snapshot
    /// (its position and size, for the caller's log line).
    pub async fn checkpoint(&mut self) -> Result<Snapshot, StorageError> {
        let snapshot = self.local.read(State::snapshot);
        self.store.save_snapshot(&snapshot).await?;
        self.store.compact_prefix(snapshot.position.lsn).await?;
        Ok(snapshot)
    }

    /// Saves a newer term in the metadata.
    pub async fn save_term(&mut self, term: Term) -> Result<(), StorageError> {
        let metadata = Metadata {
            term,
            ..self.metadata.clone()
        };
        self.store.save_metadata(&metadata).await?;
        self.metadata = metadata;
        Ok(())
    }

    /// Wakes whoever waits on the applied watch without moving it (they look again at what
    /// else they wait for, e.g. a failed store).
    pub fn wake_waiters(&self) {
        self.local.applied.send_modify(|_| {});
    }

    fn replace_state(&self, state: State) {
        let position: LogPosition = state.applied();
        *self.local.state.write().expect("state lock poisoned") = state;
        self.local.tail.reset(position);
        // Readers wait for `applied >= n`; a snapshot can move it backwards only when the
        // copy is discarded, which readers then wait through.
        self.local.applied.send_replace(position.lsn);
    }
}

impl LocalCopy<crate::wal::FileStore> {
    /// The last entry the file store holds (or its snapshot's position when none is).
    pub fn position(&self) -> LogPosition {
        self.store.log_state().last
    }

    /// [`Self::append`] for entries whose hashes the caller has just checked (a replica's
    /// `Persist`): the store checks the chain but does not hash every entry a second time.
    pub fn append_hash_checked(&mut self, entries: &[LogEntry]) -> Result<(), StorageError> {
        self.store.append_hash_checked_blocking(entries)
    }

    /// The file store, for its side records.
    pub fn file_store_mut(&mut self) -> &mut crate::wal::FileStore {
        &mut self.store
    }
}
