//! Harness for integration tests that drive real `cstore` processes over loopback HTTP.
//!
//! Unit tests inside each crate prove the parts; these tests prove the product a user runs: one
//! binary, one data dir, an HTTP contract (`docs/HTTP_API.md`). So every test here starts a real
//! server process on `127.0.0.1`, talks to it only through that contract, and may kill it with
//! SIGKILL, stop it with SIGTERM, damage its files and start it again.
//!
//! ```text
//!  test ──► ServerProcess::start ──► binary::cstore_binary()  (find target/<profile>/cstore,
//!    │            │                                              `cargo build` it once)
//!    │            ├─ fresh temp dir: data/ (--data-dir), logs/ (stdout, stderr per start)
//!    │            ├─ spawn `cstore serve --listen 127.0.0.1:<free port> ...`
//!    │            └─ poll GET /v1/health (bounded), or fail with the server's stderr
//!    ├──► Client (blocking HTTP/1.1) ──► requests, replies with status and JSON body
//!    └──► kill9() / terminate() / restart() ── by the recorded PID, never by name
//! ```
//!
//! Processes never outlive the test: `Drop` of [`ServerProcess`] kills its child by PID and
//! removes its temp dir (unless asked to keep it for inspection).
//!
//! Running: `cargo test -p cstore-tests` (builds `cstore` of the same profile first). Knobs:
//! `CSTORE_BIN=/path/to/cstore` tests that binary instead; `CSTORE_TEST_SEED=<u64>` changes
//! the random choices (kill points, damage offsets) of the seeded tests, which print the seed
//! they used; `CSTORE_KEEP_FAILED=1` keeps the data and logs of a failed test in the temp dir.

pub mod binary;
pub mod client;
pub mod cluster;
pub mod cluster_workload;
pub mod crash_workload;
pub mod dirs;
pub mod error;
pub mod linearizability;
pub mod load;
pub mod peers;
pub mod proxy;
pub mod replica_client;
pub mod seed;
pub mod server;
pub mod tally;
pub mod token;
pub mod workload;
pub mod write_channel;

pub use client::{Client, Reply};
pub use error::HarnessError;
pub use server::{ServerOptions, ServerProcess, StartOutcome, TlsFiles};
