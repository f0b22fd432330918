//! The IndexedDB store in headless Chromium: core's storage conformance suite, the pending
//! queue across reopen, and damaged bytes written straight into the object stores.
//!
//! Every test uses databases with a fresh, unique name, so tests never see each other's data
//! and a rerun starts clean. Run with
//! `CHROMEDRIVER=$(command -v chromedriver) cargo test -p cstore-wasm --target wasm32-unknown-unknown --test idb_store`.
#![cfg(target_arch = "wasm32")]

use cstore_core::error::ErrorCode;
use cstore_core::storage::conformance::{self, StoreHarness};
use cstore_wasm::idb::{IdbStore, PENDING_WRITE_BYTES_MAX, PendingStore};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

mod common;

use common::unique_name;

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

// ---------------------------------------------------------------------------------------------
// PendingStore
// ---------------------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn pending_writes_survive_reopen_in_seq_order() {
    let name = unique_name("pending");
    let pending = PendingStore::open(&name).await.expect("open");
    assert_eq!(pending.list().await, Ok(Vec::new()));
    for seq in [3_u64, 1, 5, 2, 4] {
        pending
            .push(seq, format!("write {seq}").into_bytes())
            .await
            .expect("push");
    }
    pending.close();

    let pending = PendingStore::open(&name).await.expect("reopen");
    let expected: Vec<(u64, Vec<u8>)> = (1..=5)
        .map(|seq| (seq, format!("write {seq}").into_bytes()))
        .collect();
    assert_eq!(pending.list().await, Ok(expected.clone()));
    assert_eq!(pending.count().await, Ok(5));

    pending.remove_through(2).await.expect("remove_through");
    pending.remove(4).await.expect("remove");
    pending.remove(40).await.expect("removing a seq not held");
    pending
        .push(6, Vec::new())
        .await
        .expect("push an empty write");
    pending.close();

    let pending = PendingStore::open(&name).await.expect("reopen");
    assert_eq!(
        pending.list().await,
        Ok(vec![
            expected[2].clone(),
            expected[4].clone(),
            (6, Vec::new())
        ])
    );
    pending
        .remove_through(u64::from(u32::MAX))
        .await
        .expect("remove all");
    assert_eq!(pending.list().await, Ok(Vec::new()));
    pending.close();
    IdbStore::destroy(&name).await.expect("destroy");
}

#[wasm_bindgen_test]
async fn many_pending_writes_go_in_one_step_or_not_at_all() {
    let name = unique_name("pending-many");
    let pending = PendingStore::open(&name).await.expect("open");
    let writes: Vec<(u64, Vec<u8>)> = (1..=1_000)
        .map(|seq| (seq, format!("write {seq}").into_bytes()))
        .collect();
    pending.push_many(writes.clone()).await.expect("push_many");
    pending.close();

    let pending = PendingStore::open(&name).await.expect("reopen");
    assert_eq!(pending.list().await, Ok(writes));
    // One write over the size bound refuses the whole step: nothing of it is stored.
    let too_large = vec![
        (1_001, b"fits".to_vec()),
        (1_002, vec![0; PENDING_WRITE_BYTES_MAX + 1]),
    ];
    assert!(pending.push_many(too_large).await.is_err());
    assert_eq!(pending.count().await, Ok(1_000));
    pending.close();
    IdbStore::destroy(&name).await.expect("destroy");
}

#[wasm_bindgen_test]
async fn client_meta_survives_reopen_and_shares_the_store_database() {
    let name = unique_name("meta");
    let store = IdbStore::open(&name).await.expect("open");
    let pending = store.pending();
    assert_eq!(pending.get_meta("client_id").await, Ok(None));
    pending.put_meta("client_id", b"tab-1").await.expect("put");
    pending
        .put_meta("next_seq", &7u64.to_le_bytes())
        .await
        .expect("put");
    pending
        .put_meta("next_seq", &8u64.to_le_bytes())
        .await
        .expect("replace");
    pending.push(1, b"w".to_vec()).await.expect("push");
    drop(pending);
    store.close();

    let pending = PendingStore::open(&name).await.expect("reopen");
    assert_eq!(
        pending.get_meta("client_id").await,
        Ok(Some(b"tab-1".to_vec()))
    );
    assert_eq!(
        pending.get_meta("next_seq").await,
        Ok(Some(8u64.to_le_bytes().to_vec()))
    );
    assert_eq!(pending.list().await, Ok(vec![(1, b"w".to_vec())]));
    let empty = pending.put_meta("", b"x").await.expect_err("an empty name");
    assert_eq!(empty.code(), "storage_invalid");
    let long = pending
        .get_meta(&"n".repeat(300))
        .await
        .expect_err("a long name");
    assert_eq!(long.code(), "storage_invalid");
    pending.close();
    IdbStore::destroy(&name).await.expect("destroy");
}

// ---------------------------------------------------------------------------------------------
// Segments: appends larger than one IndexedDB value
// ---------------------------------------------------------------------------------------------

/// One append of 3,000 entries spans several segments; compaction and truncation that land
/// inside segments keep exactly the right entries, across a reopen.
#[wasm_bindgen_test]
async fn large_appends_compact_and_truncate_inside_segments() {
    use cstore_core::storage::LogStore;
    use cstore_core::storage::conformance::entries_after;
    use cstore_core::{LogPosition, Lsn, Term};

    let name = unique_name("segments");
    let mut store = IdbStore::open(&name).await.expect("open");
    let entries = entries_after(LogPosition::START, 3_000, Term(1), "seg");
    store.append(&entries[..2_000]).await.expect("append");
    store.append(&entries[2_000..]).await.expect("append");
    let all = store.read_range(Lsn(1), Lsn(3_001)).await.expect("read");
    assert!(all == entries, "every entry reads back");

    store.compact_prefix(Lsn(777)).await.expect("compact");
    store.truncate_suffix(Lsn(2_345)).await.expect("truncate");
    let more = entries_after(entries[2_343].position(), 10, Term(2), "new");
    store.append(&more).await.expect("append after truncation");
    let mut expected = entries[777..2_344].to_vec();
    expected.extend(more);

    let name_again = store.name().to_owned();
    store.close();
    let store = IdbStore::open(&name_again).await.expect("reopen");
    let state = store.state().await.expect("state");
    assert_eq!(state.first, Lsn(778));
    assert_eq!(state.last, expected.last().expect("entries").position());
    let held = store.read_range(Lsn(778), Lsn(2_355)).await.expect("read");
    assert!(
        held == expected,
        "the held entries after compaction and truncation"
    );
    for (from, to) in [(778, 779), (1_000, 1_500), (2_344, 2_346), (2_354, 2_355)] {
        let part = store
            .read_range(Lsn(from), Lsn(to))
            .await
            .expect("read part");
        assert!(
            part[..] == expected[(from - 778) as usize..(to - 778) as usize],
            "read_range({from}, {to})"
        );
    }
    assert!(store.read_range(Lsn(777), Lsn(779)).await.is_err());
    store.close();
    IdbStore::destroy(&name).await.expect("destroy");
}
