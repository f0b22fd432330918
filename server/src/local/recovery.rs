//! Recovering a local copy: the metadata, then the state rebuilt from the last snapshot and
//! the log after it. The leader and the follower recover their stores the same way.

use std::time::Instant;

use tracing::info;

use cstore_core::state::{Rejection, SnapshotError, State};
use cstore_core::storage::{LogStore, Metadata, StorageError};
use cstore_core::{Lsn, ReplicaId, Term};

/// Why a node (leader or follower) could not start on its store.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the snapshot does not load: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("entry {lsn} does not replay onto the state: {rejection}")]
    Replay { lsn: Lsn, rejection: Rejection },
    #[error("the log ends at {log_last} but the snapshot is at {snapshot}")]
    Gap { log_last: Lsn, snapshot: Lsn },
    #[error("could not start the node's thread: {0}")]
    Thread(std::io::Error),
}

/// Loads the metadata (creating it with `fresh_term` and a random node id on a new store) and
/// rebuilds the state from the last snapshot and the log after it; also returns how many
/// entries were replayed (the entries since the last checkpoint). Shared by the leader and
/// the follower, which recover their own stores the same way.
pub(super) async fn recover<S: LogStore + Sync>(
    store: &mut S,
    fresh_term: Term,
) -> Result<(Metadata, State, u64), StartError> {
    let started = Instant::now();
    let metadata = match store.load_metadata().await? {
        Some(metadata) => metadata,
        None => {
            let metadata = Metadata {
                term: fresh_term,
                node_id: ReplicaId(rand::random()),
            };
            store.save_metadata(&metadata).await?;
            metadata
        }
    };
    let (state, replayed) = load_state(store).await?;
    info!(
        lsn = %state.applied().lsn,
        replayed,
        ms = started.elapsed().as_millis() as u64,
        node_id = %metadata.node_id,
        "state recovered"
    );
    Ok((metadata, state, replayed))
}

/// Rebuilds the state from what `store` holds: its snapshot, then the log after it. Returns it
/// and how many entries were replayed. Also how the leader throws away applied entries whose
/// append failed.
async fn load_state<S: LogStore + Sync>(store: &S) -> Result<(State, u64), StartError> {
    let mut state = match store.load_snapshot_state().await? {
        Some(state) => state?,
        None => State::new(),
    };
    let log = store.state().await?;
    if log.last.lsn < state.applied().lsn {
        return Err(StartError::Gap {
            log_last: log.last.lsn,
            snapshot: state.applied().lsn,
        });
    }
    let mut replayed = 0u64;
    let mut refused = None;
    let from = state.applied().lsn.next();
    store
        .replay(from, log.last.lsn.next(), |entry| {
            match state.apply(entry) {
                Ok(_) => {
                    replayed += 1;
                    true
                }
                Err(rejection) => {
                    refused = Some(StartError::Replay {
                        lsn: entry.lsn,
                        rejection,
                    });
                    false
                }
            }
        })
        .await?;
    match refused {
        Some(error) => Err(error),
        None => Ok((state, replayed)),
    }
}
