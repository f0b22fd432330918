//! WebAssembly bindings of Collection Store: the browser replica's face to JavaScript.
//!
//! The browser replica is core's state machines driven by browser IO: IndexedDB for storage,
//! a browser WebSocket for replication and `fetch` for writes. This crate is the thin driver
//! around them; it converts types and errors at one boundary and holds no logic of its own
//! (anything the server needs too lives in `cstore-core`).
//!
//! - [`api`]: the JavaScript API (`Replica` class), wrapped 1:1 by the npm package in `web/`;
//! - [`replica`]: the sync loop, the writer, local reads, live queries and status;
//! - [`transport`]: the WebSocket transport (and, for tests, an in-browser leader);
//! - `idb`: `IdbStore`, core's `LogStore` over IndexedDB, and `PendingStore` (wasm32 only; the
//!   record decoders build everywhere, for the fuzz targets in `fuzz/`);
//! - [`time`]: `Date.now()`, timers and randomness for core's `now` arguments.
//!
//! The crate also builds natively, so `cargo test --workspace` and clippy cover it; the code
//! that calls browser APIs compiles everywhere but only runs in a browser.

pub mod api;
pub mod error;
pub mod idb;
pub mod replica;
pub mod time;
pub mod transport;

use wasm_bindgen::prelude::wasm_bindgen;

/// The version of this package, so that the JavaScript side can check which wasm module it
/// loaded (exported to JavaScript as `version()`).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
