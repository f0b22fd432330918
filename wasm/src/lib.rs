//! WebAssembly bindings of Collection Store: the browser replica's face to JavaScript.
//!
//! The browser replica is core's state machines driven by browser IO: IndexedDB for storage
//! and a browser WebSocket for replication. This crate is the thin driver around them; it
//! converts types and errors at one boundary and holds no logic of its own (anything the
//! server needs too lives in `cstore-core`). The IndexedDB store and the WebSocket transport
//! are not written yet; what exists is the build and test setup that they will use, and the
//! suite in `tests/core_in_browser.rs` that proves core runs unchanged in headless Chromium.
//!
//! The crate also builds natively, so `cargo test --workspace` and clippy cover it; code that
//! only makes sense in a browser sits behind `#[cfg(target_arch = "wasm32")]`.

use wasm_bindgen::prelude::wasm_bindgen;

#[cfg(target_arch = "wasm32")]
pub mod idb;

/// The version of this package, so that the JavaScript side can check which wasm module it
/// loaded (exported to JavaScript as `version()`).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
