//! The replication backlog: a bounded ring of the most recent committed entries.
//!
//! The commit thread owns the log store, so a replication session cannot read the store
//! itself. Instead the commit thread pushes every durable batch here (one cheap push per
//! batch: the entries are moved in behind `Arc`s, never copied), and sessions read what they
//! stream from the ring. Redis's replication backlog works the same way.
//!
//! ```text
//!  commit thread ── push(batch) ──► [ first ……………………………… last ] ──► watch: last position
//!                                     ▲ oldest entries fall out      │
//!                                     │ past `bytes_max`             ▼
//!  session: read(from, to) ─► Entries, or BelowTail ─► the session sends a snapshot instead
//! ```
//!
//! Sessions get the entries themselves (`Arc`s), never copies, and the encoded `Entries` frames
//! of a range are shared too ([`SharedFrames`]): a commit fanned out to a thousand replicas is
//! encoded once.
//!
//! The byte bound decides how far behind a replica may fall and still catch up from entries;
//! a replica further behind bootstraps from a snapshot. The position watch is published
//! *after* the entries are in the ring, so a session that learns of a new committed position
//! always finds its entries here (or below the tail, never above it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use cstore_core::replication::entry_wire_bytes;
use cstore_core::{LogEntry, LogPosition, Lsn};

use super::shared_frames::SharedFrames;

/// Default bound of the tail, in MiB (`--replication-tail-mib`).
pub const TAIL_MIB_DEFAULT: u64 = 64;

/// Why a read cannot be served from the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TailError {
    /// Entries from `from` on fell out of the ring (or were never in it): send a snapshot.
    #[error("entry {from} is below the replication tail, which starts at {first}")]
    BelowTail {
        /// The first entry asked for.
        from: Lsn,
        /// The oldest entry the tail holds.
        first: Lsn,
    },
    /// Entries past the last committed one were asked for: a bug of the caller.
    #[error("entries up to {to} were asked for, the tail ends at {last}")]
    BeyondTail {
        /// The end (exclusive) asked for.
        to: Lsn,
        /// The last entry held.
        last: Lsn,
    },
}

#[derive(Debug)]
struct Ring {
    entries: VecDeque<(Arc<LogEntry>, u64)>,
    bytes: u64,
    /// The position of the last entry pushed (or the start it continues from).
    last: LogPosition,
}

/// A bounded ring of the newest committed entries, and a watch of the committed position.
#[derive(Debug)]
pub struct LogTail {
    ring: Mutex<Ring>,
    bytes_max: u64,
    committed: watch::Sender<LogPosition>,
    frames: SharedFrames,
}

impl LogTail {
    /// An empty tail whose log ends at `last` (everything up to it is durable), holding at most
    /// `bytes_max` bytes of entries (at least the newest entry is always kept).
    pub fn new(last: LogPosition, bytes_max: u64) -> LogTail {
        let (committed, _) = watch::channel(last);
        LogTail {
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                bytes: 0,
                last,
            }),
            bytes_max,
            committed,
            frames: SharedFrames::new(),
        }
    }

    /// Appends a durable batch, drops the oldest entries past the bound, then publishes the
    /// new committed position. The batch must continue the tail's chain.
    pub fn push(&self, batch: Vec<LogEntry>) {
        let Some(last) = batch.last().map(LogEntry::position) else {
            return;
        };
        {
            let mut ring = self.ring.lock().expect("tail lock poisoned");
            for entry in batch {
                assert!(
                    entry.follows(ring.last),
                    "entry {} pushed to the tail does not follow {}",
                    entry.lsn,
                    ring.last
                );
                let bytes = entry_wire_bytes(&entry) as u64;
                ring.last = entry.position();
                ring.bytes += bytes;
                ring.entries.push_back((Arc::new(entry), bytes));
            }
            while ring.bytes > self.bytes_max && ring.entries.len() > 1 {
                let (_, bytes) = ring.entries.pop_front().expect("non-empty");
                ring.bytes -= bytes;
            }
        }
        self.committed.send_replace(last);
    }

    /// Forgets every entry and continues from `last`, which it publishes: a relaying follower
    /// replaced its log with a snapshot (installed, or discarded to re-bootstrap). Sessions
    /// then find anything they ask for below the tail and send a snapshot instead.
    pub fn reset(&self, last: LogPosition) {
        {
            let mut ring = self.ring.lock().expect("tail lock poisoned");
            ring.entries.clear();
            ring.bytes = 0;
            ring.last = last;
        }
        self.frames.clear();
        self.committed.send_replace(last);
    }

    /// The committed entries `from <= lsn < to`, shared with the ring (no copies).
    pub fn read(&self, from: Lsn, to: Lsn) -> Result<Vec<Arc<LogEntry>>, TailError> {
        assert!(from <= to, "read of {from}..{to}");
        let ring = self.ring.lock().expect("tail lock poisoned");
        let first = ring.first();
        if from < first {
            return Err(TailError::BelowTail { from, first });
        }
        if to.0 > ring.last.lsn.0 + 1 {
            return Err(TailError::BeyondTail {
                to,
                last: ring.last.lsn,
            });
        }
        let skip = (from.0 - first.0) as usize;
        let take = (to.0 - from.0) as usize;
        Ok(ring
            .entries
            .range(skip..skip + take)
            .map(|(entry, _)| Arc::clone(entry))
            .collect())
    }

    /// The encoded `Entries` frames shared by the sessions streaming from this tail.
    pub fn frames(&self) -> &SharedFrames {
        &self.frames
    }

    /// The oldest entry held (`last + 1` when the ring is empty).
    pub fn first(&self) -> Lsn {
        self.ring.lock().expect("tail lock poisoned").first()
    }

    /// The last committed position.
    pub fn last(&self) -> LogPosition {
        *self.committed.borrow()
    }

    /// Bytes of entries held.
    pub fn bytes(&self) -> u64 {
        self.ring.lock().expect("tail lock poisoned").bytes
    }

    /// Watches the committed position; sessions wake on it.
    pub fn committed(&self) -> watch::Receiver<LogPosition> {
        self.committed.subscribe()
    }
}

impl Ring {
    fn first(&self) -> Lsn {
        self.entries
            .front()
            .map(|(entry, _)| entry.lsn)
            .unwrap_or(self.last.lsn.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::{Term, TimestampMs, Txn};

    fn owned(read: Result<Vec<Arc<LogEntry>>, TailError>) -> Vec<LogEntry> {
        read.unwrap()
            .iter()
            .map(|entry| (**entry).clone())
            .collect()
    }

    fn chain(after: LogPosition, n: usize) -> Vec<LogEntry> {
        let mut prev = after;
        (0..n)
            .map(|i| {
                let entry = LogEntry::new(prev, Term(1), TimestampMs(i as u64), Txn::tick());
                prev = entry.position();
                entry
            })
            .collect()
    }

    #[test]
    fn reset_forgets_the_entries_and_continues_from_the_new_position() {
        let tail = LogTail::new(LogPosition::START, 1 << 20);
        tail.push(chain(LogPosition::START, 5));
        // A relaying follower installed a snapshot at some later position.
        let snapshot_at = chain(LogPosition::START, 20)[19].position();
        tail.reset(snapshot_at);
        assert_eq!(tail.last(), snapshot_at);
        assert_eq!(*tail.committed().borrow(), snapshot_at);
        assert_eq!(tail.bytes(), 0);
        assert_eq!(tail.first(), Lsn(21));
        assert!(matches!(
            tail.read(Lsn(3), Lsn(4)),
            Err(TailError::BelowTail { first: Lsn(21), .. })
        ));
        // Entries after the snapshot are taken again.
        let after = chain(snapshot_at, 3);
        tail.push(after.clone());
        assert_eq!(owned(tail.read(Lsn(21), Lsn(24))), after);
    }

    #[test]
    fn reads_what_was_pushed_and_publishes_the_position() {
        let tail = LogTail::new(LogPosition::START, 1 << 20);
        let watch = tail.committed();
        let entries = chain(LogPosition::START, 10);
        tail.push(entries.clone());
        assert_eq!(*watch.borrow(), entries[9].position());
        assert_eq!(owned(tail.read(Lsn(3), Lsn(6))), entries[2..5].to_vec());
        assert_eq!(owned(tail.read(Lsn(1), Lsn(11))), entries);
        assert_eq!(tail.read(Lsn(11), Lsn(11)).unwrap(), Vec::new());
        assert!(matches!(
            tail.read(Lsn(5), Lsn(12)),
            Err(TailError::BeyondTail { .. })
        ));
    }

    #[test]
    fn drops_the_oldest_entries_past_the_bound() {
        let entries = chain(LogPosition::START, 100);
        let one = entry_wire_bytes(&entries[0]) as u64;
        let tail = LogTail::new(LogPosition::START, one * 10);
        for batch in entries.chunks(7) {
            tail.push(batch.to_vec());
            assert!(tail.bytes() <= one * 10 + one, "bound held");
        }
        let first = tail.first();
        assert!(first > Lsn(80) && first <= Lsn(91), "first {first}");
        assert_eq!(
            tail.read(Lsn(1), Lsn(3)),
            Err(TailError::BelowTail {
                from: Lsn(1),
                first
            })
        );
        assert_eq!(
            tail.read(first, Lsn(101)).unwrap().len() as u64,
            101 - first.0
        );
    }

    #[test]
    fn a_tail_that_starts_mid_log_is_below_for_older_entries() {
        let before = chain(LogPosition::START, 5);
        let tail = LogTail::new(before[4].position(), 1 << 20);
        assert_eq!(tail.first(), Lsn(6));
        assert!(matches!(
            tail.read(Lsn(5), Lsn(6)),
            Err(TailError::BelowTail { .. })
        ));
        let after = chain(before[4].position(), 3);
        tail.push(after.clone());
        assert_eq!(owned(tail.read(Lsn(6), Lsn(9))), after);
    }

    #[test]
    #[should_panic(expected = "does not follow")]
    fn refuses_a_batch_that_does_not_follow() {
        let tail = LogTail::new(LogPosition::START, 1 << 20);
        let entries = chain(LogPosition::START, 3);
        tail.push(entries[1..].to_vec());
    }
}
