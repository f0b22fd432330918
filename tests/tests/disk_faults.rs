//! Disk faults against a real server: no write is acknowledged that is not durable, the client
//! gets a stable code (507 `disk_full`, 503 `storage_failed`), reads keep working, and a
//! restart (or, for a full disk, freed space) brings writes back with nothing acknowledged lost.
//!
//! Faults come from the server's fault seam (`CSTORE_FAULT`, honoured by debug builds, which
//! these tests run) and, for a full disk, from a real size-limited tmpfs mounted over the data
//! directory; that test skips, printing why, where it cannot mount one (not root, no
//! permission).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cstore_tests::cluster::{ClusterOptions, ClusterProcesses};
use cstore_tests::{Client, Reply, ServerOptions, ServerProcess};
use serde_json::{Value, json};

fn faulty_server(plan: &str, extra_args: &[&str]) -> ServerProcess {
    ServerProcess::start(ServerOptions {
        env: vec![("CSTORE_FAULT".into(), plan.into())],
        extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        ..ServerOptions::default()
    })
    .expect("server starts")
}

fn insert(client: &Client, id: &str) -> Reply {
    client
        .insert("notes", &json!({"_id": id, "text": "x"}))
        .expect("request answered")
}

fn storage_state(client: &Client) -> String {
    client.status()["storage"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn metric_line(client: &Client, needle: &str) -> Option<String> {
    let text = client.get("/metrics").expect("metrics").text();
    text.lines()
        .find(|l| l.starts_with("cstore_storage_errors_total") && l.contains(needle))
        .map(str::to_string)
}

#[test]
fn a_failed_fdatasync_stops_writes_keeps_reads_and_a_restart_recovers() {
    // The first 3 appends sync; the 4th append's fdatasync fails with EIO.
    let mut server = faulty_server("fsync_eio_after:3", &[]);
    let client = server.client();
    for id in ["a", "b", "c"] {
        insert(&client, id).expect_status(201);
    }
    insert(&client, "d").expect_error(503, "storage_failed");
    // Never retried as if it had worked: later writes fail too, whatever the disk does.
    insert(&client, "e").expect_error(503, "storage_failed");
    assert_eq!(storage_state(&client), "failed");
    assert!(
        metric_line(&client, "kind=\"io\"").is_some(),
        "cstore_storage_errors_total{{kind=\"io\"}} is exported"
    );
    // Reads go on, from durable data only.
    client.get("/v1/c/notes/a").unwrap().expect_status(200);
    client
        .get("/v1/c/notes/d")
        .unwrap()
        .expect_error(404, "not_found");
    assert_eq!(client.collection_count("notes"), 3);
    assert!(server.stderr().contains("log append failed"));

    // A restart without the fault recovers exactly what was acknowledged, and writes again.
    server.terminate(10_000).expect("stops");
    server.options_mut().env.clear();
    server.restart().expect("restarts");
    let client = server.client();
    assert_eq!(storage_state(&client), "ok");
    assert_eq!(client.collection_count("notes"), 3);
    insert(&client, "d").expect_status(201);
}

#[test]
fn out_of_space_refuses_writes_with_507_and_they_resume_by_themselves() {
    // Appends 3 and 4 fail with ENOSPC (after writing half their bytes); then space is back.
    // A checkpoint after every 2 entries, whose first snapshot write fails with ENOSPC too.
    let server = faulty_server(
        "write_enospc_after:2x2,snapshot_enospc_after:0x1",
        &["--checkpoint-every", "2"],
    );
    let client = server.client();
    insert(&client, "a").expect_status(201);
    insert(&client, "b").expect_status(201);
    insert(&client, "c").expect_error(507, "disk_full");
    assert_eq!(storage_state(&client), "disk_full");
    insert(&client, "c").expect_error(507, "disk_full");
    client
        .get("/v1/c/notes/c")
        .unwrap()
        .expect_error(404, "not_found");
    client.get("/v1/c/notes/b").unwrap().expect_status(200);
    // Writes resume with the next request, at the LSN after the last durable one.
    let lsn = insert(&client, "c").expect_status(201)["lsn"]
        .as_u64()
        .unwrap();
    assert_eq!(lsn, 3, "the refused writes used no LSN");
    assert_eq!(storage_state(&client), "ok");
    for id in ["d", "e", "f"] {
        insert(&client, id).expect_status(201);
    }
    assert!(metric_line(&client, "kind=\"disk_full\"").is_some());
    assert!(metric_line(&client, "kind=\"checkpoint_disk_full\"").is_some());
    let mut server = server;
    server.terminate(10_000).expect("stops");
    server.restart().expect("restarts");
    let client = server.client();
    assert_eq!(client.collection_count("notes"), 6);
    assert_eq!(client.last_lsn(), 6);
}

/// A tmpfs mounted over a directory for the test, lazily unmounted on drop (the server may
/// still hold files open when a failing test unwinds).
struct SmallTmpfs {
    path: PathBuf,
}

impl SmallTmpfs {
    fn mount_over(path: &Path, size_kib: u64) -> Result<SmallTmpfs, String> {
        if !is_root() {
            return Err("not root, cannot mount a tmpfs".into());
        }
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs refused: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(SmallTmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// True when the effective uid is 0.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn big_txn(prefix: &str, n: usize) -> Vec<Value> {
    let filler = "z".repeat(900);
    (0..n)
        .map(|i| json!({"op": "insert", "collection": "big", "doc": {"_id": format!("{prefix}{i}"), "f": filler}}))
        .collect()
}

#[test]
fn a_real_full_filesystem_answers_507_and_writes_resume_when_space_is_freed() {
    let mut server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    server.terminate(10_000).expect("stops");
    let data = server.data_dir();
    let tmpfs = match SmallTmpfs::mount_over(&data, 768) {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            println!("SKIPPED a_real_full_filesystem_answers_507: {why}");
            return;
        }
    };
    // Space to give back later.
    let ballast = data.join("ballast");
    std::fs::write(&ballast, vec![0u8; 200 << 10]).unwrap();
    server.restart().expect("starts on the tmpfs");
    let client = server.client();

    // ~90 KiB per transaction: the disk fills within a few.
    let mut acked = Vec::new();
    let mut refused = None;
    for round in 0..40 {
        let reply = client.txn(big_txn(&format!("r{round}-"), 100)).unwrap();
        if reply.status == 200 {
            acked.push(round);
        } else {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("a 768 KiB tmpfs fills up");
    refused.expect_error(507, "disk_full");
    assert!(!acked.is_empty());
    assert_eq!(storage_state(&client), "disk_full");
    // Reads work; still full, still refused; small writes may fit, never a false success.
    assert_eq!(client.collection_count("big"), acked.len() as u64 * 100);
    client
        .txn(big_txn("again-", 100))
        .unwrap()
        .expect_error(507, "disk_full");

    std::fs::remove_file(&ballast).unwrap();
    client
        .txn(big_txn("after-", 100))
        .unwrap()
        .expect_status(200);
    assert_eq!(storage_state(&client), "ok");
    let expected = (acked.len() as u64 + 1) * 100;

    server.terminate(10_000).expect("stops");
    server.restart().expect("restarts");
    assert_eq!(server.client().collection_count("big"), expected);
    server.terminate(10_000).expect("stops");
    drop(tmpfs);
}

/// Cluster mode: two of three members' logs fail (EIO on fdatasync, at different points), so
/// the cluster loses its majority of working disks. No write is acknowledged that is not
/// durable on a majority: after the failing members are restarted without the fault, every
/// acknowledged write is on every member.
#[test]
fn cluster_members_whose_log_fails_acknowledge_nothing_false() {
    let mut cluster = ClusterProcesses::start(3, ClusterOptions::default()).expect("members start");
    let leader = cluster
        .wait_leader(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no leader\n{}", cluster.all_stderr()));
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for (follower, plan) in followers
        .iter()
        .zip(["fsync_eio_after:4", "fsync_eio_after:8"])
    {
        let member = &mut cluster.members[*follower];
        member.terminate(10_000).expect("stops");
        member.options_mut().env = vec![("CSTORE_FAULT".into(), plan.into())];
        member.restart().expect("restarts with the fault");
    }
    let leader = cluster
        .wait_leader(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no leader after the restarts\n{}", cluster.all_stderr()));

    // Write until the cluster refuses (or answers "unknown"): two members' disks are gone.
    let client = Client::with_timeout_ms(cluster.members[leader].url(), 20_000);
    let mut acked = Vec::new();
    let mut failures = 0;
    for i in 0..60 {
        let id = format!("w{i}");
        match client.insert("notes", &json!({"_id": id})) {
            Ok(reply) if reply.status == 201 => acked.push(id),
            _ => {
                failures += 1;
                if failures == 2 {
                    break;
                }
            }
        }
    }
    assert_eq!(
        failures, 2,
        "the cluster refused writes once two logs failed"
    );
    let failed_members = followers
        .iter()
        .filter(|f| {
            cluster.members[**f]
                .all_stderr()
                .contains("cluster log append failed")
        })
        .count();
    let reported_failed = followers
        .iter()
        .filter(|f| {
            cluster
                .status(**f)
                .is_some_and(|s| s["storage"] == "failed")
        })
        .count();
    assert_eq!(reported_failed, failed_members, "status.storage says so");
    // Both, unless leadership moved first and the client met `not_leader` before the second
    // member's disk failed: then at least one.
    assert!(failed_members >= 1, "{}", cluster.all_stderr());

    // The failed members restart without the fault; the cluster converges, and every write
    // it acknowledged is on every member.
    for follower in &followers {
        let member = &mut cluster.members[*follower];
        let _ = member.terminate(10_000);
        member.options_mut().env.clear();
        member.restart().expect("restarts without the fault");
    }
    cluster
        .wait_leader(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no leader after recovery\n{}", cluster.all_stderr()));
    let leader = cluster.wait_leader(Duration::from_secs(5)).expect("leader");
    let lsn = cluster.client(leader).last_lsn();
    cluster
        .wait_converged(lsn, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no convergence\n{}", cluster.all_stderr()));
    for member in 0..3 {
        let client = cluster.client(member);
        for id in &acked {
            let reply = client.get(&format!("/v1/c/notes/{id}")).unwrap();
            assert_eq!(
                reply.status,
                200,
                "member {} lost acknowledged write {id}: {}",
                member + 1,
                reply.text()
            );
        }
    }
    println!(
        "{} writes acknowledged before the cluster stopped taking writes",
        acked.len()
    );
}

/// A read replica whose disk is full acknowledges nothing it did not store, keeps serving what
/// it holds, and catches up by itself once space is back (its first three appends fail here).
#[test]
fn a_follower_with_a_full_disk_resumes_when_space_returns() {
    let leader = ServerProcess::start(ServerOptions::default()).expect("leader starts");
    let client = leader.client();
    for i in 0..3 {
        insert(&client, &format!("a{i}")).expect_status(201);
    }
    let follower = ServerProcess::start(ServerOptions {
        env: vec![("CSTORE_FAULT".into(), "write_enospc_after:0x3".into())],
        ..ServerOptions::follower_of(&leader)
    })
    .expect("follower starts");
    for i in 0..5 {
        insert(&client, &format!("b{i}")).expect_status(201);
    }
    let last = client.last_lsn();
    follower
        .client()
        .wait_applied(last, Duration::from_secs(30), "the follower catches up");
    assert_eq!(follower.client().collection_count("notes"), 8);
    let stderr = follower.stderr();
    assert!(
        stderr.contains("disk_full") || stderr.contains("storage is full"),
        "the follower met the full disk:\n{stderr}"
    );
}
