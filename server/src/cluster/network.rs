//! Raft messages between members: HTTP POSTs to the target's own listener under `/v1/raft/…`,
//! postcard bodies both ways, with an `admin`-scope bearer token when the cluster has a secret;
//! and the leader's stream of appends to each follower over one WebSocket, pipelined.
//!
//! ```text
//!  openraft ─ vote / pre_vote / full_snapshot / transfer_leader / append_entries (unary)
//!      └─► POST {member url}/v1/raft/{append,vote,pre-vote,snapshot,transfer}  (postcard)
//!             └─► that member's openraft ─► Result<response, RaftError> (postcard)
//!  openraft ─ stream_append (the leader's replication of entries and heartbeats)
//!      └─► WebSocket {member url}/v1/raft/stream: requests go out as openraft makes them,
//!          without waiting for answers; answers come back in order
//!             └─► that member's Raft::stream_append (pipelined: its log store groups the
//!                 appends that arrive together into one fsync)
//! ```
//!
//! Pipelining is what lets a follower's `fdatasync` and the next batch's network trip overlap:
//! with one request in flight per follower (openraft's default for a unary network) every batch
//! waits for a round trip with a follower's fsync. `CSTORE_RAFT_PIPELINE=0` falls back to that
//! (a diagnostic switch).
//!
//! A connection failure is `Unreachable` (openraft backs off); any other failure is a
//! `Network` error. A snapshot goes in one request, bounded by [`SNAPSHOT_BYTES_MAX`].

use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{
    RPCOption, RaftNetworkFactory, stream_append_sequential, v2::RaftNetworkV2,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::log_store::LogShared;
use super::types::{ClusterTypes, RaftVote};

/// Largest Raft message body a member accepts (a whole snapshot travels in one).
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;
/// Largest body of any other Raft message (a batch of entries).
pub const MESSAGE_BYTES_MAX: usize = 256 << 20;
/// The media type of Raft bodies.
pub const POSTCARD: &str = "application/x-postcard";

/// How long a stream of appends waits for the next answer while requests are unanswered, and
/// for its connection to open. Longer than a loaded follower's fsync; a follower that stays
/// silent this long is reconnected (openraft backs off).
pub const STREAM_SILENCE: Duration = Duration::from_secs(1);

/// An answer on the stream of appends: the follower's, or why its Raft stopped.
pub type StreamAnswer = Result<StreamAppendResult<ClusterTypes>, String>;

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
    bind_ip: Option<std::net::IpAddr>,
}

impl Network {
    /// A network that sends `token` (scope `admin`) with every message, if set, and the
    /// cluster's identity once `log` knows it; its connections come from `bind_ip` when set
    /// (as `http`'s do).
    pub fn new(
        http: reqwest::Client,
        token: Option<String>,
        log: Arc<LogShared>,
        bind_ip: Option<std::net::IpAddr>,
    ) -> Network {
        Network {
            http,
            token,
            log,
            bind_ip,
        }
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
            bind_ip: self.bind_ip,
            stream: None,
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
    bind_ip: Option<std::net::IpAddr>,
    /// The WebSocket of the stream of appends, kept between sessions that ended with every
    /// request answered (a heartbeat is a session of one request).
    stream: Option<Socket>,
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

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// False when `CSTORE_RAFT_PIPELINE=0`: appends go one request at a time.
fn pipelined() -> bool {
    static PIPELINED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PIPELINED.get_or_init(|| std::env::var("CSTORE_RAFT_PIPELINE").map_or(true, |v| v != "0"))
}

impl Peer {
    /// A TCP connection to the request's host, from `bind_ip` when set.
    async fn connect_tcp(
        &self,
        request: &tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<tokio::net::TcpStream, tokio_tungstenite::tungstenite::Error> {
        let uri = request.uri();
        let host = uri.host().unwrap_or("localhost");
        let port = uri.port_u16().unwrap_or(80);
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(ip) = self.bind_ip
                && ip.is_ipv4() == addr.is_ipv4()
            {
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
            }
            match socket.connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| std::io::Error::other(format!("{host}: no address")))
            .into())
    }

    /// Opens the WebSocket of the stream of appends to this member.
    async fn open_stream(&self) -> Result<Socket, RPCError<ClusterTypes>> {
        let network = |reason: String| RPCError::Network(NetworkError::from_string(reason));
        let url = format!(
            "{}/v1/raft/stream",
            self.base
                .replacen("http://", "ws://", 1)
                .replacen("https://", "wss://", 1)
        );
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| network(format!("{url}: {e}")))?;
        let headers = request.headers_mut();
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| network(format!("token: {e}")))?;
            headers.insert(header::AUTHORIZATION, value);
        }
        if let Some(id) = self.log.cluster_id() {
            let value = HeaderValue::from_str(&id).map_err(|e| network(format!("id: {e}")))?;
            headers.insert(CLUSTER_HEADER, value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MESSAGE_BYTES_MAX))
            .max_frame_size(Some(MESSAGE_BYTES_MAX));
        let connecting = async {
            let tcp = self.connect_tcp(&request).await?;
            tokio_tungstenite::client_async_with_config(
                request,
                tokio_tungstenite::MaybeTlsStream::Plain(tcp),
                Some(config),
            )
            .await
        };
        match tokio::time::timeout(STREAM_SILENCE, connecting).await {
            Err(_elapsed) => Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "member {}: no WebSocket handshake within {} ms",
                self.target,
                STREAM_SILENCE.as_millis()
            )))),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                Err(network(format!(
                    "member {} refused the stream of appends with HTTP {}",
                    self.target,
                    response.status()
                )))
            }
            Ok(Err(e)) => Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "member {}: {e}",
                self.target
            )))),
            Ok(Ok((socket, _))) => Ok(socket),
        }
    }
}

/// The answers of a stream of appends over `socket`: requests from `input` are sent as soon as
/// openraft makes them, answers are yielded in order. Everything (socket, input) is owned by
/// the returned stream, so dropping it ends the session: no request is taken from openraft
/// after that. A session that ends with every request answered puts the socket back in `slot`
/// for the next one; any other end closes it (a late answer must never reach another session).
fn pipeline<'s, S>(
    slot: &'s mut Option<Socket>,
    socket: Socket,
    input: S,
    target: u64,
) -> BoxStream<'s, Result<StreamAppendResult<ClusterTypes>, RPCError<ClusterTypes>>>
where
    S: Stream<Item = AppendEntriesRequest<ClusterTypes>> + OptionalSend + Unpin + 'static,
{
    struct Session<'s, S> {
        slot: &'s mut Option<Socket>,
        socket: Socket,
        input: S,
        input_done: bool,
        unanswered: usize,
        /// When the oldest unanswered request must be answered by (reset by each answer).
        deadline: tokio::time::Instant,
    }
    let network = |reason: String| Err(RPCError::Network(NetworkError::from_string(reason)));
    let session = Session {
        slot,
        socket,
        input,
        input_done: false,
        unanswered: 0,
        deadline: tokio::time::Instant::now(),
    };
    let answers = futures::stream::unfold(Some(session), move |session| async move {
        let mut s = session?;
        loop {
            if s.input_done && s.unanswered == 0 {
                *s.slot = Some(s.socket);
                return None;
            }
            tokio::select! {
                message = s.socket.next() => {
                    let bytes = match message {
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                        Some(Ok(Message::Text(_))) => {
                            return Some((network(format!("member {target}: a text message on the stream")), None));
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            if s.unanswered == 0 {
                                return None;
                            }
                            return Some((network(format!("member {target} closed the stream with {} appends unanswered", s.unanswered)), None));
                        }
                        Some(Err(e)) => return Some((network(format!("member {target}: {e}")), None)),
                    };
                    if s.unanswered == 0 {
                        return Some((network(format!("member {target}: an answer to no request")), None));
                    }
                    let answer: StreamAnswer = match postcard::from_bytes(&bytes) {
                        Ok(answer) => answer,
                        Err(e) => return Some((network(format!("member {target}: decode: {e}")), None)),
                    };
                    s.unanswered -= 1;
                    s.deadline = tokio::time::Instant::now() + STREAM_SILENCE;
                    return match answer {
                        // An API error (conflict, higher vote) ends the stream after it.
                        Ok(result @ Ok(_)) => Some((Ok(result), Some(s))),
                        Ok(result @ Err(_)) => Some((Ok(result), None)),
                        Err(stopped) => Some((network(format!("member {target}: {stopped}")), None)),
                    };
                }
                request = s.input.next(), if !s.input_done => {
                    let Some(request) = request else {
                        s.input_done = true;
                        continue;
                    };
                    let bytes = match postcard::to_allocvec(&request) {
                        Ok(bytes) => bytes,
                        Err(e) => return Some((network(format!("encode: {e}")), None)),
                    };
                    if s.unanswered == 0 {
                        s.deadline = tokio::time::Instant::now() + STREAM_SILENCE;
                    }
                    if let Err(e) = s.socket.send(Message::Binary(bytes.into())).await {
                        return Some((network(format!("member {target}: {e}")), None));
                    }
                    s.unanswered += 1;
                }
                () = tokio::time::sleep_until(s.deadline), if s.unanswered > 0 => {
                    return Some((
                        network(format!(
                            "member {target} left {} appends unanswered for {} ms",
                            s.unanswered,
                            STREAM_SILENCE.as_millis()
                        )),
                        None,
                    ));
                }
            }
        }
    });
    Box::pin(answers)
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

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<ClusterTypes>, RPCError<ClusterTypes>>>,
            RPCError<ClusterTypes>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<ClusterTypes>> + OptionalSend + Unpin + 'static,
    {
        if !pipelined() {
            return stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            let socket = match self.stream.take() {
                Some(socket) => socket,
                None => self.open_stream().await?,
            };
            let target = self.target;
            Ok(pipeline(&mut self.stream, socket, input, target))
        })
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
