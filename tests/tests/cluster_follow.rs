//! A native read replica that follows a cluster, not a host: `cstore serve --follow
//! ws://a/v1/replicate,ws://b/v1/replicate,ws://c/v1/replicate`. It rides over leader kills
//! (moving to a live member each time, resuming from its own LSN: no snapshot install, no
//! document missing or doubled), forwards writes to whichever member it follows, and never
//! follows a member of another cluster.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cstore_tests::cluster::{ClusterOptions, ClusterProcesses};
use cstore_tests::{Client, ServerOptions, ServerProcess};

const ELECTION: Duration = Duration::from_secs(15);
/// Leader kills in a row (CSTORE_FOLLOW_KILLS overrides).
const KILLS_DEFAULT: usize = 10;

fn follow_list(cluster: &ClusterProcesses) -> String {
    cluster
        .members
        .iter()
        .map(ServerProcess::replicate_url)
        .collect::<Vec<_>>()
        .join(",")
}

fn replica_of(cluster: &ClusterProcesses) -> ServerProcess {
    ServerProcess::start(ServerOptions {
        follow: Some(follow_list(cluster)),
        ..ServerOptions::default()
    })
    .expect("the read replica starts")
}

/// Ids of every document of `collection` on `client`'s node.
fn ids(client: &Client, collection: &str) -> Vec<String> {
    client
        .all_docs(collection)
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `client`'s node has applied `lsn`; panics with its status otherwise.
#[track_caller]
fn wait_applied(client: &Client, lsn: u64, what: &str) -> Value {
    client.wait_applied(lsn, Duration::from_secs(30), what)
}

#[test]
fn a_read_replica_rides_over_leader_kills() {
    let kills = std::env::var("CSTORE_FOLLOW_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KILLS_DEFAULT);
    let mut cluster = ClusterProcesses::start(3, ClusterOptions::default()).expect("members start");
    cluster.wait_leader(ELECTION).expect("a leader");
    let replica = replica_of(&cluster);

    // Writers insert unique ids through the live members with retries, all through the kills;
    // a write counts once acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let bases: Vec<String> = cluster.members.iter().map(ServerProcess::url).collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let stop = Arc::clone(&stop);
            let bases = bases.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("w{w}-{n:05}");
                    let doc = json!({"_id": id, "w": w});
                    // Exactly-once by origin: a retry of an unknown outcome never doubles it.
                    let body = json!({"ops": [{"op": "insert", "collection": "notes", "doc": doc}],
                                      "origin": {"client": format!("writer{w}"), "seq": n + 1}});
                    let mut attempt = 0;
                    loop {
                        let client = Client::with_timeout_ms(&bases[(n + attempt) % 3], 3_000);
                        if let Ok(reply) = client.post("/v1/txn", &body)
                            && reply.status == 200
                        {
                            acked.push(id.clone());
                            break;
                        }
                        attempt += 1;
                        if stop.load(Ordering::Relaxed) && attempt > 50 {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                acked
            })
        })
        .collect();

    let started = Instant::now();
    for round in 0..kills {
        std::thread::sleep(Duration::from_millis(300));
        let leader = cluster
            .wait_leader(ELECTION)
            .unwrap_or_else(|| panic!("round {round}: no leader\n{}", cluster.all_stderr()));
        cluster.members[leader].kill9().unwrap();
        let next = cluster
            .wait_leader(ELECTION)
            .unwrap_or_else(|| panic!("round {round}: no new leader\n{}", cluster.all_stderr()));
        assert_ne!(next, leader);
        cluster.members[leader].restart().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    println!(
        "{kills} leader kills in {:.1} s; {} writes acknowledged",
        started.elapsed().as_secs_f64(),
        acked.len()
    );
    assert!(acked.len() > kills * 5, "writes went on: {}", acked.len());

    let leader = cluster.wait_leader(ELECTION).unwrap();
    let (lsn, _) = cluster
        .wait_converged(cluster.client(leader).last_lsn(), Duration::from_secs(30))
        .unwrap_or_else(|| panic!("members converge\n{}", cluster.all_stderr()));
    let status = wait_applied(&replica.client(), lsn, "the read replica");

    // Every acknowledged write is on the replica exactly once, and nothing else is.
    let on_leader = ids(&cluster.client(leader), "notes");
    let on_replica = ids(&replica.client(), "notes");
    assert_eq!(
        on_replica, on_leader,
        "the replica holds the cluster's documents"
    );
    let unique: BTreeSet<&String> = on_replica.iter().collect();
    assert_eq!(unique.len(), on_replica.len(), "no document twice");
    for id in &acked {
        assert!(unique.contains(id), "acknowledged write {id} is missing");
    }
    // Same chain: the replica's last applied entry is the cluster's.
    assert_eq!(
        replica.client().status()["applied_lsn"],
        cluster.status(leader).unwrap()["applied_lsn"]
    );
    let follower = &status["follower"];
    assert_eq!(
        follower["snapshot_installs"], 0,
        "never re-bootstrapped: {status}"
    );
    assert!(
        follower["member_switches"].as_u64().unwrap() >= 1,
        "it moved between members: {status}"
    );
    println!(
        "replica: {} reconnects, {} member switches, {} snapshot installs",
        follower["reconnects"], follower["member_switches"], follower["snapshot_installs"]
    );

    // A write sent to the replica is forwarded to the cluster.
    replica
        .client()
        .insert("notes", &json!({"_id": "via-replica"}))
        .unwrap()
        .expect_status(201);
}

#[test]
fn a_read_replica_never_follows_another_cluster() {
    let first = ClusterProcesses::start(3, ClusterOptions::default()).expect("cluster 1");
    let leader = first.wait_leader(ELECTION).expect("a leader");
    first
        .client(leader)
        .insert("notes", &json!({"_id": "one"}))
        .unwrap()
        .expect_status(201);
    let second = ClusterProcesses::start(3, ClusterOptions::default()).expect("cluster 2");
    second.wait_leader(ELECTION).expect("a leader");

    // It followed the first cluster (and remembered it); then only the second one is given.
    let mut replica = replica_of(&first);
    let lsn = first.client(leader).last_lsn();
    wait_applied(&replica.client(), lsn, "the replica");
    replica.terminate(5_000).unwrap();
    replica.options_mut().follow = Some(follow_list(&second));
    replica.restart().unwrap();
    let started = Instant::now();
    let status = loop {
        let status = replica.client().status();
        if status["follower"]["last_error"]["code"] == "wrong_cluster" {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no wrong_cluster: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["applied_lsn"].as_u64().unwrap(), lsn, "{status}");
    assert_eq!(ids(&replica.client(), "notes"), vec!["one".to_string()]);

    // Bad lists are refused at start with a clear message.
    for (list, says) in [
        (",".to_string(), "no URL given"),
        (
            format!(
                "{},{}",
                first.members[0].replicate_url(),
                first.members[0].replicate_url()
            ),
            "given twice",
        ),
        ("http://127.0.0.1:1/v1/replicate".to_string(), "ws://"),
    ] {
        let refused = ServerProcess::start(ServerOptions {
            follow: Some(list.clone()),
            ready_timeout_ms: 3_000,
            ..ServerOptions::default()
        });
        let error = refused.expect_err("a bad --follow list is refused");
        assert!(error.to_string().contains(says), "{list}: {error}");
    }
}
