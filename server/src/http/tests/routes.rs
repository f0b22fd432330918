//! Each route's success path.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use super::Harness;
use crate::auth::Scope;

#[tokio::test]
async fn health_status_and_index() {
    let h = Harness::open().await;
    let health = h.call(Method::GET, "/v1/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "ok"}));

    h.ok(Method::POST, "/v1/c/notes", Some(r#"{"_id":"a"}"#))
        .await;
    let status = h.ok(Method::GET, "/v1/status", None).await;
    let node_id = h.leader.status().node_id.to_string();
    assert_eq!(
        status,
        json!({"role": "leader", "term": 1, "node_id": node_id, "last_lsn": 1,
               "committed_lsn": 1, "applied_lsn": 1, "leader_url": null, "replicas": [],
               "watermarks": {"committed": 1, "durable_on": {}}, "storage": "ok"})
    );
    assert_eq!(node_id.len(), 16);

    let index = h.call(Method::GET, "/", None).await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(
        index.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(index.body.contains("/v1/status") && index.body.contains("demo app"));
}

#[tokio::test]
async fn insert_generates_ids_and_get_serves_etags() {
    let h = Harness::open().await;
    let reply = h
        .call(
            Method::POST,
            "/v1/c/notes",
            Some(r#"{ "text": "hi", "n": 1 }"#),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let answer = reply.json();
    let id = answer["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 26, "generated ids are 26 hex digits");
    assert_eq!(answer["lsn"], 1);

    let second = h
        .ok(Method::POST, "/v1/c/notes", Some(r#"{"text":"again"}"#))
        .await;
    assert_ne!(second["id"].as_str().unwrap(), id);
    assert_eq!(second["lsn"], 2);
    // A canonical body takes its generated `_id` at its place in key order.
    let second_id = second["id"].as_str().unwrap();
    let stored = h
        .call(Method::GET, &format!("/v1/c/notes/{second_id}"), None)
        .await;
    assert_eq!(
        stored.body,
        format!(r#"{{"_id":"{second_id}","text":"again"}}"#)
    );

    let got = h
        .call(Method::GET, &format!("/v1/c/notes/{id}"), None)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["etag"], "\"1\"");
    assert_eq!(got.headers["content-type"], "application/json");
    // The canonical text, spliced as stored: keys sorted, no whitespace.
    assert_eq!(got.body, format!(r#"{{"_id":"{id}","n":1,"text":"hi"}}"#));

    let request = Request::get(format!("/v1/c/notes/{id}"))
        .header("if-none-match", "\"1\"")
        .body(Body::empty())
        .unwrap();
    let cached = h.send(request).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.headers["etag"], "\"1\"");
    assert!(cached.body.is_empty());

    let request = Request::get(format!("/v1/c/notes/{id}"))
        .header("if-none-match", "\"7\"")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(request).await.status, StatusCode::OK);

    // An explicit `_id` is kept.
    let given = h
        .ok(Method::POST, "/v1/c/notes", Some(r#"{"_id":"mine"}"#))
        .await;
    assert_eq!(given, json!({"id": "mine", "lsn": 3}));
}

#[tokio::test]
async fn put_patch_delete_with_preconditions() {
    let h = Harness::open().await;
    // PUT creates; the path gives the `_id`.
    let created = h.ok(Method::PUT, "/v1/c/c/a", Some(r#"{"v":1}"#)).await;
    assert_eq!(created, json!({"id": "a", "lsn": 1}));
    // PUT replaces, with a matching body `_id` and If-Match.
    let request = Request::put("/v1/c/c/a")
        .header("content-type", "application/json")
        .header("if-match", "\"1\"")
        .body(Body::from(r#"{"_id":"a","v":2,"w":true}"#))
        .unwrap();
    let replaced = h.send(request).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.json(), json!({"id": "a", "lsn": 2}));
    // PATCH merges (RFC 7386 media type accepted), with ?if_version.
    let request = Request::patch("/v1/c/c/a?if_version=2")
        .header("content-type", "application/merge-patch+json")
        .body(Body::from(r#"{"w":null,"x":{"y":1}}"#))
        .unwrap();
    let patched = h.send(request).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.json(), json!({"id": "a", "lsn": 3}));
    let got = h.call(Method::GET, "/v1/c/c/a", None).await;
    assert_eq!(got.json(), json!({"_id": "a", "v": 2, "x": {"y": 1}}));
    assert_eq!(got.headers["etag"], "\"3\"");
    // If-None-Match: * creates only when absent.
    let request = Request::put("/v1/c/c/b")
        .header("content-type", "application/json")
        .header("if-none-match", "*")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(h.send(request).await.status, StatusCode::OK);
    // ?if_version=0 is the same precondition.
    h.ok(Method::PUT, "/v1/c/c/new?if_version=0", Some("{}"))
        .await;
    // DELETE with the current version; then it is gone.
    let deleted = h
        .ok(Method::DELETE, "/v1/c/c/a?if_version=3&ack=local", None)
        .await;
    assert_eq!(deleted, json!({"id": "a", "lsn": 6}));
    h.call(Method::GET, "/v1/c/c/a", None)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn ids_are_percent_decoded() {
    let h = Harness::open().await;
    let put = h.ok(Method::PUT, "/v1/c/c/a%2Fb%20c", Some("{}")).await;
    assert_eq!(put["id"], "a/b c");
    let got = h.call(Method::GET, "/v1/c/c/a%2Fb%20c", None).await;
    assert_eq!(got.json(), json!({"_id": "a/b c"}));
    // A document may be called "find": GET and PUT reach it.
    h.ok(Method::PUT, "/v1/c/c/find", Some(r#"{"k":1}"#)).await;
    let got = h.call(Method::GET, "/v1/c/c/find", None).await;
    assert_eq!(got.json(), json!({"_id": "find", "k": 1}));
}

#[tokio::test]
async fn collections_lists_indexes_and_ttl() {
    let h = Harness::open().await;
    assert_eq!(
        h.ok(Method::GET, "/v1/c", None).await,
        json!({"collections": []})
    );
    let txn = json!({"ops": [
        {"op": "create_collection", "collection": "sessions", "ttl_ms": 60000},
        {"op": "create_index", "collection": "sessions",
         "index": {"name": "by_user", "fields": [{"path": "user"}], "unique": true}},
        {"op": "insert", "collection": "sessions", "doc": {"_id": "s1", "user": "u1"}},
        {"op": "insert", "collection": "people", "doc": {"_id": "p1"}},
    ]});
    h.ok(Method::POST, "/v1/txn", Some(&txn.to_string())).await;
    let list = h.ok(Method::GET, "/v1/c", None).await;
    assert_eq!(
        list,
        json!({"collections": [
            {"name": "people", "count": 1, "indexes": [], "ttl_ms": null},
            {"name": "sessions", "count": 1, "ttl_ms": 60000, "indexes": [
                {"name": "by_user", "fields": [{"path": "user", "desc": false}],
                 "unique": true, "sparse": false}
            ]},
        ]})
    );
}

#[tokio::test]
async fn metrics_render_http_and_leader_series() {
    let h = Harness::open().await;
    h.ok(Method::POST, "/v1/c/m", Some("{}")).await;
    h.call(Method::GET, "/v1/c/m/missing", None).await;
    let reply = h.call(Method::GET, "/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = reply.body;
    for needle in [
        r#"cstore_http_requests_total{method="POST",route="/v1/c/{collection}",status="201"}"#,
        r#"cstore_http_requests_total{method="GET",route="/v1/c/{collection}/{id}",status="404"}"#,
        r#"cstore_http_request_seconds_bucket{method="POST",route="/v1/c/{collection}",le="0.001"}"#,
        "cstore_writes_total",
        "cstore_fsync_seconds_bucket",
        "cstore_commit_batch_size_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(
        !text.contains("quantile="),
        "histograms, not summaries:\n{text}"
    );
}

#[tokio::test]
async fn writes_after_shutdown_are_refused() {
    let h = Harness::open().await;
    h.ok(Method::POST, "/v1/c/c", Some(r#"{"_id":"a"}"#)).await;
    h.leader.shutdown().await;
    let before = h.state_hash();
    h.call(Method::POST, "/v1/c/c", Some(r#"{"_id":"b"}"#))
        .await
        .assert_error(503, "shutting_down");
    assert_eq!(h.state_hash(), before);
    // Reads still work while the process drains.
    assert_eq!(
        h.call(Method::GET, "/v1/c/c/a", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn min_lsn_on_the_leader_answers_at_once_or_times_out() {
    let h = Harness::open().await;
    h.ok(Method::POST, "/v1/c/notes", Some(r#"{"_id":"a"}"#))
        .await;
    // Reached: answered at once.
    let doc = h.ok(Method::GET, "/v1/c/notes/a?min_lsn=1", None).await;
    assert_eq!(doc, json!({"_id": "a"}));
    let found = h
        .ok(
            Method::POST,
            "/v1/c/notes/find",
            Some(r#"{"filter":{},"min_lsn":1}"#),
        )
        .await;
    assert_eq!(found["docs"], json!([{"_id": "a"}]));
    // Not reached within the bound: 504, from the query string or from a find body.
    h.call(
        Method::GET,
        "/v1/c/notes/a?min_lsn=99&min_lsn_timeout_ms=20",
        None,
    )
    .await
    .assert_error(504, "min_lsn_timeout");
    h.call(
        Method::POST,
        "/v1/c/notes/find",
        Some(r#"{"min_lsn":99,"min_lsn_timeout_ms":20}"#),
    )
    .await
    .assert_error(504, "min_lsn_timeout");
    // A later write wakes a waiting read.
    let waiting = h.call(Method::GET, "/v1/c/notes/b?min_lsn=2", None);
    let write = h.call(Method::POST, "/v1/c/notes", Some(r#"{"_id":"b"}"#));
    let (read, written) = tokio::join!(waiting, write);
    assert_eq!(written.status, StatusCode::CREATED);
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    // Bad values.
    for uri in [
        "/v1/c/notes/a?min_lsn=x",
        "/v1/c/notes/a?min_lsn=1&min_lsn=2",
        "/v1/c/notes/a?min_lsn=1&min_lsn_timeout_ms=600000",
    ] {
        h.call(Method::GET, uri, None)
            .await
            .assert_error(400, "invalid_query");
    }
    h.call(Method::POST, "/v1/c/notes/find", Some(r#"{"min_lsn":"1"}"#))
        .await
        .assert_error(400, "invalid_query");
}

#[tokio::test]
async fn ack_policies_without_replicas() {
    let h = Harness::open().await;
    // `all` means every connected replica: with none, local durability satisfies it.
    let all = h
        .call(Method::POST, "/v1/c/notes?ack=all", Some(r#"{"_id":"a"}"#))
        .await;
    assert_eq!(all.status, StatusCode::CREATED);
    // `replicas:1` with none connected: 504 ack_unknown at the deadline, with the LSN.
    let started = std::time::Instant::now();
    let one = h
        .call(
            Method::PUT,
            "/v1/c/notes/b?ack=replicas:1&ack_timeout_ms=50",
            Some(r#"{"n":1}"#),
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(one.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(one.code(), "ack_unknown");
    assert_eq!(one.json()["error"]["lsn"], json!(2));
    assert!(waited >= std::time::Duration::from_millis(50), "{waited:?}");
    // The write is durable on the leader and readable.
    let doc = h.ok(Method::GET, "/v1/c/notes/b", None).await;
    assert_eq!(doc["n"], json!(1));
    // The same on a transaction.
    let txn = h
        .call(
            Method::POST,
            "/v1/txn?ack=replicas:2&ack_timeout_ms=10",
            Some(r#"{"ops":[{"op":"delete","collection":"notes","id":"a"}]}"#),
        )
        .await;
    assert_eq!(txn.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(txn.json()["error"]["lsn"], json!(3));
}

#[tokio::test]
async fn other_origins_may_call_the_api_with_a_token() {
    let h = Harness::with_auth().await;
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/txn")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .body(Body::empty())
        .unwrap();
    let reply = h.send(preflight).await;
    assert!(
        reply.status.is_success(),
        "preflight answered {}",
        reply.status
    );
    let allowed = |name: &str| {
        reply
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .unwrap_or_default()
    };
    assert_eq!(allowed("access-control-allow-origin"), "*");
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(allowed("access-control-allow-methods").contains(method));
    }
    for header in ["authorization", "content-type", "if-match", "if-none-match"] {
        assert!(allowed("access-control-allow-headers").contains(header));
    }
    assert_eq!(allowed("access-control-max-age"), "600");
    // The answer is the same for every origin: nothing for a cache to tell apart.
    assert!(reply.headers.get("vary").is_none());
    // The request itself still needs its token.
    let get = Request::builder()
        .uri("/v1/status")
        .header("origin", "https://app.example")
        .body(Body::empty())
        .unwrap();
    let reply = h.send(get).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers.get("access-control-allow-origin").unwrap(),
        "*"
    );
    // With it, a write answers with the headers a page on another origin needs to read its
    // version.
    let token = h.token(&[Scope::Write, Scope::Read]);
    let insert = Request::builder()
        .method(Method::POST)
        .uri("/v1/c/notes")
        .header("origin", "https://app.example")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"_id":"n1","text":"hi"}"#))
        .unwrap();
    let reply = h.send(insert).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    assert_eq!(reply.headers["access-control-expose-headers"], "etag");
    assert!(reply.headers.get("vary").is_none());
    // A preflight for a document route (the router matches it, not only /v1/txn).
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/c/notes/n1")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .body(Body::empty())
        .unwrap();
    let reply = h.send(preflight).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
}
