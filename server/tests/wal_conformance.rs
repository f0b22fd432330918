//! The storage conformance suite on [`FileStore`], with segments tiny enough that nearly every
//! append rolls, and with the default size.

mod wal_support;

use cstore_core::storage::conformance::{self, StoreHarness};
use cstore_server::wal::{FileStore, WalOptions};
use wal_support::TempDir;

/// Each `create` opens a fresh subdirectory; `reopen` drops the store and recovers its files.
#[derive(Debug)]
struct FileHarness {
    root: TempDir,
    stores: u32,
    options: WalOptions,
}

impl FileHarness {
    fn new(name: &str, segment_bytes_max: u64) -> FileHarness {
        FileHarness {
            root: TempDir::new(name),
            stores: 0,
            options: WalOptions {
                segment_bytes_max,
                hashes_checked_by_replay: false,
                scan_read_bytes: 13,
            },
        }
    }
}

impl StoreHarness for FileHarness {
    type Store = FileStore;

    async fn create(&mut self) -> FileStore {
        self.stores += 1;
        let dir = self.root.path().join(format!("store-{}", self.stores));
        FileStore::open_with(dir, self.options).expect("open a new store")
    }

    async fn reopen(&mut self, store: FileStore) -> FileStore {
        let dir = store.dir().to_path_buf();
        drop(store);
        FileStore::open_with(dir, self.options).expect("reopen")
    }
}

#[test]
fn conformance_with_tiny_segments() {
    // Entries are 150-250 bytes: a segment rolls after one or two of them.
    futures::executor::block_on(conformance::test_all(&mut FileHarness::new(
        "conf-tiny",
        200,
    )));
}

#[test]
fn conformance_with_default_segments() {
    let mut harness = FileHarness::new("conf-default", WalOptions::default().segment_bytes_max);
    futures::executor::block_on(conformance::test_all(&mut harness));
}
