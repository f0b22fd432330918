//! A deterministic simulation of cluster mode: real openraft `Raft` instances with the
//! server's type configuration and state machine (entries converted by `entry.rs`, applied to
//! core's `State` through the hash chain), all on one current-thread tokio runtime with a
//! paused clock, over an in-memory disk and network that fail as the seed says.
//!
//! One seed decides everything: how hostile the network is (loss, delay, duplication,
//! reordering), when partitions (symmetric and one-way) start and end, when members crash
//! (losing what they had not fsynced) and come back, when a member's wall clock jumps (it stamps
//! the proposals it leads, which drive TTL expiry) or the whole world's monotonic clock leaps,
//! when leadership is handed over, and what clients write. The invariants in [`invariants`] run
//! after every step. Then everything heals and every member must converge on the same
//! `(lsn, hash)` and the same state, holding every acknowledged write.
//!
//! ```text
//! step: time passes (every timer and message due runs) ─► chaos (schedule) ─► client answers
//!       ─► invariants ─► … ─► heal ─► steps until converged (invariants still after each)
//! ```
//!
//! What a seed covers (kept small so that 1,000 seeds run in about a minute in debug): 20 to 45
//! steps of 1 to 20–80 ms (about 1 s of chaos, some 5 election timeouts at the server's
//! defaults of 200 ms / 50 ms heartbeats), then healing and convergence (at most 30 s). Each
//! kind of chaos is off in half the seeds and otherwise strikes with a seeded chance per step:
//! 1–3 client writes (30–90 %), a crash (up to 12 %, a quarter of them power cuts of a majority
//! or all, down 20 ms to 1 s), a partition change (up to 15 %), a wall-clock jump of up to ±60 s
//! (up to 8 %), a leap of the monotonic clock by 0.1–1.5 s (up to 4 %), a leadership transfer (up
//! to 5 %); per message, loss and duplication (up to 15 %), reordering (up to 20 %, held back up
//! to 200 ms), delay (up to 20 ms); fsyncs take up to 5, 30 or 150 ms; a snapshot every 2–16
//! entries (the server's policy, scaled down), so compaction and snapshot installs happen.
//!
//! The files: `rng` (the seed), `types` and `watch` (the type configuration and its
//! deterministic runtime), `disk` (durable and volatile storage), `network` (the hostile wire),
//! `member` (start, crash, restart), `chaos` (the schedule), `client` and `workload` (client
//! writes) and `invariants` (one file per property).

mod chaos;
mod client;
pub mod disk;
pub mod invariants;
pub mod member;
pub mod network;
/// The simulators' shared randomness (core's `testing` feature).
pub mod rng {
    pub use cstore_core::sim::SimRng as Rng;
}
pub mod types;
pub mod watch;
pub mod workload;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use cstore_core::{LogPosition, Lsn};
use cstore_server::cluster::{ClusterConfig, raft_config};
use openraft::async_runtime::WatchReceiver;
use openraft::{AsyncRuntime, BasicNode, ServerState};

pub use client::Acked;
use client::ClientEvent;
use disk::{Disk, lock};
pub use disk::{DiskModel, PlantedBugs};
use member::Member;
use network::{Faults, NetStats, Network};
use rng::Rng;
use types::SimRuntime;

/// Simulated time allowed for convergence after healing.
const HEAL_MS_MAX: u64 = 30_000;
/// How long a client waits for its write's outcome.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// The wall clock the simulated time starts at (ms since the epoch).
const WALL_START_MS: u64 = 1_700_000_000_000;

/// What a run may change beyond the seed.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Members of the cluster (3 or 5).
    pub members: u64,
    /// When appended entries become readable.
    pub disk: DiskModel,
    /// openraft's `enable_leader_restore` (a restarted leader leads again without an
    /// election), if not as the server configures it (`raft_config`).
    pub leader_restore: Option<bool>,
    /// Bugs planted in every member's disk.
    pub bugs: PlantedBugs,
    /// Invariants not checked (by file name), to show that another one catches a planted bug
    /// too.
    pub unchecked: &'static [&'static str],
}

/// Why a seed failed, and how to run it again.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub options: Options,
    pub step: u64,
    pub now_ms: u64,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({} members) failed at step {} ({} ms): {}\n  reproduce: {}CSTORE_SIM_SEED={} \
             CSTORE_SIM_MEMBERS={} cargo test -p cstore-server --test cluster_sim one_seed \
             -- --nocapture   (CSTORE_SIM_TRACE=1 prints every event)",
            self.seed,
            self.options.members,
            self.step,
            self.now_ms,
            self.message,
            self.options.env(),
            self.seed,
            self.options.members
        )
    }
}

impl Options {
    /// The options the server runs with, on `members` members.
    pub fn server(members: u64) -> Options {
        Options {
            members,
            disk: DiskModel::Buffered,
            leader_restore: None,
            bugs: PlantedBugs::default(),
            unchecked: &[],
        }
    }

    /// The server's options, changed by `CSTORE_SIM_DISK=synced`,
    /// `CSTORE_SIM_LEADER_RESTORE=on|off` and
    /// `CSTORE_SIM_BUGS=ack_before_fsync,vote_not_persisted` (what a failure's reproduce line
    /// sets).
    pub fn from_env(members: u64) -> Options {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        let bugs = var("CSTORE_SIM_BUGS");
        Options {
            disk: if var("CSTORE_SIM_DISK") == "synced" {
                DiskModel::Synced
            } else {
                DiskModel::Buffered
            },
            leader_restore: match var("CSTORE_SIM_LEADER_RESTORE").as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            },
            bugs: PlantedBugs {
                ack_before_fsync: bugs.contains("ack_before_fsync"),
                vote_not_persisted: bugs.contains("vote_not_persisted"),
            },
            ..Options::server(members)
        }
    }

    /// The environment that makes `from_env` give these options (the invariants switched off
    /// are not carried: a replay checks them all).
    fn env(&self) -> String {
        let mut env = String::new();
        if self.disk == DiskModel::Synced {
            env.push_str("CSTORE_SIM_DISK=synced ");
        }
        match self.leader_restore {
            Some(true) => env.push_str("CSTORE_SIM_LEADER_RESTORE=on "),
            Some(false) => env.push_str("CSTORE_SIM_LEADER_RESTORE=off "),
            None => {}
        }
        let mut bugs = Vec::new();
        if self.bugs.ack_before_fsync {
            bugs.push("ack_before_fsync");
        }
        if self.bugs.vote_not_persisted {
            bugs.push("vote_not_persisted");
        }
        if !bugs.is_empty() {
            env.push_str(&format!("CSTORE_SIM_BUGS={} ", bugs.join(",")));
        }
        env
    }
}

/// What a run did; equal reports for equal seeds show that a run replays exactly (`trace`
/// hashes every event in order: schedule actions, client answers, leaders, committed entries).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub members: u64,
    pub steps: u64,
    pub now_ms: u64,
    /// Simulated time from healing to convergence.
    pub heal_ms: u64,
    pub final_position: LogPosition,
    pub writes: u64,
    pub acked: u64,
    pub rejected: u64,
    pub refused: u64,
    pub unknown: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub clock_jumps: u64,
    pub world_jumps: u64,
    pub transfers: u64,
    /// Terms that had a leader.
    pub leaders: u64,
    pub snapshots_sent: u64,
    pub fsyncs: u64,
    pub lost_ops: u64,
    pub net: NetStats,
    pub trace: u64,
}

/// How often each kind of chaos strikes in this seed (zero: never).
#[derive(Debug, Clone)]
struct Knobs {
    steps: u64,
    step_ms_max: u64,
    write: f64,
    crash: f64,
    down_ms_max: u64,
    partition: f64,
    clock_jump: f64,
    world_jump: f64,
    transfer: f64,
}

/// An entry of the committed history: its position and term, and who reported it first.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub position: LogPosition,
    pub term: Option<u64>,
    pub seen_on: u64,
}

/// What the invariants remember across steps (observations, not member state: they survive
/// crashes).
#[derive(Debug, Default)]
pub struct Observed {
    /// The leader of each term, and where that was seen.
    pub leaders: BTreeMap<u64, (u64, &'static str)>,
    /// Whom each member voted for in each term: `(member, term) → candidate`.
    pub votes: BTreeMap<(u64, u64), u64>,
    /// Votes of each member's disk already looked at.
    pub votes_checked: BTreeMap<u64, usize>,
    /// The committed history, by LSN.
    pub committed: BTreeMap<Lsn, Committed>,
}

/// An order-sensitive hash of every event of a run (FNV-1a).
#[derive(Debug)]
pub struct Trace {
    hash: u64,
    print: bool,
}

impl Trace {
    fn new(print: bool) -> Trace {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            print,
        }
    }

    pub fn note(&mut self, now_ms: u64, event: &str) {
        if self.print {
            eprintln!("{now_ms:>7} ms  {event}");
        }
        for byte in now_ms.to_le_bytes().iter().chain(event.as_bytes()) {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub struct World {
    pub seed: u64,
    pub options: Options,
    rng: Rng,
    knobs: Knobs,
    config: Arc<openraft::Config>,
    pub members: Vec<Member>,
    pub net: Network,
    faults: Faults,
    clients: Arc<Mutex<Vec<ClientEvent>>>,
    next_write: u64,
    pub acked: Vec<Acked>,
    pub observed: Observed,
    pub trace: Trace,
    pub step: u64,
    started: tokio::time::Instant,
    report: Report,
}

thread_local! {
    /// The first panic on this thread since the run started (tasks' panics are caught by
    /// tokio; this is how the run learns of them).
    static PANICKED: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.with(|p| {
                p.borrow_mut().get_or_insert_with(|| info.to_string());
            });
            default(info);
        }));
    });
}

/// Runs one seed to the end: chaos, then healing and convergence. A panic anywhere (in openraft,
/// the state machine, core, or the simulation) fails the seed too.
pub fn run(seed: u64, options: Options) -> Result<Report, Failure> {
    install_panic_hook();
    PANICKED.with(|p| p.borrow_mut().take());
    let outcome = std::panic::catch_unwind(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a tokio runtime");
        runtime.block_on(SimRuntime::scope(seed, run_world(seed, options)))
    });
    outcome.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(Failure {
            seed,
            options,
            step: 0,
            now_ms: 0,
            message: format!("panicked: {message}"),
        })
    })
}

async fn run_world(seed: u64, options: Options) -> Result<Report, Failure> {
    let mut world = World::new(seed, options).await;
    for _ in 0..world.knobs.steps {
        let step_ms = world.rng.range(1, world.knobs.step_ms_max);
        world.step(step_ms).await?;
        world.chaos().await;
        world.check()?;
    }
    world.heal().await;
    let healed_at = world.now_ms();
    loop {
        world.step(50).await?;
        world.check()?;
        match invariants::converged::check(&world) {
            Ok(position) => {
                world.report.final_position = position;
                break;
            }
            Err(why) if world.now_ms() > healed_at + HEAL_MS_MAX => {
                return Err(world.fail(format!(
                    "no convergence {HEAL_MS_MAX} ms after healing: {why}"
                )));
            }
            Err(_) => {}
        }
    }
    invariants::acked_kept::check(&world).map_err(|message| world.fail(message))?;
    let now = world.now_ms();
    world.report.steps = world.step;
    world.report.now_ms = now;
    world.report.heal_ms = now - healed_at;
    world.report.net = world.net.stats();
    world.report.snapshots_sent = world
        .net
        .delivered()
        .get(&network::Kind::Snapshot)
        .copied()
        .unwrap_or(0);
    world.report.leaders = world.observed.leaders.len() as u64;
    for member in &world.members {
        let d = lock(&member.disk);
        world.report.fsyncs += d.stats.fsyncs;
        world.report.lost_ops += d.stats.lost_ops;
    }
    let final_event = format!("converged at {}", world.report.final_position);
    world.trace.note(now, &final_event);
    world.report.trace = world.trace.hash;
    Ok(world.report)
}

impl World {
    async fn new(seed: u64, options: Options) -> World {
        let mut rng = Rng::new(seed);
        let knobs = Knobs {
            steps: rng.range(20, 45),
            step_ms_max: rng.range(20, 80),
            write: 0.3 + rng.below(60) as f64 / 100.0,
            crash: rng.maybe(0.12),
            down_ms_max: rng.range(50, 1_000),
            partition: rng.maybe(0.15),
            clock_jump: rng.maybe(0.08),
            world_jump: rng.maybe(0.04),
            transfer: rng.maybe(0.05),
        };
        let faults = Faults {
            loss: rng.maybe(0.15),
            duplicate: rng.maybe(0.15),
            reorder: rng.maybe(0.2),
            reorder_ms_max: rng.range(1, 200),
            delay_ms_max: rng.range(0, 20),
        };
        // A fast disk, an ordinary one, or a slow one (a busy volume, a cloud disk).
        let fsync_ms_max = rng.pick(&[5, 30, 150]);
        let ids: Vec<u64> = (1..=options.members).collect();
        let cluster = ClusterConfig {
            node_id: 1,
            members: ids.iter().map(|id| (*id, format!("sim://{id}"))).collect(),
            election_timeout_ms: cstore_server::cluster::ELECTION_TIMEOUT_MS_DEFAULT,
            heartbeat_ms: cstore_server::cluster::HEARTBEAT_MS_DEFAULT,
            token: None,
            tail_bytes_max: 1 << 20,
            snapshot_every_entries: rng.range(2, 16),
            bind_ip: None,
        };
        let mut config = raft_config(&cluster).expect("a valid configuration");
        if let Some(restore) = options.leader_restore {
            config.enable_leader_restore = Some(restore);
        }
        let config = Arc::new(config);
        let net = Network::new(rng.fork(), faults);
        let members = ids
            .iter()
            .map(|id| {
                Member::new(
                    *id,
                    Disk::new(*id, rng.fork(), options.disk, fsync_ms_max, options.bugs),
                )
            })
            .collect();
        let print = std::env::var_os("CSTORE_SIM_TRACE").is_some();
        let mut world = World {
            seed,
            options,
            rng,
            knobs,
            config,
            members,
            net,
            faults,
            clients: Arc::default(),
            next_write: 0,
            acked: Vec::new(),
            observed: Observed::default(),
            trace: Trace::new(print),
            step: 0,
            started: tokio::time::Instant::now(),
            report: Report {
                members: options.members,
                ..Report::default()
            },
        };
        if print {
            eprintln!(
                "seed {seed}: {:?} {:?} fsync ≤ {fsync_ms_max} ms",
                world.knobs, world.faults
            );
        }
        // The lowest id last: it finds the others up and initializes the cluster at once.
        for m in (0..world.members.len()).rev() {
            world.start(m).await;
        }
        world
    }

    /// Starts member `m`; the lowest id initializes the cluster when it is fresh, as
    /// `Cluster::open` does.
    pub(super) async fn start(&mut self, m: usize) {
        let config = Arc::clone(&self.config);
        self.members[m].start(config, &self.net).await;
        if m == 0 {
            let nodes = self
                .members
                .iter()
                .map(|member| {
                    let addr = format!("sim://{}", member.id);
                    (member.id, BasicNode { addr })
                })
                .collect();
            self.members[0].initialize_when_fresh(&self.net, nodes);
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn fail(&self, message: String) -> Failure {
        Failure {
            seed: self.seed,
            options: self.options,
            step: self.step,
            now_ms: self.now_ms(),
            message,
        }
    }

    fn note(&mut self, event: &str) {
        let now = self.now_ms();
        self.trace.note(now, event);
    }

    /// Lets `ms` of simulated time pass: every timer, message and fsync due runs.
    async fn step(&mut self, ms: u64) -> Result<(), Failure> {
        self.step += 1;
        SimRuntime::sleep(Duration::from_millis(ms)).await;
        if let Some(panic) = PANICKED.with(|p| p.borrow().clone()) {
            return Err(self.fail(format!("a task panicked: {panic}")));
        }
        self.collect_answers();
        Ok(())
    }

    fn check(&mut self) -> Result<(), Failure> {
        invariants::check(self).map_err(|message| self.fail(message))
    }

    fn up_members(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|m| self.members[*m].up.is_some())
            .collect()
    }

    /// The members whose Raft says it leads (a deposed leader may not know yet).
    fn believed_leaders(&self) -> Vec<usize> {
        self.up_members()
            .into_iter()
            .filter(|m| {
                let raft = &self.members[*m].up.as_ref().expect("up").raft;
                raft.metrics().borrow_watched().state == ServerState::Leader
            })
            .collect()
    }
}
