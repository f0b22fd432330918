//! The local copy's one door: what `apply_committed`, `speculate` and `install` move, and in
//! which order.

use serde_json::json;

use cstore_core::doc::RawDoc;
use cstore_core::storage::MemoryStore;
use cstore_core::{LogEntry, LogPosition, Lsn, Op, Term, TimestampMs, Txn};

use super::*;

fn insert(id: &str) -> Txn {
    Txn::single(Op::Insert {
        collection: "c".into(),
        doc: RawDoc::from_value(&json!({"_id": id})).unwrap(),
    })
}

/// Entries inserting `ids` in order after `prev`.
fn chain(prev: LogPosition, ids: &[&str]) -> Vec<LogEntry> {
    let mut prev = prev;
    ids.iter()
        .map(|id| {
            let entry = LogEntry::new(prev, Term(1), TimestampMs(1_000), insert(id));
            prev = entry.position();
            entry
        })
        .collect()
}

async fn fresh() -> LocalCopy<MemoryStore> {
    LocalCopy::recover(MemoryStore::new(), Term(1), 1 << 20)
        .await
        .unwrap()
        .0
}

fn holds(copy: &LocalCopy<MemoryStore>, id: &str) -> bool {
    copy.local()
        .read(|s| s.collection("c").is_some_and(|c| c.get(id).is_some()))
}

#[tokio::test]
async fn apply_committed_moves_state_tail_and_watch_together() {
    let mut copy = fresh().await;
    let mut applied = copy.local().applied();
    let entries = chain(LogPosition::START, &["a", "b"]);
    let last = entries[1].position();
    copy.append(&entries).await.unwrap();
    assert!(!holds(&copy, "a"), "appended is not applied");
    assert_eq!(copy.local().applied_lsn(), Lsn::ZERO);
    copy.apply_committed(entries).await.unwrap();
    assert!(holds(&copy, "a") && holds(&copy, "b"));
    assert_eq!(copy.local().tail().last(), last);
    assert_eq!(copy.local().tail().read(Lsn(1), Lsn(3)).unwrap().len(), 2);
    assert!(applied.has_changed().unwrap());
    assert_eq!(*applied.borrow_and_update(), Lsn(2));
}

#[tokio::test]
async fn an_entry_that_does_not_apply_stops_the_batch_after_publishing_the_ones_before() {
    let copy = fresh().await;
    // "a" twice: the second insert is refused (already_exists).
    let entries = chain(LogPosition::START, &["a", "b", "a", "c"]);
    let published = entries[1].position();
    match copy.apply_committed(entries).await {
        Err(LocalError::Apply { lsn, .. }) => assert_eq!(lsn, Lsn(3)),
        other => panic!("expected an apply error, got {other:?}"),
    }
    assert!(holds(&copy, "b") && !holds(&copy, "c"));
    assert_eq!(copy.local().tail().last(), published);
    assert_eq!(copy.local().applied_lsn(), Lsn(2));
}

#[tokio::test]
async fn speculate_checks_without_moving_anything() {
    let copy = fresh().await;
    copy.apply_committed(chain(LogPosition::START, &["a"]))
        .await
        .unwrap();
    let before = copy.local().read(|s| s.state_hash());
    let results = copy
        .speculate(|state, speculations| {
            ["b", "a", "c"]
                .iter()
                .map(|id| {
                    let entry =
                        LogEntry::new(state.applied(), Term(1), TimestampMs(2_000), insert(id));
                    state
                        .apply_speculative(&entry)
                        .map(|speculation| speculations.push(speculation))
                        .is_ok()
                })
                .collect::<Vec<_>>()
        })
        .await;
    assert_eq!(
        results,
        [true, false, true],
        "each is checked on the ones before it"
    );
    assert_eq!(copy.local().read(|s| s.state_hash()), before);
    assert_eq!(copy.local().applied_lsn(), Lsn(1));
    assert_eq!(copy.local().tail().last().lsn, Lsn(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_snapshot_reads_the_state_readers_get_in_and_writers_wait_without_a_thread() {
    let copy = fresh().await;
    copy.apply_committed(chain(LogPosition::START, &["a"]))
        .await
        .unwrap();
    let local = Arc::clone(copy.local());
    let after_a = local.read(|s| s.applied());
    let (inside_tx, inside_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let snapshot = tokio::spawn({
        let local = Arc::clone(&local);
        async move {
            local
                .snapshot_with(move |_| {
                    inside_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                })
                .await
                .0
        }
    });
    tokio::task::spawn_blocking(move || inside_rx.recv())
        .await
        .unwrap()
        .expect("the snapshot reads the state");
    // A writer waits for the snapshot, on the gate rather than on the lock...
    let writer = tokio::spawn({
        let local = Arc::clone(&local);
        async move {
            local
                .apply(chain(after_a, &["b"]), |state, entry| {
                    state.apply(&entry).map(|_| entry)
                })
                .await
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !writer.is_finished(),
        "a writer waits while a snapshot reads"
    );
    // ...so readers still get in. Behind a writer waiting on the lock (which prefers writers)
    // they would wait for the whole snapshot; they read from threads of their own, so the
    // test fails rather than hangs then.
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    for _ in 0..4 {
        let local = Arc::clone(&local);
        let read_tx = read_tx.clone();
        std::thread::spawn(move || read_tx.send(local.read(|s| s.applied().lsn)));
    }
    let reads: Vec<_> = (0..4)
        .map(|_| read_rx.recv_timeout(Duration::from_secs(2)))
        .collect();
    release_tx.send(()).unwrap();
    for read in reads {
        assert_eq!(read.expect("a reader is not held up by a snapshot"), Lsn(1));
    }
    assert_eq!(snapshot.await.unwrap().position, after_a);
    writer.await.unwrap().unwrap();
    assert_eq!(local.applied_lsn(), Lsn(2));
    assert!(holds(&copy, "b"));
}

#[tokio::test]
async fn install_replaces_the_copy_and_resets_the_tail() {
    let mut copy = fresh().await;
    let entries = chain(LogPosition::START, &["a", "b"]);
    copy.append(&entries).await.unwrap();
    copy.apply_committed(entries).await.unwrap();
    // A snapshot from elsewhere, of a state holding "x", "y" and "z".
    let mut other = State::new();
    for entry in chain(LogPosition::START, &["x", "y", "z"]) {
        other.apply(&entry).unwrap();
    }
    let snapshot = other.snapshot();
    // The hook runs once the store has it and before readers see it.
    let readers = Arc::clone(copy.local());
    let mut seen_in_hook = None;
    copy.install(&snapshot, || seen_in_hook = Some(readers.applied_lsn()))
        .await
        .unwrap();
    assert_eq!(seen_in_hook, Some(Lsn(2)));
    assert!(holds(&copy, "z") && !holds(&copy, "a"));
    assert_eq!(copy.local().applied_lsn(), Lsn(3));
    assert_eq!(copy.local().tail().last(), snapshot.position);
    assert!(
        copy.local().tail().read(Lsn(1), Lsn(3)).is_err(),
        "below the tail now"
    );
}
