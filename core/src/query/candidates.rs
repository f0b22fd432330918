//! The candidates of a plan: the documents its access path yields, in its order.
//!
//! This is the executor's inner loop, so it is a plain enum of concrete iterators rather than
//! a chain of boxed ones, and it reads ids straight out of index entries without copying them
//! (an id is copied only in the rare case that it holds an escaped NUL).
//!
//! ```text
//! FullScan   source.scan()                                   _id order
//! IdLookup   ids ──► source.get                              ids ascending
//! Index      ranges ──► entries ──► id ──► source.get        forward: key, then id
//!                 (reverse: RunsInIdOrder)                   reverse: key descending, id asc
//! ```

use std::borrow::Cow;
use std::iter::Peekable;
use std::ops::Bound;
use std::slice;

use super::plan::{Access, IndexAccess, KeyRange, Plan};
use super::source::DocSource;
use crate::doc::DocRef;
use crate::index::SecondaryIndex;
use crate::index::secondary::Entries;

/// The documents a plan yields, in its access order.
// One per query, on the stack: boxing the index walk would allocate per query. (`allow`, not
// `expect`: on wasm32 the variants are small enough for the lint to stay quiet.)
#[allow(clippy::large_enum_variant)]
pub enum Candidates<'s, 'p, S: DocSource + ?Sized> {
    /// Every document.
    Scan(Box<dyn Iterator<Item = DocRef<'s>> + 's>),
    /// Documents by id; missing ids are skipped.
    Ids {
        source: &'s S,
        ids: slice::Iter<'p, String>,
    },
    /// Documents named by index entries.
    Index {
        source: &'s S,
        access: &'p IndexAccess,
        ids: IndexIds<'s, 'p>,
    },
}

impl<'s, 'p, S: DocSource + ?Sized> Candidates<'s, 'p, S> {
    /// The candidates of `plan` in `source`.
    pub fn new(source: &'s S, plan: &'p Plan) -> Candidates<'s, 'p, S> {
        match &plan.access {
            Access::FullScan => Candidates::Scan(source.scan()),
            Access::IdLookup { ids } => Candidates::Ids {
                source,
                ids: ids.iter(),
            },
            Access::Index(access) => {
                let index = &source.indexes()[access.position];
                assert_eq!(
                    index.spec().name,
                    access.name,
                    "a plan ran against other indexes than it was made for"
                );
                Candidates::Index {
                    source,
                    access,
                    ids: IndexIds::new(index, access),
                }
            }
        }
    }
}

impl<'s, S: DocSource + ?Sized> Iterator for Candidates<'s, '_, S> {
    type Item = DocRef<'s>;

    fn next(&mut self) -> Option<DocRef<'s>> {
        match self {
            Candidates::Scan(docs) => docs.next(),
            Candidates::Ids { source, ids } => ids.find_map(|id| source.get(id)),
            Candidates::Index {
                source,
                access,
                ids,
            } => {
                let id = ids.next()?;
                Some(source.get(&id).unwrap_or_else(|| {
                    panic!(
                        "index `{}` names document `{id}`, which does not exist",
                        access.name
                    )
                }))
            }
        }
    }
}

/// The ids an index plan walks, in its order, borrowed from the index entries.
pub enum IndexIds<'s, 'p> {
    /// Ranges ascending, entries ascending: keys ascending, then ids ascending.
    Forward {
        index: &'s SecondaryIndex,
        entries: RangeWalk<'s, 'p>,
    },
    /// Ranges and entries descending, each run of equal keys turned back into id order.
    Reverse(RunsInIdOrder<'s, RangeWalk<'s, 'p>>),
}

impl<'s, 'p> IndexIds<'s, 'p> {
    fn new(index: &'s SecondaryIndex, access: &'p IndexAccess) -> IndexIds<'s, 'p> {
        let entries = RangeWalk {
            index,
            ranges: access.ranges.iter(),
            reverse: access.reverse,
            near_end_only: !access.range_field,
            current: None,
        };
        if access.reverse {
            IndexIds::Reverse(RunsInIdOrder {
                index,
                entries: entries.peekable(),
                run: Vec::new(),
            })
        } else {
            IndexIds::Forward { index, entries }
        }
    }
}

impl<'s> Iterator for IndexIds<'s, '_> {
    type Item = Cow<'s, str>;

    fn next(&mut self) -> Option<Cow<'s, str>> {
        match self {
            IndexIds::Forward { index, entries } => {
                let entry = entries.next()?;
                Some(index.split_entry(entry).1)
            }
            IndexIds::Reverse(runs) => runs.next(),
        }
    }
}

/// The entries of a list of disjoint, ascending ranges, walked forward or backward.
///
/// A range can be found in the tree by both of its ends (two descents, shared near the root)
/// or by its near end only, with the far end compared against every entry read. The second is
/// cheaper when a range holds few entries, as point ranges (`$eq`, `$in`) usually do; long
/// interval walks keep the two-ended search.
pub struct RangeWalk<'s, 'p> {
    index: &'s SecondaryIndex,
    ranges: slice::Iter<'p, KeyRange>,
    reverse: bool,
    /// Search only the near end of each range.
    near_end_only: bool,
    /// The range being walked, and the far bound its entries must still be checked against.
    current: Option<(Entries<'s>, Bound<&'p [u8]>)>,
}

impl<'s, 'p> RangeWalk<'s, 'p> {
    /// Starts the walk of `range`.
    fn enter(&mut self, range: &'p KeyRange) {
        let lower = range.lower.as_ref().map(Vec::as_slice);
        let upper = range.upper.as_ref().map(Vec::as_slice);
        self.current = Some(match (self.near_end_only, self.reverse) {
            (false, _) => (self.index.entries_between(lower, upper), Bound::Unbounded),
            (true, false) => (self.index.entries_between(lower, Bound::Unbounded), upper),
            (true, true) => (self.index.entries_between(Bound::Unbounded, upper), lower),
        });
    }

    /// True when `entry` lies on the near side of the far bound.
    fn before_far_bound(&self, entry: &[u8], far: Bound<&[u8]>) -> bool {
        match (far, self.reverse) {
            (Bound::Unbounded, _) => true,
            (Bound::Included(upper), false) => entry <= upper,
            (Bound::Excluded(upper), false) => entry < upper,
            (Bound::Included(lower), true) => entry >= lower,
            (Bound::Excluded(lower), true) => entry > lower,
        }
    }
}

impl<'s> Iterator for RangeWalk<'s, '_> {
    type Item = &'s [u8];

    fn next(&mut self) -> Option<&'s [u8]> {
        loop {
            if let Some((entries, far)) = &mut self.current {
                let far = *far;
                let entry = if self.reverse {
                    entries.next_back()
                } else {
                    entries.next()
                };
                match entry {
                    Some(entry) if self.before_far_bound(entry, far) => return Some(entry),
                    // Past the far bound or the end of the index: this range is done.
                    _ => self.current = None,
                }
            }
            let range = if self.reverse {
                self.ranges.next_back()?
            } else {
                self.ranges.next()?
            };
            self.enter(range);
        }
    }
}

/// Turns a backward walk (keys descending, and within a key ids descending) into keys
/// descending with ids ascending, by reversing each run of equal keys. A run is buffered
/// whole: its length is the number of documents sharing one key.
pub struct RunsInIdOrder<'s, I: Iterator<Item = &'s [u8]>> {
    index: &'s SecondaryIndex,
    entries: Peekable<I>,
    /// The current run's ids, descending; popped from the end.
    run: Vec<Cow<'s, str>>,
}

impl<'s, I: Iterator<Item = &'s [u8]>> Iterator for RunsInIdOrder<'s, I> {
    type Item = Cow<'s, str>;

    fn next(&mut self) -> Option<Cow<'s, str>> {
        if let Some(id) = self.run.pop() {
            return Some(id);
        }
        let first = self.entries.next()?;
        let (key, id) = self.index.split_entry(first);
        self.run.push(id);
        while let Some(next) = self.entries.peek() {
            let (next_key, next_id) = self.index.split_entry(next);
            if next_key != key {
                break;
            }
            self.run.push(next_id);
            self.entries.next();
        }
        self.run.pop()
    }
}
