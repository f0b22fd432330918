//! What the driver, the writer and the API share, and how changes reach listeners.
//!
//! Everything runs on the browser's one thread, so sharing is an `Rc<RefCell<_>>` that no
//! one borrows across an `.await`. Listeners (watch callbacks, `onStatus`, `onRejected`) are
//! never called while it is borrowed: a change only marks what is due and schedules one
//! flush, a microtask later, which collects the calls, lets go, and then calls them. So a
//! batch of replicated entries, a local write and the status changes they cause reach each
//! listener once, after the whole batch.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use std::collections::VecDeque;

use cstore_core::storage::StorageResult;
use cstore_core::{Lsn, Txn};
use futures::channel::oneshot;

use super::local::{LocalState, Touched};
use super::status::Status;
use super::watch::Watches;
use crate::time::Signal;

/// A write the leader refused, as `onRejected` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedWrite {
    /// The write's sequence number in this client.
    pub seq: u64,
    /// The leader's error code.
    pub code: String,
    /// The leader's message.
    pub message: String,
    /// The write's operations, as `/v1/txn` operation objects (JSON text).
    pub ops_json: String,
}

/// A write waiting to be queued durably: seq, transaction, and who waits for the result.
pub type SaveRequest = (u64, Txn, oneshot::Sender<StorageResult<()>>);

/// An `onStatus` listener.
pub type StatusListener = Rc<dyn Fn(&Status)>;
/// An `onRejected` listener.
pub type RejectedListener = Rc<dyn Fn(&RejectedWrite)>;

/// The state one replica's tasks share.
#[derive(Default)]
pub struct Shared {
    /// Confirmed state, pending writes and the view reads see.
    pub local: LocalState,
    /// What `status()` reports.
    pub status: Status,
    /// Live queries.
    pub watches: Watches,
    status_listeners: Vec<StatusListener>,
    rejected_listeners: Vec<RejectedListener>,
    rejected_due: Vec<RejectedWrite>,
    status_due: bool,
    flush_scheduled: bool,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// Writes applied locally that the writer must still queue durably, each with the
    /// channel that tells the app's call when it is saved.
    pub to_save: VecDeque<SaveRequest>,
    /// Wakes the writer (a new write, a connection, close).
    pub writer_wake: Signal,
    /// Wakes the sync loop (close, back online).
    pub sync_wake: Signal,
    /// Linearizable reads waiting for the local copy to apply an LSN.
    pub applied_waiters: Vec<(Lsn, oneshot::Sender<()>)>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("status", &self.status)
            .field("watches", &self.watches)
            .finish_non_exhaustive()
    }
}

/// A handle on the shared state.
pub type SharedRef = Rc<RefCell<Shared>>;

impl Shared {
    /// Adds an `onStatus` listener.
    pub fn on_status(&mut self, listener: StatusListener) {
        self.status_listeners.push(listener);
    }

    /// Adds an `onRejected` listener.
    pub fn on_rejected(&mut self, listener: RejectedListener) {
        self.rejected_listeners.push(listener);
    }

    /// Resolves when nothing is pending (at once if nothing is).
    pub fn flush_waiter(&mut self) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        if self.local.pending_count() == 0 {
            let _ = sender.send(());
        } else {
            self.flush_waiters.push(sender);
        }
        receiver
    }

    /// Wakes every flush waiter (the replica closed).
    pub fn release_flush_waiters(&mut self) {
        for waiter in self.flush_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    fn sync_pending_count(&mut self) {
        let pending = self.local.pending_count();
        if self.status.pending_writes != pending {
            self.status.pending_writes = pending;
            self.status_due = true;
        }
        if pending == 0 {
            self.release_flush_waiters();
        }
    }
}

/// Awaits `work` unless the replica is closed first (then `None`, and `work` is dropped).
/// `wake` is the loop's own signal: it also fires for other reasons, which are ignored here.
pub async fn unless_closed<F: std::future::Future>(
    shared: &SharedRef,
    wake: &Signal,
    work: F,
) -> Option<F::Output> {
    use futures::future::{Either, select};
    let mut work = std::pin::pin!(work);
    loop {
        if shared.borrow().status.closed {
            return None;
        }
        match select(work.as_mut(), wake.wait()).await {
            Either::Left((output, _)) => return Some(output),
            Either::Right(((), _)) => {
                if shared.borrow().status.closed {
                    return None;
                }
            }
        }
    }
}

/// Records that `touched` collections changed and that the status may have; schedules one
/// flush.
pub fn changed(shared: &SharedRef, touched: &Touched) {
    let mut inner = shared.borrow_mut();
    inner.watches.mark(touched);
    let applied = inner.local.applied().lsn;
    if inner.status.applied_lsn != applied {
        inner.status.applied_lsn = applied;
        inner.status_due = true;
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut inner.applied_waiters)
            .into_iter()
            .partition(|(lsn, _)| *lsn <= applied);
        inner.applied_waiters = waiting;
        for (_, waiter) in due {
            let _ = waiter.send(());
        }
    }
    inner.sync_pending_count();
    drop(inner);
    schedule_flush(shared);
}

/// Records a status change (the closure edits it) and schedules a flush.
pub fn update_status(shared: &SharedRef, edit: impl FnOnce(&mut Status)) {
    let mut inner = shared.borrow_mut();
    let before = inner.status.clone();
    edit(&mut inner.status);
    if inner.status != before {
        inner.status_due = true;
    }
    drop(inner);
    schedule_flush(shared);
}

/// Queues an `onRejected` report and schedules a flush.
pub fn rejected(shared: &SharedRef, write: RejectedWrite) {
    shared.borrow_mut().rejected_due.push(write);
    schedule_flush(shared);
}

/// Schedules a flush of due notifications one microtask from now, unless one is scheduled.
pub fn schedule_flush(shared: &SharedRef) {
    {
        let mut inner = shared.borrow_mut();
        let due = inner.status_due || !inner.rejected_due.is_empty() || inner.watches.any_dirty();
        if inner.flush_scheduled || !due {
            return;
        }
        inner.flush_scheduled = true;
    }
    let weak: Weak<RefCell<Shared>> = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        if let Some(shared) = weak.upgrade() {
            flush(&shared);
        }
    });
}

/// Delivers every due notification now: rejections first (so an app sees why a document
/// vanished before the watch shows it gone), then watches, then the status.
pub fn flush(shared: &SharedRef) {
    let (rejections, watches, status) = {
        let mut guard = shared.borrow_mut();
        let inner = &mut *guard;
        inner.flush_scheduled = false;
        let rejections: Vec<(Vec<RejectedListener>, RejectedWrite)> = inner
            .rejected_due
            .drain(..)
            .map(|r| (inner.rejected_listeners.clone(), r))
            .collect();
        let watches = inner.watches.evaluate(inner.local.current());
        let status = if std::mem::take(&mut inner.status_due) {
            Some((inner.status_listeners.clone(), inner.status.clone()))
        } else {
            None
        };
        (rejections, watches, status)
    };
    for (listeners, write) in rejections {
        for listener in listeners {
            listener(&write);
        }
    }
    for (callback, docs) in watches {
        callback(&docs);
    }
    if let Some((listeners, status)) = status {
        for listener in listeners {
            listener(&status);
        }
    }
}
