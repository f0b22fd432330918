//! Raft messages between members: HTTP POSTs to the target's own listener under `/v1/raft/…`,
//! postcard bodies both ways, with an `admin`-scope bearer token when the cluster has a secret.
//!
//! ```text
//!  openraft ─ append_entries / vote / pre_vote / full_snapshot / transfer_leader
//!      └─► POST {member url}/v1/raft/{append,vote,pre-vote,snapshot,transfer}  (postcard)
//!             └─► that member's openraft ─► Result<response, RaftError> (postcard)
//! ```
//!
//! A connection failure is `Unreachable` (openraft backs off); any other failure is a
//! `Network` error. A snapshot goes in one request, bounded by [`SNAPSHOT_BYTES_MAX`].

use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::log_store::LogShared;
use super::types::{ClusterTypes, RaftVote};

/// Largest Raft message body a member accepts (a whole snapshot travels in one).
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;
/// Largest body of any other Raft message (a batch of entries).
pub const MESSAGE_BYTES_MAX: usize = 256 << 20;
/// The media type of Raft bodies.
pub const POSTCARD: &str = "application/x-postcard";

/// The header naming the sender's cluster (the hash of its first entry), so a member of one
/// cluster never takes messages from another (a data directory of another cluster, or two
/// clusters that were given overlapping addresses).
pub const CLUSTER_HEADER: &str = "x-cstore-cluster";

/// Makes a client per target member.
#[derive(Clone, Debug)]
pub struct Network {
    http: reqwest::Client,
    token: Option<String>,
    log: Arc<LogShared>,
}

impl Network {
    /// A network that sends `token` (scope `admin`) with every message, if set, and the
    /// cluster's identity once `log` knows it.
    pub fn new(http: reqwest::Client, token: Option<String>, log: Arc<LogShared>) -> Network {
        Network { http, token, log }
    }
}

impl RaftNetworkFactory<ClusterTypes> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            base: node.addr.trim_end_matches('/').to_string(),
            http: self.http.clone(),
            token: self.token.clone(),
            log: Arc::clone(&self.log),
        }
    }
}

/// The client of one target member.
#[derive(Debug)]
pub struct Peer {
    target: u64,
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    log: Arc<LogShared>,
}

impl Peer {
    async fn call<Req, Resp>(
        &self,
        route: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<ClusterTypes>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body = postcard::to_allocvec(request)
            .map_err(|e| RPCError::Network(NetworkError::from_string(format!("encode: {e}"))))?;
        let url = format!("{}/v1/raft/{route}", self.base);
        let mut outgoing = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, POSTCARD)
            .timeout(timeout)
            .body(body);
        if let Some(token) = &self.token {
            outgoing = outgoing.bearer_auth(token);
        }
        if let Some(id) = self.log.cluster_id() {
            outgoing = outgoing.header(CLUSTER_HEADER, id);
        }
        let answer = outgoing.send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        let status = answer.status();
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(RPCError::Network(NetworkError::from_string(format!(
                "member {} answered {status} to {route}: {text}",
                self.target
            ))));
        }
        let result: Result<Resp, RaftError<ClusterTypes>> = postcard::from_bytes(&bytes)
            .map_err(|e| RPCError::Network(NetworkError::from_string(format!("decode: {e}"))))?;
        result.map_err(|e| RPCError::Network(NetworkError::from_string(e.to_string())))
    }
}

impl RaftNetworkV2<ClusterTypes> for Peer {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ClusterTypes>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<ClusterTypes>, RPCError<ClusterTypes>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<ClusterTypes>,
        option: RPCOption,
    ) -> Result<VoteResponse<ClusterTypes>, RPCError<ClusterTypes>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<ClusterTypes>,
        option: RPCOption,
    ) -> Result<VoteResponse<ClusterTypes>, RPCError<ClusterTypes>> {
        self.call("pre-vote", &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: RaftVote,
        snapshot: openraft::alias::SnapshotOf<ClusterTypes, Cursor<Vec<u8>>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<ClusterTypes>, StreamingError<ClusterTypes>> {
        let request = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        let timeout = option.hard_ttl().max(Duration::from_secs(60));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.call("snapshot", &request, timeout) => Ok(result?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<ClusterTypes>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<ClusterTypes>, RPCError<ClusterTypes>> {
        self.call("transfer", &req, option.hard_ttl()).await
    }
}
