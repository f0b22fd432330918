//! WebAssembly bindings (the browser replica is its own issue).
