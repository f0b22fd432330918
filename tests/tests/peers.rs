//! The peer benchmark's own machinery, checked against real `cstore` processes: the closed-loop
//! driver counts only acknowledged writes that really landed, and the recovery measurement
//! reads back exactly the log it generated (snapshot position and entries replayed).
//! etcd and redis are not needed here: their rows are exercised by `scripts/bench.sh peers`.
//! The PostgreSQL peer's test needs Debian's `postgresql-15`, so it is ignored by default:
//! `cargo test -p cstore-tests --test peers -- --ignored` runs it.

use std::time::Duration;

use cstore_tests::peers::postgres::PostgresServer;
use cstore_tests::peers::recovery::{self, RecoveryConfig};
use cstore_tests::peers::{Target, WriteConfig, run_writes};
use cstore_tests::{ServerOptions, ServerProcess};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn the_driver_counts_acknowledged_writes_that_landed() {
    let server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let target = Target::Cstore {
        url: server.url(),
        ack: None,
    };
    let config = WriteConfig {
        clients: 8,
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(800),
    };
    let report = runtime()
        .block_on(run_writes(&target, config))
        .expect("the run completes");
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(report.ops > 0, "some writes in the window");
    assert_eq!(
        report.latency_us.len(),
        report.ops,
        "one latency per counted write"
    );
    // Warm-up writes landed too, so the collection holds at least the counted ones.
    let stored = server.client().collection_count("bench");
    assert!(
        stored >= report.ops,
        "{stored} stored < {} counted",
        report.ops
    );
}

#[test]
fn recovery_replays_the_generated_log_after_its_snapshot() {
    let runtime = runtime();
    let with_snapshot = recovery::measure(
        &runtime,
        &RecoveryConfig {
            label: "every 1000".into(),
            checkpoint_every: Some(1000),
            entries: 3500,
            live_writes: 50,
            keep_data: false,
        },
    )
    .expect("recovery measured");
    assert_eq!(with_snapshot.last_lsn, 3550);
    assert_eq!(
        with_snapshot.snapshot_lsn(),
        3000,
        "the last generated checkpoint"
    );
    assert_eq!(
        with_snapshot.replayed, 550,
        "the generated tail and the live writes"
    );
    assert!(with_snapshot.lsn_ms >= with_snapshot.health_ms);

    let without = recovery::measure(
        &runtime,
        &RecoveryConfig {
            label: "off".into(),
            checkpoint_every: Some(1_000_000_000),
            entries: 2000,
            live_writes: 0,
            keep_data: false,
        },
    )
    .expect("recovery measured");
    assert_eq!(without.last_lsn, 2000);
    assert_eq!(without.replayed, 2000, "every entry replayed");
}

#[test]
#[ignore = "needs postgresql-15 (apt-get install postgresql-15); run with --ignored"]
fn postgres_acknowledged_inserts_are_rows_and_the_server_stops_by_its_pid() {
    let runtime = runtime();
    let postgres = PostgresServer::start(&runtime).expect("postgres starts");
    assert!(
        postgres
            .settings_line()
            .contains("fsync=on, synchronous_commit=on"),
        "{}",
        postgres.settings_line()
    );
    let pid = postgres.pid().expect("running");
    let config = postgres.config();
    let target = Target::Postgres {
        config: Box::new(config.clone()),
    };
    let window = WriteConfig {
        clients: 8,
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(800),
    };
    let report = runtime
        .block_on(run_writes(&target, window))
        .expect("the run completes");
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(report.ops > 0, "some writes in the window");
    let (stored, doc_is_json) = runtime.block_on(async {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connects");
        let connection = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*), bool_and(jsonb_typeof(doc) = 'object') FROM bench",
                &[],
            )
            .await
            .expect("counts");
        drop(client);
        let _ = connection.await;
        (row.get::<_, i64>(0), row.get::<_, bool>(1))
    });
    assert!(doc_is_json, "every document stored as a jsonb object");
    // Warm-up inserts landed too, so the table holds at least the counted ones.
    assert!(
        u64::try_from(stored).expect("a count") >= report.ops,
        "{stored} rows < {} counted",
        report.ops
    );
    let data_dir = postgres.scratch_dir();
    drop(postgres);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the postmaster {pid} is gone"
    );
    assert!(!data_dir.exists(), "the temp dir is removed");
}
