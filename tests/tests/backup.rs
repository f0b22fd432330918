//! Online backup and point-in-time restore with real `cstore` processes.
//!
//! - `round_trip_under_load`: two writers keep writing while `cstore backup` copies the
//!   leader twice, over HTTP (a follower session) and from its data directory (read while the
//!   server writes it). Each backup is restored at several LSNs and at a time, and the state
//!   at each is compared with the live server's state at that LSN, read with
//!   `find {"as_of_lsn": N}` (the same documents in the same order, and `lsn` = N). The two
//!   backups, taken by different paths, must also restore to the same state hash at the same
//!   LSN. Four of the restored directories are started with `cstore serve`, must serve
//!   exactly those documents and take a new write on top.
//! - `damaged_backup_is_refused`: one flipped byte in a segment (mid-file, and the very last
//!   byte, which a server's recovery would take for a torn tail), or in the snapshot, makes
//!   `restore` fail with `backup_corrupt` naming the file and byte offset, exit code 3, the
//!   target never created and the backup's bytes untouched.
//! - `bad_input_changes_nothing`: every flag of `backup`, `restore` and `as_of_lsn` given
//!   something wrong answers its stable code and leaves the disk as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cstore_server::backup::time::format_rfc3339_ms;
use cstore_tests::binary::cstore_binary;
use cstore_tests::dirs::{TempRoot, files_under};
use cstore_tests::{Client, ServerOptions, ServerProcess};
use serde_json::{Value, json};

/// Writes before the backups start: past the first checkpoint. With their patches (every
/// fifth) and deletes (at most every seventh) they are at most 350 entries.
const FIRST_WRITES: usize = 260;
/// `--checkpoint-every` of the live server. One checkpoint lands in the first writes (at
/// 250-odd, so at most ~100 entries follow it), and the late writes add at most
/// 2 × 50 × (1 + 1/5 + 1/7) + 4 ≈ 138 entries: 238 < 250, so no second checkpoint can come,
/// and every LSN the backups hold from the snapshot on can still be read live with
/// `as_of_lsn`, however slowly the backups run.
const CHECKPOINT_EVERY: u64 = 250;
/// Writes per writer while the backups run, at most.
const LATE_WRITES_MAX: usize = 50;

/// What a `cstore` command did.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The summary line of a successful run.
    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "cstore failed: {}", self.stderr);
        serde_json::from_str(self.stdout.trim()).expect("one JSON line on stdout")
    }

    /// Asserts a failure with this exit code and `error[code]` on stderr.
    #[track_caller]
    fn expect_error(&self, exit: i32, code: &str) {
        assert_eq!(
            (self.code, self.stderr.contains(&format!("error[{code}]"))),
            (exit, true),
            "expected exit {exit} and error[{code}]; stderr: {}",
            self.stderr
        );
        assert!(self.stdout.is_empty(), "nothing on stdout: {}", self.stdout);
    }
}

fn cstore(args: &[&str]) -> Outcome {
    let output = Command::new(cstore_binary().expect("the cstore binary"))
        .args(args)
        .env_remove("CSTORE_TOKEN")
        .output()
        .expect("cstore runs");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn backup(from: &str, to: &Path) -> Value {
    cstore(&["backup", "--from", from, "--to", path_str(to)]).json()
}

fn restore(from: &Path, data_dir: &Path, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "restore",
        "--from",
        path_str(from),
        "--data-dir",
        path_str(data_dir),
    ];
    args.extend_from_slice(extra);
    cstore(&args)
}

/// Every document of `items` at `as_of` (live) or now, by `_id`, and the answer's `lsn`.
fn docs(client: &Client, as_of: Option<u64>) -> (Vec<Value>, u64) {
    let mut query = json!({"filter": {}, "sort": [["_id", 1]], "limit": 10_000});
    if let Some(lsn) = as_of {
        query["as_of_lsn"] = json!(lsn);
    }
    let body = client.find("items", &query).unwrap().expect_status(200);
    let lsn = body["lsn"].as_u64().expect("lsn");
    (body["docs"].as_array().expect("docs").clone(), lsn)
}

/// One writer: inserts, with a patch and a delete now and then, `count` writes at most or
/// until `stop` (checked after each, so at least one is made), `pause` apart.
fn write_items(
    client: &Client,
    writer: usize,
    from: usize,
    count: usize,
    stop: &AtomicBool,
    pause: Duration,
) {
    for i in from..from + count {
        let id = format!("w{writer}-{i:04}");
        client
            .insert("items", &json!({"_id": id, "n": i, "w": writer}))
            .unwrap()
            .expect_status(201);
        if i % 5 == 0 {
            client
                .patch(&format!("/v1/c/items/{id}"), &json!({"patched": true}))
                .unwrap()
                .expect_status(200);
        }
        if i % 7 == 0 {
            client
                .delete(&format!("/v1/c/items/w{writer}-{:04}", i / 2))
                .unwrap();
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(pause);
    }
}

/// Restores `backup` at `target` into the stopped `server`'s data directory, starts it, and
/// checks it serves exactly the live state at the restored LSN and takes a write on top.
fn serve_restored(
    server: &mut ServerProcess,
    live: &Client,
    backup: &Path,
    target: &[&str],
) -> Value {
    let restored = restore(backup, &server.data_dir(), &[target, &["--force"]].concat()).json();
    let lsn = restored["lsn"].as_u64().unwrap();
    server.restart().expect("a restored data dir starts");
    let client = server.client();
    assert_eq!(
        client.last_lsn(),
        lsn,
        "the restored server ends at the restored LSN"
    );
    assert_eq!(
        docs(&client, None),
        docs(live, Some(lsn)),
        "served state at {lsn}"
    );
    let reply = client
        .insert("items", &json!({"_id": "after-restore"}))
        .unwrap();
    assert_eq!(
        reply.expect_status(201)["lsn"],
        json!(lsn + 1),
        "the chain goes on"
    );
    server.terminate(10_000).expect("stops");
    restored
}

#[test]
fn round_trip_under_load() {
    let leader = ServerProcess::start(ServerOptions {
        checkpoint_every: Some(CHECKPOINT_EVERY),
        ..ServerOptions::default()
    })
    .expect("leader starts");
    let client = leader.client();
    let never = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for w in 0..2 {
            let (client, never) = (client.clone(), &never);
            scope
                .spawn(move || write_items(&client, w, 0, FIRST_WRITES / 2, never, Duration::ZERO));
        }
    });
    let root = TempRoot::new("backup").unwrap();
    let (by_url, by_dir) = (root.path().join("by-url"), root.path().join("by-dir"));

    // Both backups run while two writers go on; the writers stop once both are done.
    let stop = AtomicBool::new(false);
    let before = client.last_lsn();
    let (url_summary, dir_summary) = std::thread::scope(|scope| {
        for w in 0..2 {
            let (client, stop) = (client.clone(), &stop);
            scope.spawn(move || {
                write_items(
                    &client,
                    w,
                    FIRST_WRITES,
                    LATE_WRITES_MAX,
                    stop,
                    Duration::from_millis(5),
                )
            });
        }
        let summaries = (
            backup(&leader.url(), &by_url),
            backup(path_str(&leader.data_dir()), &by_dir),
        );
        stop.store(true, Ordering::Relaxed);
        summaries
    });
    let after = client.last_lsn();
    println!("backups: by url {url_summary}\nby dir {dir_summary}\nlive lsn {before}..{after}");
    assert!(after > before, "writes went on during the backups");
    assert!(url_summary["last_lsn"].as_u64().unwrap() >= before);
    let snapshot = dir_summary["snapshot_lsn"]
        .as_u64()
        .expect("the data dir backup starts from the leader's checkpoint");
    let dir_last = dir_summary["last_lsn"].as_u64().unwrap();
    let url_last = url_summary["last_lsn"].as_u64().unwrap();
    assert!(snapshot < dir_last && dir_last <= after && url_last <= after);

    // Several LSNs of each backup: restored state hashes agree between the two backups, and
    // with the live server's state at that LSN.
    let scratch = root.path().join("scratch");
    let mut hashes: BTreeMap<u64, String> = BTreeMap::new();
    let common_last = dir_last.min(url_last);
    let lsns = [snapshot, (snapshot + common_last) / 2, common_last];
    for (backup_dir, last) in [(&by_dir, dir_last), (&by_url, url_last)] {
        for lsn in lsns.iter().copied().chain([last]) {
            let n = lsn.to_string();
            let out = restore(backup_dir, &scratch, &["--to-lsn", &n, "--force"]).json();
            assert_eq!(out["lsn"], json!(lsn));
            let hash = out["state_hash"].as_str().unwrap().to_string();
            assert_eq!(
                hashes.entry(lsn).or_insert_with(|| hash.clone()),
                &hash,
                "state at {lsn}"
            );
        }
    }

    // Restored directories serve the live state at their LSN.
    let mut restored = ServerProcess::start(ServerOptions::default()).expect("starts");
    restored.terminate(10_000).expect("stops");
    let served = |server: &mut ServerProcess, backup: &Path, target: &[&str]| {
        serve_restored(server, &client, backup, target)
    };
    served(&mut restored, &by_dir, &["--to-lsn", &snapshot.to_string()]);
    served(&mut restored, &by_dir, &["--to-lsn", &lsns[1].to_string()]);
    let latest = served(&mut restored, &by_url, &[]);
    assert_eq!(latest["lsn"], json!(url_last));
    // A time between the first and last entry of the dir backup: the state is the log up to
    // the first entry stamped later.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(by_dir.join("backup.json")).unwrap()).unwrap();
    let (first_ms, last_ms) = (
        manifest["first_entry_time_ms"].as_u64().unwrap(),
        manifest["last_entry_time_ms"].as_u64().unwrap(),
    );
    let at_ms = first_ms + (last_ms - first_ms) / 2;
    let at = format_rfc3339_ms(at_ms);
    let by_time = served(&mut restored, &by_dir, &["--to-time", &at]);
    let lsn = by_time["lsn"].as_u64().unwrap();
    assert!(
        by_time["time"].as_str().unwrap() <= at.as_str(),
        "{by_time} at {at}"
    );
    if lsn < dir_last {
        let next = restore(
            &by_dir,
            &scratch,
            &["--to-lsn", &(lsn + 1).to_string(), "--force"],
        )
        .json();
        assert!(
            next["time"].as_str().unwrap() > at.as_str(),
            "{next} is after {at}"
        );
    }
}

/// The files of `dir` and their bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .unwrap()
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            (f, bytes)
        })
        .collect()
}

fn flip(file: &Path, offset: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset as usize] ^= 0x20;
    std::fs::write(file, bytes).unwrap();
}

/// A small leader with a checkpoint, and a backup of its data directory.
fn small_backup(root: &Path) -> (ServerProcess, PathBuf) {
    let leader = ServerProcess::start(ServerOptions {
        checkpoint_every: Some(30),
        ..ServerOptions::default()
    })
    .expect("leader starts");
    let stop = AtomicBool::new(false);
    write_items(&leader.client(), 0, 0, 50, &stop, Duration::ZERO);
    let dir = root.join("bk");
    let summary = backup(path_str(&leader.data_dir()), &dir);
    assert!(summary["snapshot_lsn"].is_u64(), "{summary}");
    (leader, dir)
}

#[test]
fn damaged_backup_is_refused() {
    let root = TempRoot::new("backup-damage").unwrap();
    let (_leader, bk) = small_backup(root.path());
    let segment = files_under(&bk.join("wal"))
        .unwrap()
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let snapshot = files_under(&bk)
        .unwrap()
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "snap"))
        .expect("a snapshot");
    let target = root.path().join("restored");
    let seg_len = std::fs::metadata(&segment).unwrap().len();
    let snap_len = std::fs::metadata(&snapshot).unwrap().len();
    for (file, offset) in [
        (&segment, seg_len / 2),
        (&segment, seg_len - 1),
        (&snapshot, snap_len / 2),
    ] {
        flip(file, offset);
        let before = tree(&bk);
        let out = restore(&bk, &target, &[]);
        out.expect_error(3, "backup_corrupt");
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(out.stderr.contains(name), "names {name}: {}", out.stderr);
        let named: u64 = out
            .stderr
            .split("byte offset ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("an offset in {}", out.stderr));
        assert!(
            named <= offset && offset - named < 64 << 10,
            "{named} near {offset}"
        );
        assert!(!target.exists(), "a refused restore creates nothing");
        assert_eq!(
            tree(&bk),
            before,
            "a refused restore changes no byte of the backup"
        );
        flip(file, offset);
    }
    // A manifest that promises more than the files hold: the chain ends short of it.
    let manifest_path = bk.join("backup.json");
    let original = std::fs::read(&manifest_path).unwrap();
    let mut manifest: Value = serde_json::from_slice(&original).unwrap();
    let last = manifest["last_lsn"].as_u64().unwrap();
    manifest["last_lsn"] = json!(last + 1);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = restore(&bk, &target, &[]);
    out.expect_error(3, "backup_corrupt");
    assert!(
        out.stderr
            .contains(&format!("from LSN {} on are missing", last + 1)),
        "{}",
        out.stderr
    );
    std::fs::write(&manifest_path, b"{\"format\": 1,").unwrap();
    restore(&bk, &target, &[]).expect_error(3, "backup_corrupt");
    std::fs::write(&manifest_path, &original).unwrap();
    assert!(!target.exists());

    // Repaired, it restores.
    let out = restore(&bk, &target, &[]).json();
    assert!(out["lsn"].as_u64().unwrap() > 30);
}

#[test]
fn bad_input_changes_nothing() {
    let root = TempRoot::new("backup-bad").unwrap();
    let (leader, bk) = small_backup(root.path());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bk.join("backup.json")).unwrap()).unwrap();
    let (base, last) = (
        manifest["base_lsn"].as_u64().unwrap(),
        manifest["last_lsn"].as_u64().unwrap(),
    );
    let target = root.path().join("target");
    let to = path_str(&target);

    // backup
    for from in [
        "ftp://host/x",
        "https://127.0.0.1:1",
        "http://127.0.0.1:1/v1/x",
        "/nonexistent/dir",
    ] {
        cstore(&["backup", "--from", from, "--to", to]).expect_error(2, "invalid_source");
    }
    // A port with nothing listening (taken, then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cstore(&["backup", "--from", &format!("http://{free}"), "--to", to])
        .expect_error(1, "source_unavailable");
    assert!(!target.exists(), "a failed backup leaves no directory");
    cstore(&["backup", "--from", &leader.url(), "--to", path_str(&bk)])
        .expect_error(2, "target_not_empty");

    // restore
    let before = tree(&bk);
    let r = |extra: &[&str]| restore(&bk, &target, extra);
    r(&["--to-lsn", &(last + 1).to_string()]).expect_error(2, "lsn_out_of_range");
    r(&["--to-lsn", &(base - 1).to_string()]).expect_error(2, "lsn_out_of_range");
    r(&["--to-lsn", "3", "--to-time", "2026-01-01T00:00:00Z"]).expect_error(2, "conflicting_flags");
    r(&["--to-time", "yesterday"]).expect_error(2, "invalid_time");
    r(&["--to-time", "2000-01-01T00:00:00Z"]).expect_error(2, "lsn_out_of_range");
    restore(&root.path().join("nothing"), &target, &[]).expect_error(2, "not_a_backup");
    restore(&leader.data_dir(), &target, &[]).expect_error(2, "not_a_backup");
    assert!(!target.exists(), "no refused restore creates the data dir");
    // A non-empty data dir needs --force; a running server's is refused even then.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"mine").unwrap();
    r(&[]).expect_error(2, "data_dir_not_empty");
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"mine");
    let live_before = tree(&leader.data_dir());
    restore(&bk, &leader.data_dir(), &["--force"]).expect_error(2, "data_dir_in_use");
    assert_eq!(tree(&leader.data_dir()).len(), live_before.len());
    assert_eq!(tree(&bk), before, "the backup is only read");
    let forced = r(&["--force"]).json();
    let aside = PathBuf::from(
        forced["replaced"]
            .as_str()
            .expect("the old dir is kept aside"),
    );
    assert_eq!(std::fs::read(aside.join("keep")).unwrap(), b"mine");

    // as_of_lsn
    let client = leader.client();
    let now = client.last_lsn();
    client
        .get("/v1/c/items/w0-0001?as_of_lsn=x")
        .unwrap()
        .expect_error(400, "invalid_query");
    client
        .get(&format!("/v1/c/items/w0-0001?as_of_lsn={}", now + 1))
        .unwrap()
        .expect_error(400, "lsn_ahead");
    client
        .get("/v1/c/items/w0-0001?as_of_lsn=1")
        .unwrap()
        .expect_error(410, "lsn_compacted");
    client
        .find("items", &json!({"filter": {}, "as_of_lsn": "5"}))
        .unwrap()
        .expect_error(400, "invalid_query");
    client
        .find("items", &json!({"filter": {}, "as_of_lsn": 2}))
        .unwrap()
        .expect_error(410, "lsn_compacted");
    // The oldest readable state is the snapshot's.
    let (_, lsn) = docs(&client, Some(base));
    assert_eq!(lsn, base);
}
