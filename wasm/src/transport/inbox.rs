//! The bounded queue between a connection's event handlers and the driver.
//!
//! Browser events arrive in callbacks, while the driver awaits frames in a loop; the inbox
//! sits between them. It is bounded in frames and bytes. Overrunning it closes the inbox
//! (the driver then drops the connection and reconnects, resuming where it was), because a
//! WebSocket offers no way to push back on the sender.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Most frames an inbox holds.
pub const INBOX_FRAMES_MAX: usize = 4096;
/// Most bytes an inbox holds.
pub const INBOX_BYTES_MAX: usize = 32 << 20;

/// What a connection yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// One frame's bytes.
    Frame(Vec<u8>),
    /// The connection is closed, for this reason (`code` is stable snake_case).
    Closed { code: String, reason: String },
}

/// A bounded frame queue with one waiting reader. Clones share the queue.
#[derive(Clone, Debug, Default)]
pub struct Inbox {
    inner: Rc<RefCell<InboxInner>>,
}

#[derive(Debug, Default)]
struct InboxInner {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: Option<(String, String)>,
    waker: Option<Waker>,
}

impl Inbox {
    /// An empty, open inbox.
    pub fn new() -> Inbox {
        Inbox::default()
    }

    /// Queues a frame; closes the inbox with `inbox_overflow` when a bound would be passed.
    /// Frames after the close are dropped.
    pub fn push(&self, frame: Vec<u8>) {
        let overflow = {
            let inner = self.inner.borrow();
            if inner.closed.is_some() {
                return;
            }
            inner.frames.len() >= INBOX_FRAMES_MAX || inner.bytes + frame.len() > INBOX_BYTES_MAX
        };
        if overflow {
            self.close(
                "inbox_overflow",
                "the leader sent more than the inbox holds",
            );
            return;
        }
        let waker = {
            let mut inner = self.inner.borrow_mut();
            inner.bytes += frame.len();
            inner.frames.push_back(frame);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Marks the inbox closed; frames already queued are still delivered first. The first
    /// close wins.
    pub fn close(&self, code: &str, reason: &str) {
        let waker = {
            let mut inner = self.inner.borrow_mut();
            if inner.closed.is_none() {
                inner.closed = Some((code.to_owned(), reason.to_owned()));
            }
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// True once closed (frames may still be queued).
    pub fn is_closed(&self) -> bool {
        self.inner.borrow().closed.is_some()
    }

    /// The next frame, or the close once every queued frame was taken.
    pub fn next(&self) -> InboxNext {
        InboxNext {
            inner: self.inner.clone(),
        }
    }
}

/// The future of [`Inbox::next`].
#[derive(Debug)]
pub struct InboxNext {
    inner: Rc<RefCell<InboxInner>>,
}

impl Future for InboxNext {
    type Output = Incoming;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Incoming> {
        let mut inner = self.inner.borrow_mut();
        if let Some(frame) = inner.frames.pop_front() {
            inner.bytes -= frame.len();
            return Poll::Ready(Incoming::Frame(frame));
        }
        if let Some((code, reason)) = &inner.closed {
            return Poll::Ready(Incoming::Closed {
                code: code.clone(),
                reason: reason.clone(),
            });
        }
        inner.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
