//! The bad-input table: every row is a request that must fail with a given status and code,
//! and change nothing (the state hash is compared before and after each row).

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;

use super::Harness;

/// One request that must fail.
struct Case {
    what: &'static str,
    method: Method,
    uri: String,
    headers: Vec<(&'static str, String)>,
    /// Sent as `application/json` unless a `content-type` header is given.
    body: Option<String>,
    status: u16,
    code: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    uri: &str,
    body: Option<&str>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        method,
        uri: uri.to_string(),
        headers: Vec::new(),
        body: body.map(str::to_string),
        status,
        code,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: &str) -> Case {
        self.headers.push((name, value.to_string()));
        self
    }

    fn big_body(mut self, body: String) -> Case {
        self.body = Some(body);
        self
    }
}

/// A collection `c` with a unique index on `email` and documents `a` and `b` at version 1.
async fn seeded() -> Harness {
    let h = Harness::open().await;
    let setup = json!({"ops": [
        {"op": "create_collection", "collection": "c"},
        {"op": "create_index", "collection": "c",
         "index": {"name": "by_email", "fields": [{"path": "email"}], "unique": true}},
        {"op": "insert", "collection": "c", "doc": {"_id": "a", "email": "a@x"}},
        {"op": "insert", "collection": "c", "doc": {"_id": "b", "email": "b@x"}},
    ]});
    assert_eq!(
        h.ok(Method::POST, "/v1/txn", Some(&setup.to_string()))
            .await["lsn"],
        1
    );
    h
}

fn txn(ops: serde_json::Value) -> String {
    json!({ "ops": ops }).to_string()
}

fn cases() -> Vec<Case> {
    use Method as M;
    let mib = 1 << 20;
    vec![
        // Bodies.
        case("broken JSON", M::POST, "/v1/c/c", Some(r#"{"x":"#), 400, "invalid_json"),
        case("empty body", M::POST, "/v1/c/c", Some(""), 400, "invalid_json"),
        case("trailing garbage", M::POST, "/v1/c/c", Some("{} x"), 400, "invalid_json"),
        case("no content type", M::POST, "/v1/c/c", None, 415, "unsupported_media_type"),
        case("text/plain", M::POST, "/v1/c/c", Some("{}"), 415, "unsupported_media_type")
            .header("content-type", "text/plain"),
        case("an array", M::POST, "/v1/c/c", Some("[1,2]"), 400, "invalid_document"),
        case("a string", M::POST, "/v1/c/c", Some(r#""doc""#), 400, "invalid_document"),
        case("null", M::POST, "/v1/c/c", Some("null"), 400, "invalid_document"),
        case("numeric _id", M::POST, "/v1/c/c", Some(r#"{"_id":5}"#), 400, "invalid_id"),
        case("empty _id", M::POST, "/v1/c/c", Some(r#"{"_id":""}"#), 400, "invalid_id"),
        case("long _id", M::POST, "/v1/c/c", None, 400, "invalid_id")
            .big_body(json!({"_id": "i".repeat(257)}).to_string()),
        case("$ field", M::POST, "/v1/c/c", Some(r#"{"$set":1}"#), 400, "invalid_document"),
        case("empty field name", M::POST, "/v1/c/c", Some(r#"{"":1}"#), 400, "invalid_document"),
        case("body over 2 MiB", M::POST, "/v1/c/c", None, 413, "body_too_large")
            .big_body(format!(r#"{{"s":"{}"}}"#, "x".repeat(2 * mib))),
        case("document over 1 MiB", M::POST, "/v1/c/c", None, 413, "document_too_large")
            .big_body(format!(r#"{{"s":"{}"}}"#, "x".repeat(mib + 10))),
        case("body over 2 MiB on PUT", M::PUT, "/v1/c/c/a", None, 413, "body_too_large")
            .big_body(format!("[{}1]", "1,".repeat(mib + 1))),
        // Conflicts.
        case("existing _id", M::POST, "/v1/c/c", Some(r#"{"_id":"a"}"#), 409, "already_exists"),
        case("unique index", M::POST, "/v1/c/c", Some(r#"{"email":"a@x"}"#), 409, "unique_violation"),
        case("unique index on put", M::PUT, "/v1/c/c/z", Some(r#"{"email":"a@x"}"#), 409, "unique_violation"),
        // Paths.
        case("collection starts with _", M::POST, "/v1/c/_c", Some("{}"), 400, "invalid_collection_name"),
        case("collection with space", M::POST, "/v1/c/a%20b", Some("{}"), 400, "invalid_collection_name"),
        case("collection too long", M::GET, &format!("/v1/c/{}/a", "c".repeat(65)), None, 400, "invalid_collection_name"),
        case("collection not UTF-8", M::GET, "/v1/c/%FF/a", None, 400, "invalid_collection_name"),
        case("id not UTF-8", M::GET, "/v1/c/c/%FF", None, 400, "invalid_id"),
        case("id with control char", M::DELETE, "/v1/c/c/a%00", None, 400, "invalid_id"),
        case("id too long", M::GET, &format!("/v1/c/c/{}", "i".repeat(257)), None, 400, "invalid_id"),
        case("missing document", M::GET, "/v1/c/c/zz", None, 404, "not_found"),
        case("missing collection", M::GET, "/v1/c/nope/a", None, 404, "collection_not_found"),
        case("unknown route", M::GET, "/v1/nothing", None, 404, "route_not_found"),
        case("trailing slash", M::GET, "/v1/c/c/a/", None, 404, "route_not_found"),
        case("too deep a path", M::GET, "/v1/c/c/a/b", None, 404, "route_not_found"),
        case("DELETE on the list", M::DELETE, "/v1/c", None, 405, "method_not_allowed"),
        case("GET on a collection", M::GET, "/v1/c/c", None, 405, "method_not_allowed"),
        case("PUT on health", M::PUT, "/v1/health", Some("{}"), 405, "method_not_allowed"),
        case("GET on txn", M::GET, "/v1/txn", None, 405, "method_not_allowed"),
        // Ack.
        case("ack timeout zero", M::POST, "/v1/c/c?ack=replicas:2&ack_timeout_ms=0", Some("{}"), 400, "invalid_ack"),
        case("ack timeout too long", M::DELETE, "/v1/c/c/a?ack=all&ack_timeout_ms=60001", None, 400, "invalid_ack"),
        case("ack timeout junk", M::POST, "/v1/txn?ack=all&ack_timeout_ms=1s", Some("{}"), 400, "invalid_ack"),
        case("ack timeout twice", M::POST, "/v1/txn?ack_timeout_ms=1&ack_timeout_ms=1", Some("{}"), 400, "invalid_ack"),
        case("ack junk", M::PUT, "/v1/c/c/a?ack=some", Some("{}"), 400, "invalid_ack"),
        case("ack replicas:0", M::PATCH, "/v1/c/c/a?ack=replicas:0", Some("{}"), 400, "invalid_ack"),
        case("ack twice", M::POST, "/v1/c/c?ack=local&ack=local", Some("{}"), 400, "invalid_ack"),
        // Preconditions.
        case("stale if_version", M::PUT, "/v1/c/c/a?if_version=9", Some("{}"), 412, "version_mismatch"),
        case("stale If-Match", M::DELETE, "/v1/c/c/a", None, 412, "version_mismatch")
            .header("if-match", "\"9\""),
        case("If-None-Match * on existing", M::PUT, "/v1/c/c/a", Some("{}"), 412, "version_mismatch")
            .header("if-none-match", "*"),
        case("if_version=0 on existing", M::PATCH, "/v1/c/c/a?if_version=0", Some("{}"), 412, "version_mismatch"),
        case("if_version junk", M::PUT, "/v1/c/c/a?if_version=abc", Some("{}"), 400, "invalid_version"),
        case("if_version negative", M::DELETE, "/v1/c/c/a?if_version=-1", None, 400, "invalid_version"),
        case("if_version overflow", M::DELETE, "/v1/c/c/a?if_version=99999999999999999999", None, 400, "invalid_version"),
        case("if_version and If-Match disagree", M::PUT, "/v1/c/c/a?if_version=1", Some("{}"), 400, "invalid_version")
            .header("if-match", "\"2\""),
        case("If-Match *", M::PUT, "/v1/c/c/a", Some("{}"), 400, "invalid_version")
            .header("if-match", "*"),
        case("If-None-Match with a tag on a write", M::PUT, "/v1/c/c/a", Some("{}"), 400, "invalid_version")
            .header("if-none-match", "\"1\""),
        // PUT and PATCH bodies.
        case("PUT _id differs", M::PUT, "/v1/c/c/a", Some(r#"{"_id":"b"}"#), 400, "invalid_id"),
        case("PUT _id not a string", M::PUT, "/v1/c/c/a", Some(r#"{"_id":1}"#), 400, "invalid_id"),
        case("PUT an array", M::PUT, "/v1/c/c/a", Some("[]"), 400, "invalid_document"),
        case("PATCH an array", M::PATCH, "/v1/c/c/a", Some("[1]"), 400, "invalid_patch"),
        case("PATCH changes _id", M::PATCH, "/v1/c/c/a", Some(r#"{"_id":"b"}"#), 400, "invalid_patch"),
        case("PATCH makes a $ field", M::PATCH, "/v1/c/c/a", Some(r#"{"$x":1}"#), 400, "invalid_document"),
        case("PATCH breaks uniqueness", M::PATCH, "/v1/c/c/a", Some(r#"{"email":"b@x"}"#), 409, "unique_violation"),
        case("PATCH missing document", M::PATCH, "/v1/c/c/zz", Some("{}"), 404, "not_found"),
        case("PATCH missing collection", M::PATCH, "/v1/c/nope/a", Some("{}"), 404, "collection_not_found"),
        case("DELETE missing document", M::DELETE, "/v1/c/c/zz", None, 404, "not_found"),
        case("DELETE missing collection", M::DELETE, "/v1/c/nope/a", None, 404, "collection_not_found"),
        // Transactions.
        case("txn not an object", M::POST, "/v1/txn", Some("[]"), 400, "invalid_txn"),
        case("txn without ops", M::POST, "/v1/txn", Some("{}"), 400, "invalid_txn"),
        case("txn ops not an array", M::POST, "/v1/txn", Some(r#"{"ops":{}}"#), 400, "invalid_txn"),
        case("txn empty ops", M::POST, "/v1/txn", Some(r#"{"ops":[]}"#), 400, "invalid_txn"),
        case("txn unknown field", M::POST, "/v1/txn", Some(r#"{"ops":[],"x":1}"#), 400, "invalid_txn"),
        case("txn broken JSON", M::POST, "/v1/txn", Some(r#"{"ops":["#), 400, "invalid_json"),
        case("txn no content type", M::POST, "/v1/txn", None, 415, "unsupported_media_type"),
        case("txn unknown op", M::POST, "/v1/txn", None, 400, "invalid_txn")
            .big_body(txn(json!([{"op": "frob", "collection": "c"}]))),
        case("txn op without op", M::POST, "/v1/txn", None, 400, "invalid_txn")
            .big_body(txn(json!([{"collection": "c"}]))),
        case("txn op wrong type", M::POST, "/v1/txn", None, 400, "invalid_txn")
            .big_body(txn(json!([{"op": "delete", "collection": "c", "id": 5}]))),
        case("txn op unknown field", M::POST, "/v1/txn", None, 400, "invalid_txn")
            .big_body(txn(json!([{"op": "delete", "collection": "c", "id": "a", "when": 1}]))),
        case("txn negative if_version", M::POST, "/v1/txn", None, 400, "invalid_txn")
            .big_body(txn(json!([{"op": "delete", "collection": "c", "id": "a", "if_version": -1}]))),
        case("txn second insert clashes", M::POST, "/v1/txn", None, 409, "already_exists")
            .big_body(txn(json!([
                {"op": "insert", "collection": "c", "doc": {"_id": "fresh"}},
                {"op": "insert", "collection": "c2", "doc": {"_id": "x"}},
                {"op": "insert", "collection": "c", "doc": {"_id": "fresh"}},
            ]))),
        case("txn put without _id", M::POST, "/v1/txn", None, 400, "invalid_document")
            .big_body(txn(json!([{"op": "put", "collection": "c", "doc": {"v": 1}}]))),
        case("txn doc not an object", M::POST, "/v1/txn", None, 400, "invalid_document")
            .big_body(txn(json!([{"op": "insert", "collection": "c", "doc": 7}]))),
        case("txn bad collection name", M::POST, "/v1/txn", None, 400, "invalid_collection_name")
            .big_body(txn(json!([{"op": "drop_collection", "collection": "a/b"}]))),
        case("txn bad id", M::POST, "/v1/txn", None, 400, "invalid_id")
            .big_body(txn(json!([{"op": "delete", "collection": "c", "id": ""}]))),
        case("txn patch not an object", M::POST, "/v1/txn", None, 400, "invalid_patch")
            .big_body(txn(json!([{"op": "patch", "collection": "c", "id": "a", "patch": [1]}]))),
        case("txn stale if_version", M::POST, "/v1/txn", None, 412, "version_mismatch")
            .big_body(txn(json!([{"op": "put", "collection": "c", "doc": {"_id": "a"}, "if_version": 5}]))),
        case("txn invalid index", M::POST, "/v1/txn", None, 400, "invalid_index")
            .big_body(txn(json!([{"op": "create_index", "collection": "c", "index": {"name": "bad name", "fields": [{"path": "x"}]}}]))),
        case("txn index without fields", M::POST, "/v1/txn", None, 400, "invalid_index")
            .big_body(txn(json!([{"op": "create_index", "collection": "c", "index": {"name": "i", "fields": []}}]))),
        case("txn index shape", M::POST, "/v1/txn", None, 400, "invalid_txn")
            .big_body(txn(json!([{"op": "create_index", "collection": "c", "index": {"name": "i"}}]))),
        case("txn index exists", M::POST, "/v1/txn", None, 409, "index_exists")
            .big_body(txn(json!([{"op": "create_index", "collection": "c", "index": {"name": "by_email", "fields": [{"path": "x"}]}}]))),
        case("txn unique index over duplicates", M::POST, "/v1/txn", None, 409, "unique_violation")
            .big_body(txn(json!([
                {"op": "insert", "collection": "c", "doc": {"_id": "d1", "k": 1}},
                {"op": "insert", "collection": "c", "doc": {"_id": "d2", "k": 1}},
                {"op": "create_index", "collection": "c", "index": {"name": "by_k", "fields": [{"path": "k"}], "unique": true}},
            ]))),
        case("txn too many indexes", M::POST, "/v1/txn", None, 409, "too_many_indexes")
            .big_body(txn(serde_json::Value::Array((0..40).map(|i| json!(
                {"op": "create_index", "collection": "c", "index": {"name": format!("i{i}"), "fields": [{"path": format!("f{i}")}]}}
            )).collect()))),
        case("txn missing index", M::POST, "/v1/txn", None, 404, "index_not_found")
            .big_body(txn(json!([{"op": "drop_index", "collection": "c", "name": "nope"}]))),
        case("txn missing collection", M::POST, "/v1/txn", None, 404, "collection_not_found")
            .big_body(txn(json!([{"op": "set_ttl", "collection": "nope", "ttl_ms": 5}]))),
        case("txn collection exists", M::POST, "/v1/txn", None, 409, "collection_exists")
            .big_body(txn(json!([{"op": "create_collection", "collection": "c"}]))),
        case("txn over 10,000 ops", M::POST, "/v1/txn", None, 413, "txn_too_large")
            .big_body(txn(serde_json::Value::Array((0..10_001).map(|i| json!(
                {"op": "delete", "collection": "c", "id": format!("d{i}")}
            )).collect()))),
        case("txn body over 32 MiB", M::POST, "/v1/txn", None, 413, "body_too_large")
            .big_body(format!(r#"{{"ops":[],"pad":"{}"}}"#, "x".repeat(32 * mib))),
        // (Over 16 MiB of documents is `txn_too_large` too; core's tests cover that limit,
        // and building 17 MiB of documents takes seconds in a debug build.)
    ]
}

#[tokio::test]
async fn every_bad_request_fails_with_its_code_and_changes_nothing() {
    let h = seeded().await;
    let before = h.state_hash();
    let applied = h.leader.status().applied_lsn;
    for case in cases() {
        let mut request = Request::builder()
            .method(case.method.clone())
            .uri(&case.uri);
        let has_type = case.headers.iter().any(|(n, _)| *n == "content-type");
        if case.body.is_some() && !has_type {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let body = case.body.clone().map_or_else(Body::empty, Body::from);
        let reply = h.send(request.body(body).unwrap()).await;
        let code = serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        assert_eq!(
            (reply.status.as_u16(), code.as_deref()),
            (case.status, Some(case.code)),
            "{}: {} {}: {}",
            case.what,
            case.method,
            case.uri,
            &reply.body[..reply.body.len().min(300)]
        );
        reply.code(); // the error shape: exactly code and message
        assert_eq!(h.state_hash(), before, "{} changed the state", case.what);
    }
    assert_eq!(
        h.leader.status().applied_lsn,
        applied,
        "no entry was committed"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_off() {
    // No Content-Length: the bound is enforced while streaming.
    let h = seeded().await;
    let before = h.state_hash();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let body = Body::from_stream(futures::stream::iter(chunks));
    let request = Request::post("/v1/c/c")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    h.send(request).await.assert_error(413, "body_too_large");
    assert_eq!(h.state_hash(), before);
}

#[test]
fn every_documented_code_has_its_documented_status() {
    use super::super::status_for;
    let table: &[(u16, &[&str])] = &[
        (
            400,
            &[
                "invalid_json",
                "invalid_document",
                "invalid_id",
                "invalid_collection_name",
                "invalid_query",
                "invalid_patch",
                "invalid_index",
                "invalid_txn",
                "invalid_ack",
                "invalid_version",
                // Core's query engine's "ask for less"; not yet in the doc's table.
                "query_too_large",
                "consistency_unavailable",
                "invalid_url",
                "last_voter",
            ],
        ),
        (401, &["missing_token", "invalid_token", "token_expired"]),
        (403, &["forbidden", "collection_forbidden"]),
        (
            404,
            &[
                "not_found",
                "collection_not_found",
                "index_not_found",
                "route_not_found",
                "unknown_member",
                "not_clustered",
            ],
        ),
        (405, &["method_not_allowed"]),
        (
            409,
            &[
                "already_exists",
                "unique_violation",
                "collection_exists",
                "index_exists",
                "too_many_indexes",
                "duplicate_origin",
                "duplicate_member",
                "wrong_cluster",
            ],
        ),
        (412, &["version_mismatch"]),
        (
            413,
            &["body_too_large", "document_too_large", "txn_too_large"],
        ),
        (415, &["unsupported_media_type"]),
        (426, &["upgrade_required"]),
        (504, &["ack_unknown", "min_lsn_timeout"]),
        (
            503,
            &[
                "shutting_down",
                "overloaded",
                "leader_unavailable",
                "not_leader",
                "unavailable",
                "cluster_change_failed",
                "storage_failed",
            ],
        ),
        (507, &["disk_full"]),
        (500, &["internal", "storage_io"]),
    ];
    for (status, codes) in table {
        for code in *codes {
            assert_eq!(status_for(code).as_u16(), *status, "{code}");
        }
    }
}
