//! The state at an earlier LSN, for `?as_of_lsn=` reads: the server's newest snapshot at or
//! below it, replayed through the retained log up to it with core's `State::apply`.
//!
//! ```text
//!  as_of_lsn = N ──► newest snapshot file (at S) ── N < S ──► lsn_compacted (410)
//!                          │ S ≤ N
//!                          ▼
//!                    State::from_snapshot ─► apply entries S+1..=N read from the segments
//! ```
//!
//! Nothing is cached: each read rebuilds its state from the files (`wal::reader`, no lock, no
//! writes), beside the commit thread that owns them. Cost: reading and decoding the snapshot
//! plus the entries S+1..=N, with one segment (≤ 64 MiB by default) and one state in memory —
//! bounded by the checkpoint interval (`--checkpoint-every`, 100,000 entries by default), since
//! a checkpoint compacts the log behind its snapshot. At most [`AS_OF_READS_MAX`] such reads
//! run at once; more wait their turn, so a burst cannot hold many states in memory.

use std::path::PathBuf;

use tokio::sync::Semaphore;

use cstore_core::error::ErrorCode;
use cstore_core::log::LogEntry;
use cstore_core::state::State;
use cstore_core::types::{LogPosition, Lsn};

use crate::wal::reader::{self, ReadError, TailRule};

/// Reads at an earlier LSN that rebuild a state at the same time, at most.
pub const AS_OF_READS_MAX: usize = 2;
/// Attempts when a checkpoint replaces the files during a read.
const ATTEMPTS: usize = 3;

static PERMITS: Semaphore = Semaphore::const_new(AS_OF_READS_MAX);

/// Why the state at an LSN cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsOfError {
    /// The log before the newest snapshot was compacted away.
    #[error(
        "the state at LSN {lsn} is no longer retained: the log is compacted through LSN {oldest} \
         (the oldest state that can be read)"
    )]
    Compacted {
        /// Asked for.
        lsn: Lsn,
        /// The oldest LSN still readable.
        oldest: Lsn,
    },
    /// The LSN is past what this node has applied.
    #[error("LSN {lsn} is beyond this node's applied LSN {applied}")]
    Ahead {
        /// Asked for.
        lsn: Lsn,
        /// The node's applied LSN.
        applied: Lsn,
    },
    /// This node has no data directory to read history from.
    #[error("this node cannot read earlier states")]
    Unavailable,
    /// The files could not be read, or are damaged.
    #[error("cannot read the retained log: {0}")]
    Storage(String),
}

impl ErrorCode for AsOfError {
    fn code(&self) -> &'static str {
        match self {
            AsOfError::Compacted { .. } => "lsn_compacted",
            AsOfError::Ahead { .. } => "lsn_ahead",
            AsOfError::Unavailable => "unavailable",
            AsOfError::Storage(_) => "storage_io",
        }
    }
}

/// The state right after entry `lsn`, rebuilt from the data directory `dir`. The caller has
/// made sure `lsn` is durable (at or below the node's applied, durable LSN).
pub async fn state_at(dir: PathBuf, lsn: Lsn) -> Result<State, AsOfError> {
    let _permit = PERMITS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    tokio::task::spawn_blocking(move || state_at_blocking(&dir, lsn))
        .await
        .map_err(|e| AsOfError::Storage(format!("the replay task failed: {e}")))?
}

fn state_at_blocking(dir: &std::path::Path, lsn: Lsn) -> Result<State, AsOfError> {
    let storage = |e: ReadError| AsOfError::Storage(e.to_string());
    for _ in 0..ATTEMPTS {
        let (base, mut state) = match reader::newest_snapshot(dir) {
            Err(ReadError::Gone(_)) => continue,
            Err(e) => return Err(storage(e)),
            Ok(None) => (LogPosition::START, State::new()),
            Ok(Some((_, snapshot))) => {
                let state = State::from_snapshot(&snapshot)
                    .map_err(|e| AsOfError::Storage(format!("the snapshot does not load: {e}")))?;
                (snapshot.position, state)
            }
        };
        if lsn < base.lsn {
            return Err(AsOfError::Compacted {
                lsn,
                oldest: base.lsn,
            });
        }
        let mut apply = |entry: LogEntry| {
            // A cluster member skips an entry that does not apply, the same way everywhere.
            if state.apply(&entry).is_err() {
                state.skip_rejected(&entry);
            }
            Ok(())
        };
        match reader::read_entries(dir, base, Some(lsn), TailRule::Live, &mut apply) {
            Err(ReadError::Gone(_)) => continue,
            Err(ReadError::Missing(_)) => {
                return Err(AsOfError::Compacted {
                    lsn,
                    oldest: base.lsn,
                });
            }
            Err(e) => return Err(storage(e)),
            Ok(end) if end.last.lsn < lsn => {
                return Err(AsOfError::Storage(format!(
                    "the log's files end at LSN {}, before {lsn}",
                    end.last.lsn
                )));
            }
            Ok(_) => return Ok(state),
        }
    }
    Err(AsOfError::Storage(format!(
        "the log was compacted during each of {ATTEMPTS} attempts at reading it"
    )))
}
