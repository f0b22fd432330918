//! The browser replica's driver, end to end in headless Chromium, against an in-browser
//! leader (core's `LeaderSession` over memory, see `transport::loopback`).
//!
//! Each test runs the real sync loop, writer, watches and status over the same traits the
//! WebSocket and `fetch` implement; the loopback leader adds what a real server cannot do on
//! cue: stop at a precise moment, compact, tamper with a frame, count what it sent. The
//! suite against a real `cstore serve` is `replica_server.rs`.
//!
//! Run: `CHROMEDRIVER=$(command -v chromedriver) cargo test -p cstore-wasm
//! --target wasm32-unknown-unknown --test replica_loopback`.

mod support;

use std::rc::Rc;

use cstore_core::query::{Filter, FindQuery};
use cstore_core::{LogEntry, StoredDoc};
use cstore_wasm::replica::network::set_online;
use cstore_wasm::transport::loopback::LoopbackLeader;
use serde_json::json;
use support::{
    Profile, caught_up, index, insert, leader_with_docs, open, recorder, unique_index, wait_until,
};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn query(body: serde_json::Value) -> FindQuery {
    FindQuery::parse(&body).expect("test query")
}

fn ids(docs: &[StoredDoc]) -> Vec<String> {
    docs.iter().map(|d| d.doc.id()).collect()
}

#[wasm_bindgen_test]
async fn bootstraps_then_follows_live_updates() {
    let leader = LoopbackLeader::new();
    leader.commit(index("users", "age")).unwrap();
    for i in 0..50 {
        let doc = format!(r#"{{"_id":"u{i:02}","age":{}}}"#, i % 10);
        leader.commit(insert("users", &doc)).unwrap();
    }
    let replica = open(&leader, &Profile::default()).await;
    caught_up(&replica, &leader).await;

    assert_eq!(
        replica.get("users", "u07").unwrap().doc.as_str(),
        r#"{"_id":"u07","age":7}"#
    );
    assert!(replica.get("users", "nope").is_none());
    let found = replica
        .find(
            "users",
            &query(json!({"filter": {"age": 3}, "sort": {"_id": -1}})),
        )
        .unwrap();
    assert_eq!(ids(&found), ["u43", "u33", "u23", "u13", "u03"]);
    let filter = Filter::parse(&json!({"age": {"$gte": 5}})).unwrap();
    assert_eq!(replica.count("users", &filter), 25);
    let status = replica.status();
    assert!(status.connected && status.online);
    assert_eq!(status.lag(), 0);
    assert_eq!(status.pending_writes, 0);

    leader
        .commit(insert("users", r#"{"_id":"u99","age":3}"#))
        .unwrap();
    caught_up(&replica, &leader).await;
    assert!(replica.get("users", "u99").is_some());
    assert_eq!(
        replica.shared().borrow().local.current().state_hash(),
        leader.state().state_hash()
    );
    replica.close().await;
    assert_eq!(leader.open_connections(), 0);
}

#[wasm_bindgen_test]
async fn reconnects_after_a_restart_and_resumes_without_download() {
    let leader = leader_with_docs(20);
    let replica = open(&leader, &Profile::default()).await;
    caught_up(&replica, &leader).await;
    assert_eq!(leader.sent().entries, 20);

    leader.stop();
    wait_until("the replica notices", 2_000, || !replica.status().connected).await;
    leader.start();
    for i in 20..25 {
        leader
            .commit(insert("c", &format!(r#"{{"_id":"d{i}"}}"#)))
            .unwrap();
    }
    caught_up(&replica, &leader).await;
    let sent = leader.sent();
    assert_eq!(sent.entries, 25, "the reconnect re-downloaded entries");
    assert_eq!(sent.snapshots, 0);
    assert!(sent.connections >= 2);
    assert!(replica.status().connected);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_compacted_leader_bootstraps_from_a_snapshot() {
    let leader = leader_with_docs(30);
    leader.compact();
    leader.commit(insert("c", r#"{"_id":"after"}"#)).unwrap();
    let replica = open(&leader, &Profile::default()).await;
    caught_up(&replica, &leader).await;
    assert_eq!(leader.sent().snapshots, 1);
    assert_eq!(replica.find("c", &FindQuery::all()).unwrap().len(), 31);
    assert_eq!(
        replica.shared().borrow().local.current().state_hash(),
        leader.state().state_hash()
    );
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_frame_with_a_wrong_hash_rebootstraps_and_says_so() {
    let leader = leader_with_docs(10);
    let replica = open(&leader, &Profile::default()).await;
    caught_up(&replica, &leader).await;
    let statuses = recorder();
    let seen = statuses.clone();
    replica.on_status(Rc::new(move |s| seen.borrow_mut().push(s.clone())));

    leader.tamper_next_entries();
    leader.commit(insert("c", r#"{"_id":"tampered"}"#)).unwrap();
    wait_until("a rebootstrap", 5_000, || {
        replica.status().rebootstraps == 1
    })
    .await;
    caught_up(&replica, &leader).await;
    let status = replica.status();
    assert_eq!(status.last_error.as_ref().unwrap().code, "hash_mismatch");
    // The tampered entry was never shown; the fetched-again copy equals the leader's.
    assert_eq!(
        replica.get("c", "tampered").unwrap().doc.as_str(),
        r#"{"_id":"tampered"}"#
    );
    assert_eq!(
        replica.shared().borrow().local.current().state_hash(),
        leader.state().state_hash()
    );
    assert!(statuses.borrow().iter().any(|s| s.rebootstraps == 1));
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_corrupt_local_store_is_discarded_at_open() {
    let leader = leader_with_docs(5);
    let profile = Profile::default();
    let replica = open(&leader, &profile).await;
    caught_up(&replica, &leader).await;
    replica.close().await;

    // A record that chains correctly but whose content does not match its hash.
    let mut bad = LogEntry::new(
        leader.last(),
        leader.last_term(),
        cstore_core::TimestampMs(1),
        insert("c", r#"{"_id":"evil"}"#),
    );
    bad.txn = insert("c", r#"{"_id":"evil2"}"#);
    profile.store.plant(bad);
    let replica = open(&leader, &profile).await;
    let status = replica.status();
    assert_eq!(status.rebootstraps, 1);
    assert_eq!(status.last_error.as_ref().unwrap().code, "storage_corrupt");
    caught_up(&replica, &leader).await;
    assert!(replica.get("c", "evil").is_none() && replica.get("c", "evil2").is_none());
    assert_eq!(replica.find("c", &FindQuery::all()).unwrap().len(), 5);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn an_offline_write_is_queued_then_confirmed() {
    let leader = LoopbackLeader::new();
    leader
        .commit(insert("notes", r#"{"_id":"n0","text":"first"}"#))
        .unwrap();
    let profile = Profile::default();
    let replica = open(&leader, &profile).await;
    caught_up(&replica, &leader).await;

    leader.stop();
    set_online(replica.shared(), false);
    let id = replica
        .insert("notes", json!({"text": "written offline"}))
        .await
        .unwrap();
    // Visible at once, queued durably, not on the leader.
    assert_eq!(
        replica.get("notes", &id).unwrap().doc.to_value()["text"],
        "written offline"
    );
    assert_eq!(replica.status().pending_writes, 1);
    assert_eq!(profile.pending.len(), 1);
    assert!(
        leader
            .state()
            .collection("notes")
            .unwrap()
            .get(&id)
            .is_none()
    );
    replica
        .update("notes", "n0", &json!({"text": "edited"}))
        .await
        .unwrap();
    assert_eq!(replica.status().pending_writes, 2);

    leader.start();
    set_online(replica.shared(), true);
    replica.flush().await;
    let status = replica.status();
    assert_eq!(status.pending_writes, 0);
    assert!(profile.pending.is_empty());
    let on_leader = leader.state();
    let notes = on_leader.collection("notes").unwrap();
    assert_eq!(
        notes.get(&id).unwrap().doc.to_value()["text"],
        "written offline"
    );
    assert_eq!(notes.get("n0").unwrap().doc.to_value()["text"], "edited");
    // Confirmed through the replicated log, with the leader's versions.
    caught_up(&replica, &leader).await;
    let local = replica.get("notes", &id).unwrap();
    assert_eq!(local.version, notes.get(&id).unwrap().version);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_write_the_leader_refuses_is_rolled_back_and_reported() {
    let leader = LoopbackLeader::new();
    leader.commit(unique_index("users", "email")).unwrap();
    let replica = open(&leader, &Profile::default()).await;
    caught_up(&replica, &leader).await;
    let rejections = recorder();
    let seen = rejections.clone();
    replica.on_rejected(Rc::new(move |r| seen.borrow_mut().push(r.clone())));
    let watched = recorder();
    let seen = watched.clone();
    replica
        .watch(
            "users",
            FindQuery::all(),
            Rc::new(move |docs| seen.borrow_mut().push(ids(docs))),
        )
        .unwrap();

    // Offline, another client takes the address; this replica does not know yet.
    leader.stop();
    set_online(replica.shared(), false);
    leader
        .commit(insert("users", r#"{"_id":"other","email":"a@x"}"#))
        .unwrap();
    replica
        .insert("users", json!({"_id": "mine", "email": "a@x"}))
        .await
        .unwrap();
    assert!(replica.get("users", "mine").is_some());

    leader.start();
    set_online(replica.shared(), true);
    replica.flush().await;
    wait_until("the rejection report", 2_000, || {
        !rejections.borrow().is_empty()
    })
    .await;
    let rejection = rejections.borrow()[0].clone();
    assert_eq!(rejection.code, "unique_violation");
    assert_eq!(rejection.seq, 1);
    assert!(
        rejection.ops_json.contains(r#""_id":"mine""#),
        "{}",
        rejection.ops_json
    );
    caught_up(&replica, &leader).await;
    assert!(replica.get("users", "mine").is_none());
    assert!(replica.get("users", "other").is_some());
    wait_until("the watch shows the rollback", 2_000, || {
        watched
            .borrow()
            .last()
            .is_some_and(|last| last == &["other"])
    })
    .await;
    // A local clash is refused at once, with its code, and never queued.
    let error = replica
        .insert("users", json!({"email": "a@x"}))
        .await
        .unwrap_err();
    assert_eq!(cstore_core::ErrorCode::code(&error), "unique_violation");
    assert_eq!(replica.status().pending_writes, 0);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn data_and_pending_writes_survive_close_and_reopen() {
    let leader = leader_with_docs(8);
    let profile = Profile::default();
    let replica = open(&leader, &profile).await;
    caught_up(&replica, &leader).await;
    leader.stop();
    set_online(replica.shared(), false);
    replica
        .insert("c", json!({"_id": "offline"}))
        .await
        .unwrap();
    replica.close().await;

    // Reopen with the leader still down: everything is there, from the local copy.
    let replica = open(&leader, &profile).await;
    assert_eq!(replica.find("c", &FindQuery::all()).unwrap().len(), 9);
    assert!(replica.get("c", "offline").is_some());
    assert_eq!(replica.status().pending_writes, 1);
    assert_eq!(replica.status().applied_lsn, leader.last().lsn);
    let entries_before = leader.sent().entries;

    leader.start();
    replica.flush().await;
    caught_up(&replica, &leader).await;
    assert!(
        leader
            .state()
            .collection("c")
            .unwrap()
            .get("offline")
            .is_some()
    );
    // Only the confirmed write streamed: the reopened replica resumed where it was.
    assert_eq!(leader.sent().entries, entries_before + 1);
    replica.close().await;

    // Reopened with every write confirmed (an empty queue): new writes number on after the
    // committed ones instead of starting again at 1, which the leader would refuse.
    let replica = open(&leader, &profile).await;
    caught_up(&replica, &leader).await;
    replica.insert("c", json!({"_id": "after"})).await.unwrap();
    replica.flush().await;
    assert!(
        leader
            .state()
            .collection("c")
            .unwrap()
            .get("after")
            .is_some()
    );
    replica.close().await;
}

#[wasm_bindgen_test]
async fn watches_fire_once_per_batch_with_the_current_result() {
    let leader = LoopbackLeader::new();
    leader.commit(index("tasks", "done")).unwrap();
    let replica = open(&leader, &Profile::default()).await;
    caught_up(&replica, &leader).await;
    let calls = recorder();
    let seen = calls.clone();
    let open_tasks = query(json!({"filter": {"done": false}, "sort": {"_id": 1}, "limit": 3}));
    let id = replica
        .watch(
            "tasks",
            open_tasks,
            Rc::new(move |docs| seen.borrow_mut().push(ids(docs))),
        )
        .unwrap();
    wait_until("the first call", 1_000, || calls.borrow().len() == 1).await;
    assert!(calls.borrow()[0].is_empty());

    for i in 0..20 {
        let doc = format!(r#"{{"_id":"t{i:02}","done":{}}}"#, i % 2 == 1);
        leader.commit(insert("tasks", &doc)).unwrap();
    }
    caught_up(&replica, &leader).await;
    wait_until("the batch's call", 1_000, || {
        calls
            .borrow()
            .last()
            .is_some_and(|l| l == &["t00", "t02", "t04"])
    })
    .await;
    let after_batch = calls.borrow().len();
    assert!(after_batch <= 1 + 20, "at most one call per applied batch");

    // A change elsewhere does not call; a local write does, at once.
    leader.commit(insert("other", r#"{"_id":"x"}"#)).unwrap();
    caught_up(&replica, &leader).await;
    cstore_wasm::time::sleep(20).await;
    assert_eq!(calls.borrow().len(), after_batch);
    replica
        .insert("tasks", json!({"_id": "t000", "done": false}))
        .await
        .unwrap();
    wait_until("the local write's call", 1_000, || {
        calls
            .borrow()
            .last()
            .is_some_and(|l| l == &["t00", "t000", "t02"])
    })
    .await;

    assert!(replica.unwatch(id));
    let before = calls.borrow().len();
    leader
        .commit(insert("tasks", r#"{"_id":"a","done":false}"#))
        .unwrap();
    caught_up(&replica, &leader).await;
    cstore_wasm::time::sleep(20).await;
    assert_eq!(calls.borrow().len(), before);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_resend_after_a_lost_answer_commits_once() {
    let leader = LoopbackLeader::new();
    let replica = open(&leader, &Profile::default()).await;
    let rejections = recorder();
    let seen = rejections.clone();
    replica.on_rejected(Rc::new(move |r| seen.borrow_mut().push(r.clone())));
    leader.lose_next_answer();
    replica.insert("c", json!({"_id": "once"})).await.unwrap();
    replica.insert("c", json!({"_id": "twice"})).await.unwrap();
    replica.flush().await;
    caught_up(&replica, &leader).await;
    // Two writes, two entries: the resend of the first was answered from its origin record.
    assert_eq!(leader.last().lsn.0, 2);
    assert_eq!(replica.status().pending_writes, 0);
    let origin = leader.state().origin(replica.client_id()).unwrap();
    assert_eq!(origin.seq, 2);
    assert!(
        rejections.borrow().is_empty(),
        "the resend was refused, not deduplicated"
    );
    replica.close().await;
}

#[wasm_bindgen_test]
async fn the_local_log_is_compacted_behind_a_snapshot() {
    use cstore_core::storage::LogStore;
    use cstore_wasm::replica::driver::COMPACT_ENTRIES_MIN;
    let leader = LoopbackLeader::new();
    let total = COMPACT_ENTRIES_MIN + 10;
    for i in 0..total {
        leader
            .commit(insert("c", &format!(r#"{{"_id":"d{i}"}}"#)))
            .unwrap();
    }
    let profile = Profile::default();
    let replica = open(&leader, &profile).await;
    caught_up(&replica, &leader).await;
    replica.close().await;
    let log = profile.store.clone().state().await.unwrap();
    assert!(log.first.0 > 1, "nothing was compacted: {log:?}");
    assert!(
        profile
            .store
            .clone()
            .load_snapshot()
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(log.last.lsn, leader.last().lsn);

    // Reopened from the snapshot and the entries after it: the same state.
    leader.stop();
    let replica = open(&leader, &profile).await;
    assert_eq!(
        replica.shared().borrow().local.current().state_hash(),
        leader.state().state_hash()
    );
    replica.close().await;
}
