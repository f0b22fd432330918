//! The threads replication sessions run on, apart from the HTTP edge and the writes.
//!
//! A commit wakes every session at once. On the runtime that also serves HTTP, ten thousand
//! woken sessions sat in the run queues ahead of the next write's request and of the answer
//! to the write just committed: with 10,000 replicas at 10 writes/s, an HTTP write took
//! 180 to 225 ms (p50) on 2 cores, nearly all of it waiting behind the fan-out. On threads of
//! their own, the sessions share the CPU with the edge through the kernel's scheduler, and the
//! same writes took 4 to 7 ms (`cstore-fanout`, BENCHMARKS.md).
//!
//! A plain TCP socket is registered with this runtime's reactor when its session starts
//! (`upgrade`), so a replica's acknowledgement wakes its session here without passing through
//! an edge worker; a TLS socket stays with the edge's reactor. The session tasks, their timers,
//! their sockets and their reads of the log run here.

use tokio::runtime::{Builder, Handle, Runtime};

/// Threads for sessions when not told: half the CPUs, at least one, so the edge and the
/// commit path keep the other half whatever the number of replicas.
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 2).max(1)
}

/// Where sessions run: threads of their own, or the caller's runtime.
#[derive(Debug)]
pub struct SessionRuntime {
    runtime: Option<Runtime>,
}

impl SessionRuntime {
    /// `threads` worker threads of their own; 0 runs sessions on the caller's runtime.
    pub fn new(threads: usize) -> std::io::Result<SessionRuntime> {
        let runtime = match threads {
            0 => None,
            n => Some(
                Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("cstore-replication")
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(SessionRuntime { runtime })
    }

    /// The handle sessions are spawned on, `None` for the caller's runtime.
    pub fn handle(&self) -> Option<Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }
}

impl Drop for SessionRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another one; by now every
        // session was told to close (`Replicator::shutdown`), so nothing is left to wait for.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
