//! The browser replica against a real `cstore serve`, in headless Chromium: WebSocket
//! replication, `fetch` writes, a server restart in the middle.
//!
//! scripts/test.sh starts the server through `wasm/tests/server-control.mjs` (which can stop,
//! start and restart it, and proxies HTTP with CORS headers) and passes its URLs at build
//! time (`CSTORE_TEST_CONTROL_URL`, `CSTORE_TEST_WS_URL`). Built without them, every test
//! here logs that there is no server and passes vacuously; the script always sets them.
//!
//! Tests share one server, so each uses its own collection and measures progress against
//! the server's committed LSN. A [`Tap`] around the WebSocket transport counts the entries
//! and snapshots that arrive (resume without re-download) and corrupts one frame on demand.

mod support;

use std::rc::Rc;

use cstore_core::query::FindQuery;
use cstore_wasm::replica::network::set_online;
use cstore_wasm::replica::pending::MemoryPending;
use cstore_wasm::replica::sender::FetchSender;
use cstore_wasm::replica::{Parts, ReplicaHandle};
use cstore_wasm::transport::loopback::SharedMemoryStore;
use cstore_wasm::transport::websocket::WebSocketTransport;
use serde_json::json;
use support::server::{Tap, TapState, committed_lsn, control, http, insert_doc, txn, urls};
use support::{recorder, wait_until};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

struct Opened {
    replica: ReplicaHandle,
    tap: Rc<std::cell::RefCell<TapState>>,
}

async fn open(
    control: &str,
    ws: &str,
    store: &SharedMemoryStore,
    pending: &MemoryPending,
) -> Opened {
    let tap = Tap::new(WebSocketTransport::new(ws, None));
    let state = tap.state.clone();
    let replica = ReplicaHandle::open(Parts {
        store: store.clone(),
        transport: tap,
        pending: pending.clone(),
        sender: FetchSender::new(control, None),
    })
    .await
    .expect("replica opens");
    Opened {
        replica,
        tap: state,
    }
}

async fn caught_up(replica: &ReplicaHandle, control: &str) {
    let target = committed_lsn(control).await;
    wait_until(&format!("applied lsn {target}"), 15_000, || {
        replica.status().applied_lsn.0 >= target
    })
    .await;
}

/// A collection name of this run: the server outlives one run of the suite.
fn fresh(name: &str) -> String {
    format!("{name}_{:012x}", cstore_wasm::time::random_u64() >> 16)
}

fn count(replica: &ReplicaHandle, collection: &str) -> usize {
    replica.find(collection, &FindQuery::all()).unwrap().len()
}

/// Every entry arrived once: those received plus those the snapshot covered reach `applied`.
fn no_entry_twice(tap: &TapState, applied: u64) {
    let mut seen = tap.entries.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        tap.entries.len(),
        "an entry was downloaded twice"
    );
    let from_snapshot = tap.snapshots.last().map_or(0, |p| p.lsn.0);
    assert!(
        tap.snapshots.len() <= 1,
        "more than one snapshot: {:?}",
        tap.snapshots
    );
    assert_eq!(from_snapshot + tap.entries.len() as u64, applied);
}

#[wasm_bindgen_test]
async fn bootstraps_follows_and_resumes_after_a_server_restart() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    let boot = fresh("boot");
    let docs: Vec<_> = (0..200)
        .map(|i| json!({"op": "insert", "collection": boot, "doc": {"_id": format!("b{i:03}"), "i": i}}))
        .collect();
    txn(control_url, json!(docs)).await;
    let Opened { replica, tap } = open(
        control_url,
        ws,
        &SharedMemoryStore::new(),
        &MemoryPending::new(),
    )
    .await;
    caught_up(&replica, control_url).await;
    assert_eq!(count(&replica, &boot), 200);
    assert!(replica.status().connected);

    insert_doc(control_url, &boot, json!({"_id": "live"})).await;
    wait_until("the live update", 5_000, || {
        replica.get(&boot, "live").is_some()
    })
    .await;

    control(control_url, "restart").await;
    wait_until("the reconnect", 15_000, || replica.status().connected).await;
    insert_doc(control_url, &boot, json!({"_id": "after"})).await;
    wait_until("an update after the restart", 10_000, || {
        replica.get(&boot, "after").is_some()
    })
    .await;
    caught_up(&replica, control_url).await;
    no_entry_twice(&tap.borrow(), replica.status().applied_lsn.0);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn an_offline_write_is_confirmed_and_a_refused_one_rolled_back() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    let people = fresh("people");
    txn(
        control_url,
        json!([
            {"op": "create_collection", "collection": people},
            {"op": "create_index", "collection": people,
             "index": {"name": "by_email", "fields": [{"path": "email", "desc": false}], "unique": true, "sparse": false}}
        ]),
    )
    .await;
    let Opened { replica, .. } = open(
        control_url,
        ws,
        &SharedMemoryStore::new(),
        &MemoryPending::new(),
    )
    .await;
    caught_up(&replica, control_url).await;

    // Server down: the write shows at once and waits.
    control(control_url, "stop").await;
    let id = replica
        .insert(&people, json!({"email": "ann@x"}))
        .await
        .unwrap();
    assert!(replica.get(&people, &id).is_some());
    assert_eq!(replica.status().pending_writes, 1);
    control(control_url, "start").await;
    replica.flush().await;
    let (status, doc) = http("GET", &format!("{control_url}/v1/c/{people}/{id}"), None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["email"], "ann@x");
    assert_eq!(replica.status().pending_writes, 0);

    // Offline, someone else takes an address; the local write of it is refused by the leader.
    let rejections = recorder();
    let seen = rejections.clone();
    replica.on_rejected(Rc::new(move |r| seen.borrow_mut().push(r.clone())));
    set_online(replica.shared(), false);
    insert_doc(
        control_url,
        &people,
        json!({"_id": "bob", "email": "bob@x"}),
    )
    .await;
    replica
        .insert(&people, json!({"_id": "mine", "email": "bob@x"}))
        .await
        .unwrap();
    assert!(replica.get(&people, "mine").is_some());
    set_online(replica.shared(), true);
    replica.flush().await;
    wait_until("the rejection", 5_000, || !rejections.borrow().is_empty()).await;
    assert_eq!(rejections.borrow()[0].code, "unique_violation");
    caught_up(&replica, control_url).await;
    assert!(replica.get(&people, "mine").is_none());
    assert!(replica.get(&people, "bob").is_some());
    replica.close().await;
}

#[wasm_bindgen_test]
async fn data_is_intact_after_close_and_reopen_and_only_new_entries_stream() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    let keep = fresh("keep");
    insert_doc(control_url, &keep, json!({"_id": "k1"})).await;
    let store = SharedMemoryStore::new();
    let pending = MemoryPending::new();
    let Opened { replica, .. } = open(control_url, ws, &store, &pending).await;
    caught_up(&replica, control_url).await;
    let applied = replica.status().applied_lsn;
    let hash = replica.shared().borrow().local.current().state_hash();
    replica.close().await;

    insert_doc(control_url, &keep, json!({"_id": "k2"})).await;
    let Opened { replica, tap } = open(control_url, ws, &store, &pending).await;
    // Before any sync: the local copy, exactly as it was.
    assert_eq!(replica.status().applied_lsn, applied);
    assert!(replica.get(&keep, "k1").is_some());
    assert_eq!(replica.shared().borrow().local.current().state_hash(), hash);
    caught_up(&replica, control_url).await;
    assert!(replica.get(&keep, "k2").is_some());
    let (snapshots, first_entry) = {
        let tap = tap.borrow();
        (tap.snapshots.len(), tap.entries.first().map(|l| l.0))
    };
    assert_eq!(snapshots, 0, "the reopened replica was sent a snapshot");
    assert_eq!(first_entry, Some(applied.0 + 1), "resume point");
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_frame_with_a_wrong_hash_rebootstraps_without_showing_it() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    let tamper = fresh("tamper");
    insert_doc(control_url, &tamper, json!({"_id": "t1"})).await;
    let Opened { replica, tap } = open(
        control_url,
        ws,
        &SharedMemoryStore::new(),
        &MemoryPending::new(),
    )
    .await;
    caught_up(&replica, control_url).await;
    tap.borrow_mut().tamper_next = true;
    insert_doc(control_url, &tamper, json!({"_id": "t2", "v": 1})).await;
    wait_until("the rebootstrap", 10_000, || {
        replica.status().rebootstraps == 1
    })
    .await;
    caught_up(&replica, control_url).await;
    let status = replica.status();
    assert_eq!(status.last_error.unwrap().code, "hash_mismatch");
    let (_, answer) = http(
        "POST",
        &format!("{control_url}/v1/c/{tamper}/find"),
        Some(&json!({})),
    )
    .await;
    let on_server: Vec<String> = answer["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    let local: Vec<String> = replica
        .find(&tamper, &FindQuery::all())
        .unwrap()
        .iter()
        .map(|d| d.doc.to_value().to_string())
        .collect();
    assert_eq!(local, on_server);
    replica.close().await;
}
