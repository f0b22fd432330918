//! The leader: the single writer of the log.
//!
//! ```text
//!  HTTP handlers ──write(txn)──► bounded queue ──► commit thread
//!        ▲                                          │ 1. take every queued request (≤ batch_max)
//!        │                                          │ 2. stamp the batch with the clock; check each
//!        │                                          │    entry on a speculation over the state
//!        │                                          │    (taken off again): Ok, or reply Rejected
//!        │                                          │ 3. store.append(entries): ONE fdatasync
//!        └──────────── reply Ok(lsn) ◄──────────────┘ 4. local copy: apply_committed(entries)
//! ```
//!
//! Group commit comes from step 1: while one batch is being made durable, new requests queue up
//! and the next batch takes them all, so N concurrent writers share one fsync. A write is
//! acknowledged only after step 3 returned, so nothing acknowledged is ever lost.
//!
//! The state readers see is the leader's [`LocalCopy`](crate::local::LocalCopy), which holds
//! durable entries only: step 2 checks the batch on top of the state and reverts it under the
//! same write lock, and the entries reach the state in step 4, through the copy's one door
//! (`apply_committed`), like a follower's. A read never waits for an fsync and never sees data
//! that a crash could take back.
//!
//! If an append fails, the state never held the batch: its writers get the error, and entries
//! that did reach the disk anyway (a batch that spans segments and failed in a later one) are
//! read back from the store and applied like any committed entry.
//! What happens next depends on the failure (the disk-fault policy, docs/OPERATIONS.md):
//!
//! - out of space (`StorageError::Full`): the store cut what it had written of the batch and
//!   is unchanged; those writes fail with `disk_full` (507) and later writes are tried again,
//!   each batch written afresh, so writing resumes by itself once space is freed;
//! - any other IO error (a failed `fdatasync` above all): nothing is known about what reached
//!   the disk and an fsync is never retried on the same data; the leader takes no more writes
//!   (`storage_failed`, 503) and stays read-only until a restart recovers from what is durable.

mod checkpoint;
mod commit;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use cstore_core::doc::IdGenerator;
use cstore_core::error::ErrorCode;
use cstore_core::state::{Rejection, State};
use cstore_core::storage::StorageError;
use cstore_core::{Lsn, ReplicaId, Term, Txn};

use crate::local::{Local, LocalCopy};

pub use crate::local::StartError;
pub use checkpoint::CheckpointStore;

/// The default pace of a checkpoint's file, in MiB/s: a snapshot of a million small documents
/// (200 MB) in about 6.4 s. On this project's 2-core machine, writes during a checkpoint had a
/// p99 2.3 to 2.9 times the p99 of writes without checkpoints at 128 MiB/s; 1.1 to 1.8 times at
/// 64 until the log's syncs got cheaper (its reserved room, `wal::store`), then 1.7 to 2.5
/// times; 1.1 to 1.4 times at 32 (see `checkpoint::Pace`, and BENCHMARKS.md, "Writes during
/// checkpoints, by pace").
pub const CHECKPOINT_WRITE_MIB_PER_S_DEFAULT: u64 = 32;

/// Tunables of the leader.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Most transactions in one batch (one fsync).
    pub batch_max: usize,
    /// Most writes waiting for the commit thread; further writers wait (backpressure).
    pub queue_max: usize,
    /// Write a snapshot and compact the log after this many entries.
    pub checkpoint_every_entries: u64,
    /// How fast a checkpoint writes its snapshot file, in bytes per second (0: as fast as the
    /// disk takes it). The log's appends share the disk: each of its syncs waits for what
    /// was written before it, so a checkpoint written at full speed made every commit under
    /// way wait (see `checkpoint::Pace`).
    pub checkpoint_write_bytes_per_s: u64,
    /// Bound of the replication tail ([`LogTail`](crate::replicate::LogTail)) in bytes.
    pub tail_bytes_max: u64,
}

impl Default for LeaderConfig {
    fn default() -> LeaderConfig {
        LeaderConfig {
            batch_max: 8192,
            queue_max: 65_536,
            checkpoint_every_entries: 100_000,
            checkpoint_write_bytes_per_s: CHECKPOINT_WRITE_MIB_PER_S_DEFAULT << 20,
            tail_bytes_max: crate::replicate::TAIL_MIB_DEFAULT << 20,
        }
    }
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The transaction was validated and refused; nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The server is stopping and takes no more writes.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The store failed; the leader takes no more writes until restarted.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The disk is full; nothing of this write was made durable. Later writes are tried again.
    #[error("the disk is full; the write was not made durable: {0}")]
    DiskFull(String),
    /// Cluster mode: this member does not lead (any more); nothing was written here.
    #[error("this member is not the leader{}", match .leader_url {
        Some(url) => format!(" (the leader is {url})"),
        None => " (no leader is known: an election is under way)".to_string(),
    })]
    NotLeader {
        /// The leader this member knows of.
        leader_url: Option<String>,
    },
    /// Cluster mode: whether the write committed is unknown (a timeout, or leadership lost
    /// while it was in flight). It may still commit; a retry with the same `origin` is safe.
    #[error("the outcome of the write is unknown: {0}")]
    OutcomeUnknown(String),
    /// Cluster mode: the write was not proposed (nothing changed); retry.
    #[error("the write could not be proposed: {0}")]
    Unavailable(String),
}

impl ErrorCode for WriteError {
    fn code(&self) -> &'static str {
        match self {
            WriteError::Rejected(r) => r.code(),
            WriteError::ShuttingDown => "shutting_down",
            WriteError::Storage(_) => "storage_failed",
            WriteError::DiskFull(_) => "disk_full",
            WriteError::NotLeader { .. } => "not_leader",
            WriteError::OutcomeUnknown(_) => "ack_unknown",
            WriteError::Unavailable(_) => "unavailable",
        }
    }
}

/// What `/v1/status` reports about the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderStatus {
    /// This node's identity.
    pub node_id: ReplicaId,
    /// The current term.
    pub term: Term,
    /// The last entry applied to the state (which holds durable entries only: the same as
    /// `committed_lsn`).
    pub applied_lsn: Lsn,
    /// The last entry known durable on the leader.
    pub committed_lsn: Lsn,
    /// The state of its store.
    pub storage: StorageHealth,
}

/// What `/v1/status` says about the leader's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageHealth {
    /// The last append succeeded.
    Ok,
    /// The last append failed for lack of space; writes are tried again.
    DiskFull,
    /// An append failed with an IO error: read-only until restarted.
    Failed,
}

impl StorageHealth {
    /// Its name in `/v1/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageHealth::Ok => "ok",
            StorageHealth::DiskFull => "disk_full",
            StorageHealth::Failed => "failed",
        }
    }
}

/// A request to the commit thread.
pub(crate) enum Request {
    Write {
        txn: Txn,
        reply: oneshot::Sender<Result<Lsn, WriteError>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// What the handle and the commit thread share besides the local copy.
pub(crate) struct Shared {
    /// The state, tail and committed watch, durable entries only (the commit thread owns the
    /// store and writes the copy).
    pub(crate) local: Arc<Local>,
    pub(crate) term: Term,
    pub(crate) node_id: ReplicaId,
    pub(crate) ids: Mutex<IdGenerator>,
    pub(crate) closing: AtomicBool,
    pub(crate) failed: Mutex<Option<String>>,
    /// The last append failed for lack of space.
    pub(crate) disk_full: AtomicBool,
}

/// A cheap, cloneable handle to the leader.
#[derive(Clone)]
pub struct Leader {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("status", &self.status())
            .finish()
    }
}

impl Leader {
    /// Recovers the state from `store` (snapshot, then the log after it) and starts the commit
    /// thread. Refuses to start on a log that does not replay.
    pub async fn open<S: CheckpointStore>(
        store: S,
        config: LeaderConfig,
    ) -> Result<Leader, StartError> {
        let (copy, since_checkpoint) =
            LocalCopy::recover(store, Term(1), config.tail_bytes_max).await?;
        let metadata = copy.metadata().clone();
        let shared = Arc::new(Shared {
            local: Arc::clone(copy.local()),
            term: metadata.term,
            node_id: metadata.node_id,
            ids: Mutex::new(IdGenerator::new(rand::random())),
            closing: AtomicBool::new(false),
            failed: Mutex::new(None),
            disk_full: AtomicBool::new(false),
        });
        let (requests, receiver) = mpsc::channel(config.queue_max);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("cstore-commit".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a current-thread runtime builds");
                runtime.block_on(commit::run(
                    thread_shared,
                    copy,
                    receiver,
                    config,
                    since_checkpoint,
                ));
            })
            .map_err(StartError::Thread)?;
        Ok(Leader { shared, requests })
    }

    /// Commits a transaction: returns its LSN once it is durable, or why it was refused.
    pub async fn write(&self, txn: Txn) -> Result<Lsn, WriteError> {
        if let Some(reason) = self.shared.failed.lock().expect("poisoned").clone() {
            return Err(WriteError::Storage(reason));
        }
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(WriteError::ShuttingDown);
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Write { txn, reply })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        answer.await.unwrap_or(Err(WriteError::ShuttingDown))
    }

    /// Commits several transactions in this order, each on its own (one may be refused and
    /// the next commit): all are queued before the first answer is awaited, so they share the
    /// commit thread's batches (and fsyncs) instead of one round trip each. One result per
    /// transaction, in order.
    pub async fn write_many(&self, txns: Vec<Txn>) -> Vec<Result<Lsn, WriteError>> {
        let mut answers = Vec::with_capacity(txns.len());
        for txn in txns {
            if let Some(reason) = self.shared.failed.lock().expect("poisoned").clone() {
                answers.push(Err(WriteError::Storage(reason)));
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let queued = !self.shared.closing.load(Ordering::Acquire)
                && self
                    .requests
                    .send(Request::Write { txn, reply })
                    .await
                    .is_ok();
            answers.push(if queued {
                Ok(answer)
            } else {
                Err(WriteError::ShuttingDown)
            });
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer {
                Ok(answer) => answer.await.unwrap_or(Err(WriteError::ShuttingDown)),
                Err(error) => Err(error),
            });
        }
        results
    }

    /// Runs `f` on the current state under the read lock. Everything in it is durable. Keep
    /// `f` short: it delays commits.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.shared.local.read(f)
    }

    /// Role-independent facts for `/v1/status`.
    pub fn status(&self) -> LeaderStatus {
        let committed = self.shared.local.applied_lsn();
        LeaderStatus {
            node_id: self.shared.node_id,
            term: self.shared.term,
            applied_lsn: committed,
            committed_lsn: committed,
            storage: if self.shared.failed.lock().expect("poisoned").is_some() {
                StorageHealth::Failed
            } else if self.shared.disk_full.load(Ordering::Acquire) {
                StorageHealth::DiskFull
            } else {
                StorageHealth::Ok
            },
        }
    }

    /// Waits until every entry up to `lsn` is durable, where `lsn` came from an answer (a
    /// client's `min_lsn`, an LSN a write returned). Returns at once in the common case; fails
    /// when the store failed before it got there.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), WriteError> {
        let mut committed = self.shared.local.applied();
        loop {
            if *committed.borrow_and_update() >= lsn {
                return Ok(());
            }
            if let Some(reason) = self.shared.failed.lock().expect("poisoned").clone() {
                return Err(WriteError::Storage(reason));
            }
            if committed.changed().await.is_err() {
                return Err(WriteError::ShuttingDown);
            }
        }
    }

    /// A new document id (time-ordered, unique within this leader).
    pub fn generate_id(&self) -> String {
        self.shared
            .ids
            .lock()
            .expect("poisoned")
            .next_id(crate::clock::now_ms())
    }

    /// The local copy readers and replication sessions share.
    pub fn local(&self) -> &Arc<Local> {
        &self.shared.local
    }

    /// This leader's term.
    pub fn term(&self) -> Term {
        self.shared.term
    }

    /// This node's identity.
    pub fn node_id(&self) -> ReplicaId {
        self.shared.node_id
    }

    /// Stops taking writes, commits what is queued, stops the commit thread and closes the store
    /// (releasing its directory lock). Writes after this fail with `shutting_down`. Safe to call
    /// more than once.
    pub async fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let (done, finished) = oneshot::channel();
        if self.requests.send(Request::Shutdown { done }).await.is_ok() {
            let _ = finished.await;
        }
    }
}

impl From<StorageError> for WriteError {
    fn from(e: StorageError) -> WriteError {
        match e {
            StorageError::Full(_) => WriteError::DiskFull(e.to_string()),
            _ => WriteError::Storage(e.to_string()),
        }
    }
}
