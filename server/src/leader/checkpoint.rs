//! Checkpoints off the commit path: a snapshot of the state, saved while writes go on.
//!
//! ```text
//!  commit thread                       checkpoint thread (its own, nice 10)
//!  start: begin the image (a moment    encode the image a step at a time under the read
//!         under the write lock) and    lock (commits apply between steps; the collections
//!         the store's save            ─►keep what changes as it was), hash it, write and
//!  ... commits go on ...                fsync the snapshot's temp file
//!  finish: rename it into place,     ◄─ (or: the image was spoiled by a collection or index
//!          compact the log behind it      change: the commit thread takes the snapshot whole)
//!          (the files this frees are removed on another background thread)
//! ```
//!
//! Only `start` and `finish` run on the commit thread, and both are short; before, the whole
//! snapshot was encoded under the writers' gate and saved on the commit thread, and every
//! write made meanwhile waited for it (0.5 to 1.5 s for a million documents).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot::{self, error::RecvError};
use tracing::{error, info, warn};

use cstore_core::snapshot::Snapshot;
use cstore_core::storage::{LogStore, MemoryStore, StorageError, StorageResult};
use cstore_core::{LogPosition, Lsn};

use crate::local::LocalCopy;
use crate::wal::{FileStore, SnapshotSave, WrittenSnapshot};

/// A store whose snapshot can be saved in three steps, the slow middle one off the thread
/// that appends: the leader's commit thread needs one.
pub trait CheckpointStore: LogStore + Send + 'static {
    /// What the middle step needs (taken from the store in the first).
    type Save: Send + 'static;
    /// What the middle step made (given to the store in the last).
    type Written: Send + 'static;

    /// Begins saving a snapshot at `position`, an entry the log holds.
    fn begin_save(&mut self, position: LogPosition) -> StorageResult<Self::Save>;

    /// Writes the snapshot durably beside the store, on any thread, while it appends. The
    /// snapshot was just made by `Snapshot::new` from its bytes: its hash need not be
    /// checked again.
    fn write_save(save: Self::Save, snapshot: &Snapshot) -> StorageResult<Self::Written>;

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

    fn write_save(save: SnapshotSave, snapshot: &Snapshot) -> StorageResult<WrittenSnapshot> {
        save.write_hashed(snapshot)
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
    type Save = ();
    type Written = Snapshot;

    fn begin_save(&mut self, _: LogPosition) -> StorageResult<()> {
        Ok(())
    }

    fn write_save((): (), snapshot: &Snapshot) -> StorageResult<Snapshot> {
        Ok(snapshot.clone())
    }

    async fn finish_save(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        save_and_compact(self, &snapshot).await
    }
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
    /// in `image`, its file written and synced in `write`.
    Written {
        written: W,
        bytes: usize,
        image: Duration,
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
            let begun = Instant::now();
            let Some(snapshot) = local.finish_image(image) else {
                let _ = done.send(Outcome::Spoiled);
                return;
            };
            let encoded = Instant::now();
            let _ = done.send(match S::write_save(save, &snapshot) {
                Ok(written) => Outcome::Written {
                    written,
                    bytes: snapshot.data.len(),
                    image: encoded - begun,
                    write: encoded.elapsed(),
                },
                Err(e) => Outcome::Failed(e),
            });
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
            image,
            write,
        }) => {
            info!(
                lsn = %position.lsn,
                image_ms = image.as_millis() as u64,
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
