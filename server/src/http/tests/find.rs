//! `POST /v1/c/{collection}/find`.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::Harness;

/// People with ages, and an index on age.
async fn people() -> Harness {
    let h = Harness::open().await;
    let mut ops = vec![json!({"op": "create_index", "collection": "people",
        "index": {"name": "by_age", "fields": [{"path": "age"}]}})];
    ops.insert(
        0,
        json!({"op": "create_collection", "collection": "people"}),
    );
    for (id, name, age) in [
        ("p1", "ann", 30),
        ("p2", "bob", 25),
        ("p3", "cy", 40),
        ("p4", "dee", 30),
    ] {
        ops.push(json!({"op": "insert", "collection": "people",
            "doc": {"_id": id, "name": name, "age": age}}));
    }
    h.ok(
        Method::POST,
        "/v1/txn",
        Some(&json!({ "ops": ops }).to_string()),
    )
    .await;
    h
}

fn ids(answer: &Value) -> Vec<&str> {
    answer["docs"]
        .as_array()
        .expect("docs is an array")
        .iter()
        .map(|d| d["_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn filter_sort_limit_skip() {
    let h = people().await;
    let all = h.ok(Method::POST, "/v1/c/people/find", Some("{}")).await;
    assert_eq!(ids(&all), ["p1", "p2", "p3", "p4"]);
    assert_eq!(all["lsn"], 1);
    assert!(all.get("plan").is_none());

    let body = json!({"filter": {"age": {"$gte": 30}}, "sort": [["age", -1], ["name", 1]],
                      "limit": 2, "skip": 1});
    let page = h
        .ok(Method::POST, "/v1/c/people/find", Some(&body.to_string()))
        .await;
    assert_eq!(ids(&page), ["p1", "p4"]);
    // Documents are the stored canonical text.
    assert_eq!(
        page["docs"][0],
        json!({"_id": "p1", "name": "ann", "age": 30})
    );

    let null_body = h.ok(Method::POST, "/v1/c/people/find", Some("null")).await;
    assert_eq!(ids(&null_body).len(), 4);
}

#[tokio::test]
async fn answer_is_the_stored_text_spliced() {
    let h = Harness::open().await;
    h.ok(Method::PUT, "/v1/c/c/a", Some(r#"{ "z": 1, "a": [1, 2] }"#))
        .await;
    let reply = h.call(Method::POST, "/v1/c/c/find", Some("{}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(
        reply.body,
        r#"{"docs":[{"_id":"a","a":[1,2],"z":1}],"lsn":1}"#
    );
}

#[tokio::test]
async fn explain_shows_the_plan() {
    let h = people().await;
    let body = json!({"filter": {"age": 30}, "explain": true});
    let answer = h
        .ok(Method::POST, "/v1/c/people/find", Some(&body.to_string()))
        .await;
    assert_eq!(ids(&answer), ["p1", "p4"]);
    let plan = &answer["plan"];
    assert_eq!(plan["strategy"], "index_range", "{plan}");
    assert_eq!(plan["index"], "by_age");
    assert_eq!(
        plan["examined"], 2,
        "the index range reads only the matches"
    );

    let body = json!({"filter": {"name": "cy"}, "explain": false});
    let answer = h
        .ok(Method::POST, "/v1/c/people/find", Some(&body.to_string()))
        .await;
    assert_eq!(ids(&answer), ["p3"]);
    assert!(answer.get("plan").is_none());
}

#[tokio::test]
async fn a_missing_collection_has_no_documents() {
    let h = people().await;
    let answer = h
        .ok(
            Method::POST,
            "/v1/c/nobody/find",
            Some(r#"{"filter":{"a":1}}"#),
        )
        .await;
    assert_eq!(answer, json!({"docs": [], "lsn": 1}));
    // The query is still checked.
    h.call(
        Method::POST,
        "/v1/c/nobody/find",
        Some(r#"{"filter":{"a":{"$bad":1}}}"#),
    )
    .await
    .assert_error(400, "invalid_query");
}

#[tokio::test]
async fn bad_finds_fail_with_their_code() {
    let h = people().await;
    let before = h.state_hash();
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        (
            "/v1/c/people/find",
            Some(r#"{"filter":{"age":{"$regex":"x"}}}"#),
            400,
            "invalid_query",
        ),
        (
            "/v1/c/people/find",
            Some(r#"{"filter":[1]}"#),
            400,
            "invalid_query",
        ),
        (
            "/v1/c/people/find",
            Some(r#"{"filter":{"age":{"$in":5}}}"#),
            400,
            "invalid_query",
        ),
        (
            "/v1/c/people/find",
            Some(r#"{"where":{}}"#),
            400,
            "invalid_query",
        ),
        (
            "/v1/c/people/find",
            Some(r#"{"sort":{"a":1,"b":1}}"#),
            400,
            "invalid_query",
        ),
        (
            "/v1/c/people/find",
            Some(r#"{"limit":-1}"#),
            400,
            "invalid_query",
        ),
        (
            "/v1/c/people/find",
            Some(r#"{"limit":"5"}"#),
            400,
            "invalid_query",
        ),
        (
            "/v1/c/people/find",
            Some(r#"{"explain":"yes"}"#),
            400,
            "invalid_query",
        ),
        ("/v1/c/people/find", Some("[]"), 400, "invalid_query"),
        (
            "/v1/c/people/find",
            Some(r#"{"limit":10001}"#),
            400,
            "query_too_large",
        ),
        (
            "/v1/c/people/find",
            Some(r#"{"skip":100001}"#),
            400,
            "query_too_large",
        ),
        ("/v1/c/people/find", Some("{"), 400, "invalid_json"),
        ("/v1/c/people/find", None, 415, "unsupported_media_type"),
        ("/v1/c/_x/find", Some("{}"), 400, "invalid_collection_name"),
        ("/v1/c/people/p1", Some("{}"), 405, "method_not_allowed"),
        ("/v1/c/people/find?ack=all", Some("{}"), 200, ""),
    ];
    for (uri, body, status, code) in cases {
        let reply = h.call(Method::POST, uri, *body).await;
        if *status == 200 {
            // `?ack=` means nothing to a read and is ignored.
            assert_eq!(reply.status, StatusCode::OK, "{uri}");
        } else {
            assert_eq!(
                (reply.status.as_u16(), reply.code().as_str()),
                (*status, *code),
                "{uri} {body:?}: {}",
                reply.body
            );
        }
    }
    assert_eq!(h.state_hash(), before);
    // Deep filters hit core's nesting bound.
    let mut deep = json!({"a": 1});
    for _ in 0..40 {
        deep = json!({"$and": [deep]});
    }
    let body = json!({ "filter": deep }).to_string();
    h.call(Method::POST, "/v1/c/people/find", Some(&body))
        .await
        .assert_error(400, "query_too_large");
}
