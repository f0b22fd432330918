//! One segment file of the log: its name, its entries' byte offsets, its valid length.
//!
//! A segment is a plain concatenation of entry records, named after the LSN of its first
//! entry, so the directory listing alone says where every LSN lives. The offsets are the
//! in-memory index that `read_range` uses; they cost four bytes per held entry (a segment is
//! far below 4 GiB), and the held log is bounded by checkpointing.

use std::path::{Path, PathBuf};

use cstore_core::types::Lsn;

/// Suffix of segment files.
const SEGMENT_SUFFIX: &str = ".seg";
/// Digits of the LSN in a segment's name: enough for any `u64`, zero-padded so names sort.
const LSN_DIGITS: usize = 20;

/// A segment file and the index of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    /// The LSN of its first entry (also its name).
    pub first: Lsn,
    /// Where the file is.
    pub path: PathBuf,
    /// Byte offset of entry `first + i` at index `i`. Never empty for a segment in a store.
    pub offsets: Vec<u32>,
    /// Bytes of whole records: where the next record goes.
    pub len: u64,
}

impl Segment {
    /// A new, empty segment in `wal_dir` for entries from `first` on.
    pub fn new(wal_dir: &Path, first: Lsn) -> Segment {
        Segment {
            first,
            path: wal_dir.join(file_name(first)),
            offsets: Vec::new(),
            len: 0,
        }
    }

    /// The LSN of its last entry.
    pub fn last(&self) -> Lsn {
        assert!(!self.offsets.is_empty(), "a held segment has entries");
        Lsn(self.first.0 + self.offsets.len() as u64 - 1)
    }

    /// The LSN the next entry written to this segment must have.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.first.0 + self.offsets.len() as u64)
    }

    /// True when `lsn` is in this segment.
    pub fn holds(&self, lsn: Lsn) -> bool {
        !self.offsets.is_empty() && self.first <= lsn && lsn <= self.last()
    }

    /// Byte offset where entry `lsn` starts; `len` for the LSN right after the last.
    pub fn offset_of(&self, lsn: Lsn) -> u64 {
        let index = (lsn.0 - self.first.0) as usize;
        assert!(
            index <= self.offsets.len(),
            "lsn {lsn} is not in segment {}",
            self.path.display()
        );
        self.offsets.get(index).map_or(self.len, |&o| u64::from(o))
    }

    /// Records that entry `lsn` (the next one) was written at `offset`, ending at `end`.
    pub fn push(&mut self, lsn: Lsn, offset: u64, end: u64) {
        assert_eq!(lsn, self.next_lsn(), "segment entries are gap-free");
        assert_eq!(offset, self.len, "records are written back to back");
        assert!(end > offset, "a record has bytes");
        self.offsets
            .push(u32::try_from(offset).expect("segments stay below 4 GiB"));
        self.len = end;
    }

    /// Forgets entries from `lsn` on (the file is truncated by the caller).
    pub fn truncate(&mut self, lsn: Lsn) {
        self.len = self.offset_of(lsn);
        self.offsets.truncate((lsn.0 - self.first.0) as usize);
    }
}

/// The file name of the segment whose first entry is `first`.
pub(super) fn file_name(first: Lsn) -> String {
    format!("{:0width$}{SEGMENT_SUFFIX}", first.0, width = LSN_DIGITS)
}

/// The first LSN named by a segment file name; `None` for any other name.
pub(super) fn parse_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != LSN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(file_name(Lsn(1)), "00000000000000000001.seg");
        assert_eq!(
            parse_file_name(&file_name(Lsn(u64::MAX))),
            Some(Lsn(u64::MAX))
        );
        assert!(file_name(Lsn(9)) < file_name(Lsn(10)));
        for bad in [
            "1.seg",
            "0000000000000000000a.seg",
            "00000000000000000001.snap",
            "",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn offsets_index_entries() {
        let mut segment = Segment::new(Path::new("/x"), Lsn(5));
        segment.push(Lsn(5), 0, 10);
        segment.push(Lsn(6), 10, 25);
        segment.push(Lsn(7), 25, 30);
        assert_eq!(segment.last(), Lsn(7));
        assert_eq!(segment.offset_of(Lsn(6)), 10);
        assert_eq!(segment.offset_of(Lsn(8)), 30);
        assert!(segment.holds(Lsn(7)) && !segment.holds(Lsn(8)) && !segment.holds(Lsn(4)));
        segment.truncate(Lsn(6));
        assert_eq!((segment.last(), segment.len), (Lsn(5), 10));
    }
}
