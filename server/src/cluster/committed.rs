//! The committed index, kept durably beside the log (openraft's `save_committed` /
//! `read_committed`), so that a restarted member applies by itself every entry it knew
//! committed, before any leader tells it the commit index again: a member restarted while
//! the others are down serves what it served before it stopped.
//!
//! ```text
//!  openraft SaveCommittedAndApply ─► save_committed(id) ─► latest (memory) ─► wake the saver
//!  saver thread: latest ≠ saved? ─► record file (temp, fsync, rename, dir fsync) ─► saved
//!                 then rests COMMITTED_SAVE_INTERVAL, so a stream of commits costs at most
//!                 one save per interval
//!  open ─► load the record (damaged: ignored, with a warning) ─► clamp to the log on disk
//!       ─► read_committed ─► openraft re-applies the log from the snapshot up to it
//! ```
//!
//! Why the save is lazy: openraft awaits `save_committed` on its core task before it applies,
//! and a sync there on every commit would hold up every other message of the member. Any index
//! that was committed is a safe one to re-apply up to, so a saved index that lags the latest
//! (by at most the interval and one save) costs nothing but what a leader then tells the member
//! anyway; a clean shutdown saves the latest ([`CommitSaver::flush`]).
//!
//! Why the clamp: a follower learns that an entry is committed before its own fsync of that
//! entry may have returned, so the saved index can be ahead of the log that survived a crash.
//! The log on disk is always a prefix of the log the member held in memory (a truncation is
//! synced before any later append), and a committed entry is never truncated, so every entry
//! held at or below the saved index is a committed one: the last of them is the committed index
//! to recover.
//!
//! The record is a file of its own rather than a field of the vote's side record: it is
//! rewritten many times a second, and a damaged committed record is safe to ignore (the member
//! then starts from its snapshot as it would without one), whereas a damaged vote record must
//! stop the member.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;

use cstore_core::storage::StorageError;

use super::types::RaftLogId;
use crate::wal::SideRecordFile;

/// The committed record's file name in the data directory.
pub const COMMITTED_RECORD: &str = "cluster-committed";
/// The saver rests this long after each save: the most a saved index lags the latest, on top
/// of one save's syncs.
pub const COMMITTED_SAVE_INTERVAL: Duration = Duration::from_millis(20);

/// What the record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedRecord {
    /// The last committed log id the member knew when it saved.
    pub committed: Option<RaftLogId>,
}

/// The committed index to recover: the saved one clamped to the log held (see the module
/// docs). `last` is the last log id held (or the last purged one when the log is empty),
/// `purged` the last purged one, and `entry_at(index)` the log id held at `index`. `None` when
/// there is nothing to re-apply from the log: the saved index is at or below the purge point
/// (the snapshot covers it), or it contradicts the log (which cannot happen; ignoring it is
/// safe).
pub fn committed_in_log(
    saved: Option<RaftLogId>,
    purged: Option<RaftLogId>,
    last: Option<RaftLogId>,
    entry_at: impl FnOnce(u64) -> Option<RaftLogId>,
) -> Option<RaftLogId> {
    let saved = saved?;
    let index = saved.index().min(last?.index());
    if purged.is_some_and(|p| index <= p.index()) {
        return None;
    }
    let held = entry_at(index)?;
    if index == saved.index() && held != saved {
        warn!(%saved, %held, "the saved committed index names another entry than the log: ignored");
        return None;
    }
    Some(held)
}

/// Keeps the committed record current from a thread of its own.
pub struct CommitSaver {
    shared: Arc<Saver>,
    thread: Option<JoinHandle<()>>,
}

struct Saver {
    file: SideRecordFile,
    state: Mutex<SaverState>,
    wake: Condvar,
    /// Held during a save: the thread and [`CommitSaver::flush`] write the same temp file.
    saving: Mutex<()>,
}

#[derive(Default)]
struct SaverState {
    latest: Option<RaftLogId>,
    saved: Option<RaftLogId>,
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("commit saver lock poisoned")
}

impl Saver {
    /// Saves the latest index unless it is saved already.
    fn save_latest(&self) -> Result<(), StorageError> {
        let _saving = lock(&self.saving);
        let latest = {
            let state = lock(&self.state);
            if state.latest <= state.saved {
                return Ok(());
            }
            state.latest
        };
        self.file
            .save_blocking(&CommittedRecord { committed: latest })?;
        let mut state = lock(&self.state);
        state.saved = state.saved.max(latest);
        Ok(())
    }
}

impl CommitSaver {
    /// Starts the saver of `file`, which holds `saved` now.
    pub fn start(
        file: SideRecordFile,
        saved: Option<RaftLogId>,
    ) -> Result<CommitSaver, StorageError> {
        let shared = Arc::new(Saver {
            file,
            state: Mutex::new(SaverState {
                latest: saved,
                saved,
                closed: false,
            }),
            wake: Condvar::new(),
            saving: Mutex::new(()),
        });
        let saver = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("cstore-raft-commit".into())
            .spawn(move || save_loop(&saver))
            .map_err(|e| StorageError::Io(format!("cannot start the commit saver: {e}")))?;
        Ok(CommitSaver {
            shared,
            thread: Some(thread),
        })
    }

    /// Reads the record of `file`: `None` when there is none, or when it is damaged (a torn
    /// or flipped record is ignored with a warning: the member then starts from its snapshot,
    /// as one without the record does).
    pub fn load(file: &SideRecordFile) -> Option<RaftLogId> {
        match file.load::<CommittedRecord>() {
            Ok(record) => record.and_then(|r| r.committed),
            Err(e) => {
                warn!(error = %e, "the committed record is damaged: ignored");
                metrics::counter!("cstore_cluster_committed_record_damaged_total").increment(1);
                None
            }
        }
    }

    /// Notes that `committed` is committed; the saver saves it soon.
    pub fn note(&self, committed: Option<RaftLogId>) {
        let mut state = lock(&self.shared.state);
        if committed > state.latest {
            state.latest = committed;
            self.shared.wake.notify_one();
        }
    }

    /// Saves the latest index now (a clean shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.shared.save_latest()
    }

    /// The index the record holds.
    pub fn saved(&self) -> Option<RaftLogId> {
        lock(&self.shared.state).saved
    }
}

impl std::fmt::Debug for CommitSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.shared.state);
        f.debug_struct("CommitSaver")
            .field("latest", &state.latest)
            .field("saved", &state.saved)
            .finish()
    }
}

impl Drop for CommitSaver {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn save_loop(saver: &Saver) {
    loop {
        {
            let mut state = lock(&saver.state);
            while !state.closed && state.latest <= state.saved {
                state = saver.wake.wait(state).expect("commit saver lock poisoned");
            }
            if state.closed {
                return;
            }
        }
        if let Err(e) = saver.save_latest() {
            // The record keeps an older index, which is still a safe one.
            warn!(error = %e, "cannot save the committed index");
            metrics::counter!("cstore_storage_errors_total", "kind" => "committed_record")
                .increment(1);
        }
        let state = lock(&saver.state);
        let _ = saver
            .wake
            .wait_timeout_while(state, COMMITTED_SAVE_INTERVAL, |s| !s.closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, index: u64) -> Option<RaftLogId> {
        Some(RaftLogId::new_term_index(term, index))
    }

    #[test]
    fn the_saved_index_is_clamped_to_the_log_held() {
        let log = |index: u64| (index <= 9).then(|| RaftLogId::new_term_index(2, index));
        // Held: recovered as saved.
        assert_eq!(committed_in_log(id(2, 5), None, id(2, 9), log), id(2, 5));
        // Ahead of the log that survived: the last entry held.
        assert_eq!(committed_in_log(id(3, 12), None, id(2, 9), log), id(2, 9));
        // Nothing saved, or nothing held.
        assert_eq!(committed_in_log(None, None, id(2, 9), log), None);
        assert_eq!(committed_in_log(id(2, 5), None, None, log), None);
        // At or below the purge point: the snapshot covers it.
        assert_eq!(committed_in_log(id(2, 5), id(2, 5), id(2, 9), log), None);
        assert_eq!(committed_in_log(id(2, 12), id(2, 9), id(2, 9), log), None);
        // Another entry at that index: ignored.
        assert_eq!(committed_in_log(id(1, 5), None, id(2, 9), log), None);
    }
}
