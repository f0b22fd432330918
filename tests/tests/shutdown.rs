//! Graceful shutdown: SIGTERM while writers stream inserts. The process exits 0 within a bound;
//! every acknowledged write is there after a restart; writes that arrive once shutdown began get
//! `503 shutting_down` or no answer, never a success that is not durable.

use std::time::Instant;

use cstore_tests::workload::{WriterPool, assert_no_unexpected, check_durability};
use cstore_tests::{ServerOptions, ServerProcess};

const WRITERS: usize = 8;
/// Bound on the exit after SIGTERM.
const EXIT_TIMEOUT_MS: u64 = 10_000;

#[test]
fn sigterm_under_load_exits_cleanly_and_loses_nothing() {
    let mut server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    // An idle keep-alive connection must not hold the shutdown up.
    let idle = server.client();
    idle.get("/v1/status").unwrap().expect_status(200);

    let pool = WriterPool::start(&server.client(), WRITERS, "term");
    assert!(
        pool.wait_acked(300, 20_000),
        "only {} writes acknowledged in 20 s\n{}",
        pool.acked(),
        server.stderr()
    );
    let signalled = Instant::now();
    let acked_at_signal = pool.acked();
    let status = server
        .terminate(EXIT_TIMEOUT_MS)
        .expect("the server exits after SIGTERM");
    let exit_ms = signalled.elapsed().as_millis();
    assert!(
        status.success(),
        "SIGTERM exit status {status}\n{}",
        server.stderr()
    );
    let logs = pool.join();
    assert_no_unexpected(&logs);
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");

    server.restart().expect("restart after SIGTERM");
    let report = check_durability(&server.client(), &logs);
    report.assert_clean("after SIGTERM and restart");
    let shutting_down: usize = logs.iter().map(|l| l.shutting_down).sum();
    let transport: usize = logs.iter().map(|l| l.transport_errors).sum();
    println!(
        "exit 0 in {exit_ms} ms; {} acked ({acked_at_signal} before SIGTERM), \
         {shutting_down} shutting_down, {transport} without answer, {} unacked present",
        report.acked, report.unacked_present
    );
    assert!(server.client().last_lsn() >= report.max_acked_lsn);
}

#[test]
fn sigterm_when_idle_exits_promptly() {
    let mut server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    server
        .client()
        .insert("c", &serde_json::json!({"_id": "one"}))
        .unwrap()
        .expect_status(201);
    let status = server.terminate(EXIT_TIMEOUT_MS).expect("exits");
    assert!(status.success(), "{status}\n{}", server.stderr());
    server.restart().expect("restart");
    server
        .client()
        .get("/v1/c/c/one")
        .unwrap()
        .expect_status(200);
}
