//! Ordered entries packed into runs: the memory-lean stand-in for a `BTreeSet<Box<[u8]>>` or a
//! `BTreeMap<Box<str>, Doc>` where there are millions of small entries (a secondary index holds
//! one per document, a collection holds its documents).
//!
//! ```text
//! Runs<R>: BTreeMap<lowest key a run may hold, R>     (the empty key for the first run)
//!            │
//!            ▼
//! R (a Run): its entries back to back in one buffer, in key order (a Strip: the buffer, and
//!            a u32 per entry for where it ends), and whatever else a kind of run keeps per
//!            entry (a document's version)
//! ```
//!
//! A `BTreeSet<Box<[u8]>>` pays, per entry, a 16-byte slot in a node that inserts in order
//! leave about half full, and a heap block of its own (32 bytes for a 20-byte entry with
//! glibc). Here an entry costs its bytes and a 4-byte end, plus its run's share of one map slot.
//! The buffers are sized exactly (they grow by an eighth at a time and are trimmed when they
//! split or shrink), so how full the runs are changes how many runs there are, not how much
//! slack each has.
//!
//! A write moves at most one run's bytes (an insert or a removal shifts the entries after it
//! in its run). An insert at the end of a run that is full splits it there, so entries that
//! arrive in order (ids made from the time, a counter in one index key) fill their runs; any
//! other split is in the middle. A run that falls under a quarter of its size merges into a
//! neighbour when the two fit in one.
//!
//! [`PackedSet`] is the set of byte strings the secondary indexes keep; the documents of a
//! collection are a `Runs` of their own kind of run (`state::docs`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, btree_map};
use std::fmt::Debug;
use std::ops::{Bound, Range as Span};

/// What a [`Strip`] keeps its entries in: `Vec<u8>`, or `String` when the entries are read
/// back as `&str` (which this crate cannot do from bytes without checking them again).
pub(crate) trait Buffer: Clone + Debug + Default {
    type Slice: ?Sized;
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn reserve_exact(&mut self, more: usize);
    fn shrink_to_fit(&mut self);
    fn slice(&self, span: Span<usize>) -> &Self::Slice;
    fn slice_len(slice: &Self::Slice) -> usize;
    /// Replaces the bytes in `span` with `with`, moving what follows.
    fn splice(&mut self, span: Span<usize>, with: &Self::Slice);
    /// Removes the bytes in `span`, moving what follows.
    fn cut(&mut self, span: Span<usize>);
    fn truncate(&mut self, len: usize);
    fn push(&mut self, tail: &Self::Slice);
}

impl Buffer for Vec<u8> {
    type Slice = [u8];
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    fn reserve_exact(&mut self, more: usize) {
        Vec::reserve_exact(self, more);
    }
    fn shrink_to_fit(&mut self) {
        Vec::shrink_to_fit(self);
    }
    fn slice(&self, span: Span<usize>) -> &[u8] {
        &self[span]
    }
    fn slice_len(slice: &[u8]) -> usize {
        slice.len()
    }
    fn splice(&mut self, span: Span<usize>, with: &[u8]) {
        // What `String::replace_range` does for the document runs.
        Vec::splice(self, span, with.iter().copied()).for_each(drop);
    }
    fn cut(&mut self, span: Span<usize>) {
        self.drain(span);
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
    fn push(&mut self, tail: &[u8]) {
        self.extend_from_slice(tail);
    }
}

impl Buffer for String {
    type Slice = str;
    fn len(&self) -> usize {
        String::len(self)
    }
    fn capacity(&self) -> usize {
        String::capacity(self)
    }
    fn reserve_exact(&mut self, more: usize) {
        String::reserve_exact(self, more);
    }
    fn shrink_to_fit(&mut self) {
        String::shrink_to_fit(self);
    }
    fn slice(&self, span: Span<usize>) -> &str {
        &self[span]
    }
    fn slice_len(slice: &str) -> usize {
        slice.len()
    }
    fn splice(&mut self, span: Span<usize>, with: &str) {
        self.replace_range(span, with);
    }
    fn cut(&mut self, span: Span<usize>) {
        self.drain(span);
    }
    fn truncate(&mut self, len: usize) {
        String::truncate(self, len);
    }
    fn push(&mut self, tail: &str) {
        self.push_str(tail);
    }
}

/// Entries back to back in one buffer, in order, with where each ends: a run's storage.
#[derive(Clone, Debug, Default)]
pub(crate) struct Strip<B> {
    buf: B,
    /// Where each entry ends in `buf`.
    ends: Vec<u32>,
}

impl<B: Buffer> Strip<B> {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The bytes the entries take.
    pub(crate) fn size(&self) -> usize {
        self.buf.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize }
    }

    pub(crate) fn get(&self, i: usize) -> &B::Slice {
        self.buf.slice(self.start(i)..self.ends[i] as usize)
    }

    /// Puts `entry` at position `i` (`i == len` appends).
    pub(crate) fn insert(&mut self, i: usize, entry: &B::Slice) {
        let at = self.start(i);
        insert_lean(&mut self.ends, i, offset(at));
        self.splice(i, at..at, entry);
    }

    /// Replaces entry `i` with `entry`.
    pub(crate) fn replace(&mut self, i: usize, entry: &B::Slice) {
        let span = self.start(i)..self.ends[i] as usize;
        self.splice(i, span, entry);
    }

    /// Puts `entry` in place of `span`, the bytes of entry `i`, and moves the ends from `i` on.
    fn splice(&mut self, i: usize, span: Span<usize>, entry: &B::Slice) {
        let (old, new) = (span.len(), B::slice_len(entry));
        if new > old && self.buf.capacity() - self.buf.len() < new - old {
            // Grow by an eighth at a time (at least 256 bytes, so that a run filling up is
            // not copied at every insert): a full run has at most 12.5% to spare.
            self.buf
                .reserve_exact((new - old).max(self.buf.len() / 8).max(256));
        }
        self.buf.splice(span, entry);
        for end in &mut self.ends[i..] {
            *end = offset(*end as usize + new - old);
        }
        self.trim();
    }

    pub(crate) fn remove(&mut self, i: usize) {
        let span = self.start(i)..self.ends[i] as usize;
        self.ends.remove(i);
        let removed = offset(span.len());
        self.buf.cut(span);
        for end in &mut self.ends[i..] {
            *end -= removed;
        }
        self.trim();
    }

    /// Gives back capacity that removals and shrinking entries left unused.
    fn trim(&mut self) {
        if self.buf.capacity() > self.buf.len() + self.buf.len() / 4 + 64 {
            self.buf.shrink_to_fit();
        }
        trim_lean(&mut self.ends);
    }

    /// Moves the entries from position `at` on into a strip of their own; both are trimmed.
    pub(crate) fn split_off(&mut self, at: usize) -> Strip<B> {
        let start = self.start(at);
        let mut buf = B::default();
        buf.reserve_exact(self.buf.len() - start);
        buf.push(self.buf.slice(start..self.buf.len()));
        let right = Strip {
            buf,
            ends: self.ends[at..]
                .iter()
                .map(|end| end - offset(start))
                .collect(),
        };
        self.buf.truncate(start);
        self.ends.truncate(at);
        self.buf.shrink_to_fit();
        self.ends.shrink_to_fit();
        right
    }

    /// Appends every entry of `next`.
    pub(crate) fn append(&mut self, next: Strip<B>) {
        let base = offset(self.buf.len());
        self.buf.reserve_exact(next.buf.len());
        self.buf.push(next.buf.slice(0..next.buf.len()));
        self.ends.reserve_exact(next.ends.len());
        self.ends.extend(next.ends.iter().map(|end| end + base));
    }

    /// Where to split a strip that grew too large, by an insert at `inserted` (or by a
    /// replacement): right before the inserted entry when it is the last (entries arriving in
    /// order), else about halfway by bytes.
    pub(crate) fn split_point(&self, inserted: Option<usize>) -> usize {
        if inserted == Some(self.len() - 1) {
            return self.len() - 1;
        }
        let half = offset(self.buf.len() / 2);
        self.ends
            .partition_point(|&end| end < half)
            .clamp(1, self.len() - 1)
    }
}

/// Puts `value` at `i` in a vector of one value per entry of a run (its ends, a document's
/// versions), growing it by an eighth at a time (at least 8), as the runs' buffers grow.
pub(crate) fn insert_lean<T>(values: &mut Vec<T>, i: usize, value: T) {
    if values.capacity() == values.len() {
        values.reserve_exact((values.len() / 8).max(8));
    }
    values.insert(i, value);
}

/// Gives back the capacity of a vector of one value per entry that removals left unused.
pub(crate) fn trim_lean<T>(values: &mut Vec<T>) {
    if values.capacity() > values.len() + values.len() / 4 + 16 {
        values.shrink_to_fit();
    }
}

/// An offset or a length inside a run. A run holds at most its size and one more entry, and
/// an entry is at most a document's size (a few MiB), so this cannot overflow.
fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a run is far smaller than 4 GiB")
}

/// One kind of run: entries in strictly ascending order of their keys.
pub(crate) trait Run: Clone + Debug + Default {
    /// The bytes a run holds before it splits (one entry larger than this has a run of its
    /// own).
    const BYTES: usize;
    fn len(&self) -> usize;
    /// The bytes its entries take.
    fn size(&self) -> usize;
    /// The key of entry `i`.
    fn key(&self, i: usize) -> Cow<'_, [u8]>;
    /// Moves the entries from `at` on into a run of their own.
    fn split_off(&mut self, at: usize) -> Self;
    /// Appends every entry of `next`, whose keys all follow this run's.
    fn append(&mut self, next: Self);
    /// Where to split this run, grown past [`Run::BYTES`] (see [`Strip::split_point`]).
    fn split_point(&self, inserted: Option<usize>) -> usize;

    /// The first position whose key is not below `key` (`Ok` when it equals it).
    fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match (*self.key(mid)).cmp(key) {
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
}

/// What an edit did to the run it was given (see [`Runs::edit`]).
pub(crate) enum Change {
    /// Nothing.
    Kept,
    /// An entry went in at this position.
    Inserted(usize),
    /// An entry changed in place (its size may have).
    Replaced,
    /// An entry went out.
    Removed,
}

/// Runs of entries, ordered by key (see the module's doc).
#[derive(Clone, Debug, Default)]
pub(crate) struct Runs<R> {
    /// By the lowest key each run may hold; the first run's key is empty. Empty only while
    /// nothing was ever put in.
    runs: BTreeMap<Box<[u8]>, R>,
    len: usize,
}

/// The keys up to `key`, itself included (`..=key` is not a range of an unsized type).
fn up_to(key: &[u8]) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (Bound::Unbounded, Bound::Included(key))
}

impl<R: Run> Runs<R> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The run whose range holds `key`, with the lowest key it may hold.
    fn run_of(&self, key: &[u8]) -> Option<(&[u8], &R)> {
        self.runs
            .range::<[u8], _>(up_to(key))
            .next_back()
            .map(|(low, run)| (&**low, run))
    }

    /// Whether `key` falls in the last run: one comparison instead of a search down the map,
    /// for writes whose keys come in ascending order (time-ordered ids, a log's replay of
    /// them). Reads keep the search: a lookup of a random key would pay for the check.
    fn in_last_run(&self, key: &[u8]) -> bool {
        self.runs
            .last_key_value()
            .is_some_and(|(low, _)| **low <= *key)
    }

    /// The entry with this key: its run and position.
    pub(crate) fn find(&self, key: &[u8]) -> Option<(&R, usize)> {
        let (_, run) = self.run_of(key)?;
        Some((run, run.search(key).ok()?))
    }

    /// Lets `edit` change the run whose range holds `key`, given where `key` is in it (`Ok`)
    /// or belongs (`Err`); then splits or merges that run as the change it reports requires.
    pub(crate) fn edit<T>(
        &mut self,
        key: &[u8],
        edit: impl FnOnce(&mut R, Result<usize, usize>) -> (T, Change),
    ) -> T {
        if self.runs.is_empty() {
            self.runs.insert(Box::default(), R::default());
        }
        let found = if self.in_last_run(key) {
            self.runs.iter_mut().next_back()
        } else {
            self.runs.range_mut::<[u8], _>(up_to(key)).next_back()
        };
        let (low, run) = found.expect("the first run's range starts at the empty key");
        let at = run.search(key);
        let (out, change) = edit(run, at);
        let inserted = match change {
            Change::Kept => return out,
            Change::Inserted(i) => {
                self.len += 1;
                Some(i)
            }
            Change::Replaced => None,
            Change::Removed => {
                self.len -= 1;
                None
            }
        };
        if run.size() > R::BYTES && run.len() > 1 {
            let right = run.split_off(run.split_point(inserted));
            self.runs.insert(right.key(0).into(), right);
        } else if inserted.is_none() && run.size() < R::BYTES / 4 {
            let low = low.clone();
            self.merge_small(low);
        }
        out
    }

    /// Appends an entry whose key follows every key held, by `put` (which must append one
    /// entry with that key to the run it is given): filling the last run, with no search.
    pub(crate) fn push(&mut self, key: &[u8], put: impl FnOnce(&mut R)) {
        if self.runs.is_empty() {
            self.runs.insert(Box::default(), R::default());
        }
        let mut last = self.runs.last_entry().expect("at least the first run");
        let run = last.get_mut();
        debug_assert!(
            run.len() == 0 || *run.key(run.len() - 1) < *key,
            "pushed out of order"
        );
        put(run);
        self.len += 1;
        if run.size() > R::BYTES && run.len() > 1 {
            let right = run.split_off(run.len() - 1);
            self.runs.insert(Box::from(key), right);
        }
    }

    /// Merges the run at `low`, which fell under a quarter of [`Run::BYTES`], into its next
    /// neighbour or its previous one when the two fit in one run; drops it when it is empty
    /// and not the first run. A run under a quarter therefore has neighbours too full to take
    /// it, which keeps the runs about half full or more on average.
    fn merge_small(&mut self, low: Box<[u8]>) {
        let size = self.runs[&low].size();
        let next = self
            .runs
            .range::<[u8], _>((Bound::Excluded(&*low), Bound::Unbounded))
            .next()
            .map(|(next_low, next)| (next_low.clone(), next.size()));
        if let Some((next_low, next_size)) = next
            && size + next_size <= R::BYTES
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
            .map(|(prev_low, prev)| (prev_low.clone(), prev.size()))
            .expect("a run other than the first has one before it");
        if self.runs[&low].len() == 0 || prev_size + size <= R::BYTES {
            let run = self.runs.remove(&low).expect("the run being merged");
            self.runs
                .get_mut(&prev_low)
                .expect("found just now")
                .append(run);
        }
    }

    /// The entries between two bounds, in order, from either end, as (run, position).
    /// Inverted bounds, or equal bounds that exclude, give an empty range.
    pub(crate) fn range<'s>(&'s self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Range<'s, R> {
        let empty = match (lower, upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        };
        let run_of = |bound: Bound<&[u8]>, unbounded: Option<(&'s Box<[u8]>, &'s R)>| match bound {
            Bound::Unbounded => unbounded.map(|(low, run)| (&**low, run)),
            Bound::Included(key) | Bound::Excluded(key) => self.run_of(key),
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
                Bound::Included(key) => *first.key(first.len() - 1) > *key,
                Bound::Excluded(key) => *first.key(first.len() - 1) >= *key,
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
                self.runs
                    .range::<[u8], _>((Bound::Excluded(first_low), Bound::Excluded(last_low))),
            ),
            back: Slice::of(last, 0, last.end_of(upper)),
        }
    }

    /// Every entry, in order.
    pub(crate) fn iter(&self) -> Range<'_, R> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

/// Positions `lo..hi` of one run.
#[derive(Debug)]
struct Slice<'s, R> {
    run: Option<&'s R>,
    lo: usize,
    hi: usize,
}

impl<R> Clone for Slice<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Slice<'_, R> {}

impl<R> Default for Slice<'_, R> {
    fn default() -> Self {
        Slice {
            run: None,
            lo: 0,
            hi: 0,
        }
    }
}

impl<'s, R> Slice<'s, R> {
    fn of(run: &'s R, lo: usize, hi: usize) -> Slice<'s, R> {
        Slice {
            run: Some(run),
            lo,
            hi,
        }
    }

    fn next(&mut self) -> Option<(&'s R, usize)> {
        let run = self.run.filter(|_| self.lo < self.hi)?;
        self.lo += 1;
        Some((run, self.lo - 1))
    }

    fn next_back(&mut self) -> Option<(&'s R, usize)> {
        let run = self.run.filter(|_| self.lo < self.hi)?;
        self.hi -= 1;
        Some((run, self.hi))
    }
}

/// The entries of [`Runs`] between two bounds, as (run, position): the rest of the first
/// run, the runs in between whole, the start of the last run.
#[derive(Debug)]
pub(crate) struct Range<'s, R> {
    front: Slice<'s, R>,
    middle: Option<btree_map::Range<'s, Box<[u8]>, R>>,
    back: Slice<'s, R>,
}

impl<R> Clone for Range<'_, R> {
    fn clone(&self) -> Self {
        Range {
            front: self.front,
            middle: self.middle.clone(),
            back: self.back,
        }
    }
}

impl<R> Default for Range<'_, R> {
    fn default() -> Self {
        Range {
            front: Slice::default(),
            middle: None,
            back: Slice::default(),
        }
    }
}

impl<'s, R: Run> Iterator for Range<'s, R> {
    type Item = (&'s R, usize);

    fn next(&mut self) -> Option<(&'s R, usize)> {
        loop {
            if let Some(at) = self.front.next() {
                return Some(at);
            }
            match self.middle.as_mut().and_then(Iterator::next) {
                Some((_, run)) => self.front = Slice::of(run, 0, run.len()),
                None => return self.back.next(),
            }
        }
    }
}

impl<'s, R: Run> DoubleEndedIterator for Range<'s, R> {
    fn next_back(&mut self) -> Option<(&'s R, usize)> {
        loop {
            if let Some(at) = self.back.next_back() {
                return Some(at);
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

/// The bytes a run of a [`PackedSet`] holds before it splits.
const SET_RUN_BYTES: usize = 2048;

impl Run for Strip<Vec<u8>> {
    const BYTES: usize = SET_RUN_BYTES;

    fn len(&self) -> usize {
        Strip::len(self)
    }
    fn size(&self) -> usize {
        Strip::size(self)
    }
    fn key(&self, i: usize) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.get(i))
    }
    fn split_off(&mut self, at: usize) -> Self {
        Strip::split_off(self, at)
    }
    fn append(&mut self, next: Self) {
        Strip::append(self, next);
    }
    fn split_point(&self, inserted: Option<usize>) -> usize {
        Strip::split_point(self, inserted)
    }
}

/// An ordered set of byte strings (see the module's doc).
#[derive(Clone, Debug, Default)]
pub(crate) struct PackedSet {
    runs: Runs<Strip<Vec<u8>>>,
}

impl PackedSet {
    /// An empty set.
    pub(crate) fn new() -> PackedSet {
        PackedSet::default()
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    /// True when it holds no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `entry`; false when it was there already.
    pub(crate) fn insert(&mut self, entry: &[u8]) -> bool {
        self.runs.edit(entry, |run, at| match at {
            Ok(_) => (false, Change::Kept),
            Err(i) => {
                run.insert(i, entry);
                (true, Change::Inserted(i))
            }
        })
    }

    /// Removes `entry`; false when it was not there.
    pub(crate) fn remove(&mut self, entry: &[u8]) -> bool {
        self.runs.edit(entry, |run, at| match at {
            Ok(i) => {
                run.remove(i);
                (true, Change::Removed)
            }
            Err(_) => (false, Change::Kept),
        })
    }

    /// The entries between two bounds, in order, from either end. Inverted bounds, or equal
    /// bounds that exclude, give an empty range.
    pub(crate) fn range<'s>(&'s self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> SetRange<'s> {
        SetRange(self.runs.range(lower, upper))
    }

    /// Every entry, in order.
    pub(crate) fn iter(&self) -> SetRange<'_> {
        SetRange(self.runs.iter())
    }
}

/// Entries of a [`PackedSet`] between two bounds.
#[derive(Clone, Debug, Default)]
pub(crate) struct SetRange<'s>(Range<'s, Strip<Vec<u8>>>);

impl<'s> Iterator for SetRange<'s> {
    type Item = &'s [u8];

    fn next(&mut self) -> Option<&'s [u8]> {
        self.0.next().map(|(run, i)| run.get(i))
    }
}

impl<'s> DoubleEndedIterator for SetRange<'s> {
    fn next_back(&mut self) -> Option<&'s [u8]> {
        self.0.next_back().map(|(run, i)| run.get(i))
    }
}

/// Checks the layout of any kind of run: runs in key order and each entry within its run's
/// range, ends increasing, no empty run but the first, the count right.
#[cfg(test)]
impl<R: Run> Runs<R> {
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }

    pub(crate) fn check(&self) {
        let mut count = 0;
        let mut previous: Option<Vec<u8>> = None;
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
            for j in 0..run.len() {
                let key = run.key(j).into_owned();
                assert!(key >= low.to_vec(), "an entry below its run's range");
                assert!(
                    previous.as_ref().is_none_or(|p| *p < key),
                    "entries out of order"
                );
                previous = Some(key);
                count += 1;
            }
        }
        assert_eq!(count, self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// A strip's ends match its buffer.
    fn check_strips(set: &PackedSet) {
        for run in set.runs.runs.values() {
            assert_eq!(run.ends.last().map_or(0, |&e| e as usize), run.buf.len());
            assert!(run.ends.windows(2).all(|w| w[0] <= w[1]));
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
        set.runs.check();
        assert_eq!(set.len(), 10_000);
        let runs = &set.runs.runs;
        let bytes: usize = runs.values().map(|r| r.buf.len()).sum();
        let capacity: usize = runs.values().map(|r| r.buf.capacity()).sum();
        assert!(
            bytes * 100 / (runs.len() * SET_RUN_BYTES) >= 95,
            "runs filled in order are full: {} runs for {bytes} bytes",
            runs.len()
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
        set.runs.check();
        for i in 0..5_000 {
            assert!(set.remove(&key(i * 104_729 % 5_000)), "{i}");
            assert!(!set.remove(&key(i * 104_729 % 5_000)));
        }
        set.runs.check();
        assert!(set.is_empty());
        assert_eq!(set.runs.runs.len(), 1, "only the first run is left");
        assert_eq!(set.iter().next(), None);
    }

    #[test]
    fn ranges_across_runs() {
        let mut set = PackedSet::new();
        for i in (0..3_000).map(|i| i * 2) {
            set.insert(&key(i));
        }
        assert!(set.runs.runs.len() > 5);
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
            set.runs.check();
            check_strips(&set);
            prop_assert!(set.iter().eq(model.iter().map(Vec::as_slice)));
            prop_assert!(set.iter().rev().eq(model.iter().rev().map(Vec::as_slice)));
        }
    }
}
