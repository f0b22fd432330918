//! The wire between members, in memory and hostile: every Raft message (append, vote, pre-vote,
//! snapshot, transfer) is encoded with postcard as the server does, then lost, delayed,
//! duplicated or reordered as the seed says, and cut by partitions (symmetric or one-way) that
//! the schedule switches on and off.
//!
//! ```text
//!  openraft (member a) ─ RaftNetworkV2 ─► Link::call ─ fate (seeded) ─► delay ─► link a→b open?
//!      ─► b's current Raft ─► answer ─► delay ─► link b→a open? ─► openraft (member a)
//!  duplicate: a second copy is delivered later and its answer dropped (so later messages overtake
//!  it: reordering); lost request or answer, or a cut link: the caller waits out its TTL
//! ```
//!
//! A member that is down refuses connections (`Unreachable`, as a closed port does); a cut link
//! swallows packets (the caller times out). Messages in flight when their sender crashed still
//! arrive, as they would.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{AsyncRuntime, BasicNode, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;

use cstore_server::cluster::types::{RaftSnapshotMeta, RaftVote};

use super::rng::Rng;
use super::types::{SimRaft, SimRuntime, SimTypes};

/// How hostile the wire is (probabilities per message; zero: never).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    /// A message held back by up to `reorder_ms_max`, so that later ones overtake it.
    pub reorder: f64,
    pub reorder_ms_max: u64,
    pub delay_ms_max: u64,
}

/// What the network did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub cut: u64,
    pub refused: u64,
}

/// The kinds of Raft messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Append,
    Vote,
    PreVote,
    Snapshot,
    Transfer,
}

/// A member as the network reaches it: its current incarnation's Raft, when it is up.
struct Endpoint {
    epoch: u64,
    raft: Option<SimRaft>,
}

struct NetState {
    rng: Rng,
    faults: Faults,
    /// Directed links that drop everything: `(from, to)`.
    cut: BTreeSet<(u64, u64)>,
    endpoints: BTreeMap<u64, Endpoint>,
    stats: NetStats,
    /// Messages delivered, by kind (for the report).
    delivered: BTreeMap<Kind, u64>,
}

/// The in-memory network of a simulated cluster.
#[derive(Clone)]
pub struct Network {
    state: Arc<Mutex<NetState>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").finish_non_exhaustive()
    }
}

/// What happens to one message.
struct Fate {
    out: Duration,
    back: Duration,
    lose_request: bool,
    lose_answer: bool,
    duplicate: Option<Duration>,
}

impl Network {
    pub fn new(rng: Rng, faults: Faults) -> Network {
        Network {
            state: Arc::new(Mutex::new(NetState {
                rng,
                faults,
                cut: BTreeSet::new(),
                endpoints: BTreeMap::new(),
                stats: NetStats::default(),
                delivered: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().expect("network lock poisoned")
    }

    /// Member `id`'s incarnation `epoch` is up and answers with `raft`.
    pub fn attach(&self, id: u64, epoch: u64, raft: SimRaft) {
        self.lock().endpoints.insert(
            id,
            Endpoint {
                epoch,
                raft: Some(raft),
            },
        );
    }

    /// Member `id` is down.
    pub fn detach(&self, id: u64) {
        if let Some(endpoint) = self.lock().endpoints.get_mut(&id) {
            endpoint.raft = None;
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Cuts the directed link `from → to`.
    pub fn cut(&self, from: u64, to: u64) {
        self.lock().cut.insert((from, to));
    }

    /// Every link works again.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    pub fn stats(&self) -> NetStats {
        self.lock().stats
    }

    pub fn delivered(&self) -> BTreeMap<Kind, u64> {
        self.lock().delivered.clone()
    }

    /// The handle member `id`'s incarnation `epoch` sends with.
    pub fn factory(&self, id: u64, epoch: u64) -> NetworkFactory {
        NetworkFactory {
            net: self.clone(),
            from: id,
            epoch,
        }
    }

    fn fate(&self) -> Fate {
        let mut s = self.lock();
        let f = s.faults;
        s.stats.sent += 1;
        let delay = |rng: &mut Rng| Duration::from_millis(rng.range(0, f.delay_ms_max));
        let mut out = delay(&mut s.rng);
        let back = delay(&mut s.rng);
        if s.rng.chance(f.reorder) {
            s.stats.reordered += 1;
            out += Duration::from_millis(s.rng.range(1, f.reorder_ms_max.max(1)));
        }
        let lose_request = s.rng.chance(f.loss);
        let lose_answer = s.rng.chance(f.loss);
        if lose_request || lose_answer {
            s.stats.lost += 1;
        }
        let duplicate = s.rng.chance(f.duplicate).then(|| {
            s.stats.duplicated += 1;
            Duration::from_millis(s.rng.range(1, f.reorder_ms_max.max(f.delay_ms_max).max(1)))
        });
        Fate {
            out,
            back,
            lose_request,
            lose_answer,
            duplicate,
        }
    }

    /// Whether a message can cross `from → to` now, and the target's Raft if it is up.
    fn arrive(&self, from: u64, to: u64, kind: Kind) -> Arrival {
        let mut s = self.lock();
        if s.cut.contains(&(from, to)) {
            s.stats.cut += 1;
            return Arrival::Cut;
        }
        match s.endpoints.get(&to).and_then(|e| e.raft.clone()) {
            Some(raft) => {
                *s.delivered.entry(kind).or_default() += 1;
                Arrival::At(raft)
            }
            None => {
                s.stats.refused += 1;
                Arrival::Down
            }
        }
    }

    /// Whether member `to`, asked by `from` before the cluster is initialized, belongs to a
    /// cluster already; `None` when it does not answer (down or cut off either way). The
    /// handshake (`/v1/raft/hello` in the server) is not subject to loss or delay here.
    pub async fn hello(&self, from: u64, to: u64) -> Option<bool> {
        let raft = {
            let s = self.lock();
            if s.cut.contains(&(from, to)) || s.cut.contains(&(to, from)) {
                return None;
            }
            s.endpoints.get(&to)?.raft.clone()?
        };
        raft.is_initialized().await.ok()
    }

    fn link_open(&self, from: u64, to: u64) -> bool {
        let mut s = self.lock();
        let open = !s.cut.contains(&(from, to));
        if !open {
            s.stats.cut += 1;
        }
        open
    }

    fn sender_alive(&self, from: u64, epoch: u64) -> bool {
        self.lock()
            .endpoints
            .get(&from)
            .is_some_and(|e| e.epoch == epoch && e.raft.is_some())
    }
}

enum Arrival {
    At(SimRaft),
    Cut,
    Down,
}

/// Makes the clients of one member incarnation.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    net: Network,
    from: u64,
    epoch: u64,
}

impl RaftNetworkFactory<SimTypes> for NetworkFactory {
    type Network = Link;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Link {
        Link {
            net: self.net.clone(),
            from: self.from,
            epoch: self.epoch,
            to: target,
        }
    }
}

/// One member incarnation's client of another member.
#[derive(Debug)]
pub struct Link {
    net: Network,
    from: u64,
    epoch: u64,
    to: u64,
}

type Answer = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
/// Decodes a request at the target, hands it to its Raft, encodes the answer.
type Deliver = fn(SimRaft, Vec<u8>) -> Answer;

fn timeout_error(what: &str) -> RPCError<SimTypes> {
    RPCError::Network(NetworkError::from_string(format!("{what}: timed out")))
}

impl Link {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: Kind,
        request: &Req,
        ttl: Duration,
        deliver: Deliver,
    ) -> Result<Resp, RPCError<SimTypes>> {
        let what = format!("{kind:?} {} → {}", self.from, self.to);
        if !self.net.sender_alive(self.from, self.epoch) {
            return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "{what}: the sender crashed"
            ))));
        }
        let body = postcard::to_allocvec(request).expect("a Raft message encodes");
        let fate = self.net.fate();
        let started = tokio::time::Instant::now();
        let remaining = move || ttl.saturating_sub(tokio::time::Instant::now() - started);
        if let Some(later) = fate.duplicate {
            // The copy's answer goes nowhere.
            let (net, from, to, body) = (self.net.clone(), self.from, self.to, body.clone());
            drop(SimRuntime::spawn(async move {
                SimRuntime::sleep(fate.out + later).await;
                if let Arrival::At(raft) = net.arrive(from, to, kind) {
                    deliver(raft, body).await;
                }
            }));
        }
        SimRuntime::sleep(fate.out).await;
        let raft = match self.net.arrive(self.from, self.to, kind) {
            Arrival::At(raft) if !fate.lose_request => raft,
            Arrival::Down => {
                return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                    "{what}: connection refused"
                ))));
            }
            Arrival::At(_) | Arrival::Cut => {
                SimRuntime::sleep(remaining()).await;
                return Err(timeout_error(&what));
            }
        };
        let Ok(answer) = SimRuntime::timeout(remaining(), deliver(raft, body)).await else {
            return Err(timeout_error(&what));
        };
        SimRuntime::sleep(fate.back).await;
        if fate.lose_answer || !self.net.link_open(self.to, self.from) {
            SimRuntime::sleep(remaining()).await;
            return Err(timeout_error(&what));
        }
        let result: Result<Resp, RaftError<SimTypes>> =
            postcard::from_bytes(&answer).expect("a Raft answer decodes");
        result.map_err(|e| RPCError::Network(NetworkError::from_string(e.to_string())))
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("a Raft answer encodes")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> T {
    postcard::from_bytes(bytes).expect("a Raft message decodes")
}

fn deliver_append(raft: SimRaft, body: Vec<u8>) -> Answer {
    Box::pin(async move {
        let rpc: AppendEntriesRequest<SimTypes> = decode(&body);
        encode(&raft.append_entries(rpc).await)
    })
}

fn deliver_vote(raft: SimRaft, body: Vec<u8>) -> Answer {
    Box::pin(async move {
        let rpc: VoteRequest<SimTypes> = decode(&body);
        encode(&raft.vote(rpc).await)
    })
}

fn deliver_pre_vote(raft: SimRaft, body: Vec<u8>) -> Answer {
    Box::pin(async move {
        let rpc: VoteRequest<SimTypes> = decode(&body);
        encode(&raft.pre_vote(rpc).await)
    })
}

fn deliver_snapshot(raft: SimRaft, body: Vec<u8>) -> Answer {
    Box::pin(async move {
        let (vote, meta, data): (RaftVote, RaftSnapshotMeta, Vec<u8>) = decode(&body);
        let snapshot = openraft::alias::SnapshotOf::<SimTypes, Cursor<Vec<u8>>> {
            meta,
            snapshot: Cursor::new(data),
        };
        let result = raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(RaftError::<SimTypes>::Fatal);
        encode(&result)
    })
}

fn deliver_transfer(raft: SimRaft, body: Vec<u8>) -> Answer {
    Box::pin(async move {
        let rpc: TransferLeaderRequest<SimTypes> = decode(&body);
        let result = raft
            .handle_transfer_leader(rpc)
            .await
            .map_err(RaftError::<SimTypes>::Fatal);
        encode(&result)
    })
}

impl RaftNetworkV2<SimTypes> for Link {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<SimTypes>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<SimTypes>, RPCError<SimTypes>> {
        self.call(Kind::Append, &rpc, option.hard_ttl(), deliver_append)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<SimTypes>,
        option: RPCOption,
    ) -> Result<VoteResponse<SimTypes>, RPCError<SimTypes>> {
        self.call(Kind::Vote, &rpc, option.hard_ttl(), deliver_vote)
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<SimTypes>,
        option: RPCOption,
    ) -> Result<VoteResponse<SimTypes>, RPCError<SimTypes>> {
        self.call(Kind::PreVote, &rpc, option.hard_ttl(), deliver_pre_vote)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: RaftVote,
        snapshot: openraft::alias::SnapshotOf<SimTypes, Cursor<Vec<u8>>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<SimTypes>, StreamingError<SimTypes>> {
        let request = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        let call = self.call(
            Kind::Snapshot,
            &request,
            option.hard_ttl(),
            deliver_snapshot,
        );
        match SimRuntime::select2(Box::pin(cancel), Box::pin(call)).await {
            openraft::rt::Select2::First(closed) => Err(StreamingError::Closed(closed)),
            openraft::rt::Select2::Second(result) => Ok(result?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<SimTypes>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<SimTypes>, RPCError<SimTypes>> {
        self.call(Kind::Transfer, &req, option.hard_ttl(), deliver_transfer)
            .await
    }
}
