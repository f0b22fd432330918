//! A socket that reports its traffic to the connection's [`ConnDeadlines`], and the watch that
//! closes the connection when one of its deadlines passes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ConnDeadlines, Limit};

/// The deadlines of one connection, shared by its socket, its service and its watch.
#[derive(Debug)]
pub struct ConnClock {
    deadlines: Mutex<ConnDeadlines>,
    /// Woken when the next deadline moved earlier (the watch may be sleeping past it).
    earlier: Notify,
}

impl ConnClock {
    /// A connection accepted now.
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<ConnClock> {
        Arc::new(ConnClock {
            deadlines: Mutex::new(ConnDeadlines::new(
                Instant::now().into_std(),
                header_timeout,
                idle_timeout,
            )),
            earlier: Notify::new(),
        })
    }

    /// Applies `change` and wakes the watch if the next deadline moved earlier.
    pub fn update(&self, change: impl FnOnce(&mut ConnDeadlines, std::time::Instant)) {
        let now = Instant::now().into_std();
        let moved_earlier = {
            let mut deadlines = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
            let before = deadlines.deadline().map(|(at, _)| at);
            change(&mut deadlines, now);
            let after = deadlines.deadline().map(|(at, _)| at);
            match (before, after) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(before), Some(after)) => after < before,
            }
        };
        if moved_earlier {
            self.earlier.notify_one();
        }
    }

    /// True while a request is being handled.
    pub fn is_in_flight(&self) -> bool {
        self.deadlines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_in_flight()
    }

    fn deadline(&self) -> Option<(std::time::Instant, Limit)> {
        self.deadlines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .deadline()
    }

    fn expired(&self) -> Option<Limit> {
        self.deadlines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expired(Instant::now().into_std())
    }

    /// Completes with the limit that expired, when one does.
    pub async fn expiry(&self) -> Limit {
        loop {
            match self.deadline() {
                None => self.earlier.notified().await,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(Instant::from_std(at)) => {
                            if let Some(limit) = self.expired() {
                                return limit;
                            }
                        }
                        () = self.earlier.notified() => {}
                    }
                }
            }
        }
    }
}

/// A socket whose reads and writes move its connection's deadlines.
#[derive(Debug)]
pub struct TrackedIo<T> {
    inner: T,
    clock: Arc<ConnClock>,
}

impl<T> TrackedIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, clock: Arc<ConnClock>) -> TrackedIo<T> {
        TrackedIo { inner, clock }
    }

    /// The socket, no longer reporting to its clock (for a connection that leaves HTTP).
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.update(|d, now| d.on_read(now));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.update(|d, now| d.on_write(now));
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.update(|d, now| d.on_write(now));
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
