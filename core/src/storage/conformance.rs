//! The storage conformance suite: one set of properties every [`LogStore`] must have.
//!
//! The memory store, the server's file WAL and the browser's IndexedDB store are three
//! implementations of one contract. Rather than three sets of tests that drift apart, each
//! implementation supplies a small [`StoreHarness`] (how to create a store and how to close and
//! reopen it) and runs [`test_all`], in the manner of openraft's storage test suite. Every
//! property is its own `pub async fn`, so a failure names the property, and every property
//! checks its result again after [`StoreHarness::reopen`]: durability is part of the contract.
//!
//! ```text
//!   harness.create() ──► store ──► operations ──► Model::check ──► harness.reopen()
//!                                                                        │
//!                                                   Model::check ◄───────┘
//! ```
//!
//! The futures carry no `Send` bound, so the suite also runs inside a browser on a
//! single-threaded executor. Entries are real: built with [`LogEntry::new`] from real
//! transactions, so stores see realistic sizes and hash chains.

use std::future::Future;

use super::{LogState, LogStore, Metadata, StorageError};
use crate::doc::RawDoc;
use crate::log::LogEntry;
use crate::snapshot::Snapshot;
use crate::txn::{Op, Txn};
use crate::types::{Hash, LogPosition, Lsn, ReplicaId, Term, TimestampMs};

/// How the suite makes and reopens stores of one implementation.
pub trait StoreHarness {
    /// The store under test.
    type Store: LogStore;
    /// A new, empty store.
    fn create(&mut self) -> impl Future<Output = Self::Store>;
    /// Closes `store` and opens the same storage again (memory: give it back as is).
    fn reopen(&mut self, store: Self::Store) -> impl Future<Output = Self::Store>;
}

/// Runs every property of the suite, in order. Panics (with the property's name in the
/// message) on the first failure.
pub async fn test_all<H: StoreHarness>(harness: &mut H) {
    empty_store(harness).await;
    append_single(harness).await;
    append_batch(harness).await;
    append_many(harness).await;
    read_range_edges(harness).await;
    read_range_partially_compacted(harness).await;
    append_not_contiguous(harness).await;
    append_wrong_prev_hash(harness).await;
    truncate_suffix_middle(harness).await;
    truncate_suffix_last(harness).await;
    truncate_suffix_beyond_end(harness).await;
    truncate_suffix_into_compacted(harness).await;
    compact_prefix_middle(harness).await;
    compact_prefix_last(harness).await;
    compact_prefix_idempotent(harness).await;
    compact_prefix_past_last(harness).await;
    snapshot_save_load_replace(harness).await;
    snapshot_large(harness).await;
    snapshot_past_last_resets_log(harness).await;
    snapshot_on_empty_store(harness).await;
    metadata_save_load_replace(harness).await;
    install_snapshot_below_last(harness).await;
    install_snapshot_below_compaction(harness).await;
    install_snapshot_at_last(harness).await;
    install_snapshot_above_last(harness).await;
    install_snapshot_on_empty_store(harness).await;
    install_snapshot_twice(harness).await;
    model_sequence(harness).await;
}

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

/// `count` chained entries after `prev`, each inserting one document tagged with `tag` (so two
/// continuations with different tags have different hashes) in term `term`.
pub fn entries_after(prev: LogPosition, count: usize, term: Term, tag: &str) -> Vec<LogEntry> {
    let mut out = Vec::with_capacity(count);
    let mut position = prev;
    for _ in 0..count {
        let lsn = position.lsn.next();
        let doc = RawDoc::parse(&format!(
            r#"{{"_id":"{tag}-{lsn}","n":{lsn},"tag":"{tag}","pad":"{}"}}"#,
            "x".repeat((lsn.0 % 7) as usize * 9)
        ))
        .expect("a valid document");
        let txn = Txn::single(Op::Insert {
            collection: "things".into(),
            doc,
        });
        let entry = LogEntry::new(position, term, TimestampMs(1_000 + lsn.0 * 10), txn);
        position = entry.position();
        out.push(entry);
    }
    out
}

/// A snapshot at `position` holding `data_bytes` of deterministic, non-repeating bytes.
pub fn snapshot_at(position: LogPosition, data_bytes: usize, seed: u64) -> Snapshot {
    let mut rng = Lcg(seed ^ position.lsn.0);
    let data = (0..data_bytes).map(|_| rng.next() as u8).collect();
    Snapshot::new(position, data)
}

/// A position that no entry in the store has: used as a snapshot received from elsewhere.
fn foreign_position(lsn: u64) -> LogPosition {
    let mut hash = [0xA5; 32];
    hash[..8].copy_from_slice(&lsn.to_le_bytes());
    LogPosition {
        lsn: Lsn(lsn),
        hash: Hash(hash),
    }
}

/// A tiny deterministic generator; the suite must not depend on a clock or an RNG crate.
#[derive(Debug, Clone)]
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        self.next() % bound
    }
}

/// What a store must hold: the reference semantics of [`LogStore`], in plain data.
#[derive(Debug, Clone, Default)]
struct Model {
    compacted: LogPosition,
    entries: Vec<LogEntry>,
    snapshot: Option<Snapshot>,
    metadata: Option<Metadata>,
}

impl Model {
    fn last(&self) -> LogPosition {
        self.entries
            .last()
            .map_or(self.compacted, LogEntry::position)
    }

    fn first(&self) -> Lsn {
        self.compacted.lsn.next()
    }

    fn append(&mut self, entries: &[LogEntry]) {
        self.entries.extend_from_slice(entries);
    }

    fn truncate_suffix(&mut self, from: Lsn) {
        assert!(
            from > self.compacted.lsn,
            "model: truncation into compaction"
        );
        self.entries.retain(|e| e.lsn < from);
    }

    fn compact_prefix(&mut self, through: Lsn) {
        if through <= self.compacted.lsn {
            return;
        }
        let position = self
            .entries
            .iter()
            .find(|e| e.lsn == through)
            .expect("model: compaction through a held entry")
            .position();
        self.entries.retain(|e| e.lsn > through);
        self.compacted = position;
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) {
        if snapshot.position.lsn > self.last().lsn {
            self.entries.clear();
            self.compacted = snapshot.position;
        }
        self.snapshot = Some(snapshot.clone());
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) {
        self.entries.clear();
        self.compacted = snapshot.position;
        self.snapshot = Some(snapshot.clone());
    }

    /// Compares everything observable in `store` with the model.
    async fn check<S: LogStore>(&self, store: &S, context: &str) {
        let state = store.state().await.expect("state()");
        let expected = LogState {
            first: self.first(),
            last: self.last(),
        };
        assert_eq!(state, expected, "{context}: state()");

        let to = self.last().lsn.next();
        let held = store
            .read_range(self.first(), to)
            .await
            .unwrap_or_else(|e| panic!("{context}: read_range of all held entries: {e}"));
        assert!(
            held == self.entries,
            "{context}: read_range({}, {to}) returned lsns {:?}, expected {:?}",
            self.first(),
            held.iter().map(|e| e.lsn.0).collect::<Vec<_>>(),
            self.entries.iter().map(|e| e.lsn.0).collect::<Vec<_>>(),
        );

        // One entry past the end is never held.
        expect_missing(
            store.read_range(to, to.next()).await,
            to,
            to.next(),
            context,
        );
        // Nor is the last compacted one (or LSN 0 in a fresh log).
        let compacted = self.compacted.lsn;
        expect_missing(
            store.read_range(compacted, compacted.next()).await,
            compacted,
            compacted.next(),
            context,
        );

        let snapshot = store.load_snapshot().await.expect("load_snapshot()");
        assert_eq!(snapshot, self.snapshot, "{context}: load_snapshot()");
        let metadata = store.load_metadata().await.expect("load_metadata()");
        assert_eq!(metadata, self.metadata, "{context}: load_metadata()");
    }
}

/// Checks the store against the model, reopens it, and checks again.
async fn check_and_reopen<H: StoreHarness>(
    harness: &mut H,
    store: H::Store,
    model: &Model,
    context: &str,
) -> H::Store {
    model.check(&store, context).await;
    let store = harness.reopen(store).await;
    model
        .check(&store, &format!("{context} (after reopen)"))
        .await;
    store
}

fn expect_missing(result: Result<Vec<LogEntry>, StorageError>, from: Lsn, to: Lsn, context: &str) {
    match result {
        Err(StorageError::Missing(lsn)) if from <= lsn && lsn < to => {}
        other => panic!(
            "{context}: read_range({from}, {to}) should fail with Missing(lsn in range), got {other:?}"
        ),
    }
}

fn expect_invalid<T: std::fmt::Debug>(result: Result<T, StorageError>, context: &str) {
    assert!(
        matches!(result, Err(StorageError::Invalid(_))),
        "{context}: expected Invalid, got {result:?}"
    );
}

async fn append_ok<S: LogStore>(
    store: &mut S,
    model: &mut Model,
    entries: &[LogEntry],
    context: &str,
) {
    store
        .append(entries)
        .await
        .unwrap_or_else(|e| panic!("{context}: append: {e}"));
    model.append(entries);
}

/// A store holding entries 1..=count (term 1, tag "a"), and its model.
/// Reads `[from, to)` and requires exactly the model's entries in that range.
async fn assert_reads<S: LogStore>(store: &S, model: &Model, from: u64, to: u64, context: &str) {
    let expected: Vec<LogEntry> = model
        .entries
        .iter()
        .filter(|e| (from..to).contains(&e.lsn.0))
        .cloned()
        .collect();
    assert_eq!(
        store.read_range(Lsn(from), Lsn(to)).await,
        Ok(expected),
        "{context}: read_range({from}, {to})"
    );
}

async fn store_with<H: StoreHarness>(harness: &mut H, count: usize) -> (H::Store, Model) {
    let mut store = harness.create().await;
    let mut model = Model::default();
    let entries = entries_after(LogPosition::START, count, Term(1), "a");
    append_ok(&mut store, &mut model, &entries, "setup").await;
    (store, model)
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// A new store is empty: first 1, last START, nothing to read, no snapshot, no metadata.
pub async fn empty_store<H: StoreHarness>(harness: &mut H) {
    let context = "empty_store";
    let store = harness.create().await;
    let state = store.state().await.expect("state()");
    assert_eq!(
        state,
        LogState {
            first: Lsn(1),
            last: LogPosition::START
        },
        "{context}"
    );
    assert_eq!(
        store.read_range(Lsn(1), Lsn(1)).await,
        Ok(Vec::new()),
        "{context}"
    );
    expect_missing(
        store.read_range(Lsn(1), Lsn(2)).await,
        Lsn(1),
        Lsn(2),
        context,
    );
    check_and_reopen(harness, store, &Model::default(), context).await;
}

/// One appended entry reads back, and survives reopening.
pub async fn append_single<H: StoreHarness>(harness: &mut H) {
    let (store, model) = store_with(harness, 1).await;
    assert_eq!(
        store.read_range(Lsn(1), Lsn(2)).await,
        Ok(model.entries.clone()),
        "append_single"
    );
    check_and_reopen(harness, store, &model, "append_single").await;
}

/// A batch appended in one call reads back whole and in any sub-range.
pub async fn append_batch<H: StoreHarness>(harness: &mut H) {
    let context = "append_batch";
    let (store, model) = store_with(harness, 12).await;
    for (from, to) in [(1, 13), (1, 2), (5, 9), (12, 13), (3, 4)] {
        assert_reads(&store, &model, from, to, context).await;
    }
    check_and_reopen(harness, store, &model, context).await;
}

/// Many entries, appended in batches of varying size (with reopens between some), read back.
pub async fn append_many<H: StoreHarness>(harness: &mut H) {
    let context = "append_many";
    let mut store = harness.create().await;
    let mut model = Model::default();
    let mut rng = Lcg(7);
    let mut round = 0;
    while model.entries.len() < 300 {
        let count = 1 + rng.below(40) as usize;
        let entries = entries_after(model.last(), count, Term(1), "m");
        append_ok(&mut store, &mut model, &entries, context).await;
        round += 1;
        if round % 4 == 0 {
            store = harness.reopen(store).await;
        }
    }
    for _ in 0..10 {
        let last = model.last().lsn.0;
        let from = 1 + rng.below(last);
        let to = from + rng.below(last + 1 - from) + 1;
        assert_reads(&store, &model, from, to, context).await;
    }
    check_and_reopen(harness, store, &model, context).await;
}

/// Empty and reversed ranges are empty; ranges reaching past the end are `Missing`.
pub async fn read_range_edges<H: StoreHarness>(harness: &mut H) {
    let context = "read_range_edges";
    let (store, model) = store_with(harness, 5).await;
    for (from, to) in [(3, 3), (4, 2), (9, 9), (9, 1), (0, 0)] {
        assert_eq!(
            store.read_range(Lsn(from), Lsn(to)).await,
            Ok(Vec::new()),
            "{context}: read_range({from}, {to}) is empty"
        );
    }
    for (from, to) in [(1, 7), (5, 7), (6, 7), (8, 12), (0, 3)] {
        expect_missing(
            store.read_range(Lsn(from), Lsn(to)).await,
            Lsn(from),
            Lsn(to),
            context,
        );
    }
    check_and_reopen(harness, store, &model, context).await;
}

/// Ranges that reach into the compacted prefix are `Missing`; the held part still reads.
pub async fn read_range_partially_compacted<H: StoreHarness>(harness: &mut H) {
    let context = "read_range_partially_compacted";
    let (mut store, mut model) = store_with(harness, 10).await;
    store.compact_prefix(Lsn(4)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(4));
    for (from, to) in [(1, 11), (3, 6), (4, 5), (1, 2)] {
        expect_missing(
            store.read_range(Lsn(from), Lsn(to)).await,
            Lsn(from),
            Lsn(to),
            context,
        );
    }
    assert_eq!(
        store.read_range(Lsn(5), Lsn(11)).await,
        Ok(model.entries.clone()),
        "{context}: held part"
    );
    let store = check_and_reopen(harness, store, &model, context).await;
    expect_missing(
        store.read_range(Lsn(2), Lsn(8)).await,
        Lsn(2),
        Lsn(8),
        context,
    );
}

/// An entry that skips or repeats an LSN is refused with `NotContiguous`, and a batch with one
/// bad entry changes nothing, not even its good prefix.
pub async fn append_not_contiguous<H: StoreHarness>(harness: &mut H) {
    let context = "append_not_contiguous";

    // Into an empty store, an entry that is not LSN 1.
    let mut store = harness.create().await;
    let second = entries_after(LogPosition::START, 2, Term(1), "a")
        .pop()
        .expect("two entries");
    expect_not_contiguous(
        store.append(std::slice::from_ref(&second)).await,
        LogPosition::START,
        Lsn(2),
        context,
    );
    check_and_reopen(harness, store, &Model::default(), context).await;

    let (mut store, model) = store_with(harness, 5).await;
    let last = model.last();
    let ahead = entries_after(last, 3, Term(1), "a");
    // A gap: 7 after 5.
    expect_not_contiguous(store.append(&ahead[1..]).await, last, Lsn(7), context);
    // A repeat: 5 again.
    expect_not_contiguous(
        store.append(&model.entries[4..]).await,
        last,
        Lsn(5),
        context,
    );
    // A batch whose third entry jumps: nothing of it is kept.
    let mut batch = ahead.clone();
    batch.remove(1);
    expect_not_contiguous(
        store.append(&batch).await,
        ahead[0].position(),
        Lsn(8),
        context,
    );
    check_and_reopen(harness, store, &model, context).await;
}

/// An entry with the right LSN but the wrong `prev_hash` is refused, alone or inside a batch,
/// by `append` and by `append_own` (entries the caller built, which a store may not hash again).
pub async fn append_wrong_prev_hash<H: StoreHarness>(harness: &mut H) {
    let context = "append_wrong_prev_hash";
    let (mut store, mut model) = store_with(harness, 4).await;
    let last = model.last();
    let forked_base = LogPosition {
        lsn: last.lsn,
        hash: Hash([9; 32]),
    };
    let fork = entries_after(forked_base, 2, Term(1), "fork");
    expect_not_contiguous(store.append(&fork).await, last, Lsn(5), context);
    expect_not_contiguous(store.append_own(&fork).await, last, Lsn(5), context);

    let good = entries_after(last, 2, Term(1), "a");
    let bad_second = entries_after(forked_base, 2, Term(1), "fork").pop();
    let batch = vec![good[0].clone(), bad_second.expect("two entries")];
    expect_not_contiguous(
        store.append(&batch).await,
        good[0].position(),
        Lsn(6),
        context,
    );
    let store = check_and_reopen(harness, store, &model, context).await;

    // The store still accepts the right continuation, by either door.
    let mut store = store;
    append_ok(&mut store, &mut model, &good, context).await;
    let own = entries_after(model.last(), 2, Term(1), "own");
    store.append_own(&own).await.expect(context);
    model.entries.extend(own);
    check_and_reopen(harness, store, &model, context).await;
}

fn expect_not_contiguous(
    result: Result<(), StorageError>,
    expected_prev: LogPosition,
    got: Lsn,
    context: &str,
) {
    assert_eq!(
        result,
        Err(StorageError::NotContiguous { expected_prev, got }),
        "{context}"
    );
}

/// Truncating from the middle drops the suffix; a different continuation then appends.
pub async fn truncate_suffix_middle<H: StoreHarness>(harness: &mut H) {
    truncate_then_continue(harness, 10, 6, "truncate_suffix_middle").await;
}

/// Truncating from the last entry drops exactly that entry.
pub async fn truncate_suffix_last<H: StoreHarness>(harness: &mut H) {
    truncate_then_continue(harness, 10, 10, "truncate_suffix_last").await;
}

async fn truncate_then_continue<H: StoreHarness>(
    harness: &mut H,
    count: usize,
    from: u64,
    context: &str,
) {
    let (mut store, mut model) = store_with(harness, count).await;
    store
        .truncate_suffix(Lsn(from))
        .await
        .unwrap_or_else(|e| panic!("{context}: truncate_suffix: {e}"));
    model.truncate_suffix(Lsn(from));
    let mut store = check_and_reopen(harness, store, &model, context).await;

    // A new term's entries take the truncated LSNs, with other hashes.
    let continuation = entries_after(model.last(), 4, Term(2), "b");
    append_ok(&mut store, &mut model, &continuation, context).await;
    assert_ne!(
        model.entries[from as usize - 1].hash,
        entries_after(LogPosition::START, count, Term(1), "a")[from as usize - 1].hash,
        "{context}: the continuation differs from the truncated suffix"
    );
    check_and_reopen(harness, store, &model, context).await;
}

/// Truncating from past the end changes nothing.
pub async fn truncate_suffix_beyond_end<H: StoreHarness>(harness: &mut H) {
    let context = "truncate_suffix_beyond_end";
    let (mut store, model) = store_with(harness, 5).await;
    for from in [6, 7, 100] {
        store
            .truncate_suffix(Lsn(from))
            .await
            .unwrap_or_else(|e| panic!("{context}: truncate_suffix({from}): {e}"));
    }
    check_and_reopen(harness, store, &model, context).await;
}

/// Truncating into compacted history is `Invalid`; truncating right above it empties the log
/// down to the compaction point, which then takes a new continuation.
pub async fn truncate_suffix_into_compacted<H: StoreHarness>(harness: &mut H) {
    let context = "truncate_suffix_into_compacted";
    let (mut store, mut model) = store_with(harness, 10).await;
    store.compact_prefix(Lsn(5)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(5));
    for from in [5, 3, 1, 0] {
        expect_invalid(
            store.truncate_suffix(Lsn(from)).await,
            &format!("{context}: truncate_suffix({from})"),
        );
    }
    let mut store = check_and_reopen(harness, store, &model, context).await;

    store
        .truncate_suffix(Lsn(6))
        .await
        .expect("truncate_suffix(6)");
    model.truncate_suffix(Lsn(6));
    let mut store = check_and_reopen(harness, store, &model, context).await;

    let continuation = entries_after(model.last(), 3, Term(2), "b");
    append_ok(&mut store, &mut model, &continuation, context).await;
    check_and_reopen(harness, store, &model, context).await;
}

/// Compacting through a middle entry moves `first` and keeps the rest readable.
pub async fn compact_prefix_middle<H: StoreHarness>(harness: &mut H) {
    let context = "compact_prefix_middle";
    let (mut store, mut model) = store_with(harness, 10).await;
    store.compact_prefix(Lsn(4)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(4));
    assert_eq!(
        store.state().await.expect("state").first,
        Lsn(5),
        "{context}"
    );
    let mut store = check_and_reopen(harness, store, &model, context).await;

    let more = entries_after(model.last(), 3, Term(1), "a");
    append_ok(&mut store, &mut model, &more, context).await;
    store.compact_prefix(Lsn(11)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(11));
    check_and_reopen(harness, store, &model, context).await;
}

/// Compacting through the last entry empties the log: `first` moves past it, `last` stays, and
/// the next entry still has to continue the chain.
pub async fn compact_prefix_last<H: StoreHarness>(harness: &mut H) {
    let context = "compact_prefix_last";
    let (mut store, mut model) = store_with(harness, 10).await;
    let last = model.last();
    store.compact_prefix(Lsn(10)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(10));
    assert_eq!(
        store.state().await.expect("state"),
        LogState {
            first: Lsn(11),
            last
        },
        "{context}"
    );
    let mut store = check_and_reopen(harness, store, &model, context).await;

    let wrong = entries_after(LogPosition::START, 11, Term(1), "other");
    expect_not_contiguous(store.append(&wrong[10..]).await, last, Lsn(11), context);
    let next = entries_after(last, 2, Term(1), "a");
    append_ok(&mut store, &mut model, &next, context).await;
    check_and_reopen(harness, store, &model, context).await;
}

/// Compacting again through the same point, or an earlier one, changes nothing.
pub async fn compact_prefix_idempotent<H: StoreHarness>(harness: &mut H) {
    let context = "compact_prefix_idempotent";
    let (mut store, mut model) = store_with(harness, 8).await;
    store
        .compact_prefix(Lsn(0))
        .await
        .expect("compact_prefix(0)");
    store
        .compact_prefix(Lsn(5))
        .await
        .expect("compact_prefix(5)");
    model.compact_prefix(Lsn(5));
    let mut store = check_and_reopen(harness, store, &model, context).await;
    for through in [5, 3, 0] {
        store
            .compact_prefix(Lsn(through))
            .await
            .unwrap_or_else(|e| panic!("{context}: compact_prefix({through}) again: {e}"));
    }
    check_and_reopen(harness, store, &model, context).await;
}

/// Compacting past the last entry is `Invalid` and changes nothing.
pub async fn compact_prefix_past_last<H: StoreHarness>(harness: &mut H) {
    let context = "compact_prefix_past_last";
    let mut store = harness.create().await;
    expect_invalid(store.compact_prefix(Lsn(1)).await, context);
    check_and_reopen(harness, store, &Model::default(), context).await;

    let (mut store, model) = store_with(harness, 6).await;
    for through in [7, 8, 1_000] {
        expect_invalid(
            store.compact_prefix(Lsn(through)).await,
            &format!("{context}: compact_prefix({through})"),
        );
    }
    check_and_reopen(harness, store, &model, context).await;
}

/// A snapshot inside the log leaves the log alone; a later one replaces it.
pub async fn snapshot_save_load_replace<H: StoreHarness>(harness: &mut H) {
    let context = "snapshot_save_load_replace";
    let (mut store, mut model) = store_with(harness, 10).await;
    assert_eq!(store.load_snapshot().await, Ok(None), "{context}");

    let first = snapshot_at(model.entries[4].position(), 1_000, 1);
    store.save_snapshot(&first).await.expect("save_snapshot");
    model.save_snapshot(&first);
    let mut store = check_and_reopen(harness, store, &model, context).await;

    let second = snapshot_at(model.entries[7].position(), 3_000, 2);
    store.save_snapshot(&second).await.expect("save_snapshot");
    model.save_snapshot(&second);
    let mut store = check_and_reopen(harness, store, &model, context).await;

    // Replacing with a snapshot at the same position but other data keeps the newer one.
    let again = snapshot_at(model.entries[7].position(), 10, 3);
    store.save_snapshot(&again).await.expect("save_snapshot");
    model.save_snapshot(&again);
    let loaded = store.load_snapshot().await.expect("load").expect("some");
    assert!(loaded.verify(), "{context}: loaded snapshot verifies");
    check_and_reopen(harness, store, &model, context).await;
}

/// A snapshot of several MiB (more than one chunk in chunked stores) round-trips exactly.
pub async fn snapshot_large<H: StoreHarness>(harness: &mut H) {
    let context = "snapshot_large";
    let (mut store, mut model) = store_with(harness, 3).await;
    let snapshot = snapshot_at(model.entries[2].position(), (5 << 20) / 2 + 17, 4);
    store.save_snapshot(&snapshot).await.expect("save_snapshot");
    model.save_snapshot(&snapshot);
    check_and_reopen(harness, store, &model, context).await;
}

/// A snapshot past the last entry (as a lagging replica receives one) resets the log to start
/// right after it, and the next entry must follow the snapshot's position.
pub async fn snapshot_past_last_resets_log<H: StoreHarness>(harness: &mut H) {
    let context = "snapshot_past_last_resets_log";
    let (mut store, mut model) = store_with(harness, 5).await;
    store.compact_prefix(Lsn(2)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(2));
    let old_last = model.last();

    let snapshot = snapshot_at(foreign_position(20), 500, 5);
    store.save_snapshot(&snapshot).await.expect("save_snapshot");
    model.save_snapshot(&snapshot);
    assert_eq!(
        store.state().await.expect("state"),
        LogState {
            first: Lsn(21),
            last: snapshot.position
        },
        "{context}"
    );
    let mut store = check_and_reopen(harness, store, &model, context).await;
    expect_missing(
        store.read_range(Lsn(1), Lsn(6)).await,
        Lsn(1),
        Lsn(6),
        context,
    );

    // The old log's continuation no longer fits: the log now starts after the snapshot.
    let stale = entries_after(old_last, 1, Term(1), "a");
    expect_not_contiguous(
        store.append(&stale).await,
        snapshot.position,
        stale[0].lsn,
        context,
    );
    let next = entries_after(snapshot.position, 3, Term(3), "s");
    append_ok(&mut store, &mut model, &next, context).await;
    let mut store = check_and_reopen(harness, store, &model, context).await;

    store.compact_prefix(Lsn(22)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(22));
    check_and_reopen(harness, store, &model, context).await;
}

/// A snapshot saved into an empty store resets it to start after the snapshot.
pub async fn snapshot_on_empty_store<H: StoreHarness>(harness: &mut H) {
    let context = "snapshot_on_empty_store";
    let mut store = harness.create().await;
    let mut model = Model::default();
    let snapshot = snapshot_at(foreign_position(7), 64, 6);
    store.save_snapshot(&snapshot).await.expect("save_snapshot");
    model.save_snapshot(&snapshot);
    let mut store = check_and_reopen(harness, store, &model, context).await;
    let next = entries_after(snapshot.position, 2, Term(1), "e");
    append_ok(&mut store, &mut model, &next, context).await;
    check_and_reopen(harness, store, &model, context).await;
}

/// Installs `snapshot` into `store` and checks the contract's exact state at once, then
/// against the model, then after a reopen; then appends a continuation from the snapshot's
/// position (a stale one from the old log must be refused) and checks again after a reopen.
async fn install_then_continue<H: StoreHarness>(
    harness: &mut H,
    mut store: H::Store,
    model: &mut Model,
    snapshot: &Snapshot,
    context: &str,
) -> H::Store {
    let old_last = model.last();
    store
        .install_snapshot(snapshot)
        .await
        .unwrap_or_else(|e| panic!("{context}: install_snapshot: {e}"));
    model.install_snapshot(snapshot);
    assert_eq!(
        store.state().await.expect("state"),
        LogState {
            first: snapshot.position.lsn.next(),
            last: snapshot.position
        },
        "{context}: state() right after install_snapshot"
    );
    let mut store = check_and_reopen(harness, store, model, context).await;

    if old_last != snapshot.position {
        let stale = entries_after(old_last, 1, Term(1), "stale");
        expect_not_contiguous(
            store.append(&stale).await,
            snapshot.position,
            stale[0].lsn,
            context,
        );
    }
    let next = entries_after(snapshot.position, 3, Term(9), "i");
    append_ok(&mut store, model, &next, context).await;
    check_and_reopen(harness, store, model, &format!("{context} (continued)")).await
}

/// A store with entries 1..=10, compacted through 2, an old snapshot at 4 and metadata: the
/// full set of things an install must replace (or, for metadata, keep).
async fn full_store<H: StoreHarness>(harness: &mut H) -> (H::Store, Model) {
    let (mut store, mut model) = store_with(harness, 10).await;
    store.compact_prefix(Lsn(2)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(2));
    let old = snapshot_at(model.entries[1].position(), 300, 10);
    store.save_snapshot(&old).await.expect("save_snapshot");
    model.save_snapshot(&old);
    let metadata = Metadata {
        term: Term(2),
        node_id: ReplicaId(0xbeef),
    };
    store.save_metadata(&metadata).await.expect("save_metadata");
    model.metadata = Some(metadata);
    (store, model)
}

/// A diverged replica: a snapshot from another history at an LSN below the last entry resets
/// the log there, dropping entries above it; metadata stays.
pub async fn install_snapshot_below_last<H: StoreHarness>(harness: &mut H) {
    let context = "install_snapshot_below_last";
    let (store, mut model) = full_store(harness).await;
    let snapshot = snapshot_at(foreign_position(6), 700, 11);
    install_then_continue(harness, store, &mut model, &snapshot, context).await;
}

/// A snapshot at or below the compaction point moves the compaction point back to it.
pub async fn install_snapshot_below_compaction<H: StoreHarness>(harness: &mut H) {
    let context = "install_snapshot_below_compaction";
    let (mut store, mut model) = full_store(harness).await;
    store.compact_prefix(Lsn(6)).await.expect("compact_prefix");
    model.compact_prefix(Lsn(6));
    let snapshot = snapshot_at(foreign_position(3), 90, 12);
    install_then_continue(harness, store, &mut model, &snapshot, context).await;
}

/// A snapshot of exactly the last entry still drops it: nothing is held afterwards.
pub async fn install_snapshot_at_last<H: StoreHarness>(harness: &mut H) {
    let context = "install_snapshot_at_last";
    let (store, mut model) = full_store(harness).await;
    let snapshot = snapshot_at(model.last(), 400, 13);
    install_then_continue(harness, store, &mut model, &snapshot, context).await;
}

/// A snapshot past the last entry (a lagging replica).
pub async fn install_snapshot_above_last<H: StoreHarness>(harness: &mut H) {
    let context = "install_snapshot_above_last";
    let (store, mut model) = full_store(harness).await;
    let snapshot = snapshot_at(foreign_position(40), 2_000, 14);
    install_then_continue(harness, store, &mut model, &snapshot, context).await;
}

/// A new store takes an install like any other.
pub async fn install_snapshot_on_empty_store<H: StoreHarness>(harness: &mut H) {
    let context = "install_snapshot_on_empty_store";
    let store = harness.create().await;
    let mut model = Model::default();
    let snapshot = snapshot_at(foreign_position(5), 64, 15);
    install_then_continue(harness, store, &mut model, &snapshot, context).await;
}

/// Installing again resets each time: the same snapshot after appends past it, then one at a
/// held entry, then one from another history below that.
pub async fn install_snapshot_twice<H: StoreHarness>(harness: &mut H) {
    let context = "install_snapshot_twice";
    let (store, mut model) = full_store(harness).await;
    let first = snapshot_at(foreign_position(8), 500, 16);
    let store = install_then_continue(harness, store, &mut model, &first, context).await;
    let store = install_then_continue(harness, store, &mut model, &first, context).await;
    let earlier = snapshot_at(model.entries[0].position(), 50, 17);
    let store = install_then_continue(harness, store, &mut model, &earlier, context).await;
    let lower = snapshot_at(foreign_position(4), 30, 18);
    install_then_continue(harness, store, &mut model, &lower, context).await;
}

/// Metadata starts absent, saves, replaces, and survives reopening.
pub async fn metadata_save_load_replace<H: StoreHarness>(harness: &mut H) {
    let context = "metadata_save_load_replace";
    let mut store = harness.create().await;
    let mut model = Model::default();
    let first = Metadata {
        term: Term(3),
        node_id: ReplicaId(0xfeed),
    };
    store.save_metadata(&first).await.expect("save_metadata");
    model.metadata = Some(first);
    let mut store = check_and_reopen(harness, store, &model, context).await;

    let second = Metadata {
        term: Term(4),
        node_id: ReplicaId(0xfeed),
    };
    store.save_metadata(&second).await.expect("save_metadata");
    model.metadata = Some(second);
    let mut store = check_and_reopen(harness, store, &model, context).await;

    // Metadata is independent of the log.
    let entries = entries_after(LogPosition::START, 3, Term(4), "m");
    append_ok(&mut store, &mut model, &entries, context).await;
    check_and_reopen(harness, store, &model, context).await;
}

/// A deterministic pseudo-random sequence of every operation, checked against the model
/// after each step, with reopens in between.
pub async fn model_sequence<H: StoreHarness>(harness: &mut H) {
    let mut store = harness.create().await;
    let mut model = Model::default();
    let mut rng = Lcg(0x5eed);
    let mut term = 1;
    for step in 0..80 {
        let context = format!("model_sequence step {step}");
        match rng.below(10) {
            0..=3 => {
                let count = 1 + rng.below(12) as usize;
                let entries = entries_after(model.last(), count, Term(term), &format!("q{step}"));
                append_ok(&mut store, &mut model, &entries, &context).await;
            }
            4 => {
                let last = model.last().lsn.0;
                let from = model.first().0 + rng.below(last + 3 - model.first().0);
                store
                    .truncate_suffix(Lsn(from))
                    .await
                    .unwrap_or_else(|e| panic!("{context}: truncate_suffix({from}): {e}"));
                model.truncate_suffix(Lsn(from));
                term += 1;
            }
            5 => {
                let last = model.last().lsn.0;
                let through = rng.below(last + 1);
                store
                    .compact_prefix(Lsn(through))
                    .await
                    .unwrap_or_else(|e| panic!("{context}: compact_prefix({through}): {e}"));
                model.compact_prefix(Lsn(through));
            }
            6 if rng.below(4) == 0 => {
                let lsn = rng.below(model.last().lsn.0 + 4);
                let snapshot = snapshot_at(foreign_position(lsn), rng.below(500) as usize, step);
                store
                    .install_snapshot(&snapshot)
                    .await
                    .unwrap_or_else(|e| panic!("{context}: install_snapshot({lsn}): {e}"));
                model.install_snapshot(&snapshot);
            }
            6 => {
                let ahead = rng.below(3) == 0;
                let position = if ahead {
                    foreign_position(model.last().lsn.0 + 1 + rng.below(5))
                } else if let Some(entry) = model.entries.last() {
                    entry.position()
                } else {
                    model.compacted
                };
                let snapshot = snapshot_at(position, rng.below(2_000) as usize, step);
                store
                    .save_snapshot(&snapshot)
                    .await
                    .unwrap_or_else(|e| panic!("{context}: save_snapshot: {e}"));
                model.save_snapshot(&snapshot);
            }
            7 => {
                let metadata = Metadata {
                    term: Term(term),
                    node_id: ReplicaId(rng.next()),
                };
                store
                    .save_metadata(&metadata)
                    .await
                    .unwrap_or_else(|e| panic!("{context}: save_metadata: {e}"));
                model.metadata = Some(metadata);
            }
            _ => {
                store = harness.reopen(store).await;
            }
        }
        model.check(&store, &context).await;
    }
    check_and_reopen(harness, store, &model, "model_sequence end").await;
}
