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
