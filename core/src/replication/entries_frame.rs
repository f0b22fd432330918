//! An `Entries` frame whose entries are shared with the log instead of copied into it.
//!
//! A leader streaming to a thousand replicas sends every committed entry a thousand times.
//! With [`Frame::Entries`] each session would hold its own deep copy of each entry and encode
//! its own frame. [`EntriesFrame`] holds the entries behind `Arc`s (the driver's log tail
//! already keeps them that way), and encodes to exactly the bytes of the equivalent
//! [`Frame::Entries`], so the wire does not change. Frames of entries as committed (no
//! subscription filtered them) are the same bytes for every replica that is sent the same
//! range, so a driver may encode such a range once and send the bytes to all of them
//! ([`EntriesFrame::is_as_committed`] says when that is allowed).
//!
//! ```text
//! postcard(Frame::Entries { entries }) = [variant tag 4][varint count][entry][entry]…
//!                                         └ written here from the shared entries ┘
//! ```

use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeStructVariant, Serializer};

use crate::log::LogEntry;
use crate::log::codec::{RecordKind, encode_value};
use crate::replication::frame::Frame;
use crate::types::{LogPosition, Lsn};

/// The serde variant index of [`Frame::Entries`]; a test pins it to `Frame`'s own encoding.
const ENTRIES_VARIANT: u32 = 4;

/// Consecutive committed entries for one replica, shared with the log: a [`Frame::Entries`]
/// that is never deep-copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntriesFrame {
    entries: Vec<Arc<LogEntry>>,
    as_committed: bool,
}

impl EntriesFrame {
    /// A frame of `entries` (non-empty, in LSN order). `as_committed` is true when they are
    /// the log's entries unchanged, false when a subscription filtered them.
    pub fn new(entries: Vec<Arc<LogEntry>>, as_committed: bool) -> EntriesFrame {
        assert!(
            !entries.is_empty(),
            "an Entries frame holds at least one entry"
        );
        EntriesFrame {
            entries,
            as_committed,
        }
    }

    /// The entries, in LSN order.
    pub fn entries(&self) -> &[Arc<LogEntry>] {
        &self.entries
    }

    /// True when the entries are the log's, unfiltered: every replica sent this LSN range
    /// gets the same bytes, so one encoding can serve them all.
    pub fn is_as_committed(&self) -> bool {
        self.as_committed
    }

    /// The LSN of the first entry.
    pub fn first_lsn(&self) -> Lsn {
        self.entries[0].lsn
    }

    /// The position of the last entry (its LSN and hash name the whole range on a chain).
    pub fn last_position(&self) -> LogPosition {
        self.entries[self.entries.len() - 1].position()
    }

    /// The equivalent [`Frame::Entries`], deep-copying the entries (tests and simulators).
    pub fn to_frame(&self) -> Frame {
        Frame::Entries {
            entries: self.entries.iter().map(|entry| (**entry).clone()).collect(),
        }
    }

    /// The frame's bytes: exactly those of [`Frame::encode`] for [`Self::to_frame`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(RecordKind::Frame, &Wire(&self.entries), &mut out);
        out
    }
}

/// Serializes as `Frame::Entries { entries }` does, from borrowed entries.
struct Wire<'a>(&'a [Arc<LogEntry>]);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut variant =
            serializer.serialize_struct_variant("Frame", ENTRIES_VARIANT, "Entries", 1)?;
        variant.serialize_field("entries", &Entries(self.0))?;
        variant.end()
    }
}

struct Entries<'a>(&'a [Arc<LogEntry>]);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|entry| &**entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RawDoc;
    use crate::txn::{Op, Txn};
    use crate::types::{Term, TimestampMs};

    fn chain(n: usize) -> Vec<Arc<LogEntry>> {
        let mut prev = LogPosition::START;
        (0..n)
            .map(|i| {
                let json = format!(r#"{{"_id":"d{i}","pad":"{}"}}"#, "x".repeat(i * 37));
                let doc = RawDoc::parse(&json).expect("a document");
                let txn = Txn::single(Op::Insert {
                    collection: if i % 2 == 0 { "a" } else { "b" }.into(),
                    doc,
                });
                let entry = LogEntry::new(prev, Term(3), TimestampMs(i as u64), txn);
                prev = entry.position();
                Arc::new(entry)
            })
            .collect()
    }

    #[test]
    fn encodes_the_same_bytes_as_the_frame_it_stands_for() {
        // Lengths across the one-byte varint boundary of the entry count.
        for n in [1, 2, 5, 127, 128, 130] {
            let frame = EntriesFrame::new(chain(n), true);
            let bytes = frame.encode();
            assert_eq!(bytes, frame.to_frame().encode(), "{n} entries");
            assert_eq!(Frame::decode(&bytes).expect("decodes"), frame.to_frame());
        }
    }

    #[test]
    fn filtered_entries_encode_the_same_as_their_frame_too() {
        let filtered: Vec<Arc<LogEntry>> = chain(4)
            .iter()
            .map(|entry| Arc::new(entry.filtered(|c| c == "a").unwrap_or((**entry).clone())))
            .collect();
        let frame = EntriesFrame::new(filtered, false);
        assert!(!frame.is_as_committed());
        assert_eq!(frame.encode(), frame.to_frame().encode());
    }

    #[test]
    fn names_its_range() {
        let entries = chain(3);
        let frame = EntriesFrame::new(entries.clone(), true);
        assert_eq!(frame.first_lsn(), Lsn(1));
        assert_eq!(frame.last_position(), entries[2].position());
        assert_eq!(frame.entries(), &entries[..]);
    }
}
