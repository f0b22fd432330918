//! Side-by-side benchmarks against real peers (etcd 3.4, redis 7, PostgreSQL 15) on the same
//! machine, in the same run, through one load generator.
//!
//! A figure like "N durable writes per second" means little alone: the disk, the cores and the
//! load generator all shape it. So `cstore-peers` measures this project and its peers one after
//! the other with the same closed-loop driver (same clients, same payload bytes, same
//! histograms), each peer on its own temp data dir and fixed high loopback ports, started and
//! stopped by its PID. Only the last hop differs: a small HTTP/1.1 client ([`http1`]) for
//! cstore and etcd's JSON gateway, a small RESP client for redis, tokio-postgres for PostgreSQL;
//! each client has a connection of its own. Each single-node peer is also measured by a
//! generator of its own, written in C, right after the driver: wrk, redis-benchmark, pgbench.
//!
//! ```text
//!   cstore-peers ──► writes:   cstore (ack local) │ etcd 1 member │ redis appendfsync always │
//!                              PostgreSQL 15 (jsonb INSERT, synchronous_commit on)
//!                ──► cluster:  cstore leader + 2 followers (ack replicas:2) │ cstore 3-member
//!                              Raft cluster (majority) │ etcd 3 members
//!                ──► failover: kill -9 of the leader, ≥ 20 trials: time to the first fresh
//!                              acknowledged write, cstore Raft │ etcd (3 members each)
//!                ──► reads:    local / linearizable reads on leader and follower, cstore Raft │
//!                              etcd serializable / linearizable ranges (3 members each)
//!                ──► recovery: 1M entries, kill -9, time to /v1/health and the LSN back
//!        each run: driver (N clients × closed loop) ──► WriteReport (ops/s, p50, p99)
//! ```
//!
//! `cstore-soak` (`scripts/soak-cluster.sh`) uses the same pieces for its long run: saturated
//! writes on a Raft cluster's leader, then the election counters of `/metrics` ([`metrics`]).

pub mod cluster;
pub mod driver;
pub mod error;
pub mod failover;
pub mod http1;
pub mod metrics;
pub mod peer;
pub mod pgbench;
pub mod postgres;
pub mod raft;
pub mod reads;
pub mod recovery;
pub mod redis_benchmark;
pub mod resp;
pub mod table;
pub mod target;
pub mod walgen;
pub mod wrk;

pub use driver::{
    Request, WriteConfig, WriteReport, WriteSummary, run_closed_loop, run_pipelined, run_writes,
};
pub use error::PeerError;
pub use peer::PeerProcess;
pub use target::Target;
