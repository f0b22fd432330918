//! openraft's state machine: the member's one local copy (state, log tail, applied watch),
//! changed only by committed entries.
//!
//! ```text
//!  openraft apply(committed entries) ─► to_log_entry (chained on the state's applied hash)
//!      ─► State::apply, or (a transaction that does not apply) State::skip_rejected
//!      ─► LogTail::push ─► applied watch ─► each proposer gets its Outcome
//!  build_snapshot ─► State::snapshot ─► FileStore (then openraft may purge the log)
//!  install_snapshot(from the leader) ─► State::from_snapshot ─► FileStore ─► tail reset
//! ```
//!
//! Nothing here runs before an entry is committed, so readers, read replicas and browsers
//! (which stream from the tail) only ever see committed entries: never one that a new leader
//! could truncate. A transaction that does not apply on the state (a unique clash, a failed
//! `if_version`, a duplicate origin) is decided the same way on every member, since every
//! member applies the same entries to the same state: it stays in the log as a no-op and its
//! rejection goes back to the client.

use std::fmt::Debug;
use std::future::Future;
use std::io::{self, Cursor};
use std::sync::{Arc, Mutex};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use tracing::warn;

use cstore_core::doc::CLUSTER_COLLECTION;
use cstore_core::error::ErrorCode;
use cstore_core::snapshot::Snapshot;
use cstore_core::state::{State, TxnError};
use cstore_core::{LogPosition, Lsn};

use super::entry::{MEMBERSHIP_DOC_ID, lsn_of, to_log_entry};
use super::log_store::LogShared;
use super::proposer::InFlight;
use super::types::{
    ClusterTypes, CstoreTypeConfig, Outcome, RaftLogId, RaftMembership, RaftSnapshotMeta,
    RaftStoredMembership,
};

/// Entries applied under one hold of the state lock before readers get a turn.
const APPLY_CHUNK: usize = 1024;

/// The member's applied copy: the [`crate::local::Local`] every role keeps (the state, the
/// tail for read replicas and browsers, the applied watch `min_lsn` readers wait on, moved
/// only through its doors), with what openraft asks of a state machine beside it.
pub struct Local {
    /// The state, the tail and the applied watch: committed entries only.
    pub copy: crate::local::Local,
    /// The log id of the last applied entry, and the membership it is under (changed with
    /// the state, under its write lock).
    pub(super) raft: Mutex<(Option<RaftLogId>, RaftStoredMembership)>,
    /// This member's proposals not applied yet (only while it leads).
    pub inflight: InFlight,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("applied", &self.copy.applied_lsn())
            .finish()
    }
}

impl Local {
    /// The copy at `state`, whose last entry has `log_id`.
    pub fn new(state: State, log_id: Option<RaftLogId>, tail_bytes_max: u64) -> Local {
        let membership = stored_membership(&state).unwrap_or_default();
        Local {
            copy: crate::local::Local::new(state, tail_bytes_max),
            raft: Mutex::new((log_id, membership)),
            inflight: InFlight::default(),
        }
    }

    /// A snapshot of the state as it is, with the log id and membership of its last entry
    /// (read together under the state's lock: the snapshot is of exactly that entry). Writers
    /// wait meanwhile, readers do not (`crate::local::Local::snapshot_with`).
    pub async fn snapshot(&self) -> (Snapshot, RaftSnapshotMeta) {
        self.copy
            .snapshot_with(|_| {
                let raft = self.raft.lock().expect("raft lock poisoned");
                RaftSnapshotMeta {
                    last_log_id: raft.0,
                    last_membership: raft.1.clone(),
                }
            })
            .await
    }

    /// The position (LSN and hash) of the last applied entry.
    pub fn applied_position(&self) -> LogPosition {
        self.copy.read(State::applied)
    }
}

/// The membership recorded in `state` (by the last applied membership entry).
pub fn stored_membership(state: &State) -> Option<RaftStoredMembership> {
    #[derive(serde::Deserialize)]
    struct Doc {
        term: u64,
        index: u64,
        membership: RaftMembership,
    }
    let stored = state
        .collection(CLUSTER_COLLECTION)?
        .get(MEMBERSHIP_DOC_ID)?;
    let doc: Doc = serde_json::from_str(stored.doc.as_str()).ok()?;
    Some(RaftStoredMembership::new(
        Some(RaftLogId::new_term_index(doc.term, doc.index)),
        doc.membership,
    ))
}

/// The meta of a snapshot of `state` whose last entry has `log_id`.
pub fn snapshot_meta_of(state: &State, log_id: RaftLogId) -> RaftSnapshotMeta {
    RaftSnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: stored_membership(state).unwrap_or_default(),
    }
}

/// The snapshot bytes openraft carries: the position and the canonical state image.
fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    postcard::to_allocvec(&(snapshot.position, &snapshot.data)).expect("a snapshot encodes")
}

fn decode_snapshot(bytes: &[u8]) -> io::Result<Snapshot> {
    let (position, data): (LogPosition, Vec<u8>) = postcard::from_bytes(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot: {e}")))?;
    Ok(Snapshot::new(position, data))
}

/// Where a state machine keeps its snapshots: the member's file store in the server
/// ([`LogShared`], whose file IO runs on tokio's blocking pool), an in-memory store in the
/// deterministic simulation (`server/tests/cluster_sim`).
pub trait SnapshotStore: Clone + Debug + Send + Sync + 'static {
    /// Saves `snapshot`, built by this member (its log id and membership in `meta`), as the
    /// current one.
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
        meta: RaftSnapshotMeta,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Installs `snapshot` (described by `meta`) received from the leader: the log keeps the
    /// entries after it when it holds the snapshot's last entry, else it continues after the
    /// snapshot.
    fn install_snapshot(
        &self,
        snapshot: Snapshot,
        meta: RaftSnapshotMeta,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// The snapshot last saved or installed, with its meta. The store keeps the meta, so
    /// nobody decodes a snapshot only to learn its membership.
    fn current_snapshot(
        &self,
    ) -> impl Future<Output = io::Result<Option<(Snapshot, RaftSnapshotMeta)>>> + Send;

    /// Records the cluster's identity (the hash of its first entry) the first time it is seen.
    fn note_cluster_id(&self, id: &str) -> io::Result<()>;
}

/// Runs `f` on tokio's blocking pool (the file store syncs).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, cstore_core::storage::StorageError> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
        .map_err(|e| io::Error::other(e.to_string()))
}

impl SnapshotStore for Arc<LogShared> {
    async fn save_snapshot(&self, snapshot: Snapshot, meta: RaftSnapshotMeta) -> io::Result<()> {
        let log = Arc::clone(self);
        blocking(move || LogShared::save_snapshot(&log, &snapshot, &meta)).await
    }

    async fn install_snapshot(&self, snapshot: Snapshot, meta: RaftSnapshotMeta) -> io::Result<()> {
        let log = Arc::clone(self);
        blocking(move || LogShared::install_snapshot(&log, &snapshot, &meta)).await
    }

    async fn current_snapshot(&self) -> io::Result<Option<(Snapshot, RaftSnapshotMeta)>> {
        let log = Arc::clone(self);
        blocking(move || {
            let Some((snapshot, log_id)) = LogShared::current_snapshot(&log)? else {
                return Ok(None);
            };
            if let Some(meta) = log.snapshot_meta(log_id) {
                return Ok(Some((snapshot, meta)));
            }
            // Not known yet (`Cluster::open` notes it when it decodes the snapshot at start):
            // the membership is in the state.
            let state = State::from_snapshot(&snapshot)
                .map_err(|e| cstore_core::storage::StorageError::Corrupt(e.to_string()))?;
            let meta = snapshot_meta_of(&state, log_id);
            log.note_snapshot_meta(meta.clone());
            Ok(Some((snapshot, meta)))
        })
        .await
    }

    fn note_cluster_id(&self, id: &str) -> io::Result<()> {
        LogShared::note_cluster_id(self, id).map_err(|e| io::Error::other(e.to_string()))
    }
}

/// openraft's state machine over the member's [`Local`] copy, keeping snapshots in `S` (the
/// member's file store unless a test says otherwise).
#[derive(Clone, Debug)]
pub struct StateMachine<S = Arc<LogShared>> {
    local: Arc<Local>,
    log: S,
}

impl<S: SnapshotStore> StateMachine<S> {
    /// The state machine over `local`, saving snapshots in `log`.
    pub fn new(local: Arc<Local>, log: S) -> StateMachine<S> {
        StateMachine { local, log }
    }

    async fn apply_chunk<C: CstoreTypeConfig>(&self, chunk: Vec<EntryResponder<C>>) {
        let mut replies = Vec::new();
        let mut first = None;
        let applied = self
            .local
            .copy
            .apply(chunk, |state, (entry, responder)| {
                let log_entry = to_log_entry(state.applied(), &entry);
                let rejection = match state.apply(&log_entry) {
                    Ok(_) => None,
                    Err(rejection) => {
                        assert!(
                            !matches!(rejection.error, TxnError::OutOfOrder { .. }),
                            "committed entry {} does not follow the state: {rejection}",
                            log_entry.lsn
                        );
                        warn!(lsn = log_entry.lsn.0, code = rejection.code(), %rejection,
                              "committed transaction does not apply: kept as a no-op");
                        metrics::counter!("cstore_cluster_rejected_at_apply_total").increment(1);
                        state.skip_rejected(&log_entry);
                        Some(rejection)
                    }
                };
                // Retired under the state lock, so a check never sees an entry both applied
                // and in flight.
                if let EntryPayload::Normal(proposal) = &entry.payload
                    && !self.local.inflight.is_empty()
                {
                    self.local.inflight.retire(proposal);
                }
                {
                    let mut raft = self.local.raft.lock().expect("raft lock poisoned");
                    if let EntryPayload::Membership(membership) = &entry.payload {
                        raft.1 = RaftStoredMembership::new(Some(entry.log_id), membership.clone());
                    }
                    raft.0 = Some(entry.log_id);
                }
                if let Some(responder) = responder {
                    replies.push((
                        responder,
                        Outcome {
                            lsn: log_entry.lsn,
                            rejection,
                        },
                    ));
                }
                first.get_or_insert((log_entry.lsn, log_entry.hash));
                Ok::<_, std::convert::Infallible>(log_entry)
            })
            .await;
        if let Err(never) = applied {
            match never {}
        }
        if let Some((Lsn(1), hash)) = first {
            // The cluster's identity is its first entry (the initial membership).
            if let Err(e) = self.log.note_cluster_id(&hash.to_hex()) {
                warn!(error = %e, "cannot record the cluster id");
            }
        }
        metrics::gauge!("cstore_cluster_applied_lsn").set(self.local.copy.applied_lsn().0 as f64);
        for (responder, outcome) in replies {
            responder.send(outcome);
        }
    }
}

// The same type under every cstore type configuration.
type SnapshotOf = openraft::alias::SnapshotOf<ClusterTypes, Cursor<Vec<u8>>>;

impl<C: CstoreTypeConfig, S: SnapshotStore> RaftSnapshotBuilder<C> for StateMachine<S> {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf, io::Error> {
        let (snapshot, meta) = self.local.snapshot().await;
        if meta.last_log_id.is_some() {
            self.log
                .save_snapshot(snapshot.clone(), meta.clone())
                .await?;
            metrics::gauge!("cstore_cluster_snapshot_lsn").set(snapshot.position.lsn.0 as f64);
        }
        let data = crate::local::off_the_runtime(|| encode_snapshot(&snapshot));
        Ok(SnapshotOf {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl<C: CstoreTypeConfig, S: SnapshotStore> RaftStateMachine<C> for StateMachine<S> {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = StateMachine<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<RaftLogId>, RaftStoredMembership), io::Error> {
        let raft = self.local.raft.lock().expect("raft lock poisoned");
        Ok((raft.0, raft.1.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let mut chunk = Vec::new();
        while let Some(item) = entries.try_next().await? {
            chunk.push(item);
            if chunk.len() >= APPLY_CHUNK {
                self.apply_chunk::<C>(std::mem::take(&mut chunk)).await;
            }
        }
        if !chunk.is_empty() {
            self.apply_chunk::<C>(chunk).await;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine<S> {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &RaftSnapshotMeta,
        snapshot: Cursor<Vec<u8>>,
    ) -> Result<(), io::Error> {
        let snapshot = crate::local::off_the_runtime(|| decode_snapshot(snapshot.get_ref()))?;
        let Some(log_id) = meta.last_log_id else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a snapshot without a last log id",
            ));
        };
        if snapshot.position.lsn != lsn_of(log_id.index()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot at {} labelled {log_id}", snapshot.position.lsn),
            ));
        }
        let state = crate::local::off_the_runtime(|| State::from_snapshot(&snapshot))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.log
            .install_snapshot(snapshot.clone(), meta.clone())
            .await?;
        let membership = meta.last_membership.clone();
        self.local
            .copy
            .replace_with(state, || {
                *self.local.raft.lock().expect("raft lock poisoned") = (Some(log_id), membership);
            })
            .await;
        let position = self.local.applied_position();
        metrics::counter!("cstore_cluster_snapshot_installs_total").increment(1);
        metrics::gauge!("cstore_cluster_snapshot_lsn").set(position.lsn.0 as f64);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf>, io::Error> {
        let Some((snapshot, meta)) = self.log.current_snapshot().await? else {
            return Ok(None);
        };
        let data = crate::local::off_the_runtime(|| encode_snapshot(&snapshot));
        Ok(Some(SnapshotOf {
            meta,
            snapshot: Cursor::new(data),
        }))
    }
}
