//! Write unavailability after `kill -9` of the leader: cstore's 3-member Raft cluster against
//! 3 etcd members, the same trials and the same clients for both.
//!
//! ```text
//!  per trial:  load: K closed-loop clients, each writes to one member; on an error (refused,
//!              │      reset, timeout, 503, 504) it moves to the next member and retries
//!              ├─ ~1 s of steady writes
//!              ├─ find the leader ─ mark t0 ─ SIGKILL its PID
//!              ├─ wait for the first write acknowledged whose request was SENT at or after t0
//!              │     (a reply to an earlier request may have committed before the kill)
//!              │     unavailability = that acknowledgement − t0
//!              ├─ stop the load, restart the killed member (same data dir and port)
//!              └─ healthy again (cstore: agreed leader + every member applied the same entry;
//!                 etcd: every member healthy, all name the same leader) ─ pause ─ next trial
//! ```
//!
//! A client abandons a request after a short bound, drawn per request between half of
//! [`FailoverConfig::request_timeout`] and all of it: a request held by a member whose leader
//! just died would otherwise keep that client from sending a fresh one. The bound is the same
//! for both systems; drawing it keeps the clients from retrying in step (with a fixed bound,
//! clients that all lost the same member at the kill would probe only every bound, and the
//! figure would land on that grid).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use super::driver::Request;
use super::error::PeerError;
use super::peer::EtcdCluster;
use super::raft::RaftCluster;
use super::target::{Target, Writer};

/// Error messages kept per system.
const ERROR_SAMPLES_MAX: usize = 5;
/// Pause of a client after a failed request before it tries the next member.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// Writes needed in the steady phase before the kill (else the trial is not steady).
const STEADY_WRITES_MIN: u64 = 20;
/// Bound on an etcd cluster being healthy again after a restart.
const ETCD_HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the failover trials run.
#[derive(Clone, Copy, Debug)]
pub struct FailoverConfig {
    /// Trials per system.
    pub trials: usize,
    /// Closed-loop writers.
    pub clients: usize,
    /// Steady writes before each kill (plus up to 20 % random jitter).
    pub steady: Duration,
    /// Pause after the cluster is healthy again, before the next trial.
    pub pause: Duration,
    /// Upper bound on one write request (each request draws its bound from half of this up to
    /// this).
    pub request_timeout: Duration,
    /// Bound on the first fresh acknowledgement after a kill (the trial fails past it).
    pub ack_timeout: Duration,
}

/// What the trials on one system measured.
#[derive(Debug)]
pub struct FailoverReport {
    /// The system.
    pub system: String,
    /// Its election settings, as run.
    pub settings: String,
    /// Unavailability of each completed trial, ms, in trial order.
    pub unavailable_ms: Vec<f64>,
    /// Trials that measured nothing, and why.
    pub failures: Vec<String>,
    /// Writes acknowledged over all trials.
    pub acked: u64,
    /// Failed write requests over all trials (expected around each kill).
    pub errors: u64,
    /// A few of their messages.
    pub error_samples: Vec<String>,
}

impl FailoverReport {
    fn new(system: &str, settings: &str) -> FailoverReport {
        FailoverReport {
            system: system.into(),
            settings: settings.into(),
            unavailable_ms: Vec::new(),
            failures: Vec::new(),
            acked: 0,
            errors: 0,
            error_samples: Vec::new(),
        }
    }

    /// Nearest-rank quantile of the completed trials, ms (`q` in 0..=1).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let mut sorted = self.unavailable_ms.clone();
        sorted.sort_by(f64::total_cmp);
        nearest_rank(&sorted, q)
    }

    fn print_errors(&self) {
        println!(
            "    {} writes acknowledged, {} failed (retried on the next member), e.g. {:?}",
            self.acked, self.errors, self.error_samples
        );
    }

    fn absorb(&mut self, load: LoadTotals) {
        self.acked += load.acked;
        self.errors += load.errors;
        for sample in load.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES_MAX {
                self.error_samples.push(sample);
            }
        }
    }
}

/// Nearest-rank quantile of ascending `sorted` values.
pub fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What the trials do to a cluster, the same for both systems.
trait Subject {
    /// Index of the member that leads now.
    fn leader(&self) -> Result<usize, PeerError>;
    /// Member `i`'s PID while it runs.
    fn pid(&self, i: usize) -> Option<u32>;
    /// SIGKILL to member `i` by its PID (reaped).
    fn kill9(&mut self, i: usize) -> Result<(), PeerError>;
    /// Starts member `i` again on its data dir and waits until the cluster is healthy.
    fn restart_and_heal(&mut self, i: usize) -> Result<(), PeerError>;
}

impl Subject for RaftCluster {
    fn leader(&self) -> Result<usize, PeerError> {
        RaftCluster::leader(self)
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.processes.members[i].pid()
    }

    fn kill9(&mut self, i: usize) -> Result<(), PeerError> {
        self.processes.members[i].kill9()?;
        Ok(())
    }

    fn restart_and_heal(&mut self, i: usize) -> Result<(), PeerError> {
        self.processes.members[i].restart()?;
        self.wait_healthy().map(|_| ())
    }
}

impl Subject for EtcdCluster {
    fn leader(&self) -> Result<usize, PeerError> {
        self.leader_index()
    }

    fn pid(&self, i: usize) -> Option<u32> {
        EtcdCluster::pid(self, i)
    }

    fn kill9(&mut self, i: usize) -> Result<(), PeerError> {
        EtcdCluster::kill9(self, i);
        Ok(())
    }

    fn restart_and_heal(&mut self, i: usize) -> Result<(), PeerError> {
        self.restart(i)?;
        self.wait_healthy(ETCD_HEALTHY_TIMEOUT)
            .map(|_| ())
            .ok_or_else(|| {
                PeerError::net(
                    "etcd after a restart",
                    format!(
                        "not healthy with one leader within {} s",
                        ETCD_HEALTHY_TIMEOUT.as_secs()
                    ),
                )
            })
    }
}

/// The trials on a fresh 3-member cstore cluster (default election timings).
pub fn measure_cstore(
    runtime: &tokio::runtime::Runtime,
    config: FailoverConfig,
) -> Result<FailoverReport, PeerError> {
    let system = "cstore 3-member Raft cluster";
    println!("==> failover: {system}, {} trials", config.trials);
    let mut cluster = RaftCluster::start(3)?;
    let report = FailoverReport::new(
        system,
        "election timeout T = 200 ms (a follower stands after 2.5–3 T without a leader), heartbeat 50 ms (server defaults)",
    );
    let urls = cluster.urls();
    let target = |url: &str| Target::Cstore {
        url: url.into(),
        ack: None,
    };
    Ok(run_trials(
        runtime,
        config,
        &mut cluster,
        &urls,
        target,
        report,
    ))
}

/// The trials on a fresh 3-member etcd cluster (etcd's default election timings).
pub fn measure_etcd(
    runtime: &tokio::runtime::Runtime,
    config: FailoverConfig,
    port_offset: u16,
) -> Result<FailoverReport, PeerError> {
    let system = "etcd 3.4 (3 members)";
    println!("==> failover: {system}, {} trials", config.trials);
    let mut etcd = EtcdCluster::start(3, port_offset)?;
    let report = FailoverReport::new(
        system,
        "election timeout 1000 ms (randomized up to 2×), heartbeat 100 ms (etcd defaults)",
    );
    let urls = etcd.client_urls().to_vec();
    let target = |url: &str| Target::Etcd { url: url.into() };
    Ok(run_trials(
        runtime, config, &mut etcd, &urls, target, report,
    ))
}

/// Runs the trials; a trial that measures nothing is a failure in the report, and one that
/// leaves the cluster broken (no leader, a member that does not come back) ends the run there.
fn run_trials(
    runtime: &tokio::runtime::Runtime,
    config: FailoverConfig,
    subject: &mut impl Subject,
    urls: &[String],
    target: impl Fn(&str) -> Target + Copy,
    mut report: FailoverReport,
) -> FailoverReport {
    for trial in 1..=config.trials {
        if let Err(e) = one_trial(runtime, config, subject, urls, target, trial, &mut report) {
            let why = format!("trial {trial}: the run stopped here: {e}");
            println!("    {why}");
            report.failures.push(why);
            break;
        }
    }
    report.print_errors();
    report
}

fn one_trial(
    runtime: &tokio::runtime::Runtime,
    config: FailoverConfig,
    subject: &mut impl Subject,
    urls: &[String],
    target: impl Fn(&str) -> Target,
    trial: usize,
    report: &mut FailoverReport,
) -> Result<(), PeerError> {
    let load = Load::start(runtime, urls, target, config)?;
    let steady = steady_phase(&load, config);
    let leader = match subject.leader() {
        Ok(leader) => leader,
        Err(e) => {
            report.absorb(load.stop(runtime));
            return Err(e);
        }
    };
    if let Err(why) = steady {
        report.absorb(load.stop(runtime));
        let why = format!("trial {trial}: {why}");
        println!("    {why}");
        report.failures.push(why);
        std::thread::sleep(config.pause);
        return Ok(());
    }
    let pid = subject.pid(leader).unwrap_or(0);
    let t0 = load.mark();
    let killed = subject.kill9(leader);
    let first = match killed {
        Ok(()) => load.wait_fresh_ack(config.ack_timeout),
        Err(_) => None,
    };
    report.absorb(load.stop(runtime));
    killed?;
    match first {
        Some(ack) => {
            let ms = ack.saturating_sub(t0) as f64 / 1e6;
            report.unavailable_ms.push(ms);
            println!(
                "    trial {trial}: killed member {} (pid {pid}), first fresh ack after {ms:.0} ms",
                leader + 1
            );
        }
        None => {
            let why = format!(
                "trial {trial}: no write acknowledged within {} s of the kill",
                config.ack_timeout.as_secs()
            );
            println!("    {why}");
            report.failures.push(why);
        }
    }
    subject.restart_and_heal(leader)?;
    std::thread::sleep(config.pause);
    Ok(())
}

/// Lets the load run for the steady phase (with jitter, so kills fall anywhere between
/// heartbeats) and checks that it wrote.
fn steady_phase(load: &Load, config: FailoverConfig) -> Result<(), String> {
    let jitter = rand::rng().random_range(0.0..0.2);
    let before = load.acked();
    std::thread::sleep(config.steady.mul_f64(1.0 + jitter));
    let wrote = load.acked() - before;
    if wrote < STEADY_WRITES_MIN {
        return Err(format!(
            "only {wrote} writes acknowledged in the steady phase (errors: {:?})",
            load.shared.samples()
        ));
    }
    Ok(())
}

/// What the load's clients share: the clock, the kill mark, the first fresh acknowledgement.
#[derive(Debug)]
struct Shared {
    base: Instant,
    /// Nanoseconds since `base` of the kill mark; `u64::MAX` while unset.
    mark_ns: AtomicU64,
    /// Nanoseconds since `base` of the first acknowledgement of a request sent at or after the
    /// mark; `u64::MAX` while none.
    first_fresh_ack_ns: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    next: AtomicU64,
    stop: AtomicBool,
    error_samples: Mutex<Vec<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn samples(&self) -> Vec<String> {
        self.error_samples.lock().expect("samples lock").clone()
    }
}

/// Totals of one trial's load.
#[derive(Debug)]
struct LoadTotals {
    acked: u64,
    errors: u64,
    error_samples: Vec<String>,
}

/// The write load of one trial: `config.clients` tasks on the runtime.
#[derive(Debug)]
struct Load {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the clients; client `i` begins on member `i % members` and moves to the next
    /// member after each failed request.
    fn start(
        runtime: &tokio::runtime::Runtime,
        urls: &[String],
        target: impl Fn(&str) -> Target,
        config: FailoverConfig,
    ) -> Result<Load, PeerError> {
        let shared = Arc::new(Shared {
            base: Instant::now(),
            mark_ns: AtomicU64::new(u64::MAX),
            first_fresh_ack_ns: AtomicU64::new(u64::MAX),
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            next: AtomicU64::new(rand::rng().random_range(0..1u64 << 40)),
            stop: AtomicBool::new(false),
            error_samples: Mutex::new(Vec::new()),
        });
        let targets: Vec<Target> = urls.iter().map(|u| target(u)).collect();
        let writers: Vec<Vec<Writer>> = runtime
            .block_on(async {
                let mut all = Vec::with_capacity(config.clients);
                for _ in 0..config.clients {
                    let mut mine = Vec::with_capacity(targets.len());
                    for target in &targets {
                        mine.push(target.writer().await?);
                    }
                    all.push(mine);
                }
                Ok::<_, String>(all)
            })
            .map_err(|e| PeerError::net("opening the failover clients", e))?;
        let tasks = writers
            .into_iter()
            .enumerate()
            .map(|(i, writers)| {
                runtime.spawn(client(
                    Arc::clone(&shared),
                    writers,
                    i,
                    config.request_timeout,
                ))
            })
            .collect();
        Ok(Load { shared, tasks })
    }

    fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// Sets the kill mark to now (forgetting any earlier fresh acknowledgement); returns it.
    fn mark(&self) -> u64 {
        self.shared
            .first_fresh_ack_ns
            .store(u64::MAX, Ordering::SeqCst);
        let now = self.shared.now_ns();
        self.shared.mark_ns.store(now, Ordering::SeqCst);
        now
    }

    /// The first fresh acknowledgement (ns since the load's base), waiting up to `timeout`.
    fn wait_fresh_ack(&self, timeout: Duration) -> Option<u64> {
        let started = Instant::now();
        loop {
            let first = self.shared.first_fresh_ack_ns.load(Ordering::SeqCst);
            if first != u64::MAX {
                return Some(first);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the clients (each finishes its request in flight, bounded by its timeout).
    fn stop(self, runtime: &tokio::runtime::Runtime) -> LoadTotals {
        self.shared.stop.store(true, Ordering::SeqCst);
        runtime.block_on(async {
            for task in self.tasks {
                let _ = task.await;
            }
        });
        LoadTotals {
            acked: self.shared.acked.load(Ordering::SeqCst),
            errors: self.shared.errors.load(Ordering::SeqCst),
            error_samples: self.shared.samples(),
        }
    }
}

/// One client: writes to its current member until told to stop; on a failure moves on.
async fn client(shared: Arc<Shared>, mut writers: Vec<Writer>, index: usize, bound: Duration) {
    let mut member = index % writers.len();
    let bound_us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX).max(2);
    while !shared.stop.load(Ordering::Relaxed) {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let this_bound = Duration::from_micros(rand::rng().random_range(bound_us / 2..=bound_us));
        let sent = shared.now_ns();
        let outcome = match tokio::time::timeout(this_bound, writers[member].send(n)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {} ms", this_bound.as_millis())),
        };
        match outcome {
            Ok(()) => {
                let acked_at = shared.now_ns();
                shared.acked.fetch_add(1, Ordering::Relaxed);
                if sent >= shared.mark_ns.load(Ordering::SeqCst) {
                    shared
                        .first_fresh_ack_ns
                        .fetch_min(acked_at, Ordering::SeqCst);
                }
            }
            Err(message) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                {
                    let mut samples = shared.error_samples.lock().expect("samples lock");
                    if samples.len() < ERROR_SAMPLES_MAX {
                        samples.push(format!("member {}: {message}", member + 1));
                    }
                }
                member = (member + 1) % writers.len();
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_of_twenty_trials() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&values, 0.5), Some(10.0));
        assert_eq!(nearest_rank(&values, 0.99), Some(20.0));
        assert_eq!(nearest_rank(&values, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
