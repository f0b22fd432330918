//! Checkpoints off the commit path: a snapshot of the state, saved while writes go on.
//!
//! ```text
//!  commit thread                       checkpoint thread (its own, nice 10)
//!  start: begin the image (a moment    encode the image a step at a time under the read
//!         under the write lock) and    lock (commits apply between steps; the collections
//!         the store's save            ─►keep what changes as it was), hashing each step's
//!  ... commits go on ...                bytes; then encode it again, writing each step's
//!                                       bytes to the snapshot's temp file, and fsync it
//!  finish: rename it into place,     ◄─ (or: the image was spoiled by a collection or index
//!          compact the log behind it      change: the commit thread takes the snapshot whole)
//!          (the files this frees are removed on another background thread)
//! ```
//!
//! The image is never held whole: a checkpoint needs a step's bytes of memory, not a copy of
//! the state (see [`write_image`]).
//!
//! Only `start` and `finish` run on the commit thread, and both are short; before, the whole
//! snapshot was encoded under the writers' gate and saved on the commit thread, and every
//! write made meanwhile waited for it (0.5 to 1.5 s for a million documents).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot::{self, error::RecvError};
use tracing::{error, info, warn};

use cstore_core::snapshot::{Hasher, Snapshot};
use cstore_core::state::ImageBuilder;
use cstore_core::storage::{LogStore, MemoryStore, StorageError, StorageResult};
use cstore_core::{Hash, LogPosition, Lsn};

use crate::local::{Local, LocalCopy};
use crate::wal::{FileStore, SnapshotSave, WrittenSnapshot};

/// Where the second pass over a checkpoint's image puts its bytes, a piece at a time.
pub(crate) type ImageSink<'a> = dyn FnMut(&[u8]) -> StorageResult<()> + 'a;

/// A store whose snapshot can be saved in three steps, the slow middle one off the thread
/// that appends: the leader's commit thread needs one.
pub trait CheckpointStore: LogStore + Send + Sync + 'static {
    /// What the middle step needs (taken from the store in the first).
    type Save: Send + 'static;
    /// What the middle step made (given to the store in the last).
    type Written: Send + 'static;

    /// Begins saving a snapshot at `position`, an entry the log holds.
    fn begin_save(&mut self, position: LogPosition) -> StorageResult<Self::Save>;

    /// Writes the snapshot durably beside the store, on any thread, while it appends. Its
    /// data, `bytes` long with hash `hash` (both known before: a first pass over the image
    /// made them), `fill` gives in pieces to the sink it is handed. `None`, nothing written,
    /// when `fill` gives up (returns false).
    fn write_save(
        save: Self::Save,
        hash: Hash,
        bytes: u64,
        fill: impl FnOnce(&mut ImageSink<'_>) -> StorageResult<bool>,
    ) -> StorageResult<Option<Self::Written>>;

    /// Makes the written snapshot the store's current one and compacts the log behind it.
    /// Quick: what takes long (removing files no longer needed) goes to another thread.
    fn finish_save(
        &mut self,
        written: Self::Written,
    ) -> impl Future<Output = StorageResult<()>> + Send;
}

impl CheckpointStore for FileStore {
    type Save = SnapshotSave;
    type Written = WrittenSnapshot;

    fn begin_save(&mut self, position: LogPosition) -> StorageResult<SnapshotSave> {
        self.begin_snapshot(position)
    }

    fn write_save(
        save: SnapshotSave,
        hash: Hash,
        bytes: u64,
        fill: impl FnOnce(&mut ImageSink<'_>) -> StorageResult<bool>,
    ) -> StorageResult<Option<WrittenSnapshot>> {
        save.write_streamed(hash, bytes, |writer| fill(&mut |piece| writer.write(piece)))
    }

    async fn finish_save(&mut self, written: WrittenSnapshot) -> StorageResult<()> {
        let through = written.position().lsn;
        let (result, removals) = self.leaving_removals(|store| {
            store.finish_snapshot(written)?;
            store.compact_prefix_blocking(through)
        });
        // What the store left to remove goes even if a later step failed.
        self.remove_in_background(removals);
        result
    }
}

impl CheckpointStore for MemoryStore {
    type Save = LogPosition;
    type Written = Snapshot;

    fn begin_save(&mut self, position: LogPosition) -> StorageResult<LogPosition> {
        Ok(position)
    }

    fn write_save(
        position: LogPosition,
        hash: Hash,
        bytes: u64,
        fill: impl FnOnce(&mut ImageSink<'_>) -> StorageResult<bool>,
    ) -> StorageResult<Option<Snapshot>> {
        collect_image(position, hash, bytes, fill)
    }

    async fn finish_save(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        save_and_compact(self, &snapshot).await
    }
}

/// The middle step for a store that takes a snapshot whole (in memory): the pieces `fill`
/// gives, collected and held to the hash they were given with.
pub(crate) fn collect_image(
    position: LogPosition,
    hash: Hash,
    bytes: u64,
    fill: impl FnOnce(&mut ImageSink<'_>) -> StorageResult<bool>,
) -> StorageResult<Option<Snapshot>> {
    let mut data = Vec::with_capacity(usize::try_from(bytes).unwrap_or(0));
    if !fill(&mut |piece| {
        data.extend_from_slice(piece);
        Ok(())
    })? {
        return Ok(None);
    }
    let snapshot = Snapshot::new(position, data);
    if snapshot.state_hash != hash || snapshot.data.len() as u64 != bytes {
        return Err(StorageError::Invalid(format!(
            "the snapshot at {position} given is not the one its hash and length were made of"
        )));
    }
    Ok(Some(snapshot))
}

/// The last step for a store that saves a snapshot in one (an in-memory store).
pub(crate) async fn save_and_compact<S: LogStore>(
    store: &mut S,
    snapshot: &Snapshot,
) -> StorageResult<()> {
    store.save_snapshot(snapshot).await?;
    store.compact_prefix(snapshot.position.lsn).await
}

/// A checkpoint under way on its own thread.
pub(crate) struct Checkpoint<W> {
    started: Instant,
    position: LogPosition,
    /// The thread's outcome; an error if it panicked (a bug in the image's steps).
    outcome: oneshot::Receiver<Outcome<W>>,
}

/// What a checkpoint's thread did.
pub(crate) enum Outcome<W> {
    /// The snapshot is written beside the store (`bytes` long), its image encoded and hashed
    /// in `hash` (the first pass), encoded again and its file written and synced in `write`.
    Written {
        written: W,
        bytes: usize,
        hash: Duration,
        write: Duration,
    },
    /// A collection or an index came or went while the image was encoded.
    Spoiled,
    /// The snapshot could not be written; the store is unchanged.
    Failed(StorageError),
}

/// Starts a checkpoint of the state as it is: begins its image and the store's save (both
/// short), and leaves the rest to a thread of its own. `None` if the save cannot begin.
pub(crate) async fn start<S: CheckpointStore>(
    copy: &mut LocalCopy<S>,
    write_bytes_per_s: u64,
) -> Option<Checkpoint<S::Written>> {
    let started = Instant::now();
    metrics::gauge!("cstore_checkpoint_running").set(1.0);
    let local = Arc::clone(copy.local());
    let image = local.begin_image().await;
    let position = image.position();
    let save = match copy.store_mut().begin_save(position) {
        Ok(save) => save,
        Err(e) => {
            local.abandon_image(image).await;
            failed(&e, position.lsn);
            metrics::gauge!("cstore_checkpoint_running").set(0.0);
            return None;
        }
    };
    let (done, outcome) = oneshot::channel();
    // At the background priority: its steps hold the writers' gate for a fraction of a
    // millisecond each, so a writer still waits for one step at most.
    let thread = crate::background::spawn("cstore-checkpoint", {
        let local = Arc::clone(&local);
        move || {
            let _ = done.send(write_image::<S>(&local, image, save, write_bytes_per_s));
        }
    });
    if let Err(e) = thread {
        // The image went with the closure, not ended: the collections keep the documents
        // that change until the next checkpoint begins a new one. Nothing was written.
        error!(error = %e, "cannot start the checkpoint's thread");
        metrics::gauge!("cstore_checkpoint_running").set(0.0);
        return None;
    }
    Some(Checkpoint {
        started,
        position,
        outcome,
    })
}

/// The checkpoint's thread: the image encoded twice, never held whole. The first pass makes
/// its hash and length, which the snapshot file's header holds; the second writes it to the
/// file as it is encoded. Both passes encode the state as it was when the image began (the
/// collections keep what changes until the image ends), so their bytes are the same; a
/// checksum of each holds the second to the first. Encoding twice costs less than keeping the
/// image whole: a buffer the size of the state, new at every checkpoint, was most of its CPU
/// (the kernel zeroing fresh pages), and doubled the server's memory while it lasted.
fn write_image<S: CheckpointStore>(
    local: &Local,
    mut image: ImageBuilder,
    save: S::Save,
    write_bytes_per_s: u64,
) -> Outcome<S::Written> {
    let begun = Instant::now();
    let mut hash = Hasher::default();
    let mut bytes = 0u64;
    let mut checksum = 0u32;
    let complete = local.stream_image(&mut image, |piece| {
        hash.update(piece);
        bytes += piece.len() as u64;
        checksum = crc32c::crc32c_append(checksum, piece);
        Ok::<(), Infallible>(())
    });
    if complete != Ok(true) {
        local.end_image_blocking(image);
        return Outcome::Spoiled;
    }
    let hash = hash.finish();
    let hashed = Instant::now();
    image.rewind();
    let mut image = Some(image);
    let written = S::write_save(save, hash, bytes, |sink| {
        let builder = image
            .as_mut()
            .expect("the image ends after its second pass");
        let mut again = 0u32;
        let mut pace = Pace::new(write_bytes_per_s);
        if !local.stream_image(builder, |piece| {
            again = crc32c::crc32c_append(again, piece);
            sink(piece)?;
            pace.given(piece.len());
            Ok(())
        })? {
            return Ok(false);
        }
        if again != checksum {
            return Err(StorageError::Invalid(
                "a checkpoint's image came out different in its second pass".into(),
            ));
        }
        // Ended before the file is kept: the bytes are the state's only if the image is still
        // current.
        Ok(local.end_image_blocking(image.take().expect("not ended yet")))
    });
    if let Some(builder) = image {
        local.end_image_blocking(builder);
    }
    match written {
        Ok(Some(written)) => Outcome::Written {
            written,
            bytes: bytes as usize,
            hash: hashed - begun,
            write: hashed.elapsed(),
        },
        Ok(None) => Outcome::Spoiled,
        Err(e) => Outcome::Failed(e),
    }
}

/// How fast a checkpoint's second pass gives its file the image: the log's appends share the
/// disk, and a sync waits for whatever was written before it. Unpaced and synced every 16 MiB,
/// a checkpoint of 200 MB (written in 0.35 s) made the median append wait 4 ms instead of
/// 0.3; at 128 MiB/s it took 1.6 s and the median stayed at 0.24-0.38 ms (timed for those
/// runs only: BENCHMARKS.md, "The image never held whole, and the file paced").
#[derive(Debug)]
struct Pace {
    /// Bytes per second; 0 for unpaced.
    bytes_per_s: u64,
    started: Instant,
    given: u64,
}

impl Pace {
    /// A pace that starts now.
    fn new(bytes_per_s: u64) -> Pace {
        Pace {
            bytes_per_s,
            started: Instant::now(),
            given: 0,
        }
    }

    /// Counts `bytes` given, and sleeps until they are due.
    fn given(&mut self, bytes: usize) {
        if self.bytes_per_s == 0 {
            return;
        }
        self.given += bytes as u64;
        let due = Duration::from_secs_f64(self.given as f64 / self.bytes_per_s as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// Waits for the checkpoint under way, if any (forever if none): its outcome, to hand to
/// [`finish`] with the checkpoint's start.
pub(crate) async fn wait<W>(
    checkpoint: &mut Option<Checkpoint<W>>,
) -> Result<Outcome<W>, RecvError> {
    match checkpoint {
        Some(checkpoint) => (&mut checkpoint.outcome).await,
        None => std::future::pending().await,
    }
}

/// Ends a checkpoint whose thread is done: makes its snapshot current and compacts the log
/// behind it. A spoiled image is taken again whole, here, as checkpoints were before (the
/// rare case of a collection or index change during a checkpoint).
pub(crate) async fn finish<S: CheckpointStore>(
    copy: &mut LocalCopy<S>,
    checkpoint: Checkpoint<S::Written>,
    outcome: Result<Outcome<S::Written>, RecvError>,
) {
    let Checkpoint {
        started, position, ..
    } = checkpoint;
    finish_outcome(copy, started, position, outcome).await;
    metrics::gauge!("cstore_checkpoint_running").set(0.0);
}

async fn finish_outcome<S: CheckpointStore>(
    copy: &mut LocalCopy<S>,
    started: Instant,
    position: LogPosition,
    outcome: Result<Outcome<S::Written>, RecvError>,
) {
    let result = match outcome {
        Ok(Outcome::Written {
            written,
            bytes,
            hash,
            write,
        }) => {
            info!(
                lsn = %position.lsn,
                hash_ms = hash.as_millis() as u64,
                write_ms = write.as_millis() as u64,
                "checkpoint's snapshot written beside the log"
            );
            copy.store_mut()
                .finish_save(written)
                .await
                .map(|()| (position, bytes))
        }
        Ok(Outcome::Failed(e)) => Err(e),
        Ok(Outcome::Spoiled) => {
            info!(lsn = %position.lsn, "a collection or index changed during the checkpoint; \
                  taking it again with writes held");
            whole(copy).await
        }
        Err(RecvError { .. }) => {
            // The thread panicked (a bug in the image's steps, logged by the panic hook): no
            // snapshot was saved, the log keeps every entry.
            error!(lsn = %position.lsn, "the checkpoint's thread failed");
            metrics::counter!("cstore_storage_errors_total", "kind" => "checkpoint_io")
                .increment(1);
            return;
        }
    };
    match result {
        Ok((at, bytes)) => {
            metrics::counter!("cstore_checkpoints_total").increment(1);
            metrics::histogram!("cstore_checkpoint_seconds")
                .record(started.elapsed().as_secs_f64());
            info!(lsn = %at.lsn, bytes, ms = started.elapsed().as_millis() as u64,
                  "checkpoint written");
        }
        Err(e) => failed(&e, position.lsn),
    }
}

/// A checkpoint in one go, writers held while the state is encoded.
async fn whole<S: CheckpointStore>(copy: &mut LocalCopy<S>) -> StorageResult<(LogPosition, usize)> {
    let snapshot = copy.checkpoint().await?;
    Ok((snapshot.position, snapshot.data.len()))
}

/// A failed checkpoint loses nothing: the log still holds every entry, and the store keeps
/// the last good snapshot (a new one replaces it only at its rename).
fn failed(e: &StorageError, lsn: Lsn) {
    let kind = if matches!(e, StorageError::Full(_)) {
        "checkpoint_disk_full"
    } else {
        "checkpoint_io"
    };
    metrics::counter!("cstore_storage_errors_total", "kind" => kind).increment(1);
    warn!(error = %e, %lsn, "checkpoint failed; the log keeps growing");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_holds_the_writer_to_its_rate_and_no_pace_does_not() {
        let mut pace = Pace::new(1 << 20);
        let began = Instant::now();
        for _ in 0..4 {
            pace.given(64 << 10);
        }
        // A quarter of a MiB at 1 MiB/s: a quarter of a second at least.
        assert!(
            began.elapsed() >= Duration::from_millis(249),
            "{:?}",
            began.elapsed()
        );

        let mut unpaced = Pace::new(0);
        let began = Instant::now();
        unpaced.given(1 << 30);
        assert!(began.elapsed() < Duration::from_millis(100));
    }
}
