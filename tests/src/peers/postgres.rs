//! PostgreSQL 15 as a peer: Debian's binaries (`/usr/lib/postgresql/15/bin`), a fresh cluster
//! from `initdb` on a temp data dir, the server on [`POSTGRES_PORT`] of loopback, one table
//! `bench (id text PRIMARY KEY, doc jsonb NOT NULL)`, and the same document bytes the other
//! peers get, one `INSERT` per write on each client's own connection (tokio-postgres, a
//! statement prepared once per connection, one round trip per write).
//!
//! ```text
//!   initdb -D data (as `postgres` when we are root) ──► postgres -D data -p 25432
//!     -c fsync=on -c synchronous_commit=on ... ──► ready when a connection succeeds
//!     ──► CREATE TABLE bench ──► settings read back and checked ──► the writes
//!     ──► SIGINT by its PID (fast shutdown), SIGKILL after 30 s ──► temp dir removed
//! ```
//!
//! Durability is checked, not assumed: the server's own `fsync` and `synchronous_commit` are
//! read back from `pg_settings` and the run refuses to compare a server where either is off.
//! A write is answered after its commit record's WAL flush (`wal_sync_method`, `fdatasync` by
//! default on Linux), which groups the commits of concurrent connections.
//!
//! PostgreSQL refuses to run as root; when this process is root, `initdb` and the server run as
//! the `postgres` user that Debian's package creates (still this process's children, so the
//! PID stopped is the postmaster's own). A fast shutdown rather than SIGKILL, because a killed
//! postmaster leaves its backends to notice by themselves and its System V shared-memory
//! segment behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio_postgres::NoTls;

use super::error::PeerError;
use super::peer::{PeerProcess, RunAs, SpawnOptions};

/// The PostgreSQL port (well above the usual 5432).
pub const POSTGRES_PORT: u16 = 25432;
/// Where Debian's `postgresql-15` package puts the server's binaries.
pub const POSTGRES_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The Debian package that provides them.
pub const POSTGRES_PACKAGE: &str = "postgresql-15";
/// The role the benchmark connects as (the cluster's superuser, trust auth on loopback).
pub const POSTGRES_ROLE: &str = "bench";
/// The database written to.
pub const POSTGRES_DATABASE: &str = "postgres";
/// The OS user the server runs as when this process is root.
const SERVER_USER: &str = "postgres";
/// The table every write goes into.
pub const CREATE_TABLE_SQL: &str = "CREATE TABLE bench (id text PRIMARY KEY, doc jsonb NOT NULL)";
/// One write: the document is sent as text and stored as `jsonb` (parsed by the server).
pub const INSERT_SQL: &str = "INSERT INTO bench (id, doc) VALUES ($1, $2::jsonb)";
/// Connections allowed: the driver's 64 and pgbench's 64 never overlap, plus headroom.
const MAX_CONNECTIONS: u32 = 200;
/// How long a fast shutdown may take before SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Settings read back after the start and shown in the run's output.
const SHOWN_SETTINGS: [&str; 8] = [
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "commit_delay",
    "shared_buffers",
    "max_connections",
];

/// A running PostgreSQL server with the `bench` table created.
#[derive(Debug)]
pub struct PostgresServer {
    process: PeerProcess,
    /// `name=value` of [`SHOWN_SETTINGS`], as the server reports them.
    settings: Vec<(String, String)>,
}

impl PostgresServer {
    /// initdb on a fresh temp dir, the server on [`POSTGRES_PORT`], the table created, and
    /// its durability settings checked. Blocks on `runtime` for the connections.
    pub fn start(runtime: &tokio::runtime::Runtime) -> Result<PostgresServer, PeerError> {
        let bin = |name: &str| format!("{POSTGRES_BIN_DIR}/{name}");
        if !Path::new(&bin("postgres")).exists() {
            return Err(PeerError::Missing {
                program: bin("postgres"),
                package: POSTGRES_PACKAGE.into(),
            });
        }
        let run_as = if nix::unistd::Uid::effective().is_root() {
            Some(RunAs::lookup(SERVER_USER)?)
        } else {
            None
        };
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let initdb = strings(&[
            "-D",
            "{dir}",
            "-U",
            POSTGRES_ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]);
        let port = POSTGRES_PORT.to_string();
        let max_connections = format!("max_connections={MAX_CONNECTIONS}");
        // The durability settings are the defaults, named so a reader need not know them.
        // No unix socket: every client comes over loopback TCP, like the other peers'.
        let args = strings(&[
            "-D",
            "{dir}",
            "-p",
            &port,
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            "-c",
            "full_page_writes=on",
            "-c",
            &max_connections,
        ]);
        let options = SpawnOptions {
            run_as,
            setup: vec![(bin("initdb"), initdb)],
            graceful_stop: Some((Signal::SIGINT, SHUTDOWN_GRACE)),
        };
        let mut process = PeerProcess::spawn_with(
            "postgres",
            &bin("postgres"),
            POSTGRES_PACKAGE,
            &args,
            options,
        )?;
        let config = client_config();
        process.wait_ready(|| runtime.block_on(config.connect(NoTls)).is_ok())?;
        let settings = runtime.block_on(prepare(&config))?;
        Ok(PostgresServer { process, settings })
    }

    /// The client configuration of the benchmark's connections.
    pub fn config(&self) -> tokio_postgres::Config {
        client_config()
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// `name=value, ...` of the settings that matter here, as the server reported them.
    pub fn settings_line(&self) -> String {
        self.settings
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A dir next to the data dir for a client's files (pgbench's logs).
    pub fn scratch_dir(&self) -> PathBuf {
        self.process.root_dir().to_path_buf()
    }
}

/// `host=127.0.0.1 port=25432 user=bench dbname=postgres`.
fn client_config() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(POSTGRES_PORT)
        .user(POSTGRES_ROLE)
        .dbname(POSTGRES_DATABASE)
        .connect_timeout(Duration::from_secs(2));
    config
}

/// Creates the table and reads the settings back; fails if the server would not make a
/// commit durable before answering.
async fn prepare(config: &tokio_postgres::Config) -> Result<Vec<(String, String)>, PeerError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| PeerError::net("connecting to postgres", e))?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(CREATE_TABLE_SQL)
        .await
        .map_err(|e| PeerError::net("creating the bench table", e))?;
    let rows = client
        .query(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)",
            &[&SHOWN_SETTINGS.as_slice()],
        )
        .await
        .map_err(|e| PeerError::net("reading postgres settings", e))?;
    drop(client);
    let _ = connection.await;
    let mut settings: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            let unit: Option<String> = row.get(2);
            let value: String = row.get(1);
            let value = match unit.as_deref() {
                // shared_buffers comes in 8 kB pages.
                Some("8kB") => value
                    .parse::<u64>()
                    .map(|pages| format!("{}MB", pages * 8 / 1024))
                    .unwrap_or(value),
                Some(unit) => format!("{value}{unit}"),
                None => value,
            };
            (row.get::<_, String>(0), value)
        })
        .collect();
    settings.sort_by_key(|(name, _)| SHOWN_SETTINGS.iter().position(|s| s == name));
    check_durable(&settings)?;
    Ok(settings)
}

/// Refuses a server that answers a commit before its WAL is on disk.
pub fn check_durable(settings: &[(String, String)]) -> Result<(), PeerError> {
    for name in ["fsync", "synchronous_commit"] {
        let value = settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        if value != Some("on") {
            return Err(PeerError::Unavailable(format!(
                "postgres reports {name}={}: not a durable peer",
                value.unwrap_or("(missing)")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(fsync: &str, synchronous_commit: &str) -> Vec<(String, String)> {
        vec![
            ("fsync".into(), fsync.into()),
            ("synchronous_commit".into(), synchronous_commit.into()),
        ]
    }

    #[test]
    fn only_a_server_that_syncs_each_commit_is_compared() {
        assert!(check_durable(&settings("on", "on")).is_ok());
        for (fsync, sync) in [("off", "on"), ("on", "off"), ("on", "local")] {
            let error = check_durable(&settings(fsync, sync)).expect_err("refused");
            assert!(error.to_string().contains("not a durable peer"), "{error}");
        }
        assert!(check_durable(&settings("on", "on")[..1]).is_err());
    }
}
