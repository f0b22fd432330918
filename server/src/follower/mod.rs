//! The follower: a native read replica (`cstore serve --follow ws://leader/v1/replicate`).
//!
//! A follower keeps a full copy of the leader's log in its own data directory and serves
//! reads from its own state, so reads scale out and survive the leader's restarts. It drives
//! core's [`Replica`](cstore_core::replication::Replica) over a WebSocket on a thread of its
//! own (the file store blocks on fsync), and writes nothing but what the leader sent:
//!
//! ```text
//!  replication thread                                               HTTP handlers
//!  ──────────────────                                               ─────────────
//!  connect (Bearer token) ─► hello(durable position)
//!  frames ─► Replica ─► Persist{entries} ─► append + fsync ─► apply ─► state ◄── read(min_lsn)
//!                     │                    (frames that already arrived      applied watch
//!                     │                     share one fsync)                 wakes waiters
//!                     ├► InstallSnapshot ─► install_snapshot ─► State::from_snapshot
//!                     ├► SaveTerm ─► metadata
//!                     └► Close(remedy) ─► reconnect (jittered backoff) | rebootstrap | stop
//! ```
//!
//! Frames are read and decoded ahead on the runtime's one worker thread while the replication
//! thread persists (see `driver`). An entry is applied only after it is durable, so every read here returns data that a crash
//! cannot take back. A restart recovers the state like the leader does (snapshot, then the log)
//! and says hello with its durable position: nothing is downloaded twice. Writes sent to a
//! follower are forwarded to the leader over HTTP (see `http::forward`). Its local copy
//! (`crate::local`) is served to followers of its own (relay) by the same `LocalSource` as
//! the leader's.

mod driver;
mod error;
mod local;
mod status;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use cstore_core::state::State;
use cstore_core::{Lsn, ReplicaId};

pub use error::FollowError;
pub use status::{Connection, FollowerStatus, LastError, Progress};

use crate::local::{Local, LocalCopy, LocalSource, StartError};
use crate::wal::FileStore;

/// Tunables of a follower.
#[derive(Clone, Debug)]
pub struct FollowerConfig {
    /// The replication endpoints to follow, `ws://host:port/v1/replicate`: one server, or
    /// several members of one cluster (any member streams committed entries; the driver
    /// prefers the leader and moves on when one fails).
    pub urls: Vec<String>,
    /// Sent as `Authorization: Bearer` on the WebSocket upgrade to the leader (scope `read`).
    /// Forwarded writes carry the client's own `Authorization`, never this token.
    pub token: Option<String>,
    /// First reconnect delay.
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay.
    pub backoff_max_ms: u64,
    /// How often the replica's timers run (leader silence).
    pub tick_interval_ms: u64,
    /// Bound on opening the connection (TCP and WebSocket handshake).
    pub connect_timeout_ms: u64,
    /// Most entries gathered from frames already received before one fsync.
    pub persist_batch_entries_max: usize,
    /// Bound of the relay's tail of recent entries (what downstream followers stream from).
    pub tail_bytes_max: u64,
}

impl FollowerConfig {
    /// Defaults for following the server at `url`.
    pub fn new(url: impl Into<String>) -> FollowerConfig {
        FollowerConfig::members(vec![url.into()])
    }

    /// Defaults for following the cluster whose members are at `urls`.
    pub fn members(urls: Vec<String>) -> FollowerConfig {
        FollowerConfig {
            urls,
            token: None,
            backoff_initial_ms: 100,
            backoff_max_ms: 3_000,
            tick_interval_ms: 200,
            connect_timeout_ms: 5_000,
            persist_batch_entries_max: 16_384,
            tail_bytes_max: crate::replicate::TAIL_MIB_DEFAULT << 20,
        }
    }
}

/// Why a URL cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--follow {url:?} is not a ws:// or wss:// URL of a leader's /v1/replicate: {reason}")]
pub struct InvalidLeaderUrl {
    /// What was given.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks a `--follow` list: at least one URL, each a `ws://` URL, none twice.
pub fn check_follow_urls(urls: &[String]) -> Result<(), InvalidLeaderUrl> {
    if urls.is_empty() {
        return Err(InvalidLeaderUrl {
            url: String::new(),
            reason: "no URL given",
        });
    }
    for (i, url) in urls.iter().enumerate() {
        leader_http_base(url)?;
        if urls[..i].contains(url) {
            return Err(InvalidLeaderUrl {
                url: url.clone(),
                reason: "given twice",
            });
        }
    }
    Ok(())
}

/// The leader's HTTP base (`http://host:port`) from its replication URL.
pub fn leader_http_base(leader_url: &str) -> Result<String, InvalidLeaderUrl> {
    let invalid = |reason| InvalidLeaderUrl {
        url: leader_url.to_string(),
        reason,
    };
    let uri: axum::http::Uri = leader_url.parse().map_err(|_| invalid("not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some("ws") => "http",
        Some("wss") => "https",
        _ => return Err(invalid("the scheme must be ws:// or wss://")),
    };
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    Ok(format!("{scheme}://{authority}"))
}

/// What the handle and the replication thread share besides the local copy.
pub(crate) struct Shared {
    /// The state, tail (for downstream followers: relay) and applied watch, durable entries
    /// only; the replication thread owns the store and writes the copy.
    pub(crate) local: Arc<Local>,
    pub(crate) node_id: ReplicaId,
    pub(crate) config: FollowerConfig,
    /// The HTTP base of the member followed now: where writes are forwarded (any member
    /// passes them on to its leader).
    pub(crate) leader_http: Mutex<String>,
    pub(crate) http: reqwest::Client,
    pub(crate) progress: Mutex<Progress>,
    /// Set to ask the replication thread to stop.
    pub(crate) stop: watch::Sender<bool>,
    /// Set by the replication thread once it stopped and closed the store.
    pub(crate) stopped: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().expect("progress lock poisoned")
    }
}

/// A cheap, cloneable handle to the follower.
#[derive(Clone)]
pub struct Follower {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("status", &self.status())
            .finish()
    }
}

/// Why a follower could not start.
#[derive(Debug, thiserror::Error)]
pub enum FollowerStartError {
    /// The URL is not one a follower can use.
    #[error(transparent)]
    Url(#[from] InvalidLeaderUrl),
    /// The local copy does not recover.
    #[error(transparent)]
    Recover(#[from] StartError),
    /// The HTTP client for forwarding writes could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl Follower {
    /// Recovers the local copy from `store` (like the leader recovers) and starts replicating
    /// from `config.urls` on a thread of its own.
    pub async fn open(
        store: FileStore,
        config: FollowerConfig,
    ) -> Result<Follower, FollowerStartError> {
        check_follow_urls(&config.urls)?;
        let leader_http = Mutex::new(leader_http_base(&config.urls[0])?);
        // A fresh follower has seen no term: the leader's Welcome sets it.
        let (copy, _) =
            LocalCopy::recover(store, cstore_core::Term(0), config.tail_bytes_max).await?;
        let http = crate::edge::tls::http_client_builder()
            .timeout(Duration::from_secs(30))
            // Below the members' idle timeout (60 s by default): the pool drops a connection
            // before the server closes it, so a forwarded write never picks a closing one.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| FollowerStartError::Client(e.to_string()))?;
        let durable = copy.position().lsn;
        assert_eq!(
            durable,
            copy.local().applied_lsn(),
            "recovery applies every entry the store holds"
        );
        let progress = Progress {
            term: copy.metadata().term,
            leader_id: None,
            durable_lsn: durable,
            leader_committed_lsn: durable,
            lag: 0,
            connection: Connection::Connecting,
            url: config.urls[0].clone(),
            member_switches: 0,
            last_error: None,
            reconnects: 0,
            bytes_received: 0,
            entries_received: 0,
            snapshot_installs: 0,
            protocol_version: cstore_core::replication::PROTOCOL_VERSION,
        };
        let (stop, _) = watch::channel(false);
        let (stopped, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            local: Arc::clone(copy.local()),
            node_id: copy.metadata().node_id,
            config,
            leader_http,
            http,
            progress: Mutex::new(progress),
            stop,
            stopped,
        });
        let local = local::FollowerCopy::new(copy, Arc::clone(&shared));
        std::thread::Builder::new()
            .name("cstore-follow".into())
            .spawn(move || {
                // The driver runs on this thread (`block_on`); its connection's reader task
                // on the one worker, so frames are read and decoded while this thread fsyncs.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("cstore-follow-read")
                    .enable_all()
                    .build()
                    .expect("the follower's runtime builds");
                runtime.block_on(driver::run(local));
            })
            .map_err(StartError::Thread)?;
        Ok(Follower { shared })
    }

    /// Runs `f` on the current state under the read lock. Everything in it is durable here.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.shared.local.read(f)
    }

    /// The last LSN applied (and durable).
    pub fn applied_lsn(&self) -> Lsn {
        self.shared.local.applied_lsn()
    }

    /// Waits until the state has applied `lsn`, at most `timeout`. True when it has.
    pub async fn wait_applied(&self, lsn: Lsn, timeout: Duration) -> bool {
        self.shared.local.wait_applied(lsn, timeout).await
    }

    /// Watches the applied LSN.
    pub fn applied(&self) -> watch::Receiver<Lsn> {
        self.shared.local.applied()
    }

    /// The local copy readers and replication sessions share.
    pub fn local(&self) -> &Arc<Local> {
        &self.shared.local
    }

    /// The HTTP base of the member followed now, where writes are forwarded.
    pub fn leader_http_base(&self) -> String {
        self.shared.leader_http.lock().expect("poisoned").clone()
    }

    /// The client that forwards writes.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.shared.http
    }

    /// The token configured for the leader, if any.
    pub fn token(&self) -> Option<&str> {
        self.shared.config.token.as_deref()
    }

    /// This follower as a replication source, for relaying to followers of its own: its
    /// local copy, serving the term it last saw.
    pub fn relay_source(&self) -> LocalSource {
        let shared = Arc::clone(&self.shared);
        LocalSource::new(
            Arc::clone(&self.shared.local),
            self.shared.node_id,
            move || shared.progress().term,
        )
    }

    /// What `/v1/status` reports.
    pub fn status(&self) -> FollowerStatus {
        let progress = self.shared.progress().clone();
        FollowerStatus {
            node_id: self.shared.node_id,
            term: progress.term,
            leader_url: progress.url.clone(),
            urls: self.shared.config.urls.clone(),
            applied_lsn: self.applied_lsn(),
            progress,
        }
    }

    /// Stops replicating, waits until the store is closed (its directory lock released).
    /// Reads keep working on the state as it is. Safe to call more than once.
    pub async fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        let mut stopped = self.shared.stopped.subscribe();
        let _ = stopped.wait_for(|done| *done).await;
    }
}
