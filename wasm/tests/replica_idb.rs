//! The browser replica over IndexedDB (`IdbStore` + `PendingStore`), against the in-browser
//! leader: the local copy and pending writes survive close and reopen, and a damaged
//! database is discarded and fetched again (counted as a rebootstrap), never shown.
//!
//! Run: `CHROMEDRIVER=$(command -v chromedriver) cargo test -p cstore-wasm
//! --target wasm32-unknown-unknown --test replica_idb`.

#![cfg(target_arch = "wasm32")]

mod common;
mod support;

use cstore_core::query::FindQuery;
use cstore_wasm::api::open_idb_store;
use cstore_wasm::replica::network::set_online;
use cstore_wasm::replica::{Parts, ReplicaHandle};
use cstore_wasm::transport::loopback::{LoopbackLeader, LoopbackTransport};
use js_sys::{Array, Uint8Array};
use serde_json::json;
use support::{caught_up, leader_with_docs};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::IdbTransactionMode;

wasm_bindgen_test_configure!(run_in_browser);

use common::{raw_open, unique_name, wait, wait_complete};

/// Opens replica `name` over IndexedDB, as `Replica.open` does, against `leader`.
async fn open(leader: &LoopbackLeader, name: &str) -> ReplicaHandle {
    let (store, recovered) = open_idb_store(name).await.expect("IndexedDB opens");
    let pending = store.pending();
    let replica = ReplicaHandle::open(Parts {
        store,
        transport: LoopbackTransport::new(leader),
        pending,
        sender: leader.clone(),
    })
    .await
    .expect("replica opens");
    if let Some((code, message)) = recovered {
        replica.note_recovered(code, &message);
    }
    replica
}

/// Flips a bit in the middle of every record of the `log` object store of `name`.
async fn damage_log(name: &str) {
    let db = raw_open(name, None).await;
    let tx = db
        .transaction_with_str_and_mode("log", IdbTransactionMode::Readwrite)
        .expect("transaction");
    let store = tx.object_store("log").expect("the log store");
    let keys: Array = wait(&store.get_all_keys().unwrap()).await.unchecked_into();
    assert!(keys.length() > 0, "nothing to damage");
    let mut values = Vec::new();
    for key in keys.iter() {
        let value: Uint8Array = wait(&store.get(&key).unwrap()).await.unchecked_into();
        values.push((key, value.to_vec()));
    }
    for (key, mut bytes) in values {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        store
            .put_with_key(&Uint8Array::from(bytes.as_slice()), &key)
            .unwrap();
    }
    wait_complete(&tx).await;
    db.close();
}

#[wasm_bindgen_test]
async fn the_copy_and_pending_writes_survive_close_and_reopen() {
    let leader = leader_with_docs(30);
    let name = unique_name("replica-reopen");
    let replica = open(&leader, &name).await;
    caught_up(&replica, &leader).await;
    let hash = replica.shared().borrow().local.current().state_hash();
    leader.stop();
    set_online(replica.shared(), false);
    replica
        .insert("c", json!({"_id": "offline"}))
        .await
        .unwrap();
    replica.close().await;

    // A reload with the leader down: the data and the pending write come from IndexedDB.
    let entries_before = leader.sent().entries;
    let replica = open(&leader, &name).await;
    assert_eq!(replica.status().applied_lsn, leader.last().lsn);
    assert_eq!(replica.status().pending_writes, 1);
    assert!(replica.get("c", "offline").is_some());
    assert_eq!(replica.find("c", &FindQuery::all()).unwrap().len(), 31);
    leader.start();
    replica.flush().await;
    caught_up(&replica, &leader).await;
    assert_eq!(replica.status().pending_writes, 0);
    assert!(
        leader
            .state()
            .collection("c")
            .unwrap()
            .get("offline")
            .is_some()
    );
    assert_eq!(
        leader.sent().entries,
        entries_before + 1,
        "resumed, not re-downloaded"
    );
    assert_ne!(replica.shared().borrow().local.current().state_hash(), hash);
    assert_eq!(
        replica.shared().borrow().local.current().state_hash(),
        leader.state().state_hash()
    );
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_damaged_database_is_fetched_again_and_never_shown() {
    let leader = leader_with_docs(12);
    let name = unique_name("replica-damaged");
    let replica = open(&leader, &name).await;
    caught_up(&replica, &leader).await;
    replica.close().await;

    damage_log(&name).await;
    let replica = open(&leader, &name).await;
    let status = replica.status();
    assert_eq!(status.rebootstraps, 1);
    assert_eq!(status.last_error.as_ref().unwrap().code, "storage_corrupt");
    caught_up(&replica, &leader).await;
    assert_eq!(
        replica.shared().borrow().local.current().state_hash(),
        leader.state().state_hash()
    );
    assert_eq!(replica.find("c", &FindQuery::all()).unwrap().len(), 12);
    replica.close().await;
}
