//! Snapshot transfer from the leader to a member, in chunks that resume after a cut
//! connection instead of starting over.
//!
//! ```text
//!  leader (network.rs, full_snapshot)                 member (http::cluster ─► Receiver)
//!  id = SHA-256 of the snapshot bytes, total length
//!  POST /v1/raft/snapshot/offer {id, total} ─────────► a partial file of this id? its length,
//!                                                       else a new empty one (any other
//!                                                       partial is dropped) ─► have_bytes
//!  POST /v1/raft/snapshot/chunk {id, total, offset,  ─► SHA-256 of data = chunk hash, id = the
//!        SHA-256 of data, data}  (≤ 4 MiB each)         partial's, offset = bytes held: appended
//!        from have_bytes until total                    (else refused, nothing changes)
//!  POST /v1/raft/snapshot/install {vote, meta, id} ──► length = total, SHA-256 of the whole = id
//!                                                     ─► openraft install_full_snapshot
//!                                                     ─► the partial file goes
//! ```
//!
//! The partial file lives in the data directory (`incoming-snapshot/{id}.{total}.part`), so a
//! transfer resumes across a cut connection, a new leader sending the same snapshot, and a
//! restart of the receiver. It is not synced: the whole snapshot's hash is checked before the
//! install, so bytes a crash lost or mangled cost a new transfer, never a wrong state. Every
//! check of a chunk comes before its bytes are written, so a refused chunk changes nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::info;

use cstore_core::error::ErrorCode;

use super::types::{RaftSnapshotMeta, RaftVote};

/// Bytes of snapshot in one chunk the leader sends.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 << 20;
/// Largest chunk a member accepts.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 16 << 20;
/// Largest snapshot a member accepts: the install holds it in memory once, whole.
pub const SNAPSHOT_TOTAL_BYTES_MAX: u64 = 16 << 30;
/// The directory of partial snapshots, in the data directory.
pub const INCOMING_DIR: &str = "incoming-snapshot";

/// A snapshot's identity in a transfer: the SHA-256 of its bytes.
pub type SnapshotId = [u8; 32];

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(id: &SnapshotId) -> String {
    cstore_core::Hash(*id).to_hex()
}

/// `POST /v1/raft/snapshot/offer`: the leader is about to send this snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOffer {
    /// The SHA-256 of the whole snapshot.
    pub id: SnapshotId,
    /// Its length in bytes.
    pub total_bytes: u64,
}

/// The answer to an offer or a chunk: how many bytes of the snapshot the member holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeld {
    /// Bytes held from the start of the snapshot.
    pub have_bytes: u64,
}

/// `POST /v1/raft/snapshot/chunk`: the bytes `offset..offset + data.len()` of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The snapshot's id.
    pub id: SnapshotId,
    /// The snapshot's length.
    pub total_bytes: u64,
    /// Where `data` starts in the snapshot.
    pub offset: u64,
    /// The SHA-256 of `data`.
    pub chunk_sha256: [u8; 32],
    /// The bytes.
    pub data: Vec<u8>,
}

/// `POST /v1/raft/snapshot/install`: every chunk was sent; install the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInstall {
    /// The leader's vote.
    pub vote: RaftVote,
    /// The snapshot's meta.
    pub meta: RaftSnapshotMeta,
    /// The snapshot's id.
    pub id: SnapshotId,
    /// Its length.
    pub total_bytes: u64,
}

/// Why a piece of a transfer was refused (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The chunk's bytes do not match the hash sent with them.
    #[error("snapshot chunk at byte {offset} does not match its SHA-256")]
    ChunkCorrupt {
        /// Where the chunk starts.
        offset: u64,
    },
    /// The chunk does not start where the bytes held end.
    #[error("snapshot chunk at byte {offset}, but {have_bytes} bytes are held")]
    OffsetMismatch {
        /// Where the chunk starts.
        offset: u64,
        /// Bytes held.
        have_bytes: u64,
    },
    /// The chunk or install is of another snapshot than the one being received.
    #[error("snapshot {theirs} is not the one being received ({})", ours.as_deref().unwrap_or("none; offer it first"))]
    IdMismatch {
        /// The snapshot being received, if any.
        ours: Option<String>,
        /// The one named.
        theirs: String,
    },
    /// The chunk is malformed: longer than allowed, past the snapshot's end, or empty.
    #[error("invalid snapshot chunk: {0}")]
    ChunkInvalid(String),
    /// The snapshot is larger than a member accepts.
    #[error("a snapshot of {total_bytes} bytes is over the {limit_bytes}-byte limit")]
    TooLarge {
        /// Its length.
        total_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// Install before every byte arrived.
    #[error("snapshot incomplete: {have_bytes} of {total_bytes} bytes held")]
    Incomplete {
        /// Bytes held.
        have_bytes: u64,
        /// Its length.
        total_bytes: u64,
    },
    /// The whole snapshot does not match its id (the partial file is dropped).
    #[error("the received snapshot does not match its SHA-256 {0}; it was dropped")]
    HashMismatch(String),
    /// The partial file could not be written or read.
    #[error("snapshot transfer storage: {0}")]
    Io(String),
}

impl ErrorCode for TransferError {
    fn code(&self) -> &'static str {
        match self {
            TransferError::ChunkCorrupt { .. } => "snapshot_chunk_corrupt",
            TransferError::OffsetMismatch { .. } => "snapshot_offset_mismatch",
            TransferError::IdMismatch { .. } => "snapshot_id_mismatch",
            TransferError::ChunkInvalid(_) => "snapshot_chunk_invalid",
            TransferError::TooLarge { .. } => "snapshot_too_large",
            TransferError::Incomplete { .. } => "snapshot_incomplete",
            TransferError::HashMismatch(_) => "snapshot_hash_mismatch",
            TransferError::Io(_) => "storage_io",
        }
    }
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> TransferError {
    TransferError::Io(format!("{what} {}: {e}", path.display()))
}

/// The snapshot being received.
#[derive(Debug)]
struct Partial {
    id: SnapshotId,
    total_bytes: u64,
    have_bytes: u64,
    path: PathBuf,
}

/// The receiving end: at most one partial snapshot, in the data directory.
#[derive(Debug)]
pub struct Receiver {
    dir: PathBuf,
    partial: Mutex<Option<Partial>>,
}

fn part_name(id: &SnapshotId, total_bytes: u64) -> String {
    format!("{}.{total_bytes}.part", hex(id))
}

fn parse_part_name(name: &str) -> Option<(SnapshotId, u64)> {
    let (id, rest) = name.split_once('.')?;
    let total: u64 = rest.strip_suffix(".part")?.parse().ok()?;
    if id.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((bytes, total))
}

impl Receiver {
    /// The receiver of the member whose data directory is `data_dir`: it picks up a partial
    /// snapshot left there (by a cut transfer, or a restart), and drops anything else.
    pub fn open(data_dir: &Path) -> Result<Receiver, TransferError> {
        let dir = data_dir.join(INCOMING_DIR);
        fs::create_dir_all(&dir).map_err(|e| io_error("cannot create", &dir, &e))?;
        let mut partial = None;
        for entry in fs::read_dir(&dir).map_err(|e| io_error("cannot list", &dir, &e))? {
            let entry = entry.map_err(|e| io_error("cannot list", &dir, &e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let found = parse_part_name(&name).and_then(|(id, total_bytes)| {
                let have_bytes = entry.metadata().ok()?.len();
                (have_bytes <= total_bytes).then_some(Partial {
                    id,
                    total_bytes,
                    have_bytes,
                    path: path.clone(),
                })
            });
            match found {
                Some(found) if partial.is_none() => partial = Some(found),
                _ => fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, &e))?,
            }
        }
        Ok(Receiver {
            dir,
            partial: Mutex::new(partial),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Partial>> {
        self.partial
            .lock()
            .expect("snapshot receiver lock poisoned")
    }

    /// The leader offers a snapshot: the bytes of it held (resumed from there), or a new
    /// empty partial file for it (replacing any partial of another snapshot).
    pub fn offer(&self, offer: &SnapshotOffer) -> Result<SnapshotHeld, TransferError> {
        if offer.total_bytes > SNAPSHOT_TOTAL_BYTES_MAX {
            return Err(TransferError::TooLarge {
                total_bytes: offer.total_bytes,
                limit_bytes: SNAPSHOT_TOTAL_BYTES_MAX,
            });
        }
        let mut partial = self.lock();
        if let Some(held) = partial.as_ref()
            && held.id == offer.id
            && held.total_bytes == offer.total_bytes
        {
            if held.have_bytes > 0 {
                metrics::counter!("cstore_cluster_snapshot_resumed_total").increment(1);
                info!(
                    snapshot = %hex(&offer.id),
                    have_bytes = held.have_bytes,
                    total_bytes = held.total_bytes,
                    "resuming a snapshot transfer"
                );
            }
            return Ok(SnapshotHeld {
                have_bytes: held.have_bytes,
            });
        }
        if let Some(old) = partial.take() {
            info!(snapshot = %hex(&old.id), have_bytes = old.have_bytes,
                  "dropping the partial snapshot: another one is offered");
            fs::remove_file(&old.path).map_err(|e| io_error("cannot remove", &old.path, &e))?;
        }
        info!(snapshot = %hex(&offer.id), total_bytes = offer.total_bytes, "receiving a snapshot");
        let path = self.dir.join(part_name(&offer.id, offer.total_bytes));
        File::create(&path).map_err(|e| io_error("cannot create", &path, &e))?;
        *partial = Some(Partial {
            id: offer.id,
            total_bytes: offer.total_bytes,
            have_bytes: 0,
            path,
        });
        Ok(SnapshotHeld { have_bytes: 0 })
    }

    /// Appends a chunk of the snapshot being received, after checking it all.
    pub fn chunk(&self, chunk: &SnapshotChunk) -> Result<SnapshotHeld, TransferError> {
        let refused = |e: TransferError| {
            metrics::counter!("cstore_cluster_snapshot_chunks_refused_total", "code" => e.code())
                .increment(1);
            e
        };
        let len = chunk.data.len() as u64;
        if chunk.data.is_empty() || chunk.data.len() > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(refused(TransferError::ChunkInvalid(format!(
                "{len} bytes (1 to {SNAPSHOT_CHUNK_BYTES_MAX} allowed)"
            ))));
        }
        if chunk
            .offset
            .checked_add(len)
            .is_none_or(|end| end > chunk.total_bytes)
        {
            return Err(refused(TransferError::ChunkInvalid(format!(
                "bytes {}..+{len} run past the snapshot's {} bytes",
                chunk.offset, chunk.total_bytes
            ))));
        }
        if sha256(&chunk.data) != chunk.chunk_sha256 {
            return Err(refused(TransferError::ChunkCorrupt {
                offset: chunk.offset,
            }));
        }
        let mut partial = self.lock();
        let held = match partial.as_mut() {
            Some(held) if held.id == chunk.id && held.total_bytes == chunk.total_bytes => held,
            other => {
                return Err(refused(TransferError::IdMismatch {
                    ours: other.map(|p| hex(&p.id)),
                    theirs: hex(&chunk.id),
                }));
            }
        };
        if chunk.offset != held.have_bytes {
            return Err(refused(TransferError::OffsetMismatch {
                offset: chunk.offset,
                have_bytes: held.have_bytes,
            }));
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(&held.path)
            .map_err(|e| io_error("cannot open", &held.path, &e))?;
        if let Err(e) = file.write_all(&chunk.data) {
            // A partial write leaves bytes past `have_bytes`: cut them off again.
            let _ = file.set_len(held.have_bytes);
            return Err(io_error("cannot write", &held.path, &e));
        }
        held.have_bytes += len;
        metrics::counter!("cstore_cluster_snapshot_received_bytes_total").increment(len);
        Ok(SnapshotHeld {
            have_bytes: held.have_bytes,
        })
    }

    /// The whole snapshot, once every byte arrived and it matches its id; the partial file
    /// stays until [`Self::installed`]. A snapshot that does not match its id is dropped.
    pub fn complete(&self, id: &SnapshotId, total_bytes: u64) -> Result<Vec<u8>, TransferError> {
        let mut partial = self.lock();
        let held = match partial.as_ref() {
            Some(held) if held.id == *id && held.total_bytes == total_bytes => held,
            other => {
                return Err(TransferError::IdMismatch {
                    ours: other.map(|p| hex(&p.id)),
                    theirs: hex(id),
                });
            }
        };
        if held.have_bytes != held.total_bytes {
            return Err(TransferError::Incomplete {
                have_bytes: held.have_bytes,
                total_bytes: held.total_bytes,
            });
        }
        let mut bytes = Vec::with_capacity(total_bytes as usize);
        File::open(&held.path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(|e| io_error("cannot read", &held.path, &e))?;
        if bytes.len() as u64 != total_bytes || sha256(&bytes) != *id {
            let path = held.path.clone();
            *partial = None;
            fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, &e))?;
            metrics::counter!("cstore_cluster_snapshot_chunks_refused_total", "code" => "snapshot_hash_mismatch")
                .increment(1);
            return Err(TransferError::HashMismatch(hex(id)));
        }
        Ok(bytes)
    }

    /// The snapshot `id` was installed: its partial file goes.
    pub fn installed(&self, id: &SnapshotId) {
        let mut partial = self.lock();
        if let Some(held) = partial.as_ref()
            && held.id == *id
        {
            let _ = fs::remove_file(&held.path);
            *partial = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cstore-snapshot-transfer-{name}-{}-{}",
            std::process::id(),
            crate::clock::now_ms().0
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn chunk(snapshot: &[u8], offset: usize, len: usize) -> SnapshotChunk {
        let data = snapshot[offset..offset + len].to_vec();
        SnapshotChunk {
            id: sha256(snapshot),
            total_bytes: snapshot.len() as u64,
            offset: offset as u64,
            chunk_sha256: sha256(&data),
            data,
        }
    }

    fn code<T: std::fmt::Debug>(result: Result<T, TransferError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[test]
    fn chunks_arrive_resume_after_a_restart_and_complete() {
        let dir = temp_dir("resume");
        let snapshot: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let offer = SnapshotOffer {
            id: sha256(&snapshot),
            total_bytes: snapshot.len() as u64,
        };
        let receiver = Receiver::open(&dir).unwrap();
        assert_eq!(receiver.offer(&offer).unwrap().have_bytes, 0);
        assert_eq!(
            receiver.chunk(&chunk(&snapshot, 0, 15_000)).unwrap(),
            SnapshotHeld { have_bytes: 15_000 }
        );
        // A cut; the member even restarts: the next offer resumes where the bytes end.
        drop(receiver);
        let receiver = Receiver::open(&dir).unwrap();
        assert_eq!(receiver.offer(&offer).unwrap().have_bytes, 15_000);
        assert_eq!(
            code(receiver.complete(&offer.id, offer.total_bytes)),
            "snapshot_incomplete"
        );
        receiver.chunk(&chunk(&snapshot, 15_000, 25_000)).unwrap();
        assert_eq!(
            receiver.complete(&offer.id, offer.total_bytes).unwrap(),
            snapshot
        );
        receiver.installed(&offer.id);
        assert_eq!(fs::read_dir(dir.join(INCOMING_DIR)).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_chunks_are_refused_and_change_nothing() {
        let dir = temp_dir("refused");
        let snapshot: Vec<u8> = (0..4_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let offer = SnapshotOffer {
            id: sha256(&snapshot),
            total_bytes: snapshot.len() as u64,
        };
        let receiver = Receiver::open(&dir).unwrap();
        // No offer yet: no chunk is taken.
        assert_eq!(
            code(receiver.chunk(&chunk(&snapshot, 0, 100))),
            "snapshot_id_mismatch"
        );
        receiver.offer(&offer).unwrap();
        receiver.chunk(&chunk(&snapshot, 0, 1_000)).unwrap();
        // A flipped byte in the data.
        let mut bad = chunk(&snapshot, 1_000, 1_000);
        bad.data[10] ^= 1;
        assert_eq!(code(receiver.chunk(&bad)), "snapshot_chunk_corrupt");
        // A wrong offset: a gap, and a repeat.
        assert_eq!(
            code(receiver.chunk(&chunk(&snapshot, 2_000, 100))),
            "snapshot_offset_mismatch"
        );
        assert_eq!(
            code(receiver.chunk(&chunk(&snapshot, 0, 1_000))),
            "snapshot_offset_mismatch"
        );
        // Another snapshot.
        let other: Vec<u8> = vec![7; snapshot.len()];
        assert_eq!(
            code(receiver.chunk(&chunk(&other, 1_000, 100))),
            "snapshot_id_mismatch"
        );
        // Past the end, empty, too long.
        let mut past = chunk(&snapshot, 1_000, 100);
        past.total_bytes = 1_050;
        assert_eq!(code(receiver.chunk(&past)), "snapshot_chunk_invalid");
        let mut empty = chunk(&snapshot, 1_000, 0);
        empty.chunk_sha256 = sha256(&[]);
        assert_eq!(code(receiver.chunk(&empty)), "snapshot_chunk_invalid");
        let mut beyond = chunk(&snapshot, 1_000, 100);
        beyond.offset = snapshot.len() as u64 - 50;
        assert_eq!(code(receiver.chunk(&beyond)), "snapshot_chunk_invalid");
        // Nothing changed: the transfer goes on from byte 1,000.
        assert_eq!(receiver.offer(&offer).unwrap().have_bytes, 1_000);
        let path = dir
            .join(INCOMING_DIR)
            .join(part_name(&offer.id, offer.total_bytes));
        assert_eq!(fs::read(&path).unwrap(), snapshot[..1_000]);
        receiver
            .chunk(&chunk(&snapshot, 1_000, snapshot.len() - 1_000))
            .unwrap();
        // Bytes on disk damaged after they were taken: the whole hash catches it, and the
        // partial goes so the next transfer starts clean.
        let mut on_disk = fs::read(&path).unwrap();
        on_disk[5] ^= 1;
        fs::write(&path, &on_disk).unwrap();
        assert_eq!(
            code(receiver.complete(&offer.id, offer.total_bytes)),
            "snapshot_hash_mismatch"
        );
        assert!(!path.exists());
        assert_eq!(receiver.offer(&offer).unwrap().have_bytes, 0);
        // Too large.
        let huge = SnapshotOffer {
            id: offer.id,
            total_bytes: SNAPSHOT_TOTAL_BYTES_MAX + 1,
        };
        assert_eq!(code(receiver.offer(&huge)), "snapshot_too_large");
        fs::remove_dir_all(&dir).unwrap();
    }
}
