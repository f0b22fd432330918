//! A watch channel that wakes its receivers in a fixed order.
//!
//! tokio's `watch` spreads a channel's waiting receivers over eight `Notify`s chosen with
//! tokio's thread-local RNG (`BigNotify`, to ease lock contention), and tokio seeds that RNG
//! from the OS unless built with `--cfg tokio_unstable` (`Builder::rng_seed`). openraft waits
//! on watch channels with several tasks at once (replication streams, heartbeat workers,
//! metrics), so with tokio's watch the order in which those tasks run after a change, and so
//! the whole run, differs from process to process. This channel has the same semantics as
//! tokio's (versions, `changed`, `borrow_and_update`, closing when the last sender or every
//! receiver goes) and wakes receivers in the order they started waiting.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::task::{Context, Poll, Waker};

use openraft::OptionalSend;
use openraft::OptionalSync;
use openraft::rt::watch::{RecvError, SendError, Watch, WatchReceiver, WatchSender};

/// The deterministic watch of the simulation's runtime.
#[derive(Debug)]
pub struct SimWatch;

struct Value<T> {
    value: T,
    version: u64,
}

struct Waiters {
    next_id: u64,
    /// Waiting receivers in the order they started waiting.
    list: Vec<(u64, Waker)>,
}

struct Shared<T> {
    value: RwLock<Value<T>>,
    waiters: Mutex<Waiters>,
    senders: AtomicUsize,
    receivers: AtomicUsize,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, Value<T>> {
        self.value.read().expect("watch lock poisoned")
    }

    fn closed(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0
    }

    fn wake_all(&self) {
        let list = std::mem::take(&mut self.waiters.lock().expect("watch lock poisoned").list);
        for (_, waker) in list {
            waker.wake();
        }
    }
}

/// A borrow of the current value.
pub struct SimRef<'a, T>(RwLockReadGuard<'a, Value<T>>);

impl<T> Deref for SimRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0.value
    }
}

pub struct SimWatchSender<T> {
    shared: Arc<Shared<T>>,
}

pub struct SimWatchReceiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T> Clone for SimWatchSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        SimWatchSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for SimWatchSender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.wake_all();
        }
    }
}

impl<T> Clone for SimWatchReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::AcqRel);
        SimWatchReceiver {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}

impl<T> Drop for SimWatchReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Watch for SimWatch {
    type Sender<T: OptionalSend + OptionalSync> = SimWatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = SimWatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = SimRef<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(
        init: T,
    ) -> (SimWatchSender<T>, SimWatchReceiver<T>) {
        let shared = Arc::new(Shared {
            value: RwLock::new(Value {
                value: init,
                version: 0,
            }),
            waiters: Mutex::new(Waiters {
                next_id: 0,
                list: Vec::new(),
            }),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        });
        (
            SimWatchSender {
                shared: Arc::clone(&shared),
            },
            SimWatchReceiver { shared, seen: 0 },
        )
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<SimWatch, T> for SimWatchSender<T> {
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.load(Ordering::Acquire) == 0 {
            return Err(SendError(value));
        }
        self.send_if_modified(|current| {
            *current = value;
            true
        });
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = {
            let mut v = self.shared.value.write().expect("watch lock poisoned");
            let modified = modify(&mut v.value);
            if modified {
                v.version += 1;
            }
            modified
        };
        if modified {
            self.shared.wake_all();
        }
        modified
    }

    fn borrow_watched(&self) -> SimRef<'_, T> {
        SimRef(self.shared.read())
    }

    fn subscribe(&self) -> SimWatchReceiver<T> {
        self.shared.receivers.fetch_add(1, Ordering::AcqRel);
        let seen = self.shared.read().version;
        SimWatchReceiver {
            shared: Arc::clone(&self.shared),
            seen,
        }
    }
}

/// The future of [`WatchReceiver::changed`].
struct Changed<'a, T> {
    receiver: &'a mut SimWatchReceiver<T>,
    /// Its place in the waiting list, once it waits.
    id: Option<u64>,
}

impl<T> Future for Changed<'_, T> {
    type Output = Result<(), RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = Arc::clone(&this.receiver.shared);
        let version = shared.read().version;
        if version != this.receiver.seen {
            this.receiver.seen = version;
            return Poll::Ready(Ok(()));
        }
        if shared.closed() {
            return Poll::Ready(Err(RecvError(())));
        }
        let mut waiters = shared.waiters.lock().expect("watch lock poisoned");
        let id = *this.id.get_or_insert_with(|| {
            waiters.next_id += 1;
            waiters.next_id
        });
        match waiters.list.iter_mut().find(|(w, _)| *w == id) {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => waiters.list.push((id, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl<T> Drop for Changed<'_, T> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let mut waiters = self
                .receiver
                .shared
                .waiters
                .lock()
                .expect("watch lock poisoned");
            waiters.list.retain(|(w, _)| *w != id);
        }
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<SimWatch, T> for SimWatchReceiver<T> {
    async fn changed(&mut self) -> Result<(), RecvError> {
        Changed {
            receiver: self,
            id: None,
        }
        .await
    }

    fn borrow_watched(&self) -> SimRef<'_, T> {
        SimRef(self.shared.read())
    }

    fn borrow_and_update(&mut self) -> SimRef<'_, T> {
        let guard = self.shared.read();
        self.seen = guard.version;
        SimRef(guard)
    }
}
