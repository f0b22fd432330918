//! Bad input, end to end: each malformed, oversized, misrouted or unauthorized request gets its
//! documented status and stable code, AND changes nothing: `/v1/status` `last_lsn`, the
//! collection listing and every document are the same before and after.
//!
//! The server runs with `--auth-secret`, so the table covers tokens too: missing, garbage,
//! signed with another secret, tampered, expired, and valid but lacking the scope.

use cstore_tests::token::{forge_token, tamper_claims, unix_now_s};
use cstore_tests::{Client, ServerOptions, ServerProcess};
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "itest-secret-0123456789";

/// Which credentials a case sends.
#[derive(Clone, Debug)]
enum Auth {
    None,
    Read,
    Write,
    Admin,
    Raw(String),
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<(&'static str, Vec<u8>)>,
    auth: Auth,
    headers: Vec<(&'static str, String)>,
    status: u16,
    /// Accepted codes: one where the contract names it; a few where it leaves the choice open.
    codes: &'static [&'static str],
}

fn json_body(value: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", serde_json::to_vec(value).unwrap()))
}

fn raw_body(text: &str) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", text.as_bytes().to_vec()))
}

fn case(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    body: Option<(&'static str, Vec<u8>)>,
    status: u16,
    codes: &'static [&'static str],
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        body,
        auth: Auth::Write,
        headers: Vec::new(),
        status,
        codes,
    }
}

fn with_auth(mut case: Case, auth: Auth) -> Case {
    case.auth = auth;
    case
}

/// A JSON document of about `bytes` bytes.
fn doc_of_size(id: &str, bytes: usize) -> Value {
    json!({"_id": id, "blob": "b".repeat(bytes)})
}

fn nested(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = json!({ "n": value });
    }
    value["_id"] = json!("deep");
    value
}

#[rustfmt::skip]
fn cases(read: &str) -> Vec<Case> {
    let post = Method::POST;
    let insert = "/v1/c/people";
    let now = unix_now_s();
    let expired = forge_token(SECRET, &["read", "write"], now - 60);
    let wrong_secret = forge_token("not-the-secret", &["admin"], now + 3600);
    let tampered = tamper_claims(
        read,
        &json!({"sub": "itest", "scopes": ["admin"], "exp": now + 3600}),
    );
    let too_many_ops: Vec<Value> = (0..10_001)
        .map(|i| json!({"op": "insert", "collection": "people", "doc": {"_id": format!("m{i}")}}))
        .collect();
    // 17 documents of ~1 MB each: every one within the document limit, together over 16 MiB.
    let too_many_bytes: Vec<Value> = (0..17)
        .map(|i| json!({"op": "insert", "collection": "people", "doc": doc_of_size(&format!("big{i}"), 1_000_000)}))
        .collect();
    let long_id = "i".repeat(300);
    vec![
        // Bodies that are not what the route takes.
        case("malformed json", post.clone(), insert, raw_body(r#"{"name": "#), 400, &["invalid_json"]),
        case("trailing garbage", post.clone(), insert, raw_body(r#"{"a":1} x"#), 400, &["invalid_json"]),
        case("empty body", post.clone(), insert, raw_body(""), 400, &["invalid_json"]),
        case("array as document", post.clone(), insert, raw_body("[1,2]"), 400, &["invalid_document"]),
        case("string as document", post.clone(), insert, raw_body(r#""doc""#), 400, &["invalid_document"]),
        case("dollar field", post.clone(), insert, json_body(&json!({"$set": 1})), 400, &["invalid_document"]),
        case("too deep", post.clone(), insert, json_body(&nested(70)), 400, &["invalid_document"]),
        case("numeric _id", post.clone(), insert, json_body(&json!({"_id": 5})), 400, &["invalid_id"]),
        case("empty _id", post.clone(), insert, json_body(&json!({"_id": ""})), 400, &["invalid_id"]),
        case("long _id", post.clone(), insert, json_body(&json!({"_id": long_id})), 400, &["invalid_id"]),
        case("wrong content type", post.clone(), insert, Some(("text/plain", br#"{"a":1}"#.to_vec())), 415, &["unsupported_media_type"]),
        case("no content type", post.clone(), insert, Some(("", br#"{"a":1}"#.to_vec())), 415, &["unsupported_media_type"]),
        // Sizes.
        // The server drains an oversized body before answering (a lingering close), so the
        // client always reads the 413 rather than a connection reset.
        case("body over 2 MiB", post.clone(), insert, json_body(&doc_of_size("huge", 3 << 20)), 413, &["body_too_large"]),
        case("document over 1 MiB", post.clone(), insert, json_body(&doc_of_size("big", 1_500_000)), 413, &["document_too_large"]),
        case("txn over 10,000 ops", post.clone(), "/v1/txn", json_body(&json!({"ops": too_many_ops})), 413, &["txn_too_large"]),
        case("txn over 16 MiB of documents", post.clone(), "/v1/txn", json_body(&json!({"ops": too_many_bytes})), 413, &["txn_too_large"]),
        // Ids and names in the path.
        case("long id in path", Method::GET, format!("/v1/c/people/{long_id}"), None, 400, &["invalid_id"]),
        case("control char in id", Method::GET, "/v1/c/people/a%01b", None, 400, &["invalid_id"]),
        case("put _id differs from path", Method::PUT, "/v1/c/people/seed", json_body(&json!({"_id": "other"})), 400, &["invalid_id", "invalid_document"]),
        case("bad collection name", post.clone(), "/v1/c/_bad", json_body(&json!({"a": 1})), 400, &["invalid_collection_name"]),
        case("space in collection name", post.clone(), "/v1/c/a%20b", json_body(&json!({"a": 1})), 400, &["invalid_collection_name"]),
        case("missing document", Method::GET, "/v1/c/people/nobody", None, 404, &["not_found"]),
        case("delete missing", Method::DELETE, "/v1/c/people/nobody", None, 404, &["not_found"]),
        // Routes and methods.
        with_auth(case("unknown route", Method::GET, "/v1/nope", None, 404, &["route_not_found"]), Auth::Admin),
        with_auth(case("unknown deep route", Method::GET, "/v1/c/people/seed/extra", None, 404, &["route_not_found"]), Auth::Admin),
        with_auth(case("wrong method", Method::DELETE, "/v1/status", None, 405, &["method_not_allowed"]), Auth::Admin),
        // Queries, patches, transactions, preconditions, ack policies.
        case("unknown operator", post.clone(), "/v1/c/people/find", json_body(&json!({"filter": {"age": {"$foo": 1}}})), 400, &["invalid_query"]),
        case("limit of the wrong type", post.clone(), "/v1/c/people/find", json_body(&json!({"filter": {}, "limit": "ten"})), 400, &["invalid_query", "invalid_json"]),
        case("sort direction not ±1", post.clone(), "/v1/c/people/find", json_body(&json!({"filter": {}, "sort": [["age", 2]]})), 400, &["invalid_query"]),
        case("sort object with two keys", post.clone(), "/v1/c/people/find", json_body(&json!({"filter": {}, "sort": {"age": 1, "name": -1}})), 400, &["invalid_query"]),
        case("unknown find field", post.clone(), "/v1/c/people/find", json_body(&json!({"filter": {}, "order": "age"})), 400, &["invalid_query"]),
        case("patch is an array", Method::PATCH, "/v1/c/people/seed", json_body(&json!([1])), 400, &["invalid_patch"]),
        case("patch changes _id", Method::PATCH, "/v1/c/people/seed", json_body(&json!({"_id": "moved"})), 400, &["invalid_patch"]),
        case("txn unknown op", post.clone(), "/v1/txn", json_body(&json!({"ops": [{"op": "upsert_all", "collection": "people"}]})), 400, &["invalid_txn"]),
        case("txn ops not a list", post.clone(), "/v1/txn", json_body(&json!({"ops": {"op": "insert"}})), 400, &["invalid_txn"]),
        case("txn insert without doc", post.clone(), "/v1/txn", json_body(&json!({"ops": [{"op": "insert", "collection": "people"}]})), 400, &["invalid_txn"]),
        case("txn bad index spec", post.clone(), "/v1/txn", json_body(&json!({"ops": [{"op": "create_index", "collection": "people", "index": {"name": "x", "fields": []}}]})), 400, &["invalid_index"]),
        case("txn drop missing index", post.clone(), "/v1/txn", json_body(&json!({"ops": [{"op": "drop_index", "collection": "people", "name": "nope"}]})), 404, &["index_not_found"]),
        case("txn drop missing collection", post.clone(), "/v1/txn", json_body(&json!({"ops": [{"op": "drop_collection", "collection": "nope"}]})), 404, &["collection_not_found"]),
        case("txn create existing collection", post.clone(), "/v1/txn", json_body(&json!({"ops": [{"op": "create_collection", "collection": "people"}]})), 409, &["collection_exists"]),
        case("duplicate insert", post.clone(), insert, json_body(&json!({"_id": "seed"})), 409, &["already_exists"]),
        case("stale if_version", Method::PUT, "/v1/c/people/seed?if_version=999999", json_body(&json!({"a": 1})), 412, &["version_mismatch"]),
        case("if_version not a number", Method::PUT, "/v1/c/people/seed?if_version=abc", json_body(&json!({"a": 1})), 400, &["invalid_version"]),
        case("unknown ack policy", post.clone(), "/v1/c/people?ack=sometimes", json_body(&json!({"a": 1})), 400, &["invalid_ack"]),
        // `ack=replicas:N` that times out is not bad input (the write happens): see replication_leader.rs.
        case("ack timeout out of range", post.clone(), "/v1/txn?ack=all&ack_timeout_ms=0", json_body(&json!({"ops": [{"op": "insert", "collection": "people", "doc": {"a": 1}}]})), 400, &["invalid_ack"]),
        // Tokens and scopes.
        with_auth(case("no token on write", post.clone(), insert, json_body(&json!({"a": 1})), 401, &["missing_token"]), Auth::None),
        with_auth(case("no token on read", Method::GET, "/v1/c/people/seed", None, 401, &["missing_token"]), Auth::None),
        with_auth(case("no token on status", Method::GET, "/v1/status", None, 401, &["missing_token"]), Auth::None),
        with_auth(case("garbage token", post.clone(), insert, json_body(&json!({"a": 1})), 401, &["invalid_token"]), Auth::Raw("garbage".into())),
        with_auth(case("other secret", post.clone(), insert, json_body(&json!({"a": 1})), 401, &["invalid_token"]), Auth::Raw(wrong_secret)),
        with_auth(case("tampered claims", post.clone(), insert, json_body(&json!({"a": 1})), 401, &["invalid_token"]), Auth::Raw(tampered)),
        with_auth(case("expired token", post.clone(), insert, json_body(&json!({"a": 1})), 401, &["token_expired"]), Auth::Raw(expired)),
        with_auth(case("read token inserts", post.clone(), insert, json_body(&json!({"a": 1})), 403, &["forbidden"]), Auth::Read),
        with_auth(case("read token deletes", Method::DELETE, "/v1/c/people/seed", None, 403, &["forbidden"]), Auth::Read),
        with_auth(case("read token txn", post.clone(), "/v1/txn", json_body(&json!({"ops": [{"op": "drop_collection", "collection": "people"}]})), 403, &["forbidden"]), Auth::Read),
        case("write token reads metrics", Method::GET, "/metrics", None, 403, &["forbidden"]),
        Case {
            headers: vec![("authorization", "Basic aXRlc3Q6aXRlc3Q=".to_string())],
            ..with_auth(case("basic auth", post.clone(), insert, json_body(&json!({"a": 1})), 401, &["missing_token", "invalid_token"]), Auth::None)
        },
    ]
}

/// Everything a request could have changed: the log position, the listing, every document.
fn fingerprint(admin: &Client) -> (u64, Value, Vec<(String, Vec<Value>)>) {
    let lsn = admin.last_lsn();
    let listing = admin.get("/v1/c").unwrap().expect_status(200);
    let docs = listing["collections"]
        .as_array()
        .unwrap_or_else(|| panic!("collections in {listing}"))
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let docs = admin.all_docs(&name);
            (name, docs)
        })
        .collect();
    (lsn, listing, docs)
}

#[test]
fn every_bad_request_gets_its_code_and_changes_nothing() {
    let server = ServerProcess::start(ServerOptions {
        auth_secret: Some(SECRET.into()),
        ..ServerOptions::default()
    })
    .expect("server starts");
    let read = server.mint_token(&["read"], "1h").expect("read token");
    let write = server
        .mint_token(&["read", "write"], "1h")
        .expect("write token");
    let admin = server.mint_token(&["admin"], "1h").expect("admin token");
    let anonymous = server.client();
    let admin_client = anonymous.with_token(&admin);
    let write_client = anonymous.with_token(&write);

    // The good path works with each credential, so refusals below are about the input.
    anonymous.get("/v1/health").unwrap().expect_status(200);
    write_client
        .insert("people", &json!({"_id": "seed", "name": "seed", "age": 30}))
        .unwrap()
        .expect_status(201);
    anonymous
        .with_token(&read)
        .get("/v1/c/people/seed")
        .unwrap()
        .expect_status(200);
    let metrics = admin_client.get("/metrics").unwrap();
    assert_eq!(metrics.status, 200, "{}", metrics.text());

    let mut failures = Vec::new();
    let before = fingerprint(&admin_client);
    for case in cases(&read) {
        let client = match &case.auth {
            Auth::None => anonymous.clone(),
            Auth::Read => anonymous.with_token(&read),
            Auth::Write => write_client.clone(),
            Auth::Admin => admin_client.clone(),
            Auth::Raw(token) => anonymous.with_token(token),
        };
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sent = std::time::Instant::now();
        let reply = client
            .send(case.method.clone(), &case.path, case.body.clone(), &headers)
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", case.name));
        println!(
            "{}: {} in {} ms",
            case.name,
            reply.status,
            sent.elapsed().as_millis()
        );
        let code = reply.error_code();
        if reply.status != case.status || !case.codes.contains(&code.as_deref().unwrap_or("")) {
            failures.push(format!(
                "{}: {} {} → expected {} {:?}, got {} {}",
                case.name,
                case.method,
                truncate(&case.path),
                case.status,
                case.codes,
                reply.status,
                truncate(&reply.text())
            ));
        }
        let after = fingerprint(&admin_client);
        if after != before {
            failures.push(format!(
                "{}: the request changed the store (last_lsn {} → {})",
                case.name, before.0, after.0
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad-input cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The server is still healthy and writable after all of it.
    write_client
        .insert("people", &json!({"_id": "after", "ok": true}))
        .unwrap()
        .expect_status(201);
}

fn truncate(text: &str) -> String {
    if text.len() <= 160 {
        text.to_string()
    } else {
        let cut = (0..=160)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &text[..cut])
    }
}
