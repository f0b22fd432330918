//! The executor: runs a plan against a [`DocSource`], re-checks the filter, sorts, skips and
//! limits.
//!
//! ```text
//! plan.access ──► candidates ──► parse + filter.matches ──┬─ order already right:
//!  (scan / ids /    (superset      (every candidate,      │    skip, take `limit`, stop early
//!   index ranges)    of matches)    whatever the plan)    └─ otherwise: keep the best
//!                                                              `skip + limit` by sort key
//!                                                              (bounded heap), then sort them
//! ```
//!
//! The re-check is what makes planning safe: an index range only has to contain every match,
//! so a planner bug can cost time but cannot return a wrong document. Sorting compares byte
//! strings (see [`sort_key`]), ties going by `_id`, so the result is the same whichever plan
//! ran.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::iter::Peekable;

use super::error::QueryError;
use super::filter::Filter;
use super::find_query::{FindQuery, sort_key};
use super::plan::{Access, IndexAccess, KeyRange, Plan};
use super::planner::plan;
use super::source::DocSource;
use crate::doc::{DocView, StoredDoc};
use crate::index::SecondaryIndex;

/// What a find returned, and how.
#[derive(Debug)]
pub struct FindResult<'a> {
    /// The matching documents, sorted, after `skip`, at most `limit`.
    pub docs: Vec<&'a StoredDoc>,
    /// The plan that ran.
    pub plan: Plan,
    /// Candidates read and checked against the filter.
    pub examined: usize,
}

/// What a count returned, and how.
#[derive(Debug)]
pub struct CountResult {
    /// Documents matching the filter.
    pub count: usize,
    /// The plan that ran.
    pub plan: Plan,
    /// Candidates read and checked against the filter.
    pub examined: usize,
}

/// Runs `query` against `source`.
pub fn find<'a, S: DocSource + ?Sized>(
    source: &'a S,
    query: &FindQuery,
) -> Result<FindResult<'a>, QueryError> {
    query.validate()?;
    let plan = plan(&query.filter, &query.sort, source.indexes());
    let mut examined = 0;
    let docs = if query.limit == Some(0) {
        Vec::new()
    } else {
        let candidates = candidates(source, &plan).inspect(|_| examined += 1);
        if plan.in_memory_sort {
            sorted_matches(candidates, query)
        } else {
            ordered_matches(candidates, query)
        }
    };
    Ok(FindResult {
        docs,
        plan,
        examined,
    })
}

/// Counts the documents of `source` that match `filter`.
pub fn count<S: DocSource + ?Sized>(source: &S, filter: &Filter) -> CountResult {
    let plan = plan(filter, &[], source.indexes());
    let mut examined = 0;
    let count = candidates(source, &plan)
        .inspect(|_| examined += 1)
        .filter(|doc| passes(filter, doc))
        .count();
    CountResult {
        count,
        plan,
        examined,
    }
}

/// True when `doc` passes the filter; the match-all filter does not parse the document.
fn passes(filter: &Filter, doc: &StoredDoc) -> bool {
    filter.is_all() || filter.matches(&DocView::new(&doc.doc))
}

/// The access order is the result order: skip, then take until the limit, then stop reading.
fn ordered_matches<'a>(
    candidates: impl Iterator<Item = &'a StoredDoc>,
    query: &FindQuery,
) -> Vec<&'a StoredDoc> {
    let mut docs = Vec::new();
    let mut skipped = 0;
    for doc in candidates {
        if !passes(&query.filter, doc) {
            continue;
        }
        if skipped < query.skip {
            skipped += 1;
            continue;
        }
        docs.push(doc);
        if Some(docs.len()) == query.limit {
            break;
        }
    }
    docs
}

/// A match with the key it sorts by; ordered by key alone (keys end with the unique `_id`).
struct Keyed<'a> {
    key: Vec<u8>,
    doc: &'a StoredDoc,
}

impl PartialEq for Keyed<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Keyed<'_> {}

impl PartialOrd for Keyed<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Keyed<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// The access order is not the result order: sort the matches by key. With a limit only the
/// best `skip + limit` are kept, in a max-heap whose top is the worst kept so far.
fn sorted_matches<'a>(
    candidates: impl Iterator<Item = &'a StoredDoc>,
    query: &FindQuery,
) -> Vec<&'a StoredDoc> {
    let keep = query.limit.map(|limit| query.skip + limit);
    let mut heap: BinaryHeap<Keyed<'a>> = BinaryHeap::with_capacity(keep.unwrap_or(64).min(1024));
    for doc in candidates {
        let value = DocView::new(&doc.doc);
        if !query.filter.matches(&value) {
            continue;
        }
        let key = sort_key(&query.sort, &value);
        match keep {
            Some(keep) if heap.len() >= keep => {
                let mut worst = heap.peek_mut().expect("keep > 0 when the heap is full");
                if key < worst.key {
                    *worst = Keyed { key, doc };
                }
            }
            _ => heap.push(Keyed { key, doc }),
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .skip(query.skip)
        .map(|keyed| keyed.doc)
        .collect()
}

/// The plan's candidates, in its access order.
fn candidates<'s: 'p, 'p, S: DocSource + ?Sized>(
    source: &'s S,
    plan: &'p Plan,
) -> Box<dyn Iterator<Item = &'s StoredDoc> + 'p> {
    match &plan.access {
        Access::FullScan => source.scan(),
        Access::IdLookup { ids } => Box::new(ids.iter().filter_map(move |id| source.get(id))),
        Access::Index(access) => {
            let index = &source.indexes()[access.position];
            assert_eq!(
                index.spec().name,
                access.name,
                "a plan ran against other indexes than it was made for"
            );
            Box::new(index_ids(index, access).map(move |id| {
                source.get(&id).unwrap_or_else(|| {
                    panic!(
                        "index `{}` names document `{id}`, which does not exist",
                        access.name
                    )
                })
            }))
        }
    }
}

/// The ids an index plan walks, in its order.
fn index_ids<'s: 'p, 'p>(
    index: &'s SecondaryIndex,
    access: &'p IndexAccess,
) -> Box<dyn Iterator<Item = String> + 'p> {
    let walk = move |range: &'p KeyRange| index.range(range.lower.clone(), range.upper.clone());
    if access.reverse {
        let entries = access.ranges.iter().rev().flat_map(move |r| walk(r).rev());
        Box::new(RunsInIdOrder {
            index,
            entries: entries.peekable(),
            run: Vec::new(),
        })
    } else {
        let entries = access.ranges.iter().flat_map(walk);
        Box::new(entries.map(move |entry| index.split_entry(entry).1))
    }
}

/// Turns a backward walk (keys descending, and within a key ids descending) into keys
/// descending with ids ascending, by reversing each run of equal keys. A run is buffered
/// whole: its length is the number of documents sharing one key.
struct RunsInIdOrder<'s, I: Iterator<Item = &'s [u8]>> {
    index: &'s SecondaryIndex,
    entries: Peekable<I>,
    /// The current run's ids, descending; popped from the end.
    run: Vec<String>,
}

impl<'s, I: Iterator<Item = &'s [u8]>> Iterator for RunsInIdOrder<'s, I> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::doc::RawDoc;
    use crate::index::{IndexField, IndexSpec};
    use crate::query::SortKey;
    use crate::types::Lsn;

    /// Documents in a map, indexes kept in step on insert.
    struct Mem {
        docs: BTreeMap<String, StoredDoc>,
        indexes: Vec<SecondaryIndex>,
    }

    impl Mem {
        fn new(specs: Vec<IndexSpec>) -> Mem {
            Mem {
                docs: BTreeMap::new(),
                indexes: specs.into_iter().map(SecondaryIndex::new).collect(),
            }
        }

        fn insert(&mut self, doc: Value) {
            let raw = RawDoc::from_value(&doc).unwrap();
            let id = raw.id();
            for index in &mut self.indexes {
                if let Some(key) = index.key_for(&doc) {
                    index.insert(&key, &id);
                }
            }
            self.docs.insert(
                id,
                StoredDoc {
                    version: Lsn(1),
                    doc: raw,
                },
            );
        }
    }

    impl DocSource for Mem {
        fn get(&self, id: &str) -> Option<&StoredDoc> {
            self.docs.get(id)
        }
        fn scan(&self) -> Box<dyn Iterator<Item = &StoredDoc> + '_> {
            Box::new(self.docs.values())
        }
        fn indexes(&self) -> &[SecondaryIndex] {
            &self.indexes
        }
    }

    fn spec(name: &str, fields: &[(&str, bool)]) -> IndexSpec {
        IndexSpec {
            name: name.into(),
            fields: fields
                .iter()
                .map(|(p, d)| IndexField {
                    path: p.to_string(),
                    desc: *d,
                })
                .collect(),
            unique: false,
            sparse: false,
        }
    }

    /// Ten people: ids p0..p9, age = i % 4, city alternating.
    fn people() -> Mem {
        let mut mem = Mem::new(vec![
            spec("by_age", &[("age", false)]),
            spec("by_city_age", &[("city", false), ("age", true)]),
        ]);
        for i in 0..10 {
            let city = if i % 2 == 0 { "Oslo" } else { "Rome" };
            mem.insert(json!({"_id": format!("p{i}"), "age": i % 4, "city": city}));
        }
        mem
    }

    fn run(mem: &Mem, body: Value) -> (Vec<String>, Value, usize) {
        let query = FindQuery::parse(&body).unwrap();
        let result = find(mem, &query).unwrap();
        let ids = result.docs.iter().map(|d| d.doc.id()).collect();
        (ids, result.plan.explain(), result.examined)
    }

    #[test]
    fn index_range_examines_only_candidates() {
        let mem = people();
        let (ids, plan, examined) = run(&mem, json!({"filter": {"age": 1}}));
        assert_eq!(ids, ["p1", "p5", "p9"]);
        assert_eq!(plan["index"], "by_age");
        assert_eq!(examined, 3);
        let (ids, _, examined) = run(
            &mem,
            json!({"filter": {"city": "Rome", "age": {"$gte": 2}}}),
        );
        assert_eq!(ids, ["p3", "p7"]);
        assert_eq!(examined, 2);
    }

    #[test]
    fn full_scan_and_id_lookup() {
        let mem = people();
        let (ids, plan, examined) = run(&mem, json!({"filter": {"age": {"$ne": 0}}, "limit": 2}));
        assert_eq!(
            (ids, plan["strategy"].clone()),
            (vec!["p1".to_string(), "p2".into()], json!("full_scan"))
        );
        assert_eq!(examined, 3, "the scan stops once the limit is reached");
        let (ids, plan, examined) = run(
            &mem,
            json!({"filter": {"_id": {"$in": ["p3", "nope", "p1"]}, "age": 3}}),
        );
        assert_eq!(
            (ids, plan["strategy"].clone()),
            (vec!["p3".to_string()], json!("id_lookup"))
        );
        assert_eq!(examined, 2, "missing ids are not candidates");
    }

    #[test]
    fn sorted_index_walk_stops_at_the_limit() {
        let mem = people();
        let (ids, plan, examined) = run(&mem, json!({"sort": {"age": -1}, "limit": 3, "skip": 1}));
        assert_eq!(plan["strategy"], "index_scan");
        assert_eq!(plan["reverse"], true);
        // age 3: p3, p7; age 2: p2, p6: equal ages come in _id order.
        assert_eq!(ids, ["p7", "p2", "p6"]);
        assert_eq!(examined, 4);
    }

    #[test]
    fn in_memory_sort_keeps_the_top_k() {
        let mem = people();
        let (ids, plan, examined) = run(
            &mem,
            json!({"filter": {"city": {"$in": ["Oslo", "Rome"]}}, "sort": [["age", 1], ["city", -1]], "limit": 3, "skip": 2}),
        );
        assert_eq!(plan["in_memory_sort"], true);
        assert_eq!(examined, 10);
        // age 0: p0 p4 p8 (Oslo); age 1: p1 p5 p9 (Rome): skip two, take three.
        assert_eq!(ids, ["p8", "p1", "p5"]);
        let (all, _, _) = run(&mem, json!({"sort": [["city", -1], ["age", -1]]}));
        assert_eq!(
            all,
            ["p3", "p7", "p1", "p5", "p9", "p2", "p6", "p0", "p4", "p8"]
        );
    }

    #[test]
    fn limit_zero_and_skip_past_the_end() {
        let mem = people();
        let (ids, _, examined) = run(&mem, json!({"limit": 0}));
        assert!(ids.is_empty());
        assert_eq!(examined, 0);
        let (ids, _, _) = run(&mem, json!({"skip": 20}));
        assert!(ids.is_empty());
        let (ids, _, _) = run(&mem, json!({"sort": {"age": 1}, "skip": 20, "limit": 5}));
        assert!(ids.is_empty());
    }

    #[test]
    fn count_uses_the_plan() {
        let mem = people();
        let filter = Filter::parse(&json!({"age": {"$in": [0, 3]}})).unwrap();
        let counted = count(&mem, &filter);
        assert_eq!((counted.count, counted.examined), (5, 5));
        assert_eq!(counted.plan.explain()["index"], "by_age");
        assert_eq!(count(&mem, &Filter::all()).count, 10);
    }

    #[test]
    fn find_validates_queries_built_in_code() {
        let mem = people();
        let query = FindQuery {
            sort: vec![SortKey::asc("a"), SortKey::asc("a")],
            ..FindQuery::all()
        };
        assert!(matches!(
            find(&mem, &query),
            Err(QueryError::InvalidSort(_))
        ));
    }

    #[test]
    #[should_panic(expected = "which does not exist")]
    fn an_index_out_of_step_is_a_bug() {
        let mut mem = people();
        mem.docs.remove("p1");
        let _ = find(
            &mem,
            &FindQuery::parse(&json!({"filter": {"age": 1}})).unwrap(),
        );
    }
}
