//! The node's role, in one place: a leader (the single writer), a follower (a read replica),
//! or a member of a Raft cluster (whose role changes at run time: see `cluster`).
//!
//! The HTTP layer serves reads from whichever state this node holds and sends writes to the
//! leader (directly, or forwarded over HTTP by a follower). Both roles answer reads the same
//! way: wait until the state holds what the client asked for (`min_lsn`, bounded by a
//! timeout), then run a short closure under the state's read lock. The role is an enum, not a
//! trait object: a read costs one `match`, no boxed future.
//!
//! ```text
//!  read(min_lsn, f) ─┬─ Leader:   wait committed ≥ min_lsn ─► read(f)    (applied ⇒ durable)
//!                    ├─ Follower: wait applied ≥ min_lsn ───► read(f)   (applied ⇒ durable)
//!                    └─ Cluster:  [linearizable: read index from the leader]
//!                                 wait applied ≥ max(min_lsn, index) ► read(f)  (applied ⇒ committed)
//! ```

use std::sync::Arc;
use std::time::Duration;

use cstore_core::doc::IdGenerator;
use cstore_core::error::ErrorCode;
use cstore_core::replication::SessionConfig;
use cstore_core::state::State;
use cstore_core::{Lsn, ReplicaId, Term, Txn};

use crate::auth::TokenKey;
use crate::cluster::{Cluster, ClusterError};
use crate::follower::Follower;
use crate::leader::{Leader, WriteError};
use crate::local::LocalSource;
use crate::replicate::Replicator;

/// Default bound on a `min_lsn` wait.
pub const MIN_LSN_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Longest `min_lsn` wait a client may ask for.
pub const MIN_LSN_TIMEOUT_MS_MAX: u64 = 60_000;

/// This server's role and its state.
#[derive(Clone, Debug)]
pub enum Node {
    /// The leader: writes and reads.
    Leader(Leader),
    /// A read replica: reads from its own copy, writes go to its leader.
    Follower(Follower),
    /// A member of a Raft cluster: reads from its committed copy, writes through Raft.
    Cluster(Cluster),
}

/// A read replica's answer to a write that reached it: its write routes forward writes to the
/// leader before they get here, so this is a guard, not a path (no panic on a routing slip).
fn follower_refuses(follower: &Follower) -> WriteError {
    WriteError::NotLeader {
        leader_url: Some(follower.leader_http_base()),
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFloor {
    /// The state must include this LSN (a write the client made, or saw).
    pub min_lsn: Option<Lsn>,
    /// How long to wait for it.
    pub timeout_ms: u64,
    /// `?consistency=linearizable`: the read must see every write acknowledged before it
    /// began, anywhere in the cluster (a ReadIndex from the leader first).
    pub linearizable: bool,
}

impl Default for ReadFloor {
    fn default() -> ReadFloor {
        ReadFloor {
            min_lsn: None,
            timeout_ms: MIN_LSN_TIMEOUT_MS_DEFAULT,
            linearizable: false,
        }
    }
}

/// Why a read did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The state did not reach `min_lsn` in time.
    #[error("lsn {min_lsn} was not reached within {timeout_ms} ms (this node is at {reached})")]
    MinLsnTimeout {
        /// What the client asked for.
        min_lsn: Lsn,
        /// Where this node's state was when the wait ended.
        reached: Lsn,
        /// The bound.
        timeout_ms: u64,
    },
    /// The leader failed or is stopping.
    #[error(transparent)]
    Leader(#[from] WriteError),
    /// No read index could be had (no leader, or it could not confirm its leadership).
    #[error("a linearizable read needs the leader's read index: {0}")]
    ReadIndex(#[from] ClusterError),
    /// A read replica cannot serve linearizable reads.
    #[error("a read replica cannot serve linearizable reads: ask a cluster member or the leader")]
    NotLinearizable,
}

impl ErrorCode for ReadError {
    fn code(&self) -> &'static str {
        match self {
            ReadError::MinLsnTimeout { .. } => "min_lsn_timeout",
            ReadError::Leader(e) => e.code(),
            ReadError::ReadIndex(e) => e.code(),
            ReadError::NotLinearizable => "consistency_unavailable",
        }
    }
}

/// Role-independent facts for `/v1/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// This node's identity.
    pub node_id: ReplicaId,
    /// The highest term known.
    pub term: Term,
    /// The last entry applied to the state.
    pub applied_lsn: Lsn,
}

impl Node {
    /// Runs `f` on the state once it includes `floor.min_lsn`, and only returns what is durable
    /// on this node.
    pub async fn read<R>(
        &self,
        floor: ReadFloor,
        f: impl FnOnce(&State) -> R,
    ) -> Result<R, ReadError> {
        let timeout = Duration::from_millis(floor.timeout_ms);
        match self {
            Node::Leader(leader) => {
                if let Some(min_lsn) = floor.min_lsn {
                    match tokio::time::timeout(timeout, leader.wait_durable(min_lsn)).await {
                        Ok(result) => result?,
                        Err(_elapsed) => {
                            return Err(ReadError::MinLsnTimeout {
                                min_lsn,
                                reached: leader.status().committed_lsn,
                                timeout_ms: floor.timeout_ms,
                            });
                        }
                    }
                }
                Ok(leader.read(f))
            }
            Node::Follower(follower) => {
                if floor.linearizable {
                    return Err(ReadError::NotLinearizable);
                }
                if let Some(min_lsn) = floor.min_lsn
                    && !follower.wait_applied(min_lsn, timeout).await
                {
                    return Err(ReadError::MinLsnTimeout {
                        min_lsn,
                        reached: follower.applied_lsn(),
                        timeout_ms: floor.timeout_ms,
                    });
                }
                Ok(follower.read(f))
            }
            Node::Cluster(cluster) => {
                let mut wait_for = floor.min_lsn;
                if floor.linearizable {
                    wait_for = wait_for.max(Some(self.read_index().await?));
                }
                if let Some(min_lsn) = wait_for
                    && !cluster.wait_applied(min_lsn, timeout).await
                {
                    return Err(ReadError::MinLsnTimeout {
                        min_lsn,
                        reached: cluster.applied_lsn(),
                        timeout_ms: floor.timeout_ms,
                    });
                }
                Ok(cluster.read(f))
            }
        }
    }

    /// The read index: an LSN at or after every write acknowledged before this call began, so
    /// a replica that has applied it can answer a linearizable read locally (what the browser
    /// replica's `consistency: "linearizable"` waits for). The leader's committed LSN; on a
    /// cluster member Raft's ReadIndex (through the leader); a read replica forwards the
    /// route to its leader and never calls this.
    pub async fn read_index(&self) -> Result<Lsn, ReadError> {
        match self {
            Node::Leader(leader) => Ok(leader.status().committed_lsn),
            Node::Cluster(cluster) => Ok(crate::http::cluster::read_index(cluster).await?),
            Node::Follower(_) => Err(ReadError::NotLinearizable),
        }
    }

    /// Commits a transaction on the node that takes writes here: the leader, or this cluster
    /// member's Raft (the HTTP edge forwards writes to the cluster's leader first). A read
    /// replica's write routes forward to its leader and never call this.
    pub async fn write(&self, txn: Txn) -> Result<Lsn, WriteError> {
        match self {
            Node::Leader(leader) => leader.write(txn).await,
            Node::Cluster(cluster) => cluster.write(txn).await,
            Node::Follower(follower) => Err(follower_refuses(follower)),
        }
    }

    /// Commits several transactions in order, each on its own, sharing batches: one result
    /// each, in order (see `Leader::write_many`).
    pub async fn write_many(&self, txns: Vec<Txn>) -> Vec<Result<Lsn, WriteError>> {
        match self {
            Node::Leader(leader) => leader.write_many(txns).await,
            Node::Cluster(cluster) => cluster.write_many(txns).await,
            Node::Follower(follower) => txns
                .iter()
                .map(|_| Err(follower_refuses(follower)))
                .collect(),
        }
    }

    /// Waits until the write at `lsn` (which this node has seen committed) is durable here.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), WriteError> {
        match self {
            Node::Leader(leader) => leader.wait_durable(lsn).await,
            // Applied entries are committed, so durable on a majority.
            Node::Cluster(_) | Node::Follower(_) => Ok(()),
        }
    }

    /// A new document id.
    pub fn generate_id(&self) -> String {
        match self {
            Node::Leader(leader) => leader.generate_id(),
            Node::Cluster(cluster) => cluster.generate_id(),
            // A read replica's write routes forward to its leader before they need an id; an id
            // asked for here anyway is still a unique one.
            Node::Follower(_) => {
                static IDS: std::sync::OnceLock<std::sync::Mutex<IdGenerator>> =
                    std::sync::OnceLock::new();
                IDS.get_or_init(|| std::sync::Mutex::new(IdGenerator::new(rand::random())))
                    .lock()
                    .expect("poisoned")
                    .next_id(crate::clock::now_ms())
            }
        }
    }

    /// The leader, when this node is the single-node leader.
    pub fn leader(&self) -> Option<&Leader> {
        match self {
            Node::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    /// The cluster member, when this node is one.
    pub fn cluster(&self) -> Option<&Cluster> {
        match self {
            Node::Cluster(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// The follower, when this node is one.
    pub fn follower(&self) -> Option<&Follower> {
        match self {
            Node::Follower(follower) => Some(follower),
            _ => None,
        }
    }

    /// Identity, term and applied position.
    pub fn facts(&self) -> NodeFacts {
        match self {
            Node::Leader(leader) => {
                let status = leader.status();
                NodeFacts {
                    node_id: status.node_id,
                    term: status.term,
                    applied_lsn: status.applied_lsn,
                }
            }
            Node::Follower(follower) => {
                let status = follower.status();
                NodeFacts {
                    node_id: status.node_id,
                    term: status.term,
                    applied_lsn: status.applied_lsn,
                }
            }
            Node::Cluster(cluster) => NodeFacts {
                node_id: cluster.node_id(),
                term: cluster.term(),
                applied_lsn: cluster.applied_lsn(),
            },
        }
    }

    /// The serving side of replication for this node: its local copy (the leader's, or a
    /// relaying follower's), or a cluster member's committed copy.
    pub fn replicator(&self, auth: Option<Arc<TokenKey>>) -> Replicator {
        self.replicator_with(auth, SessionConfig::default(), None)
    }

    /// [`Self::replicator`] with sessions of `session` (`--replica-timeout-ms`), run on
    /// `sessions` (a `SessionRuntime`'s handle; `None`: on the runtime that accepted them).
    pub fn replicator_with(
        &self,
        auth: Option<Arc<TokenKey>>,
        session: SessionConfig,
        sessions: Option<tokio::runtime::Handle>,
    ) -> Replicator {
        let source: Arc<dyn crate::replicate::ReplicationSource> = match self {
            Node::Leader(leader) => {
                let term = leader.term();
                Arc::new(LocalSource::new(
                    Arc::clone(leader.local()),
                    leader.node_id(),
                    move || term,
                ))
            }
            Node::Follower(follower) => Arc::new(follower.relay_source()),
            Node::Cluster(cluster) => {
                let member = cluster.clone();
                Arc::new(LocalSource::new(
                    Arc::clone(cluster.local()),
                    cluster.node_id(),
                    move || member.term(),
                ))
            }
        };
        Replicator::new(source, session, auth, sessions)
    }

    /// Stops the role's background work and closes its store (releasing the directory lock).
    pub async fn shutdown(&self) {
        match self {
            Node::Leader(leader) => leader.shutdown().await,
            Node::Follower(follower) => follower.shutdown().await,
            Node::Cluster(cluster) => cluster.shutdown().await,
        }
    }
}
