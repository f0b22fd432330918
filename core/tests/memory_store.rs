//! The storage conformance suite on [`MemoryStore`], the reference implementation, and on
//! deliberately broken wrappers of it: a suite that passes everything proves nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cstore_core::log::LogEntry;
use cstore_core::snapshot::Snapshot;
use cstore_core::storage::conformance::{self, StoreHarness};
use cstore_core::storage::{LogState, LogStore, MemoryStore, Metadata, StorageResult};
use cstore_core::types::Lsn;

/// Memory has nothing to reopen: the store is handed back as it is.
#[derive(Debug, Default)]
struct MemoryHarness;

impl StoreHarness for MemoryHarness {
    type Store = MemoryStore;

    async fn create(&mut self) -> MemoryStore {
        MemoryStore::new()
    }

    async fn reopen(&mut self, store: MemoryStore) -> MemoryStore {
        store
    }
}

#[test]
fn memory_store_passes_the_conformance_suite() {
    futures::executor::block_on(conformance::test_all(&mut MemoryHarness));
}

/// One way a store can be wrong.
#[derive(Debug, Clone, Copy)]
enum Flaw {
    /// Reports success for an append it refused.
    HidesRefusedAppend,
    /// Accepts compaction past the last entry, silently doing nothing.
    CompactsPastLast,
    /// Truncation keeps the entry it was asked to remove from.
    TruncatesOneLate,
    /// Forgets metadata when reopened.
    ForgetsMetadata,
    /// Drops the snapshot when a newer one is saved at the same position.
    KeepsFirstSnapshot,
    /// Installs a snapshot as `save_snapshot` would: entries above it stay unless it lies
    /// past the last one.
    InstallKeepsEntries,
}

#[derive(Debug)]
struct FlawedStore {
    inner: MemoryStore,
    flaw: Flaw,
    reopened: bool,
}

impl LogStore for FlawedStore {
    async fn append(&mut self, entries: &[LogEntry]) -> StorageResult<()> {
        let result = self.inner.append(entries).await;
        match self.flaw {
            Flaw::HidesRefusedAppend => Ok(()),
            _ => result,
        }
    }

    async fn read_range(&self, from: Lsn, to: Lsn) -> StorageResult<Vec<LogEntry>> {
        self.inner.read_range(from, to).await
    }

    async fn state(&self) -> StorageResult<LogState> {
        self.inner.state().await
    }

    async fn truncate_suffix(&mut self, from: Lsn) -> StorageResult<()> {
        match self.flaw {
            Flaw::TruncatesOneLate => self.inner.truncate_suffix(from.next()).await,
            _ => self.inner.truncate_suffix(from).await,
        }
    }

    async fn compact_prefix(&mut self, through: Lsn) -> StorageResult<()> {
        let result = self.inner.compact_prefix(through).await;
        match self.flaw {
            Flaw::CompactsPastLast => Ok(()),
            _ => result,
        }
    }

    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        if let Flaw::KeepsFirstSnapshot = self.flaw {
            let existing = self.inner.load_snapshot().await?;
            if existing.is_some_and(|s| s.position == snapshot.position) {
                return Ok(());
            }
        }
        self.inner.save_snapshot(snapshot).await
    }

    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> StorageResult<()> {
        match self.flaw {
            Flaw::InstallKeepsEntries => self.inner.save_snapshot(snapshot).await,
            _ => self.inner.install_snapshot(snapshot).await,
        }
    }

    async fn load_snapshot(&self) -> StorageResult<Option<Snapshot>> {
        self.inner.load_snapshot().await
    }

    async fn save_metadata(&mut self, metadata: &Metadata) -> StorageResult<()> {
        self.inner.save_metadata(metadata).await
    }

    async fn load_metadata(&self) -> StorageResult<Option<Metadata>> {
        if let (Flaw::ForgetsMetadata, true) = (self.flaw, self.reopened) {
            return Ok(None);
        }
        self.inner.load_metadata().await
    }
}

#[derive(Debug)]
struct FlawedHarness(Flaw);

impl StoreHarness for FlawedHarness {
    type Store = FlawedStore;

    async fn create(&mut self) -> FlawedStore {
        FlawedStore {
            inner: MemoryStore::new(),
            flaw: self.0,
            reopened: false,
        }
    }

    async fn reopen(&mut self, mut store: FlawedStore) -> FlawedStore {
        store.reopened = true;
        store
    }
}

#[test]
fn the_suite_catches_flawed_stores() {
    // Each flaw must be caught by the property written for it.
    for (flaw, property) in [
        (Flaw::HidesRefusedAppend, "append_not_contiguous"),
        (Flaw::CompactsPastLast, "compact_prefix_past_last"),
        (Flaw::TruncatesOneLate, "truncate_suffix_middle"),
        (Flaw::ForgetsMetadata, "metadata_save_load_replace"),
        (Flaw::KeepsFirstSnapshot, "snapshot_save_load_replace"),
        (Flaw::InstallKeepsEntries, "install_snapshot_below_last"),
    ] {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            futures::executor::block_on(conformance::test_all(&mut FlawedHarness(flaw)));
        }));
        let payload = outcome.expect_err(&format!("the suite passed a store with {flaw:?}"));
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(
            message.contains(property),
            "{flaw:?} should fail {property}, failed with: {message}"
        );
    }
}
