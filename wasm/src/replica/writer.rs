//! The writer: queues local writes durably, then sends them to the leader in order.
//!
//! ```text
//!  app write ─► applied to the view ─► to_save ─► PendingQueue.push ─► app's promise resolves
//!                                                      │
//!          in seq order, one at a time, when online:  TxnSender.send
//!             committed ─► remove from queue; dropped from the view once its LSN is applied
//!             rejected  ─► remove from queue; rolled back; onRejected(seq, code, message, ops)
//!             retry     ─► backoff (cut short when the browser comes back online)
//! ```
//!
//! One write in flight at a time keeps the leader's per-client order trivially right; a
//! resend after a lost answer is harmless once the leader deduplicates by origin.

use cstore_core::ErrorCode;
use cstore_core::replication::Backoff;

use super::pending::PendingQueue;
use super::sender::{TxnOutcome, TxnSender, wire_ops};
use super::shared::{RejectedWrite, SharedRef, changed, rejected, unless_closed, update_status};
use super::{BACKOFF_CAP_MS, BACKOFF_START_MS};
use crate::time::sleep_or;

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
            let next = {
                let inner = self.shared.borrow();
                let saving = inner.to_save.front().map(|r| r.0);
                inner
                    .local
                    .next_unsent()
                    .filter(|w| saving.is_none_or(|s| w.seq < s))
                    .map(|w| (w.seq, w.txn.clone()))
                    .filter(|_| inner.status.online)
            };
            let wake = self.shared.borrow().writer_wake.clone();
            let Some((seq, txn)) = next else {
                if self.shared.borrow().to_save.is_empty() {
                    wake.wait().await;
                }
                continue;
            };
            // Closing abandons a request in flight: the write stays queued durably, and its
            // resend on the next open is deduplicated by its origin.
            let sent = unless_closed(
                &self.shared,
                &wake,
                self.sender.send(&self.client, seq, &txn),
            );
            let Some(outcome) = sent.await else {
                continue;
            };
            match outcome {
                TxnOutcome::Committed { lsn } => {
                    backoff.reset();
                    self.forget(seq).await;
                    // It leaves the queue when its entry arrives (or already did).
                    self.shared.borrow_mut().local.mark_committed(seq, lsn);
                    update_status(&self.shared, |s| s.last_error = None);
                }
                TxnOutcome::Rejected { code, message } => {
                    backoff.reset();
                    self.forget(seq).await;
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
                    update_status(&self.shared, |s| s.set_error(&code, &message));
                    sleep_or(backoff.next_delay_ms(js_sys::Math::random()), &wake).await;
                }
            }
        }
    }

    /// Queues every write waiting in `to_save` durably and answers its caller. A write that
    /// cannot be saved is rolled back.
    async fn save_new(&mut self) {
        loop {
            let request = self.shared.borrow_mut().to_save.pop_front();
            let Some((seq, txn, done)) = request else {
                return;
            };
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
