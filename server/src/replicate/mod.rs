//! The serving side of replication: `/v1/replicate`, replica acknowledgements, watermarks.
//!
//! Core holds the protocol ([`cstore_core::replication`]); this module does its IO. Each
//! WebSocket connection gets a task that drives one `LeaderSession` ([`connection`]); the
//! sessions read from a [`ReplicationSource`] (any node's local copy: see `crate::local`) and
//! report to one [`Hub`], which tracks every replica's durable LSN and wakes the writes that
//! wait for `?ack=replicas:N` or `?ack=all`.
//!
//! ```text
//!  apply_committed ─► LogTail (ring, bounded) ─► committed watch ─┐
//!                                                                 ▼
//!  GET /v1/replicate ─► endpoint (auth, upgrade) ─► connection task ─► LeaderSession
//!                                                       │ report()        ▲ frames
//!                                                       ▼                 │
//!  POST …?ack=replicas:2 ─► leader.write ─► Hub::wait_acked ◄── Hub (acks, views) ──► status
//! ```
//!
//! Shutdown: [`Replicator::shutdown`] tells every connection to send a `shutting_down` error
//! frame and a close frame, and waits (bounded) until they are gone; the server calls it before
//! stopping the leader.

mod ack;
pub mod connection;
pub mod endpoint;
pub mod hub;
pub mod sessions;
pub mod shared_frames;
pub mod source;
pub mod tail;
pub mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::watch;

use cstore_core::Lsn;
use cstore_core::replication::{Needed, SessionConfig};

pub use ack::{AckPolicy, InvalidAck};
pub use hub::{AckUnknown, AcksHeld, ConnId, Hub, ReplicaView, SessionState};
pub use sessions::SessionRuntime;
pub use shared_frames::{SHARED_FRAME_SLOTS, SharedFrames};
pub use source::{ReplicationSource, SnapshotCache, SourceError};
pub use tail::{LogTail, TAIL_MIB_DEFAULT, TailError};

use crate::auth::TokenKey;

/// How long [`Replicator::shutdown`] waits for connections to close.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

struct Inner {
    source: Arc<dyn ReplicationSource>,
    session: SessionConfig,
    hub: Hub,
    auth: Option<Arc<TokenKey>>,
    stopping: watch::Sender<bool>,
    live: watch::Sender<usize>,
    /// Where connection tasks run (`None`: the runtime that accepted them).
    sessions: Option<tokio::runtime::Handle>,
}

/// The serving side of replication of one node; cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("connections", &self.inner.hub.connections())
            .finish()
    }
}

impl Replicator {
    /// Serves `source` to replicas with sessions of `session`; `auth` is the token key that
    /// `/v1/replicate` checks (scope `read`), `None` to allow everyone. Connection tasks run on
    /// `sessions` (a [`SessionRuntime`]'s handle), or with `None` on the runtime that accepted
    /// them.
    pub fn new(
        source: Arc<dyn ReplicationSource>,
        session: SessionConfig,
        auth: Option<Arc<TokenKey>>,
        sessions: Option<tokio::runtime::Handle>,
    ) -> Replicator {
        Replicator {
            inner: Arc::new(Inner {
                source,
                session,
                hub: Hub::default(),
                auth,
                stopping: watch::channel(false).0,
                live: watch::channel(0).0,
                sessions,
            }),
        }
    }

    /// Where connection tasks run, `None` for the runtime that accepted them.
    pub(crate) fn sessions_handle(&self) -> Option<&tokio::runtime::Handle> {
        self.inner.sessions.as_ref()
    }

    /// The node sessions stream from.
    pub fn source(&self) -> &Arc<dyn ReplicationSource> {
        &self.inner.source
    }

    /// Sessions and acknowledgements.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The limits of each session.
    pub fn session_config(&self) -> &SessionConfig {
        &self.inner.session
    }

    /// The token key `/v1/replicate` checks.
    pub fn auth(&self) -> Option<&Arc<TokenKey>> {
        self.inner.auth.as_ref()
    }

    /// Waits until a write at `lsn` satisfies `policy` (`local`: at once; the caller has the
    /// LSN, so it is durable on this node), for at most `timeout`.
    pub async fn wait_acked(
        &self,
        lsn: Lsn,
        policy: AckPolicy,
        timeout: Duration,
    ) -> Result<(), AckUnknown> {
        let needed = match policy {
            AckPolicy::Local => return Ok(()),
            AckPolicy::Replicas(n) => Needed::Replicas(n),
            AckPolicy::All => Needed::All,
        };
        let started = std::time::Instant::now();
        let result = self.inner.hub.wait_acked(lsn, needed, timeout).await;
        metrics::histogram!("cstore_ack_wait_seconds").record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("cstore_ack_unknown_total").increment(1);
        }
        result
    }

    /// `replicas` of `/v1/status`: every connection with its replica's id, address, durable
    /// LSN, lag and protocol state.
    pub fn status_replicas(&self) -> Value {
        let committed = self.inner.source.tail().last().lsn;
        let replicas: Vec<Value> = self
            .inner
            .hub
            .replicas(committed)
            .into_iter()
            .map(|r| {
                json!({
                    "id": r.id.map(|id| id.to_string()),
                    "addr": r.addr.map(|a| a.to_string()),
                    "acked_lsn": r.acked_lsn.0,
                    "lag": r.lag,
                    "state": r.state.as_str(),
                    "protocol_version": r.protocol_version,
                })
            })
            .collect();
        Value::Array(replicas)
    }

    /// `watermarks` of `/v1/status`: the committed LSN and, for each n from 1 to the number of
    /// replicas, the highest LSN durable on at least n of them.
    pub fn status_watermarks(&self) -> Value {
        let durable_on: Map<String, Value> = self
            .inner
            .hub
            .durable_on()
            .into_iter()
            .enumerate()
            .map(|(i, lsn)| ((i + 1).to_string(), json!(lsn.0)))
            .collect();
        json!({
            "committed": self.inner.source.tail().last().lsn.0,
            "durable_on": durable_on,
        })
    }

    /// Prometheus text for the per-replica series, whose label set is exactly the connected
    /// replicas (a registry gauge would keep a series for every replica ever seen).
    pub fn render_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP cstore_replica_lag_entries Committed entries a connected replica does not hold durably.\n\
             # TYPE cstore_replica_lag_entries gauge\n",
        );
        let committed = self.inner.source.tail().last().lsn;
        for replica in self.inner.hub.replicas(committed) {
            if let Some(id) = replica.id {
                out.push_str(&format!(
                    "cstore_replica_lag_entries{{replica=\"{id}\"}} {}\n",
                    replica.lag
                ));
            }
        }
        out
    }

    /// Closes every replication connection (error frame `shutting_down`, then a close frame)
    /// and every write channel (close 1001), and waits for them, at most [`SHUTDOWN_WAIT`]:
    /// a process that exits first resets connections whose close frame was not sent yet.
    /// Later connections are refused.
    pub async fn shutdown(&self) {
        self.inner.stopping.send_replace(true);
        let mut live = self.inner.live.subscribe();
        if tokio::time::timeout(SHUTDOWN_WAIT, live.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::warn!(
                left = *live.borrow(),
                "replication connections still open after the shutdown wait"
            );
        }
    }

    /// True once [`Self::shutdown`] began.
    pub fn is_stopping(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// Counts a live connection until dropped (and then forgets it in the hub).
    pub(crate) fn live_guard(&self, conn: ConnId) -> LiveGuard {
        self.counted(Some(conn))
    }

    /// Counts a write channel (`GET /v1/write`, no hub entry) as live until dropped, so that
    /// [`Self::shutdown`] waits for its close frame.
    pub(crate) fn channel_guard(&self) -> LiveGuard {
        self.counted(None)
    }

    fn counted(&self, conn: Option<ConnId>) -> LiveGuard {
        self.inner.live.send_modify(|n| *n += 1);
        LiveGuard {
            replicator: self.clone(),
            conn,
        }
    }
}

/// A connection counted as live; dropping it closes the connection's hub entry, if it has one.
pub(crate) struct LiveGuard {
    replicator: Replicator,
    conn: Option<ConnId>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.conn {
            self.replicator.inner.hub.close(conn);
        }
        self.replicator.inner.live.send_modify(|n| *n -= 1);
    }
}
