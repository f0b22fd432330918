//! Figures for the browser replica, measured in headless Chromium: bootstrap rate, local
//! `get`, and an indexed `find` of 100 documents, through the JavaScript face (`Replica`,
//! including the JSON conversion an app pays) and through the Rust handle.
//!
//! Ignored by default (they take seconds and mean little in a debug build). Run in release,
//! with the size-optimised code the npm package ships (`opt-level` "s" or "z"):
//! `CARGO_PROFILE_RELEASE_OPT_LEVEL=z CHROMEDRIVER=$(command -v chromedriver) cargo test
//! --release -p cstore-wasm --target wasm32-unknown-unknown --test replica_figures --
//! --include-ignored --nocapture`
//!
//! Bootstrap is measured twice: into the in-memory store (the sync loop alone: transfer,
//! verification, state rebuild) and into IndexedDB (what a browser pays: `IdbStore`).

#![cfg(target_arch = "wasm32")]

mod common;
mod support;

use cstore_core::doc::RawDoc;
use cstore_core::query::FindQuery;
use cstore_core::{Op, Txn};
use cstore_wasm::api::{Replica, open_idb_store};
use cstore_wasm::replica::{Parts, ReplicaHandle};
use cstore_wasm::time::precise_ms;
use cstore_wasm::transport::loopback::LoopbackLeader;
use cstore_wasm::transport::loopback::LoopbackTransport;
use serde_json::json;
use support::{Profile, caught_up, index, open};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const DOCS: usize = 100_000;
const PER_TXN: usize = 1_000;
/// Documents share a `group` 100 at a time, so an indexed find of one group returns 100.
const GROUP: usize = 100;

fn small_doc(i: usize) -> RawDoc {
    RawDoc::from_value(&json!({
        "_id": format!("d{i:06}"), "group": i / GROUP, "title": format!("note {i}"), "done": i.is_multiple_of(3)
    }))
    .unwrap()
}

/// A leader holding `DOCS` small documents with an index on `group`.
fn loaded_leader() -> LoopbackLeader {
    let leader = LoopbackLeader::new();
    leader.commit(index("notes", "group")).unwrap();
    for start in (0..DOCS).step_by(PER_TXN) {
        let ops = (start..start + PER_TXN)
            .map(|i| Op::Insert {
                collection: "notes".into(),
                doc: small_doc(i),
            })
            .collect();
        leader.commit(Txn::new(ops)).unwrap();
    }
    leader
}

#[wasm_bindgen_test]
#[ignore]
async fn bootstrap_get_and_find_figures() {
    let leader = loaded_leader();

    // Entries: 101 transactions streamed and applied.
    let started = precise_ms();
    let replica = open(&leader, &Profile::default()).await;
    caught_up(&replica, &leader).await;
    let entries_ms = precise_ms() - started;
    replica.close().await;

    // Snapshot: the same data as one snapshot transfer.
    leader.compact();
    let started = precise_ms();
    let replica = open(&leader, &Profile::default()).await;
    caught_up(&replica, &leader).await;
    let snapshot_ms = precise_ms() - started;
    assert_eq!(leader.sent().snapshots, 1);
    console_log!(
        "bootstrap of {DOCS} docs (memory store): entries {:.0} ms = {:.0} docs/s; snapshot {:.0} ms = {:.0} docs/s",
        entries_ms,
        DOCS as f64 / entries_ms * 1000.0,
        snapshot_ms,
        DOCS as f64 / snapshot_ms * 1000.0
    );

    let by_group = FindQuery::parse(&json!({"filter": {"group": 421}})).unwrap();
    let rounds = 20_000;
    let find_rounds = 500;
    let started = precise_ms();
    let mut found = 0;
    for i in 0..rounds {
        let id = format!("d{:06}", (i * 7919) % DOCS);
        replica.with_doc("notes", &id, |doc| found += doc.is_some() as usize);
    }
    let rust_get_us = (precise_ms() - started) * 1000.0 / rounds as f64;
    assert_eq!(found, rounds);
    let started = precise_ms();
    for _ in 0..find_rounds {
        let n = replica
            .find_with("notes", &by_group, |docs| docs.len())
            .unwrap();
        assert_eq!(n, GROUP);
    }
    let rust_find_ms = (precise_ms() - started) / find_rounds as f64;

    let js = Replica::from_handle(replica);
    let ids: Vec<String> = (0..rounds)
        .map(|i| format!("d{:06}", (i * 7919) % DOCS))
        .collect();
    let query = js_sys::JSON::parse(r#"{"filter": {"group": 421}}"#).unwrap();
    // Three runs; the median is reported (the page's GC can land in any one of them).
    let mut gets = Vec::new();
    let mut finds = Vec::new();
    for _ in 0..3 {
        let started = precise_ms();
        for id in &ids {
            assert!(!js.get("notes", id).unwrap().is_undefined());
        }
        gets.push((precise_ms() - started) * 1000.0 / rounds as f64);
        let started = precise_ms();
        for _ in 0..find_rounds {
            let docs = js.find("notes", query.clone()).unwrap();
            assert_eq!(js_sys::Array::from(&docs).length() as usize, GROUP);
        }
        finds.push((precise_ms() - started) / find_rounds as f64);
    }
    let js_get_us = median(&mut gets);
    let js_find_ms = median(&mut finds);
    console_log!(
        "get (median of 3 runs of {rounds}): {js_get_us:.2} µs through JS (Rust handle {rust_get_us:.2} µs); indexed find of {GROUP}: {js_find_ms:.3} ms through JS (Rust handle {rust_find_ms:.3} ms)"
    );

    // The same two bootstraps into IndexedDB (a fresh database each), after one warm-up.
    leader_into_idb(&leader, "warm-up").await;
    let leader = loaded_leader();
    let entries_idb_ms = leader_into_idb(&leader, "entries").await;
    leader.compact();
    let snapshot_idb_ms = leader_into_idb(&leader, "snapshot").await;
    console_log!(
        "bootstrap of {DOCS} docs into IndexedDB: entries {:.0} ms = {:.0} docs/s; snapshot {:.0} ms = {:.0} docs/s",
        entries_idb_ms,
        DOCS as f64 / entries_idb_ms * 1000.0,
        snapshot_idb_ms,
        DOCS as f64 / snapshot_idb_ms * 1000.0
    );

    // Baseline: the same documents as JS objects, put in one transaction of plain IndexedDB
    // (what Dexie's `bulkPut` does), in the same browser run.
    let bulk_ms = plain_bulk_put().await;
    console_log!(
        "plain IndexedDB bulk put of the same {DOCS} docs: {:.0} ms = {:.0} docs/s (replica bootstrap at {:.0}% of it via entries, {:.0}% via snapshot)",
        bulk_ms,
        DOCS as f64 / bulk_ms * 1000.0,
        bulk_ms / entries_idb_ms * 100.0,
        bulk_ms / snapshot_idb_ms * 100.0
    );

    wasm_bindgen_futures::JsFuture::from(js.close())
        .await
        .unwrap();
}

/// Opens a replica of `leader` over a fresh IndexedDB database and waits until it caught up;
/// the milliseconds it took.
async fn leader_into_idb(leader: &LoopbackLeader, what: &str) -> f64 {
    let name = format!("figures-{what}-{:x}", cstore_wasm::time::random_u64());
    let started = precise_ms();
    let (store, _) = open_idb_store(&name).await.unwrap();
    let pending = store.pending();
    let replica = ReplicaHandle::open(Parts {
        store,
        transport: LoopbackTransport::new(leader),
        pending,
        sender: leader.clone(),
    })
    .await
    .unwrap();
    caught_up(&replica, leader).await;
    let ms = precise_ms() - started;
    replica.close().await;
    ms
}

/// Puts the `DOCS` documents, already JS objects, into a fresh database in one read-write
/// transaction, each under its `_id`; the milliseconds from the first put to `complete`.
async fn plain_bulk_put() -> f64 {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    let docs: Vec<(String, wasm_bindgen::JsValue)> = (0..DOCS)
        .map(|i| {
            let doc = small_doc(i);
            (doc.id(), js_sys::JSON::parse(doc.as_str()).unwrap())
        })
        .collect();
    let name = common::unique_name("bulk-put");
    let request = common::factory().open_with_u32(&name, 1).unwrap();
    let for_upgrade = request.clone();
    let upgrade = Closure::once(move |_: web_sys::Event| {
        let db: web_sys::IdbDatabase = for_upgrade.result().unwrap().unchecked_into();
        db.create_object_store("docs").unwrap();
    });
    request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
    let db: web_sys::IdbDatabase = common::wait(&request).await.unchecked_into();
    let started = precise_ms();
    let tx = db
        .transaction_with_str_and_mode("docs", web_sys::IdbTransactionMode::Readwrite)
        .unwrap();
    let store = tx.object_store("docs").unwrap();
    for (id, doc) in &docs {
        store.put_with_key(doc, &id.into()).unwrap();
    }
    common::wait_complete(&tx).await;
    let ms = precise_ms() - started;
    db.close();
    ms
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
