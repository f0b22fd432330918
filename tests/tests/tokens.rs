//! Token hygiene against a real server: tokens limited to collections (also over
//! `/v1/replicate`, with an in-process replica), the read-only `replicate` scope (a real follower uses one), the token's subject in the server's log of
//! writes, and secret rotation with an old secret accepted for a grace period.

use std::time::Duration;

use cstore_core::Lsn;
use cstore_tests::replica_client::{ReplicaClient, ReplicaOptions};
use cstore_tests::token::{mint_token_with, unix_now_s};
use cstore_tests::{Client, ServerOptions, ServerProcess};
use serde_json::json;

const SECRET: &str = "the new secret, long enough";
const OLD_SECRET: &str = "the old secret, rotated out";

fn server_with(extra_args: &[&str]) -> ServerProcess {
    ServerProcess::start(ServerOptions {
        auth_secret: Some(SECRET.into()),
        extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        ..ServerOptions::default()
    })
    .expect("server starts")
}

fn mint(server: &ServerProcess, secret: &str, args: &[&str]) -> String {
    mint_token_with(server.binary(), secret, args).expect("cstore token create")
}

#[test]
fn a_token_limited_to_collections_uses_only_those() {
    let server = server_with(&[]);
    let admin = server
        .client()
        .with_token(mint(&server, SECRET, &["--scope", "admin"]));
    admin
        .insert("secrets", &json!({"_id": "s1", "pin": 1234}))
        .unwrap()
        .expect_status(201);
    let alice_token = mint(
        &server,
        SECRET,
        &[
            "--scope",
            "write",
            "--collections",
            "notes,todos",
            "--subject",
            "alice-laptop",
        ],
    );
    let alice = server.client().with_token(alice_token.clone());

    alice
        .insert("notes", &json!({"_id": "n1"}))
        .unwrap()
        .expect_status(201);
    alice.get("/v1/c/notes/n1").unwrap().expect_status(200);
    let refused = [
        alice.insert("secrets", &json!({"_id": "s2"})).unwrap(),
        alice.get("/v1/c/secrets/s1").unwrap(),
        alice.find("secrets", &json!({"filter": {}})).unwrap(),
        alice.delete("/v1/c/secrets/s1").unwrap(),
        alice.put("/v1/c/secrets/s1", &json!({"pin": 0})).unwrap(),
        // One forbidden operation refuses the whole transaction.
        alice
            .txn(vec![
                json!({"op": "insert", "collection": "notes", "doc": {"_id": "n2"}}),
                json!({"op": "insert", "collection": "secrets", "doc": {"_id": "s3"}}),
            ])
            .unwrap(),
    ];
    for reply in refused {
        reply.expect_error(403, "collection_forbidden");
    }
    // In a batch, only the forbidden transaction is refused.
    let batch = alice
        .post(
            "/v1/txns",
            &json!({"txns": [
                {"ops": [{"op": "insert", "collection": "todos", "doc": {"_id": "t1"}}]},
                {"ops": [{"op": "insert", "collection": "secrets", "doc": {"_id": "s4"}}]},
            ]}),
        )
        .unwrap()
        .expect_status(200);
    assert!(batch["results"][0]["lsn"].is_u64(), "{batch}");
    assert_eq!(batch["results"][1]["status"], 403, "{batch}");
    assert_eq!(
        batch["results"][1]["error"]["code"], "collection_forbidden",
        "{batch}"
    );
    // The listing shows only its collections; nothing it was refused was written.
    let listing = alice.get("/v1/c").unwrap().expect_status(200);
    let names: Vec<&str> = listing["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["notes", "todos"]);
    assert_eq!(admin.collection_count("secrets"), 1);
    assert_eq!(admin.collection_count("notes"), 1);

    // Over /v1/replicate it may follow its collections only: the others' operations come as
    // hashes, and a hello asking for everything (or another collection) is refused.
    follow_as(&server, &alice_token, None)
        .expect_err("a hello for every collection is refused")
        .contains("collection_forbidden")
        .then_some(())
        .expect("refused with collection_forbidden");
    follow_as(
        &server,
        &alice_token,
        Some(vec!["notes".into(), "secrets".into()]),
    )
    .expect_err("a hello naming another collection is refused")
    .contains("collection_forbidden")
    .then_some(())
    .expect("refused with collection_forbidden");
    let followed = follow_as(&server, &alice_token, Some(vec!["notes".into()]))
        .expect("a hello within its collections follows");
    assert_eq!(followed, (1, 0), "notes held, secrets not");

    // Who wrote what: the token's subject is in the log line of each write it made.
    let log = server.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("write request") && l.contains("alice-laptop")),
        "no write line names the token's subject:\n{log}"
    );
}

#[test]
fn a_replicate_token_follows_the_log_and_can_do_nothing_else() {
    let leader = server_with(&[]);
    let writer = leader
        .client()
        .with_token(mint(&leader, SECRET, &["--scope", "write"]));
    for i in 0..5 {
        writer
            .insert("notes", &json!({"_id": format!("n{i}")}))
            .unwrap()
            .expect_status(201);
    }
    let replicate_token = mint(&leader, SECRET, &["--scope", "replicate"]);
    let replica_only = leader.client().with_token(replicate_token.clone());
    replica_only
        .get("/v1/c/notes/n1")
        .unwrap()
        .expect_error(403, "forbidden");
    replica_only
        .insert("notes", &json!({"_id": "x"}))
        .unwrap()
        .expect_error(403, "forbidden");
    replica_only
        .get("/v1/replicate")
        .unwrap()
        .expect_error(426, "upgrade_required");
    replica_only.get("/v1/status").unwrap().expect_status(200);

    // A real read replica follows with it.
    let follower = ServerProcess::start(ServerOptions {
        follow_token: Some(replicate_token),
        ..ServerOptions::follower_of(&leader)
    })
    .expect("follower starts");
    follower
        .client()
        .wait_applied(5, Duration::from_secs(20), "the follower catches up");
    assert_eq!(follower.client().collection_count("notes"), 5);
}

#[test]
fn an_old_secret_is_accepted_until_its_end_then_refused() {
    let until = unix_now_s() + 3600;
    let until_text = rfc3339(until);
    let mut server = server_with(&[
        "--token-secret-old",
        OLD_SECRET,
        "--token-secret-old-until",
        &until_text,
    ]);
    let old_token = mint(&server, OLD_SECRET, &["--scope", "write"]);
    let new_token = mint(&server, SECRET, &["--scope", "write"]);
    let stranger = mint(&server, "some other secret", &["--scope", "write"]);
    let as_old = server.client().with_token(old_token.clone());
    as_old
        .insert("notes", &json!({"_id": "by-old"}))
        .unwrap()
        .expect_status(201);
    let as_new = server.client().with_token(new_token.clone());
    as_new
        .insert("notes", &json!({"_id": "by-new"}))
        .unwrap()
        .expect_status(201);
    server
        .client()
        .with_token(stranger)
        .get("/v1/c/notes/by-old")
        .unwrap()
        .expect_error(401, "invalid_token");

    // The grace period is over: the old secret's tokens are refused, the new ones work.
    server.terminate(10_000).expect("stops");
    server.options_mut().extra_args = vec![
        "--token-secret-old".into(),
        OLD_SECRET.into(),
        "--token-secret-old-until".into(),
        rfc3339(unix_now_s() - 1),
    ];
    server.restart().expect("restarts");
    let check = |client: &Client| client.get("/v1/c/notes/by-new").unwrap();
    check(&server.client().with_token(old_token.clone())).expect_error(401, "invalid_token");
    check(&server.client().with_token(new_token.clone())).expect_status(200);

    // The same once the old secret is removed from the configuration.
    server.terminate(10_000).expect("stops");
    server.options_mut().extra_args.clear();
    server.restart().expect("restarts");
    check(&server.client().with_token(old_token)).expect_error(401, "invalid_token");
    check(&server.client().with_token(new_token)).expect_status(200);
}

/// Follows `server`'s log with an in-process replica presenting `token` and subscribing to
/// `collections`, up to the server's last LSN. Returns how many documents of `notes` and of
/// `secrets` the replica holds, or why the session ended.
fn follow_as(
    server: &ServerProcess,
    token: &str,
    collections: Option<Vec<String>>,
) -> Result<(usize, usize), String> {
    let last = server.client().with_token(token).last_lsn();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut replica = ReplicaClient::new(
            77,
            ReplicaOptions {
                subscription: collections,
                ..ReplicaOptions::default()
            },
        );
        replica
            .connect(&server.replicate_url(), Some(token))
            .await
            .map_err(|e| e.to_string())?;
        replica
            .sync_to(Lsn(last), Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        let count = |name: &str| replica.state().collection(name).map_or(0, |c| c.len());
        Ok((count("notes"), count("secrets")))
    })
}

/// `unix_s` as an RFC 3339 UTC time.
fn rfc3339(unix_s: i64) -> String {
    let days = unix_s.div_euclid(86_400);
    let second_of_day = unix_s.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}
