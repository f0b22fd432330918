//! Fuzz targets for every decoder of Collection Store that reads bytes from outside: the
//! replication wire, the WAL and snapshot files, IndexedDB records, HTTP bodies of writes and
//! queries, and tokens. See docs/FUZZING.md.
//!
//! ```text
//!  fuzz/corpus/<target>/*  ──►  fuzz-smoke (stable, CI): replay + seeded mutation, N s each
//!          │                       └─ a crash or a hang fails the run, the input printed in hex
//!          └──────────────►  fuzz-libfuzzer (scripts/fuzz.sh): coverage-guided, libFuzzer
//!                                  └─ CSTORE_FUZZ_TARGET picks the target
//!  targets::TARGETS: fn(&[u8]) each; the allocation guard bounds every allocation of both
//! ```

pub mod alloc_guard;
pub mod mutate;
pub mod record;
pub mod runner;
pub mod seeds;
pub mod targets;

pub use targets::{TARGETS, Target, target};

#[global_allocator]
static GLOBAL: alloc_guard::AllocGuard = alloc_guard::AllocGuard;
