//! Recovery after `kill -9`: how long a server with a large log takes to answer again, and how
//! fast it replays its write-ahead log.
//!
//! ```text
//!   start a server (empty) ─► kill -9 ─► write N entries into its data dir (walgen: the
//!   server's own codec and store, checkpoints as the leader makes them) ─► start it again
//!   ─► a few writes over HTTP ─► read last_lsn ─► kill -9
//!   t0: spawn ─► /v1/health answers (t_health) ─► /v1/status shows last_lsn (t_lsn)
//!   the server's own "state recovered" line gives the entries replayed and its ms
//! ```
//!
//! The replay rate is entries replayed ÷ time to health, so process start, store open (which
//! checks every record's CRC) and the snapshot load all count against it. With checkpoints the
//! replay is short (the log before the last snapshot is gone); with checkpoints effectively
//! off, every entry is replayed. The log's files are in the page cache (a process crash, not a
//! machine crash).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cstore_core::TimestampMs;
use cstore_server::leader::LeaderConfig;

use super::error::PeerError;
use super::walgen;
use crate::load::{self, Limit, LoadConfig, Mode};
use crate::{ServerOptions, ServerProcess};

/// Bound on a restart with a large log.
const RESTART_TIMEOUT_MS: u64 = 300_000;
/// Clients of the writes over HTTP before the kill.
const LIVE_CLIENTS: usize = 16;

/// One recovery measurement's set-up.
#[derive(Clone, Debug)]
pub struct RecoveryConfig {
    /// A label for the table.
    pub label: String,
    /// `--checkpoint-every` (None: the server's default); the generated log has the snapshots
    /// this setting would have made.
    pub checkpoint_every: Option<u64>,
    /// Entries written into the log before the server starts on it.
    pub entries: u64,
    /// Single-document writes over HTTP after that start, before the kill.
    pub live_writes: u64,
    /// Keep the server's data dir afterwards (its path is printed), e.g. to profile a restart.
    pub keep_data: bool,
}

/// What one recovery measured.
#[derive(Clone, Debug)]
pub struct RecoveryReport {
    /// The set-up.
    pub config: RecoveryConfig,
    /// The last LSN before the kill.
    pub last_lsn: u64,
    /// Bytes in the data dir at the kill.
    pub data_bytes: u64,
    /// Entries the server replayed from its log (its own count).
    pub replayed: u64,
    /// The server's own recovery time (snapshot load and replay), in ms.
    pub server_ms: u64,
    /// From spawn to the first `/v1/health` answer, in ms.
    pub health_ms: f64,
    /// From spawn to `/v1/status` showing `last_lsn`, in ms.
    pub lsn_ms: f64,
}

impl RecoveryReport {
    /// The LSN of the snapshot the state was loaded from (0: none).
    pub fn snapshot_lsn(&self) -> u64 {
        self.last_lsn.saturating_sub(self.replayed)
    }

    /// Entries replayed per second of the time to health.
    pub fn replay_per_s(&self) -> f64 {
        self.replayed as f64 / (self.health_ms / 1000.0)
    }

    /// Entries replayed per second of the server's own recovery time.
    pub fn server_replay_per_s(&self) -> f64 {
        self.replayed as f64 / (self.server_ms.max(1) as f64 / 1000.0)
    }
}

/// Builds the log, runs a server on it, kills it with SIGKILL and times its restart.
pub fn measure(
    runtime: &tokio::runtime::Runtime,
    config: &RecoveryConfig,
) -> Result<RecoveryReport, PeerError> {
    let mut server = ServerProcess::start(ServerOptions {
        checkpoint_every: config.checkpoint_every,
        ready_timeout_ms: RESTART_TIMEOUT_MS,
        keep_dir: config.keep_data,
        ..ServerOptions::default()
    })?;
    server.kill9()?;
    let every = config
        .checkpoint_every
        .unwrap_or(LeaderConfig::default().checkpoint_every_entries);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    walgen::generate(
        &server.data_dir(),
        config.entries,
        Some(every),
        TimestampMs(now_ms),
    )?;
    server.restart()?;
    if config.live_writes > 0 {
        let live = runtime
            .block_on(load::run(LoadConfig {
                url: server.url(),
                token: None,
                collection: "recovery".into(),
                mode: Mode::Insert,
                clients: LIVE_CLIENTS,
                batch: 1,
                window: 1,
                limit: Limit::Documents(config.live_writes),
                index: false,
                split_checkpoints: false,
            }))
            .map_err(|e| PeerError::net("writing over HTTP", e))?;
        if live.errors > 0 {
            return Err(PeerError::net(
                "writing over HTTP",
                format!(
                    "{} failed writes, e.g. {:?}",
                    live.errors, live.error_samples
                ),
            ));
        }
    }
    let last_lsn = read_last_lsn(&server)?;
    let data_bytes = crate::dirs::files_under(&server.data_dir())?
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    server.kill9()?;
    let started = Instant::now();
    server.restart()?;
    let health_ms = started.elapsed().as_secs_f64() * 1000.0;
    loop {
        if read_last_lsn(&server)? >= last_lsn {
            break;
        }
        if started.elapsed() > Duration::from_millis(RESTART_TIMEOUT_MS) {
            return Err(PeerError::net("restart", "the LSN never came back"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let lsn_ms = started.elapsed().as_secs_f64() * 1000.0;
    let stderr = server.stderr();
    let (replayed, server_ms) = recovered_line(&stderr).ok_or_else(|| {
        PeerError::net(
            "restart",
            format!("no `state recovered` line in:\n{stderr}"),
        )
    })?;
    server.terminate(30_000)?;
    Ok(RecoveryReport {
        config: config.clone(),
        last_lsn,
        data_bytes,
        replayed,
        server_ms,
        health_ms,
        lsn_ms,
    })
}

fn read_last_lsn(server: &ServerProcess) -> Result<u64, PeerError> {
    let reply = server
        .client()
        .get("/v1/status")
        .map_err(|e| PeerError::net("GET /v1/status", e))?;
    reply.json()["last_lsn"]
        .as_u64()
        .ok_or_else(|| PeerError::net("GET /v1/status", format!("no last_lsn in {}", reply.text())))
}

/// `replayed` and `ms` from the server's `state recovered ... replayed=N ms=M` log line.
pub fn recovered_line(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("state recovered"))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Some((field("replayed")?, field("ms")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_recovered_line() {
        let log = "2026-11-26T21:00:00Z  INFO cstore_server::serve: store opened\n\
                   2026-11-26T21:00:01Z  INFO cstore_server::leader::recovery: state recovered \
                   lsn=1000000 replayed=999424 ms=812 node_id=ab12\n";
        assert_eq!(recovered_line(log), Some((999_424, 812)));
        assert_eq!(recovered_line("nothing here"), None);
    }
}
