//! The state's memory of client writes, for exactly-once (see [`Origin`]).
//!
//! One record per client: its last committed sequence number, the entry that carried it and
//! that entry's (leader) timestamp. Records are forgotten deterministically, so every replica
//! forgets the same ones at the same LSN: when a client has not written for
//! [`ORIGIN_RETENTION_MS`] of the leader's clock, and, oldest first, when there are more than
//! [`ORIGINS_MAX`]. A client that retries a write after its record was forgotten would commit
//! it again; a month of silence (or a million newer clients) is the bound on that.
//!
//! [`Origin`]: crate::txn::Origin

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::{Lsn, TimestampMs};

/// How long, by the leader's clock, a client's record outlives its last write: 30 days.
pub const ORIGIN_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;
/// Most client records kept; the oldest go first.
pub const ORIGINS_MAX: usize = 1_000_000;

/// A client's last committed write: the state's memory for exactly-once writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginRecord {
    /// The client's sequence number of that write.
    pub seq: u64,
    /// The entry that carried it.
    pub lsn: Lsn,
    /// That entry's timestamp (the leader's clock).
    pub at: TimestampMs,
}

/// Every client's record, and the same ordered by age for forgetting.
#[derive(Clone, Debug, Default)]
pub(super) struct Origins {
    by_client: BTreeMap<String, OriginRecord>,
    /// `Box<str>` as in a collection's expiry queue: one set type for both keeps the browser
    /// module about 5 KB smaller.
    by_age: BTreeSet<(TimestampMs, Box<str>)>,
}

impl Origins {
    pub(super) fn get(&self, client: &str) -> Option<OriginRecord> {
        self.by_client.get(client).copied()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &OriginRecord)> {
        self.by_client.iter()
    }

    pub(super) fn last_client(&self) -> Option<&str> {
        self.by_client.last_key_value().map(|(c, _)| c.as_str())
    }

    /// Records a committed write, then forgets what the bounds say to, as of `record.at`.
    pub(super) fn record(&mut self, client: &str, record: OriginRecord) {
        if let Some(old) = self.by_client.insert(client.to_string(), record) {
            self.by_age.remove(&(old.at, Box::from(client)));
        }
        self.by_age.insert((record.at, Box::from(client)));
        self.forget(record.at);
    }

    /// Puts back a record read from a snapshot.
    pub(super) fn load(&mut self, client: String, record: OriginRecord) {
        self.by_age.insert((record.at, Box::from(client.as_str())));
        self.by_client.insert(client, record);
    }

    fn forget(&mut self, now: TimestampMs) {
        let horizon = TimestampMs(now.0.saturating_sub(ORIGIN_RETENTION_MS));
        while let Some((at, _)) = self.by_age.first() {
            if *at >= horizon && self.by_client.len() <= ORIGINS_MAX {
                break;
            }
            let (_, client) = self.by_age.pop_first().expect("checked above");
            self.by_client.remove(&*client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, at: u64) -> OriginRecord {
        OriginRecord {
            seq,
            lsn: Lsn(seq),
            at: TimestampMs(at),
        }
    }

    #[test]
    fn records_are_forgotten_after_the_retention_by_the_leaders_clock() {
        let mut origins = Origins::default();
        origins.record("a", record(1, 1_000));
        origins.record("b", record(1, 2_000));
        origins.record("a", record(2, 3_000));
        assert_eq!(origins.by_client.len(), 2);
        // "b" last wrote at 2 000: gone once the clock passes 2 000 + retention; "a" stays.
        origins.record("c", record(1, 2_001 + ORIGIN_RETENTION_MS));
        assert_eq!(origins.get("b"), None);
        assert_eq!(origins.get("a"), Some(record(2, 3_000)));
        assert_eq!(origins.by_age.len(), origins.by_client.len());
    }
}
