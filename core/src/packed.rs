//! An ordered set of byte strings packed into runs: the memory-lean replacement for a
//! `BTreeSet<Box<[u8]>>` where there are millions of short entries (a secondary index holds one
//! per document).
//!
//! ```text
//! runs: BTreeMap<lowest key a run may hold, Run>     ("" for the first run)
//!         │
//!         ▼
//! Run { bytes: e0 e1 e2 … (the entries back to back, in order),
//!       ends:  [end of e0, end of e1, …] (u32 offsets into bytes) }
//! ```
//!
//! A `BTreeSet<Box<[u8]>>` pays, per entry, a 16-byte slot in a node that sequential inserts
//! leave about half full, and a heap block of its own (32 bytes for a 20-byte entry with
//! glibc). Here an entry costs its bytes and a 4-byte offset, plus its run's share of one map
//! slot: a run holds up to [`RUN_BYTES`] of entries. The runs' buffers are sized exactly (they
//! grow by an eighth at a time, and are trimmed when they split or shrink), so how full the runs
//! are changes how many there are, not how much slack each has.
//!
//! A write moves at most one run's bytes (an insert or a removal shifts the entries after it
//! in its run). An insert at the end of a run that is full splits it there, so entries that
//! arrive in order (ids made from the time, a counter in one index key) fill their runs; any
//! other split is in the middle. A run that falls under a quarter of [`RUN_BYTES`] merges into a
//! neighbour when the two fit in one.

use std::cmp::Ordering;
use std::collections::{BTreeMap, btree_map};
use std::ops::Bound;

/// The bytes a run holds before it splits (one entry larger than this has a run of its own).
pub(crate) const RUN_BYTES: usize = 2048;

/// An ordered set of byte strings (see the module's doc).
#[derive(Clone, Debug, Default)]
pub struct PackedSet {
    /// By the lowest entry each run may hold; the first run's key is empty. Empty only while
    /// the set has never held an entry.
    runs: BTreeMap<Box<[u8]>, Run>,
    len: usize,
}

/// Entries back to back, in order.
#[derive(Clone, Debug, Default)]
struct Run {
    bytes: Vec<u8>,
    /// Where each entry ends in `bytes`.
    ends: Vec<u32>,
}

impl Run {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize }
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i] as usize]
    }

    /// The first position whose entry is not below `key` (`Ok` when it equals it).
    fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Equal => return Ok(mid),
                Ordering::Greater => hi = mid,
            }
        }
        Err(lo)
    }

    /// The first position inside a range that starts at `lower`.
    fn first_in(&self, lower: Bound<&[u8]>) -> usize {
        match lower {
            Bound::Unbounded => 0,
            Bound::Included(key) => self.search(key).unwrap_or_else(|i| i),
            Bound::Excluded(key) => self.search(key).map_or_else(|i| i, |i| i + 1),
        }
    }

    /// The first position past a range that ends at `upper`.
    fn end_of(&self, upper: Bound<&[u8]>) -> usize {
        match upper {
            Bound::Unbounded => self.len(),
            Bound::Included(key) => self.search(key).map_or_else(|i| i, |i| i + 1),
            Bound::Excluded(key) => self.search(key).unwrap_or_else(|i| i),
        }
    }

    fn insert_at(&mut self, i: usize, entry: &[u8]) {
        let at = self.start(i);
        if self.bytes.capacity() - self.bytes.len() < entry.len() {
            self.bytes
                .reserve_exact(entry.len().max(self.bytes.len() / 8));
        }
        if self.ends.capacity() == self.ends.len() {
            self.ends.reserve_exact((self.ends.len() / 8).max(1));
        }
        let old_len = self.bytes.len();
        self.bytes.resize(old_len + entry.len(), 0);
        self.bytes.copy_within(at..old_len, at + entry.len());
        self.bytes[at..at + entry.len()].copy_from_slice(entry);
        let grown = offset(entry.len());
        self.ends.insert(i, offset(at) + grown);
        for end in &mut self.ends[i + 1..] {
            *end += grown;
        }
    }

    fn remove_at(&mut self, i: usize) {
        let (start, end) = (self.start(i), self.ends[i] as usize);
        self.bytes.copy_within(end.., start);
        self.bytes.truncate(self.bytes.len() - (end - start));
        self.ends.remove(i);
        let shrunk = offset(end - start);
        for end in &mut self.ends[i..] {
            *end -= shrunk;
        }
        if self.bytes.capacity() > self.bytes.len() + self.bytes.len() / 4 + 64 {
            self.bytes.shrink_to_fit();
        }
        if self.ends.capacity() > self.ends.len() + self.ends.len() / 4 + 16 {
            self.ends.shrink_to_fit();
        }
    }

    /// Moves the entries from position `at` on into a run of their own.
    fn split_off(&mut self, at: usize) -> Run {
        let start = self.start(at);
        let right = Run {
            bytes: self.bytes[start..].to_vec(),
            ends: self.ends[at..]
                .iter()
                .map(|end| end - offset(start))
                .collect(),
        };
        self.bytes.truncate(start);
        self.ends.truncate(at);
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
        right
    }

    /// Appends every entry of `next`, whose entries all sort after this run's.
    fn append(&mut self, next: Run) {
        let base = offset(self.bytes.len());
        self.bytes.reserve_exact(next.bytes.len());
        self.bytes.extend_from_slice(&next.bytes);
        self.ends.reserve_exact(next.ends.len());
        self.ends.extend(next.ends.iter().map(|end| end + base));
    }

    /// Where to split a run that grew past [`RUN_BYTES`] by an insert at `inserted`: right
    /// before it when it is the last entry (entries arriving in order), else about halfway
    /// by bytes.
    fn split_point(&self, inserted: usize) -> usize {
        if inserted == self.len() - 1 {
            return inserted;
        }
        let half = offset(self.bytes.len() / 2);
        self.ends
            .partition_point(|&end| end < half)
            .clamp(1, self.len() - 1)
    }
}

/// The keys up to `key`, itself included (`..=key` is not a range of an unsized type).
fn up_to(key: &[u8]) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (Bound::Unbounded, Bound::Included(key))
}

/// An offset or a length inside a run. A run holds at most [`RUN_BYTES`] and one more entry,
/// and an entry is at most a document's size (a few MiB), so this cannot overflow.
fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a run is far smaller than 4 GiB")
}

impl PackedSet {
    /// An empty set.
    pub fn new() -> PackedSet {
        PackedSet::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `entry` is in the set.
    pub fn contains(&self, entry: &[u8]) -> bool {
        self.run_of(entry)
            .is_some_and(|(_, run)| run.search(entry).is_ok())
    }

    /// The run whose range holds `key`, with the lowest key it may hold.
    fn run_of(&self, key: &[u8]) -> Option<(&[u8], &Run)> {
        self.runs
            .range::<[u8], _>(up_to(key))
            .next_back()
            .map(|(low, run)| (&**low, run))
    }

    /// Adds `entry`; false when it was there already.
    pub fn insert(&mut self, entry: &[u8]) -> bool {
        if self.runs.is_empty() {
            self.runs.insert(Box::default(), Run::default());
        }
        let (_, run) = self
            .runs
            .range_mut::<[u8], _>(up_to(entry))
            .next_back()
            .expect("the first run's range starts at the empty key");
        let Err(i) = run.search(entry) else {
            return false;
        };
        run.insert_at(i, entry);
        self.len += 1;
        if run.bytes.len() > RUN_BYTES && run.len() > 1 {
            let right = run.split_off(run.split_point(i));
            self.runs.insert(Box::from(right.get(0)), right);
        }
        true
    }

    /// Removes `entry`; false when it was not there.
    pub fn remove(&mut self, entry: &[u8]) -> bool {
        let Some((low, run)) = self.runs.range_mut::<[u8], _>(up_to(entry)).next_back() else {
            return false;
        };
        let Ok(i) = run.search(entry) else {
            return false;
        };
        run.remove_at(i);
        self.len -= 1;
        if run.bytes.len() < RUN_BYTES / 4 {
            let low = low.clone();
            self.merge_small(low);
        }
        true
    }

    /// Merges the run at `low`, which fell under a quarter of [`RUN_BYTES`], into its next
    /// neighbour or its previous one when the two fit in one run; drops it when it is empty
    /// and not the first run. Runs under a quarter therefore have neighbours too full to take
    /// them, which keeps the runs at least about half full on average.
    fn merge_small(&mut self, low: Box<[u8]>) {
        let size = self.runs[&low].bytes.len();
        let next = self
            .runs
            .range::<[u8], _>((Bound::Excluded(&*low), Bound::Unbounded))
            .next()
            .map(|(next_low, next)| (next_low.clone(), next.bytes.len()));
        if let Some((next_low, next_size)) = next
            && size + next_size <= RUN_BYTES
        {
            let next = self.runs.remove(&next_low).expect("found just now");
            self.runs
                .get_mut(&low)
                .expect("the run being merged")
                .append(next);
            return;
        }
        if low.is_empty() {
            return;
        }
        let (prev_low, prev_size) = self
            .runs
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(&*low)))
            .next_back()
            .map(|(prev_low, prev)| (prev_low.clone(), prev.bytes.len()))
            .expect("a run other than the first has one before it");
        if size == 0 || prev_size + size <= RUN_BYTES {
            let run = self.runs.remove(&low).expect("the run being merged");
            self.runs
                .get_mut(&prev_low)
                .expect("found just now")
                .append(run);
        }
    }

    /// The entries between two bounds, in order, from either end. Inverted bounds, or equal
    /// bounds that exclude, give an empty range.
    pub fn range<'s>(&'s self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Range<'s> {
        let empty = match (lower, upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        };
        let run_of = |bound: Bound<&[u8]>, unbounded| match bound {
            Bound::Unbounded => unbounded,
            Bound::Included(key) | Bound::Excluded(key) => {
                self.runs.range::<[u8], _>(up_to(key)).next_back()
            }
        };
        let (Some((first_low, first)), false) = (run_of(lower, self.runs.iter().next()), empty)
        else {
            return Range::default();
        };
        let lo = first.first_in(lower);
        // Most ranges (a point lookup, a short range) end in the run they start in: no second
        // descent of the runs then.
        let ends_here = first.len() > lo
            && match upper {
                Bound::Unbounded => false,
                Bound::Included(key) => first.get(first.len() - 1) > key,
                Bound::Excluded(key) => first.get(first.len() - 1) >= key,
            };
        let (last_low, last) = match ends_here {
            true => (first_low, first),
            false => run_of(upper, self.runs.iter().next_back()).expect("the runs are not empty"),
        };
        if first_low == last_low {
            let hi = first.end_of(upper).max(lo);
            return Range {
                front: Slice::of(first, lo, hi),
                ..Range::default()
            };
        }
        Range {
            front: Slice::of(first, lo, first.len()),
            middle: Some(
                self.runs.range::<[u8], _>((
                    Bound::Excluded(&**first_low),
                    Bound::Excluded(&**last_low),
                )),
            ),
            back: Slice::of(last, 0, last.end_of(upper)),
        }
    }

    /// Every entry, in order.
    pub fn iter(&self) -> Range<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

/// Positions `lo..hi` of one run.
#[derive(Clone, Copy, Debug, Default)]
struct Slice<'s> {
    run: Option<&'s Run>,
    lo: usize,
    hi: usize,
}

impl<'s> Slice<'s> {
    fn of(run: &'s Run, lo: usize, hi: usize) -> Slice<'s> {
        Slice {
            run: Some(run),
            lo,
            hi,
        }
    }

    fn next(&mut self) -> Option<&'s [u8]> {
        let run = self.run.filter(|_| self.lo < self.hi)?;
        self.lo += 1;
        Some(run.get(self.lo - 1))
    }

    fn next_back(&mut self) -> Option<&'s [u8]> {
        let run = self.run.filter(|_| self.lo < self.hi)?;
        self.hi -= 1;
        Some(run.get(self.hi))
    }
}

/// Entries of a [`PackedSet`] between two bounds: the rest of the first run, the runs in
/// between whole, the start of the last run.
#[derive(Clone, Debug, Default)]
pub struct Range<'s> {
    front: Slice<'s>,
    middle: Option<btree_map::Range<'s, Box<[u8]>, Run>>,
    back: Slice<'s>,
}

impl<'s> Iterator for Range<'s> {
    type Item = &'s [u8];

    fn next(&mut self) -> Option<&'s [u8]> {
        loop {
            if let Some(entry) = self.front.next() {
                return Some(entry);
            }
            match self.middle.as_mut().and_then(Iterator::next) {
                Some((_, run)) => self.front = Slice::of(run, 0, run.len()),
                None => return self.back.next(),
            }
        }
    }
}

impl<'s> DoubleEndedIterator for Range<'s> {
    fn next_back(&mut self) -> Option<&'s [u8]> {
        loop {
            if let Some(entry) = self.back.next_back() {
                return Some(entry);
            }
            match self
                .middle
                .as_mut()
                .and_then(DoubleEndedIterator::next_back)
            {
                Some((_, run)) => self.back = Slice::of(run, 0, run.len()),
                None => return self.front.next_back(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    impl PackedSet {
        /// Checks the layout: runs in order and within their ranges, offsets increasing, no
        /// empty run but the first, the count right.
        fn check(&self) {
            let mut count = 0;
            let mut previous: Option<&[u8]> = None;
            for (i, (low, run)) in self.runs.iter().enumerate() {
                assert_eq!(
                    i == 0,
                    low.is_empty(),
                    "only the first run starts at the empty key"
                );
                assert!(
                    i == 0 || run.len() > 0,
                    "an empty run that is not the first"
                );
                assert_eq!(run.ends.last().map_or(0, |&e| e as usize), run.bytes.len());
                assert!(run.ends.windows(2).all(|w| w[0] <= w[1]));
                for j in 0..run.len() {
                    let entry = run.get(j);
                    assert!(entry >= &**low, "an entry below its run's range");
                    assert!(previous.is_none_or(|p| p < entry), "entries out of order");
                    previous = Some(entry);
                    count += 1;
                }
            }
            assert_eq!(count, self.len);
        }
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key {i:08}").into_bytes()
    }

    #[test]
    fn entries_in_order_fill_their_runs() {
        let mut set = PackedSet::new();
        for i in 0..10_000 {
            assert!(set.insert(&key(i)));
        }
        assert!(!set.insert(&key(5)), "a second insert of an entry");
        set.check();
        assert_eq!(set.len(), 10_000);
        let bytes: usize = set.runs.values().map(|r| r.bytes.len()).sum();
        let capacity: usize = set.runs.values().map(|r| r.bytes.capacity()).sum();
        assert!(
            bytes * 100 / (set.runs.len() * RUN_BYTES) >= 95,
            "runs filled in order are full: {} runs for {bytes} bytes",
            set.runs.len()
        );
        assert!(
            capacity <= bytes + bytes / 8,
            "slack {capacity} for {bytes}"
        );
        assert_eq!(set.iter().count(), 10_000);
        assert!(set.iter().map(<[u8]>::to_vec).eq((0..10_000).map(key)));
        assert!(
            set.iter()
                .rev()
                .map(<[u8]>::to_vec)
                .eq((0..10_000).rev().map(key))
        );
    }

    #[test]
    fn removing_everything_merges_runs_back() {
        let mut set = PackedSet::new();
        for i in 0..5_000 {
            set.insert(&key(i * 7919 % 5_000));
        }
        set.check();
        for i in 0..5_000 {
            assert!(set.remove(&key(i * 104_729 % 5_000)), "{i}");
            assert!(!set.remove(&key(i * 104_729 % 5_000)));
        }
        set.check();
        assert!(set.is_empty());
        assert_eq!(set.runs.len(), 1, "only the first run is left");
        assert_eq!(set.iter().next(), None);
    }

    #[test]
    fn ranges_across_runs() {
        let mut set = PackedSet::new();
        for i in (0..3_000).map(|i| i * 2) {
            set.insert(&key(i));
        }
        assert!(set.runs.len() > 5);
        let (a, b) = (key(1001), key(4000));
        let inside: Vec<_> = set
            .range(Bound::Included(&a), Bound::Excluded(&b))
            .collect();
        assert_eq!(inside.len(), 1499);
        assert_eq!(inside.first().copied(), Some(&key(1002)[..]));
        assert_eq!(inside.last().copied(), Some(&key(3998)[..]));
        assert_eq!(
            set.range(Bound::Excluded(&b), Bound::Included(&a)).count(),
            0,
            "inverted bounds"
        );
        assert_eq!(
            set.range(Bound::Excluded(&b), Bound::Excluded(&b)).count(),
            0
        );
        assert_eq!(
            set.range(Bound::Included(&b), Bound::Included(&b)).count(),
            1
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(Vec<u8>),
        Remove(Vec<u8>),
        Range(Bound<Vec<u8>>, Bound<Vec<u8>>, Vec<bool>),
    }

    /// Short entries over a small alphabet, so that inserts, removals and bounds meet; long
    /// ones now and then, so that runs split and merge often.
    fn entry() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => proptest::collection::vec(0u8..4, 0..6),
            1 => proptest::collection::vec(0u8..4, 100..700),
        ]
    }

    fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            Just(Bound::Unbounded),
            entry().prop_map(Bound::Included),
            entry().prop_map(Bound::Excluded),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => entry().prop_map(Step::Insert),
            3 => entry().prop_map(Step::Remove),
            1 => (bound(), bound(), proptest::collection::vec(any::<bool>(), 0..40))
                .prop_map(|(l, u, ends)| Step::Range(l, u, ends)),
        ]
    }

    fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        bound.as_ref().map(Vec::as_slice)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The set answers as a `BTreeSet` does, step by step, ranges walked from both ends
        /// in any interleaving.
        #[test]
        fn agrees_with_a_btree_set(steps in proptest::collection::vec(step(), 1..300)) {
            let mut set = PackedSet::new();
            let mut model = BTreeSet::new();
            for step in steps {
                match step {
                    Step::Insert(e) => prop_assert_eq!(set.insert(&e), model.insert(e)),
                    Step::Remove(e) => prop_assert_eq!(set.remove(&e), model.remove(&e)),
                    Step::Range(lower, upper, ends) => {
                        let (l, u) = (as_ref(&lower), as_ref(&upper));
                        let empty = match (l, u) {
                            (Bound::Included(l), Bound::Included(u)) => l > u,
                            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
                            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
                            _ => false,
                        };
                        let mut got = set.range(l, u);
                        let mut want = (!empty).then(|| model.range::<[u8], _>((l, u)));
                        for back in ends {
                            let expected = want.as_mut().and_then(|w| {
                                if back { w.next_back() } else { w.next() }
                            });
                            let found = if back { got.next_back() } else { got.next() };
                            prop_assert_eq!(found, expected.map(Vec::as_slice));
                        }
                        let rest: Vec<&[u8]> = want.into_iter().flatten().map(Vec::as_slice).collect();
                        prop_assert_eq!(got.collect::<Vec<_>>(), rest);
                    }
                }
                prop_assert_eq!(set.len(), model.len());
            }
            set.check();
            prop_assert!(set.iter().eq(model.iter().map(Vec::as_slice)));
            prop_assert!(set.iter().rev().eq(model.iter().rev().map(Vec::as_slice)));
        }
    }
}
