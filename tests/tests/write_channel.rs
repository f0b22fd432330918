//! The write channel (`GET /v1/write`) against a real `cstore serve`: pipelined transactions
//! answered in order, bad messages answered with their codes and writing nothing, exactly-once
//! resends, auth, the refusals before the upgrade, and how a channel ends (too large a message,
//! the server stopping).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::runtime::Runtime;

use cstore_tests::cluster::{ClusterOptions, ClusterProcesses};
use cstore_tests::token::mint_token_with;
use cstore_tests::write_channel::{ChannelError, WriteChannel};
use cstore_tests::{ServerOptions, ServerProcess};

const WAIT: Duration = Duration::from_secs(20);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn insert(req: u64, id: &str) -> Value {
    json!({"req": req, "ops": [{"op": "insert", "collection": "items", "doc": {"_id": id, "n": req}}]})
}

fn open(server: &ServerProcess, rt: &Runtime, query: &str, token: Option<&str>) -> WriteChannel {
    let addr = server.addr().to_string();
    rt.block_on(WriteChannel::open(&addr, query, token))
        .expect("the channel opens")
}

/// Sends every message without waiting (pipelined), then reads one answer for each.
fn exchange(rt: &Runtime, channel: &mut WriteChannel, messages: &[Value]) -> Vec<Value> {
    rt.block_on(async {
        for message in messages {
            channel.feed(message).await.unwrap();
        }
        channel.flush().await.unwrap();
        let mut answers = Vec::new();
        for _ in messages {
            answers.push(channel.recv(WAIT).await.unwrap());
        }
        answers
    })
}

fn refused(
    server: &ServerProcess,
    rt: &Runtime,
    query: &str,
    token: Option<&str>,
) -> (u16, String) {
    let addr = server.addr().to_string();
    match rt.block_on(WriteChannel::open(&addr, query, token)) {
        Err(ChannelError::Refused { status, body }) => {
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (status, code)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn pipelined_transactions_are_answered_in_order_and_all_committed() {
    let server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let rt = runtime();
    let mut channel = open(&server, &rt, "", None);
    const COUNT: u64 = 2_000;
    // Everything is sent before the first answer is read: the server sees many at once.
    let messages: Vec<Value> = (0..COUNT)
        .map(|req| insert(req, &format!("d{req:05}")))
        .collect();
    let answers = exchange(&rt, &mut channel, &messages);
    let mut last_lsn = 0;
    for (req, answer) in answers.iter().enumerate() {
        assert_eq!(answer["req"], json!(req), "answers come in order: {answer}");
        assert_eq!(answer["ids"], json!([format!("d{req:05}")]), "{answer}");
        let lsn = answer["lsn"].as_u64().expect("an LSN");
        assert!(lsn > last_lsn, "LSNs rise in the order sent: {answer}");
        last_lsn = lsn;
    }
    let client = server.client();
    assert_eq!(client.collection_count("items"), COUNT);
    assert_eq!(client.last_lsn(), last_lsn);
    // The server counted them as the channel's.
    let metrics = client.get("/metrics").unwrap().text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cstore_write_channel_txns_total") && l.ends_with(" 2000")),
        "{metrics}"
    );
}

#[test]
fn bad_messages_are_answered_with_their_codes_and_write_nothing() {
    let server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let rt = runtime();
    let mut channel = open(&server, &rt, "", None);
    let answers = rt.block_on(async {
        let texts = [
            "{not json".to_string(),
            "[1, 2]".to_string(),
            json!({"req": -1, "ops": [{"op": "insert", "collection": "items", "doc": {}}]})
                .to_string(),
            json!({"req": 3, "ops": []}).to_string(),
            json!({"req": 4, "ops": [], "extra": 1}).to_string(),
            json!({"req": 5, "ops": [{"op": "insert", "collection": "items", "doc": [1]}]})
                .to_string(),
            json!({"req": 6, "ops": [{"op": "insert", "collection": "bad name!", "doc": {}}]})
                .to_string(),
            json!({"req": 7, "ops": [{"op": "frobnicate"}]}).to_string(),
        ];
        for text in texts {
            channel.feed_text(text).await.unwrap();
        }
        channel.flush().await.unwrap();
        channel.send_binary(vec![0xff, 0x00, 0x12]).await.unwrap();
        // A good one after them all still commits.
        channel.send(&insert(9, "good")).await.unwrap();
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(channel.recv(WAIT).await.unwrap());
        }
        answers
    });
    let expected = [
        (Value::Null, "invalid_json"),
        (Value::Null, "invalid_txn"),
        (Value::Null, "invalid_txn"),
        (json!(3), "invalid_txn"),
        (json!(4), "invalid_txn"),
        (json!(5), "invalid_document"),
        (json!(6), "invalid_collection_name"),
        (json!(7), "invalid_txn"),
        (Value::Null, "invalid_txn"),
    ];
    for (answer, (req, code)) in answers.iter().zip(expected) {
        assert_eq!(answer["req"], req, "{answer}");
        assert_eq!(answer["status"], json!(400), "{answer}");
        assert_eq!(answer["error"]["code"], json!(code), "{answer}");
        assert!(answer.get("lsn").is_none(), "{answer}");
    }
    assert_eq!(answers[9]["req"], json!(9), "{}", answers[9]);
    assert_eq!(answers[9]["ids"], json!(["good"]), "{}", answers[9]);
    // Only the good one was written: one entry in the log, one document.
    let client = server.client();
    assert_eq!(client.collection_count("items"), 1);
    assert_eq!(client.last_lsn(), answers[9]["lsn"].as_u64().unwrap());
}

#[test]
fn a_list_of_transactions_in_one_message_gets_one_answer_with_a_result_each() {
    let server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let rt = runtime();
    let mut channel = open(&server, &rt, "", None);
    let txn =
        |id: &str| json!({"ops": [{"op": "insert", "collection": "items", "doc": {"_id": id}}]});
    let messages = [
        json!({"req": 1, "txns": [txn("a"), txn("a"), txn("b")]}),
        // Messages of both kinds keep their order.
        insert(2, "c"),
        json!({"req": 3, "txns": []}),
        json!({"req": 4, "txns": (0..1001).map(|n| txn(&format!("x{n}"))).collect::<Vec<_>>()}),
        json!({"req": 5, "txns": {"not": "a list"}}),
        json!({"req": 6, "txns": [txn("d")], "extra": true}),
        json!({"req": 7, "txns": [txn("e"), {"ops": "nope"}]}),
    ];
    let answers = exchange(&rt, &mut channel, &messages);
    let results = answers[0]["results"]
        .as_array()
        .expect("a list's answer has results");
    assert_eq!(answers[0]["req"], json!(1));
    assert_eq!(results.len(), 3, "{}", answers[0]);
    assert!(results[0]["lsn"].is_u64(), "{}", answers[0]);
    assert_eq!(results[1]["status"], json!(409), "{}", answers[0]);
    assert_eq!(results[1]["error"]["code"], json!("already_exists"));
    assert!(results[2]["lsn"].as_u64() > results[0]["lsn"].as_u64());
    assert_eq!(answers[1]["req"], json!(2));
    assert!(
        answers[1]["lsn"].as_u64() > results[2]["lsn"].as_u64(),
        "{}",
        answers[1]
    );
    for (answer, (req, status, code)) in answers[2..6].iter().zip([
        (3, 400, "invalid_txn"),
        (4, 413, "txn_too_large"),
        (5, 400, "invalid_txn"),
        (6, 400, "invalid_txn"),
    ]) {
        assert_eq!(answer["req"], json!(req), "{answer}");
        assert_eq!(answer["status"], json!(status), "{answer}");
        assert_eq!(answer["error"]["code"], json!(code), "{answer}");
    }
    // In a list each transaction stands alone: the bad one is refused, the good one commits.
    let results = answers[6]["results"].as_array().expect("results");
    assert!(results[0]["lsn"].is_u64(), "{}", answers[6]);
    assert_eq!(results[1]["status"], json!(400), "{}", answers[6]);
    let client = server.client();
    // a, b, c and e: nothing of the refused messages was written.
    assert_eq!(client.collection_count("items"), 4);
    assert_eq!(client.last_lsn(), results[0]["lsn"].as_u64().unwrap());
}

#[test]
fn a_refused_transaction_does_not_stop_the_next_and_resends_commit_once() {
    let server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let rt = runtime();
    let mut channel = open(&server, &rt, "", None);
    let with_origin = |req: u64, id: &str| {
        let mut txn = insert(req, id);
        txn["origin"] = json!({"client": "tab-1", "seq": req});
        txn
    };
    let txns = [
        with_origin(1, "a"),
        // The same `_id` again: refused for good (409), and the next still commits.
        with_origin(2, "a"),
        with_origin(3, "b"),
        // A resend of the last committed origin: answered as a duplicate, not written.
        with_origin(3, "b"),
    ];
    let answers = exchange(&rt, &mut channel, &txns);
    assert!(answers[0]["lsn"].is_u64(), "{}", answers[0]);
    assert_eq!(answers[1]["status"], json!(409), "{}", answers[1]);
    assert_eq!(
        answers[1]["error"]["code"],
        json!("already_exists"),
        "{}",
        answers[1]
    );
    assert!(answers[2]["lsn"].is_u64(), "{}", answers[2]);
    assert_eq!(answers[3]["lsn"], answers[2]["lsn"], "{}", answers[3]);
    assert_eq!(answers[3]["duplicate"], json!(true), "{}", answers[3]);
    // Resent on a new channel (as after a lost answer): the same LSN, nothing written twice.
    drop(channel);
    let mut again = open(&server, &rt, "", None);
    let answer = rt.block_on(async {
        again.send(&with_origin(3, "b")).await.unwrap();
        again.recv(WAIT).await.unwrap()
    });
    assert_eq!(answer["lsn"], answers[2]["lsn"], "{answer}");
    assert_eq!(answer["duplicate"], json!(true), "{answer}");
    let client = server.client();
    assert_eq!(client.collection_count("items"), 2);
    assert_eq!(client.last_lsn(), answers[2]["lsn"].as_u64().unwrap());
}

#[test]
fn tokens_are_checked_before_the_upgrade_and_collections_per_transaction() {
    const SECRET: &str = "write-channel-test-secret-0123456789";
    let server = ServerProcess::start(ServerOptions {
        auth_secret: Some(SECRET.into()),
        ..ServerOptions::default()
    })
    .expect("server starts");
    let rt = runtime();
    let mint = |args: &[&str]| mint_token_with(server.binary(), SECRET, args).expect("a token");
    let read = mint(&["--scope", "read"]);
    let notes_only = mint(&["--scope", "write", "--collections", "notes"]);

    assert_eq!(
        refused(&server, &rt, "", None),
        (401, "missing_token".into())
    );
    assert_eq!(
        refused(&server, &rt, "?token=cst1.bogus.sig", None),
        (401, "invalid_token".into())
    );
    assert_eq!(
        refused(&server, &rt, "", Some(&read)),
        (403, "forbidden".into())
    );
    // A browser passes the token in the query string.
    let mut channel = open(&server, &rt, &format!("?token={notes_only}"), None);
    let answers = exchange(
        &rt,
        &mut channel,
        &[
            json!({"req": 1, "ops": [{"op": "insert", "collection": "notes", "doc": {"_id": "n"}}]}),
            insert(2, "i"),
        ],
    );
    assert!(answers[0]["lsn"].is_u64(), "{}", answers[0]);
    assert_eq!(answers[1]["status"], json!(403), "{}", answers[1]);
    assert_eq!(
        answers[1]["error"]["code"],
        json!("collection_forbidden"),
        "{}",
        answers[1]
    );
    let admin = server.client().with_token(mint(&["--scope", "admin"]));
    assert_eq!(admin.collection_count("notes"), 1);
    assert_eq!(admin.collection_count("items"), 0);
}

#[test]
fn refusals_before_the_upgrade_and_a_follower_names_its_leader() {
    let leader = ServerProcess::start(ServerOptions::default()).expect("leader starts");
    let rt = runtime();
    // Not a WebSocket request.
    leader
        .client()
        .get("/v1/write")
        .unwrap()
        .expect_error(426, "upgrade_required");
    assert_eq!(
        refused(&leader, &rt, "?ack=sometimes", None),
        (400, "invalid_ack".into())
    );
    // A read replica does not take writes: the client is told where to go, on a plain GET too
    // (what a browser asks after a failed upgrade, which tells it nothing).
    let follower =
        ServerProcess::start(ServerOptions::follower_of(&leader)).expect("follower starts");
    let plain = follower.client().get("/v1/write").unwrap();
    plain.expect_error(503, "not_leader");
    assert_eq!(plain.json()["error"]["leader_url"], json!(leader.url()));
    let addr = follower.addr().to_string();
    match rt.block_on(WriteChannel::open(&addr, "", None)) {
        Err(ChannelError::Refused { status, body }) => {
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["code"], json!("not_leader"), "{body}");
            assert_eq!(body["error"]["leader_url"], json!(leader.url()), "{body}");
        }
        other => panic!("expected not_leader, got {other:?}"),
    }
}

#[test]
fn a_message_over_the_bound_closes_the_channel_with_1009_and_writes_nothing() {
    let server = ServerProcess::start(ServerOptions {
        extra_args: vec!["--txn-body-max-bytes".into(), "4096".into()],
        ..ServerOptions::default()
    })
    .expect("server starts");
    let rt = runtime();
    let mut channel = open(&server, &rt, "", None);
    let ended = rt.block_on(async {
        let big = json!({"req": 1, "ops": [{"op": "insert", "collection": "items",
                         "doc": {"_id": "big", "pad": "x".repeat(8192)}}]});
        channel.send(&big).await.unwrap();
        channel.recv(WAIT).await
    });
    match ended {
        Err(ChannelError::Closed(Some((code, reason)))) => {
            assert_eq!(code, 1009);
            assert_eq!(reason, "body_too_large");
        }
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    assert_eq!(server.client().collection_count("items"), 0);
    // The server is fine: a new channel writes.
    let mut channel = open(&server, &rt, "", None);
    let answer = rt.block_on(async {
        channel.send(&insert(2, "small")).await.unwrap();
        channel.recv(WAIT).await.unwrap()
    });
    assert!(answer["lsn"].is_u64(), "{answer}");
}

#[test]
fn a_stopping_server_closes_idle_channels_with_1001() {
    let mut server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let rt = runtime();
    let mut channel = open(&server, &rt, "", None);
    let answer = rt.block_on(async {
        channel.send(&insert(1, "before")).await.unwrap();
        channel.recv(WAIT).await.unwrap()
    });
    assert!(answer["lsn"].is_u64(), "{answer}");
    server
        .signal(nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    match rt.block_on(channel.recv(WAIT)) {
        Err(ChannelError::Closed(Some((code, reason)))) => {
            assert_eq!(code, 1001);
            assert_eq!(reason, "shutting_down");
        }
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    let status = server.wait_exit(30_000).expect("the server exits");
    assert!(status.success(), "{status}");
}

#[test]
fn in_a_cluster_the_leader_takes_the_channel_and_a_lost_quorum_closes_it_with_1013() {
    let mut cluster = ClusterProcesses::start(3, ClusterOptions::default()).expect("members start");
    let leader = cluster
        .wait_leader(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no leader elected\n{}", cluster.all_stderr()));
    let rt = runtime();
    // A member that does not lead names the leader: a channel is not forwarded.
    let other = (leader + 1) % 3;
    match rt.block_on(WriteChannel::open(
        &cluster.members[other].addr().to_string(),
        "",
        None,
    )) {
        Err(ChannelError::Refused { status, body }) => {
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["code"], json!("not_leader"), "{body}");
            assert_eq!(
                body["error"]["leader_url"],
                json!(cluster.members[leader].url()),
                "{body}"
            );
        }
        other => panic!("expected not_leader, got {other:?}"),
    }
    let mut channel = open(&cluster.members[leader], &rt, "", None);
    let messages: Vec<Value> = (0..50)
        .map(|req| insert(req, &format!("c{req:02}")))
        .collect();
    let answers = exchange(&rt, &mut channel, &messages);
    assert!(answers.iter().all(|a| a["lsn"].is_u64()), "{answers:?}");
    // Without a quorum a write fails for a passing reason. The first may wait out the
    // commit timeout (`504 ack_unknown`: it may still commit, and what follows it in the log
    // commits only if it does, so the channel stays open); once the leader knows its lease
    // lapsed it refuses (`503`): answered, then the channel closes with 1013 so that nothing
    // sent after it is written.
    for i in 0..3 {
        if i != leader {
            cluster.members[i].kill9().unwrap();
        }
    }
    rt.block_on(async {
        for req in 100..103 {
            channel
                .send(&insert(req, &format!("lost{req}")))
                .await
                .unwrap();
            let answer = channel.recv(Duration::from_secs(60)).await.unwrap();
            assert_eq!(answer["req"], json!(req), "{answer}");
            match answer["status"].as_u64() {
                Some(504) => assert_eq!(answer["error"]["code"], json!("ack_unknown")),
                Some(503) => {
                    let code = answer["error"]["code"].as_str().unwrap();
                    match channel.recv(WAIT).await {
                        Err(ChannelError::Closed(Some((1013, reason)))) => {
                            assert_eq!(reason, code)
                        }
                        other => panic!("expected a 1013 close, got {other:?}"),
                    }
                    return;
                }
                _ => panic!("expected a passing failure, got {answer}"),
            }
        }
        panic!("the leader without a quorum never refused a write");
    });
}
