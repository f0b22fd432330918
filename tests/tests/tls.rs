//! TLS end to end with a self-signed certificate made here (rcgen): a server on `https://`
//! (CRUD), a native follower of it over `wss://` trusting the certificate with `--tls-ca`,
//! whose forwarded writes go over `https://`; and bad TLS files refused at start with a stable
//! code, before anything is created on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use cstore_tests::dirs::TempRoot;
use cstore_tests::{ServerOptions, ServerProcess, TlsFiles};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files in `dir`.
fn self_signed(dir: &Path, name: &str) -> TlsFiles {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a certificate");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    TlsFiles {
        cert,
        key,
        ca_pem: made.cert.pem().into_bytes(),
    }
}

#[test]
fn https_crud_and_a_follower_over_wss() {
    let files = TempRoot::new("tls").unwrap();
    let tls = self_signed(files.path(), "leader");
    let leader = ServerProcess::start(ServerOptions {
        tls: Some(tls.clone()),
        ..ServerOptions::default()
    })
    .expect("the leader starts on https");
    assert!(leader.url().starts_with("https://"));
    let client = leader.client();
    client
        .insert("notes", &json!({"_id": "a", "text": "over tls"}))
        .unwrap()
        .expect_status(201);
    client
        .put("/v1/c/notes/a", &json!({"text": "replaced"}))
        .unwrap()
        .expect_status(200);
    let doc = client.get("/v1/c/notes/a").unwrap().expect_status(200);
    assert_eq!(doc["text"], "replaced");
    let found = client
        .find("notes", &json!({"filter": {"text": "replaced"}}))
        .unwrap()
        .expect_status(200);
    assert_eq!(found["docs"].as_array().unwrap().len(), 1);
    // Plain HTTP to the TLS port gets no answer.
    let plain = cstore_tests::Client::with_timeout_ms(format!("http://{}", leader.addr()), 2_000);
    assert!(!matches!(plain.get("/v1/health"), Ok(r) if r.status == 200));

    // A native follower over wss://, trusting the self-signed certificate.
    let ca = files.path().join("leader-ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let follower = ServerProcess::start(ServerOptions {
        follow: Some(leader.replicate_url()),
        extra_args: vec!["--tls-ca".into(), ca.display().to_string()],
        ..ServerOptions::default()
    })
    .expect("the follower starts");
    assert!(leader.replicate_url().starts_with("wss://"));
    let lsn = leader.client().last_lsn();
    follower
        .client()
        .wait_applied(lsn, Duration::from_secs(20), "the follower over wss");
    let copy = follower
        .client()
        .get("/v1/c/notes/a")
        .unwrap()
        .expect_status(200);
    assert_eq!(copy["text"], "replaced");
    // Its replication socket stayed inside the TLS session (hyper's stream, the edge's
    // reactor): the leader counted no plain TCP socket.
    let metrics = leader.client().get("/metrics").unwrap().text();
    assert!(
        metrics.contains("cstore_replication_sockets_total{kind=\"tls\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("kind=\"tcp\""), "{metrics}");
    // A write on the follower is forwarded to the leader over https://.
    let written = follower
        .client()
        .insert("notes", &json!({"_id": "b", "text": "forwarded"}))
        .unwrap()
        .expect_status(201);
    assert_eq!(
        leader
            .client()
            .get("/v1/c/notes/b")
            .unwrap()
            .expect_status(200)["text"],
        "forwarded"
    );
    let lsn = written["lsn"].as_u64().unwrap();
    follower
        .client()
        .wait_applied(lsn, Duration::from_secs(20), "the forwarded write");
    let status = follower.client().status();
    assert_eq!(status["follower"]["connection"], "streaming", "{status}");
}

/// Starts `cstore serve` with `args` on a data dir that does not exist; expects exit 2 and
/// `code` on stderr, and the data dir still absent.
fn refused(args: &[&str], code: &str) {
    let binary = cstore_tests::binary::cstore_binary().unwrap();
    let data =
        std::env::temp_dir().join(format!("cstore-tls-refused-{}-{code}", std::process::id()));
    let output = std::process::Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(code), "{args:?}: expected {code}: {stderr}");
    assert!(
        !data.exists(),
        "{args:?}: the refused start created its data dir"
    );
}

#[test]
fn bad_tls_files_are_refused_at_start_with_a_stable_code() {
    let files = TempRoot::new("tls-bad").unwrap();
    let dir = files.path();
    let good = self_signed(dir, "good");
    let other = self_signed(dir, "other");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing: PathBuf = dir.join("missing.pem");
    let path = |p: &Path| p.display().to_string();
    let (cert, key) = (path(&good.cert), path(&good.key));
    refused(
        &["--tls-cert", &path(&missing), "--tls-key", &key],
        "tls_cert_unreadable",
    );
    refused(
        &["--tls-cert", &path(&garbage), "--tls-key", &key],
        "tls_cert_invalid",
    );
    refused(
        &["--tls-cert", &cert, "--tls-key", &path(&missing)],
        "tls_key_unreadable",
    );
    refused(
        &["--tls-cert", &cert, "--tls-key", &path(&garbage)],
        "tls_key_invalid",
    );
    // A certificate as the key file: no private key in it.
    refused(
        &["--tls-cert", &cert, "--tls-key", &cert],
        "tls_key_invalid",
    );
    refused(
        &["--tls-cert", &cert, "--tls-key", &path(&other.key)],
        "tls_key_mismatch",
    );
    refused(&["--tls-ca", &path(&garbage)], "tls_ca_invalid");
    refused(&["--tls-ca", &path(&missing)], "tls_ca_unreadable");
    // One without the other is a usage error.
    refused(&["--tls-cert", &cert], "--tls-key");
}

/// Three cluster members that talk to each other over https:// (Raft messages, forwarded
/// writes), each serving https with the same self-signed certificate and trusting it with
/// `--tls-ca`.
#[test]
fn a_three_member_cluster_over_https() {
    use cstore_tests::cluster::{ClusterOptions, member_options};
    let files = TempRoot::new("tls-cluster").unwrap();
    let tls = self_signed(files.path(), "member");
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let addrs: Vec<_> = (0..3)
        .map(|_| cstore_tests::server::free_port().unwrap())
        .collect();
    let list = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}=https://{addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let options = ClusterOptions {
        extra_args: vec!["--tls-ca".into(), ca.display().to_string()],
        ..ClusterOptions::default()
    };
    let members: Vec<ServerProcess> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let member = ServerOptions {
                tls: Some(tls.clone()),
                ..member_options(i as u64 + 1, *addr, &list, &options)
            };
            ServerProcess::start(member).expect("a member starts")
        })
        .collect();
    // One leader, named by every member.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let leader_id = loop {
        let named: Vec<_> = members
            .iter()
            .map(|m| m.client().status()["leader_id"].clone())
            .collect();
        if named[0].is_string() && named.iter().all(|n| *n == named[0]) {
            break named[0].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no common leader over https: {named:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Write through a member that does not lead: forwarded to the leader over https.
    let not_leader = members
        .iter()
        .position(|m| m.client().status()["node_id"] != leader_id.as_str())
        .unwrap();
    let written = members[not_leader]
        .client()
        .insert("notes", &json!({"_id": "c", "text": "raft over tls"}))
        .unwrap()
        .expect_status(201);
    let lsn = written["lsn"].as_u64().unwrap();
    for member in &members {
        member
            .client()
            .wait_applied(lsn, Duration::from_secs(20), "a member over https");
        let doc = member
            .client()
            .get("/v1/c/notes/c")
            .unwrap()
            .expect_status(200);
        assert_eq!(doc["text"], "raft over tls");
    }
}
