//! Raft messages between members: HTTP POSTs to the target's own listener under `/v1/raft/…`,
//! postcard bodies both ways, with an `admin`-scope bearer token when the cluster has a secret.
//!
//! ```text
//!  openraft ─ append_entries / vote / pre_vote / transfer_leader
//!      └─► POST {member url}/v1/raft/{append,vote,pre-vote,transfer}  (postcard)
//!             └─► that member's openraft ─► Result<response, RaftError> (postcard)
//!  openraft ─ full_snapshot ─► POST /v1/raft/snapshot/{offer,chunk…,install}
//!             (chunks of 4 MiB that resume after a cut: see snapshot_transfer.rs)
//! ```
//!
//! A connection failure is `Unreachable` (openraft backs off); any other failure is a
//! `Network` error. A snapshot transfer that fails part-way is retried by openraft, and the
//! retry resumes from the bytes the member holds.

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
use super::snapshot_transfer::{
    SNAPSHOT_CHUNK_BYTES, SnapshotChunk, SnapshotHeld, SnapshotInstall, SnapshotOffer, sha256,
};
use super::types::{ClusterTypes, RaftVote};

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

impl Peer {
    /// Sends a snapshot in chunks: offered first, so a transfer that was cut resumes from the
    /// bytes the member holds; installed once every chunk arrived.
    async fn send_snapshot(
        &self,
        vote: RaftVote,
        meta: super::types::RaftSnapshotMeta,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<SnapshotResponse<ClusterTypes>, RPCError<ClusterTypes>> {
        let id = sha256(bytes);
        let total_bytes = bytes.len() as u64;
        let offer = SnapshotOffer { id, total_bytes };
        let held: SnapshotHeld = self.call("snapshot/offer", &offer, timeout).await?;
        let mut offset = held.have_bytes.min(total_bytes);
        if offset > 0 {
            metrics::counter!("cstore_cluster_snapshot_resumed_sends_total").increment(1);
            tracing::info!(
                member = self.target,
                offset,
                total_bytes,
                "resuming a snapshot transfer"
            );
        }
        while offset < total_bytes {
            let end = (offset + SNAPSHOT_CHUNK_BYTES as u64).min(total_bytes);
            let data = bytes[offset as usize..end as usize].to_vec();
            let chunk = SnapshotChunk {
                id,
                total_bytes,
                offset,
                chunk_sha256: sha256(&data),
                data,
            };
            let held: SnapshotHeld = self.call("snapshot/chunk", &chunk, timeout).await?;
            metrics::counter!("cstore_cluster_snapshot_sent_bytes_total").increment(end - offset);
            if held.have_bytes <= offset {
                return Err(RPCError::Network(NetworkError::from_string(format!(
                    "member {} took no bytes of the snapshot chunk at {offset}",
                    self.target
                ))));
            }
            offset = held.have_bytes;
        }
        let install = SnapshotInstall {
            vote,
            meta,
            id,
            total_bytes,
        };
        self.call("snapshot/install", &install, timeout).await
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
        let bytes = snapshot.snapshot.into_inner();
        let timeout = option.hard_ttl().max(Duration::from_secs(60));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.send_snapshot(vote, snapshot.meta, &bytes, timeout) => Ok(result?),
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
