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
