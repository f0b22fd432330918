//! The commit thread: batches writes, checks them on the state, makes them durable with one
//! append, applies them through the local copy, and answers the writers. See the module docs
//! of `leader` for the picture.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use cstore_core::state::Rejection;
use cstore_core::storage::{LogStore, StorageError};
use cstore_core::{LogEntry, Lsn, TimestampMs, Txn};

use super::checkpoint::{self, CheckpointStore};
use super::{LeaderConfig, Request, Shared, WriteError};
use crate::clock::now_ms;
use crate::local::{LocalCopy, LocalError};

type Reply = oneshot::Sender<Result<Lsn, WriteError>>;

/// Runs until a shutdown request or until every handle is dropped. `since_checkpoint` counts
/// the entries already in the log after the last checkpoint (those recovery replayed), so a
/// server that restarts often still checkpoints every `checkpoint_every_entries` entries
/// rather than replaying an ever longer log. A checkpoint runs beside the commits (see
/// `checkpoint`); one at a time.
pub(crate) async fn run<S: CheckpointStore>(
    shared: Arc<Shared>,
    mut copy: LocalCopy<S>,
    mut requests: mpsc::Receiver<Request>,
    config: LeaderConfig,
    mut since_checkpoint: u64,
) {
    let mut batch: Vec<(Txn, Reply)> = Vec::with_capacity(config.batch_max);
    let mut checkpoint = None;
    loop {
        let first = tokio::select! {
            biased;
            outcome = checkpoint::wait(&mut checkpoint) => Err(outcome),
            request = next_request(&shared, &mut requests) => Ok(request),
        };
        let first = match first {
            Ok(request) => request,
            Err(outcome) => {
                let pending = checkpoint.take().expect("the checkpoint waited for");
                checkpoint::finish(&mut copy, pending, outcome).await;
                continue;
            }
        };
        let Some(first) = first else {
            // Every handle is gone: finish a checkpoint under way, then the copy goes.
            finish_checkpoint(&mut copy, &mut checkpoint).await;
            break;
        };
        let mut shutdown = None;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Write { txn, reply } => batch.push((txn, reply)),
                Request::Shutdown { done } => {
                    shutdown = Some(done);
                    break;
                }
            }
            if batch.len() < config.batch_max {
                next = requests.try_recv().ok();
            }
        }
        let committed = commit_batch(&shared, &mut copy, &mut batch).await;
        since_checkpoint += committed;
        if committed > 0
            && since_checkpoint >= config.checkpoint_every_entries
            && checkpoint.is_none()
        {
            checkpoint = checkpoint::start(&mut copy, config.checkpoint_write_bytes_per_s).await;
            since_checkpoint = 0;
        }
        if let Some(done) = shutdown {
            // Refuse what queued up behind the shutdown request; the store is synced (every
            // append is), so there is nothing left to flush.
            requests.close();
            while let Some(request) = requests.recv().await {
                match request {
                    Request::Write { reply, .. } => {
                        let _ = reply.send(Err(WriteError::ShuttingDown));
                    }
                    Request::Shutdown { done } => {
                        let _ = done.send(());
                    }
                }
            }
            // A checkpoint under way is finished (a restart then replays less).
            finish_checkpoint(&mut copy, &mut checkpoint).await;
            // Close the store (and release its directory lock) before saying we are done.
            drop(copy.into_store());
            info!("commit thread stopped");
            let _ = done.send(());
            return;
        }
    }
}

/// Waits for the checkpoint under way, if any, and finishes it.
async fn finish_checkpoint<S: CheckpointStore>(
    copy: &mut LocalCopy<S>,
    checkpoint: &mut Option<checkpoint::Checkpoint<S::Written>>,
) {
    if checkpoint.is_some() {
        let outcome = checkpoint::wait(checkpoint).await;
        let pending = checkpoint.take().expect("a checkpoint under way");
        checkpoint::finish(copy, pending, outcome).await;
    }
}

/// The next request, waiting for one; at the next TTL deadline, an expiry tick (expiry needs an
/// entry to happen). `None` once every handle is dropped.
async fn next_request(shared: &Shared, requests: &mut mpsc::Receiver<Request>) -> Option<Request> {
    let Some(wait) = next_deadline(shared) else {
        return requests.recv().await;
    };
    match tokio::time::timeout(wait, requests.recv()).await {
        Ok(request) => request,
        Err(_elapsed) => {
            let (reply, _) = oneshot::channel();
            Some(Request::Write {
                txn: Txn::tick(),
                reply,
            })
        }
    }
}

/// While the disk is full, an expiry tick is tried at most this often: a deadline already past
/// would otherwise retry at once, forever (each try a write to the full disk).
const FULL_DISK_TICK_RETRY: Duration = Duration::from_secs(1);

/// How long until the next document expires, if any does.
fn next_deadline(shared: &Shared) -> Option<Duration> {
    if shared.failed.lock().expect("poisoned").is_some() {
        // No more entries: expiry waits for the restart.
        return None;
    }
    let at = shared.local.read(|state| state.next_expiry())?;
    let wait = Duration::from_millis(at.0.saturating_sub(now_ms().0));
    if shared.disk_full.load(Ordering::Acquire) {
        return Some(wait.max(FULL_DISK_TICK_RETRY));
    }
    Some(wait)
}

/// Checks, persists and applies one batch; answers every writer. Returns the entries committed.
async fn commit_batch<S: LogStore>(
    shared: &Shared,
    copy: &mut LocalCopy<S>,
    batch: &mut Vec<(Txn, Reply)>,
) -> u64 {
    if let Some(reason) = shared.failed.lock().expect("poisoned").clone() {
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(Err(WriteError::Storage(reason.clone())));
        }
        return 0;
    }
    let now = now_ms();
    let mut entries = Vec::with_capacity(batch.len());
    let mut waiting = Vec::with_capacity(batch.len());
    let (txns, replies): (Vec<Txn>, Vec<Reply>) = batch.drain(..).unzip();
    for (checked, reply) in check_batch(shared, copy, txns, now)
        .await
        .into_iter()
        .zip(replies)
    {
        match checked {
            Ok(entry) => {
                waiting.push((entry.lsn, reply));
                entries.push(entry);
            }
            Err(rejection) => {
                metrics::counter!("cstore_writes_total", "result" => "rejected").increment(1);
                let _ = reply.send(Err(WriteError::Rejected(rejection)));
            }
        }
    }
    let Some(last) = entries.last().map(|e| e.lsn) else {
        return 0;
    };
    let started = Instant::now();
    let result = copy.append(&entries).await;
    metrics::histogram!("cstore_fsync_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("cstore_commit_batch_size").record(entries.len() as f64);
    match result {
        Ok(()) => {
            shared.disk_full.store(false, Ordering::Release);
            let count = entries.len() as u64;
            if let Err(error) = copy.apply_committed(entries).await {
                // Each entry applied on the speculation, on this same state: a bug.
                panic!("a checked, durable entry does not apply: {error:?}");
            }
            metrics::counter!("cstore_writes_total", "result" => "ok")
                .increment(waiting.len() as u64);
            metrics::counter!("cstore_commit_batches_total").increment(1);
            metrics::gauge!("cstore_committed_lsn").set(last.0 as f64);
            for (lsn, reply) in waiting {
                let _ = reply.send(Ok(lsn));
            }
            count
        }
        Err(e) => {
            let error = WriteError::from(e.clone());
            let full = matches!(e, StorageError::Full(_));
            let kind = if full { "disk_full" } else { "io" };
            metrics::counter!("cstore_storage_errors_total", "kind" => kind).increment(1);
            metrics::counter!("cstore_writes_total", "result" => kind)
                .increment(waiting.len() as u64);
            if full {
                // The store cut what it wrote of this batch and is unchanged: the next batch
                // is written afresh. Nothing here was acknowledged.
                warn!(error = %e, entries = entries.len(), "log append failed: the disk is full; \
                      the batch is refused and later writes are tried again");
                shared.disk_full.store(true, Ordering::Release);
            } else {
                // Nothing is known about what reached the disk, and an fsync is never retried
                // on the same data: take no more writes; a restart recovers what is durable.
                error!(error = %e, "log append failed; the leader takes no more writes until \
                       restarted (reads go on)");
                fail(shared, e.to_string());
            }
            publish_what_is_durable(shared, copy).await;
            // Wake readers waiting for durability: what they wait for will never be durable.
            copy.wake_waiters();
            for (_, reply) in waiting {
                let _ = reply.send(Err(error.clone()));
            }
            0
        }
    }
}

/// Each transaction as the next log entry after those accepted before it, or why it would not
/// apply there; the state does not move (only `apply_committed` moves it, once the batch is
/// durable). A batch of plain inserts and puts is decided on the state as it is
/// ([`State::check_plain_writes`](cstore_core::state::State::check_plain_writes)); any other
/// batch on a speculation: each entry applied on top of the state and the ones before it, and
/// all of it taken off again. Debug builds check the first way against the second on every
/// batch.
async fn check_batch<S: LogStore>(
    shared: &Shared,
    copy: &LocalCopy<S>,
    txns: Vec<Txn>,
    now: TimestampMs,
) -> Vec<Result<LogEntry, Rejection>> {
    let decided = copy
        .local()
        .read(|state| Some((state.applied(), state.check_plain_writes(&txns, now)?)));
    let Some((mut prev, verdicts)) = decided else {
        return speculated(shared, copy, txns, now).await;
    };
    let expected = if cfg!(debug_assertions) {
        Some(speculated(shared, copy, txns.clone(), now).await)
    } else {
        None
    };
    let checked: Vec<_> = txns
        .into_iter()
        .zip(verdicts)
        .map(|(txn, verdict)| {
            verdict.map(|()| {
                let entry = LogEntry::new(prev, shared.term, now, txn);
                prev = entry.position();
                entry
            })
        })
        .collect();
    if let Some(expected) = expected {
        assert_eq!(
            checked, expected,
            "the plain-write check and the speculation disagree"
        );
    }
    checked
}

/// [`check_batch`] on a speculation.
async fn speculated<S: LogStore>(
    shared: &Shared,
    copy: &LocalCopy<S>,
    txns: Vec<Txn>,
    now: TimestampMs,
) -> Vec<Result<LogEntry, Rejection>> {
    copy.speculate(|state, speculations| {
        txns.into_iter()
            .map(|txn| {
                let entry = LogEntry::new(state.applied(), shared.term, now, txn);
                let speculation = state.apply_speculative(&entry)?;
                speculations.push(speculation);
                Ok(entry)
            })
            .collect()
    })
    .await
}

/// Marks the leader failed (the first reason stays).
fn fail(shared: &Shared, reason: String) {
    shared
        .failed
        .lock()
        .expect("poisoned")
        .get_or_insert(reason);
}

/// After a failed append: the state never held the batch, but a batch that spans segments may
/// fail in a later one after an earlier part was synced (and, after an IO error, stays in the
/// store). That part is durable, so it is applied and published like any committed entry,
/// though its writers were told it failed. If the store cannot even be read, the leader is
/// failed.
async fn publish_what_is_durable<S: LogStore>(shared: &Shared, copy: &mut LocalCopy<S>) {
    match copy.catch_up_with_store().await {
        Ok(0) => {}
        Ok(count) => {
            let lsn = shared.local.applied_lsn();
            metrics::gauge!("cstore_committed_lsn").set(lsn.0 as f64);
            info!(%lsn, count, "entries of a failed append that are durable were applied");
        }
        Err(LocalError::Storage(e)) => {
            error!(error = %e, "cannot read the log back after a failed append; \
                   the leader takes no more writes");
            fail(shared, e.to_string());
        }
        Err(LocalError::Apply { lsn, reason }) => {
            panic!("durable entry {lsn} of the leader's own log does not apply: {reason}");
        }
    }
}
