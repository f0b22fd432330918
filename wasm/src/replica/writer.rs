//! The writer: queues local writes durably, then sends them to the leader in order.
//!
//! ```text
//!  app write ─► applied to the view ─► to_save ─► PendingQueue.push ─► app's promise resolves
//!                                                      │
//!   the first unanswered writes (≤ the sender's batch_max), in seq order, when online:
//!   TxnSender.send_batch (≤ 5,000 in lists of ≤ 250 on the write channel /v1/write, or ≤ 500
//!   in one POST /v1/txns; each write committed on its own, answered one by one)
//!             committed ─► remove from queue; dropped from the view once its LSN is applied
//!             rejected  ─► remove from queue; rolled back; onRejected(seq, code, message, ops)
//!             retry     ─► stays queued; backoff (cut short when the browser comes back online)
//!   the whole request failed ─► all stay queued; backoff
//! ```
//!
//! One batch in flight at a time keeps the leader's per-client order trivially right (the
//! server commits a batch's writes in order); a resend after a lost answer is harmless once
//! the leader deduplicates by origin. A batch replaces the round trip per write that made an
//! offline queue drain slowly.

use cstore_core::replication::Backoff;
use cstore_core::{ErrorCode, Lsn, Txn};

use super::pending::PendingQueue;
use super::sender::{BatchOutcome, TxnOutcome, TxnSender, wire_ops};
use super::shared::{
    RejectedWrite, SaveRequest, SharedRef, changed, rejected, unless_closed, update_status,
};
use super::{BACKOFF_CAP_MS, BACKOFF_START_MS};
use crate::time::sleep_or;

/// Most new writes queued durably in one step (one IndexedDB transaction).
pub const SAVE_WRITES_MAX: usize = 1_000;

/// The writer task of one replica.
#[derive(Debug)]
pub struct Writer<P, X> {
    shared: SharedRef,
    queue: P,
    sender: X,
    client: String,
}

impl<P: PendingQueue, X: TxnSender> Writer<P, X> {
    /// A writer for `client` over a loaded queue.
    pub fn new(shared: SharedRef, queue: P, sender: X, client: String) -> Writer<P, X> {
        Writer {
            shared,
            queue,
            sender,
            client,
        }
    }

    /// Runs until the replica is closed.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(BACKOFF_START_MS, BACKOFF_CAP_MS);
        loop {
            if self.shared.borrow().status.closed {
                // Dropping the requests fails the calls still waiting with `closed`.
                self.shared.borrow_mut().to_save.clear();
                return;
            }
            self.save_new().await;
            let batch: Vec<(u64, Txn)> = {
                let inner = self.shared.borrow();
                // Only writes already queued durably, and not while offline.
                let saving = inner.to_save.front().map(|r| r.0);
                if inner.status.online {
                    inner
                        .local
                        .unsent()
                        .take_while(|w| saving.is_none_or(|s| w.seq < s))
                        .take(self.sender.batch_max())
                        .map(|w| (w.seq, w.txn.clone()))
                        .collect()
                } else {
                    Vec::new()
                }
            };
            let wake = self.shared.borrow().writer_wake.clone();
            if batch.is_empty() {
                if self.shared.borrow().to_save.is_empty() {
                    wake.wait().await;
                }
                continue;
            }
            // Closing abandons a request in flight: the writes stay queued durably, and their
            // resend on the next open is deduplicated by their origins.
            let sent = unless_closed(
                &self.shared,
                &wake,
                self.sender.send_batch(&self.client, &batch),
            );
            let Some(outcome) = sent.await else {
                continue;
            };
            let retry = match outcome {
                BatchOutcome::Each(outcomes) => self.settle(&batch, outcomes).await,
                BatchOutcome::Retry { code, message } => Some((code, message)),
            };
            match retry {
                None => backoff.reset(),
                Some((code, message)) => {
                    update_status(&self.shared, |s| s.set_error(&code, &message));
                    sleep_or(backoff.next_delay_ms(js_sys::Math::random()), &wake).await;
                }
            }
        }
    }

    /// Acts on the answers to the first `outcomes.len()` writes of `batch`: committed ones
    /// leave the durable queue (and the view once their entry arrives), rejected ones are
    /// rolled back and reported, the others stay queued for a resend. Returns the first
    /// retryable failure, if any.
    async fn settle(
        &mut self,
        batch: &[(u64, Txn)],
        outcomes: Vec<TxnOutcome>,
    ) -> Option<(String, String)> {
        assert!(
            !outcomes.is_empty() && outcomes.len() <= batch.len(),
            "{} outcomes for a batch of {}",
            outcomes.len(),
            batch.len()
        );
        // The answered prefix leaves the durable queue in one step; answered writes after a
        // retryable one, one at a time.
        let answered_prefix = outcomes
            .iter()
            .take_while(|o| !matches!(o, TxnOutcome::Retry { .. }))
            .count();
        if answered_prefix > 0 {
            self.forget_through(batch[answered_prefix - 1].0).await;
        }
        // A write committed later in the batch moves this client's origin record past every
        // write before it: those can no longer commit, so a retryable failure before it is
        // final. `ack_unknown` means the write is in the log (it commits or is truncated with
        // the later one); any other retryable failure means it was not written.
        let last_committed = outcomes
            .iter()
            .rposition(|o| matches!(o, TxnOutcome::Committed { .. }));
        let mut retry = None;
        let mut committed_any = false;
        for (at, ((seq, _), outcome)) in batch.iter().zip(outcomes).enumerate() {
            let seq = *seq;
            let overtaken = last_committed.is_some_and(|last| last > at);
            let outcome = match outcome {
                TxnOutcome::Retry { code, .. } if overtaken && code == "ack_unknown" => {
                    TxnOutcome::Committed { lsn: Lsn::ZERO }
                }
                TxnOutcome::Retry { code, message } if overtaken => TxnOutcome::Rejected {
                    code: "not_committed".into(),
                    message: format!(
                        "the server did not write it ({code}: {message}) but committed a later \
                         write of this client: it can no longer commit; write it again"
                    ),
                },
                outcome => outcome,
            };
            let outcome = match outcome {
                // A resend of a write older than the client's last committed one: an earlier
                // attempt committed it (its answer was lost, or it was `ack_unknown`, and later
                // writes committed since; only the last seq is answered `duplicate`). The
                // state's origin record confirms it when that entry arrives. (A server that
                // committed a later write while this one was refused as retryable and never
                // written would break the in-order contract of `/v1/txns`.)
                TxnOutcome::Rejected { code, .. } if code == "duplicate_origin" => {
                    TxnOutcome::Committed { lsn: Lsn::ZERO }
                }
                outcome => outcome,
            };
            match outcome {
                TxnOutcome::Committed { lsn } => {
                    if at >= answered_prefix {
                        self.forget(seq).await;
                    }
                    committed_any = true;
                    self.shared.borrow_mut().local.mark_committed(seq, lsn);
                }
                TxnOutcome::Rejected { code, message } => {
                    if at >= answered_prefix {
                        self.forget(seq).await;
                    }
                    let rolled_back = self.shared.borrow_mut().local.reject(seq);
                    if let Some((write, touched)) = rolled_back {
                        changed(&self.shared, &touched);
                        let ops_json = serde_json::Value::Array(wire_ops(&write.txn)).to_string();
                        rejected(
                            &self.shared,
                            RejectedWrite {
                                seq,
                                code,
                                message,
                                ops_json,
                            },
                        );
                    }
                }
                TxnOutcome::Retry { code, message } => {
                    retry.get_or_insert((code, message));
                }
            }
        }
        if committed_any && retry.is_none() {
            update_status(&self.shared, |s| s.last_error = None);
        }
        retry
    }

    /// Queues every write waiting in `to_save` durably and answers its caller: up to
    /// [`SAVE_WRITES_MAX`] at a time in one step; if that step fails, one at a time, so each
    /// gets its own answer. A write that cannot be saved is rolled back.
    async fn save_new(&mut self) {
        loop {
            let requests: Vec<SaveRequest> = {
                let mut inner = self.shared.borrow_mut();
                let take = inner.to_save.len().min(SAVE_WRITES_MAX);
                inner.to_save.drain(..take).collect()
            };
            if requests.is_empty() {
                return;
            }
            let writes: Vec<(u64, Txn)> = requests
                .iter()
                .map(|(seq, txn, _)| (*seq, txn.clone()))
                .collect();
            if requests.len() > 1 && self.queue.push_many(&writes).await.is_ok() {
                for (_, _, done) in requests {
                    let _ = done.send(Ok(()));
                }
                continue;
            }
            for (seq, txn, done) in requests {
                let result = self.queue.push(seq, &txn).await;
                if let Err(error) = &result {
                    update_status(&self.shared, |s| {
                        s.set_error(error.code(), &error.to_string())
                    });
                    let rolled_back = self.shared.borrow_mut().local.reject(seq);
                    if let Some((_, touched)) = rolled_back {
                        changed(&self.shared, &touched);
                    }
                }
                let _ = done.send(result);
            }
        }
    }

    /// Removes every write through `seq` from the durable queue (see [`Writer::forget`]).
    async fn forget_through(&mut self, seq: u64) {
        if let Err(error) = self.queue.remove_through(seq).await {
            update_status(&self.shared, |s| {
                s.set_error(error.code(), &error.to_string())
            });
        }
    }

    /// Removes a finished write from the durable queue (a failure only leaves a resend for
    /// the next open, which the leader deduplicates).
    async fn forget(&mut self, seq: u64) {
        if let Err(error) = self.queue.remove(seq).await {
            update_status(&self.shared, |s| {
                s.set_error(error.code(), &error.to_string())
            });
        }
    }
}
