//! A request body with a total deadline: a client that sends its head and then dribbles (or
//! withholds) the body is cut off after `--body-timeout-ms`, whatever reads the body (the JSON
//! extractor, the Raft routes, the follower's forwarding).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::Limit;

/// The error a [`DeadlineBody`] fails with once its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {timeout_ms} ms")]
pub struct BodyTimedOut {
    /// The deadline, from the end of the head.
    pub timeout_ms: u64,
}

/// `inner`, failing with [`BodyTimedOut`] when it is not complete by its deadline.
#[derive(Debug)]
pub struct DeadlineBody<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
    timed_out: bool,
}

impl<B> DeadlineBody<B> {
    /// `inner` due in full within `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> DeadlineBody<B> {
        DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            timeout,
            timed_out: false,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if self.timed_out {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.timed_out = true;
            Limit::BodyTimeout.tripped();
            let timeout_ms = self.timeout.as_millis() as u64;
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut { timeout_ms }))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// True when `error` (from reading a body) is, or wraps, a [`BodyTimedOut`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        current = e.source();
    }
    false
}
