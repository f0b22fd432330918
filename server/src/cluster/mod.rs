//! Cluster mode: `cstore serve --node-id N --cluster 1=URL,2=URL,3=URL`, a Raft group of
//! native servers (openraft) that elects its leader and fails over by itself.
//!
//! ```text
//!   HTTP write ─► (not leader? forwarded to the leader by http::cluster) ─► Cluster::write
//!        └─► openraft client_write(Proposal) ─► log_store (file WAL, fsync) ─► network ─► peers
//!                 majority durable ─► committed ─► state_machine::apply ─► Outcome ─► reply
//!   HTTP read ─► Local copy (committed entries only; `min_lsn`, or a ReadIndex first)
//!   /v1/replicate ─► local::LocalSource over the same Local copy (read replicas, browsers)
//! ```
//!
//! Three modules with one narrow interface each (openraft's Engine/Command split is the
//! model): consensus is openraft with our log store, state machine and network
//! (`log_store.rs`, `state_machine.rs`, `network.rs`); the fan-out to replicas reads the local
//! copy's tail (`source.rs`); the HTTP edge (`http::cluster`) only calls [`Cluster`].
//!
//! How openraft gives us what the product promises:
//! - **Elections and failover**: openraft's election timer; our defaults come from
//!   measurements on 2 loaded cores (see ARCHITECTURE.md).
//! - **No disruption by a rejoining member**: pre-vote (`enable_pre_vote`), so a member that
//!   was cut off cannot raise the term of a healthy cluster.
//! - **No split brain**: a leader that has not heard from a quorum within the election timeout
//!   steps down (openraft's CheckQuorum, built in), so writes sent to it fail with
//!   `not_leader`; terms fence every old leader's messages.
//! - **Acknowledged means majority durable**: openraft commits an entry once a quorum has
//!   flushed it (our log store reports the flush after `fdatasync`), and the state machine
//!   answers the writer only when it applies that committed entry.

pub mod committed;
pub mod entry;
pub mod log_store;
pub mod network;
pub mod proposer;
pub mod snapshot_transfer;
pub mod source;
pub mod state_machine;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use tracing::{info, warn};

use cstore_core::doc::IdGenerator;
use cstore_core::error::ErrorCode;
use cstore_core::state::State;
use cstore_core::{LogPosition, Lsn, ReplicaId, Term, Txn};

use crate::leader::WriteError;
use crate::wal::FileStore;
use log_store::{LogOpenError, LogShared, LogStore};
use network::Network;
use state_machine::{Local, StateMachine};
use types::{Proposal, Raft};

/// Default lower bound of the election timeout, in ms (see ARCHITECTURE.md for why).
pub const ELECTION_TIMEOUT_MS_DEFAULT: u64 = 200;
/// Default heartbeat interval, in ms.
pub const HEARTBEAT_MS_DEFAULT: u64 = 50;
/// How often the leader looks for TTL deadlines that passed with no write.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// How long a write waits for its entry to commit and apply before answering `ack_unknown`.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Transactions of one `write_many` handed to the proposer before their checks are awaited.
pub const WRITE_MANY_CHUNK: usize = 64;

/// Tunables of a cluster member.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This member's id (`--node-id`).
    pub node_id: u64,
    /// The initial members and their HTTP base URLs (`--cluster`).
    pub members: BTreeMap<u64, String>,
    /// Election timeout: a random value in `[t, 1.5 t)`; a follower starts an election once
    /// it has not heard from a leader for the leader's lease (`1.5 t`) plus that timeout.
    pub election_timeout_ms: u64,
    /// How often the leader sends heartbeats.
    pub heartbeat_ms: u64,
    /// Bearer token (scope `admin`) for Raft messages and forwarded requests, when the cluster
    /// has a secret.
    pub token: Option<String>,
    /// Bound of the replication tail (for read replicas and browsers), in bytes.
    pub tail_bytes_max: u64,
    /// Take a snapshot (and let openraft compact the log) after this many entries.
    pub snapshot_every_entries: u64,
    /// The source address of connections to other members: the IP this member listens on,
    /// so peers (and firewalls between them) see the member's own address.
    pub bind_ip: Option<std::net::IpAddr>,
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    /// The log store refused the data directory.
    #[error(transparent)]
    Log(#[from] LogOpenError),
    /// The snapshot in the data directory does not load.
    #[error("the snapshot does not load: {0}")]
    Snapshot(String),
    /// The configuration is not one openraft accepts.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// openraft did not start.
    #[error("raft did not start: {0}")]
    Raft(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Why a cluster operation (transfer, add, remove) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The id names no member.
    #[error("node {0} is not a member of the cluster")]
    UnknownMember(u64),
    /// A node with this id is already a member.
    #[error("node {0} is already a member of the cluster")]
    DuplicateMember(u64),
    /// The change would leave no voter.
    #[error("removing node {0} would leave the cluster without a voter")]
    LastVoter(u64),
    /// The URL is not an http:// base URL.
    #[error("{0:?} is not an http://host:port or https://host:port URL")]
    InvalidUrl(String),
    /// Only the leader can do it, and this member is not the leader.
    #[error("this member is not the leader{}", leader_hint(.leader_url))]
    NotLeader {
        /// The leader this member knows of.
        leader_url: Option<String>,
    },
    /// openraft refused or failed.
    #[error("the cluster did not complete the change: {0}")]
    Failed(String),
    /// A Raft message from a member of another cluster.
    #[error("a message from cluster {theirs} reached a member of cluster {ours}")]
    WrongCluster {
        /// This member's cluster.
        ours: String,
        /// The sender's.
        theirs: String,
    },
    /// A piece of a snapshot transfer was refused.
    #[error(transparent)]
    Transfer(#[from] snapshot_transfer::TransferError),
}

fn leader_hint(url: &Option<String>) -> String {
    url.as_ref()
        .map(|u| format!(" (the leader is {u})"))
        .unwrap_or_else(|| " (no leader is known yet)".into())
}

impl ErrorCode for ClusterError {
    fn code(&self) -> &'static str {
        match self {
            ClusterError::UnknownMember(_) => "unknown_member",
            ClusterError::DuplicateMember(_) => "duplicate_member",
            ClusterError::LastVoter(_) => "last_voter",
            ClusterError::InvalidUrl(_) => "invalid_url",
            ClusterError::NotLeader { .. } => "not_leader",
            ClusterError::Failed(_) => "cluster_change_failed",
            ClusterError::WrongCluster { .. } => "wrong_cluster",
            ClusterError::Transfer(e) => e.code(),
        }
    }
}

/// One member of `/v1/status`'s `members`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: u64,
    /// Its HTTP base URL.
    pub url: String,
    /// `voter` or `learner`.
    pub kind: &'static str,
    /// On the leader: the last LSN it holds as the leader knows it.
    pub matched_lsn: Option<u64>,
    /// On the leader: milliseconds since it last answered a heartbeat.
    pub last_contact_ms: Option<u64>,
}

/// What `/v1/status` reports about a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This member's id.
    pub node_id: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: &'static str,
    /// The current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// That leader's URL.
    pub leader_url: Option<String>,
    /// Members of the current configuration.
    pub members: Vec<MemberStatus>,
    /// The last entry in its log.
    pub last_lsn: Lsn,
    /// The last entry it knows committed.
    pub committed_lsn: Lsn,
    /// The last entry applied to its state (and the hash of it).
    pub applied: LogPosition,
    /// The cluster's identity (the hash of its first entry), once known.
    pub cluster_id: Option<String>,
    /// Why the cluster was not initialized (on the lowest-id member), if that is the case.
    pub init_error: Option<String>,
    /// The state of its log's storage: `ok`, `disk_full` or `failed`.
    pub storage: &'static str,
}

struct Inner {
    raft: Raft,
    local: Arc<Local>,
    log: Arc<LogShared>,
    config: ClusterConfig,
    http: reqwest::Client,
    ids: Mutex<IdGenerator>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Writes waiting to be checked and proposed, in arrival order (see `proposer.rs`).
    queue: tokio::sync::mpsc::Sender<proposer::Pending>,
    /// The task that drains `queue`.
    proposer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The task that proposes TTL ticks while this member leads.
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The term in which this member, as leader, has applied every earlier entry.
    ready_term: std::sync::atomic::AtomicU64,
    /// Why the lowest-id member does not initialize the cluster, if it does not.
    init_error: Mutex<Option<String>>,
    /// The receiving end of snapshot transfers from the leader.
    receiver: Arc<snapshot_transfer::Receiver>,
}

/// A member's answer to another's handshake before the cluster is initialized.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// It belongs to a cluster already.
    pub initialized: bool,
    /// It was started with the same `--cluster` list.
    pub members_match: bool,
    /// Its cluster's identity, if it has one.
    pub cluster_id: Option<String>,
}

/// A cheap, cloneable handle to this cluster member.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.inner.config.node_id)
            .finish()
    }
}

/// openraft's configuration for a member with these tunables (the deterministic simulation in
/// `server/tests/cluster_sim` runs the same).
pub fn raft_config(config: &ClusterConfig) -> Result<openraft::Config, ClusterStartError> {
    let raft = openraft::Config {
        cluster_name: "cstore".into(),
        election_timeout_min: config.election_timeout_ms,
        election_timeout_max: config.election_timeout_ms * 3 / 2,
        heartbeat_interval: config.heartbeat_ms,
        enable_pre_vote: Some(true),
        // A restarted leader must win an election in a new term, never resume its old one: our
        // log store makes entries readable (and replicable) before they are synced, so a leader
        // that crashed may come back without entries its followers hold, and resuming the term
        // would reuse their (term, index) for other entries. Found by the cluster simulation
        // (server/tests/cluster_sim, e.g. CSTORE_SIM_SEED=2). The committed index we save
        // (committed.rs) does not help here: it is saved lazily and clamped to the log that
        // survived, so it says nothing about entries of the term that were lost.
        enable_leader_restore: Some(false),
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
        // Keep some entries behind a snapshot, so a member a little behind catches up from
        // entries rather than a whole snapshot.
        max_in_snapshot_log_to_keep: config.snapshot_every_entries.min(1_000),
        ..openraft::Config::default()
    };
    raft.validate()
        .map_err(|e| ClusterStartError::Config(e.to_string()))
}

impl Cluster {
    /// Opens this member over `store` and starts openraft. On a fresh cluster the member with
    /// the lowest id initializes it with `config.members`, unless another member already
    /// belongs to a cluster; restarting never initializes again.
    pub async fn open(
        store: FileStore,
        config: ClusterConfig,
    ) -> Result<Cluster, ClusterStartError> {
        let data_dir = store.dir().to_path_buf();
        let log = LogShared::open(store, config.node_id)?;
        // After the log store accepted the directory as this member's.
        let receiver = snapshot_transfer::Receiver::open(&data_dir)
            .map_err(|e| ClusterStartError::Snapshot(e.to_string()))?;
        let (state, log_id) = match log
            .current_snapshot()
            .map_err(|e| ClusterStartError::Snapshot(e.to_string()))?
        {
            Some((snapshot, log_id)) => {
                let state = State::from_snapshot(&snapshot)
                    .map_err(|e| ClusterStartError::Snapshot(e.to_string()))?;
                // The only decode of the snapshot at start: openraft asks for the current
                // snapshot's meta (twice) while it starts, and gets this.
                log.note_snapshot_meta(state_machine::snapshot_meta_of(&state, log_id));
                (state, Some(log_id))
            }
            None => (State::new(), None),
        };
        if let Some(committed) = log.recovered_committed()
            && log_id.is_none_or(|at| at.index() < committed.index())
        {
            // openraft re-applies these in `Raft::new`, before any leader is heard from.
            info!(
                from_lsn = log_id.map_or(1, |at| entry::lsn_of(at.index()).0 + 1),
                to_lsn = entry::lsn_of(committed.index()).0,
                "re-applying the log up to the saved committed index"
            );
        }
        let local = Arc::new(Local::new(state, log_id, config.tail_bytes_max));
        let http = crate::edge::tls::http_client_builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(30))
            .local_address(config.bind_ip)
            .build()
            .map_err(|e| ClusterStartError::Client(e.to_string()))?;
        let raft_config = Arc::new(raft_config(&config)?);
        let network = Network::new(http.clone(), config.token.clone(), Arc::clone(&log));
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network,
            LogStore::new(Arc::clone(&log)),
            StateMachine::new(Arc::clone(&local), Arc::clone(&log)),
        )
        .await
        .map_err(|e| ClusterStartError::Raft(e.to_string()))?;
        let (queue, pending) = tokio::sync::mpsc::channel(proposer::QUEUE_MAX);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                raft,
                local,
                log,
                config,
                http,
                ids: Mutex::new(IdGenerator::new(rand::random())),
                watcher: Mutex::new(None),
                queue,
                proposer_task: Mutex::new(None),
                ticker: Mutex::new(None),
                ready_term: std::sync::atomic::AtomicU64::new(0),
                init_error: Mutex::new(None),
                receiver: Arc::new(receiver),
            }),
        };
        let proposer_task = tokio::spawn(cluster.clone().propose_loop(pending));
        *cluster.inner.proposer_task.lock().expect("poisoned") = Some(proposer_task);
        let ticker = tokio::spawn(cluster.clone().tick_loop());
        *cluster.inner.ticker.lock().expect("poisoned") = Some(ticker);
        let watcher = tokio::spawn(cluster.clone().watch_roles());
        *cluster.inner.watcher.lock().expect("poisoned") = Some(watcher);
        tokio::spawn(cluster.clone().initialize_when_fresh());
        Ok(cluster)
    }

    /// Initializes a fresh cluster from the lowest-id member once it is sure that every other
    /// member answers, belongs to no cluster yet and was started with the same member list.
    /// Members that disagree on the list are a configuration error: nothing is initialized,
    /// and `/v1/status` says why (`init_error`) until the operator fixes the lists.
    async fn initialize_when_fresh(self) {
        let config = &self.inner.config;
        let lowest = config.members.keys().next().copied();
        if lowest != Some(config.node_id) {
            return;
        }
        loop {
            match self.inner.raft.is_initialized().await {
                Ok(false) => {}
                _ => return,
            }
            let mut all_fresh = true;
            let mut disagreeing = Vec::new();
            for (id, url) in &config.members {
                if *id == config.node_id {
                    continue;
                }
                match self.peer_hello(url).await {
                    Some(hello) if hello.initialized => {
                        info!(
                            peer = id,
                            "a member already belongs to a cluster: not initializing"
                        );
                        *self.inner.init_error.lock().expect("poisoned") = None;
                        return;
                    }
                    Some(hello) if !hello.members_match => disagreeing.push(*id),
                    Some(_) => {}
                    None => all_fresh = false,
                }
            }
            let error = (!disagreeing.is_empty()).then(|| {
                format!(
                    "members {disagreeing:?} were started with a different --cluster list; \
                     every member must get the same list"
                )
            });
            if let Some(error) = &error {
                warn!(%error, "not initializing the cluster");
            }
            *self.inner.init_error.lock().expect("poisoned") = error.clone();
            if all_fresh && error.is_none() {
                let members: BTreeMap<u64, BasicNode> = config
                    .members
                    .iter()
                    .map(|(id, url)| (*id, BasicNode { addr: url.clone() }))
                    .collect();
                match self.inner.raft.initialize(members).await {
                    Ok(()) => info!(members = ?config.members, "cluster initialized"),
                    Err(e) => warn!(error = %e, "cluster initialization refused"),
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asks the member at `url` whether it belongs to a cluster and shares our member list;
    /// `None` when it does not answer.
    async fn peer_hello(&self, url: &str) -> Option<Hello> {
        let mut request = self
            .inner
            .http
            .post(format!("{}/v1/raft/hello", url.trim_end_matches('/')))
            .json(&serde_json::json!({ "members": self.inner.config.members }))
            .timeout(Duration::from_secs(1));
        if let Some(token) = &self.inner.config.token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.json().await.ok()
    }

    /// Answers another member's [`Self::peer_hello`]: whether this member belongs to a
    /// cluster, and whether `members` is the list it was started with.
    pub async fn hello(&self, members: &BTreeMap<u64, String>) -> Hello {
        let initialized = self.inner.raft.is_initialized().await.unwrap_or(true);
        Hello {
            initialized,
            members_match: *members == self.inner.config.members,
            cluster_id: self.cluster_id(),
        }
    }

    /// The cluster's identity (the hash of its first entry), once this member has applied it.
    pub fn cluster_id(&self) -> Option<String> {
        self.inner.log.cluster_id()
    }

    /// While this member leads, proposes an empty transaction (a tick carrying the leader's
    /// clock) whenever a document's TTL deadline has passed with no write to carry it, so
    /// expiry happens at the same LSN on every member and replica, as on a single leader.
    async fn tick_loop(self) {
        let mut every = tokio::time::interval(TICK_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if !self.is_leader() {
                continue;
            }
            let due = self
                .read(|state| state.next_expiry())
                .is_some_and(|at| at <= crate::clock::now_ms());
            if due && let Err(e) = self.write(Txn::tick()).await {
                warn!(error = %e, "a TTL tick was not committed");
            }
        }
    }

    /// Counts elections and leader changes, and keeps the role gauges current.
    async fn watch_roles(self) {
        let mut metrics = self.inner.raft.metrics();
        let mut last_state = ServerState::Learner;
        let mut last_leader: Option<u64> = None;
        loop {
            let (state, leader, term, last, committed) = {
                let m = metrics.borrow_and_update();
                (
                    m.state,
                    m.current_leader,
                    m.current_term,
                    m.last_log_index.map_or(0, |i| i + 1),
                    m.local_committed
                        .max(m.cluster_committed)
                        .map_or(0, |id| id.index() + 1),
                )
            };
            if state != last_state {
                // Proposals in flight belong to one term of leadership.
                self.inner.local.inflight.clear();
                if state == ServerState::Candidate {
                    metrics::counter!("cstore_cluster_elections_started_total").increment(1);
                }
                if state == ServerState::Leader {
                    metrics::counter!("cstore_cluster_elections_won_total").increment(1);
                }
                info!(node = self.inner.config.node_id, from = ?last_state, to = ?state, term, "role changed");
                last_state = state;
            }
            if leader != last_leader {
                if leader.is_some() {
                    metrics::counter!("cstore_cluster_leader_changes_total").increment(1);
                }
                last_leader = leader;
            }
            metrics::gauge!("cstore_cluster_term").set(term as f64);
            metrics::gauge!("cstore_cluster_node_id").set(self.inner.config.node_id as f64);
            metrics::gauge!("cstore_cluster_last_lsn").set(last as f64);
            metrics::gauge!("cstore_cluster_committed_lsn").set(committed as f64);
            for (name, role) in [
                ("leader", ServerState::Leader),
                ("follower", ServerState::Follower),
                ("candidate", ServerState::Candidate),
                ("learner", ServerState::Learner),
            ] {
                metrics::gauge!("cstore_cluster_role", "role" => name)
                    .set(f64::from(u8::from(state == role)));
            }
            metrics::gauge!("cstore_cluster_is_leader")
                .set(f64::from(u8::from(state == ServerState::Leader)));
            metrics::gauge!("cstore_cluster_leader_id").set(leader.map_or(-1.0, |l| l as f64));
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// openraft's handle (for the `/v1/raft/…` routes).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The receiving end of snapshot transfers (for the `/v1/raft/snapshot/…` routes).
    pub fn snapshot_receiver(&self) -> &Arc<snapshot_transfer::Receiver> {
        &self.inner.receiver
    }

    /// The member's local copy.
    pub fn local(&self) -> &Arc<Local> {
        &self.inner.local
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The HTTP client for requests to other members.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// This member's id.
    pub fn node_id(&self) -> ReplicaId {
        ReplicaId(self.inner.config.node_id)
    }

    /// The current term.
    pub fn term(&self) -> Term {
        Term(self.inner.raft.metrics().borrow_watched().current_term)
    }

    /// True when this member leads now: openraft's leader, and a majority acknowledged it
    /// within the leader lease (CheckQuorum). A leader cut off from its majority keeps
    /// openraft's `Leader` state (it would resume if the majority came back before electing
    /// another), but refuses writes and says it does not lead.
    pub fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        m.state == ServerState::Leader && self.lease_valid(&m)
    }

    /// True when this member leads; when openraft has it leading but its lease lapsed, first
    /// waits up to two election timeouts for a quorum to renew the lease (as the HTTP layer
    /// does before it forwards a write). A quorum that answers late, its members busy with a
    /// snapshot on loaded cores, is no reason to refuse a write; a leader cut off from its
    /// majority still refuses, that much later.
    async fn still_leads(&self) -> bool {
        if self.is_leader() {
            return true;
        }
        let wait = Duration::from_millis(self.inner.config.election_timeout_ms * 2);
        self.wait_for_leader(wait)
            .await
            .is_some_and(|(id, _)| id == self.inner.config.node_id)
    }

    fn lease_valid(&self, m: &openraft::RaftMetrics<types::ClusterTypes>) -> bool {
        let lease = Duration::from_millis(self.inner.config.election_timeout_ms * 3 / 2);
        // A single voter is its own quorum.
        let alone = m.membership_config.membership().voter_ids().count() == 1;
        alone
            || m.last_quorum_acked
                .as_ref()
                .is_some_and(|at| (**at).elapsed() < lease)
    }

    /// The leader this member knows of, with its URL (not itself while it has lost its
    /// majority).
    pub fn leader(&self) -> Option<(u64, String)> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        if m.state == ServerState::Leader && !self.lease_valid(&m) {
            return None;
        }
        let id = m.current_leader?;
        let url = m.membership_config.get_node(&id)?.addr.clone();
        Some((id, url))
    }

    /// Waits up to `timeout` for a leader to be known (during an election there is none).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<(u64, String)> {
        let mut metrics = self.inner.raft.metrics();
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(leader) = self.leader() {
                    return Some(leader);
                }
                if metrics.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        found.ok().flatten()
    }

    /// A new document id.
    pub fn generate_id(&self) -> String {
        self.inner
            .ids
            .lock()
            .expect("poisoned")
            .next_id(crate::clock::now_ms())
    }

    /// Commits a transaction through Raft: its LSN once a majority has it durable and this
    /// member applied it, or why not. The transaction is checked on the state first (see
    /// `proposer.rs`), so one that would not apply is refused without entering the log. On a
    /// member that is not the leader this fails with `not_leader` (the HTTP edge forwards
    /// writes before they get here).
    pub async fn write(&self, txn: Txn) -> Result<Lsn, WriteError> {
        self.ready_to_propose().await?;
        let checked = self.submit(txn).await?;
        self.outcome(checked).await
    }

    /// Commits several transactions in this order, each on its own (one may be refused and
    /// the next commit), one result each. They go to the proposer in chunks of
    /// [`WRITE_MANY_CHUNK`] (one check pass each: the pass re-applies every proposal in flight,
    /// so one transaction per pass would cost the square of the batch), and no chunk goes after
    /// one with a transaction refused for a passing reason (no leader, no quorum, a new term):
    /// a later write of a client must not commit while an earlier one was not written, or the
    /// retry of the earlier one would be taken for a duplicate of what its origin already
    /// recorded. A retry of an attempt still in flight is settled before the next chunk. The
    /// outcomes are awaited together, so the writes share Raft's appends and fsyncs.
    pub async fn write_many(&self, txns: Vec<Txn>) -> Vec<Result<Lsn, WriteError>> {
        if let Err(error) = self.ready_to_propose().await {
            return vec![Err(error); txns.len()];
        }
        let term = self.term();
        // Proposed (outcome to await), or already answered.
        let mut checked: Vec<Result<proposer::Checked, Result<Lsn, WriteError>>> =
            Vec::with_capacity(txns.len());
        let mut stopped: Option<WriteError> = None;
        let mut txns = txns.into_iter().peekable();
        while txns.peek().is_some() {
            if stopped.is_none() && self.term() != term {
                stopped = Some(WriteError::NotLeader {
                    leader_url: self.leader().map(|(_, url)| url),
                });
            }
            if let Some(error) = &stopped {
                checked.extend(txns.by_ref().map(|_| Err(Err(error.clone()))));
                break;
            }
            let mut replies = Vec::with_capacity(WRITE_MANY_CHUNK);
            for txn in txns.by_ref().take(WRITE_MANY_CHUNK) {
                replies.push(self.submit(txn).await);
            }
            for reply in replies {
                let answer = match reply {
                    Ok(replied) => replied.await.map_err(|_| WriteError::ShuttingDown),
                    Err(error) => Err(error),
                };
                let done = match answer {
                    Ok(proposed @ proposer::Checked::Proposed(_)) => {
                        checked.push(Ok(proposed));
                        continue;
                    }
                    Ok(duplicate @ proposer::Checked::InFlightDuplicate(_)) => {
                        self.settle(duplicate).await
                    }
                    Ok(proposer::Checked::Refused(error)) | Err(error) => Err(error),
                };
                if let Err(error) = &done
                    && !matches!(error, WriteError::Rejected(_))
                {
                    stopped.get_or_insert(error.clone());
                }
                checked.push(Err(done));
            }
        }
        let mut results = Vec::with_capacity(checked.len());
        for checked in checked {
            results.push(match checked {
                Ok(proposed) => self.settle(proposed).await,
                Err(done) => done,
            });
        }
        results
    }

    /// Hands `txn` to the proposer; its answer says whether it was proposed.
    async fn submit(
        &self,
        txn: Txn,
    ) -> Result<tokio::sync::oneshot::Receiver<proposer::Checked>, WriteError> {
        let (reply, replied) = tokio::sync::oneshot::channel();
        let proposal = Proposal {
            timestamp: crate::clock::now_ms(),
            txn,
        };
        self.inner
            .queue
            .send(proposer::Pending { proposal, reply })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        Ok(replied)
    }

    /// Waits for the outcome of a submitted write.
    async fn outcome(
        &self,
        replied: tokio::sync::oneshot::Receiver<proposer::Checked>,
    ) -> Result<Lsn, WriteError> {
        let checked = replied.await.map_err(|_| WriteError::ShuttingDown)?;
        self.settle(checked).await
    }

    /// The outcome of a checked write. A retry of a write still in flight waits for that
    /// write, then is answered from the applied state (a duplicate with the first write's LSN).
    async fn settle(&self, mut checked: proposer::Checked) -> Result<Lsn, WriteError> {
        for _ in 0..WRITE_TIMEOUT.as_millis() / 50 {
            let answer = match checked {
                proposer::Checked::Refused(error) => return Err(error),
                proposer::Checked::InFlightDuplicate(returned) => {
                    self.wait_applied(self.applied_lsn().next(), Duration::from_millis(50))
                        .await;
                    let replied = self.submit(returned.txn).await?;
                    checked = replied.await.map_err(|_| WriteError::ShuttingDown)?;
                    continue;
                }
                proposer::Checked::Proposed(answer) => answer,
            };
            return match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
                Err(_elapsed) => Err(WriteError::OutcomeUnknown(format!(
                    "the write did not commit within {} s; it may still commit",
                    WRITE_TIMEOUT.as_secs()
                ))),
                Ok(Err(_dropped)) => Err(WriteError::OutcomeUnknown(
                    "raft stopped before the write's outcome was known".into(),
                )),
                Ok(Ok(Ok(response))) => {
                    let outcome = response.response();
                    match &outcome.rejection {
                        None => Ok(outcome.lsn),
                        Some(rejection) => Err(WriteError::Rejected(rejection.clone())),
                    }
                }
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(forward)))) => {
                    // Leadership was lost before the entry committed: it may still commit
                    // under the next leader, or be truncated.
                    Err(WriteError::OutcomeUnknown(format!(
                        "leadership moved to {} while the write was in flight; it may still commit",
                        forward
                            .leader_node
                            .map_or_else(|| "an unknown member".to_string(), |n| n.addr)
                    )))
                }
                Ok(Ok(Err(other))) => Err(WriteError::OutcomeUnknown(other.to_string())),
            };
        }
        Err(WriteError::OutcomeUnknown(
            "an earlier write with this origin is still in flight".into(),
        ))
    }

    /// Drains the queue of writes: takes every write waiting (up to a batch), checks them in
    /// one pass on the state with the proposals in flight, hands the ones that apply to Raft in
    /// that order, and answers each writer (see `proposer.rs`).
    async fn propose_loop(self, mut queue: tokio::sync::mpsc::Receiver<proposer::Pending>) {
        let local = Arc::clone(&self.inner.local);
        while let Some(first) = queue.recv().await {
            let room = proposer::IN_FLIGHT_MAX
                .saturating_sub(local.inflight.len())
                .max(1);
            let mut batch = vec![first];
            while batch.len() < room.min(proposer::BATCH_MAX) {
                match queue.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            if !self.still_leads().await {
                let leader_url = self.leader().map(|(_, url)| url);
                for pending in batch {
                    let _ = pending
                        .reply
                        .send(proposer::Checked::Refused(WriteError::NotLeader {
                            leader_url: leader_url.clone(),
                        }));
                }
                continue;
            }
            let (mut entries, replies): (Vec<proposer::Speculative>, Vec<_>) = batch
                .into_iter()
                .map(|p| (proposer::Speculative::new(p.proposal), p.reply))
                .unzip();
            let checked: Vec<Result<(), Option<cstore_core::state::Rejection>>> = local
                .copy
                .write(|state| {
                    local
                        .inflight
                        .check_batch(state, &mut entries)
                        .into_iter()
                        .map(|result| {
                            result.map_err(|rejection| {
                                (!proposer::is_inflight_duplicate(&rejection, state))
                                    .then_some(rejection)
                            })
                        })
                        .collect()
                })
                .await;
            // After a proposal fails to reach Raft, none after it in this pass is proposed: a
            // later write must not commit while an earlier one was not written.
            let mut failed: Option<WriteError> = None;
            for ((entry, reply), result) in entries.into_iter().zip(replies).zip(checked) {
                if let Some(error) = &failed {
                    let _ = reply.send(proposer::Checked::Refused(error.clone()));
                    continue;
                }
                let answer = match result {
                    Err(Some(rejection)) => {
                        proposer::Checked::Refused(WriteError::Rejected(rejection))
                    }
                    Err(None) => proposer::Checked::InFlightDuplicate(entry.into_proposal()),
                    Ok(()) => {
                        let proposal = entry.proposal();
                        local.inflight.push(entry);
                        let (responder, answer) =
                            openraft::impls::ProgressResponder::complete_only();
                        match self
                            .inner
                            .raft
                            .client_write_ff(proposal, Some(responder))
                            .await
                        {
                            Ok(()) => proposer::Checked::Proposed(answer),
                            Err(e) => {
                                local.inflight.clear();
                                let error = WriteError::Unavailable(e.to_string());
                                failed = Some(error.clone());
                                proposer::Checked::Refused(error)
                            }
                        }
                    }
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Makes sure this member, as leader, has applied every entry of earlier terms before it
    /// checks proposals (once per term: a ReadIndex names the first entry of its term).
    async fn ready_to_propose(&self) -> Result<(), WriteError> {
        use std::sync::atomic::Ordering;
        let term = self.term().0;
        if self.inner.ready_term.load(Ordering::Acquire) == term {
            return Ok(());
        }
        let index = self.read_index().await.map_err(|e| match e {
            ClusterError::NotLeader { leader_url } => WriteError::NotLeader { leader_url },
            other => WriteError::Unavailable(other.to_string()),
        })?;
        if !self.wait_applied(index, WRITE_TIMEOUT).await {
            return Err(WriteError::Unavailable(format!(
                "the new leader did not apply its log up to {index} in time"
            )));
        }
        self.inner.ready_term.store(term, Ordering::Release);
        Ok(())
    }

    /// Waits until every voter holds `lsn` durably (as the leader's replication progress shows),
    /// at most `timeout`. True when they do. Only the leader knows; elsewhere this is false.
    pub async fn wait_voters_hold(&self, lsn: Lsn, timeout: Duration) -> bool {
        let mut metrics = self.inner.raft.metrics();
        let node_id = self.inner.config.node_id;
        let held = |m: &openraft::RaftMetrics<types::ClusterTypes>| {
            let Some(replication) = &m.replication else {
                return false;
            };
            m.membership_config.membership().voter_ids().all(|id| {
                let matched = if id == node_id {
                    m.last_log_index.map(entry::lsn_of)
                } else {
                    replication
                        .get(&id)
                        .cloned()
                        .flatten()
                        .map(|log_id| entry::lsn_of(log_id.index()))
                };
                matched.is_some_and(|at| at >= lsn)
            })
        };
        tokio::time::timeout(timeout, async {
            loop {
                if held(&metrics.borrow_and_update()) {
                    return true;
                }
                if metrics.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Waits until this member applied `lsn`, at most `timeout`. True when it has.
    pub async fn wait_applied(&self, lsn: Lsn, timeout: Duration) -> bool {
        let mut applied = self.inner.local.copy.applied();
        tokio::time::timeout(timeout, applied.wait_for(|at| *at >= lsn))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    /// The last applied LSN.
    pub fn applied_lsn(&self) -> Lsn {
        self.inner.local.copy.applied_lsn()
    }

    /// Runs `f` on the local state (committed entries only).
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.inner.local.copy.read(f)
    }

    /// The leader's read index (ReadIndex: the leader confirms with a quorum that it still
    /// leads, then names its commit index), when this member is the leader.
    pub async fn read_index(&self) -> Result<Lsn, ClusterError> {
        match self
            .inner
            .raft
            .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
            .await
        {
            Ok(read) => Ok(entry::lsn_of(read.log_id().index())),
            Err(RaftError::APIError(openraft::errors::LinearizableReadError::ForwardToLeader(
                f,
            ))) => Err(ClusterError::NotLeader {
                leader_url: f.leader_node.map(|n| n.addr),
            }),
            Err(e) => Err(ClusterError::Failed(e.to_string())),
        }
    }

    /// What `/v1/status` reports.
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        let deposed = m.state == ServerState::Leader && !self.lease_valid(&m);
        let role = match m.state {
            // Cut off from its majority: it takes no writes, so it does not call itself leader.
            ServerState::Leader if deposed => "follower",
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|log_id| entry::lsn_of(log_id.index()).0);
                let contact = m
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(id).cloned().flatten())
                    .map(|at| (*at).elapsed().as_millis() as u64);
                MemberStatus {
                    id: *id,
                    url: node.addr.clone(),
                    kind: if voters.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    },
                    matched_lsn: matched,
                    last_contact_ms: contact,
                }
            })
            .collect();
        let leader_id = m.current_leader.filter(|_| !deposed);
        let leader_url = leader_id
            .and_then(|id| m.membership_config.get_node(&id))
            .map(|n| n.addr.clone());
        ClusterStatus {
            node_id: self.inner.config.node_id,
            role,
            term: Term(m.current_term),
            leader_id,
            leader_url,
            members,
            last_lsn: m.last_log_index.map_or(Lsn::ZERO, entry::lsn_of),
            committed_lsn: m
                .local_committed
                .max(m.cluster_committed)
                .map_or(Lsn::ZERO, |id| entry::lsn_of(id.index())),
            applied: self.inner.local.applied_position(),
            cluster_id: self.inner.log.cluster_id(),
            init_error: self.inner.init_error.lock().expect("poisoned").clone(),
            storage: self.inner.log.storage_health(),
        }
    }

    fn require_leader(&self) -> Result<(), ClusterError> {
        if self.is_leader() {
            return Ok(());
        }
        Err(ClusterError::NotLeader {
            leader_url: self.leader().map(|(_, url)| url),
        })
    }

    fn voters(&self) -> BTreeSet<u64> {
        self.inner
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    fn is_member(&self, id: u64) -> bool {
        self.inner
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
    }

    /// Moves leadership to voter `to` (promotion by hand): the leader stops taking writes,
    /// brings `to` up to date and tells it to start an election at once. Waits (bounded) until
    /// `to` leads and answers its id; if it does not, the old leader's election timer recovers.
    pub async fn transfer(&self, to: u64) -> Result<u64, ClusterError> {
        if !self.voters().contains(&to) {
            return Err(ClusterError::UnknownMember(to));
        }
        if self.leader().is_some_and(|(id, _)| id == to) {
            return Ok(to);
        }
        self.require_leader()?;
        self.inner
            .raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| ClusterError::Failed(e.to_string()))?;
        let deadline = Duration::from_millis(self.inner.config.election_timeout_ms * 4 + 2_000);
        let mut metrics = self.inner.raft.metrics();
        let moved = tokio::time::timeout(deadline, async {
            loop {
                let leader = metrics.borrow_and_update().current_leader;
                if leader == Some(to) {
                    return true;
                }
                if metrics.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false);
        if moved {
            Ok(to)
        } else {
            Err(ClusterError::Failed(format!(
                "node {to} did not take over within {} ms",
                deadline.as_millis()
            )))
        }
    }

    /// Adds node `id` at `url`: first as a learner that catches up (from entries, or a snapshot
    /// when it is behind compaction), then as a voter through joint consensus.
    pub async fn add_member(&self, id: u64, url: &str) -> Result<(), ClusterError> {
        check_member_url(url)?;
        if self.is_member(id) {
            return Err(ClusterError::DuplicateMember(id));
        }
        self.require_leader()?;
        let node = BasicNode {
            addr: url.trim_end_matches('/').to_string(),
        };
        self.inner
            .raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| ClusterError::Failed(e.to_string()))?;
        let mut voters = self.voters();
        voters.insert(id);
        self.inner
            .raft
            .change_membership(voters, false)
            .await
            .map_err(|e| ClusterError::Failed(e.to_string()))?;
        Ok(())
    }

    /// Removes node `id` from the voters and the members, through joint consensus.
    pub async fn remove_member(&self, id: u64) -> Result<(), ClusterError> {
        if !self.is_member(id) {
            return Err(ClusterError::UnknownMember(id));
        }
        let mut voters = self.voters();
        voters.remove(&id);
        if voters.is_empty() {
            return Err(ClusterError::LastVoter(id));
        }
        self.require_leader()?;
        self.inner
            .raft
            .change_membership(voters, false)
            .await
            .map_err(|e| ClusterError::Failed(e.to_string()))?;
        Ok(())
    }

    /// Stops openraft (the log store closes with it).
    pub async fn shutdown(&self) {
        for task in [&self.inner.proposer_task, &self.inner.ticker] {
            if let Some(task) = task.lock().expect("poisoned").take() {
                task.abort();
            }
        }
        if let Some(watcher) = self.inner.watcher.lock().expect("poisoned").take() {
            watcher.abort();
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            warn!(error = %e, "raft did not shut down cleanly");
        }
        // The saver is at most an interval behind; a clean stop leaves nothing behind.
        let log = Arc::clone(&self.inner.log);
        match tokio::task::spawn_blocking(move || log.flush_committed()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot save the committed index at shutdown"),
            Err(e) => warn!(error = %e, "the committed index save did not run"),
        }
    }
}

/// Checks a member URL: `http://host:port`, nothing after the authority.
pub fn check_member_url(url: &str) -> Result<(), ClusterError> {
    let invalid = || ClusterError::InvalidUrl(url.to_string());
    let uri: axum::http::Uri = url.parse().map_err(|_| invalid())?;
    if !matches!(uri.scheme_str(), Some("http" | "https"))
        || uri.authority().is_none()
        || uri.port_u16().is_none()
    {
        return Err(invalid());
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid());
    }
    Ok(())
}

/// Parses `--cluster 1=http://127.0.0.1:7071,2=…`: ids unique, URLs valid.
pub fn parse_members(list: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut members = BTreeMap::new();
    let mut urls = BTreeSet::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, url) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not ID=URL (e.g. 1=http://127.0.0.1:7071)"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} in {item:?} is not a node id (an unsigned integer)"))?;
        let url = url.trim().trim_end_matches('/').to_string();
        check_member_url(&url).map_err(|e| e.to_string())?;
        if !urls.insert(url.clone()) {
            return Err(format!("{url} is listed twice"));
        }
        if members.insert(id, url).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    if members.is_empty() {
        return Err("the member list is empty".into());
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists() {
        let members =
            parse_members("1=http://127.0.0.1:7071, 2=http://127.0.0.1:7072/,3=http://h:1")
                .unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[&2], "http://127.0.0.1:7072");
        for bad in [
            "",
            "1",
            "x=http://a:1",
            "1=ftp://a:1",
            "1=http://a",
            "1=http://a:1/v1",
            "1=http://a:1,1=http://b:1",
            "1=http://a:1,2=http://a:1",
        ] {
            assert!(parse_members(bad).is_err(), "{bad:?}");
        }
    }
}
