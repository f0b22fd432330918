//! Partitions, with real processes behind TCP proxies: a leader cut off from its majority steps
//! down and refuses writes while the majority elects another; a member cut off (both ways, or
//! only from the leader's messages) does not disturb a healthy cluster when it returns (pre-vote);
//! after every heal the members converge on one hash chain, and a deposed leader's uncommitted
//! tail is gone.

use std::time::{Duration, Instant};

use cstore_tests::cluster::{ClusterOptions, ClusterProcesses};
use serde_json::json;

const ELECTION: Duration = Duration::from_secs(15);

fn start() -> ClusterProcesses {
    let cluster =
        ClusterProcesses::start_with_proxies(3, ClusterOptions::default()).expect("members start");
    cluster
        .wait_leader(ELECTION)
        .unwrap_or_else(|| panic!("no leader\n{}", cluster.all_stderr()));
    cluster
}

fn term(cluster: &ClusterProcesses, i: usize) -> u64 {
    cluster.status(i).unwrap()["term"].as_u64().unwrap()
}

#[test]
fn an_isolated_leader_steps_down_and_its_uncommitted_tail_is_dropped() {
    let cluster = start();
    let old = cluster.wait_leader(ELECTION).unwrap();
    cluster
        .client(old)
        .insert("notes", &json!({"_id": "before"}))
        .unwrap()
        .expect_status(201);
    let old_term = term(&cluster, old);

    let cut_at = Instant::now();
    cluster.links().isolate(old as u64 + 1, 3);
    // A write sent to the old leader right away enters its log but can never commit.
    let doomed = {
        let client = cluster.client(old);
        std::thread::spawn(move || client.insert("notes", &json!({"_id": "doomed"})))
    };
    // It steps down (CheckQuorum: no majority heard within its lease).
    let stepped_down = loop {
        let status = cluster.status(old).unwrap();
        if status["role"] != "leader" {
            break cut_at.elapsed();
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(5),
            "the isolated leader kept leading\n{}",
            cluster.all_stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    println!(
        "isolated leader stepped down after {} ms",
        stepped_down.as_millis()
    );
    assert!(
        stepped_down < Duration::from_millis(1_500),
        "{stepped_down:?}"
    );
    let doomed = doomed.join().unwrap().expect("the old leader answers");
    assert!(
        doomed.status == 503 || doomed.status == 504,
        "an uncommitted write must not succeed: {} {}",
        doomed.status,
        doomed.text()
    );
    // It refuses writes with `not_leader` while it is cut off.
    let refused = cluster
        .client(old)
        .insert("notes", &json!({"_id": "refused"}))
        .unwrap();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code().as_deref(), Some("not_leader"));

    // The majority elects a new leader in a higher term and takes writes.
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new = loop {
        if let Some(i) = others
            .iter()
            .copied()
            .find(|i| cluster.status(*i).is_some_and(|s| s["role"] == "leader"))
        {
            break i;
        }
        assert!(
            cut_at.elapsed() < ELECTION,
            "the majority elected no leader"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(term(&cluster, new) > old_term);
    cluster
        .client(new)
        .insert("notes", &json!({"_id": "majority"}))
        .unwrap()
        .expect_status(201);

    // Healed: one chain; the doomed entry is gone from the old leader's log.
    cluster.links().heal();
    let last = cluster.status(new).unwrap()["last_lsn"].as_u64().unwrap();
    cluster
        .wait_converged(last, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no convergence after heal\n{}", cluster.all_stderr()));
    for i in 0..3 {
        let client = cluster.client(i);
        client
            .get("/v1/c/notes/majority")
            .unwrap()
            .expect_status(200);
        client.get("/v1/c/notes/before").unwrap().expect_status(200);
        client
            .get("/v1/c/notes/doomed")
            .unwrap()
            .expect_error(404, "not_found");
    }
    assert_eq!(cluster.status(old).unwrap()["role"], "follower");
}

#[test]
fn a_returning_member_does_not_disturb_the_leader() {
    let cluster = start();
    let leader = cluster.wait_leader(ELECTION).unwrap();
    let follower = (leader + 1) % 3;
    let term_before = term(&cluster, leader);

    // Cut off both ways for several election timeouts, while writes go on.
    cluster.links().isolate(follower as u64 + 1, 3);
    write_heal_and_catch_up(&cluster, leader, "w");
    // Pre-vote: its failed campaigns raised no term, so the leader kept its office.
    assert_eq!(cluster.wait_leader(ELECTION), Some(leader));
    assert_eq!(term(&cluster, leader), term_before);

    // One way only: the leader's messages to it are lost, its own get through.
    cluster.links().cut(leader as u64 + 1, follower as u64 + 1);
    write_heal_and_catch_up(&cluster, leader, "o");
    assert_eq!(cluster.wait_leader(ELECTION), Some(leader));
    assert_eq!(term(&cluster, leader), term_before);
}

/// Writes for about a second through `leader` (several election timeouts), heals every link
/// and waits until every member holds what the leader holds.
fn write_heal_and_catch_up(cluster: &ClusterProcesses, leader: usize, prefix: &str) {
    for n in 0..20 {
        cluster
            .client(leader)
            .insert("notes", &json!({"_id": format!("{prefix}{n}")}))
            .unwrap()
            .expect_status(201);
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.links().heal();
    let last = cluster.status(leader).unwrap()["last_lsn"]
        .as_u64()
        .unwrap();
    cluster
        .wait_converged(last, Duration::from_secs(20))
        .expect("it catches up");
}

/// A counter of `/metrics` (0 when absent).
fn counter(cluster: &ClusterProcesses, i: usize, name: &str) -> f64 {
    let text = cluster.client(i).get("/metrics").unwrap().text();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_snapshot_transfer_cut_part_way_resumes_and_bad_chunks_are_refused() {
    const CHECKPOINT_EVERY: u64 = 40;
    // Long timeouts: 13 MB of writes on two shared cores must not move the leadership.
    let options = ClusterOptions {
        extra_args: vec!["--checkpoint-every".into(), CHECKPOINT_EVERY.to_string()],
        election_timeout_ms: Some(1_000),
        heartbeat_ms: Some(100),
        ..ClusterOptions::default()
    };
    let cluster = ClusterProcesses::start_with_proxies(3, options).expect("members start");
    let leader = cluster.wait_leader(ELECTION).expect("a leader");
    let behind = (leader + 1) % 3;
    let behind_id = behind as u64 + 1;

    // The member falls behind the leader's compaction by some 13 MB of documents: it can only
    // catch up by a snapshot of several 4 MiB chunks.
    cluster.links().isolate(behind_id, 3);
    let payload = "x".repeat(64 * 1024);
    let docs = 200;
    for n in 0..docs {
        // Idempotent, retried on whoever leads: an election under load only delays it.
        let started = Instant::now();
        loop {
            let at = cluster.wait_leader(ELECTION).expect("a leader");
            let reply = cluster.client(at).put(
                &format!("/v1/c/blobs/b{n:03}"),
                &json!({"payload": payload}),
            );
            if reply.is_ok_and(|r| r.is_success()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "write b{n:03} never took"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let leader = cluster.wait_leader(ELECTION).expect("a leader");
    let leader_id = leader as u64 + 1;
    let docs_bytes = (docs * payload.len()) as f64;
    let last = cluster.status(leader).unwrap()["last_lsn"]
        .as_u64()
        .unwrap();

    // The leader's last snapshot is built (a newer snapshot is a new transfer, rightly started
    // from its first byte): it is within `--checkpoint-every` of the last entry, so no other is
    // due, and its LSN stays put for a second. (Stability alone is not enough: on loaded cores
    // the build of the last one can take longer than a second after the one before it.)
    let mut snapshot_lsn = (0.0, Instant::now());
    let settle = Instant::now();
    while snapshot_lsn.0 + CHECKPOINT_EVERY as f64 <= last as f64
        || snapshot_lsn.1.elapsed() < Duration::from_secs(1)
    {
        let now = counter(&cluster, leader, "cstore_cluster_snapshot_lsn");
        if now != snapshot_lsn.0 {
            snapshot_lsn = (now, Instant::now());
        }
        assert!(
            settle.elapsed() < Duration::from_secs(60),
            "no snapshot settles within {CHECKPOINT_EVERY} entries of {last}: at {}",
            snapshot_lsn.0
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The transfer is cut once 6 MiB went from the leader to the member: inside its second
    // chunk.
    cluster
        .links()
        .cut_after_bytes(leader_id, behind_id, 6 << 20);
    cluster.links().heal();
    let started = Instant::now();
    while !cluster.links().is_cut(leader_id, behind_id) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the snapshot transfer never got 6 MiB far\n{}",
            cluster.all_stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let received_at_cut = counter(
        &cluster,
        behind,
        "cstore_cluster_snapshot_received_bytes_total",
    );
    assert!(
        received_at_cut >= f64::from(4 << 20) && received_at_cut < docs_bytes,
        "the cut did not fall inside the transfer: {received_at_cut} bytes received"
    );
    assert_eq!(
        counter(&cluster, behind, "cstore_cluster_snapshot_installs_total"),
        0.0
    );
    std::thread::sleep(Duration::from_millis(500));
    cluster.links().heal();
    cluster
        .wait_converged(last, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the member does not catch up\n{}", cluster.all_stderr()));
    assert_eq!(cluster.client(behind).all_docs("blobs").len(), docs);
    // It resumed: the member answered an offer with the bytes it held, and took in all about
    // one snapshot's bytes, not the first chunks twice.
    let resumed = counter(&cluster, behind, "cstore_cluster_snapshot_resumed_total");
    let received = counter(
        &cluster,
        behind,
        "cstore_cluster_snapshot_received_bytes_total",
    );
    println!(
        "cut after {received_at_cut} bytes; resumed {resumed} time(s); {received} bytes received \
         for {docs_bytes} bytes of documents"
    );
    for line in cluster.members[behind].all_stderr().lines() {
        if line.contains("snapshot") {
            println!("member {behind_id}: {line}");
        }
    }
    assert!(
        resumed >= 1.0,
        "the transfer started over\n{}",
        cluster.members[behind].all_stderr()
    );
    assert!(
        received < docs_bytes + f64::from(2 << 20),
        "{received} bytes received for a snapshot of about {docs_bytes}: it started over"
    );
    assert!(counter(&cluster, behind, "cstore_cluster_snapshot_installs_total") >= 1.0);

    // Bad chunks sent straight to a member are refused with their codes.
    use cstore_server::cluster::snapshot_transfer::{SnapshotChunk, SnapshotOffer, sha256};
    let snapshot = vec![5u8; 1000];
    let id = sha256(&snapshot);
    let post = |route: &str, body: Vec<u8>| {
        cluster.client(behind).send(
            reqwest::Method::POST,
            &format!("/v1/raft/snapshot/{route}"),
            Some(("application/x-postcard", body)),
            &[],
        )
    };
    let offer = SnapshotOffer {
        id,
        total_bytes: 1000,
    };
    let offered = post("offer", postcard::to_allocvec(&offer).unwrap()).unwrap();
    assert_eq!(offered.status, 200, "{}", offered.text());
    let mut chunk = SnapshotChunk {
        id,
        total_bytes: 1000,
        offset: 0,
        chunk_sha256: sha256(&snapshot[..500]),
        data: snapshot[..500].to_vec(),
    };
    chunk.data[3] ^= 1;
    post("chunk", postcard::to_allocvec(&chunk).unwrap())
        .unwrap()
        .expect_error(400, "snapshot_chunk_corrupt");
    chunk.data[3] ^= 1;
    chunk.offset = 500;
    chunk.chunk_sha256 = sha256(&snapshot[500..]);
    chunk.data = snapshot[500..].to_vec();
    post("chunk", postcard::to_allocvec(&chunk).unwrap())
        .unwrap()
        .expect_error(409, "snapshot_offset_mismatch");
    chunk.id = sha256(b"another snapshot");
    chunk.offset = 0;
    post("chunk", postcard::to_allocvec(&chunk).unwrap())
        .unwrap()
        .expect_error(409, "snapshot_id_mismatch");
    post("chunk", b"not postcard".to_vec())
        .unwrap()
        .expect_error(400, "invalid_json");
}
