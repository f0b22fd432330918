//! Writes a large log straight into a data dir, the way the leader's commit thread does:
//! each entry one transaction inserting one small document, built with `LogEntry::new` on the
//! applied state, applied, appended through `FileStore` in batches (one `fdatasync` each), and,
//! when asked, a snapshot plus prefix compaction every N entries as the leader's checkpoint
//! does.
//!
//! Why not over HTTP: a million single-document requests take a minute or more on two shared
//! cores, and the recovery benchmark is about reading the log back, not writing it. The bytes
//! on disk are the server's own (same codec, same store); the recovery measurement then starts
//! a real server on them, writes to it over HTTP, and kills it with SIGKILL.

use std::path::Path;

use cstore_core::state::State;
use cstore_core::{LogEntry, Op, RawDoc, Term, TimestampMs, Txn};
use cstore_server::wal::FileStore;

use super::error::PeerError;

/// Entries per append (one write and one `fdatasync`).
const BATCH_ENTRIES: usize = 1024;

/// What was written.
#[derive(Clone, Copy, Debug)]
pub struct GeneratedLog {
    /// LSN of the last entry.
    pub last_lsn: u64,
    /// LSN of the last snapshot (0: none).
    pub snapshot_lsn: u64,
}

/// Appends `entries` single-insert entries (collection `recovery`) to the store in `dir`,
/// which must be empty of entries; a checkpoint every `checkpoint_every` entries if given.
pub fn generate(
    dir: &Path,
    entries: u64,
    checkpoint_every: Option<u64>,
    timestamp: TimestampMs,
) -> Result<GeneratedLog, PeerError> {
    let storage = |e: cstore_core::storage::StorageError| PeerError::net("writing the log", e);
    let mut store = FileStore::open(dir).map_err(storage)?;
    let mut state = State::new();
    let mut batch = Vec::with_capacity(BATCH_ENTRIES);
    let mut snapshot_lsn = 0;
    for n in 1..=entries {
        let doc = format!(
            r#"{{"_id":"r{n:09}","user":"user-{n:08}","age":{},"city":"Oslo"}}"#,
            18 + n % 60
        );
        let op = Op::Insert {
            collection: "recovery".into(),
            doc: RawDoc::parse(&doc).map_err(|e| PeerError::net("building a document", e))?,
        };
        let entry = LogEntry::new(state.applied(), Term(1), timestamp, Txn::single(op));
        state
            .apply(&entry)
            .map_err(|e| PeerError::net("applying a generated entry", e))?;
        batch.push(entry);
        let checkpoint = checkpoint_every.is_some_and(|every| n % every == 0);
        if batch.len() == BATCH_ENTRIES || n == entries || checkpoint {
            store.append_blocking(&batch).map_err(storage)?;
            batch.clear();
        }
        if checkpoint {
            let snapshot = state.snapshot();
            store.save_snapshot_blocking(&snapshot).map_err(storage)?;
            store
                .compact_prefix_blocking(snapshot.position.lsn)
                .map_err(storage)?;
            snapshot_lsn = n;
        }
    }
    Ok(GeneratedLog {
        last_lsn: state.applied().lsn.0,
        snapshot_lsn,
    })
}
