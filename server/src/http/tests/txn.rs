//! `/v1/txn`: every operation kind, the ids it reports, and all-or-nothing.

use axum::http::Method;
use serde_json::json;

use super::Harness;

#[tokio::test]
async fn every_operation_kind_commits_as_one_entry() {
    let h = Harness::open().await;
    h.ok(Method::POST, "/v1/c/old", Some(r#"{"_id":"x"}"#))
        .await;
    let txn = json!({"ops": [
        {"op": "create_collection", "collection": "c"},
        {"op": "create_index", "collection": "c", "index": {"name": "by_age", "fields": [{"path": "age", "desc": false}], "unique": false, "sparse": false}},
        {"op": "insert", "collection": "c", "doc": {"age": 30}},
        {"op": "insert", "collection": "c", "doc": {"_id": "b", "age": 40}},
        {"op": "put", "collection": "c", "doc": {"_id": "p", "age": 1}, "if_version": 0},
        {"op": "patch", "collection": "c", "id": "b", "patch": {"age": 41}},
        {"op": "delete", "collection": "c", "id": "p"},
        {"op": "set_ttl", "collection": "c", "ttl_ms": 3600000},
        {"op": "drop_index", "collection": "c", "name": "by_age"},
        {"op": "set_ttl", "collection": "c", "ttl_ms": null},
        {"op": "drop_collection", "collection": "old"},
    ]});
    let answer = h.ok(Method::POST, "/v1/txn", Some(&txn.to_string())).await;
    assert_eq!(answer["lsn"], 2, "one entry for the whole transaction");
    let ids = answer["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 3, "{answer}");
    assert_eq!(ids[0].as_str().unwrap().len(), 26, "generated");
    assert_eq!(ids[1], "b");
    assert_eq!(ids[2], "p");
    let got = h.call(Method::GET, "/v1/c/c/b", None).await;
    assert_eq!(got.json(), json!({"_id": "b", "age": 41}));
    assert_eq!(got.headers["etag"], "\"2\"");
    h.call(Method::GET, "/v1/c/c/p", None)
        .await
        .assert_error(404, "not_found");
    h.call(Method::GET, "/v1/c/old/x", None)
        .await
        .assert_error(404, "collection_not_found");
    let list = h.ok(Method::GET, "/v1/c", None).await;
    assert_eq!(
        list,
        json!({"collections": [{"name": "c", "count": 2, "indexes": [], "ttl_ms": null}]})
    );
}

#[tokio::test]
async fn preconditions_inside_a_transaction() {
    let h = Harness::open().await;
    h.ok(Method::PUT, "/v1/c/c/a", Some("{}")).await;
    let stale = json!({"ops": [
        {"op": "insert", "collection": "c", "doc": {"_id": "new"}},
        {"op": "patch", "collection": "c", "id": "a", "patch": {"k": 1}, "if_version": 7},
    ]});
    let before = h.state_hash();
    let reply = h
        .call(Method::POST, "/v1/txn", Some(&stale.to_string()))
        .await;
    reply.assert_error(412, "version_mismatch");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operation 1")
    );
    assert_eq!(
        h.state_hash(),
        before,
        "the insert before the failing op is undone"
    );
    h.call(Method::GET, "/v1/c/c/new", None)
        .await
        .assert_error(404, "not_found");

    let fresh = json!({"ops": [
        {"op": "patch", "collection": "c", "id": "a", "patch": {"k": 1}, "if_version": 1},
    ]});
    assert_eq!(
        h.ok(Method::POST, "/v1/txn", Some(&fresh.to_string()))
            .await["lsn"],
        2
    );
}

/// `POST /v1/txns`: each transaction on its own, in order, one result each; a refused one
/// changes nothing and does not stop the ones after it; origins stay exactly-once.
#[tokio::test]
async fn txns_commit_each_transaction_on_its_own_in_order() {
    let h = Harness::open().await;
    let insert = |id: &str, seq: u64| {
        json!({"ops": [{"op": "insert", "collection": "q", "doc": {"_id": id}}],
               "origin": {"client": "tab", "seq": seq}})
    };
    let body = json!({"txns": [
        insert("a", 1),
        insert("a", 2),                     // clashes with the first: 409, nothing written
        {"ops": [{"op": "bogus"}]},         // does not parse: 400, never written
        insert("b", 3),
    ]});
    let answer = h
        .ok(Method::POST, "/v1/txns", Some(&body.to_string()))
        .await;
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{answer}");
    assert_eq!(results[0], json!({"lsn": 1, "ids": ["a"]}));
    assert_eq!(results[1]["status"], 409, "{answer}");
    assert_eq!(results[1]["error"]["code"], "already_exists");
    assert_eq!(results[2]["status"], 400, "{answer}");
    assert_eq!(results[2]["error"]["code"], "invalid_txn");
    assert_eq!(results[3], json!({"lsn": 2, "ids": ["b"]}));
    assert_eq!(
        h.leader.status().applied_lsn.0,
        2,
        "refused writes take no entry"
    );

    // The same request again (its answer was lost): the last committed seq is a duplicate,
    // older ones are refused, nothing is written twice.
    let again = h
        .ok(Method::POST, "/v1/txns", Some(&body.to_string()))
        .await;
    let again = again["results"].as_array().unwrap();
    assert_eq!(again[0]["error"]["code"], "duplicate_origin", "{again:?}");
    assert_eq!(again[3], json!({"lsn": 2, "ids": ["b"], "duplicate": true}));
    assert_eq!(h.leader.status().applied_lsn.0, 2);

    // Many at once share the commit thread's batches and keep their order.
    let many: Vec<_> = (0..300)
        .map(|i| insert(&format!("m{i:03}"), 10 + i))
        .collect();
    let answer = h
        .ok(
            Method::POST,
            "/v1/txns",
            Some(&json!({ "txns": many }).to_string()),
        )
        .await;
    let lsns: Vec<u64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["lsn"].as_u64().unwrap())
        .collect();
    assert_eq!(lsns, (3..303).collect::<Vec<u64>>());
}

#[tokio::test]
async fn txns_refuse_bad_requests_whole() {
    let h = Harness::open().await;
    let before = h.state_hash();
    for (body, code) in [
        ("[]", "invalid_txn"),
        (r#"{"txns": []}"#, "invalid_txn"),
        (r#"{"txns": {}}"#, "invalid_txn"),
        (r#"{"ops": []}"#, "invalid_txn"),
        (r#"{"txns": [], "extra": 1}"#, "invalid_txn"),
        ("{", "invalid_json"),
    ] {
        h.call(Method::POST, "/v1/txns", Some(body))
            .await
            .assert_error(400, code);
    }
    let too_many: Vec<_> = (0..1001)
        .map(|i| json!({"ops": [{"op": "insert", "collection": "q", "doc": {"_id": i.to_string()}}]}))
        .collect();
    h.call(
        Method::POST,
        "/v1/txns",
        Some(&json!({ "txns": too_many }).to_string()),
    )
    .await
    .assert_error(413, "txn_too_large");
    assert_eq!(h.state_hash(), before);
}

/// `GET /v1/read-index` on the leader: its committed LSN, which covers every acknowledged write.
#[tokio::test]
async fn read_index_covers_acknowledged_writes() {
    let h = Harness::open().await;
    assert_eq!(h.ok(Method::GET, "/v1/read-index", None).await["lsn"], 0);
    let written = h.ok(Method::POST, "/v1/c/q", Some(r#"{"_id":"x"}"#)).await;
    let index = h.ok(Method::GET, "/v1/read-index", None).await;
    assert!(index["lsn"].as_u64().unwrap() >= written["lsn"].as_u64().unwrap());
}
