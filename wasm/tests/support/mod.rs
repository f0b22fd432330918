//! Helpers shared by the browser replica suites: waiting on conditions, building replicas
//! over the loopback leader, and transactions.

#![allow(dead_code)]

pub mod server;

use std::cell::RefCell;
use std::rc::Rc;

use cstore_core::doc::RawDoc;
use cstore_core::index::IndexSpec;
use cstore_core::{Op, Txn};
use cstore_wasm::replica::pending::MemoryPending;
use cstore_wasm::replica::{Parts, ReplicaHandle};
use cstore_wasm::time::sleep;
use cstore_wasm::transport::loopback::{LoopbackLeader, LoopbackTransport, SharedMemoryStore};

/// Polls `condition` every 5 ms for up to `timeout_ms`; panics with `what` on timeout.
pub async fn wait_until(what: &str, timeout_ms: u64, mut condition: impl FnMut() -> bool) {
    let mut waited = 0;
    while !condition() {
        assert!(
            waited < timeout_ms,
            "timed out after {timeout_ms} ms waiting for {what}"
        );
        sleep(5).await;
        waited += 5;
    }
}

/// The stores of one browser "profile": reopening over clones is a reload.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub store: SharedMemoryStore,
    pub pending: MemoryPending,
}

/// Opens a replica of `leader` over `profile`.
pub async fn open(leader: &LoopbackLeader, profile: &Profile) -> ReplicaHandle {
    ReplicaHandle::open(Parts {
        store: profile.store.clone(),
        transport: LoopbackTransport::new(leader),
        pending: profile.pending.clone(),
        sender: leader.clone(),
    })
    .await
    .expect("replica opens")
}

/// Waits until the replica applied everything the leader committed.
pub async fn caught_up(replica: &ReplicaHandle, leader: &LoopbackLeader) {
    let target = leader.last().lsn;
    wait_until(&format!("applied lsn {target}"), 10_000, || {
        replica.status().applied_lsn >= target
    })
    .await;
}

/// A loopback leader whose log holds `count` inserts into collection `c`: `{"_id": "d00",
/// "n": 0}`, `{"_id": "d01", "n": 1}`, …
pub fn leader_with_docs(count: u64) -> LoopbackLeader {
    let leader = LoopbackLeader::new();
    for i in 0..count {
        leader
            .commit(insert("c", &format!(r#"{{"_id":"d{i:02}","n":{i}}}"#)))
            .unwrap();
    }
    leader
}

pub fn insert(collection: &str, doc: &str) -> Txn {
    Txn::single(Op::Insert {
        collection: collection.into(),
        doc: RawDoc::parse(doc).expect("test document"),
    })
}

/// Creates `collection` with a unique index on `field`.
pub fn unique_index(collection: &str, field: &str) -> Txn {
    let mut spec = IndexSpec::single(&format!("by_{field}"), field);
    spec.unique = true;
    with_index(collection, spec)
}

/// Creates `collection` with an index on `field`.
pub fn index(collection: &str, field: &str) -> Txn {
    with_index(collection, IndexSpec::single(&format!("by_{field}"), field))
}

fn with_index(collection: &str, spec: IndexSpec) -> Txn {
    Txn::new(vec![
        Op::CreateCollection {
            collection: collection.into(),
            options: Default::default(),
        },
        Op::CreateIndex {
            collection: collection.into(),
            spec,
        },
    ])
}

/// A recorder of callback calls.
pub fn recorder<T: 'static>() -> Rc<RefCell<Vec<T>>> {
    Rc::new(RefCell::new(Vec::new()))
}
