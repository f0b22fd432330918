//! Native read replicas as real processes: `cstore serve --follow ws://…/v1/replicate`.
//!
//! A leader, followers of it and a relay (a follower of a follower) run on loopback. Writes on
//! the leader show up everywhere with identical contents; a write sent to a follower is
//! forwarded and then readable there with `min_lsn`; a follower killed with SIGKILL resumes
//! where its disk was, without downloading again; one that joins after compaction installs a
//! snapshot; one pointed at something that is no leader keeps retrying and says why; one newer
//! than its leader speaks the leader's protocol version until the leader is upgraded.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cstore_tests::{Client, ServerOptions, ServerProcess};

const COLLECTION: &str = "things";

/// Waits until `client`'s node has applied `lsn`; panics with its status otherwise.
#[track_caller]
fn wait_applied(client: &Client, lsn: u64, what: &str) -> Value {
    client.wait_applied(lsn, Duration::from_secs(20), what)
}

/// Inserts `count` documents one by one, then one transaction of `count` more; the leader's
/// last LSN after it.
fn write_docs(client: &Client, prefix: &str, count: usize) -> u64 {
    for i in 0..count {
        client
            .insert(COLLECTION, &json!({"_id": format!("{prefix}{i}"), "n": i}))
            .unwrap()
            .expect_status(201);
    }
    let ops = (0..count)
        .map(|i| {
            json!({"op": "insert", "collection": COLLECTION,
                   "doc": {"_id": format!("{prefix}t{i}"), "n": i, "in_txn": true}})
        })
        .collect();
    client.txn(ops).unwrap().expect_status(200);
    client.last_lsn()
}

fn follower_status(client: &Client) -> Value {
    client.status()["follower"].clone()
}

#[test]
fn leader_two_followers_and_a_relay_hold_the_same_data() {
    let leader = ServerProcess::start(ServerOptions::default()).expect("leader starts");
    let first = ServerProcess::start(ServerOptions::follower_of(&leader)).expect("follower 1");
    let second = ServerProcess::start(ServerOptions::follower_of(&leader)).expect("follower 2");
    let relay = ServerProcess::start(ServerOptions::follower_of(&first)).expect("relay");
    let last = write_docs(&leader.client(), "a", 50);

    let expected = leader.client().all_docs(COLLECTION);
    assert_eq!(expected.len(), 100);
    for (name, node) in [
        ("follower 1", &first),
        ("follower 2", &second),
        ("relay", &relay),
    ] {
        let status = wait_applied(&node.client(), last, name);
        assert_eq!(status["role"], "follower", "{name}: {status}");
        assert_eq!(status["term"], 1, "{name}: {status}");
        assert_eq!(
            node.client().all_docs(COLLECTION),
            expected,
            "{name} holds the leader's documents"
        );
    }
    assert_eq!(
        relay.client().status()["leader_url"],
        first.replicate_url(),
        "the relay follows follower 1"
    );

    // A write sent to a follower is forwarded to the leader and answered with its lsn; the
    // follower (and the relay behind it) then serve it with `min_lsn`.
    let reply = first
        .client()
        .insert(COLLECTION, &json!({"_id": "via-follower", "v": 1}))
        .unwrap();
    let written = reply.expect_status(201);
    let lsn = written["lsn"].as_u64().expect("an lsn");
    assert!(lsn > last);
    for node in [&first, &relay] {
        let read = node
            .client()
            .get(&format!("/v1/c/{COLLECTION}/via-follower?min_lsn={lsn}"))
            .unwrap();
        assert_eq!(
            read.expect_status(200),
            json!({"_id": "via-follower", "v": 1})
        );
    }
    let found = second
        .client()
        .find(
            COLLECTION,
            &json!({"filter": {"_id": "via-follower"}, "min_lsn": lsn}),
        )
        .unwrap()
        .expect_status(200);
    assert_eq!(found["docs"].as_array().map(Vec::len), Some(1));
    // A precondition travels with the forwarded write: a stale version is the leader's 412.
    first
        .client()
        .send(
            reqwest::Method::PUT,
            &format!("/v1/c/{COLLECTION}/via-follower?if_version=1"),
            Some(("application/json", br#"{"v":2}"#.to_vec())),
            &[],
        )
        .unwrap()
        .expect_error(412, "version_mismatch");
}

#[test]
fn a_follower_killed_mid_stream_resumes_without_downloading_again() {
    let leader = ServerProcess::start(ServerOptions::default()).expect("leader starts");
    let mut follower =
        ServerProcess::start(ServerOptions::follower_of(&leader)).expect("follower starts");
    let before = write_docs(&leader.client(), "a", 100);
    wait_applied(&follower.client(), before, "follower");

    // Kill it while the leader keeps writing.
    let writer = {
        let client = leader.client();
        std::thread::spawn(move || write_docs(&client, "b", 100))
    };
    std::thread::sleep(Duration::from_millis(30));
    let held = follower.client().status()["applied_lsn"].as_u64().unwrap();
    follower.kill9().expect("SIGKILL");
    let last = writer.join().expect("writer");
    assert!(last > held);

    follower.restart().expect("restarts");
    let status = wait_applied(&follower.client(), last, "restarted follower");
    let progress = &status["follower"];
    assert_eq!(progress["snapshot_installs"], 0, "{status}");
    let received = progress["entries_received"].as_u64().unwrap();
    assert!(
        received <= last - held,
        "received {received} entries after the restart; at most {} were new: {status}",
        last - held
    );
    assert_eq!(
        follower.client().all_docs(COLLECTION),
        leader.client().all_docs(COLLECTION),
        "the follower's data is intact"
    );
}

#[test]
fn a_follower_that_joins_after_compaction_bootstraps_from_a_snapshot() {
    let mut leader = ServerProcess::start(ServerOptions {
        checkpoint_every: Some(40),
        ..ServerOptions::default()
    })
    .expect("leader starts");
    let last = write_docs(&leader.client(), "a", 100);
    // After a restart the leader's replication tail is empty and its log compacted: the
    // entries before the checkpoint exist nowhere but in its snapshot.
    leader.terminate(10_000).expect("the leader stops");
    leader.restart().expect("the leader restarts");
    let follower =
        ServerProcess::start(ServerOptions::follower_of(&leader)).expect("follower starts");
    // A relay joins at once, likely before its upstream installed the snapshot: its upstream's
    // log then restarts at the snapshot, and the relay bootstraps from one too.
    let relay = ServerProcess::start(ServerOptions::follower_of(&follower)).expect("relay starts");
    let status = wait_applied(&follower.client(), last, "follower");
    assert_eq!(status["follower"]["snapshot_installs"], 1, "{status}");
    let expected = leader.client().all_docs(COLLECTION);
    assert_eq!(follower.client().all_docs(COLLECTION), expected);
    wait_applied(&relay.client(), last, "relay");
    assert_eq!(relay.client().all_docs(COLLECTION), expected);
    // Both keep streaming what comes next.
    let next = write_docs(&leader.client(), "b", 5);
    wait_applied(&relay.client(), next, "relay");
    assert_eq!(
        relay.client().all_docs(COLLECTION),
        leader.client().all_docs(COLLECTION)
    );
}

/// Writes that wait for one replica, each with a deadline under the leader's heartbeat interval
/// (1 s), so that an ack the replica sends only when asked by a heartbeat would miss it.
fn write_waiting_for_a_replica(leader: &ServerProcess, prefix: &str) {
    for i in 0..5 {
        leader
            .client()
            .post(
                &format!("/v1/c/{COLLECTION}?ack=replicas:1&ack_timeout_ms=500"),
                &json!({"_id": format!("{prefix}{i}")}),
            )
            .unwrap()
            .expect_status(201);
    }
}

/// The protocol version of each replica connected to `leader`, as its status shows them.
fn replica_versions(leader: &ServerProcess) -> Vec<Value> {
    let status = leader.client().status();
    let replicas = status["replicas"].as_array().expect("a replicas list");
    replicas
        .iter()
        .map(|r| r["protocol_version"].clone())
        .collect()
}

#[test]
fn a_follower_newer_than_its_leader_speaks_its_version_until_it_is_upgraded() {
    // `--replication-protocol-max 2`: the leader refuses this build's version 3 exactly as a
    // build from before version 3 does (`unsupported_protocol`, then it closes).
    let older = vec!["--replication-protocol-max".to_string(), "2".to_string()];
    let mut leader = ServerProcess::start(ServerOptions {
        extra_args: older,
        ..ServerOptions::default()
    })
    .expect("leader starts");
    let follower = ServerProcess::start(ServerOptions::follower_of(&leader)).expect("follower");
    let last = write_docs(&leader.client(), "a", 20);
    let status = wait_applied(&follower.client(), last, "follower");
    let progress = &status["follower"];
    assert_eq!(progress["protocol_version"], 2, "{status}");
    assert_eq!(progress["connection"], "streaming", "{status}");
    assert_eq!(
        progress["last_error"]["code"], "protocol_fallback",
        "{status}"
    );
    assert_eq!(replica_versions(&leader), [json!(2)]);
    // Version 2 acknowledges every batch unasked, as replicas of that version did: a write
    // that waits for the follower is answered without waiting for a heartbeat.
    write_waiting_for_a_replica(&leader, "w");

    // The leader is upgraded (restarted without the flag): once the follower's connection
    // ends, its next hello speaks the newest version again.
    leader.terminate(5_000).expect("leader stops");
    leader.options_mut().extra_args.clear();
    leader.restart().expect("leader starts again, upgraded");
    let last = write_docs(&leader.client(), "b", 5);
    let status = wait_applied(&follower.client(), last, "follower, after the upgrade");
    assert_eq!(
        status["follower"]["protocol_version"],
        cstore_core::replication::PROTOCOL_VERSION,
        "{status}"
    );
    assert_eq!(
        replica_versions(&leader),
        [json!(cstore_core::replication::PROTOCOL_VERSION)]
    );
    write_waiting_for_a_replica(&leader, "x");
    let done = leader.client().last_lsn();
    wait_applied(&follower.client(), done, "follower");
    assert_eq!(
        follower.client().all_docs(COLLECTION),
        leader.client().all_docs(COLLECTION)
    );
}

#[test]
fn a_follower_of_something_that_is_no_leader_retries_and_says_why() {
    // An HTTP server, but no replication route at this path: the upgrade is refused.
    let other = ServerProcess::start(ServerOptions::default()).expect("a server starts");
    let options = ServerOptions {
        follow: Some(format!("ws://{}/v1/not-replication", other.addr())),
        ..ServerOptions::default()
    };
    let mut follower = ServerProcess::start(options).expect("a follower starts anyway");
    let started = Instant::now();
    let progress = loop {
        let progress = follower_status(&follower.client());
        if progress["last_error"].is_object() && progress["reconnects"] == 0 {
            break progress;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{progress}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(progress["last_error"]["code"], "handshake_refused");
    assert!(
        progress["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("404")
    );
    // It keeps trying (backoff), keeps serving reads, and never exits.
    std::thread::sleep(Duration::from_millis(500));
    assert!(follower.try_reap().unwrap().is_none(), "still running");
    let collections = follower.client().get("/v1/c").unwrap().expect_status(200);
    assert_eq!(collections, json!({"collections": []}));

    // Nothing listening at all: connect_failed, the same way.
    let nothing = cstore_tests::server::free_port().unwrap();
    let options = ServerOptions {
        follow: Some(format!("ws://{nothing}/v1/replicate")),
        ..ServerOptions::default()
    };
    let quiet = ServerProcess::start(options).expect("a follower starts anyway");
    let started = Instant::now();
    loop {
        let progress = follower_status(&quiet.client());
        if progress["last_error"]["code"] == "connect_failed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{progress}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A URL that is not ws:// is refused at start, with exit code 2.
    let options = ServerOptions {
        follow: Some("http://127.0.0.1:1/v1/replicate".into()),
        ..ServerOptions::default()
    };
    let error = ServerProcess::start(options).expect_err("refused");
    assert!(error.to_string().contains("ws://"), "{error}");
    follower.terminate(5_000).expect("stops on SIGTERM");
}

#[test]
fn a_follower_of_a_leader_with_auth_needs_a_read_token() {
    let leader = ServerProcess::start(ServerOptions {
        auth_secret: Some("follower test secret, long enough".into()),
        ..ServerOptions::default()
    })
    .expect("leader starts");
    let writer = leader
        .client()
        .with_token(leader.mint_token(&["write"], "1h").expect("a write token"));
    let last = write_docs(&writer, "a", 10);

    // Without a token the upgrade is refused, and status says so.
    let refused = ServerProcess::start(ServerOptions::follower_of(&leader)).expect("starts");
    let started = Instant::now();
    loop {
        let progress = follower_status(&refused.client());
        if progress["last_error"]["code"] == "handshake_refused" {
            assert!(
                progress["last_error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("401"),
                "{progress}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{progress}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // With `--follow-token` (scope read) it replicates.
    let follower = ServerProcess::start(ServerOptions {
        follow_token: Some(leader.mint_token(&["read"], "1h").expect("a read token")),
        ..ServerOptions::follower_of(&leader)
    })
    .expect("starts");
    wait_applied(&follower.client(), last, "follower with a token");
    assert_eq!(follower.client().collection_count(COLLECTION), 20);
}
