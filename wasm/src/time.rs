//! Time for the browser driver: the wall clock core wants as an argument, and timers.
//!
//! Core reads no clock, so the driver passes `now` into every call. In a browser the only
//! clock is `Date.now()` (`std::time::Instant` panics on wasm32), and sleeping means a
//! `setTimeout` callback resolving a promise. The global `setTimeout` is bound directly, so
//! the same code runs in a window and in a worker.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use cstore_core::TimestampMs;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, delay_ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// Milliseconds since the Unix epoch, by the browser's clock.
pub fn now() -> TimestampMs {
    TimestampMs(js_sys::Date::now() as u64)
}

/// Milliseconds with a fraction, for measurements (`performance.now()` where there is one).
pub fn precise_ms() -> f64 {
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .filter(|p| !p.is_undefined());
    if let Some(performance) = performance
        && let Ok(now) = js_sys::Reflect::get(&performance, &"now".into())
        && let Some(now) = now.dyn_ref::<js_sys::Function>()
        && let Ok(value) = now.call0(&performance)
        && let Some(ms) = value.as_f64()
    {
        return ms;
    }
    js_sys::Date::now()
}

/// Resolves after `ms` milliseconds. Dropping it first clears its `setTimeout`, so a timer
/// that lost a race (a request's timeout, a tick) does not keep node's event loop, and the
/// process, alive until it would have fired.
pub fn sleep(ms: u64) -> Sleep {
    let delay = ms.min(i32::MAX as u64) as i32;
    let mut handle = JsValue::UNDEFINED;
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        handle = set_timeout(&resolve, delay);
    });
    Sleep {
        handle,
        promise: wasm_bindgen_futures::JsFuture::from(promise),
        done: false,
    }
}

/// The future of [`sleep`].
#[derive(Debug)]
pub struct Sleep {
    handle: JsValue,
    promise: wasm_bindgen_futures::JsFuture,
    done: bool,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A setTimeout promise never rejects.
        match Pin::new(&mut self.promise).poll(cx) {
            Poll::Ready(_) => {
                self.done = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if !self.done {
            clear_timeout(&self.handle);
        }
    }
}

/// A one-shot wake-up that a sleeper can wait on beside a timer: `fire` wakes the waiter (or
/// the next one, if none waits yet). Used to cut a reconnect backoff short when the browser
/// comes back online, and to stop loops on close.
#[derive(Clone, Debug, Default)]
pub struct Signal {
    inner: Rc<RefCell<SignalInner>>,
}

#[derive(Debug, Default)]
struct SignalInner {
    fired: bool,
    waker: Option<Waker>,
}

impl Signal {
    /// A signal that has not fired.
    pub fn new() -> Signal {
        Signal::default()
    }

    /// Wakes the waiter; the next `wait` returns at once if nobody waits now.
    pub fn fire(&self) {
        let waker = {
            let mut inner = self.inner.borrow_mut();
            inner.fired = true;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Resolves once the signal fires, and resets it.
    pub fn wait(&self) -> SignalWait {
        SignalWait {
            inner: self.inner.clone(),
        }
    }
}

/// The future of [`Signal::wait`].
#[derive(Debug)]
pub struct SignalWait {
    inner: Rc<RefCell<SignalInner>>,
}

impl Future for SignalWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.fired {
            inner.fired = false;
            Poll::Ready(())
        } else {
            inner.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// Sleeps `ms`, or less if `signal` fires first. True when the signal cut it short.
pub async fn sleep_or(ms: u64, signal: &Signal) -> bool {
    use futures::future::{Either, select};
    let timer = Box::pin(sleep(ms));
    let woken = signal.wait();
    matches!(select(timer, woken).await, Either::Right(_))
}

/// A random u64 from `crypto.getRandomValues` (falling back to `Math.random`).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok());
    if let Some(crypto) = crypto
        && crypto.get_random_values_with_u8_array(&mut bytes).is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    let high = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    let low = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    (high << 32) | low
}
