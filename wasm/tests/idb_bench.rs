//! A small benchmark of `IdbStore::append` against plain IndexedDB writing the same bytes, in
//! the same browser run: how much the store's layer (chain checks, framing, copies into JS)
//! costs on top of IndexedDB itself, and what its segment layout buys.
//!
//! It appends 100K small log entries in batches of 1,000, one read-write transaction per batch
//! with `durability: "strict"`, awaiting `complete` each time, then reads them all back with
//! `read_range` (which checks every crc, hash and link). The baselines put the very same
//! framed bytes, already in `Uint8Array`s, with the same batching and durability: one value
//! per entry (strict, and relaxed for comparison), and one value per batch (the store's
//! layout, without the store). It only runs when built with `CSTORE_IDB_BENCH=1` (otherwise
//! it returns at once), and prints its table:
//!
//! ```text
//! CSTORE_IDB_BENCH=1 CHROMEDRIVER=$(command -v chromedriver) WASM_BINDGEN_TEST_TIMEOUT=600 \
//!   cargo test -p cstore-wasm --target wasm32-unknown-unknown --release --test idb_bench -- --nocapture
//! ```
#![cfg(target_arch = "wasm32")]

mod common;

use common::{now_ms, unique_name, wait_complete};
use cstore_core::log::codec::encode_entry;
use cstore_core::storage::LogStore;
use cstore_core::storage::conformance::entries_after;
use cstore_core::{LogEntry, LogPosition, Lsn, Term};
use cstore_wasm::idb::IdbStore;
use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::IdbTransaction;

wasm_bindgen_test_configure!(run_in_browser);

const ENTRIES: usize = 100_000;
const BATCH: usize = 1_000;

fn rate(count: usize, ms: f64) -> f64 {
    count as f64 / (ms / 1_000.0)
}

/// A read-write transaction on `store` with the given durability, as the store makes them.
fn raw_transaction(db: &web_sys::IdbDatabase, store: &str, durability: &str) -> IdbTransaction {
    let options = js_sys::Object::new();
    Reflect::set(&options, &"durability".into(), &durability.into()).expect("set");
    let transaction: js_sys::Function = Reflect::get(db, &"transaction".into())
        .expect("transaction")
        .unchecked_into();
    let names = Array::of1(&JsValue::from_str(store));
    transaction
        .call3(db, &names, &"readwrite".into(), &options)
        .expect("transaction")
        .unchecked_into()
}

/// Plain IndexedDB: the same bytes under the same keys, in the same batches; with
/// `per_batch`, each batch's records concatenated into one value (the layout a store that
/// keeps log segments, not entries, as values would have).
async fn baseline(values: &[Uint8Array], durability: &str, per_batch: bool) -> f64 {
    let name = unique_name("bench-raw");
    let db = {
        let req = common::factory().open_with_u32(&name, 1).expect("open");
        let on_upgrade = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::Event)>::new({
            let req = req.clone();
            move |_| {
                let db: web_sys::IdbDatabase = req.result().expect("db").unchecked_into();
                db.create_object_store("log").expect("create");
            }
        });
        req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
        let db: web_sys::IdbDatabase = common::wait(&req).await.unchecked_into();
        req.set_onupgradeneeded(None);
        db
    };
    let started = now_ms();
    for (b, batch) in values.chunks(BATCH).enumerate() {
        let tx = raw_transaction(&db, "log", durability);
        let store = tx.object_store("log").expect("store");
        if per_batch {
            let joined = Uint8Array::new_with_length(batch.iter().map(Uint8Array::length).sum());
            let mut offset = 0;
            for value in batch {
                joined.set(value, offset);
                offset += value.length();
            }
            store
                .put_with_key(&joined, &JsValue::from_f64(b as f64))
                .expect("put");
            wait_complete(&tx).await;
            continue;
        }
        for (i, value) in batch.iter().enumerate() {
            let lsn = (b * BATCH + i + 1) as f64;
            store
                .put_with_key(value, &JsValue::from_f64(lsn))
                .expect("put");
        }
        wait_complete(&tx).await;
    }
    let ms = now_ms() - started;
    db.close();
    let _ = common::factory().delete_database(&name);
    ms
}

#[wasm_bindgen_test]
async fn append_100k_entries_against_plain_indexeddb() {
    if option_env!("CSTORE_IDB_BENCH").is_none() {
        console_log!("idb_bench: skipped (build with CSTORE_IDB_BENCH=1 to run it)");
        return;
    }
    let entries: Vec<LogEntry> = entries_after(LogPosition::START, ENTRIES, Term(1), "bench");
    let values: Vec<Uint8Array> = entries
        .iter()
        .map(|e| {
            let mut bytes = Vec::new();
            encode_entry(e, &mut bytes);
            Uint8Array::from(bytes.as_slice())
        })
        .collect();
    let record_bytes: u32 = values.iter().map(Uint8Array::length).sum();

    // The layout baseline runs before the store, so that the store is not the only one that
    // finds a quiet, empty disk.
    let segments_ms = baseline(&values, "strict", true).await;

    let name = unique_name("bench-store");
    let mut store = IdbStore::open(&name).await.expect("open");
    let started = now_ms();
    for batch in entries.chunks(BATCH) {
        store.append(batch).await.expect("append");
    }
    let append_ms = now_ms() - started;

    let started = now_ms();
    let read = store
        .read_range(Lsn(1), Lsn(ENTRIES as u64 + 1))
        .await
        .expect("read_range");
    let read_ms = now_ms() - started;
    assert_eq!(read.len(), ENTRIES);
    assert!(
        read == entries,
        "the entries read back are the ones written"
    );
    store.close();
    IdbStore::destroy(&name).await.expect("destroy");

    let strict_ms = baseline(&values, "strict", false).await;
    let relaxed_ms = baseline(&values, "relaxed", false).await;

    console_log!(
        "idb_bench: {ENTRIES} entries ({:.1} MB framed, {} B/entry avg), batches of {BATCH}",
        f64::from(record_bytes) / 1e6,
        record_bytes as usize / ENTRIES
    );
    console_log!("| {:<50} | {:>6} | {:>9} |", "what", "ms", "entries/s");
    console_log!("|{:-<52}|{:->7}:|{:->10}:|", "", "", "");
    let row = |what: &str, ms: f64| {
        console_log!("| {what:<50} | {ms:>6.0} | {:>9.0} |", rate(ENTRIES, ms));
    };
    row("IdbStore::append (strict)", append_ms);
    row("plain IndexedDB put, same bytes (strict)", strict_ms);
    row("plain IndexedDB put, same bytes (relaxed)", relaxed_ms);
    row(
        "plain IndexedDB put, one value per batch (strict)",
        segments_ms,
    );
    row("IdbStore::read_range, all, verified", read_ms);
    console_log!(
        "idb_bench: IdbStore::append runs at {:.0}% of plain IndexedDB with one value per \
         batch, {:.1}x plain IndexedDB with one value per entry",
        100.0 * segments_ms / append_ms,
        strict_ms / append_ms
    );
}
