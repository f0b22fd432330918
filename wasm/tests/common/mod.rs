//! Helpers shared by the IndexedDB test files: unique database names and raw IndexedDB calls
//! that go around the store (to damage records, or to measure a baseline).
// Each test file uses its own subset of these.
#![allow(dead_code)]

use std::cell::Cell;

use js_sys::{Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbRequest, IdbTransaction};

thread_local! {
    static NEXT_DB: Cell<u32> = const { Cell::new(0) };
}

/// A database name no earlier run or test used.
pub fn unique_name(prefix: &str) -> String {
    let n = NEXT_DB.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    format!(
        "{prefix}-{}-{n}-{}",
        js_sys::Date::now() as u64,
        (js_sys::Math::random() * 1e9) as u64
    )
}

/// The global's IndexedDB factory.
pub fn factory() -> IdbFactory {
    Reflect::get(&js_sys::global(), &"indexedDB".into())
        .expect("indexedDB")
        .unchecked_into()
}

/// Waits for a request's success and returns its result.
pub async fn wait(req: &IdbRequest) -> JsValue {
    let promise = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    JsFuture::from(promise).await.expect("raw request");
    req.result().expect("result")
}

/// Waits for a transaction's `complete`.
pub async fn wait_complete(tx: &IdbTransaction) {
    let done = Promise::new(&mut |resolve, reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onabort(Some(&reject));
    });
    JsFuture::from(done).await.expect("raw transaction");
}

/// Opens `name` at its current version, or at `version` (creating no object stores).
pub async fn raw_open(name: &str, version: Option<u32>) -> IdbDatabase {
    let req = match version {
        Some(v) => factory().open_with_u32(name, v),
        None => factory().open(name),
    }
    .expect("open");
    wait(&req).await.unchecked_into()
}

/// Milliseconds from the page's high-resolution clock.
pub fn now_ms() -> f64 {
    Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| {
            let now = Reflect::get(&p, &"now".into()).ok()?;
            now.unchecked_into::<js_sys::Function>().call0(&p).ok()
        })
        .and_then(|v| v.as_f64())
        .unwrap_or_else(js_sys::Date::now)
}
