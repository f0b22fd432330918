//! A snapshot arriving in chunks on the replica.
//!
//! ```text
//! SnapshotBegin{position, hash, total} ─► [ bytes 0 .. received ) ◄─ SnapshotChunk{offset, bytes}
//!                                                │                   offset <= received: the
//!                                                │                   overlap is dropped (dups,
//!                                                ▼                   resumed transfers)
//!                       SnapshotEnd: received == total and SHA-256 == hash ─► Snapshot
//! ```
//!
//! The buffer is bounded by the announced total, which is bounded by the replica's
//! `snapshot_bytes_max`. A transfer cut by a disconnect is kept, so the next connection can
//! resume it ([`SnapshotResume`] in the hello) instead of starting over.

use crate::replication::error::ReplicationError;
use crate::replication::frame::SnapshotResume;
use crate::snapshot::{Snapshot, hash_bytes};
use crate::types::{Hash, LogPosition};

/// The bytes of one snapshot received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IncomingSnapshot {
    position: LogPosition,
    state_hash: Hash,
    total_bytes: u64,
    data: Vec<u8>,
}

impl IncomingSnapshot {
    /// Starts receiving, after checking the size against the replica's bound.
    pub(crate) fn begin(
        position: LogPosition,
        state_hash: Hash,
        total_bytes: u64,
        max_bytes: u64,
    ) -> Result<IncomingSnapshot, ReplicationError> {
        if total_bytes > max_bytes {
            return Err(ReplicationError::SnapshotTooLarge {
                total_bytes,
                max_bytes,
            });
        }
        Ok(IncomingSnapshot {
            position,
            state_hash,
            total_bytes,
            data: Vec::new(),
        })
    }

    /// True when a `SnapshotBegin` announces this same snapshot.
    pub(crate) fn is_same(&self, position: LogPosition, state_hash: Hash, total: u64) -> bool {
        self.position == position && self.state_hash == state_hash && self.total_bytes == total
    }

    /// Bytes received so far.
    pub(crate) fn received(&self) -> u64 {
        self.data.len() as u64
    }

    /// What to put in a hello to continue this transfer.
    pub(crate) fn resume(&self) -> SnapshotResume {
        SnapshotResume {
            position: self.position,
            state_hash: self.state_hash,
            offset: self.received(),
        }
    }

    /// Adds a chunk. Bytes already held are skipped, so duplicated and resumed chunks are
    /// harmless; a chunk that starts past the bytes held, or runs past the total, is refused.
    pub(crate) fn accept(&mut self, offset: u64, bytes: &[u8]) -> Result<(), ReplicationError> {
        let received = self.received();
        let len = bytes.len() as u64;
        let end = offset.checked_add(len);
        if offset > received || end.is_none_or(|end| end > self.total_bytes) {
            return Err(ReplicationError::SnapshotGap {
                offset,
                len,
                received,
                total: self.total_bytes,
            });
        }
        let skip = (received - offset) as usize;
        if skip < bytes.len() {
            self.data.extend_from_slice(&bytes[skip..]);
        }
        Ok(())
    }

    /// Completes the transfer: every byte present and matching the state hash (unless
    /// `check_hash` is off, which only the planted-bug tests do).
    pub(crate) fn finish(self, check_hash: bool) -> Result<Snapshot, ReplicationError> {
        if self.received() != self.total_bytes {
            return Err(ReplicationError::SnapshotIncomplete {
                received: self.received(),
                total: self.total_bytes,
            });
        }
        if check_hash && hash_bytes(&self.data) != self.state_hash {
            return Err(ReplicationError::SnapshotHashMismatch);
        }
        Ok(Snapshot {
            position: self.position,
            state_hash: self.state_hash,
            data: self.data,
        })
    }
}
