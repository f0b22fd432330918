//! The executor: runs a plan against a [`DocSource`], re-checks the filter, sorts, skips and
//! limits.
//!
//! ```text
//! plan.access ──► candidates ──► parse + filter.matches ──┬─ order already right:
//!  (scan / ids /    (superset      (every candidate,      │    skip, take `limit`, stop early
//!   index ranges)    of matches)    unless the plan is    └─ otherwise: keep the best
//!                                   exact)                     `skip + limit` by sort key
//!                                                              (bounded heap), then sort them
//! ```
//!
//! The re-check is what makes planning safe: an index range only has to contain every match,
//! so a planner bug can cost time but cannot return a wrong document. A plan marked exact
//! (every candidate provably matches, see [`Plan::exact`]) skips it in release builds, which
//! spares parsing the document at all, and still runs it as an assertion in debug builds, so
//! every test checks the planner's claim. Sorting compares byte strings (see [`sort_key`]),
//! ties going by `_id`, so the result is the same whichever plan ran.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::candidates::Candidates;
use super::error::QueryError;
use super::filter::Filter;
use super::find_query::{FindQuery, sort_key};
use super::plan::Plan;
use super::planner::plan;
use super::source::DocSource;
use crate::doc::{DocRef, DocView};

/// What a find returned, and how.
#[derive(Debug)]
pub struct FindResult<'a> {
    /// The matching documents, sorted, after `skip`, at most `limit`.
    pub docs: Vec<DocRef<'a>>,
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
        let candidates = Candidates::new(source, &plan).inspect(|_| examined += 1);
        if plan.in_memory_sort {
            sorted_matches(candidates, query, plan.exact)
        } else {
            ordered_matches(candidates, query, plan.exact)
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
    let count = Candidates::new(source, &plan)
        .inspect(|_| examined += 1)
        .filter(|doc| passes(filter, plan.exact, *doc))
        .count();
    CountResult {
        count,
        plan,
        examined,
    }
}

/// True when `doc` passes the filter. Neither the match-all filter nor an exact plan (whose
/// candidates all match) parses the document, except to assert it in debug builds.
fn passes(filter: &Filter, exact: bool, doc: DocRef<'_>) -> bool {
    if exact {
        debug_assert!(
            filter.matches(&DocView::new(doc.doc)),
            "an exact plan yielded {}, which its filter refuses",
            doc.doc.as_str()
        );
        return true;
    }
    filter.is_all() || filter.matches(&DocView::new(doc.doc))
}

/// The access order is the result order: skip, then take until the limit, then stop reading.
fn ordered_matches<'a>(
    candidates: impl Iterator<Item = DocRef<'a>>,
    query: &FindQuery,
    exact: bool,
) -> Vec<DocRef<'a>> {
    let mut docs = Vec::with_capacity(query.limit.unwrap_or(16).min(256));
    let mut skipped = 0;
    for doc in candidates {
        if !passes(&query.filter, exact, doc) {
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
    doc: DocRef<'a>,
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
    candidates: impl Iterator<Item = DocRef<'a>>,
    query: &FindQuery,
    exact: bool,
) -> Vec<DocRef<'a>> {
    let keep = query.limit.map(|limit| query.skip + limit);
    let mut heap: BinaryHeap<Keyed<'a>> = BinaryHeap::with_capacity(keep.unwrap_or(64).min(1024));
    for doc in candidates {
        let value = DocView::new(doc.doc);
        if exact {
            debug_assert!(
                query.filter.matches(&value),
                "an exact plan yielded {}, which its filter refuses",
                doc.doc.as_str()
            );
        } else if !query.filter.matches(&value) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::doc::{RawDoc, StoredDoc};
    use crate::index::{IndexField, IndexSpec, SecondaryIndex};
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
        fn get(&self, id: &str) -> Option<DocRef<'_>> {
            self.docs.get(id).map(StoredDoc::to_ref)
        }
        fn scan(&self) -> Box<dyn Iterator<Item = DocRef<'_>> + '_> {
            Box::new(self.docs.values().map(StoredDoc::to_ref))
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
    fn point_ranges_stop_at_their_far_end_in_both_directions() {
        let mem = people();
        for (dir, expected) in [
            (1, ["p1", "p5", "p9", "p2", "p6"]),
            (-1, ["p2", "p6", "p1", "p5", "p9"]),
        ] {
            let (ids, plan, examined) = run(
                &mem,
                json!({"filter": {"age": {"$in": [2, 1]}}, "sort": {"age": dir}}),
            );
            assert_eq!(plan["reverse"], dir == -1);
            assert_eq!(ids, expected);
            assert_eq!(examined, 5, "no entry of age 0 or 3 is read");
        }
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
