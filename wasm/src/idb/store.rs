//! [`IdbStore`]: core's [`LogStore`] over IndexedDB, the browser replica's durable log.
//!
//! One database per replica name, with out-of-line keys:
//!
//! ```text
//!   log          [first, last]   → segment: the framed LogEntry records first..=last
//!   snapshot     0               → framed header (position, state hash, size, chunk count)
//!                1..=n           → framed chunk of ≤ 1 MiB of snapshot data
//!   meta         "log"           → the compaction point (lsn, hash)
//!                "metadata"      → core's Metadata (term, node id)
//!   pending      seq (number)    → a client write waiting for the leader (PendingStore)
//!   client_meta  name (string)   → small values of the replica driver (PendingStore)
//! ```
//!
//! An append writes its entries as segments of about 256 KiB, keyed by the LSN span they
//! hold, because IndexedDB's cost is per value far more than per byte: one value per entry
//! measured ten times slower. The store keeps the list of spans in memory (16 bytes per
//! segment), so a read fetches exactly the segments it needs with one `getAll`, a truncation
//! rewrites at most one segment, and a compaction deletes the segments wholly behind it (a
//! segment that straddles the compaction point stays; its older entries are never returned).
//!
//! Every mutation is one read-write transaction with `durability: "strict"`, and its future
//! resolves on the transaction's `complete` event: IndexedDB's durability point. A
//! transaction is atomic, so unlike a file there is no torn tail to cut off: every value that
//! fails its checks is damage, reported as `storage_corrupt` (see `records.rs`). An install or
//! a snapshot past the log's end clears the log, replaces the snapshot and moves the
//! compaction point in one transaction, so a crash leaves the old store or the new one.
//!
//! The store is the only writer of its database (the multi-tab driver ensures one owner).
//! `open` reads the compaction point and every segment key, checks that the spans are
//! contiguous and cover the log from the compaction point on, and decodes the first and last
//! segments; every other segment is checked when it is read (`read_range`), which a replica
//! does at startup anyway.

use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::{
    LogState, LogStore, Metadata, StorageError, StorageResult, check_contiguous, check_truncate,
    readable_range,
};
use cstore_core::types::{LogPosition, Lsn};

use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbCursorDirection, IdbCursorWithValue, IdbDatabase, IdbTransactionMode};

use super::database::{Connection, LOG, META, SNAPSHOT, open_connection, put, value_bytes};
use super::glue::{self, call, key, object_store, request, transaction, transaction_done};
use super::records::{
    Span, decode_named, decode_segment, decode_snapshot, encode_named, encode_segments,
    encode_snapshot,
};
use super::{IdbError, PendingStore};

/// `meta` key of the compaction point.
const META_LOG: &str = "log";
/// `meta` key of core's [`Metadata`].
const META_METADATA: &str = "metadata";

/// The browser replica's log, snapshot and metadata in one IndexedDB database.
#[derive(Debug)]
pub struct IdbStore {
    connection: Connection,
    /// The position of the last compacted entry (`START` if none).
    compacted: LogPosition,
    /// The last entry held, or `compacted` when none is.
    last: LogPosition,
    /// The keys of the `log` store, ascending and contiguous; empty when no entry is held.
    /// The first may start at or below the compaction point.
    segments: Vec<Span>,
}

/// The `log` key of a segment: `[first, last]`.
fn span_key(span: Span) -> JsValue {
    Array::of2(&key(span.first), &key(span.last)).into()
}

/// Keys from `span`'s on, or up to (and excluding) it.
fn keys_from_span(span: Span) -> Result<JsValue, IdbError> {
    call(
        web_sys::IdbKeyRange::lower_bound(&span_key(span)),
        "building a key range",
    )
    .map(Into::into)
}

fn keys_before_span(span: Span) -> Result<JsValue, IdbError> {
    call(
        web_sys::IdbKeyRange::upper_bound_with_open(&span_key(span), true),
        "building a key range",
    )
    .map(Into::into)
}

/// Reads a `log` key back as a span; anything else is corrupt.
fn parse_span(key: &JsValue) -> Result<Span, IdbError> {
    let number = |v: JsValue| {
        v.as_f64()
            .filter(|k| k.fract() == 0.0 && *k >= 1.0 && *k <= (1u64 << 53) as f64)
            .map(|k| k as u64)
    };
    let span = key
        .dyn_ref::<Array>()
        .filter(|a| a.length() == 2)
        .and_then(|a| {
            Some(Span {
                first: number(a.get(0))?,
                last: number(a.get(1))?,
            })
        });
    span.filter(|s| s.first <= s.last)
        .ok_or_else(|| IdbError::Corrupt(format!("a log segment has the key {key:?}")))
}

impl IdbStore {
    /// Opens the store of replica `name`, creating its database if needed, and reads back the
    /// log's bounds. Fails with `idb_unavailable`, `idb_blocked`, `idb_version_too_new` or
    /// `storage_corrupt` (the first or last log record, the compaction point or the record
    /// count fails its checks).
    pub async fn open(name: &str) -> Result<IdbStore, IdbError> {
        let connection = open_connection(name).await?;
        let (compacted, last, segments) = read_bounds(connection.db()).await?;
        Ok(IdbStore {
            connection,
            compacted,
            last,
            segments,
        })
    }

    /// Deletes the database of replica `name`, with its log, snapshot, pending writes and
    /// metadata: what a driver does before re-bootstrapping from a corrupt store. Close every
    /// store of that name first; another tab's open connection closes itself on the request,
    /// and one that does not makes this fail with `idb_blocked`.
    pub async fn destroy(name: &str) -> Result<(), IdbError> {
        glue::delete_database(name).await
    }

    /// The replica name (the database name).
    pub fn name(&self) -> &str {
        self.connection.name()
    }

    /// The pending-write queue in this store's database, on the same connection.
    pub fn pending(&self) -> PendingStore {
        PendingStore::from_connection(self.connection.clone())
    }

    /// Closes the store. The connection closes once the pending stores made by
    /// [`IdbStore::pending`], which share it, are dropped too. Dropping the store does the same.
    pub fn close(self) {}

    fn readonly(&self, stores: &[&str]) -> Result<web_sys::IdbTransaction, IdbError> {
        transaction(self.connection.db(), stores, IdbTransactionMode::Readonly)
    }

    fn readwrite(&self, stores: &[&str]) -> Result<web_sys::IdbTransaction, IdbError> {
        transaction(self.connection.db(), stores, IdbTransactionMode::Readwrite)
    }

    /// The index of the segment holding `lsn`, which must be held.
    fn segment_of(&self, lsn: u64) -> usize {
        let index = self.segments.partition_point(|s| s.last < lsn);
        assert!(
            self.segments.get(index).is_some_and(|s| s.contains(lsn)),
            "entry {lsn} is held, so a segment holds it"
        );
        index
    }

    /// Reads and decodes segments `range` (indexes into `self.segments`) in one request.
    async fn read_segments(
        &self,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<Vec<LogEntry>, IdbError> {
        let spans = &self.segments[range];
        let (first, last) = (spans[0], spans[spans.len() - 1]);
        let tx = self.readonly(&[LOG])?;
        let keys = call(
            web_sys::IdbKeyRange::bound(&span_key(first), &span_key(last)),
            "building a key range",
        )?;
        let req = call(
            object_store(&tx, LOG)?.get_all_with_key(&keys),
            "reading log segments",
        )?;
        let values: Array = request(&req, "reading log segments")
            .await?
            .unchecked_into();
        if values.length() as usize != spans.len() {
            return Err(IdbError::Corrupt(format!(
                "log segments {}..={}: {} held, {} expected",
                first.first,
                last.last,
                values.length(),
                spans.len()
            )));
        }
        let mut entries = Vec::new();
        for (span, value) in spans.iter().zip(values.iter()) {
            let what = format!("log segment {}..={}", span.first, span.last);
            entries.extend(decode_segment(*span, &value_bytes(&value, &what)?)?);
        }
        Ok(entries)
    }

    /// Reads and checks entries `from..=to`, all of which are held: each segment's own checks,
    /// the chain across segments, and the link to the compaction point.
    async fn read_held(&self, from: u64, to: u64) -> Result<Vec<LogEntry>, IdbError> {
        let range = self.segment_of(from)..=self.segment_of(to);
        let mut entries = self.read_segments(range).await?;
        for pair in entries.windows(2) {
            if !pair[1].follows(pair[0].position()) {
                return Err(IdbError::Corrupt(format!(
                    "log entry {} does not continue the chain after entry {}",
                    pair[1].lsn, pair[0].lsn
                )));
            }
        }
        entries.retain(|e| (from..=to).contains(&e.lsn.0));
        assert_eq!(
            entries.len() as u64,
            to - from + 1,
            "segments checked above"
        );
        if from == self.compacted.lsn.0 + 1 && !entries[0].follows(self.compacted) {
            return Err(IdbError::Corrupt(format!(
                "log entry {from} does not follow the compaction point {}",
                self.compacted
            )));
        }
        Ok(entries)
    }

    /// The position of held entry `lsn` (read and checked, unless it is the last), or of the
    /// compaction point.
    async fn position_of(&self, lsn: Lsn) -> Result<LogPosition, IdbError> {
        if lsn == self.last.lsn {
            return Ok(self.last);
        }
        if lsn == self.compacted.lsn {
            return Ok(self.compacted);
        }
        let entry = self.read_held(lsn.0, lsn.0).await?;
        Ok(entry[0].position())
    }

    /// One transaction: replace the snapshot with `snapshot`, and when `reset_log`, clear the
    /// log and move the compaction point to the snapshot.
    async fn write_snapshot(&mut self, snapshot: &Snapshot, reset_log: bool) -> StorageResult<()> {
        if !snapshot.verify() {
            return Err(StorageError::Invalid(format!(
                "snapshot at {} does not match its state hash",
                snapshot.position
            )));
        }
        let records = encode_snapshot(snapshot);
        let tx = self.readwrite(&[LOG, SNAPSHOT, META])?;
        let store = object_store(&tx, SNAPSHOT)?;
        call(store.clear(), "clearing the snapshot")?;
        for (index, record) in records.iter().enumerate() {
            put(&store, &key(index as u64), record)?;
        }
        if reset_log {
            call(object_store(&tx, LOG)?.clear(), "clearing the log")?;
            put(
                &object_store(&tx, META)?,
                &META_LOG.into(),
                &encode_named(META_LOG, &snapshot.position),
            )?;
        }
        transaction_done(&tx, "writing a snapshot").await?;
        if reset_log {
            self.compacted = snapshot.position;
            self.last = snapshot.position;
            self.segments.clear();
        }
        Ok(())
    }
}

/// Reads the compaction point and every segment key, checks that the spans are contiguous
/// and cover the log from the compaction point on, and decodes the first and last segments.
async fn read_bounds(db: &IdbDatabase) -> Result<(LogPosition, LogPosition, Vec<Span>), IdbError> {
    let tx = transaction(db, &[LOG, META], IdbTransactionMode::Readonly)?;
    let log = object_store(&tx, LOG)?;
    let meta_req = call(
        object_store(&tx, META)?.get(&META_LOG.into()),
        "reading meta",
    )?;
    let keys_req = call(log.get_all_keys(), "reading log keys")?;
    let first_req = call(log.open_cursor(), "opening a cursor")?;
    let last_req = call(
        log.open_cursor_with_range_and_direction(&JsValue::NULL, IdbCursorDirection::Prev),
        "opening a cursor",
    )?;
    // Every wait is registered before the first one is awaited.
    let meta = request(&meta_req, "reading the compaction point");
    let keys = request(&keys_req, "reading log keys");
    let first = request(&first_req, "reading the first segment");
    let last = request(&last_req, "reading the last segment");

    let meta = meta.await?;
    let compacted = if meta.is_undefined() {
        LogPosition::START
    } else {
        decode_named(META, META_LOG, &value_bytes(&meta, "meta record \"log\"")?)?
    };
    let keys: Array = keys.await?.unchecked_into();
    let segments = keys
        .iter()
        .map(|k| parse_span(&k))
        .collect::<Result<Vec<Span>, IdbError>>()?;
    let first = cursor_segment(first.await?)?;
    let last = cursor_segment(last.await?)?;
    let (Some(first), Some(last)) = (first, last) else {
        if !segments.is_empty() {
            return Err(IdbError::Corrupt(
                "the log's keys and cursors disagree".into(),
            ));
        }
        return Ok((compacted, compacted, segments));
    };
    for pair in segments.windows(2) {
        if pair[1].first != pair[0].last + 1 {
            return Err(IdbError::Corrupt(format!(
                "log segments {}..={} and {}..={} are not contiguous",
                pair[0].first, pair[0].last, pair[1].first, pair[1].last
            )));
        }
    }
    let next = compacted.lsn.0 + 1;
    if !segments[0].contains(next) {
        return Err(IdbError::Corrupt(format!(
            "the first log segment {}..={} does not hold entry {next}, the first after the \
             compaction point",
            segments[0].first, segments[0].last
        )));
    }
    let after_compaction = first.iter().find(|e| e.lsn.0 == next);
    if !after_compaction.is_some_and(|e| e.follows(compacted)) {
        return Err(IdbError::Corrupt(format!(
            "log entry {next} does not follow the compaction point {compacted}"
        )));
    }
    let last = last.last().expect("a segment holds an entry").position();
    Ok((compacted, last, segments))
}

/// Decodes the segment under a cursor (`None` when the store is empty).
fn cursor_segment(cursor: JsValue) -> Result<Option<Vec<LogEntry>>, IdbError> {
    if cursor.is_null() || cursor.is_undefined() {
        return Ok(None);
    }
    let cursor: IdbCursorWithValue = cursor
        .dyn_into()
        .map_err(|_| IdbError::Failed("a cursor request gave no cursor".into()))?;
    let span = parse_span(&call(cursor.key(), "reading a cursor key")?)?;
    let value = call(cursor.value(), "reading a cursor value")?;
    let what = format!("log segment {}..={}", span.first, span.last);
    decode_segment(span, &value_bytes(&value, &what)?).map(Some)
}

impl LogStore for IdbStore {
    async fn append(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        check_contiguous(self.last, entries)?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        // An entry that fails its hash would make the next load refuse the log.
        if let Some(bad) = entries.iter().find(|e| !e.verify_hash()) {
            return Err(StorageError::Invalid(format!(
                "entry {} does not match its hash",
                bad.lsn
            )));
        }
        let segments = encode_segments(entries);
        let tx = self.readwrite(&[LOG])?;
        let log = object_store(&tx, LOG)?;
        for (span, bytes) in &segments {
            put(&log, &span_key(*span), bytes)?;
        }
        transaction_done(&tx, "appending log entries").await?;
        self.last = last.position();
        self.segments
            .extend(segments.into_iter().map(|(span, _)| span));
        Ok(())
    }

    async fn read_range(&self, from: Lsn, to: Lsn) -> StorageResult<Vec<LogEntry>> {
        match readable_range(from, to, self.compacted.lsn, self.last.lsn)? {
            None => Ok(Vec::new()),
            Some((first, last)) => Ok(self.read_held(first.0, last.0).await?),
        }
    }

    async fn state(&self) -> StorageResult<LogState> {
        Ok(LogState {
            first: self.compacted.lsn.next(),
            last: self.last,
        })
    }

    async fn truncate_suffix(&mut self, from: Lsn) -> StorageResult<()> {
        if !check_truncate(from, self.compacted.lsn, self.last.lsn)? {
            return Ok(());
        }
        let new_last = self.position_of(from.prev()).await?;
        // From the first held entry on, everything goes (a straddling segment's older
        // entries are compacted anyway). Otherwise the segment holding `from` keeps the
        // entries before it, rewritten under its shorter span.
        let (cut, kept) = if from.0 == self.compacted.lsn.0 + 1 {
            (0, None)
        } else {
            let index = self.segment_of(from.0);
            let span = self.segments[index];
            if span.first == from.0 {
                (index, None)
            } else {
                let mut entries = self.read_segments(index..=index).await?;
                entries.retain(|e| e.lsn < from);
                (index, Some(entries))
            }
        };
        let tx = self.readwrite(&[LOG])?;
        let log = object_store(&tx, LOG)?;
        call(
            log.delete(&keys_from_span(self.segments[cut])?),
            "deleting log segments",
        )?;
        let mut kept_spans = Vec::new();
        if let Some(entries) = &kept {
            for (span, bytes) in encode_segments(entries) {
                put(&log, &span_key(span), &bytes)?;
                kept_spans.push(span);
            }
        }
        transaction_done(&tx, "truncating the log").await?;
        self.segments.truncate(cut);
        self.segments.extend(kept_spans);
        self.last = new_last;
        Ok(())
    }

    async fn compact_prefix(&mut self, through: Lsn) -> StorageResult<()> {
        if through <= self.compacted.lsn {
            return Ok(());
        }
        if through > self.last.lsn {
            return Err(StorageError::Invalid(format!(
                "cannot compact through {through}: the last entry held is {}",
                self.last.lsn
            )));
        }
        let position = self.position_of(through).await?;
        // Segments wholly at or below `through` go; the one holding the next entry stays.
        let keep_from = if through == self.last.lsn {
            self.segments.len()
        } else {
            self.segment_of(through.0 + 1)
        };
        let tx = self.readwrite(&[LOG, META])?;
        let log = object_store(&tx, LOG)?;
        match self.segments.get(keep_from) {
            Some(span) => call(
                log.delete(&keys_before_span(*span)?),
                "deleting log segments",
            )?,
            None => call(log.clear(), "clearing the log")?,
        };
        put(
            &object_store(&tx, META)?,
            &META_LOG.into(),
            &encode_named(META_LOG, &position),
        )?;
        transaction_done(&tx, "compacting the log").await?;
        self.compacted = position;
        self.segments.drain(..keep_from);
        Ok(())
    }

    /// A snapshot past the last entry also resets the log to start after it (as
    /// `MemoryStore` does), in the same transaction.
    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        let reset_log = snapshot.position.lsn > self.last.lsn;
        self.write_snapshot(snapshot, reset_log).await
    }

    /// One transaction clears the log, replaces the snapshot and moves the compaction point:
    /// IndexedDB commits all of it or none.
    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        self.write_snapshot(snapshot, true).await
    }

    async fn load_snapshot(&self) -> StorageResult<Option<Snapshot>> {
        let tx = self.readonly(&[SNAPSHOT])?;
        let req = call(object_store(&tx, SNAPSHOT)?.get_all(), "reading snapshot")?;
        let keys_req = call(
            object_store(&tx, SNAPSHOT)?.get_all_keys(),
            "reading snapshot keys",
        )?;
        let values = request(&req, "reading the snapshot");
        let keys = request(&keys_req, "reading the snapshot keys");
        let values: Array = values.await?.unchecked_into();
        let keys: Array = keys.await?.unchecked_into();
        if values.length() == 0 {
            return Ok(None);
        }
        let mut records = Vec::with_capacity(values.length() as usize);
        for (index, (value, key)) in values.iter().zip(keys.iter()).enumerate() {
            if key.as_f64() != Some(index as f64) {
                return Err(IdbError::Corrupt(format!(
                    "snapshot record {index} is stored under key {key:?}"
                ))
                .into());
            }
            records.push(value_bytes(&value, &format!("snapshot record {index}"))?);
        }
        Ok(Some(decode_snapshot(&records)?))
    }

    async fn save_metadata(&mut self, metadata: &Metadata) -> StorageResult<()> {
        let tx = self.readwrite(&[META])?;
        put(
            &object_store(&tx, META)?,
            &META_METADATA.into(),
            &encode_named(META_METADATA, metadata),
        )?;
        Ok(transaction_done(&tx, "saving metadata").await?)
    }

    async fn load_metadata(&self) -> StorageResult<Option<Metadata>> {
        let tx = self.readonly(&[META])?;
        let req = call(
            object_store(&tx, META)?.get(&META_METADATA.into()),
            "reading metadata",
        )?;
        let value = request(&req, "reading metadata").await?;
        if value.is_undefined() {
            return Ok(None);
        }
        let bytes = value_bytes(&value, "meta record \"metadata\"")?;
        Ok(Some(decode_named(META, META_METADATA, &bytes)?))
    }
}
