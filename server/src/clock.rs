//! The wall clock, read in one place. Core never reads a clock; the leader reads this one when
//! it stamps a batch of entries.

use std::time::{SystemTime, UNIX_EPOCH};

use cstore_core::TimestampMs;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    TimestampMs(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}
