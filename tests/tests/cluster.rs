//! Cluster mode with real processes: three `cstore serve` members elect a leader, replicate,
//! forward writes, fail over after `kill -9`, hand leadership over by request, change
//! membership, and refuse bad requests with stable codes.

use std::time::{Duration, Instant};

use cstore_tests::cluster::{ClusterOptions, ClusterProcesses, member_options};
use cstore_tests::server::{ServerProcess, StartOutcome, free_port};
use serde_json::json;

const ELECTION: Duration = Duration::from_secs(15);

fn start(n: usize) -> ClusterProcesses {
    let cluster = ClusterProcesses::start(n, ClusterOptions::default()).expect("members start");
    cluster
        .wait_leader(ELECTION)
        .unwrap_or_else(|| panic!("no leader elected\n{}", cluster.all_stderr()));
    cluster
}

#[test]
fn members_elect_replicate_forward_and_fail_over() {
    let mut cluster = start(3);
    let leader = cluster.wait_leader(ELECTION).unwrap();
    let status = cluster.status(leader).unwrap();
    assert_eq!(status["role"], "leader");
    assert!(status["term"].as_u64().unwrap() >= 1);
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    let term_before = status["term"].as_u64().unwrap();

    // A write to any member reaches the leader; each answers with the LSN.
    let mut lsns = Vec::new();
    for i in 0..3 {
        let reply = cluster
            .client(i)
            .insert("notes", &json!({"_id": format!("n{i}"), "from": i}))
            .unwrap();
        lsns.push(reply.expect_status(201)["lsn"].as_u64().unwrap());
    }
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "{lsns:?}");
    // A refused write changes nothing, wherever it is sent: it is checked before it is
    // proposed, so it takes no log entry either.
    let follower = (leader + 1) % 3;
    let last_before = cluster.status(leader).unwrap()["last_lsn"].clone();
    cluster
        .client(follower)
        .insert("notes", &json!({"_id": "n0"}))
        .unwrap()
        .expect_error(409, "already_exists");
    assert_eq!(cluster.status(leader).unwrap()["last_lsn"], last_before);
    // ?redirect=1 answers 307 with the leader's URL instead of forwarding.
    let no_follow = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = no_follow
        .post(format!(
            "{}/v1/c/notes?redirect=1",
            cluster.members[follower].url()
        ))
        .header("content-type", "application/json")
        .body("{\"_id\":\"r\"}")
        .send()
        .unwrap();
    assert_eq!(redirect.status(), 307);
    assert_eq!(
        redirect.headers()["location"].to_str().unwrap(),
        format!("{}/v1/c/notes?redirect=1", cluster.members[leader].url())
    );
    // A batch of independent writes through a follower: forwarded, each committed on its
    // own, in order; the refused one takes no entry.
    let batch = json!({"txns": [
        {"ops": [{"op": "insert", "collection": "notes", "doc": {"_id": "b1"}}],
         "origin": {"client": "batcher", "seq": 1}},
        {"ops": [{"op": "insert", "collection": "notes", "doc": {"_id": "n0"}}],
         "origin": {"client": "batcher", "seq": 2}},
        {"ops": [{"op": "insert", "collection": "notes", "doc": {"_id": "b3"}}],
         "origin": {"client": "batcher", "seq": 3}},
    ]});
    let answer = cluster
        .client(follower)
        .post("/v1/txns", &batch)
        .unwrap()
        .expect_status(200);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[1]["error"]["code"], "already_exists", "{answer}");
    let (b1, b3) = (
        results[0]["lsn"].as_u64().unwrap(),
        results[2]["lsn"].as_u64().unwrap(),
    );
    assert!(b1 > *lsns.last().unwrap() && b3 == b1 + 1, "{answer}");
    lsns.push(b3);
    // The read index, asked of a follower, covers every acknowledged write.
    let index = cluster
        .client(follower)
        .get("/v1/read-index")
        .unwrap()
        .expect_status(200);
    assert!(index["lsn"].as_u64().unwrap() >= b3, "{index}");
    // Every member applies the same entries, with the same hash chain.
    let (lsn, _) = cluster
        .wait_converged(*lsns.last().unwrap(), Duration::from_secs(10))
        .expect("members converge");
    for i in 0..3 {
        let doc = cluster
            .client(i)
            .get("/v1/c/notes/n2")
            .unwrap()
            .expect_status(200);
        assert_eq!(doc["from"], 2);
    }

    // kill -9 the leader: a new one is elected and writes go on through any live member.
    let killed_at = Instant::now();
    cluster.members[leader].kill9().unwrap();
    let survivor = (leader + 1) % 3;
    let mut accepted = None;
    while killed_at.elapsed() < Duration::from_secs(20) {
        if let Ok(reply) = cluster
            .client(survivor)
            .insert("notes", &json!({"_id": "after"}))
            && reply.status == 201
        {
            accepted = Some(killed_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = accepted
        .unwrap_or_else(|| panic!("no write accepted after the kill\n{}", cluster.all_stderr()));
    println!(
        "first write accepted {} ms after kill -9 of the leader",
        took.as_millis()
    );
    let new_leader = cluster.wait_leader(ELECTION).expect("a new leader");
    assert_ne!(new_leader, leader);
    let status = cluster.status(new_leader).unwrap();
    assert!(
        status["term"].as_u64().unwrap() > term_before,
        "terms fence the old leader"
    );

    // The killed member comes back as a follower and catches up on the same chain.
    cluster.members[leader].restart().unwrap();
    let (lsn_after, _) = cluster
        .wait_converged(lsn + 2, Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!(
                "the restarted member does not catch up\n{}",
                cluster.all_stderr()
            )
        });
    assert!(lsn_after > lsn);
    let back = cluster.status(leader).unwrap();
    assert_eq!(back["role"], "follower");
    let doc = cluster
        .client(leader)
        .get("/v1/c/notes/after")
        .unwrap()
        .expect_status(200);
    assert_eq!(doc["_id"], "after");
    // It rejoined the same cluster (its identity is the hash of the first entry).
    assert_eq!(
        cluster.status(leader).unwrap()["cluster_id"],
        cluster.status(new_leader).unwrap()["cluster_id"]
    );
}

#[test]
fn leadership_moves_by_request_and_membership_changes() {
    let mut cluster = start(3);
    let leader = cluster.wait_leader(ELECTION).unwrap();
    let target = (leader + 1) % 3;
    let target_id = target as u64 + 1;

    // Promotion by hand, asked of any member.
    let reply = cluster
        .client((leader + 2) % 3)
        .post("/v1/cluster/transfer", &json!({"to": target_id}))
        .unwrap();
    assert_eq!(reply.expect_status(200)["leader_id"], target_id);
    assert_eq!(cluster.wait_leader(ELECTION), Some(target));
    cluster
        .client(leader)
        .insert("notes", &json!({"_id": "after-transfer"}))
        .unwrap()
        .expect_status(201);

    // Bad requests: a clear code each, nothing changes.
    let any = cluster.client(0);
    any.post("/v1/cluster/transfer", &json!({"to": 99}))
        .unwrap()
        .expect_error(404, "unknown_member");
    any.post("/v1/cluster/remove", &json!({"id": 99}))
        .unwrap()
        .expect_error(404, "unknown_member");
    any.post(
        "/v1/cluster/add",
        &json!({"id": 2, "url": "http://127.0.0.1:1"}),
    )
    .unwrap()
    .expect_error(409, "duplicate_member");
    any.post("/v1/cluster/add", &json!({"id": 7, "url": "ftp://nowhere"}))
        .unwrap()
        .expect_error(400, "invalid_url");
    any.post("/v1/cluster/transfer", &json!({"to": "two"}))
        .unwrap()
        .expect_error(400, "invalid_json");

    // A fourth member joins: started with the list plus itself, it waits to be added.
    let addr = free_port().unwrap();
    let list = format!("{},4=http://{addr}", cluster.list);
    let fourth = ServerProcess::start(member_options(4, addr, &list, cluster.options()))
        .expect("the fourth member starts");
    let reply = cluster
        .client(0)
        .post(
            "/v1/cluster/add",
            &json!({"id": 4, "url": format!("http://{addr}")}),
        )
        .unwrap();
    reply.expect_status(200);
    cluster.members.push(fourth);
    let status = cluster.status(target).unwrap();
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 4);
    assert!(members.iter().all(|m| m["kind"] == "voter"), "{members:?}");
    cluster
        .wait_converged(0, Duration::from_secs(20))
        .expect("the new member catches up");
    let doc = cluster.client(3).get("/v1/c/notes/after-transfer").unwrap();
    doc.expect_status(200);

    // And leaves again.
    cluster
        .client(0)
        .post("/v1/cluster/remove", &json!({"id": 4}))
        .unwrap()
        .expect_status(200);
    let status = cluster.status(target).unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_cluster_configurations_are_refused() {
    let addr = free_port().unwrap();
    let list = format!("1=http://{addr}");
    // --node-id not in the list.
    let mut options = member_options(5, addr, &list, &ClusterOptions::default());
    options.ready_timeout_ms = 5_000;
    match ServerProcess::start(options) {
        Err(e) => assert!(e.to_string().contains("not in --cluster"), "{e}"),
        Ok(_) => panic!("a member outside its own list started"),
    }
    // A list with a duplicate id, and a heartbeat as long as the election timeout.
    for extra in [
        vec![
            "--cluster".to_string(),
            format!("1=http://{addr},1=http://127.0.0.1:9"),
        ],
        vec![
            "--cluster".to_string(),
            list.clone(),
            "--heartbeat-ms".to_string(),
            "400".to_string(),
        ],
    ] {
        let mut options = cstore_tests::ServerOptions {
            addr: Some(addr),
            ..Default::default()
        };
        options.extra_args = vec!["--node-id".to_string(), "1".to_string()];
        options.extra_args.extend(extra);
        assert!(ServerProcess::start(options).is_err());
    }

    // A data dir of member 1 refuses to start as member 2.
    let single = member_options(1, addr, &list, &ClusterOptions::default());
    let mut member = ServerProcess::start(single).expect("a one-member cluster starts");
    member.terminate(10_000).unwrap();
    member.options_mut().extra_args = vec![
        "--node-id".into(),
        "2".into(),
        "--cluster".into(),
        format!("2=http://{addr}"),
    ];
    match member.start_again() {
        Ok(StartOutcome::Exited { stderr, .. }) => {
            assert!(stderr.contains("belongs to cluster member 1"), "{stderr}")
        }
        other => panic!("started as another member: {other:?}"),
    }

    // A single-node data dir with entries refuses to become a cluster member.
    let mut single = ServerProcess::start(Default::default()).expect("a single node starts");
    single
        .client()
        .insert("notes", &json!({"_id": "a"}))
        .unwrap()
        .expect_status(201);
    single.terminate(10_000).unwrap();
    let own = single.addr();
    single.options_mut().extra_args = vec![
        "--node-id".into(),
        "1".into(),
        "--cluster".into(),
        format!("1=http://{own}"),
    ];
    match single.start_again() {
        Ok(StartOutcome::Exited { stderr, .. }) => {
            assert!(stderr.contains("single-node log"), "{stderr}")
        }
        other => panic!("a single-node log joined a cluster: {other:?}"),
    }
}

#[test]
fn compaction_snapshots_and_a_member_that_joins_behind_them() {
    let options = ClusterOptions {
        extra_args: vec!["--checkpoint-every".into(), "40".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = ClusterProcesses::start(3, options).expect("members start");
    let leader = cluster.wait_leader(ELECTION).expect("a leader");
    for n in 0..300 {
        cluster
            .client(n % 3)
            .insert("notes", &json!({"_id": format!("n{n:03}"), "n": n}))
            .unwrap()
            .expect_status(201);
    }
    let last = cluster.status(leader).unwrap()["last_lsn"]
        .as_u64()
        .unwrap();
    let (_, hash) = cluster
        .wait_converged(last, Duration::from_secs(20))
        .expect("members converge");

    // A member killed after compaction recovers from its snapshot and the log after it.
    let follower = (leader + 1) % 3;
    cluster.members[follower].kill9().unwrap();
    cluster.members[follower].restart().unwrap();
    cluster
        .wait_converged(last, Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!(
                "the restarted member does not recover\n{}",
                cluster.all_stderr()
            )
        });

    // A new member joins behind the leader's compaction point: it installs a snapshot.
    let addr = free_port().unwrap();
    let list = format!("{},4=http://{addr}", cluster.list);
    let fourth = ServerProcess::start(member_options(4, addr, &list, cluster.options()))
        .expect("the fourth member starts");
    cluster.members.push(fourth);
    cluster
        .client(leader)
        .post(
            "/v1/cluster/add",
            &json!({"id": 4, "url": format!("http://{addr}")}),
        )
        .unwrap()
        .expect_status(200);
    let last = cluster.status(leader).unwrap()["last_lsn"]
        .as_u64()
        .unwrap();
    let (_, hash_after) = cluster
        .wait_converged(last, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the new member does not catch up\n{}", cluster.all_stderr()));
    assert_ne!(
        hash, hash_after,
        "the membership change is an entry of its own"
    );
    let docs = cluster.client(3).all_docs("notes");
    assert_eq!(docs.len(), 300);
    let metrics = cluster.client(3).get("/metrics").unwrap().text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cstore_cluster_snapshot_installs_total") && !l.ends_with(" 0")),
        "the new member caught up without a snapshot:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("cluster"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // It came by the chunked transfer.
    assert!(
        metrics.lines().any(
            |l| l.starts_with("cstore_cluster_snapshot_received_bytes_total") && !l.ends_with(" 0")
        ),
        "no snapshot bytes arrived in chunks"
    );
    // The new member's copy continues the same chain as everyone's.
    cluster
        .client(3)
        .insert("notes", &json!({"_id": "from-the-new-member"}))
        .unwrap()
        .expect_status(201);
}

#[test]
fn a_member_restarted_alone_serves_every_write_it_knew_committed() {
    // Compaction every 50 entries: the restart starts from a snapshot and re-applies the log
    // after it up to the committed index the member saved.
    let options = ClusterOptions {
        extra_args: vec!["--checkpoint-every".into(), "50".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = ClusterProcesses::start(3, options).expect("members start");
    let leader = cluster.wait_leader(ELECTION).expect("a leader");
    let ids: Vec<String> = (0..130).map(|n| format!("c{n:03}")).collect();
    for (n, id) in ids.iter().enumerate() {
        cluster
            .client(n % 3)
            .insert("notes", &json!({"_id": id, "n": n}))
            .unwrap()
            .expect_status(201);
    }
    let last = cluster.status(leader).unwrap()["last_lsn"]
        .as_u64()
        .unwrap();
    let (lsn, hash) = cluster
        .wait_converged(last, Duration::from_secs(20))
        .expect("members converge");
    // The commit saver saves within 20 ms of a commit; give it ample time, then crash every
    // member at once.
    std::thread::sleep(Duration::from_millis(500));
    for member in &mut cluster.members {
        member.kill9().unwrap();
    }
    // A follower comes back alone: no leader can tell it the commit index.
    let follower = (leader + 1) % 3;
    let started = Instant::now();
    cluster.members[follower].restart().unwrap();
    let status = cluster.status(follower).expect("the member answers");
    assert_ne!(status["role"], "leader", "{status}");
    assert_eq!(
        (
            status["applied_lsn"].as_u64(),
            status["applied_hash"].as_str()
        ),
        (Some(lsn), Some(hash.as_str())),
        "the member restarted alone does not serve what it applied before (started in {:?})\n{}",
        started.elapsed(),
        cluster.all_stderr()
    );
    let docs = cluster.client(follower).get_docs("notes", &ids);
    assert_eq!(docs.len(), ids.len(), "documents missing after the restart");
    assert!(
        cluster.members[follower]
            .all_stderr()
            .contains("re-applying the log up to the saved committed index"),
        "the restart did not re-apply from the log:\n{}",
        cluster.all_stderr()
    );
}
