//! The write-ahead log in files: [`FileStore`], the server's durable
//! [`LogStore`](cstore_core::storage::LogStore).
//!
//! A write is acknowledged only after its bytes are on disk, and the disk's `fdatasync` costs
//! far more than writing the bytes. So the WAL takes whole batches: the server's commit loop
//! gathers the transactions that arrived while the previous sync ran, and `append` writes all
//! their records with one `write` and one `fdatasync` (group commit). No maintained crate does
//! this with our record format and recovery rules, so it is written here, small and in the
//! open; every rule below is tested by cutting and flipping bytes of real files.
//!
//! # Layout
//!
//! ```text
//! <data dir>/
//!   meta                               Metadata (term, node id): one record
//!   snapshot-00000000000000001000.snap the checkpoint: header record + ≤1 MiB chunk records
//!   wal/
//!     compacted                        the compaction point (lsn, hash) and the last
//!                                      finished log reset: one record
//!     00000000000000000998.seg         entry records 998.. back to back (named by first LSN)
//!     00000000000000001377.seg         ...the last segment takes the appends
//! ```
//!
//! Every record is the core codec's `[len][crc32c][version][kind][postcard body]`. Small files
//! (`meta`, `compacted`) and snapshots are replaced atomically: temp file, fsync, rename,
//! directory fsync. Segments are created, truncated and deleted with a directory fsync after
//! each change of names, so the set of files is as durable as their contents.
//!
//! # Appends and group commit
//!
//! ```text
//!  commit loop ── batch of N entries ──► append ─► encode all ─► one write ─► one fdatasync ─► Ok
//!                                                   (a new segment first when the last one is
//!                                                    past `segment_bytes_max`: the old one is
//!                                                    already synced, the new name dir-synced)
//! ```
//!
//! The last segment's file runs ahead of its records: an append that would grow it writes
//! 1 MiB of zeros after its records in the same write and sync, so the appends after it
//! overwrite bytes the file has and their `fdatasync` flushes data only, without a journal
//! commit for a new size and new blocks (on this machine's ext4: 90 µs a sync instead of
//! 135, and a third less CPU). Recovery cuts those zeros like any torn tail; a segment that
//! fills is cut to its records by its last sync, and a clean close cuts the last one, so only
//! the last segment ever ends in zeros (`store.rs`, `Active`).
//!
//! A batch that crosses a segment boundary costs one sync per segment it touches. Entries are
//! checked before they are written (chain and hash), because an entry that fails its hash
//! would make the next start refuse the whole log. After an IO error in any mutation the store
//! refuses further mutations until it is reopened: after a failed `fsync` nothing is known
//! about what reached the disk, and only recovery can find out.
//!
//! # Recovery
//!
//! [`FileStore::open`] checks every record of every segment (crc, SHA-256, chain, file name),
//! truncates a torn tail of the last segment, and refuses to start with `Corrupt` naming the
//! file and byte offset when acknowledged data is damaged; `recovery.rs` states the exact rule.
//! It also finishes what a crash interrupted: leftover temp files are removed, segments wholly
//! behind the compaction point deleted, an older snapshot left beside a newer one removed, and
//! a log reset (an installed snapshot, or one saved past the log's end) finished: `store/reset.rs`
//! gives the order of its steps. Restart time is bounded by checkpoints, which the store's
//! users make with its own calls: a snapshot of the state (`save_snapshot`), then the log
//! compacted behind it (`compact_prefix`); the leader's commit loop (`leader/commit.rs`) does
//! so every `checkpoint_every_entries` entries.
//!
//! # Bounds
//!
//! The index costs four bytes per held entry (offsets within a segment). A segment holds at
//! most `segment_bytes_max` plus one record (at most 32 MiB); recovery reads one segment at a
//! time. The append buffer is dropped after a batch larger than 4 MiB. Snapshots are read and
//! written in 1 MiB chunks. This module is Unix-only (positional reads and writes).

mod durable;
pub mod fault;
pub mod reader;
mod recovery;
mod segment;
mod snapshot_file;
mod stats;
mod store;

pub use fault::FaultPlan;
pub use snapshot_file::SnapshotWriter;
pub use stats::WalStats;
pub use store::{FileStore, Removals, SideRecordFile, SnapshotSave, WrittenSnapshot};

/// Tunables of a [`FileStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment rolls over once it holds this many bytes; the record that crosses the limit
    /// stays in it. At most 1 GiB. Tests use a few hundred bytes to exercise rolling.
    pub segment_bytes_max: u64,
    /// Set by a caller that replays the log after the snapshot before it serves anything (the
    /// leader and the follower do, in `load_state`): the open-time scan then leaves the SHA-256
    /// check of the entries above the snapshot to that replay, which decodes and checks each of
    /// them anyway, and checks their crc, framing and chain of stored hashes only. Damage there
    /// is reported by the replay's `read_range` (the same `Corrupt` error, naming the file and
    /// offset) instead of by `open`. Off by default: `open` checks every hash.
    pub hashes_checked_by_replay: bool,
    /// How many bytes the open-time scan reads from a segment at a time, through one buffer it
    /// reuses ([`SCAN_READ_BYTES`] by default). Tests use a few bytes, so that records run
    /// across reads.
    pub scan_read_bytes: usize,
}

/// The open-time scan's read size: large enough that a read costs little per record, small
/// enough that the buffer stays in the CPU's cache while its records are checked.
pub const SCAN_READ_BYTES: usize = 1 << 20;

impl Default for WalOptions {
    /// 64 MiB segments.
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes_max: 64 << 20,
            hashes_checked_by_replay: false,
            scan_read_bytes: SCAN_READ_BYTES,
        }
    }
}
