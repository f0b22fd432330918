//! `cstore backup` and `cstore restore` as processes: run, print one JSON line on success,
//! `error[code]: message` on stderr and a distinct exit code on failure.

use std::process::ExitCode;
use std::time::Instant;

use cstore_core::error::ErrorCode;
use serde_json::json;

use super::{BackupError, BackupSource, RestoreTarget, backup, restore, time};
use crate::cli::{BackupArgs, RestoreArgs};

/// Runs `cstore backup`.
pub fn run_backup(args: BackupArgs) -> ExitCode {
    let started = Instant::now();
    let result = BackupSource::parse(&args.from).and_then(|source| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| {
                BackupError::Storage(cstore_core::storage::StorageError::Io(e.to_string()))
            })?;
        runtime.block_on(backup(&source, &args.to, args.token.clone()))
    });
    match result {
        Ok(manifest) => {
            let seconds = started.elapsed().as_secs_f64();
            let entries = manifest.last_lsn - manifest.base_lsn;
            println!(
                "{}",
                json!({
                    "backup": args.to.display().to_string(),
                    "source": manifest.source,
                    "snapshot_lsn": manifest.snapshot.as_ref().map(|s| s.lsn),
                    "base_lsn": manifest.base_lsn,
                    "last_lsn": manifest.last_lsn,
                    "last_hash": manifest.last_hash,
                    "entries": entries,
                    "first_entry_time": manifest.first_entry_time,
                    "last_entry_time": manifest.last_entry_time,
                    "seconds": seconds,
                    "entries_per_s": entries as f64 / seconds.max(1e-9),
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Runs `cstore restore`.
pub fn run_restore(args: RestoreArgs) -> ExitCode {
    let started = Instant::now();
    let result = RestoreTarget::from_flags(args.to_lsn, args.to_time.as_deref())
        .and_then(|target| restore(&args.from, &args.data_dir, target, args.force));
    match result {
        Ok(restored) => {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({
                    "data_dir": args.data_dir.display().to_string(),
                    "lsn": restored.lsn.0,
                    "hash": restored.hash.to_hex(),
                    "state_hash": restored.state_hash.to_hex(),
                    "entries": restored.entries,
                    "time": time::format_rfc3339_ms(restored.time_ms),
                    "replaced": restored.replaced.map(|p| p.display().to_string()),
                    "seconds": seconds,
                    "entries_per_s": restored.entries as f64 / seconds.max(1e-9),
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(error: &BackupError) -> ExitCode {
    eprintln!("error[{}]: {error}", error.code());
    ExitCode::from(error.exit_code())
}
