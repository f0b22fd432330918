//! Auth at the HTTP boundary: which token reaches which route.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use super::{Harness, Reply};
use crate::auth::{Claims, Scope, TokenKey};

async fn call_as(
    h: &Harness,
    token: Option<&str>,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    h.send(request.body(body).unwrap()).await
}

#[tokio::test]
async fn scopes_gate_routes() {
    let h = Harness::with_auth().await;
    let read = h.token(&[Scope::Read]);
    let write = h.token(&[Scope::Write]);
    let admin = h.token(&[Scope::Admin]);
    let doc = Some(r#"{"_id":"a"}"#);

    // Health needs nothing.
    assert_eq!(
        call_as(&h, None, Method::GET, "/v1/health", None)
            .await
            .status,
        StatusCode::OK
    );

    // Writes need write (or admin).
    let before = h.state_hash();
    call_as(&h, Some(&read), Method::POST, "/v1/c/c", doc)
        .await
        .assert_error(403, "forbidden");
    call_as(&h, None, Method::POST, "/v1/c/c", doc)
        .await
        .assert_error(401, "missing_token");
    assert_eq!(h.state_hash(), before);
    assert_eq!(
        call_as(&h, Some(&write), Method::POST, "/v1/c/c", doc)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        call_as(&h, Some(&admin), Method::PUT, "/v1/c/c/b", Some("{}"))
            .await
            .status,
        StatusCode::OK
    );

    // Reads need read; write and admin imply it.
    for token in [&read, &write, &admin] {
        assert_eq!(
            call_as(&h, Some(token), Method::GET, "/v1/c/c/a", None)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            call_as(&h, Some(token), Method::GET, "/v1/status", None)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            call_as(&h, Some(token), Method::GET, "/v1/c", None)
                .await
                .status,
            StatusCode::OK
        );
    }
    call_as(&h, None, Method::GET, "/v1/c/c/a", None)
        .await
        .assert_error(401, "missing_token");
    call_as(&h, None, Method::GET, "/v1/status", None)
        .await
        .assert_error(401, "missing_token");

    // Metrics need admin.
    call_as(&h, Some(&read), Method::GET, "/metrics", None)
        .await
        .assert_error(403, "forbidden");
    call_as(&h, Some(&write), Method::GET, "/metrics", None)
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        call_as(&h, Some(&admin), Method::GET, "/metrics", None)
            .await
            .status,
        StatusCode::OK
    );

    // Transactions need write.
    let txn = Some(r#"{"ops":[{"op":"delete","collection":"c","id":"a"}]}"#);
    call_as(&h, Some(&read), Method::POST, "/v1/txn", txn)
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        call_as(&h, Some(&write), Method::POST, "/v1/txn", txn)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_body_is_read() {
    let h = Harness::with_auth().await;
    let now_s = crate::clock::now_ms().0 / 1000;
    let key = TokenKey::new(super::SECRET).unwrap();
    let expired = key.mint(&Claims {
        sub: "t".into(),
        scopes: vec![Scope::Admin],
        exp: now_s - 1,
        collections: None,
    });
    let forged = TokenKey::new("not the secret").unwrap().mint(&Claims {
        sub: "t".into(),
        scopes: vec![Scope::Admin],
        exp: now_s + 60,
        collections: None,
    });
    let read = h.token(&[Scope::Read]);
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (Some("Bearer cst1.garbage".into()), 401, "invalid_token"),
        (Some("Bearer ".into()), 401, "invalid_token"),
        (Some(format!("Basic {read}")), 401, "invalid_token"),
        (Some(read.clone()), 401, "invalid_token"),
        (Some(format!("Bearer {forged}")), 401, "invalid_token"),
        (Some(format!("Bearer {expired}")), 401, "token_expired"),
        // A read token on a write route with a broken body: the scope is checked first.
        (Some(format!("Bearer {read}")), 403, "forbidden"),
        (None, 401, "missing_token"),
    ];
    let before = h.state_hash();
    for (header, status, code) in cases {
        let mut request = Request::post("/v1/c/c").header("content-type", "application/json");
        if let Some(header) = &header {
            request = request.header("authorization", header);
        }
        let reply = h.send(request.body(Body::from("{not json")).unwrap()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.code()),
            (status, code.to_string()),
            "{header:?}"
        );
    }
    // Lowercase scheme is accepted.
    let write = h.token(&[Scope::Write]);
    let request = Request::post("/v1/c/c")
        .header("content-type", "application/json")
        .header("authorization", format!("bearer {write}"))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(h.send(request).await.status, StatusCode::CREATED);
    assert_ne!(h.state_hash(), before);
}

#[tokio::test]
async fn without_a_secret_everything_is_allowed() {
    let h = Harness::open().await;
    assert_eq!(
        call_as(&h, None, Method::GET, "/metrics", None)
            .await
            .status,
        StatusCode::OK
    );
    // A token is ignored, even a bad one.
    assert_eq!(
        call_as(&h, Some("junk"), Method::POST, "/v1/c/c", Some("{}"))
            .await
            .status,
        StatusCode::CREATED
    );
}

/// A token limited to collections: its collections only, in paths and in transaction bodies;
/// the `replicate` scope: status and replication, nothing else.
#[tokio::test]
async fn collection_limits_and_the_replicate_scope() {
    let h = Harness::with_auth().await;
    let now_s = crate::clock::now_ms().0 / 1000;
    let limited = h.key.as_ref().unwrap().mint(&Claims {
        sub: "limited".into(),
        scopes: vec![Scope::Write],
        exp: now_s + 3600,
        collections: Some(vec!["notes".into()]),
    });
    let doc = Some(r#"{"_id":"a"}"#);
    assert_eq!(
        call_as(&h, Some(&limited), Method::POST, "/v1/c/notes", doc)
            .await
            .status,
        StatusCode::CREATED
    );
    let before = h.state_hash();
    for (method, uri, body) in [
        (Method::POST, "/v1/c/other", doc),
        (Method::GET, "/v1/c/other/a", None),
        (Method::POST, "/v1/c/other/find", Some("{}")),
        // Percent-encoded names are compared as sent: refused, never let through.
        (Method::GET, "/v1/c/not%65s/a", None),
        (
            Method::POST,
            "/v1/txn",
            Some(r#"{"ops":[{"op":"insert","collection":"other","doc":{"_id":"b"}}]}"#),
        ),
    ] {
        call_as(&h, Some(&limited), method, uri, body)
            .await
            .assert_error(403, "collection_forbidden");
    }
    assert_eq!(h.state_hash(), before, "nothing refused was written");

    let replicate = h.token(&[Scope::Replicate]);
    assert_eq!(
        call_as(&h, Some(&replicate), Method::GET, "/v1/status", None)
            .await
            .status,
        StatusCode::OK
    );
    call_as(&h, Some(&replicate), Method::GET, "/v1/c/notes/a", None)
        .await
        .assert_error(403, "forbidden");
    call_as(&h, Some(&replicate), Method::POST, "/v1/c/notes", doc)
        .await
        .assert_error(403, "forbidden");
    call_as(&h, Some(&replicate), Method::GET, "/v1/c", None)
        .await
        .assert_error(403, "forbidden");
}
