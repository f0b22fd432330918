//! Restart recovery with frequent checkpoints: with `--checkpoint-every 100`, 1,000 writes
//! (inserts, patches, deletes, an index) cross ten snapshots; after a clean stop, and again
//! after `kill -9`, the restarted server holds exactly the same documents, the same `last_lsn`,
//! and still answers from its index.

use std::collections::BTreeMap;

use cstore_tests::dirs::files_under;
use cstore_tests::{Client, ServerOptions, ServerProcess};
use serde_json::{Value, json};

const DOCS: usize = 1_000;
const WRITERS: usize = 4;
/// Inserts after the first restart, before the crash.
const LATE_DOCS: usize = 150;

fn write_workload(client: &Client) {
    client
        .txn(vec![
            json!({"op": "create_collection", "collection": "items"}),
            json!({"op": "create_index", "collection": "items", "index": {"name": "by_rank", "fields": [{"path": "rank"}]}}),
        ])
        .unwrap()
        .expect_status(200);
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let client = client.clone();
            scope.spawn(move || {
                for i in (w..DOCS).step_by(WRITERS) {
                    let doc = json!({"_id": format!("i{i:04}"), "rank": i % 50, "text": format!("item {i}")});
                    client.insert("items", &doc).unwrap().expect_status(201);
                    if i.is_multiple_of(7) {
                        client
                            .patch(&format!("/v1/c/items/i{i:04}"), &json!({"patched": true}))
                            .unwrap()
                            .expect_status(200);
                    }
                    if i.is_multiple_of(10) {
                        client
                            .delete(&format!("/v1/c/items/i{i:04}"))
                            .unwrap()
                            .expect_status(200);
                    }
                }
            });
        }
    });
}

/// Every id the workload may have written.
fn known_ids() -> Vec<String> {
    (0..DOCS)
        .map(|i| format!("i{i:04}"))
        .chain((0..LATE_DOCS).map(|i| format!("late{i:03}")))
        .collect()
}

/// `last_lsn` and every document, read back by id; the listing's count must agree.
fn contents(client: &Client) -> (u64, BTreeMap<String, Value>) {
    let docs = client.get_docs("items", &known_ids());
    assert_eq!(client.collection_count("items"), docs.len() as u64);
    (client.last_lsn(), docs)
}

fn assert_index_answers(client: &Client, expected: &BTreeMap<String, Value>) {
    let body = client
        .find(
            "items",
            &json!({"filter": {"rank": 7}, "sort": [["_id", 1]], "explain": true}),
        )
        .unwrap()
        .expect_status(200);
    assert!(
        body["plan"].to_string().contains("by_rank"),
        "{}",
        body["plan"]
    );
    let got: Vec<&Value> = body["docs"].as_array().unwrap().iter().collect();
    let want: Vec<&Value> = expected.values().filter(|d| d["rank"] == 7).collect();
    assert_eq!(got, want);
}

#[test]
fn a_thousand_writes_across_checkpoints_survive_restarts() {
    let mut server = ServerProcess::start(ServerOptions {
        checkpoint_every: Some(100),
        ..ServerOptions::default()
    })
    .expect("server starts");
    let client = server.client();
    write_workload(&client);
    let (lsn, docs) = contents(&client);
    assert_eq!(
        docs.len(),
        DOCS - DOCS / 10,
        "every 10th document was deleted"
    );
    assert!(lsn > 1_000, "at least one entry per insert: {lsn}");
    for (id, doc) in &docs {
        let i: usize = id[1..].parse().unwrap();
        assert_eq!(doc["patched"] == json!(true), i.is_multiple_of(7), "{doc}");
    }

    // Checkpoints happened: a snapshot file exists (server/src/wal's documented layout).
    let files = files_under(&server.data_dir()).unwrap();
    assert!(
        files.iter().any(|f| f
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("snapshot"))),
        "no snapshot file after {lsn} entries with --checkpoint-every 100: {files:?}"
    );

    let status = server.terminate(10_000).expect("clean stop");
    assert!(status.success(), "{}", server.stderr());
    server.restart().expect("restart after a clean stop");
    assert_eq!(
        contents(&server.client()),
        (lsn, docs.clone()),
        "after a clean stop"
    );
    assert_index_answers(&server.client(), &docs);

    // Some more writes, then a crash: the snapshot plus the log tail still add up.
    let client = server.client();
    for i in 0..LATE_DOCS {
        client
            .insert("items", &json!({"_id": format!("late{i:03}"), "rank": 7}))
            .unwrap()
            .expect_status(201);
    }
    let (lsn, docs) = contents(&client);
    server.kill9().expect("SIGKILL");
    server.restart().expect("restart after kill -9");
    assert_eq!(
        contents(&server.client()),
        (lsn, docs.clone()),
        "after kill -9"
    );
    assert_index_answers(&server.client(), &docs);
}
