//! Leader tests over an in-memory store that outlives the leader, so "restart" can be tested.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde_json::json;

use cstore_core::doc::RawDoc;
use cstore_core::error::ErrorCode;
use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::{
    LogState, LogStore, MemoryStore, Metadata, StorageError, StorageResult,
};
use cstore_core::txn::CollectionOptions;
use cstore_core::{Hash, LogPosition, Lsn, Op, Txn};

use super::*;

/// A `MemoryStore` behind a mutex, shared by successive leaders; counts appends (fsyncs).
#[derive(Clone, Default)]
struct SharedStore {
    inner: Arc<Mutex<MemoryStore>>,
    appends: Arc<Mutex<usize>>,
    /// While set, appends fail with this error (and change nothing).
    fail_appends: Arc<Mutex<Option<StorageError>>>,
    /// Appends tried, failed ones included.
    attempts: Arc<Mutex<usize>>,
    /// Appends begun (counted before a hold blocks them).
    entered: Arc<Mutex<usize>>,
    /// While true, appends block (the entry is applied, its fsync has not returned).
    hold_appends: Arc<(Mutex<bool>, std::sync::Condvar)>,
    /// While true, a checkpoint's snapshot is not written (its thread waits).
    hold_checkpoints: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl SharedStore {
    fn hold(&self, held: bool) {
        let (lock, wake) = &*self.hold_appends;
        *lock.lock().unwrap() = held;
        wake.notify_all();
    }

    fn hold_checkpoints(&self, held: bool) {
        let (lock, wake) = &*self.hold_checkpoints;
        *lock.lock().unwrap() = held;
        wake.notify_all();
    }

    fn with<R>(&self, f: impl FnOnce(&mut MemoryStore) -> R) -> R {
        f(&mut self.inner.lock().unwrap())
    }
}

/// MemoryStore's futures are ready at once; resolve them inside the lock so no guard is held
/// across an await point.
fn now<T>(future: impl std::future::Future<Output = T>) -> T {
    future
        .now_or_never()
        .expect("MemoryStore futures complete immediately")
}

impl LogStore for SharedStore {
    async fn append(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        *self.entered.lock().unwrap() += 1;
        {
            // Blocking is fine here: the commit thread is the only caller.
            let (lock, wake) = &*self.hold_appends;
            let _released = wake.wait_while(lock.lock().unwrap(), |held| *held).unwrap();
        }
        *self.attempts.lock().unwrap() += 1;
        if let Some(error) = self.fail_appends.lock().unwrap().clone() {
            return Err(error);
        }
        *self.appends.lock().unwrap() += 1;
        self.with(|s| now(s.append(entries)))
    }
    async fn read_range(&self, from: Lsn, to: Lsn) -> StorageResult<Vec<LogEntry>> {
        self.with(|s| now(s.read_range(from, to)))
    }
    async fn state(&self) -> StorageResult<LogState> {
        self.with(|s| now(s.state()))
    }
    async fn truncate_suffix(&mut self, from: Lsn) -> StorageResult<()> {
        self.with(|s| now(s.truncate_suffix(from)))
    }
    async fn compact_prefix(&mut self, through: Lsn) -> StorageResult<()> {
        self.with(|s| now(s.compact_prefix(through)))
    }
    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        self.with(|s| now(s.save_snapshot(snapshot)))
    }
    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        self.with(|s| now(s.install_snapshot(snapshot)))
    }
    async fn load_snapshot(&self) -> StorageResult<Option<Snapshot>> {
        self.with(|s| now(s.load_snapshot()))
    }
    async fn save_metadata(&mut self, metadata: &Metadata) -> StorageResult<()> {
        self.with(|s| now(s.save_metadata(metadata)))
    }
    async fn load_metadata(&self) -> StorageResult<Option<Metadata>> {
        self.with(|s| now(s.load_metadata()))
    }
}

impl CheckpointStore for SharedStore {
    type Save = (Arc<(Mutex<bool>, std::sync::Condvar)>, LogPosition);
    type Written = Snapshot;
    fn begin_save(&mut self, position: LogPosition) -> StorageResult<Self::Save> {
        Ok((Arc::clone(&self.hold_checkpoints), position))
    }
    fn write_save(
        (hold, position): Self::Save,
        hash: Hash,
        bytes: u64,
        fill: impl FnOnce(&mut super::checkpoint::ImageSink<'_>) -> StorageResult<bool>,
    ) -> StorageResult<Option<Snapshot>> {
        // Held between the two passes over the image: writes applied meanwhile must not
        // change what the second pass writes.
        let (lock, wake) = &*hold;
        let _released = wake.wait_while(lock.lock().unwrap(), |held| *held).unwrap();
        super::checkpoint::collect_image(position, hash, bytes, fill)
    }
    async fn finish_save(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        super::checkpoint::save_and_compact(self, &snapshot).await
    }
}

/// Waits (10 s at most) for `store` to hold a snapshot at `lsn` or later.
async fn checkpoint_at_least(store: &SharedStore, lsn: Lsn) {
    let landed = async {
        while store
            .with(|s| now(s.load_snapshot()))
            .unwrap()
            .is_none_or(|snapshot| snapshot.position.lsn < lsn)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), landed)
        .await
        .unwrap_or_else(|_| panic!("no checkpoint at {lsn} or later within 10 s"));
}

fn insert(id: &str, n: i64) -> Txn {
    let doc = RawDoc::from_value(&json!({"_id": id, "n": n})).unwrap();
    Txn::single(Op::Insert {
        collection: "c".into(),
        doc,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_fsyncs_and_survive_restart() {
    let store = SharedStore::default();
    let leader = Leader::open(store.clone(), LeaderConfig::default())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let leader = leader.clone();
            tokio::spawn(async move { leader.write(insert(&format!("d{i}"), i)).await })
        })
        .collect();
    let mut lsns = Vec::new();
    for task in tasks {
        lsns.push(task.await.unwrap().unwrap());
    }
    lsns.sort();
    lsns.dedup();
    assert_eq!(lsns.len(), 500, "every write got its own LSN");
    assert_eq!(lsns.last(), Some(&Lsn(500)));
    let appends = *store.appends.lock().unwrap();
    assert!(
        appends < 500,
        "group commit: 500 writes took {appends} appends"
    );
    assert_eq!(leader.status().committed_lsn, Lsn(500));
    let hash = leader.read(|s| s.state_hash());
    leader.shutdown().await;

    let reopened = Leader::open(store.clone(), LeaderConfig::default())
        .await
        .unwrap();
    assert_eq!(reopened.read(|s| s.state_hash()), hash);
    assert_eq!(
        reopened.status().node_id,
        leader.status().node_id,
        "node id is durable"
    );
    reopened.shutdown().await;
}

#[tokio::test]
async fn rejections_change_nothing_and_report_codes() {
    let leader = Leader::open(SharedStore::default(), LeaderConfig::default())
        .await
        .unwrap();
    assert_eq!(leader.write(insert("a", 1)).await.unwrap(), Lsn(1));
    let err = leader.write(insert("a", 2)).await.unwrap_err();
    assert_eq!(err.code(), "already_exists");
    // The rejected write used no LSN.
    assert_eq!(leader.write(insert("b", 1)).await.unwrap(), Lsn(2));
    leader.shutdown().await;
}

#[tokio::test]
async fn checkpoints_compact_and_restart_from_snapshot() {
    let store = SharedStore::default();
    let config = LeaderConfig {
        checkpoint_every_entries: 10,
        ..LeaderConfig::default()
    };
    let leader = Leader::open(store.clone(), config.clone()).await.unwrap();
    for i in 0..35 {
        leader.write(insert(&format!("d{i}"), i)).await.unwrap();
        // Checkpoints run beside the commits, one at a time, on a thread of low priority: on
        // a loaded machine the one begun at 10 may still run at write 35. Waiting here for
        // each to land makes the next one begin by 20 and land too.
        if i == 14 || i == 24 {
            checkpoint_at_least(&store, Lsn(i as u64 - 4)).await;
        }
    }
    let hash = leader.read(|s| s.state_hash());
    leader.shutdown().await;
    let snapshot = store
        .with(|s| now(s.load_snapshot()))
        .unwrap()
        .expect("a checkpoint");
    // The shutdown finishes the checkpoint under way: the last begins at 30, or later, or
    // (the one begun at 20 still under way through write 35) at 20.
    assert!(snapshot.position.lsn >= Lsn(20));
    let log = store.with(|s| now(s.state())).unwrap();
    assert_eq!(
        log.first,
        snapshot.position.lsn.next(),
        "the log was compacted behind it"
    );
    let reopened = Leader::open(store.clone(), config.clone()).await.unwrap();
    assert_eq!(reopened.read(|s| s.state_hash()), hash);
    assert_eq!(reopened.status().applied_lsn, Lsn(35));
    reopened.shutdown().await;

    // The entries since the last checkpoint count after a restart: crashing every few writes
    // must not stop checkpoints (the log after the snapshot would grow without end).
    let behind = |store: &SharedStore| {
        let snapshot = store.with(|s| now(s.load_snapshot())).unwrap().unwrap();
        let log = store.with(|s| now(s.state())).unwrap();
        log.last.lsn.0 - snapshot.position.lsn.0
    };
    for round in 0..6 {
        let leader = Leader::open(store.clone(), config.clone()).await.unwrap();
        for i in 0..4 {
            leader
                .write(insert(&format!("r{round}-{i}"), i))
                .await
                .unwrap();
        }
        leader.shutdown().await;
        assert!(
            behind(&store) < 10,
            "round {round}: {} entries after the snapshot",
            behind(&store)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_while_a_checkpoint_is_written() {
    let store = SharedStore::default();
    let config = LeaderConfig {
        checkpoint_every_entries: 10,
        ..LeaderConfig::default()
    };
    store.hold_checkpoints(true);
    let leader = Leader::open(store.clone(), config.clone()).await.unwrap();
    for i in 0..10 {
        leader.write(insert(&format!("d{i}"), i)).await.unwrap();
    }
    // The checkpoint of the state at 10 is under way, its snapshot held back; writes go on
    // (a commit thread that waited for the checkpoint would time out here).
    let hash_at_10 = leader.read(|s| s.state_hash());
    tokio::time::timeout(Duration::from_secs(10), async {
        for i in 10..60 {
            leader.write(insert(&format!("d{i}"), i)).await.unwrap();
        }
    })
    .await
    .expect("writes commit while the checkpoint is held back");
    assert_eq!(leader.status().applied_lsn, Lsn(60));
    assert!(store.with(|s| now(s.load_snapshot())).unwrap().is_none());
    assert_eq!(store.with(|s| now(s.state())).unwrap().first, Lsn(1));

    store.hold_checkpoints(false);
    let snapshot = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(snapshot) = store.with(|s| now(s.load_snapshot())).unwrap() {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the checkpoint finishes once its snapshot is written");
    // The snapshot is the state when the checkpoint began, not when it was written.
    assert_eq!(snapshot.position.lsn, Lsn(10));
    assert_eq!(
        State::from_snapshot(&snapshot).unwrap().state_hash(),
        hash_at_10
    );
    assert_eq!(store.with(|s| now(s.state())).unwrap().first, Lsn(11));
    let hash = leader.read(|s| s.state_hash());
    leader.shutdown().await;
    let reopened = Leader::open(store.clone(), config).await.unwrap();
    assert_eq!(reopened.read(|s| s.state_hash()), hash);
    reopened.shutdown().await;
}

#[tokio::test]
async fn ttl_expiry_happens_without_writes() {
    let leader = Leader::open(SharedStore::default(), LeaderConfig::default())
        .await
        .unwrap();
    let create = Op::CreateCollection {
        collection: "s".into(),
        options: CollectionOptions { ttl_ms: Some(50) },
    };
    leader.write(Txn::single(create)).await.unwrap();
    let doc = RawDoc::from_value(&json!({"_id": "x"})).unwrap();
    leader
        .write(Txn::single(Op::Insert {
            collection: "s".into(),
            doc,
        }))
        .await
        .unwrap();
    // The commit thread appends a tick entry at the deadline; poll with a generous bound.
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if leader.read(|s| s.collection("s").unwrap().get("x").is_none()) {
            gone = true;
            break;
        }
    }
    assert!(gone, "the document did not expire");
    assert!(
        leader.status().committed_lsn >= Lsn(3),
        "expiry went through the log"
    );
    leader.shutdown().await;
}

#[tokio::test]
async fn after_shutdown_writes_are_refused() {
    let leader = Leader::open(SharedStore::default(), LeaderConfig::default())
        .await
        .unwrap();
    leader.write(insert("a", 1)).await.unwrap();
    leader.shutdown().await;
    assert_eq!(
        leader.write(insert("b", 1)).await.unwrap_err(),
        WriteError::ShuttingDown
    );
    leader.shutdown().await; // idempotent
}

#[tokio::test]
async fn a_failed_append_stops_writes_and_never_acknowledges() {
    let store = SharedStore::default();
    let leader = Leader::open(store.clone(), LeaderConfig::default())
        .await
        .unwrap();
    leader.write(insert("a", 1)).await.unwrap();
    *store.fail_appends.lock().unwrap() = Some(StorageError::Io("disk on fire".into()));
    assert_eq!(
        leader.write(insert("b", 1)).await.unwrap_err().code(),
        "storage_failed"
    );
    *store.fail_appends.lock().unwrap() = None;
    assert_eq!(
        leader.write(insert("c", 1)).await.unwrap_err().code(),
        "storage_failed"
    );
    assert_eq!(leader.status().storage, StorageHealth::Failed);
    // Reads go on, from what is durable: "b" never reached the state.
    let found = |id: &'static str| leader.read(|s| s.collection("c").unwrap().get(id).is_some());
    assert!(found("a"));
    assert!(!found("b"));
    assert_eq!(leader.status().applied_lsn, Lsn(1));
    leader.shutdown().await;
    // What is durable is exactly what was acknowledged.
    let reopened = Leader::open(store, LeaderConfig::default()).await.unwrap();
    assert_eq!(reopened.status().applied_lsn, Lsn(1));
    reopened.shutdown().await;
}

/// The same leader over the real file WAL: writes, a checkpoint, a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_round_trip_with_checkpoints() {
    let dir = std::env::temp_dir().join(format!("cstore-leader-{}", rand::random::<u64>()));
    let config = LeaderConfig {
        checkpoint_every_entries: 50,
        ..LeaderConfig::default()
    };
    let store = crate::wal::FileStore::open(&dir).unwrap();
    let leader = Leader::open(store, config.clone()).await.unwrap();
    let writes: Vec<_> = (0..200)
        .map(|i| {
            let leader = leader.clone();
            tokio::spawn(async move { leader.write(insert(&format!("d{i}"), i)).await })
        })
        .collect();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    let hash = leader.read(|s| s.state_hash());
    leader.shutdown().await;
    // Shutdown has closed the store, so it opens again at once (its directory lock is free).
    let store = crate::wal::FileStore::open(&dir).unwrap();
    assert!(
        store.load_snapshot_blocking().unwrap().is_some(),
        "a checkpoint was written"
    );
    let reopened = Leader::open(store, config).await.unwrap();
    assert_eq!(reopened.read(|s| s.state_hash()), hash);
    assert_eq!(reopened.status().applied_lsn, Lsn(200));
    reopened.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// While a batch's fsync has not returned, reads answer at once from what is durable and do
/// not see the batch; they see it once it is durable, and never if its append fails: no read
/// returns data a crash could take back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_only_durable_entries() {
    let store = SharedStore::default();
    let leader = Leader::open(store.clone(), LeaderConfig::default())
        .await
        .unwrap();
    leader.write(insert("a", 1)).await.unwrap();
    let sees = |id: &'static str| leader.read(|s| s.collection("c").unwrap().get(id).is_some());
    assert!(sees("a"), "durable data is read at once");

    // The append of "b" is held: the commit thread checked it and waits in the fsync.
    let attempts = || *store.attempts.lock().unwrap();
    let entered = || *store.entered.lock().unwrap();
    let waiting_in_append = |appends: usize| async move {
        while entered() < appends {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    store.hold(true);
    let appends = entered() + 1;
    let write = tokio::spawn({
        let leader = leader.clone();
        async move { leader.write(insert("b", 2)).await }
    });
    waiting_in_append(appends).await;
    assert!(!write.is_finished(), "the write waits for its fsync");
    assert!(
        !sees("b"),
        "an entry whose fsync has not returned is not read"
    );
    assert_eq!(leader.status().applied_lsn, Lsn(1));
    assert_eq!(leader.status().committed_lsn, Lsn(1));
    let before = attempts();
    store.hold(false);
    assert_eq!(write.await.unwrap(), Ok(Lsn(2)));
    assert_eq!(attempts(), before + 1);
    assert!(
        sees("b"),
        "read your writes: the answer comes after the state applied it"
    );

    // If the append fails, no read ever sees the entry.
    store.hold(true);
    *store.fail_appends.lock().unwrap() = Some(StorageError::Io("disk on fire".into()));
    let appends = entered() + 1;
    let write = tokio::spawn({
        let leader = leader.clone();
        async move { leader.write(insert("c", 3)).await }
    });
    waiting_in_append(appends).await;
    assert!(!sees("c"));
    store.hold(false);
    assert_eq!(write.await.unwrap().unwrap_err().code(), "storage_failed");
    assert!(!sees("c"));
    assert!(sees("b"));
    assert_eq!(leader.status().applied_lsn, Lsn(2));
    leader.shutdown().await;
}

/// Out of space: the batch fails with `disk_full`, nothing of it stays in the state, and
/// writes resume by themselves once space is back, at the LSN after the last durable one.
#[tokio::test]
async fn a_full_disk_refuses_writes_until_space_returns() {
    let store = SharedStore::default();
    let leader = Leader::open(store.clone(), LeaderConfig::default())
        .await
        .unwrap();
    leader.write(insert("a", 1)).await.unwrap();
    *store.fail_appends.lock().unwrap() = Some(StorageError::Full("no space left".into()));
    for id in ["b", "c"] {
        let error = leader.write(insert(id, 2)).await.unwrap_err();
        assert_eq!(error.code(), "disk_full", "{error}");
    }
    assert_eq!(leader.status().storage, StorageHealth::DiskFull);
    assert_eq!(leader.status().applied_lsn, Lsn(1));
    let b_seen = leader.read(|s| s.collection("c").unwrap().get("b").is_some());
    assert!(!b_seen, "reads answer from the durable state");

    *store.fail_appends.lock().unwrap() = None;
    assert_eq!(leader.write(insert("b", 2)).await, Ok(Lsn(2)));
    assert_eq!(leader.status().storage, StorageHealth::Ok);
    leader.shutdown().await;
    let reopened = Leader::open(store, LeaderConfig::default()).await.unwrap();
    assert_eq!(reopened.status().applied_lsn, Lsn(2));
    reopened.shutdown().await;
}

/// A batch that spans segments and fails its fdatasync in a later one: the part synced in
/// the earlier segment is durable, so the leader publishes it (its writers were told the
/// batch failed), keeps reading from exactly what is durable, and a restart finds the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_in_a_later_segment_keeps_reads_on_what_is_durable() {
    let dir = std::env::temp_dir().join(format!("cstore-leader-{}", rand::random::<u64>()));
    let options = crate::wal::WalOptions {
        segment_bytes_max: 300,
        hashes_checked_by_replay: false,
        scan_read_bytes: crate::wal::SCAN_READ_BYTES,
    };
    let mut store = crate::wal::FileStore::open_with(&dir, options).unwrap();
    store.inject_faults(crate::wal::FaultPlan::parse("fsync_eio_after:3x1").unwrap());
    let leader = Leader::open(store, LeaderConfig::default()).await.unwrap();
    let txns = (0..20).map(|i| insert(&format!("d{i}"), i)).collect();
    let results = leader.write_many(txns).await;
    assert!(results.iter().any(Result::is_err), "the fault fired");
    assert_eq!(leader.status().storage, StorageHealth::Failed);
    let status = leader.status();
    assert_eq!(
        status.applied_lsn, status.committed_lsn,
        "the state is what is durable"
    );
    let held = leader.read(|s| s.collection("c").map_or(0, |c| c.len()));
    // One document per entry: the reads see every durable entry, published or acknowledged.
    assert_eq!(held as u64, status.committed_lsn.0);
    for (i, result) in results.iter().enumerate() {
        if let Ok(lsn) = result {
            assert!(
                *lsn <= status.committed_lsn,
                "write {i} acknowledged at {lsn}"
            );
        }
    }
    leader.shutdown().await;
    let reopened = Leader::open(
        crate::wal::FileStore::open_with(&dir, options).unwrap(),
        LeaderConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(reopened.status().applied_lsn, status.committed_lsn);
    let held_after = reopened.read(|s| s.collection("c").map_or(0, |c| c.len()));
    assert_eq!(held_after, held);
    reopened.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A document expires while the disk is full: the expiry tick is refused like any batch, and
/// retried about once a second, not in a tight loop of state rebuilds; it goes through once
/// space is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_on_a_full_disk_is_retried_slowly() {
    let store = SharedStore::default();
    let leader = Leader::open(store.clone(), LeaderConfig::default())
        .await
        .unwrap();
    let create = Op::CreateCollection {
        collection: "s".into(),
        options: CollectionOptions { ttl_ms: Some(30) },
    };
    leader.write(Txn::single(create)).await.unwrap();
    *store.fail_appends.lock().unwrap() = Some(StorageError::Full("no space left".into()));
    let doc = RawDoc::from_value(&json!({"_id": "x"})).unwrap();
    let insert_x = Txn::single(Op::Insert {
        collection: "s".into(),
        doc,
    });
    assert_eq!(
        leader.write(insert_x.clone()).await.unwrap_err().code(),
        "disk_full"
    );
    *store.fail_appends.lock().unwrap() = None;
    leader.write(insert_x).await.unwrap();
    *store.fail_appends.lock().unwrap() = Some(StorageError::Full("no space left".into()));
    let before = *store.attempts.lock().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tried = *store.attempts.lock().unwrap() - before;
    assert!(tried <= 2, "{tried} ticks tried in 600 ms on a full disk");
    assert!(leader.read(|s| s.collection("s").unwrap().get("x").is_some()));
    *store.fail_appends.lock().unwrap() = None;
    let mut gone = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if leader.read(|s| s.collection("s").unwrap().get("x").is_none()) {
            gone = true;
            break;
        }
    }
    assert!(gone, "the document expires once space is back");
    leader.shutdown().await;
}
