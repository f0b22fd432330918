//! The simulation's openraft type configuration: the cluster's data types
//! ([`cstore_server::cluster::types::ClusterTypes`]'s), on a runtime that is tokio's with two
//! changes that make a run depend on nothing but its seed.
//!
//! - The RNG openraft draws election timeouts from is seeded. openraft asks its runtime for
//!   `thread_rng()`; tokio's is `rand::rng()`, seeded by the OS. openraft's `DeterministicRng`
//!   wrapper gives every task a seed derived from its parent's (task-local, so a task's draws
//!   depend only on the order of spawns), and the whole run is entered with [`SimRuntime::scope`]
//!   under the simulation's seed.
//! - Watch channels wake their receivers in a fixed order (`watch.rs`: tokio's uses its own
//!   OS-seeded RNG there).
//!
//! openraft picks between futures with its own biased `select`s (no `tokio::select!`), and
//! everything runs on one current-thread tokio runtime with a paused clock.

use std::future::Future;
use std::io;
use std::time::Duration;

use cstore_server::cluster::state_machine::StateMachine;
use cstore_server::cluster::types::{Outcome, Proposal};
use openraft::rt::deterministic_rng::DeterministicRng;
use openraft::{AsyncRuntime, OptionalSend};
use openraft_rt_tokio::TokioRuntime;

use super::disk::SimSnapshots;
use super::watch::SimWatch;

/// tokio with openraft's seeded RNG, and nothing else changed.
type Seeded = DeterministicRng<TokioRuntime>;

/// tokio, with a seeded RNG for openraft and deterministic watch channels.
#[derive(Debug)]
pub struct SimRuntime(Seeded);

impl SimRuntime {
    /// Runs `future` with the RNG seeded by `seed`.
    pub fn scope<F: Future>(
        seed: u64,
        future: F,
    ) -> openraft::rt::task_local::TaskLocalFuture<std::cell::Cell<u64>, F> {
        Seeded::scope(seed, future)
    }
}

impl AsyncRuntime for SimRuntime {
    type JoinError = <Seeded as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Seeded as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Seeded as AsyncRuntime>::Sleep;
    type Instant = <Seeded as AsyncRuntime>::Instant;
    type TimeoutError = <Seeded as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Seeded as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <Seeded as AsyncRuntime>::ThreadLocalRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Seeded::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Seeded::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Seeded::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Seeded::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Seeded::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Seeded::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        Seeded::thread_rng()
    }

    type Mpsc = <Seeded as AsyncRuntime>::Mpsc;
    type Watch = SimWatch;
    type Oneshot = <Seeded as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Seeded as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        SimRuntime(Seeded::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Seeded::spawn_blocking(f)
    }
}

openraft::declare_raft_types!(
    /// [`cstore_server::cluster::types::ClusterTypes`] on [`SimRuntime`].
    pub SimTypes:
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = SimRuntime,
);

/// A member's openraft handle: the real state machine, snapshots kept on the simulated disk.
pub type SimRaft = openraft::Raft<SimTypes, StateMachine<SimSnapshots>>;
