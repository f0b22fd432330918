//! Taking a backup while writes go on: from a running server over the replication protocol,
//! or from a data directory by reading its files.
//!
//! ```text
//!  --from http://host:port   GET /v1/status ─► target = its applied LSN
//!                            a follower session (server/src/follower) into DIR: the snapshot
//!                            if the source's log is compacted, then the log, each batch
//!                            fsynced, until DIR holds the target ─► stop the session
//!  --from DATA_DIR           newest snapshot ─► install into DIR ─► every whole entry after
//!                            it, appended in batches (a record still being written at the
//!                            end is left out; a segment compacted away meanwhile: start over)
//!  then                      re-read DIR strictly ─► backup.json
//! ```
//!
//! Either way the copy is a prefix of the source's log: consistent at its last entry, whatever
//! was written during the copy. The server path works against a single leader, a read
//! replica, or any cluster member (every member streams its committed entries).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cstore_core::log::LogEntry;
use cstore_core::storage::Metadata;
use cstore_core::types::{LogPosition, ReplicaId, Term};

use super::manifest::Manifest;
use super::progress::entries_bar;
use super::{BackupError, verify};
use crate::follower::{Connection, Follower, FollowerConfig};
use crate::wal::FileStore;
use crate::wal::reader::{self, ReadError, TailRule};

/// Entries appended per fsync when copying from a data directory.
const COPY_BATCH_ENTRIES: usize = 1024;
/// Attempts at copying a data directory whose owner compacts it meanwhile.
const COPY_ATTEMPTS: usize = 5;
/// A backup from a server fails when it has received nothing for this long (the follower
/// session itself reconnects meanwhile, with backoff).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a backup comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupSource {
    /// A server's HTTP base, `http://host:port`.
    Server(String),
    /// A data directory (its server may be running).
    DataDir(PathBuf),
}

impl BackupSource {
    /// Parses `--from`: an `http://` URL, or a data directory (one holding `wal/`).
    pub fn parse(from: &str) -> Result<BackupSource, BackupError> {
        let invalid = |why: &str| BackupError::InvalidSource {
            from: from.to_string(),
            why: why.to_string(),
        };
        if from.contains("://") {
            let uri: axum::http::Uri = from.parse().map_err(|_| invalid("not a URL"))?;
            match uri.scheme_str() {
                Some("http") => {}
                Some("https") => return Err(invalid("https:// is not supported (no TLS)")),
                _ => return Err(invalid("a server is named by its http://host:port URL")),
            }
            let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
            if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
                return Err(invalid("give only http://host:port, without a path"));
            }
            return Ok(BackupSource::Server(format!("http://{authority}")));
        }
        let dir = PathBuf::from(from);
        match std::fs::read_dir(dir.join("wal")) {
            Ok(_) => Ok(BackupSource::DataDir(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(invalid(
                "neither an http:// URL nor a data directory (no wal/ folder in it)",
            )),
            Err(e) => Err(invalid(&format!("cannot read it: {e}"))),
        }
    }

    /// How it is named in the manifest.
    pub fn describe(&self) -> String {
        match self {
            BackupSource::Server(url) => url.clone(),
            BackupSource::DataDir(dir) => dir.display().to_string(),
        }
    }
}

/// Takes a backup of `source` into the new or empty directory `to`, verifies it and writes its
/// manifest. `token` (scope `read`) is sent to a server with auth. On failure, what was
/// written into `to` is removed.
pub async fn backup(
    source: &BackupSource,
    to: &Path,
    token: Option<String>,
) -> Result<Manifest, BackupError> {
    check_target(to)?;
    let target_lsn = match source {
        BackupSource::Server(base) => Some(server_applied_lsn(base, token.as_deref()).await?),
        BackupSource::DataDir(_) => None,
    };
    std::fs::create_dir_all(to).map_err(|e| io_error("cannot create", to, e))?;
    let taken = match source {
        BackupSource::Server(base) => {
            let target = target_lsn.expect("asked above");
            from_server(base, to, token, target).await
        }
        BackupSource::DataDir(dir) => {
            let (dir, to) = (dir.clone(), to.to_path_buf());
            tokio::task::spawn_blocking(move || from_data_dir(&dir, &to))
                .await
                .expect("the copy does not panic")
        }
    };
    let finished = taken.and_then(|()| {
        let manifest = verify::describe(to, &source.describe())?;
        manifest.write(to)?;
        Ok(manifest)
    });
    if finished.is_err() {
        let _ = std::fs::remove_dir_all(to);
    }
    finished
}

/// `to` must be missing or an empty directory.
fn check_target(to: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(to) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::TargetNotEmpty(to.display().to_string())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::InvalidSource {
            from: to.display().to_string(),
            why: format!("--to cannot be used: {e}"),
        }),
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> BackupError {
    BackupError::Storage(cstore_core::storage::StorageError::Io(format!(
        "{what} {}: {e}",
        path.display()
    )))
}

/// The source's applied LSN, from `GET /v1/status`: the backup reaches at least this far.
async fn server_applied_lsn(base: &str, token: Option<&str>) -> Result<u64, BackupError> {
    let unavailable = |why: String| BackupError::SourceUnavailable {
        from: base.to_string(),
        why,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| unavailable(e.to_string()))?;
    let mut request = client.get(format!("{base}/v1/status"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let reply = request
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let status = reply.status();
    let body: serde_json::Value = reply
        .json()
        .await
        .map_err(|e| unavailable(format!("GET /v1/status answered {status}: {e}")))?;
    if !status.is_success() {
        return Err(unavailable(format!(
            "GET /v1/status answered {status}: {body}"
        )));
    }
    body["applied_lsn"]
        .as_u64()
        .ok_or_else(|| unavailable(format!("GET /v1/status has no applied_lsn: {body}")))
}

/// Follows the server at `base` into `to` until `to` holds entry `target`.
async fn from_server(
    base: &str,
    to: &Path,
    token: Option<String>,
    target: u64,
) -> Result<(), BackupError> {
    let store = FileStore::open(to)?;
    let ws_url = format!("ws://{}/v1/replicate", base.trim_start_matches("http://"));
    let mut config = FollowerConfig::new(ws_url);
    config.token = token;
    let follower =
        Follower::open(store, config)
            .await
            .map_err(|e| BackupError::SourceUnavailable {
                from: base.to_string(),
                why: e.to_string(),
            })?;
    let bar = entries_bar("backing up", Some(target));
    // Progress is entries applied or bytes received (a snapshot arrives before any entry).
    let mut last = ((follower.applied_lsn(), 0), Instant::now());
    let outcome = loop {
        let applied = follower.applied_lsn();
        bar.set_position(applied.0.min(target));
        if applied.0 >= target {
            break Ok(());
        }
        let status = follower.status();
        let now = (applied, status.progress.bytes_received);
        if now != last.0 {
            last = (now, Instant::now());
        }
        let stopped = status.progress.connection == Connection::Stopped;
        if stopped || last.1.elapsed() > STALL_TIMEOUT {
            let why = status.progress.last_error.map_or_else(
                || format!("no progress for {} s", STALL_TIMEOUT.as_secs()),
                |e| format!("{} ({})", e.message, e.code),
            );
            break Err(BackupError::SourceUnavailable {
                from: base.to_string(),
                why,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bar.finish_and_clear();
    follower.shutdown().await;
    outcome
}

/// Copies the data directory `from` into `to` (empty), starting over when the owner compacts
/// a segment away during the copy.
fn from_data_dir(from: &Path, to: &Path) -> Result<(), BackupError> {
    for _ in 0..COPY_ATTEMPTS {
        match copy_once(from, to) {
            Err(ReadError::Gone(path)) => {
                tracing::info!(file = %path.display(), "compacted during the copy; starting over");
                std::fs::remove_dir_all(to).map_err(|e| io_error("cannot clear", to, e))?;
                std::fs::create_dir_all(to).map_err(|e| io_error("cannot create", to, e))?;
            }
            Err(ReadError::Missing(lsn)) => {
                return Err(BackupError::InvalidSource {
                    from: from.display().to_string(),
                    why: format!("entry {lsn}, the first after its snapshot, is in no segment"),
                });
            }
            Err(ReadError::Storage(e)) => return Err(e.into()),
            Ok(()) => return Ok(()),
        }
    }
    Err(BackupError::SourceUnavailable {
        from: from.display().to_string(),
        why: format!("it was compacted during each of {COPY_ATTEMPTS} attempts at copying it"),
    })
}

fn copy_once(from: &Path, to: &Path) -> Result<(), ReadError> {
    let snapshot = reader::newest_snapshot(from)?;
    let mut store = FileStore::open(to)?;
    let mut base = LogPosition::START;
    let mut term = Term(1);
    if let Some((_, snapshot)) = &snapshot {
        store.install_snapshot_blocking(snapshot)?;
        base = snapshot.position;
    }
    let bar = entries_bar("copying", None);
    let mut batch: Vec<LogEntry> = Vec::with_capacity(COPY_BATCH_ENTRIES);
    let end = reader::read_entries(from, base, None, TailRule::Live, &mut |entry| {
        term = term.max(entry.term);
        batch.push(entry);
        bar.inc(1);
        if batch.len() >= COPY_BATCH_ENTRIES {
            store.append_blocking(&batch)?;
            batch.clear();
        }
        Ok(())
    })?;
    store.append_blocking(&batch)?;
    bar.finish_and_clear();
    if let Some((path, offset, bytes)) = end.tail {
        tracing::info!(
            file = %path.display(), offset, bytes,
            "left out the bytes after the last whole entry (an append in flight)"
        );
    }
    store.save_metadata_blocking(&Metadata {
        term,
        node_id: ReplicaId(rand::random()),
    })?;
    Ok(())
}
