//! Cluster mode's edges with real processes: a cluster with a secret (members authenticate to
//! each other; Raft routes refuse other callers), member lists that disagree, a data directory
//! of another cluster, a read replica following a member, linearizable reads, a transfer to a
//! dead member, and `cstore cluster status`.

use std::process::Command;
use std::time::{Duration, Instant};

use cstore_tests::binary::cstore_binary;
use cstore_tests::cluster::{ClusterOptions, ClusterProcesses, member_list, member_options};
use cstore_tests::server::{ServerOptions, ServerProcess, free_port};
use serde_json::json;

const ELECTION: Duration = Duration::from_secs(15);

fn started(cluster: ClusterProcesses) -> ClusterProcesses {
    cluster
        .wait_leader(ELECTION)
        .unwrap_or_else(|| panic!("no leader\n{}", cluster.all_stderr()));
    cluster
}

#[test]
fn a_cluster_with_a_secret_authenticates_its_members_and_refuses_strangers() {
    let options = ClusterOptions {
        auth_secret: Some("cluster-secret-for-tests-0123456789".into()),
        ..ClusterOptions::default()
    };
    let cluster = started(ClusterProcesses::start(3, options).expect("members start"));
    let leader = cluster.wait_leader(ELECTION).unwrap();
    let follower = (leader + 1) % 3;
    let write = cluster.members[0].mint_token(&["write"], "1h").unwrap();
    let admin = cluster.members[0].mint_token(&["admin"], "1h").unwrap();
    // A write with a token, through a follower: forwarded with the client's own token.
    cluster
        .client(follower)
        .with_token(&write)
        .insert("notes", &json!({"_id": "a"}))
        .unwrap()
        .expect_status(201);
    cluster
        .client(follower)
        .insert("notes", &json!({"_id": "b"}))
        .unwrap()
        .expect_error(401, "missing_token");
    // Raft routes: no token, a token without admin scope, garbage bytes with admin scope.
    let raft = |token: Option<&str>, body: &[u8]| {
        let client = match token {
            Some(t) => cluster.client(follower).with_token(t),
            None => cluster.client(follower),
        };
        client
            .send(
                reqwest::Method::POST,
                "/v1/raft/append",
                Some(("application/x-postcard", body.to_vec())),
                &[],
            )
            .unwrap()
    };
    assert_eq!(raft(None, b"x").status, 401);
    assert_eq!(raft(Some(&write), b"x").status, 403);
    let garbage = raft(Some(&admin), &[0xff; 64]);
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    // A message claiming another cluster is refused.
    let stranger = cluster
        .client(follower)
        .with_token(&admin)
        .send(
            reqwest::Method::POST,
            "/v1/raft/vote",
            Some(("application/x-postcard", vec![0; 8])),
            &[("x-cstore-cluster", "0000")],
        )
        .unwrap();
    stranger.expect_error(409, "wrong_cluster");
    // The cluster is undisturbed.
    assert_eq!(cluster.wait_leader(ELECTION), Some(leader));
    cluster
        .client(leader)
        .with_token(&write)
        .insert("notes", &json!({"_id": "c"}))
        .unwrap()
        .expect_status(201);
}

#[test]
fn members_started_with_different_lists_form_no_cluster() {
    let addrs: Vec<_> = (0..3).map(|_| free_port().unwrap()).collect();
    let list = member_list(&addrs);
    let other = member_list(&[addrs[0], addrs[1], free_port().unwrap()]);
    let mut members = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let list = if i == 2 { &other } else { &list };
        members.push(
            ServerProcess::start(member_options(
                i as u64 + 1,
                *addr,
                list,
                &ClusterOptions::default(),
            ))
            .unwrap(),
        );
    }
    let started = Instant::now();
    let error = loop {
        let status = members[0].client().status();
        if let Some(error) = status["init_error"].as_str() {
            break error.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no init_error: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(error.contains("[3]"), "{error}");
    for member in &members {
        let status = member.client().status();
        assert_eq!(status["leader_id"], serde_json::Value::Null, "{status}");
        assert_eq!(status["last_lsn"], 0, "nothing was written: {status}");
    }
}

#[test]
fn a_data_directory_of_another_cluster_is_kept_out() {
    let mut cluster = started(ClusterProcesses::start(3, ClusterOptions::default()).unwrap());
    // Member 3 will be replaced: make sure it does not lead.
    if cluster.wait_leader(ELECTION) == Some(2) {
        cluster
            .client(0)
            .post("/v1/cluster/transfer", &json!({"to": 1}))
            .unwrap()
            .expect_status(200);
    }
    let leader = cluster.wait_leader(ELECTION).unwrap();
    assert_ne!(leader, 2);
    cluster
        .client(leader)
        .insert("notes", &json!({"_id": "ours"}))
        .unwrap()
        .expect_status(201);
    // Another cluster, of one member with node id 3, writes a document of its own.
    let addr = free_port().unwrap();
    let mut stranger = ServerProcess::start(member_options(
        3,
        addr,
        &format!("3=http://{addr}"),
        &ClusterOptions::default(),
    ))
    .unwrap();
    let started = Instant::now();
    while stranger.client().status()["role"] != "leader" {
        assert!(
            started.elapsed() < ELECTION,
            "the single member does not lead"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stranger
        .client()
        .insert("notes", &json!({"_id": "theirs"}))
        .unwrap()
        .expect_status(201);
    stranger.terminate(10_000).unwrap();
    // Member 3 of our cluster restarts on the other cluster's data directory.
    let victim = 2;
    cluster.members[victim].terminate(10_000).unwrap();
    let data = cluster.members[victim].data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&stranger.data_dir(), &data);
    cluster.members[victim].restart().unwrap();
    // Our cluster goes on; the stranger's directory never takes our entries, nor we its.
    for n in 0..10 {
        cluster
            .client(leader)
            .insert("notes", &json!({"_id": format!("after{n}")}))
            .unwrap()
            .expect_status(201);
    }
    std::thread::sleep(Duration::from_millis(500));
    let ours = cluster.status(leader).unwrap();
    let theirs = cluster.status(victim).unwrap();
    assert_ne!(ours["cluster_id"], theirs["cluster_id"]);
    assert_ne!(ours["applied_hash"], theirs["applied_hash"]);
    cluster
        .client(victim)
        .get("/v1/c/notes/ours")
        .unwrap()
        .expect_error(404, "not_found");
    cluster
        .client(leader)
        .get("/v1/c/notes/theirs")
        .unwrap()
        .expect_error(404, "not_found");
    let metrics = cluster.client(victim).get("/metrics").unwrap().text();
    assert!(
        metrics.contains("cstore_cluster_wrong_cluster_messages_total"),
        "no refused messages counted"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn read_replicas_follow_any_member_and_reads_can_be_linearizable() {
    let cluster = started(ClusterProcesses::start(3, ClusterOptions::default()).unwrap());
    let leader = cluster.wait_leader(ELECTION).unwrap();
    let follower = (leader + 1) % 3;
    // A native read replica on the follower member's log (committed entries only).
    let replica = ServerProcess::start(ServerOptions::follower_of(&cluster.members[follower]))
        .expect("the read replica starts");
    let mut last = 0;
    for n in 0..20 {
        let reply = cluster
            .client(leader)
            .insert("notes", &json!({"_id": format!("n{n}")}))
            .unwrap();
        last = reply.expect_status(201)["lsn"].as_u64().unwrap();
        // Read-your-write anywhere: linearizable on a follower member.
        let doc = cluster
            .client(follower)
            .get(&format!("/v1/c/notes/n{n}?consistency=linearizable"))
            .unwrap();
        doc.expect_status(200);
    }
    let doc = replica
        .client()
        .get(&format!("/v1/c/notes/n19?min_lsn={last}"))
        .unwrap();
    doc.expect_status(200);
    let find = cluster
        .client(follower)
        .find(
            "notes",
            &json!({"filter": {}, "consistency": "linearizable"}),
        )
        .unwrap()
        .expect_status(200);
    assert_eq!(find["docs"].as_array().unwrap().len(), 20);
    // A read replica cannot promise linearizability; a bad value is refused.
    replica
        .client()
        .get("/v1/c/notes/n1?consistency=linearizable")
        .unwrap()
        .expect_error(400, "consistency_unavailable");
    cluster
        .client(follower)
        .get("/v1/c/notes/n1?consistency=strong")
        .unwrap()
        .expect_error(400, "invalid_query");
}

#[test]
fn a_transfer_to_a_dead_member_fails_and_writes_go_on() {
    let mut cluster = started(ClusterProcesses::start(3, ClusterOptions::default()).unwrap());
    let leader = cluster.wait_leader(ELECTION).unwrap();
    let dead = (leader + 1) % 3;
    // `ack=all` waits for every voter: fine while all are up, `ack_unknown` once one is down
    // (the write is committed on the majority all the same).
    cluster
        .client(leader)
        .post("/v1/c/notes?ack=all", &json!({"_id": "all-up"}))
        .unwrap()
        .expect_status(201);
    cluster.members[dead].kill9().unwrap();
    let reply = cluster
        .client(leader)
        .post(
            "/v1/c/notes?ack=all&ack_timeout_ms=300",
            &json!({"_id": "one-down"}),
        )
        .unwrap();
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(reply.json()["error"]["lsn"].as_u64().is_some());
    cluster
        .client(leader)
        .get("/v1/c/notes/one-down")
        .unwrap()
        .expect_status(200);
    let asked = Instant::now();
    let reply = cluster
        .client(leader)
        .post("/v1/cluster/transfer", &json!({"to": dead as u64 + 1}))
        .unwrap();
    println!(
        "transfer to a dead member answered {} after {} ms",
        reply.status,
        asked.elapsed().as_millis()
    );
    reply.expect_error(503, "cluster_change_failed");
    // Writes resume within a bounded time (openraft#2088: a failed transfer blocks writes
    // until the next election).
    let resumed = Instant::now();
    loop {
        let live = (0..3).filter(|i| *i != dead);
        if live.into_iter().any(|i| {
            cluster
                .client(i)
                .insert("notes", &json!({}))
                .is_ok_and(|r| r.status == 201)
        }) {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "writes blocked after a failed transfer\n{}",
            cluster.all_stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "writes resumed {} ms after the failed transfer",
        resumed.elapsed().as_millis()
    );
}

#[test]
fn cluster_status_prints_every_member() {
    let cluster = started(ClusterProcesses::start(3, ClusterOptions::default()).unwrap());
    let leader = cluster.wait_leader(ELECTION).unwrap();
    let output = Command::new(cstore_binary().unwrap())
        .args(["cluster", "status", "--server", &cluster.members[0].url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(
        rows.iter().filter(|r| r.contains(" leader ")).count(),
        1,
        "{text}"
    );
    assert!(rows[leader].contains(" leader "), "{text}");
    // Transfer by the command line, and an unknown member.
    let target = (leader + 1) % 3 + 1;
    let output = Command::new(cstore_binary().unwrap())
        .args([
            "cluster",
            "transfer",
            "--to",
            &target.to_string(),
            "--server",
            &cluster.members[0].url(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(cluster.wait_leader(ELECTION), Some(target - 1));
    let output = Command::new(cstore_binary().unwrap())
        .args([
            "cluster",
            "transfer",
            "--to",
            "9",
            "--server",
            &cluster.members[0].url(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown_member"));
}

#[test]
fn ttl_expires_on_every_member_without_writes() {
    let cluster = started(ClusterProcesses::start(3, ClusterOptions::default()).unwrap());
    let leader = cluster.wait_leader(ELECTION).unwrap();
    cluster
        .client(leader)
        .txn(vec![
            json!({"op": "create_collection", "collection": "sessions", "ttl_ms": 300}),
            json!({"op": "insert", "collection": "sessions", "doc": {"_id": "s1"}}),
        ])
        .unwrap()
        .expect_status(200);
    // No more writes: the leader's tick carries the clock past the deadline.
    let started_at = Instant::now();
    loop {
        let gone = (0..3).all(|i| {
            cluster
                .client(i)
                .get("/v1/c/sessions/s1")
                .is_ok_and(|r| r.status == 404)
        });
        if gone {
            break;
        }
        assert!(
            started_at.elapsed() < Duration::from_secs(5),
            "the document did not expire everywhere\n{}",
            cluster.all_stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = cluster.status(leader).unwrap()["last_lsn"]
        .as_u64()
        .unwrap();
    cluster
        .wait_converged(last, Duration::from_secs(10))
        .expect("the same state everywhere");
}
