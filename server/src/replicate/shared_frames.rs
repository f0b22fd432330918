//! Encoded `Entries` frames shared by every session that sends the same committed range.
//!
//! At steady state every streaming session wakes on the same commit and sends the same
//! entries: with a thousand replicas, a thousand identical frames. Encoding (postcard, then a
//! CRC over the body) per session made the fan-out cost grow with replicas × bytes; here the
//! first session to send a range encodes it and the others take the same bytes (`Bytes` is a
//! shared, reference-counted buffer, so handing them out copies nothing).
//!
//! ```text
//!  session ── EntriesFrame (as committed) ──► key (first lsn, last position) ── hit ──► Bytes
//!                                                         │ miss
//!                                                         ▼
//!                                        encode once, keep among the newest SLOTS ranges
//! ```
//!
//! Only frames of entries as committed are shared: on one hash chain the first LSN and the last
//! position (LSN and hash) name exactly one run of entries, so the key cannot confuse two
//! frames. A subscribed session's filtered entries are its own and are encoded by the session.
//! The cache holds a few ranges (sessions that lag send other ranges than the newest); each
//! frame is at most the session's `frame_bytes_max`, so the cache is bounded too.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::body::Bytes;

use cstore_core::replication::EntriesFrame;
use cstore_core::{LogPosition, Lsn};

/// How many encoded ranges are kept.
pub const SHARED_FRAME_SLOTS: usize = 8;

type Key = (Lsn, LogPosition);

/// The most recently encoded `Entries` frames, shared between sessions.
#[derive(Debug, Default)]
pub struct SharedFrames {
    slots: Mutex<VecDeque<(Key, Bytes)>>,
}

impl SharedFrames {
    /// An empty cache.
    pub fn new() -> SharedFrames {
        SharedFrames::default()
    }

    /// The bytes of `frame`: shared with other sessions when its entries are as committed,
    /// encoded for this session alone when a subscription filtered them.
    pub fn bytes(&self, frame: &EntriesFrame) -> Bytes {
        if !frame.is_as_committed() {
            return Bytes::from(frame.encode());
        }
        let key = (frame.first_lsn(), frame.last_position());
        // Encoding under the lock makes the other sessions of this commit wait for the one
        // encoding instead of each making their own.
        let mut slots = self.slots.lock().expect("shared frames lock poisoned");
        if let Some((_, bytes)) = slots.iter().find(|(k, _)| *k == key) {
            metrics::counter!("cstore_replication_shared_frames_total", "outcome" => "hit")
                .increment(1);
            return bytes.clone();
        }
        metrics::counter!("cstore_replication_shared_frames_total", "outcome" => "miss")
            .increment(1);
        let bytes = Bytes::from(frame.encode());
        if slots.len() == SHARED_FRAME_SLOTS {
            slots.pop_front();
        }
        slots.push_back((key, bytes.clone()));
        bytes
    }

    /// Forgets every frame: the log was replaced (a relaying follower installed a snapshot).
    pub fn clear(&self) {
        self.slots
            .lock()
            .expect("shared frames lock poisoned")
            .clear();
    }

    /// How many ranges are held.
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .expect("shared frames lock poisoned")
            .len()
    }

    /// True when no range is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use cstore_core::{LogEntry, Term, TimestampMs, Txn};

    fn chain(after: LogPosition, n: usize) -> Vec<Arc<LogEntry>> {
        let mut prev = after;
        (0..n)
            .map(|i| {
                let entry = LogEntry::new(prev, Term(1), TimestampMs(i as u64), Txn::tick());
                prev = entry.position();
                Arc::new(entry)
            })
            .collect()
    }

    #[test]
    fn one_range_is_encoded_once_and_shared() {
        let frames = SharedFrames::new();
        let entries = chain(LogPosition::START, 3);
        let a = frames.bytes(&EntriesFrame::new(entries.clone(), true));
        let b = frames.bytes(&EntriesFrame::new(entries.clone(), true));
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same buffer, not a copy");
        assert_eq!(&a[..], &EntriesFrame::new(entries, true).encode()[..]);
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn different_ranges_and_filtered_frames_are_not_confused() {
        let frames = SharedFrames::new();
        let entries = chain(LogPosition::START, 4);
        let all = frames.bytes(&EntriesFrame::new(entries.clone(), true));
        let tail = frames.bytes(&EntriesFrame::new(entries[1..].to_vec(), true));
        assert_ne!(all, tail);
        assert_eq!(
            &tail[..],
            &EntriesFrame::new(entries[1..].to_vec(), true).encode()[..]
        );
        // Another chain with the same LSN (a relay that re-bootstrapped) is another key.
        let first = frames.bytes(&EntriesFrame::new(entries[..1].to_vec(), true));
        let other = vec![Arc::new(LogEntry::new(
            LogPosition::START,
            Term(2),
            TimestampMs(0),
            Txn::tick(),
        ))];
        assert_eq!(other[0].lsn, entries[0].lsn);
        let other_bytes = frames.bytes(&EntriesFrame::new(other.clone(), true));
        assert_ne!(first, other_bytes);
        assert_eq!(
            &other_bytes[..],
            &EntriesFrame::new(other, true).encode()[..]
        );
        // Filtered frames are never kept.
        let before = frames.len();
        let _ = frames.bytes(&EntriesFrame::new(entries, false));
        assert_eq!(frames.len(), before);
    }

    #[test]
    fn holds_at_most_its_slots() {
        let frames = SharedFrames::new();
        let entries = chain(LogPosition::START, SHARED_FRAME_SLOTS + 5);
        for entry in &entries {
            let _ = frames.bytes(&EntriesFrame::new(vec![Arc::clone(entry)], true));
            assert!(frames.len() <= SHARED_FRAME_SLOTS);
        }
        frames.clear();
        assert!(frames.is_empty());
    }
}
