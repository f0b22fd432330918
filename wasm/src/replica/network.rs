//! The browser's idea of being online: `navigator.onLine` and the `online`/`offline` events.
//!
//! When the browser goes offline the sync loop drops its connection at once (rather than
//! waiting for a timeout) and stops retrying; when it comes back online both the sync loop
//! and the writer are woken to try immediately instead of finishing their backoff.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, EventTarget};

use super::shared::{SharedRef, update_status};

/// `navigator.onLine`, or true where there is no navigator.
pub fn navigator_online() -> bool {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).ok();
    navigator
        .and_then(|n| js_sys::Reflect::get(&n, &"onLine".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// The `online`/`offline` listeners of one replica; removed on drop.
#[derive(Debug)]
pub struct NetworkWatch {
    target: Option<EventTarget>,
    on_online: Closure<dyn FnMut(Event)>,
    on_offline: Closure<dyn FnMut(Event)>,
}

impl NetworkWatch {
    /// Starts listening on the global object (window or worker scope).
    pub fn start(shared: &SharedRef) -> NetworkWatch {
        let on_online = {
            let shared = shared.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| set_online(&shared, true))
        };
        let on_offline = {
            let shared = shared.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| set_online(&shared, false))
        };
        let target = js_sys::global().dyn_into::<EventTarget>().ok();
        if let Some(target) = &target {
            let _ = target
                .add_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
            let _ = target
                .add_event_listener_with_callback("offline", on_offline.as_ref().unchecked_ref());
        }
        NetworkWatch {
            target,
            on_online,
            on_offline,
        }
    }
}

impl Drop for NetworkWatch {
    fn drop(&mut self) {
        if let Some(target) = &self.target {
            let _ = target.remove_event_listener_with_callback(
                "online",
                self.on_online.as_ref().unchecked_ref(),
            );
            let _ = target.remove_event_listener_with_callback(
                "offline",
                self.on_offline.as_ref().unchecked_ref(),
            );
        }
    }
}

/// Records the browser's network state and wakes the loops.
pub fn set_online(shared: &SharedRef, online: bool) {
    update_status(shared, |status| status.online = online);
    let inner = shared.borrow();
    inner.sync_wake.fire();
    inner.writer_wake.fire();
}
