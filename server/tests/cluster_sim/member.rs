//! A simulated member: its disk, which survives crashes, and the incarnation running on it (a
//! real openraft `Raft` over the real state machine), which does not.
//!
//! ```text
//!  start:   durable snapshot ─► State ─► Local ─► StateMachine ┐
//!           disk (epoch e) ─► SimLogStore ─────────────────────┼─► Raft::new ─► network.attach
//!  crash:   network.detach ─► disk.crash (epoch e+1: unsynced writes gone) ─► Raft shut down
//!  restart: start again on the same disk
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cstore_core::Lsn;
use cstore_core::state::State;
use cstore_server::cluster::state_machine::{Local, StateMachine};
use openraft::{AsyncRuntime, BasicNode};

use super::disk::{SharedDisk, SimLogStore, SimSnapshots, lock};
use super::network::Network;
use super::types::{SimRaft, SimRuntime};

/// Bound of a member's replication tail, in bytes (the invariants read applied entries there).
const TAIL_BYTES_MAX: u64 = 4 << 20;

/// One run of a member, from a start to a crash.
pub struct Incarnation {
    pub raft: SimRaft,
    pub local: Arc<Local>,
    /// Applied entries up to here were checked against the committed history.
    pub checked_applied: Lsn,
    /// Log entries up to here (committed ones) were checked.
    pub checked_log: Lsn,
}

/// A member of the simulated cluster.
pub struct Member {
    pub id: u64,
    pub disk: SharedDisk,
    /// The running incarnation; `None` while the member is down.
    pub up: Option<Incarnation>,
    /// When a down member comes back (simulated ms).
    pub restart_at_ms: u64,
    /// How far this member's wall clock is off (it stamps the proposals it leads).
    pub wall_offset_ms: i64,
}

impl Member {
    pub fn new(id: u64, disk: SharedDisk) -> Member {
        Member {
            id,
            disk,
            up: None,
            restart_at_ms: 0,
            wall_offset_ms: 0,
        }
    }

    /// Starts an incarnation on the disk, as `Cluster::open` does on the data directory.
    pub async fn start(&mut self, config: Arc<openraft::Config>, net: &Network) {
        assert!(self.up.is_none(), "member {} is running already", self.id);
        let (epoch, snapshot) = {
            let d = lock(&self.disk);
            (d.epoch, d.snapshot.clone())
        };
        let (state, log_id) = match snapshot {
            Some((snapshot, log_id)) => (
                State::from_snapshot(&snapshot).expect("a saved snapshot loads"),
                Some(log_id),
            ),
            None => (State::new(), None),
        };
        let local = Arc::new(Local::new(state, log_id, TAIL_BYTES_MAX));
        let applied = local.applied_position().lsn;
        let log_store = SimLogStore {
            disk: Arc::clone(&self.disk),
            epoch,
        };
        let snapshots = SimSnapshots {
            disk: Arc::clone(&self.disk),
            epoch,
        };
        let raft = SimRaft::new(
            self.id,
            config,
            net.factory(self.id, epoch),
            log_store,
            StateMachine::new(Arc::clone(&local), snapshots),
        )
        .await
        .expect("openraft starts");
        net.attach(self.id, epoch, raft.clone());
        self.up = Some(Incarnation {
            raft,
            local,
            checked_applied: applied,
            checked_log: Lsn::ZERO,
        });
    }

    /// As `Cluster::initialize_when_fresh` on the lowest id: initializes the cluster with
    /// `members` once every other member answers that it belongs to no cluster yet, trying again
    /// every 200 ms; gives up when this incarnation, or another member, is initialized. Runs on
    /// every start, so a crash before the first entry was durable is recovered from.
    pub fn initialize_when_fresh(&self, net: &Network, members: BTreeMap<u64, BasicNode>) {
        let Some(up) = &self.up else {
            return;
        };
        let (raft, net, id) = (up.raft.clone(), net.clone(), self.id);
        drop(SimRuntime::spawn(async move {
            loop {
                if raft.is_initialized().await != Ok(false) {
                    return;
                }
                let mut all_fresh = true;
                for &peer in members.keys().filter(|p| **p != id) {
                    match net.hello(id, peer).await {
                        Some(true) => return,
                        Some(false) => {}
                        None => all_fresh = false,
                    }
                }
                if all_fresh {
                    let _ = raft.initialize(members).await;
                    return;
                }
                SimRuntime::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    /// The process dies: nothing it did not fsync survives, and it answers nobody.
    pub fn crash(&mut self, net: &Network) {
        net.detach(self.id);
        lock(&self.disk).crash();
        if let Some(incarnation) = self.up.take() {
            drop(SimRuntime::spawn(async move {
                // The old Raft's storage calls fail from now on; stop its tasks too.
                let _ = incarnation.raft.shutdown().await;
            }));
        }
    }
}
