//! Injected disk faults: the seam that lets tests make the WAL's own file calls fail the way a
//! failing or full disk does (EIO from `fdatasync`, ENOSPC from `write`), without a real
//! failing disk.
//!
//! A [`FaultPlan`] is a list of rules `<op>_<error>_after:N[xCOUNT]`: the call of `op` after
//! the first `N` succeeded fails with `error`, and so do the `COUNT - 1` after it (all later
//! ones without `xCOUNT`). Ops are `write` (an append's write), `fsync` (an append's
//! `fdatasync`) and `snapshot` (writing a snapshot's temp file); errors are `eio` and `enospc`.
//! An injected ENOSPC on `write` first writes half of the bytes, as a real full disk does, so
//! the code that cuts partial records is exercised too.
//!
//! The server reads a plan from the `CSTORE_FAULT` environment variable, in debug builds only
//! (`cfg(debug_assertions)`): a release binary never fails on purpose. Tests of the library set
//! one with [`crate::wal::FileStore::inject_faults`].
//!
//! ```text
//! CSTORE_FAULT=fsync_eio_after:3            the 4th append's fdatasync fails with EIO
//! CSTORE_FAULT=write_enospc_after:5x2       the 6th and 7th appends' writes fail with ENOSPC
//! CSTORE_FAULT=snapshot_enospc_after:0x1    the first snapshot write fails with ENOSPC
//! ```

use std::io;

/// The environment variable a debug server reads its plan from.
pub const FAULT_ENV: &str = "CSTORE_FAULT";

/// A file call that a rule can make fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// The `write` of an append batch.
    Write,
    /// The `fdatasync` of an append batch.
    Fsync,
    /// Writing a snapshot's temp file (before its fsync and rename).
    Snapshot,
}

/// The error a rule injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: no space left on the device.
    Enospc,
}

impl FaultError {
    /// The `io::Error` the OS would have returned.
    pub fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            FaultError::Eio => libc_errno::EIO,
            FaultError::Enospc => libc_errno::ENOSPC,
        })
    }
}

/// Linux errno values (the same on every Unix this module runs on).
mod libc_errno {
    pub const EIO: i32 = 5;
    pub const ENOSPC: i32 = 28;
}

/// One rule of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// Which call fails.
    pub op: FaultOp,
    /// With which error.
    pub error: FaultError,
    /// How many calls of `op` succeed first.
    pub after: u64,
    /// How many calls fail from then on.
    pub count: u64,
}

/// A parse failure of a plan, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad fault rule {0:?}: use <write|fsync|snapshot>_<eio|enospc>_after:N[xCOUNT], comma-separated"
)]
pub struct BadFaultPlan(pub String);

/// The rules and how many calls of each op were made so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    rules: Vec<FaultRule>,
    /// Calls made so far, by op: write, fsync, snapshot.
    calls: [u64; 3],
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// Parses `rule[,rule…]`.
    pub fn parse(text: &str) -> Result<FaultPlan, BadFaultPlan> {
        let mut rules = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            rules.push(parse_rule(part).ok_or_else(|| BadFaultPlan(part.to_string()))?);
        }
        Ok(FaultPlan {
            rules,
            calls: [0; 3],
        })
    }

    /// The plan from `CSTORE_FAULT` in a debug build; none in a release build, or when unset.
    /// A plan that does not parse is a mistake in a test: it panics rather than test nothing.
    pub fn from_env() -> FaultPlan {
        if !cfg!(debug_assertions) {
            return FaultPlan::none();
        }
        match std::env::var(FAULT_ENV) {
            Ok(text) => {
                let plan = FaultPlan::parse(&text).unwrap_or_else(|e| panic!("{FAULT_ENV}: {e}"));
                tracing::warn!(plan = %text, "injected disk faults are on ({FAULT_ENV})");
                plan
            }
            Err(_) => FaultPlan::none(),
        }
    }

    /// Counts a call of `op`; returns the error it must fail with, if a rule says so.
    pub fn check(&mut self, op: FaultOp) -> Option<io::Error> {
        if self.rules.is_empty() {
            return None;
        }
        let slot = &mut self.calls[op as usize];
        let call = *slot;
        *slot += 1;
        self.rules
            .iter()
            .find(|r| r.op == op && call >= r.after && call - r.after < r.count)
            .map(|r| r.error.to_io())
    }
}

fn parse_rule(text: &str) -> Option<FaultRule> {
    let (name, numbers) = text.split_once("_after:")?;
    let (op, error) = name.split_once('_')?;
    let op = match op {
        "write" => FaultOp::Write,
        "fsync" => FaultOp::Fsync,
        "snapshot" => FaultOp::Snapshot,
        _ => return None,
    };
    let error = match error {
        "eio" => FaultError::Eio,
        "enospc" => FaultError::Enospc,
        _ => return None,
    };
    let (after, count) = match numbers.split_once('x') {
        Some((after, count)) => (after.parse().ok()?, count.parse().ok()?),
        None => (numbers.parse().ok()?, u64::MAX),
    };
    Some(FaultRule {
        op,
        error,
        after,
        count,
    })
}

/// True when `error` says the device is out of space or quota (`ENOSPC`, `EDQUOT`).
pub fn is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_fire_in_their_window() {
        let mut plan = FaultPlan::parse("write_enospc_after:2x2, fsync_eio_after:1").unwrap();
        let writes: Vec<bool> = (0..6)
            .map(|_| plan.check(FaultOp::Write).is_some())
            .collect();
        assert_eq!(writes, [false, false, true, true, false, false]);
        assert!(plan.check(FaultOp::Fsync).is_none());
        for _ in 0..3 {
            let error = plan.check(FaultOp::Fsync).expect("every later fsync fails");
            assert_eq!(error.raw_os_error(), Some(5));
            assert!(!is_full(&error));
        }
        assert!(plan.check(FaultOp::Snapshot).is_none());
        assert!(is_full(&FaultError::Enospc.to_io()));
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            "fsync_eio",
            "fsync_eio_after:",
            "disk_eio_after:1",
            "fsync_ebusy_after:1",
            "fsync_eio_after:1x",
            "fsync_eio_after:-1",
        ] {
            assert!(FaultPlan::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(FaultPlan::parse("").unwrap(), FaultPlan::none());
    }
}
