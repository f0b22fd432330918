//! A member's disk, in memory: what was fsynced survives a crash, what was only written does
//! not. Two models of when an appended entry becomes readable:
//!
//! ```text
//!  Buffered (the server's log store since its WAL thread, and what openraft's contract allows)
//!    append ─► readable at once, pending ─► fsync after a seeded delay (of everything pending)
//!                                        ─► durable ─► IOFlushed callbacks
//!  Synced (the server's log store before: entries readable only once fdatasync returned)
//!    append ─► fsync after a seeded delay ─► durable + readable ─► IOFlushed ─► returns
//!  both: truncate_after / purge / save_vote ─► wait for the appends before them and sync
//!          (one fsync after a seeded delay) ─► durable ─► return
//!        snapshot save / install ─► durable at once (the file store's synced snapshot + record)
//!        save_committed ─► written now, durable at the next fsync (the server saves it lazily);
//!                          read back at start clamped to the log held, as the server does
//!        crash ─► readable := durable, pending writes and their callbacks dropped, epoch + 1
//! ```
//!
//! Entries are stored as the server stores them: converted by `entry.rs` into hash-chained
//! cstore entries on append, back into openraft entries on read. Every handle (log store,
//! reader, snapshot store) carries the epoch of the incarnation that opened it: after a crash
//! the old incarnation's tasks get errors and can change nothing.
//!
//! Planted bugs (for the tests that prove the invariants catch them): `ack_before_fsync`
//! makes appended entries readable and reports them flushed before their fsync;
//! `vote_not_persisted` keeps votes out of the durable image, so a restarted member forgets
//! whom it voted for.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cstore_core::log::LogEntry;
use cstore_core::{LogPosition, Lsn, Snapshot};
use cstore_server::cluster::committed::committed_in_log;
use cstore_server::cluster::entry::{log_id_of, lsn_of, to_log_entry, to_raft_entry};
use cstore_server::cluster::log_store::index_bounds;
use cstore_server::cluster::state_machine::SnapshotStore;
use cstore_server::cluster::types::{RaftEntry, RaftLogId, RaftSnapshotMeta, RaftVote};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{AsyncRuntime, OptionalSend, RaftLogReader};

use super::rng::Rng;
use super::types::{SimRuntime, SimTypes};

/// Bugs a test can plant in every member's disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// Report appended entries flushed as soon as they are written, before the fsync.
    pub ack_before_fsync: bool,
    /// Never make a vote durable: a restarted member has forgotten it.
    pub vote_not_persisted: bool,
}

/// When an appended entry becomes readable (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DiskModel {
    /// Readable at once, durable at the next fsync: the server's log store (its WAL thread
    /// syncs appends in groups while openraft replicates them).
    #[default]
    Buffered,
    /// Readable once durable.
    Synced,
}

/// A log as one incarnation sees it (visible) or as it survives a crash (durable).
#[derive(Debug, Clone, Default)]
pub struct Image {
    /// The position just before the first entry held: the last purged entry, or the snapshot a
    /// reset continued after.
    pub base: LogPosition,
    /// The last purged entry.
    pub purged: Option<RaftLogId>,
    /// The entries held, by LSN, contiguous after `base`.
    pub entries: BTreeMap<Lsn, LogEntry>,
    /// The last vote saved.
    pub vote: Option<RaftVote>,
    /// The last committed log id saved (`save_committed`).
    pub committed: Option<RaftLogId>,
}

impl Image {
    pub fn last_position(&self) -> LogPosition {
        self.entries
            .last_key_value()
            .map_or(self.base, |(_, e)| e.position())
    }

    fn last_log_id(&self) -> Option<RaftLogId> {
        self.entries
            .last_key_value()
            .map(|(_, e)| log_id_of(e))
            .or(self.purged)
    }

    /// Carries out one write.
    fn apply(&mut self, op: &IoOp) {
        match op {
            IoOp::Append(entries) => {
                for entry in entries {
                    assert!(
                        entry.follows(self.last_position()),
                        "entry {} appended after {}",
                        entry.lsn,
                        self.last_position()
                    );
                    self.entries.insert(entry.lsn, entry.clone());
                }
            }
            IoOp::Truncate { from } => {
                self.entries.split_off(from);
            }
            IoOp::Purge { log_id, at } => {
                let through = lsn_of(log_id.index());
                if self.base.lsn < through {
                    self.base = *at;
                }
                self.entries = self.entries.split_off(&through.next());
                if self.purged.is_none_or(|p| p.index() < log_id.index()) {
                    self.purged = Some(*log_id);
                }
            }
            IoOp::Vote(vote) => self.vote = Some(*vote),
            IoOp::Committed(id) => self.committed = self.committed.max(Some(*id)),
        }
    }

    /// A snapshot installed from the leader: the entries after it stay when the log holds its
    /// last entry, else the log continues right after it (as `LogShared::install_snapshot`).
    fn install(&mut self, snapshot: &Snapshot, log_id: RaftLogId) {
        let position = snapshot.position;
        if self
            .entries
            .get(&position.lsn)
            .is_some_and(|e| e.position() == position)
        {
            return;
        }
        self.entries.clear();
        self.base = position;
        self.purged = Some(log_id);
    }

    /// The entry at `lsn`, if held.
    pub fn entry(&self, lsn: Lsn) -> Option<&LogEntry> {
        self.entries.get(&lsn)
    }
}

/// A write not fsynced yet.
#[derive(Debug, Clone)]
enum IoOp {
    Append(Vec<LogEntry>),
    Truncate {
        from: Lsn,
    },
    /// Entries through `log_id` go; `at` is that entry's position (from the log, or from the
    /// snapshot when the log ends before it: a member may apply, and snapshot, entries that
    /// its own disk has not fsynced yet, and lose them in a crash).
    Purge {
        log_id: RaftLogId,
        at: LogPosition,
    },
    Vote(RaftVote),
    /// The committed index: like the server's commit saver, durable some time later (here at
    /// the next fsync), and read back clamped to the log that survived.
    Committed(RaftLogId),
}

/// What a disk did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub fsyncs: u64,
    /// Writes a crash took before their fsync (appends and votes in flight, buffered writes).
    pub lost_ops: u64,
}

/// One member's disk, shared by its incarnations.
pub struct Disk {
    pub id: u64,
    /// The incarnation allowed to use the disk.
    pub epoch: u64,
    pub durable: Image,
    pub visible: Image,
    pending: Vec<IoOp>,
    callbacks: Vec<IOFlushed<SimTypes>>,
    flush_scheduled: bool,
    /// The snapshot last saved or installed, durable when the call returns.
    pub snapshot: Option<(Snapshot, RaftLogId)>,
    /// That snapshot's meta (saved with it).
    pub snapshot_meta: Option<RaftSnapshotMeta>,
    pub cluster_id: Option<String>,
    /// Every vote whose `save_vote` returned, in order (an observation for the invariants: it
    /// survives crashes, the member's memory does not).
    pub votes_saved: Vec<RaftVote>,
    /// The lowest LSN whose visible entry changed since the invariants last looked.
    pub changed_from: Option<Lsn>,
    pub stats: DiskStats,
    bugs: PlantedBugs,
    model: DiskModel,
    fsync_ms_max: u64,
    rng: Rng,
}

impl Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .field("durable", &self.durable.last_position())
            .field("visible", &self.visible.last_position())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// A disk as its handles share it.
pub type SharedDisk = Arc<Mutex<Disk>>;

pub fn lock(disk: &SharedDisk) -> MutexGuard<'_, Disk> {
    disk.lock().expect("disk lock poisoned")
}

fn stale(id: u64) -> io::Error {
    io::Error::other(format!(
        "member {id} crashed: this incarnation's disk handle is dead"
    ))
}

impl Disk {
    pub fn new(
        id: u64,
        rng: Rng,
        model: DiskModel,
        fsync_ms_max: u64,
        bugs: PlantedBugs,
    ) -> SharedDisk {
        Arc::new(Mutex::new(Disk {
            id,
            epoch: 0,
            durable: Image::default(),
            visible: Image::default(),
            pending: Vec::new(),
            callbacks: Vec::new(),
            flush_scheduled: false,
            snapshot: None,
            snapshot_meta: None,
            cluster_id: None,
            votes_saved: Vec::new(),
            changed_from: None,
            stats: DiskStats::default(),
            bugs,
            model,
            fsync_ms_max,
            rng,
        }))
    }

    fn check(&self, epoch: u64) -> io::Result<()> {
        if self.epoch == epoch {
            Ok(())
        } else {
            Err(stale(self.id))
        }
    }

    fn fsync_delay(&mut self) -> Duration {
        Duration::from_millis(self.rng.range(0, self.fsync_ms_max))
    }

    fn changed(&mut self, lsn: Lsn) {
        self.changed_from = Some(self.changed_from.map_or(lsn, |c| c.min(lsn)));
    }

    /// Writes `op` (visible now, durable at the next fsync).
    fn write(&mut self, op: IoOp) {
        self.visible.apply(&op);
        self.pending.push(op);
    }

    /// The fsync: every pending write becomes durable; the callbacks to fire.
    fn fsync(&mut self) -> Vec<IOFlushed<SimTypes>> {
        self.stats.fsyncs += 1;
        self.flush_scheduled = false;
        for op in std::mem::take(&mut self.pending) {
            if self.bugs.vote_not_persisted && matches!(op, IoOp::Vote(_)) {
                continue;
            }
            self.durable.apply(&op);
        }
        std::mem::take(&mut self.callbacks)
    }

    fn note_append(&mut self, op: &IoOp) {
        if let IoOp::Append(entries) = op
            && let Some(first) = entries.first()
        {
            self.changed(first.lsn);
        }
    }

    /// The member crashed: what was not fsynced is gone, and so are its old handles.
    pub fn crash(&mut self) {
        self.epoch += 1;
        self.stats.lost_ops += self.pending.len() as u64;
        self.pending.clear();
        self.callbacks.clear();
        self.flush_scheduled = false;
        self.visible = self.durable.clone();
        self.changed(Lsn(1));
    }
}

fn fire(callbacks: Vec<IOFlushed<SimTypes>>) {
    for callback in callbacks {
        callback.io_completed(Ok(()));
    }
}

/// Runs the fsync for `epoch` after `delay`, unless the member crashed in between.
fn schedule_fsync(disk: &SharedDisk, epoch: u64, delay: Duration) {
    let disk = Arc::clone(disk);
    drop(SimRuntime::spawn(async move {
        SimRuntime::sleep(delay).await;
        let callbacks = {
            let mut d = lock(&disk);
            if d.epoch != epoch {
                return;
            }
            d.fsync()
        };
        fire(callbacks);
    }));
}

/// openraft's log store (and reader) over one incarnation's view of a disk.
#[derive(Debug, Clone)]
pub struct SimLogStore {
    pub disk: SharedDisk,
    pub epoch: u64,
}

impl SimLogStore {
    /// The disk after a seeded delay: an operation this incarnation started before a crash is
    /// counted lost and fails.
    fn after_delay(&self) -> io::Result<MutexGuard<'_, Disk>> {
        let mut d = lock(&self.disk);
        if d.epoch != self.epoch {
            d.stats.lost_ops += 1;
        }
        d.check(self.epoch)?;
        Ok(d)
    }

    /// A write that is durable when it returns, in order with the appends before it: after a
    /// seeded fsync delay, `op`'s write and everything pending are synced together. A crash
    /// during the delay loses it.
    async fn sync_write(&self, op: impl FnOnce(&mut Disk) -> io::Result<IoOp>) -> io::Result<()> {
        let delay = {
            let mut d = lock(&self.disk);
            d.check(self.epoch)?;
            d.fsync_delay()
        };
        SimRuntime::sleep(delay).await;
        let callbacks = {
            let mut d = self.after_delay()?;
            let op = op(&mut d)?;
            if let IoOp::Truncate { from } = op {
                d.changed(from);
            }
            d.write(op);
            d.fsync()
        };
        fire(callbacks);
        Ok(())
    }
}

impl RaftLogReader<SimTypes> for SimLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, io::Error> {
        let (start, end) = index_bounds(&range);
        let d = lock(&self.disk);
        d.check(self.epoch)?;
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(d.visible
            .entries
            .range(lsn_of(start)..lsn_of(end.min(u64::MAX - 1)))
            .map(|(_, e)| to_raft_entry(e))
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<RaftVote>, io::Error> {
        let d = lock(&self.disk);
        d.check(self.epoch)?;
        Ok(d.visible.vote)
    }
}

impl RaftLogStorage<SimTypes> for SimLogStore {
    type LogReader = SimLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<SimTypes>, io::Error> {
        let d = lock(&self.disk);
        d.check(self.epoch)?;
        Ok(LogState {
            last_purged_log_id: d.visible.purged,
            last_log_id: d.visible.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> SimLogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &RaftVote) -> Result<(), io::Error> {
        let vote = *vote;
        self.sync_write(|d| {
            d.votes_saved.push(vote);
            Ok(IoOp::Vote(vote))
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<SimTypes>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (op, buffered, delay) = {
            let mut d = lock(&self.disk);
            d.check(self.epoch)?;
            let mut prev = d.visible.last_position();
            let mut stored = Vec::new();
            for entry in entries {
                let log_entry = to_log_entry(prev, &entry);
                prev = log_entry.position();
                stored.push(log_entry);
            }
            let buffered = d.model == DiskModel::Buffered || d.bugs.ack_before_fsync;
            (IoOp::Append(stored), buffered, d.fsync_delay())
        };
        if !buffered {
            // The server's way: one fsync, then the entries are readable and reported flushed.
            SimRuntime::sleep(delay).await;
            let callbacks = {
                let mut d = self.after_delay()?;
                d.note_append(&op);
                d.write(op);
                d.fsync()
            };
            fire(callbacks);
            callback.io_completed(Ok(()));
            return Ok(());
        }
        let mut d = lock(&self.disk);
        d.check(self.epoch)?;
        d.note_append(&op);
        d.write(op);
        if d.bugs.ack_before_fsync {
            callback.io_completed(Ok(()));
        } else {
            d.callbacks.push(callback);
        }
        if !d.flush_scheduled {
            d.flush_scheduled = true;
            schedule_fsync(&self.disk, self.epoch, delay);
        }
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<RaftLogId>) -> Result<(), io::Error> {
        let mut d = lock(&self.disk);
        d.check(self.epoch)?;
        if let Some(id) = committed {
            d.write(IoOp::Committed(id));
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<RaftLogId>, io::Error> {
        let d = lock(&self.disk);
        d.check(self.epoch)?;
        let image = &d.visible;
        Ok(committed_in_log(
            image.committed,
            image.purged,
            image.last_log_id(),
            |index| image.entry(lsn_of(index)).map(log_id_of),
        ))
    }

    async fn truncate_after(&mut self, last_log_id: Option<RaftLogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(Lsn(1), |id| lsn_of(id.index()).next());
        self.sync_write(|_| Ok(IoOp::Truncate { from })).await
    }

    async fn purge(&mut self, log_id: RaftLogId) -> Result<(), io::Error> {
        self.sync_write(|d| {
            let through = lsn_of(log_id.index());
            let at = match (d.visible.entry(through), &d.snapshot) {
                (Some(entry), _) => entry.position(),
                (None, Some((snapshot, _))) if snapshot.position.lsn == through => {
                    snapshot.position
                }
                (None, _) if d.visible.base.lsn >= through => d.visible.base,
                _ => panic!(
                    "member {} purges through {through}, which neither its log ({}) nor its \
                     snapshot holds",
                    d.id,
                    d.visible.last_position()
                ),
            };
            Ok(IoOp::Purge { log_id, at })
        })
        .await
    }
}

/// The state machine's snapshot storage on one incarnation's view of a disk.
#[derive(Debug, Clone)]
pub struct SimSnapshots {
    pub disk: SharedDisk,
    pub epoch: u64,
}

impl SnapshotStore for SimSnapshots {
    async fn save_snapshot(&self, snapshot: Snapshot, meta: RaftSnapshotMeta) -> io::Result<()> {
        let mut d = lock(&self.disk);
        d.check(self.epoch)?;
        let log_id = meta.last_log_id.expect("a saved snapshot has a log id");
        d.snapshot = Some((snapshot, log_id));
        d.snapshot_meta = Some(meta);
        Ok(())
    }

    async fn install_snapshot(&self, snapshot: Snapshot, meta: RaftSnapshotMeta) -> io::Result<()> {
        let log_id = meta
            .last_log_id
            .expect("an installed snapshot has a log id");
        let callbacks = {
            let mut d = lock(&self.disk);
            d.check(self.epoch)?;
            // Writes are serialized: what came before the install is on disk before it.
            let callbacks = d.fsync();
            d.durable.install(&snapshot, log_id);
            d.visible.install(&snapshot, log_id);
            d.changed(Lsn(1));
            d.snapshot = Some((snapshot, log_id));
            d.snapshot_meta = Some(meta);
            callbacks
        };
        fire(callbacks);
        Ok(())
    }

    async fn current_snapshot(&self) -> io::Result<Option<(Snapshot, RaftSnapshotMeta)>> {
        let d = lock(&self.disk);
        d.check(self.epoch)?;
        Ok(d.snapshot
            .as_ref()
            .map(|(snapshot, _)| snapshot.clone())
            .zip(d.snapshot_meta.clone()))
    }

    fn note_cluster_id(&self, id: &str) -> io::Result<()> {
        let mut d = lock(&self.disk);
        d.check(self.epoch)?;
        d.cluster_id.get_or_insert_with(|| id.to_string());
        Ok(())
    }
}
