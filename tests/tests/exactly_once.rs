//! Exactly-once writes: a transaction sent with an `origin` commits at most once, even when
//! the client retries after a lost answer and even across a kill -9 of the server.

use cstore_tests::{Client, ServerOptions, ServerProcess};
use serde_json::{Value, json};

fn send(client: &Client, seq: u64, ops: Value) -> cstore_tests::Reply {
    let body = json!({"ops": ops, "origin": {"client": "tab-7f3a", "seq": seq}});
    client.post("/v1/txn", &body).expect("request answered")
}

fn note(id: &str) -> Value {
    json!([{"op": "insert", "collection": "notes", "doc": {"_id": id, "text": id}}])
}

#[test]
fn a_retried_write_commits_once_across_a_crash() {
    let mut server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let client = server.client();

    let first = send(&client, 1, note("a")).expect_status(200);
    let lsn = first["lsn"].as_u64().unwrap();
    assert_eq!(first["ids"], json!(["a"]));
    assert!(first.get("duplicate").is_none(), "{first}");

    // The answer was "lost": the same write again is answered with the first LSN.
    let retry = send(&client, 1, note("a")).expect_status(200);
    assert_eq!(retry["lsn"].as_u64(), Some(lsn));
    assert_eq!(retry["duplicate"], true);
    assert_eq!(client.last_lsn(), lsn, "the retry wrote nothing");

    send(&client, 2, note("b")).expect_status(200);
    // An older write than the last committed one cannot be told apart from a replay.
    send(&client, 1, note("a")).expect_error(409, "duplicate_origin");

    // The record is in the replicated state: it survives a crash and recovery.
    server.kill9().expect("killed");
    server.start_again().expect("restarts");
    let client = server.client();
    let last = client.last_lsn();
    let again = send(&client, 2, note("b")).expect_status(200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(client.last_lsn(), last);
    assert_eq!(client.collection_count("notes"), 2);
    send(&client, 3, note("c")).expect_status(200);
    assert_eq!(client.collection_count("notes"), 3);
}

#[test]
fn bad_origins_are_refused_and_change_nothing() {
    let server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let client = server.client();
    let bad_origin = |origin: Value| {
        let body = json!({"ops": note("x"), "origin": origin});
        client.post("/v1/txn", &body).expect("answered")
    };
    bad_origin(json!({"client": "", "seq": 1})).expect_error(400, "invalid_origin");
    bad_origin(json!({"client": "has space", "seq": 1})).expect_error(400, "invalid_origin");
    bad_origin(json!({"client": "x".repeat(65), "seq": 1})).expect_error(400, "invalid_origin");
    bad_origin(json!({"client": "ok", "seq": 0})).expect_error(400, "invalid_origin");
    bad_origin(json!({"client": "ok"})).expect_error(400, "invalid_txn");
    bad_origin(json!("ok")).expect_error(400, "invalid_txn");
    // The leader cannot choose ids for a write that may be retried.
    let no_id = json!({"ops": [{"op": "insert", "collection": "notes", "doc": {"text": "?"}}],
                       "origin": {"client": "ok", "seq": 1}});
    client
        .post("/v1/txn", &no_id)
        .unwrap()
        .expect_error(400, "invalid_txn");
    assert_eq!(client.last_lsn(), 0);
}
