//! Documents, queries and transactions end to end over HTTP against a real server: each route of
//! the contract does what docs/HTTP_API.md says, and a refused request changes nothing.

use cstore_tests::{Client, ServerOptions, ServerProcess};
use serde_json::{Value, json};

fn start() -> (ServerProcess, Client) {
    let server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let client = server.client();
    (server, client)
}

fn etag_version(reply: &cstore_tests::Reply) -> u64 {
    let etag = reply.header("etag").expect("GET carries an ETag");
    etag.trim_matches('"')
        .parse()
        .unwrap_or_else(|_| panic!("ETag {etag:?} is a quoted version number"))
}

#[test]
fn health_and_status_answer() {
    let (_server, client) = start();
    let health = client.get("/v1/health").unwrap().expect_status(200);
    assert_eq!(health["status"], "ok");
    let status = client.status();
    assert_eq!(status["role"], "leader");
    assert_eq!(
        status["last_lsn"], 0,
        "a fresh server has an empty log: {status}"
    );
    assert!(status["replicas"].is_array(), "{status}");
}

#[test]
fn insert_get_put_patch_delete_round_trip() {
    let (_server, client) = start();

    let created = client
        .insert(
            "people",
            &json!({"name": "ada", "age": 36, "tags": ["math"]}),
        )
        .unwrap()
        .expect_status(201);
    let id = created["id"]
        .as_str()
        .expect("insert returns the id")
        .to_string();
    let insert_lsn = created["lsn"].as_u64().expect("insert returns the lsn");
    assert!(insert_lsn >= 1);
    assert!(client.last_lsn() >= insert_lsn);

    let got = client.get(&format!("/v1/c/people/{id}")).unwrap();
    assert_eq!(
        etag_version(&got),
        insert_lsn,
        "the version is the LSN that wrote it"
    );
    assert_eq!(
        got.expect_status(200),
        json!({"_id": id, "name": "ada", "age": 36, "tags": ["math"]})
    );

    // A given _id is kept; inserting it twice is refused.
    let explicit = client
        .insert(
            "people",
            &json!({"_id": "grace", "name": "grace", "age": 45}),
        )
        .unwrap()
        .expect_status(201);
    assert_eq!(explicit["id"], "grace");
    client
        .insert("people", &json!({"_id": "grace", "name": "impostor"}))
        .unwrap()
        .expect_error(409, "already_exists");
    assert_eq!(
        client.get("/v1/c/people/grace").unwrap().expect_status(200)["name"],
        "grace"
    );

    // PUT replaces the whole document.
    let put = client
        .put(
            &format!("/v1/c/people/{id}"),
            &json!({"name": "ada lovelace", "born": 1815}),
        )
        .unwrap()
        .expect_status(200);
    assert_eq!(put["id"], id.as_str());
    let put_lsn = put["lsn"].as_u64().unwrap();
    assert!(put_lsn > insert_lsn);
    let got = client.get(&format!("/v1/c/people/{id}")).unwrap();
    assert_eq!(etag_version(&got), put_lsn);
    assert_eq!(
        got.expect_status(200),
        json!({"_id": id, "name": "ada lovelace", "born": 1815})
    );

    // A stale precondition is refused, by query parameter and by If-Match.
    client
        .put(
            &format!("/v1/c/people/{id}?if_version={insert_lsn}"),
            &json!({"name": "stale"}),
        )
        .unwrap()
        .expect_error(412, "version_mismatch");
    let stale_if_match = format!("\"{insert_lsn}\"");
    client
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/c/people/{id}"),
            Some(("application/json", br#"{"name":"stale"}"#.to_vec())),
            &[("if-match", &stale_if_match)],
        )
        .unwrap()
        .expect_error(412, "version_mismatch");
    // "must not exist" on an existing document.
    client
        .put(
            &format!("/v1/c/people/{id}?if_version=0"),
            &json!({"name": "x"}),
        )
        .unwrap()
        .expect_error(412, "version_mismatch");

    // PATCH merges (RFC 7386): null removes, objects merge; a current If-Match passes.
    let current = format!("\"{put_lsn}\"");
    let patched = client
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/c/people/{id}"),
            Some((
                "application/json",
                br#"{"born":null,"address":{"city":"London"}}"#.to_vec(),
            )),
            &[("if-match", &current)],
        )
        .unwrap()
        .expect_status(200);
    let patch_lsn = patched["lsn"].as_u64().unwrap();
    assert_eq!(
        client
            .get(&format!("/v1/c/people/{id}"))
            .unwrap()
            .expect_status(200),
        json!({"_id": id, "name": "ada lovelace", "address": {"city": "London"}})
    );

    // PUT on a missing id creates it.
    client
        .put("/v1/c/people/new-one", &json!({"_id": "new-one", "n": 1}))
        .unwrap()
        .expect_status(200);
    assert_eq!(
        client
            .get("/v1/c/people/new-one")
            .unwrap()
            .expect_status(200),
        json!({"_id": "new-one", "n": 1})
    );

    // DELETE with the right version, then it is gone.
    client
        .delete(&format!("/v1/c/people/{id}?if_version={patch_lsn}"))
        .unwrap()
        .expect_status(200);
    client
        .get(&format!("/v1/c/people/{id}"))
        .unwrap()
        .expect_error(404, "not_found");
    client
        .delete(&format!("/v1/c/people/{id}"))
        .unwrap()
        .expect_error(404, "not_found");
    client
        .patch(&format!("/v1/c/people/{id}"), &json!({"a": 1}))
        .unwrap()
        .expect_error(404, "not_found");

    // The listing counts what is left: grace and new-one.
    let listing = client.get("/v1/c").unwrap().expect_status(200);
    let people = listing["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "people")
        .unwrap_or_else(|| panic!("people is listed: {listing}"));
    assert_eq!(people["count"], 2, "{listing}");
}

/// Documents for the query tests: 60 people with ages 20..=79 cycling, cities, some without
/// an email, nested addresses.
fn seed_people(client: &Client) -> Vec<Value> {
    let cities = ["Lyon", "Oslo", "Porto", "Kyoto"];
    let docs: Vec<Value> = (0..60)
        .map(|i| {
            let mut doc = json!({
                "_id": format!("p{i:03}"),
                "name": format!("person {i}"),
                "age": 20 + (i * 7) % 60,
                "address": {"city": cities[i % 4]},
            });
            if !i.is_multiple_of(3) {
                doc["email"] = json!(format!("p{i}@example.org"));
            }
            doc
        })
        .collect();
    let ops = docs
        .iter()
        .map(|d| json!({"op": "insert", "collection": "people", "doc": d}))
        .collect();
    let reply = client.txn(ops).unwrap().expect_status(200);
    assert_eq!(reply["ids"].as_array().unwrap().len(), 60);
    docs
}

fn age(doc: &Value) -> u64 {
    doc["age"]
        .as_u64()
        .expect("every seeded document has an age")
}

/// Which documents a filter should keep, computed in the test.
type Keep = Box<dyn Fn(&Value) -> bool>;

fn find_ids(client: &Client, query: Value) -> (Vec<String>, Value) {
    let body = client.find("people", &query).unwrap().expect_status(200);
    let ids = body["docs"]
        .as_array()
        .unwrap_or_else(|| panic!("docs in {body}"))
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect();
    (ids, body)
}

fn expected_ids(docs: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<String> {
    let mut ids: Vec<String> = docs
        .iter()
        .filter(|d| keep(d))
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn find_filters_sorts_and_uses_an_index() {
    let (_server, client) = start();
    let docs = seed_people(&client);

    let index_txn = client
        .txn(vec![json!({
            "op": "create_index",
            "collection": "people",
            "index": {"name": "by_age", "fields": [{"path": "age", "desc": false}], "unique": false, "sparse": false}
        })])
        .unwrap()
        .expect_status(200);
    assert!(index_txn["lsn"].as_u64().unwrap() >= 2);

    // A range on the indexed field: served by the index, right documents, sorted.
    let (ids, body) = find_ids(
        &client,
        json!({"filter": {"age": {"$gte": 60}}, "sort": [["age", 1], ["_id", 1]], "explain": true}),
    );
    let mut expected: Vec<&Value> = docs.iter().filter(|d| age(d) >= 60).collect();
    expected.sort_by_key(|d| (age(d), d["_id"].as_str().unwrap().to_string()));
    let expected: Vec<String> = expected
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);
    let plan = body["plan"].to_string();
    assert!(
        plan.contains("by_age"),
        "explain names the index it used: {plan}"
    );

    // A filter the index does not cover is still answered, and its plan names no index.
    let (_, body) = find_ids(
        &client,
        json!({"filter": {"name": "person 5"}, "explain": true}),
    );
    assert!(
        !body["plan"].to_string().contains("by_age"),
        "{}",
        body["plan"]
    );

    // Sort descending with limit and skip.
    let (ids, _) = find_ids(
        &client,
        json!({"filter": {}, "sort": [["_id", -1]], "limit": 5, "skip": 2}),
    );
    assert_eq!(ids, ["p057", "p056", "p055", "p054", "p053"]);

    // The operator subset, each against a filter computed here.
    let cases: Vec<(Value, Keep)> = vec![
        (json!({"age": 27}), Box::new(|d| age(d) == 27)),
        (json!({"age": {"$ne": 27}}), Box::new(|d| age(d) != 27)),
        (
            json!({"age": {"$gt": 30, "$lt": 40}}),
            Box::new(|d| (31..40).contains(&age(d))),
        ),
        (json!({"age": {"$lte": 25}}), Box::new(|d| age(d) <= 25)),
        (
            json!({"age": {"$in": [20, 41, 62]}}),
            Box::new(|d| [20, 41, 62].contains(&age(d))),
        ),
        (
            json!({"age": {"$nin": [20, 41, 62]}}),
            Box::new(|d| ![20, 41, 62].contains(&age(d))),
        ),
        (
            json!({"email": {"$exists": false}}),
            Box::new(|d| d.get("email").is_none()),
        ),
        (
            json!({"address.city": "Oslo"}),
            Box::new(|d| d["address"]["city"] == "Oslo"),
        ),
        (
            json!({"$or": [{"address.city": "Kyoto"}, {"age": {"$lt": 23}}]}),
            Box::new(|d| d["address"]["city"] == "Kyoto" || age(d) < 23),
        ),
        (
            json!({"$and": [{"address.city": "Lyon"}, {"email": {"$exists": true}}]}),
            Box::new(|d| d["address"]["city"] == "Lyon" && d.get("email").is_some()),
        ),
        (
            json!({"age": {"$not": {"$gte": 30}}}),
            Box::new(|d| age(d) < 30),
        ),
    ];
    for (filter, keep) in cases {
        let (ids, _) = find_ids(&client, json!({"filter": filter, "sort": [["_id", 1]]}));
        assert_eq!(ids, expected_ids(&docs, keep), "filter {filter}");
    }
}

#[test]
fn a_transaction_is_all_or_nothing() {
    let (_server, client) = start();
    client
        .insert("accounts", &json!({"_id": "alice", "balance": 100}))
        .unwrap()
        .expect_status(201);
    client
        .txn(vec![json!({
            "op": "create_index", "collection": "accounts",
            "index": {"name": "by_email", "fields": [{"path": "email"}], "unique": true, "sparse": true}
        })])
        .unwrap()
        .expect_status(200);
    let before_lsn = client.last_lsn();
    let before_docs = client.all_docs("accounts");

    // The second operation clashes on _id: the first must not stay applied.
    client
        .txn(vec![
            json!({"op": "insert", "collection": "accounts", "doc": {"_id": "bob", "balance": 5}}),
            json!({"op": "insert", "collection": "accounts", "doc": {"_id": "alice", "balance": 0}}),
        ])
        .unwrap()
        .expect_error(409, "already_exists");
    // Two inserts clash on a unique index inside one transaction.
    client
        .txn(vec![
            json!({"op": "insert", "collection": "accounts", "doc": {"_id": "c1", "email": "x@y"}}),
            json!({"op": "insert", "collection": "accounts", "doc": {"_id": "c2", "email": "x@y"}}),
        ])
        .unwrap()
        .expect_error(409, "unique_violation");
    // A precondition fails on the last operation, after a patch and a delete.
    client
        .txn(vec![
            json!({"op": "patch", "collection": "accounts", "id": "alice", "patch": {"balance": 0}}),
            json!({"op": "insert", "collection": "ledger", "doc": {"_id": "l1"}}),
            json!({"op": "delete", "collection": "accounts", "id": "alice", "if_version": 999_999}),
        ])
        .unwrap()
        .expect_error(412, "version_mismatch");
    // A failing operation on another collection.
    client
        .txn(vec![
            json!({"op": "put", "collection": "accounts", "doc": {"_id": "alice", "balance": 1}}),
            json!({"op": "drop_index", "collection": "accounts", "name": "nope"}),
        ])
        .unwrap()
        .expect_error(404, "index_not_found");

    assert_eq!(
        client.last_lsn(),
        before_lsn,
        "refused transactions log nothing"
    );
    assert_eq!(client.all_docs("accounts"), before_docs);
    assert!(
        client.all_docs("ledger").is_empty(),
        "no collection was created"
    );

    // A transfer that succeeds: one entry, every operation applied, ids in order.
    let done = client
        .txn(vec![
            json!({"op": "insert", "collection": "accounts", "doc": {"_id": "bob", "balance": 30}}),
            json!({"op": "patch", "collection": "accounts", "id": "alice", "patch": {"balance": 70}}),
            json!({"op": "insert", "collection": "ledger", "doc": {"from": "alice", "to": "bob", "amount": 30}}),
        ])
        .unwrap()
        .expect_status(200);
    assert_eq!(
        done["lsn"].as_u64().unwrap(),
        before_lsn + 1,
        "one transaction, one entry"
    );
    let ids = done["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "ids of the inserts: {done}");
    assert_eq!(ids[0], "bob");
    assert_eq!(
        client
            .get("/v1/c/accounts/alice")
            .unwrap()
            .expect_status(200)["balance"],
        70
    );
    let ledger = client.all_docs("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0]["_id"], ids[1]);
}

#[test]
fn collections_indexes_and_ttl_are_managed_through_transactions() {
    let (_server, client) = start();
    client
        .txn(vec![
            json!({"op": "create_collection", "collection": "events", "ttl_ms": 3_600_000}),
        ])
        .unwrap()
        .expect_status(200);
    client
        .txn(vec![
            json!({"op": "create_collection", "collection": "events"}),
        ])
        .unwrap()
        .expect_error(409, "collection_exists");
    let index =
        json!({"name": "by_kind", "fields": [{"path": "kind"}, {"path": "at", "desc": true}]});
    client
        .txn(vec![
            json!({"op": "create_index", "collection": "events", "index": index}),
        ])
        .unwrap()
        .expect_status(200);
    client
        .txn(vec![
            json!({"op": "create_index", "collection": "events", "index": index}),
        ])
        .unwrap()
        .expect_error(409, "index_exists");

    let listing = client.get("/v1/c").unwrap().expect_status(200);
    let events = listing["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "events")
        .cloned()
        .unwrap_or_else(|| panic!("events is listed: {listing}"));
    assert_eq!(events["ttl_ms"], 3_600_000, "{events}");
    assert!(
        events["indexes"].to_string().contains("by_kind"),
        "{events}"
    );

    client
        .txn(vec![
            json!({"op": "set_ttl", "collection": "events", "ttl_ms": null}),
            json!({"op": "drop_index", "collection": "events", "name": "by_kind"}),
        ])
        .unwrap()
        .expect_status(200);
    client
        .txn(vec![
            json!({"op": "drop_collection", "collection": "events"}),
        ])
        .unwrap()
        .expect_status(200);
    let listing = client.get("/v1/c").unwrap().expect_status(200);
    assert!(
        !listing.to_string().contains("\"events\""),
        "events is gone: {listing}"
    );
}
