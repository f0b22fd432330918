//! `cstore serve`: open the store, start the leader, serve HTTP until a signal, then stop in
//! order.
//!
//! ```text
//!   check options ─► bind ─► open store ─► Leader::open | Follower::open (recovery) ─► serve
//!                                                                       │ SIGINT / SIGTERM
//!   exit 0 ◄─ node.shutdown() ◄─ drain in-flight requests (≤ 10 s) ◄──┘ stop accepting
//! ```
//!
//! The order makes a stop lose nothing acknowledged: requests that were in flight finish
//! (their writes commit and are answered), then the leader commits whatever is still queued
//! and refuses the rest with `shutting_down`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use cstore_core::storage::StorageError;

use crate::auth::{Claims, Scope};
use crate::auth::{TokenKey, WeakSecret};
use crate::cli::ServeArgs;
use crate::cluster::{Cluster, ClusterConfig, ClusterStartError, parse_members};
use crate::edge::{self, EdgeConfig};
use crate::follower::{
    Follower, FollowerConfig, FollowerStartError, InvalidLeaderUrl, check_follow_urls,
};
use crate::http::demo::{self, DemoDirError};
use crate::http::{self, AppState};
use crate::leader::{Leader, LeaderConfig, StartError};
use crate::metrics::{self as server_metrics, MetricsError};
use crate::node::Node;
use crate::replicate::{self, SessionRuntime};
use crate::wal::{FileStore, WalOptions};

/// How long in-flight requests may take to finish after a stop signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `cstore serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `--follow` names no usable leader URL.
    #[error(transparent)]
    FollowUrl(#[from] InvalidLeaderUrl),
    /// A non-loopback address without a secret and without `--insecure`.
    #[error(
        "refusing to listen on {addr} (not loopback) without an auth secret: set --auth-secret \
         (or CSTORE_AUTH_SECRET), or pass --insecure to serve every request unauthenticated"
    )]
    InsecureListen {
        /// The offending address.
        addr: SocketAddr,
    },
    /// The secret is unusable.
    #[error(transparent)]
    Secret(#[from] WeakSecret),
    /// `--listen` does not resolve.
    #[error("--listen {listen:?} does not resolve to an address: {reason}")]
    Resolve {
        /// What was given.
        listen: String,
        /// Why it failed.
        reason: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        /// What was given.
        listen: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the data directory {dir}: {source}")]
    Store {
        /// The data directory.
        dir: String,
        /// The storage error.
        source: StorageError,
    },
    /// The leader could not recover its state.
    #[error("cannot start the leader: {0}")]
    Start(#[from] StartError),
    /// The follower could not start.
    #[error("cannot start the follower: {0}")]
    Follow(#[from] FollowerStartError),
    /// `--cluster` / `--node-id` / the timeouts are not a usable cluster configuration.
    #[error("invalid cluster configuration: {0}")]
    ClusterConfig(String),
    /// The cluster member could not start.
    #[error("cannot start the cluster member: {0}")]
    Cluster(#[from] ClusterStartError),
    /// `--demo-dir` names a directory without a built demo.
    #[error(transparent)]
    DemoDir(#[from] DemoDirError),
    /// The metrics recorder could not be installed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// `--tls-cert`, `--tls-key` or `--tls-ca` is unusable.
    #[error(transparent)]
    Tls(#[from] crate::edge::tls::TlsError),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

impl ServeError {
    /// The process exit code: 2 for a refused configuration, 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::FollowUrl(_)
            | ServeError::ClusterConfig(_)
            | ServeError::InsecureListen { .. }
            | ServeError::Secret(_)
            | ServeError::Resolve { .. }
            | ServeError::DemoDir(_)
            | ServeError::Tls(_) => 2,
            _ => 1,
        }
    }
}

/// The log store in `data_dir` (created if missing), recovered: a torn tail is truncated,
/// damaged acknowledged data refuses to open. `replayed`: the node replays the log after the
/// snapshot before it serves anything (a leader or a follower does, in `recover`), so the
/// SHA-256 check of those entries is left to that replay, which decodes them anyway; damage
/// there then stops the start from the replay, with the same error (see
/// [`WalOptions::hashes_checked_by_replay`]).
pub fn open_store(data_dir: &Path, replayed: bool) -> Result<FileStore, StorageError> {
    let options = WalOptions {
        hashes_checked_by_replay: replayed,
        ..WalOptions::default()
    };
    FileStore::open_with(data_dir, options)
}

/// How long the token a member signs for Raft messages and forwarded requests lives.
const MEMBER_TOKEN_TTL_S: u64 = 10 * 365 * 86_400;

/// The cluster configuration `--node-id` and `--cluster` ask for, checked; `None` without them.
fn cluster_config(
    args: &ServeArgs,
    key: Option<&TokenKey>,
) -> Result<Option<ClusterConfig>, ServeError> {
    let (Some(node_id), Some(list)) = (args.node_id, args.cluster.as_deref()) else {
        return Ok(None);
    };
    let members = parse_members(list).map_err(ServeError::ClusterConfig)?;
    if !members.contains_key(&node_id) {
        return Err(ServeError::ClusterConfig(format!(
            "--node-id {node_id} is not in --cluster (members: {:?})",
            members.keys().collect::<Vec<_>>()
        )));
    }
    if args.heartbeat_ms * 2 > args.election_timeout_ms {
        return Err(ServeError::ClusterConfig(format!(
            "--heartbeat-ms {} must be at most half of --election-timeout-ms {}",
            args.heartbeat_ms, args.election_timeout_ms
        )));
    }
    // Members prove themselves to each other with an admin token of the shared secret.
    let token = key.map(|key| {
        key.mint(&Claims {
            sub: format!("cluster-member-{node_id}"),
            scopes: vec![Scope::Admin],
            exp: crate::clock::now_ms().0 / 1000 + MEMBER_TOKEN_TTL_S,
            collections: None,
        })
    });
    Ok(Some(ClusterConfig {
        node_id,
        members,
        election_timeout_ms: args.election_timeout_ms,
        heartbeat_ms: args.heartbeat_ms,
        token,
        tail_bytes_max: args.replication_tail_mib << 20,
        snapshot_every_entries: args.checkpoint_every.unwrap_or(100_000),
        bind_ip: None,
    }))
}

/// The URLs of `--follow`: one, or several separated by commas.
fn follow_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(String::from)
        .collect()
}

/// Runs the server until `shutdown` completes, then stops in order (see the module docs).
pub async fn run(args: ServeArgs, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    if let Some(urls) = &args.follow {
        check_follow_urls(&follow_urls(urls))?;
    }
    let key = args.token_key()?;
    // TLS files are checked before anything is bound or opened.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(edge::tls::server_config(cert, key)?),
        _ => None,
    };
    if let Some(ca) = &args.tls_ca {
        edge::tls::trust_peer_ca(ca)?;
    }
    let mut cluster = cluster_config(&args, key.as_ref())?;
    let demo_dir = demo::resolve_dir(args.demo_dir.as_deref())?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&args.listen)
        .await
        .map_err(|e| ServeError::Resolve {
            listen: args.listen.clone(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ServeError::Resolve {
            listen: args.listen.clone(),
            reason: "no addresses".into(),
        });
    }
    if let Some(config) = &mut cluster {
        config.bind_ip = addrs
            .first()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified());
    }
    if key.is_none()
        && let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback())
    {
        if !args.insecure {
            return Err(ServeError::InsecureListen { addr: *addr });
        }
        warn!(%addr, "listening without auth on a non-loopback address (--insecure)");
    }
    let listener = TcpListener::bind(addrs.as_slice())
        .await
        .map_err(|source| ServeError::Bind {
            listen: args.listen.clone(),
            source,
        })?;
    let metrics = server_metrics::install()?;
    // A cluster member's state machine does not replay its log at start: its open checks
    // every hash.
    let replayed = args.follow.is_some() || cluster.is_none();
    let store = open_store(&args.data_dir, replayed).map_err(|source| ServeError::Store {
        dir: args.data_dir.display().to_string(),
        source,
    })?;
    info!(data_dir = %args.data_dir.display(), "store opened");
    let node = match (&args.follow, cluster) {
        (None, Some(config)) => {
            info!(node_id = config.node_id, members = ?config.members, "cluster member");
            Node::Cluster(Cluster::open(store, config).await?)
        }
        (None, None) => {
            let mut config = LeaderConfig::default();
            if let Some(every) = args.checkpoint_every {
                config.checkpoint_every_entries = every;
            }
            config.checkpoint_write_bytes_per_s = args.checkpoint_write_mib_per_s << 20;
            config.tail_bytes_max = args.replication_tail_mib << 20;
            Node::Leader(Leader::open(store, config).await?)
        }
        (Some(url), _) => {
            let mut config = FollowerConfig::members(follow_urls(url));
            config.token = args.follow_token.clone();
            config.tail_bytes_max = args.replication_tail_mib << 20;
            info!(leader = %url, "following");
            Node::Follower(Follower::open(store, config).await?)
        }
    };
    let upkeep = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let mut every = tokio::time::interval(server_metrics::UPKEEP_INTERVAL);
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        }
    });
    let auth = key.map(Arc::new);
    let sessions = SessionRuntime::new(
        args.replication_threads
            .map_or_else(replicate::sessions::default_threads, |n| n as usize),
    )
    .map_err(ServeError::Serve)?;
    let replication = node.replicator_with(
        auth.clone(),
        cstore_core::replication::SessionConfig {
            protocol_version_max: args.replication_protocol_max,
            ..edge::session_config(args.replica_timeout_ms)
        },
        sessions.handle(),
    );
    let app = http::router(AppState {
        node: node.clone(),
        auth,
        metrics,
        replication: replication.clone(),
        demo_dir: demo_dir.clone(),
        data_dir: Some(args.data_dir.clone()),
    });
    match &demo_dir {
        Some(dir) => info!(dir = %dir.display(), "serving the demo app at /"),
        None => info!(
            "no built demo app found (web/scripts/build.sh builds it): serving a placeholder at /"
        ),
    }
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    let edge_config = EdgeConfig {
        tls,
        ..EdgeConfig::from_args(&args)
    };
    edge::raise_fd_limit(edge_config.connections_max);
    info!(addr = %local, auth = args.auth_secret.is_some(), tls = edge_config.tls.is_some(), max_connections = edge_config.connections_max, "listening");

    let stop = Arc::new(Notify::new());
    let server = edge::serve(listener, app, edge_config, {
        let stop = Arc::clone(&stop);
        async move { stop.notified().await }
    });
    let mut server = std::pin::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = shutdown => {
            info!("stop requested: no new connections; draining in-flight requests");
            // `notify_one` keeps a permit if the server has not polled its signal yet.
            stop.notify_one();
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    warn!(timeout_s = DRAIN_TIMEOUT.as_secs(), "requests still in flight after the drain timeout; stopping anyway");
                    Ok(())
                }
            }
        }
    };
    upkeep.abort();
    // Replicas get a close frame before the node stops (they reconnect elsewhere or later).
    replication.shutdown().await;
    drop(sessions);
    node.shutdown().await;
    info!("stopped");
    result.map_err(ServeError::Serve)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str) -> ServeArgs {
        ServeArgs {
            data_dir: "/nonexistent/never-opened".into(),
            listen: listen.into(),
            follow: None,
            follow_token: None,
            node_id: None,
            cluster: None,
            election_timeout_ms: crate::cluster::ELECTION_TIMEOUT_MS_DEFAULT,
            heartbeat_ms: crate::cluster::HEARTBEAT_MS_DEFAULT,
            auth_secret: None,
            insecure: false,
            checkpoint_every: None,
            checkpoint_write_mib_per_s: crate::leader::CHECKPOINT_WRITE_MIB_PER_S_DEFAULT,
            replication_tail_mib: crate::replicate::TAIL_MIB_DEFAULT,
            demo_dir: None,
            token_secret_old: None,
            token_secret_old_until: None,
            max_connections: crate::edge::CONNECTIONS_MAX_DEFAULT,
            max_replication_sessions: crate::edge::REPLICATION_SESSIONS_MAX_DEFAULT,
            header_timeout_ms: crate::edge::HEADER_TIMEOUT_MS_DEFAULT,
            idle_timeout_ms: crate::edge::IDLE_TIMEOUT_MS_DEFAULT,
            body_timeout_ms: crate::edge::BODY_TIMEOUT_MS_DEFAULT,
            doc_body_max_bytes: crate::http::DOC_BODY_BYTES_MAX as u64,
            txn_body_max_bytes: crate::http::TXN_BODY_BYTES_MAX as u64,
            frame_max_bytes: cstore_core::replication::FRAME_BYTES_MAX as u64,
            replica_timeout_ms: crate::edge::REPLICA_TIMEOUT_MS_DEFAULT,
            replication_protocol_max: cstore_core::replication::PROTOCOL_VERSION,
            replication_threads: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }

    async fn refused(args: ServeArgs) -> ServeError {
        // Each refusal happens before anything is bound or opened.
        run(args, std::future::pending())
            .await
            .expect_err("must refuse to start")
    }

    #[tokio::test]
    async fn refuses_a_public_address_without_a_secret() {
        for listen in ["0.0.0.0:0", "192.0.2.1:7070", "[::]:0"] {
            let e = refused(args(listen)).await;
            assert!(
                matches!(e, ServeError::InsecureListen { .. }),
                "{listen}: {e}"
            );
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("--insecure"));
        }
    }

    #[tokio::test]
    async fn refuses_follow_an_empty_secret_and_a_bad_address() {
        let mut follow = args("127.0.0.1:0");
        follow.follow = Some("http://127.0.0.1:7070/v1/replicate".into());
        let e = refused(follow).await;
        assert!(matches!(e, ServeError::FollowUrl(_)), "{e}");
        assert_eq!(e.exit_code(), 2);

        let mut empty = args("127.0.0.1:0");
        empty.auth_secret = Some(String::new());
        assert!(matches!(refused(empty).await, ServeError::Secret(_)));

        let e = refused(args("not an address")).await;
        assert!(matches!(e, ServeError::Resolve { .. }), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
