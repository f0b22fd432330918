//! Damaged IndexedDB records: bytes flipped, cut, replaced by garbage or by values of another
//! type, or moved under another key, written with raw IndexedDB calls behind the store's back.
//! Each must give a clear `storage_corrupt` error when opened or read, never a panic and never
//! other data; ranges that do not touch the damage still read correctly. The open errors that
//! can be provoked in a test (a newer schema, a deletion blocked by another connection, no
//! IndexedDB at all) get their own codes too.
//!
//! Run with `CHROMEDRIVER=$(command -v chromedriver) cargo test -p cstore-wasm --target
//! wasm32-unknown-unknown --test idb_broken_bytes`.
#![cfg(target_arch = "wasm32")]

use cstore_core::error::ErrorCode;
use cstore_core::storage::conformance::{entries_after, snapshot_at};
use cstore_core::storage::{LogStore, Metadata, StorageError};
use cstore_core::{LogEntry, LogPosition, Lsn, ReplicaId, Snapshot, Term};
use cstore_wasm::idb::{IdbError, IdbStore, PendingStore, SNAPSHOT_CHUNK_BYTES};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::IdbTransactionMode;

wasm_bindgen_test_configure!(run_in_browser);

mod common;

use common::{raw_open, unique_name, wait, wait_complete};

// ---------------------------------------------------------------------------------------------
// Raw IndexedDB, without the store
// ---------------------------------------------------------------------------------------------

/// Runs `op` on object store `store` of database `name` in one read-write transaction.
async fn raw_write(name: &str, store: &str, op: impl FnOnce(&web_sys::IdbObjectStore)) {
    let db = raw_open(name, None).await;
    let tx = db
        .transaction_with_str_and_mode(store, IdbTransactionMode::Readwrite)
        .expect("transaction");
    op(&tx.object_store(store).expect("store"));
    wait_complete(&tx).await;
    db.close();
}

async fn raw_put(name: &str, store: &str, key: JsValue, value: JsValue) {
    raw_write(name, store, |s| {
        s.put_with_key(&value, &key).expect("put");
    })
    .await;
}

async fn raw_delete(name: &str, store: &str, key: JsValue) {
    raw_write(name, store, |s| {
        s.delete(&key).expect("delete");
    })
    .await;
}

async fn raw_get(name: &str, store: &str, key: JsValue) -> Vec<u8> {
    let db = raw_open(name, None).await;
    let tx = db.transaction_with_str(store).expect("transaction");
    let req = tx
        .object_store(store)
        .expect("store")
        .get(&key)
        .expect("get");
    let value = wait(&req).await;
    db.close();
    value.unchecked_into::<Uint8Array>().to_vec()
}

/// Flips one bit in the middle of the value under `key`.
async fn raw_flip(name: &str, store: &str, key: JsValue) {
    let mut bytes = raw_get(name, store, key.clone()).await;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    raw_put(name, store, key, Uint8Array::from(bytes.as_slice()).into()).await;
}

/// Cuts the value under `key` to `keep` bytes.
async fn raw_truncate(name: &str, store: &str, key: JsValue, keep: usize) {
    let bytes = raw_get(name, store, key.clone()).await;
    raw_put(name, store, key, Uint8Array::from(&bytes[..keep]).into()).await;
}

fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

/// The `log` key of the segment holding just entry `lsn`.
fn seg(lsn: u64) -> JsValue {
    js_sys::Array::of2(&num(lsn), &num(lsn)).into()
}

fn garbage(len: usize) -> JsValue {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
    Uint8Array::from(bytes.as_slice()).into()
}

// ---------------------------------------------------------------------------------------------
// A populated store
// ---------------------------------------------------------------------------------------------

/// What `populated` wrote.
struct Fixture {
    name: String,
    entries: Vec<LogEntry>,
    snapshot: Snapshot,
    metadata: Metadata,
}

/// A closed store holding entries 1..=6 (one segment each), a snapshot of two chunks at entry 3, metadata,
/// two pending writes and one client metadata value.
async fn populated(prefix: &str) -> Fixture {
    let name = unique_name(prefix);
    let mut store = IdbStore::open(&name).await.expect("open");
    let entries = entries_after(LogPosition::START, 6, Term(1), "b");
    // One append per entry, so each entry is a segment of its own that a test can damage.
    for entry in &entries {
        store
            .append(std::slice::from_ref(entry))
            .await
            .expect("append");
    }
    // Just over one chunk: a full 1 MiB chunk 1 and a small chunk 2.
    let snapshot = snapshot_at(entries[2].position(), SNAPSHOT_CHUNK_BYTES + 1_000, 9);
    store.save_snapshot(&snapshot).await.expect("save_snapshot");
    let metadata = Metadata {
        term: Term(1),
        node_id: ReplicaId(77),
    };
    store.save_metadata(&metadata).await.expect("save_metadata");
    let pending = store.pending();
    pending.push(1, b"first".to_vec()).await.expect("push");
    pending.push(2, b"second".to_vec()).await.expect("push");
    pending
        .put_meta("client_id", b"tab-a")
        .await
        .expect("put_meta");
    drop(pending);
    store.close();
    Fixture {
        name,
        entries,
        snapshot,
        metadata,
    }
}

fn assert_corrupt_open(result: Result<IdbStore, IdbError>, context: &str) {
    match result {
        Err(error) => assert_eq!(error.code(), "storage_corrupt", "{context}: {error}"),
        Ok(_) => panic!("{context}: the store opened"),
    }
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StorageError>, context: &str) {
    match result {
        Err(error) => assert_eq!(error.code(), "storage_corrupt", "{context}: {error}"),
        Ok(value) => panic!("{context}: read {value:?}"),
    }
}

/// The middle record (entry 3) is damaged: the store opens, a read over it is corrupt, reads
/// beside it return exactly the right entries.
async fn assert_middle_record_damaged(fixture: &Fixture, context: &str) {
    let store = IdbStore::open(&fixture.name).await.expect("open");
    assert_corrupt(store.read_range(Lsn(1), Lsn(7)).await, context);
    assert_corrupt(store.read_range(Lsn(3), Lsn(4)).await, context);
    assert_eq!(
        store.read_range(Lsn(4), Lsn(7)).await,
        Ok(fixture.entries[3..].to_vec()),
        "{context}: entries after the damage"
    );
    assert_eq!(
        store.read_range(Lsn(1), Lsn(3)).await,
        Ok(fixture.entries[..2].to_vec()),
        "{context}: entries before the damage"
    );
}

// ---------------------------------------------------------------------------------------------
// Log records
// ---------------------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn an_undamaged_store_reads_back_whole() {
    let fixture = populated("intact").await;
    let store = IdbStore::open(&fixture.name).await.expect("open");
    assert_eq!(
        store.read_range(Lsn(1), Lsn(7)).await,
        Ok(fixture.entries.clone())
    );
    assert_eq!(
        store.load_snapshot().await,
        Ok(Some(fixture.snapshot.clone()))
    );
    assert_eq!(
        store.load_metadata().await,
        Ok(Some(fixture.metadata.clone()))
    );
    let pending = store.pending();
    assert_eq!(
        pending.list().await,
        Ok(vec![(1, b"first".to_vec()), (2, b"second".to_vec())])
    );
}

#[wasm_bindgen_test]
async fn a_damaged_last_or_first_record_fails_the_open() {
    let fixture = populated("last").await;
    raw_flip(&fixture.name, "log", seg(6)).await;
    assert_corrupt_open(IdbStore::open(&fixture.name).await, "last record flipped");

    let fixture = populated("first").await;
    raw_truncate(&fixture.name, "log", seg(1), 10).await;
    assert_corrupt_open(IdbStore::open(&fixture.name).await, "first record cut");
}

#[wasm_bindgen_test]
async fn a_flipped_middle_record_is_corrupt_when_read() {
    let fixture = populated("flip").await;
    raw_flip(&fixture.name, "log", seg(3)).await;
    assert_middle_record_damaged(&fixture, "flipped").await;
}

#[wasm_bindgen_test]
async fn a_truncated_middle_record_is_corrupt_when_read() {
    let fixture = populated("cut").await;
    raw_truncate(&fixture.name, "log", seg(3), 30).await;
    assert_middle_record_damaged(&fixture, "truncated").await;
    let fixture = populated("cut-empty").await;
    raw_truncate(&fixture.name, "log", seg(3), 0).await;
    assert_middle_record_damaged(&fixture, "emptied").await;
}

#[wasm_bindgen_test]
async fn garbage_and_values_of_the_wrong_type_are_corrupt() {
    let cases: [(&str, JsValue); 4] = [
        ("garbage bytes", garbage(120)),
        ("a string", JsValue::from_str("not a record")),
        ("a number", JsValue::from_f64(42.0)),
        ("an object", js_sys::Object::new().into()),
    ];
    for (context, value) in cases {
        let fixture = populated("type").await;
        raw_put(&fixture.name, "log", seg(3), value).await;
        assert_middle_record_damaged(&fixture, context).await;
    }
}

#[wasm_bindgen_test]
async fn a_valid_record_under_the_wrong_key_is_corrupt() {
    let fixture = populated("moved").await;
    let fourth = raw_get(&fixture.name, "log", seg(4)).await;
    raw_put(
        &fixture.name,
        "log",
        seg(3),
        Uint8Array::from(fourth.as_slice()).into(),
    )
    .await;
    assert_middle_record_damaged(&fixture, "entry 4 stored as 3").await;
}

#[wasm_bindgen_test]
async fn a_missing_or_extra_record_fails_the_open() {
    let fixture = populated("hole").await;
    raw_delete(&fixture.name, "log", seg(3)).await;
    assert_corrupt_open(IdbStore::open(&fixture.name).await, "a hole in the log");

    let fixture = populated("extra").await;
    raw_put(&fixture.name, "log", seg(9), garbage(40)).await;
    assert_corrupt_open(IdbStore::open(&fixture.name).await, "a record past the end");
}

#[wasm_bindgen_test]
async fn a_damaged_compaction_point_fails_the_open() {
    let fixture = populated("meta-log").await;
    raw_put(&fixture.name, "meta", "log".into(), garbage(50)).await;
    assert_corrupt_open(IdbStore::open(&fixture.name).await, "compaction point");
}

// ---------------------------------------------------------------------------------------------
// Snapshot, metadata, pending writes
// ---------------------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn a_damaged_snapshot_is_corrupt_and_the_log_still_reads() {
    type Damage = fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
    let cases: [(&str, Damage); 5] = [
        ("chunk flipped", |n| {
            Box::pin(async move { raw_flip(&n, "snapshot", num(2)).await })
        }),
        ("chunk cut", |n| {
            Box::pin(async move { raw_truncate(&n, "snapshot", num(1), 100).await })
        }),
        ("chunk missing", |n| {
            Box::pin(async move { raw_delete(&n, "snapshot", num(2)).await })
        }),
        ("header garbage", |n| {
            Box::pin(async move { raw_put(&n, "snapshot", num(0), garbage(64)).await })
        }),
        ("chunks swapped", |n| {
            Box::pin(async move {
                let one = raw_get(&n, "snapshot", num(1)).await;
                let two = raw_get(&n, "snapshot", num(2)).await;
                raw_put(
                    &n,
                    "snapshot",
                    num(1),
                    Uint8Array::from(two.as_slice()).into(),
                )
                .await;
                raw_put(
                    &n,
                    "snapshot",
                    num(2),
                    Uint8Array::from(one.as_slice()).into(),
                )
                .await;
            })
        }),
    ];
    for (context, damage) in cases {
        let fixture = populated("snap").await;
        damage(fixture.name.clone()).await;
        let store = IdbStore::open(&fixture.name).await.expect("open");
        assert_corrupt(store.load_snapshot().await, context);
        assert_eq!(
            store.read_range(Lsn(1), Lsn(7)).await,
            Ok(fixture.entries.clone()),
            "{context}: the log"
        );
    }
}

#[wasm_bindgen_test]
async fn damaged_metadata_is_corrupt() {
    let fixture = populated("metadata").await;
    raw_flip(&fixture.name, "meta", "metadata".into()).await;
    let store = IdbStore::open(&fixture.name).await.expect("open");
    assert_corrupt(store.load_metadata().await, "metadata flipped");
}

#[wasm_bindgen_test]
async fn damaged_pending_writes_and_client_meta_are_corrupt() {
    let fixture = populated("pending").await;
    raw_flip(&fixture.name, "pending", num(2)).await;
    raw_flip(&fixture.name, "client_meta", "client_id".into()).await;
    let pending = PendingStore::open(&fixture.name).await.expect("open");
    let listed = pending.list().await.expect_err("a flipped write");
    assert_eq!(listed.code(), "storage_corrupt", "{listed}");
    let meta = pending.get_meta("client_id").await.expect_err("flipped");
    assert_eq!(meta.code(), "storage_corrupt", "{meta}");
    drop(pending);

    // A valid write stored under another seq, and a value stored under another name.
    let fixture = populated("pending-moved").await;
    let first = raw_get(&fixture.name, "pending", num(1)).await;
    raw_put(
        &fixture.name,
        "pending",
        num(2),
        Uint8Array::from(first.as_slice()).into(),
    )
    .await;
    let client = raw_get(&fixture.name, "client_meta", "client_id".into()).await;
    raw_put(
        &fixture.name,
        "client_meta",
        "next_seq".into(),
        Uint8Array::from(client.as_slice()).into(),
    )
    .await;
    let pending = PendingStore::open(&fixture.name).await.expect("open");
    assert_eq!(
        pending.list().await.map_err(|e| e.code()),
        Err("storage_corrupt")
    );
    assert_eq!(
        pending.get_meta("next_seq").await.map_err(|e| e.code()),
        Err("storage_corrupt")
    );
    assert_eq!(
        pending.get_meta("client_id").await,
        Ok(Some(b"tab-a".to_vec()))
    );
}

#[wasm_bindgen_test]
async fn destroy_after_corruption_gives_an_empty_store() {
    let fixture = populated("rebootstrap").await;
    raw_flip(&fixture.name, "log", seg(6)).await;
    assert_corrupt_open(IdbStore::open(&fixture.name).await, "before destroy");
    IdbStore::destroy(&fixture.name).await.expect("destroy");
    let store = IdbStore::open(&fixture.name)
        .await
        .expect("open after destroy");
    assert_eq!(store.read_range(Lsn(1), Lsn(1)).await, Ok(Vec::new()));
    assert_eq!(store.load_snapshot().await, Ok(None));
    assert_eq!(store.pending().list().await, Ok(Vec::new()));
}

// ---------------------------------------------------------------------------------------------
// Open errors
// ---------------------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn a_newer_schema_is_refused() {
    let name = unique_name("newer");
    raw_open(&name, Some(50)).await.close();
    let error = IdbStore::open(&name).await.expect_err("a newer schema");
    assert_eq!(error.code(), "idb_version_too_new", "{error}");
}

#[wasm_bindgen_test]
async fn a_deletion_blocked_by_another_connection_is_reported() {
    let fixture = populated("blocked").await;
    // A raw connection that, unlike the store's, does not close on `versionchange`.
    let other = raw_open(&fixture.name, None).await;
    let error = IdbStore::destroy(&fixture.name).await.expect_err("blocked");
    assert_eq!(error.code(), "idb_blocked", "{error}");
    other.close();
}

#[wasm_bindgen_test]
async fn no_indexeddb_is_reported_as_unavailable() {
    let global = js_sys::global();
    // On a window, `indexedDB` is an own accessor of the global: keep it to put it back.
    let original = js_sys::Object::get_own_property_descriptor(&global, &"indexedDB".into());
    let descriptor = js_sys::Object::new();
    Reflect::set(&descriptor, &"value".into(), &JsValue::UNDEFINED).expect("set");
    Reflect::set(&descriptor, &"configurable".into(), &JsValue::TRUE).expect("set");
    js_sys::Object::define_property(&global, &"indexedDB".into(), &descriptor);
    // The check happens before the first await, so no other test sees the missing global.
    let result = IdbStore::open("unavailable").await;
    if original.is_undefined() {
        Reflect::delete_property(&global, &"indexedDB".into()).expect("restore indexedDB");
    } else {
        js_sys::Object::define_property(&global, &"indexedDB".into(), original.unchecked_ref());
    }
    assert!(
        !Reflect::get(&global, &"indexedDB".into())
            .expect("get")
            .is_undefined(),
        "indexedDB restored"
    );
    let error = result.expect_err("no indexedDB");
    assert_eq!(error.code(), "idb_unavailable", "{error}");
    assert!(matches!(
        StorageError::from(error),
        StorageError::Io(message) if message.starts_with("idb_unavailable")
    ));
}

/// A segment written by one append of several entries is checked as a whole: damage to it
/// makes every read that touches it corrupt, and the segments beside it still read.
#[wasm_bindgen_test]
async fn a_damaged_segment_of_many_entries_is_corrupt() {
    let name = unique_name("batch");
    let mut store = IdbStore::open(&name).await.expect("open");
    let entries = entries_after(LogPosition::START, 5, Term(1), "b");
    store.append(&entries[..1]).await.expect("append");
    store.append(&entries[1..4]).await.expect("append");
    store.append(&entries[4..]).await.expect("append");
    store.close();
    let batch: JsValue = js_sys::Array::of2(&num(2), &num(4)).into();
    raw_flip(&name, "log", batch).await;
    let store = IdbStore::open(&name).await.expect("open");
    assert_corrupt(store.read_range(Lsn(1), Lsn(6)).await, "all");
    assert_corrupt(store.read_range(Lsn(3), Lsn(4)).await, "inside the segment");
    assert_eq!(
        store.read_range(Lsn(1), Lsn(2)).await,
        Ok(entries[..1].to_vec())
    );
    assert_eq!(
        store.read_range(Lsn(5), Lsn(6)).await,
        Ok(entries[4..].to_vec())
    );
}
