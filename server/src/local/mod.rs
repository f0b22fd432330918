//! The local copy: a node's store, the [`State`] readers see, the replication tail and the
//! applied watch, changed together and only through one door.
//!
//! Every native role keeps one: the single-node leader (`leader`), the read replica
//! (`follower`), and a cluster member, whose [`Local`] openraft's state machine moves
//! (`cluster::state_machine`; the member's store is openraft's log store, not a
//! [`LocalCopy`]). The leader's and the follower's are recovered the same way (the last
//! snapshot, then the log after it: [`recover`]). A copy only ever holds entries that are
//! durable — committed, in the leader's words — so a reader, a replication session or a
//! snapshot never sees what a crash could take back:
//!
//! ```text
//!  leader commit thread:  check on a speculation ─► store.append (fsync) ─┐
//!  follower:              entries from the leader ─► store.append (fsync) ─┤
//!                                                                          ▼
//!                     LocalCopy::apply_committed(entries) ─► Local::apply ─► State::apply
//!  cluster member: openraft's apply(committed) ─────────────────┘   ─► LogTail::push
//!                                                                ─► applied watch (min_lsn)
//!  snapshot installed / log discarded ─► LocalCopy::install / discard ─► Local::replace
//!                                                                  (state, tail, watch reset)
//! ```
//!
//! [`LocalCopy`] is the owner (the thread that writes the store holds it); [`Local`] is what
//! it shares with readers, the HTTP handlers and replication sessions ([`LocalSource`]).
//! Nothing moves the state, the tail or the watch but [`Local::apply`] and [`Local::replace`];
//! every writer passes an async gate first, so a snapshot (O(state)) never has a writer
//! blocked on the lock, and readers queued behind it, holding runtime threads.

mod recovery;
mod source;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::state::{ImageBuilder, ImageStep, Speculation, State};
use cstore_core::storage::{LogStore, Metadata, StorageError};
use cstore_core::{LogPosition, Lsn, Term};

use crate::replicate::LogTail;

pub use recovery::StartError;
use recovery::recover;
pub use source::{CommittedCopy, LocalSource};

/// The part of a local copy that readers share: the state, the tail of recent entries and
/// the applied position, all of them durable. A cluster member keeps one too
/// (`cluster::state_machine::Local` wraps it), moved by openraft's state machine through the
/// same doors ([`Local::apply`], [`Local::replace`]).
#[derive(Debug)]
pub struct Local {
    state: RwLock<State>,
    /// Taken, asynchronously, by every writer of `state` before it takes the write lock, and
    /// held by a reader of the whole state (a snapshot) for as long as it reads. A writer that
    /// waited on the lock itself would hold its thread for the whole O(state) read, and the
    /// readers queued behind it (the lock prefers writers) the runtime's workers: HTTP, and on
    /// a cluster member openraft's heartbeats, stalled with them (a leader with a million
    /// documents lost its office at every snapshot in `scripts/soak-cluster.sh`).
    writers: tokio::sync::Mutex<()>,
    /// The applied (and durable) LSN; `min_lsn` readers and snapshot requests wait on it.
    applied: watch::Sender<Lsn>,
    /// Recent applied entries, for replication sessions.
    tail: LogTail,
    /// The size of the last snapshot taken, to size the next one's buffer.
    last_image_bytes: AtomicUsize,
}

impl Local {
    /// The copy of `state`, with an empty tail of at most `tail_bytes_max` bytes.
    pub fn new(state: State, tail_bytes_max: u64) -> Local {
        let (applied, _) = watch::channel(state.applied().lsn);
        let tail = LogTail::new(state.applied(), tail_bytes_max);
        Local {
            state: RwLock::new(state),
            writers: tokio::sync::Mutex::new(()),
            applied,
            tail,
            last_image_bytes: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on the state under the read lock. Keep `f` short: it delays the writer.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().expect("state lock poisoned"))
    }

    /// Runs `f` on the state under the write lock (once no snapshot reads it). `f` must leave
    /// the state as it found it (a check on a speculation): entries reach the state only
    /// through [`Local::apply`].
    pub async fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let _writers = self.writers.lock().await;
        let mut state = self.state.write().expect("state lock poisoned");
        let before = state.applied();
        let result = f(&mut state);
        assert_eq!(state.applied(), before, "a write left the state moved");
        result
    }

    /// The one door through which entries reach the state: under the write lock, `apply`
    /// applies each item in order and returns the entry it applied, or an error that stops
    /// the rest. The entries applied are then pushed to the tail, and the applied watch moves
    /// last, when everything else is in place.
    pub async fn apply<T, E>(
        &self,
        items: impl IntoIterator<Item = T>,
        mut apply: impl FnMut(&mut State, T) -> Result<LogEntry, E>,
    ) -> Result<(), E> {
        let mut applied = Vec::new();
        let mut failed = None;
        {
            let _writers = self.writers.lock().await;
            let mut state = self.state.write().expect("state lock poisoned");
            for item in items {
                match apply(&mut state, item) {
                    Ok(entry) => applied.push(entry),
                    Err(error) => {
                        failed = Some(error);
                        break;
                    }
                }
            }
        }
        if let Some(last) = applied.last().map(|entry| entry.lsn) {
            // Sessions learn of the new position from the tail, after the entries are in it;
            // readers waiting for `min_lsn` learn it last.
            self.tail.push(applied);
            self.applied.send_replace(last);
        }
        failed.map_or(Ok(()), Err)
    }

    /// Replaces the whole state (an installed snapshot, a discarded copy): the state, then the
    /// tail and the watch.
    pub async fn replace(&self, state: State) {
        self.replace_with(state, || ()).await;
    }

    /// [`Local::replace`], running `beside` under the same hold of the write lock (what must
    /// change with the state, for a reader that looks at both).
    pub async fn replace_with(&self, state: State, beside: impl FnOnce()) {
        let position: LogPosition = state.applied();
        {
            let _writers = self.writers.lock().await;
            *self.state.write().expect("state lock poisoned") = state;
            beside();
        }
        self.tail.reset(position);
        // Readers wait for `applied >= n`; a snapshot can move it backwards only when the
        // copy is discarded, which readers then wait through.
        self.applied.send_replace(position.lsn);
    }

    /// A snapshot of the state as it is, and what `with` reads beside it under the same lock.
    /// Writers wait (asynchronously, see `Local::writers`) while the state is encoded;
    /// readers do not. The hash is computed after the lock is let go.
    pub async fn snapshot_with<M>(&self, with: impl FnOnce(&State) -> M) -> (Snapshot, M) {
        let (position, data, extra) = {
            let _writers = self.writers.lock().await;
            off_the_runtime(|| {
                let state = self.state.read().expect("state lock poisoned");
                // A little more than last time: the state has mostly grown since.
                let last = self.last_image_bytes.load(Ordering::Relaxed);
                let data = state.encode_with_capacity(last + last / 8);
                self.last_image_bytes.store(data.len(), Ordering::Relaxed);
                (state.applied(), data, with(&state))
            })
        };
        (off_the_runtime(|| Snapshot::new(position, data)), extra)
    }

    /// A snapshot of the state as it is (see [`Local::snapshot_with`]).
    pub async fn snapshot(&self) -> Snapshot {
        self.snapshot_with(|_| ()).await.0
    }

    /// Begins an image of the state as it is now, which [`Local::stream_image`] encodes while
    /// entries go on applying (see [`State::begin_image`]). Writers wait only for this moment
    /// under the write lock (O(collections + origins)). The image must be ended
    /// ([`Local::end_image_blocking`], [`Local::abandon_image`]): until then every collection
    /// keeps the documents that change.
    pub async fn begin_image(&self) -> ImageBuilder {
        let _writers = self.writers.lock().await;
        let mut state = self.state.write().expect("state lock poisoned");
        state.begin_image()
    }

    /// Encodes `builder`'s image (from where it is to its end) [`IMAGE_STEP_DOCS`] documents
    /// at a time, giving `sink` the bytes of each step, outside the locks: the image is never
    /// held whole, only a step of it. True when the image is complete, false when it was
    /// spoiled (a collection or an index came or went meanwhile); an error of `sink` stops it.
    /// Does not end the image: a rewound builder encodes the same bytes again.
    ///
    /// Each step passes the writers' gate and reads under the read lock, so a writer waits for
    /// one step at most and applies between steps, in turn: the gate is fair, where a thread
    /// that took the read lock again at once would keep a writer waiting on the lock itself
    /// for as long as it went on (measured: half a second). Holds its thread for O(state), and
    /// blocks on the gate: run it on a thread of its own, never on the runtime's workers.
    pub fn stream_image<E>(
        &self,
        builder: &mut ImageBuilder,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<bool, E> {
        loop {
            // Grown here, outside the lock: a step then writes into room already there.
            builder.reserve(IMAGE_ROOM_BYTES);
            let step = {
                let _writers = self.writers.blocking_lock();
                self.read(|state| state.image_step(builder, IMAGE_STEP_DOCS))
            };
            let mut given = Ok(());
            builder.take_encoded(|bytes| given = sink(bytes));
            given?;
            match step {
                ImageStep::More => {}
                ImageStep::Done => return Ok(true),
                ImageStep::Spoiled => return Ok(false),
            }
        }
    }

    /// Ends an image from a thread of its own (it blocks on the writers' gate): the
    /// collections stop keeping documents. True when the image was complete and still the
    /// state's current one: its bytes are the state when it began.
    pub fn end_image_blocking(&self, builder: ImageBuilder) -> bool {
        let _writers = self.writers.blocking_lock();
        let mut state = self.state.write().expect("state lock poisoned");
        state.end_image(builder).is_some()
    }

    /// Ends an image that will not be finished: the collections stop keeping documents.
    pub async fn abandon_image(&self, builder: ImageBuilder) {
        let _writers = self.writers.lock().await;
        let _ = self
            .state
            .write()
            .expect("state lock poisoned")
            .end_image(builder);
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

    /// Wakes whoever waits on the applied watch without moving it.
    fn wake_waiters(&self) {
        self.applied.send_modify(|_| {});
    }
}

/// How many documents a step of [`Local::stream_image`] encodes under the read lock: a fraction
/// of a millisecond's work, the longest a writer waits for a checkpoint.
pub const IMAGE_STEP_DOCS: usize = 512;

/// The room an image's buffer has before each step of [`Local::stream_image`], grown outside
/// the lock if not: far more than a step of small documents writes (a step of larger ones
/// grows it under the lock, as a whole encode would).
const IMAGE_ROOM_BYTES: usize = 8 << 20;

/// Runs work that holds a thread for long (encoding, hashing or decoding a large state)
/// without holding a runtime worker meanwhile: on a multi-thread runtime tokio hands this
/// worker's other tasks (HTTP, openraft's core and heartbeats) to another thread first. Only
/// for the rare O(state) steps: the hand-off costs more than an apply takes. On a
/// current-thread runtime (the commit thread, the deterministic simulation) it runs in place.
pub fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
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
    ) -> Result<(LocalCopy<S>, u64), StartError>
    where
        S: Sync,
    {
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

    /// The store, to change it beside the copy (a checkpoint's save, which leaves the log and
    /// the state as they are).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The store, to close it (dropping releases its directory lock).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Checks proposals on top of the state without changing it: `check` applies entries with
    /// [`State::apply_speculative`] and keeps each [`Speculation`] in the vector it is given;
    /// every one is reverted, newest first, before the state's lock is let go. Readers never
    /// see a speculation (they wait for the lock).
    pub async fn speculate<R>(
        &self,
        check: impl FnOnce(&mut State, &mut Vec<Speculation>) -> R,
    ) -> R {
        self.local
            .write(|state| {
                let mut speculations = Vec::new();
                let result = check(state, &mut speculations);
                while let Some(speculation) = speculations.pop() {
                    state.revert_speculation(speculation);
                }
                result
            })
            .await
    }

    /// Appends `entries`, which the caller has just built with [`LogEntry::new`], to the store
    /// durably (one fsync; the store does not hash them again, see [`LogStore::append_own`]).
    /// They reach readers only through [`Self::apply_committed`] afterwards.
    pub async fn append(&mut self, entries: &[LogEntry]) -> Result<(), StorageError> {
        self.store.append_own(entries).await
    }

    /// The one door through which entries reach the state: applies `entries` (durable, in
    /// order, continuing the state), pushes them to the tail, then moves the applied watch.
    /// When one does not apply, those before it are applied and published, and the error
    /// names it.
    pub async fn apply_committed(&self, entries: Vec<LogEntry>) -> Result<(), LocalError> {
        self.local
            .apply(entries, |state, entry| match state.apply(&entry) {
                Ok(_) => Ok(entry),
                Err(rejection) => Err(LocalError::Apply {
                    lsn: entry.lsn,
                    reason: rejection.to_string(),
                }),
            })
            .await
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
        self.apply_committed(entries).await?;
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
        self.local.replace(state).await;
        Ok(())
    }

    /// Discards the log and the state: the copy starts again from nothing.
    pub async fn discard(&mut self) -> Result<(), StorageError> {
        let empty = State::new();
        self.store.install_snapshot(&empty.snapshot()).await?;
        self.local.replace(empty).await;
        Ok(())
    }

    /// Writes a snapshot of the state and compacts the log behind it. Returns the snapshot
    /// (its position and size, for the caller's log line).
    pub async fn checkpoint(&mut self) -> Result<Snapshot, StorageError> {
        let snapshot = self.local.snapshot().await;
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
        self.local.wake_waiters();
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
