//! The browser replica drains its queue of pending writes through the write channel
//! (`GET /v1/write`) of a real `cstore serve`, in headless Chromium: pipelined, each write
//! committed once, a refused write rolled back with its code, the HTTP fallback when the
//! channel is refused, and a resend after the channel is cut in the middle of a drain. The
//! writes travel in lists (short ones here, so that a drain takes several messages).
//!
//! The server is the one scripts/test.sh starts through `wasm/tests/server-control.mjs`
//! (see `replica_server.rs`). The write channel is opened at the replica's HTTP base, which
//! is that proxy: it pipes the WebSocket through, counts the messages, refuses the upgrade
//! with a 404 on demand (a server without the route), cuts a channel after K messages and
//! answers lists itself with 400 on demand (a server from before lists); the server's
//! `cstore_write_channel_txns_total` counts the writes it read.
//! Each test measures the server's committed LSN before and after: a write committed twice
//! (or a rejected one given an LSN) shows as a wrong difference.

mod support;

use std::rc::Rc;

use cstore_core::query::FindQuery;
use cstore_wasm::replica::channel_sender::{ChannelSender, WriteMode};
use cstore_wasm::replica::network::set_online;
use cstore_wasm::replica::pending::MemoryPending;
use cstore_wasm::replica::sender::FetchSender;
use cstore_wasm::replica::{Parts, ReplicaHandle};
use cstore_wasm::transport::loopback::SharedMemoryStore;
use cstore_wasm::transport::websocket::WebSocketTransport;
use serde_json::{Value, json};
use support::server::{committed_lsn, http, insert_doc, metric_sum, urls};
use support::{recorder, wait_until};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Opens a replica whose writes go through a [`ChannelSender`] in `mode`; the sender too,
/// for its counts.
async fn open(control: &str, ws: &str, mode: WriteMode) -> (ReplicaHandle, ChannelSender) {
    open_with(
        ChannelSender::new(FetchSender::new(control, None), None, mode),
        ws,
    )
    .await
}

/// [`open`] with lists of at most `writes` writes per message.
async fn open_with_lists(control: &str, ws: &str, writes: usize) -> (ReplicaHandle, ChannelSender) {
    let sender = ChannelSender::new(FetchSender::new(control, None), None, WriteMode::Channel)
        .with_list_txns_max(writes);
    open_with(sender, ws).await
}

async fn open_with(sender: ChannelSender, ws: &str) -> (ReplicaHandle, ChannelSender) {
    let replica = ReplicaHandle::open(Parts {
        store: SharedMemoryStore::new(),
        transport: WebSocketTransport::new(ws, None),
        pending: MemoryPending::new(),
        sender: sender.clone(),
    })
    .await
    .expect("replica opens");
    (replica, sender)
}

async fn caught_up(replica: &ReplicaHandle, control: &str) {
    let target = committed_lsn(control).await;
    wait_until(&format!("applied lsn {target}"), 20_000, || {
        replica.status().applied_lsn.0 >= target
    })
    .await;
}

/// A collection name of this run: the server outlives one run of the suite.
fn fresh(name: &str) -> String {
    format!("{name}_{:012x}", cstore_wasm::time::random_u64() >> 16)
}

/// The proxy's write channel counts, after `action` (`stats`, `refuse`, `pass`, `cut-after?…`).
async fn channel_control(control: &str, action: &str) -> Value {
    let method = if action == "stats" { "GET" } else { "POST" };
    let (status, answer) = http(
        method,
        &format!("{control}/control/write-channel/{action}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "write-channel {action}: {answer}");
    answer
}

/// The documents of `collection` on the server.
async fn server_docs(control: &str, collection: &str) -> Vec<Value> {
    let (status, answer) = http(
        "POST",
        &format!("{control}/v1/c/{collection}/find"),
        Some(&json!({"limit": 10_000})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["docs"].as_array().unwrap().clone()
}

/// Queues inserts `{_id: "w0000", n: 0}`, … for each `n` of `range` into `collection` while
/// offline.
async fn queue_offline(replica: &ReplicaHandle, collection: &str, range: std::ops::Range<usize>) {
    set_online(replica.shared(), false);
    let count = range.len();
    for n in range {
        replica
            .insert(collection, json!({"_id": format!("w{n:04}"), "n": n}))
            .await
            .unwrap();
    }
    assert_eq!(replica.status().pending_writes, count);
}

/// Brings the replica back online and waits until its queue is sent.
async fn drain(replica: &ReplicaHandle) {
    set_online(replica.shared(), true);
    replica.flush().await;
}

/// A count from the server's write-channel control (`action` as in [`channel_control`]).
async fn channel_count(control: &str, action: &str, field: &str) -> u64 {
    channel_control(control, action).await[field]
        .as_u64()
        .unwrap_or_else(|| panic!("write-channel {action}: no count {field:?}"))
}

/// The server's count of transactions that came through write channels; `None` before its
/// first (the recorder shows a counter once it was counted).
async fn channel_metric(control: &str) -> Option<f64> {
    let (sum, names) = metric_sum(control, "cstore_write_channel_txns_total").await;
    (!names.is_empty()).then_some(sum)
}

#[wasm_bindgen_test]
async fn an_offline_queue_drains_through_the_write_channel_once_each() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    const WRITES: usize = 200;
    const LIST: usize = 50;
    let coll = fresh("channel");
    insert_doc(control_url, &coll, json!({"_id": "first"})).await;
    let (replica, sender) = open_with_lists(control_url, ws, LIST).await;
    caught_up(&replica, control_url).await;
    let rejections = recorder();
    let seen = rejections.clone();
    replica.on_rejected(Rc::new(move |r| seen.borrow_mut().push(r.clone())));

    queue_offline(&replica, &coll, 0..WRITES).await;
    // Offline, someone else takes an id; this replica's insert of it is refused later.
    insert_doc(control_url, &coll, json!({"_id": "taken", "by": "server"})).await;
    replica
        .insert(&coll, json!({"_id": "taken", "by": "replica"}))
        .await
        .unwrap();
    let before = committed_lsn(control_url).await;
    let proxied = channel_count(control_url, "stats", "messages").await;
    let metric = channel_metric(control_url).await;

    drain(&replica).await;
    caught_up(&replica, control_url).await;

    // Every write through the channel, none over HTTP.
    let stats = sender.stats();
    assert_eq!(stats.http_batches, 0, "{stats:?}");
    assert_eq!(stats.channel_writes, WRITES as u64 + 1, "{stats:?}");
    assert_eq!(
        stats.opened, 1,
        "one channel for the whole drain: {stats:?}"
    );
    // One batch of 201 writes in lists of 50: five messages, several in flight at once.
    assert_eq!(
        stats.channel_messages,
        (WRITES + 1).div_ceil(LIST) as u64,
        "{stats:?}"
    );
    let messages = channel_count(control_url, "stats", "messages").await;
    assert_eq!(messages - proxied, stats.channel_messages);
    let counted = channel_metric(control_url).await;
    assert_eq!(
        counted.expect("the server's /metrics has cstore_write_channel_txns_total")
            - metric.unwrap_or(0.0),
        (WRITES + 1) as f64,
        "the server's count of write-channel transactions"
    );
    // Each committed exactly once, in order; the refused one got no LSN and was rolled back.
    assert_eq!(committed_lsn(control_url).await - before, WRITES as u64);
    let docs = server_docs(control_url, &coll).await;
    assert_eq!(docs.len(), WRITES + 2, "first, taken and the writes");
    let taken = docs.iter().find(|d| d["_id"] == "taken").unwrap();
    assert_eq!(taken["by"], "server");
    wait_until("the rejection", 5_000, || !rejections.borrow().is_empty()).await;
    assert_eq!(rejections.borrow().len(), 1);
    assert_eq!(rejections.borrow()[0].code, "already_exists");
    assert_eq!(
        replica.get(&coll, "taken").unwrap().doc.to_value()["by"],
        "server"
    );
    assert_eq!(
        replica.find(&coll, &FindQuery::all()).unwrap().len(),
        WRITES + 2
    );
    assert_eq!(replica.status().pending_writes, 0);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_refused_channel_falls_back_to_http_for_a_while() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    let coll = fresh("fallback");
    let (replica, sender) = open(control_url, ws, WriteMode::Channel).await;
    caught_up(&replica, control_url).await;
    let refused_before = channel_count(control_url, "refuse", "refused").await;
    let before = committed_lsn(control_url).await;
    queue_offline(&replica, &coll, 0..50).await;
    drain(&replica).await;
    // A second drain stays on HTTP without trying the upgrade again.
    queue_offline(&replica, &coll, 50..70).await;
    drain(&replica).await;
    let refused = channel_count(control_url, "pass", "refused").await;

    let stats = sender.stats();
    assert_eq!(stats.opened, 0, "{stats:?}");
    assert_eq!(
        stats.refused, 1,
        "one refused upgrade, then HTTP: {stats:?}"
    );
    assert_eq!(refused - refused_before, 1);
    assert_eq!(stats.http_batches, 2, "{stats:?}");
    assert_eq!(stats.channel_writes, 0);
    assert_eq!(committed_lsn(control_url).await - before, 70);
    assert_eq!(server_docs(control_url, &coll).await.len(), 70);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn forced_http_never_opens_a_channel() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    let coll = fresh("forced");
    let (replica, sender) = open(control_url, ws, WriteMode::Http).await;
    caught_up(&replica, control_url).await;
    let upgrades = channel_count(control_url, "stats", "upgrades").await;
    queue_offline(&replica, &coll, 0..30).await;
    drain(&replica).await;
    let stats = sender.stats();
    assert_eq!(
        (stats.opened, stats.refused, stats.channel_writes),
        (0, 0, 0)
    );
    assert_eq!(stats.http_batches, 1);
    let after = channel_count(control_url, "stats", "upgrades").await;
    assert_eq!(after, upgrades, "no upgrade asked for");
    assert_eq!(server_docs(control_url, &coll).await.len(), 30);
    replica.close().await;
}

#[wasm_bindgen_test]
async fn a_channel_cut_mid_drain_resends_the_rest_and_nothing_commits_twice() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    // Every attempt must commit each write exactly once. Whether the cut also makes the sender
    // resend writes the server had committed depends on timing (the replication stream may
    // confirm them first, and then nothing needs resending): try a few times until one does.
    for attempt in 0..3 {
        if cut_mid_drain(control_url, ws, attempt).await {
            return;
        }
    }
    panic!("in 3 attempts no cut made the sender resend a write the server had committed");
}

/// One cut mid-drain: asserts that every write committed exactly once; true when some were
/// resent after the cut and answered as committed before.
async fn cut_mid_drain(control_url: &str, ws: &str, attempt: usize) -> bool {
    const WRITES: usize = 300;
    const LIST: usize = 10;
    const CUT_AFTER: usize = 12;
    let coll = fresh(&format!("cut{attempt}"));
    let (replica, sender) = open_with_lists(control_url, ws, LIST).await;
    caught_up(&replica, control_url).await;
    let rejections = recorder();
    let seen = rejections.clone();
    replica.on_rejected(Rc::new(move |r| seen.borrow_mut().push(r.clone())));
    queue_offline(&replica, &coll, 0..WRITES).await;
    let before = committed_lsn(control_url).await;
    let armed = channel_control(control_url, &format!("cut-after?messages={CUT_AFTER}")).await;
    let cuts = armed["cuts"].as_u64().unwrap();
    let read_before = channel_metric(control_url).await.unwrap_or(0.0) as u64;

    drain(&replica).await;
    caught_up(&replica, control_url).await;

    let stats = sender.stats();
    let after = channel_control(control_url, "stats").await;
    assert_eq!(after["cuts"].as_u64().unwrap(), cuts + 1, "{after}");
    assert!(stats.lost >= 1, "{stats:?}");
    assert!(stats.opened >= 2, "a new channel after the cut: {stats:?}");
    assert_eq!(stats.http_batches, 0, "{stats:?}");
    // Writes the server committed but whose answers the cut lost were resent and answered
    // as duplicates (or confirmed by the log first): still exactly one entry and one document
    // each.
    assert_eq!(committed_lsn(control_url).await - before, WRITES as u64);
    let docs = server_docs(control_url, &coll).await;
    assert_eq!(docs.len(), WRITES);
    let mut ns: Vec<u64> = docs.iter().map(|d| d["n"].as_u64().unwrap()).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..WRITES as u64).collect::<Vec<_>>());
    assert!(rejections.borrow().is_empty(), "{:?}", rejections.borrow());
    assert_eq!(replica.status().pending_writes, 0);
    replica.close().await;
    // The cut came right after list CUT_AFTER went out, before its answer: the server read
    // (and committed) writes that may be sent again.
    let read = channel_metric(control_url).await.unwrap() as u64 - read_before;
    let resent = read.saturating_sub(WRITES as u64);
    console_log!(
        "attempt {attempt}: cut after {CUT_AFTER} lists of {LIST}: {resent} writes sent again, \
         {} of them answered as committed before",
        stats.duplicates
    );
    resent >= LIST as u64 && stats.duplicates >= 1
}

#[wasm_bindgen_test]
async fn a_server_without_lists_gets_one_write_per_message() {
    let Some((control_url, ws)) = urls() else {
        return;
    };
    const WRITES: usize = 30;
    let coll = fresh("nolists");
    let (replica, sender) = open_with_lists(control_url, ws, 10).await;
    caught_up(&replica, control_url).await;
    queue_offline(&replica, &coll, 0..WRITES).await;
    // The proxy answers lists as a server from before lists did: 400 invalid_txn.
    let armed = channel_control(control_url, "no-lists").await;
    let refused_before = armed["listsRefused"].as_u64().unwrap();
    let before = committed_lsn(control_url).await;
    let read_before = channel_metric(control_url).await.unwrap_or(0.0) as u64;

    drain(&replica).await;
    let after = channel_control(control_url, "lists").await;
    caught_up(&replica, control_url).await;

    let stats = sender.stats();
    // The first channel's lists (three of ten, sent at once) were refused as a whole; the
    // batch went again at once on a new channel, one write per message.
    let refused = after["listsRefused"].as_u64().unwrap() - refused_before;
    assert!(refused >= 1, "{after}");
    assert_eq!(stats.channel_messages, refused + WRITES as u64, "{stats:?}");
    assert_eq!(stats.channel_writes, WRITES as u64, "{stats:?}");
    assert_eq!((stats.opened, stats.lost), (2, 1), "{stats:?}");
    assert_eq!(stats.http_batches, 0, "{stats:?}");
    // No refused list reached the server, and each write committed once.
    let read = channel_metric(control_url).await.unwrap() as u64 - read_before;
    assert_eq!(read, WRITES as u64);
    assert_eq!(committed_lsn(control_url).await - before, WRITES as u64);
    assert_eq!(server_docs(control_url, &coll).await.len(), WRITES);
    assert_eq!(replica.status().pending_writes, 0);
    replica.close().await;
}
