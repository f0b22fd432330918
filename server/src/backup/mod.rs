//! Online backup and point-in-time restore: `cstore backup` and `cstore restore`, and the
//! state at an earlier LSN behind `?as_of_lsn=`.
//!
//! A backup is a snapshot plus the log after it, in the server's own file formats, with a
//! manifest that pins the last entry's (lsn, hash):
//!
//! ```text
//!  cstore backup --from http://leader:7070 ─► follower session into DIR (snapshot + log) ─┐
//!  cstore backup --from DATA_DIR           ─► read-only copy of snapshot + segments ──────┤
//!                                                                                          ▼
//!                         re-read DIR strictly (crc, SHA-256, chain) ─► DIR/backup.json
//!
//!  cstore restore --from DIR --data-dir D [--to-lsn N | --to-time T]
//!    verify all of DIR against the manifest ─► resolve N ─► build D.restoring:
//!    install the snapshot, append entries ..=N, replay them onto the state (they must apply)
//!    ─► rename into D (an old D kept aside with --force) ─► print the state hash at N
//! ```
//!
//! Nothing is written to the restore target before the whole backup is verified, so a damaged
//! backup changes nothing on disk. `as_of.rs` answers reads at an LSN from the server's own
//! retained log with the same reader (`wal::reader`), replaying onto core's pure `apply`.

mod as_of;
mod command;
mod error;
mod manifest;
mod progress;
mod restore;
mod take;
pub mod time;
mod verify;

pub use as_of::{AS_OF_READS_MAX, AsOfError, state_at};
pub use command::{run_backup, run_restore};
pub use error::BackupError;
pub use manifest::{MANIFEST_FILE, Manifest};
pub use restore::{RestoreTarget, restore};
pub use take::{BackupSource, backup};
pub use verify::{Verified, verify};
