//! Reading a member's Prometheus text (`GET /metrics`): the cluster's election counters, for
//! the soak's "no election after the first one" check.
//!
//! A counter that was never incremented may be absent from the text (the exporter registers
//! it on first use): absent reads as 0.

use std::fmt;

use serde_json::Value;

/// Elections this member started (it became a candidate).
pub const ELECTIONS_STARTED: &str = "cstore_cluster_elections_started_total";
/// Elections this member won (it became the leader).
pub const ELECTIONS_WON: &str = "cstore_cluster_elections_won_total";
/// Times this member saw a new leader.
pub const LEADER_CHANGES: &str = "cstore_cluster_leader_changes_total";
/// The member's Raft term.
pub const TERM: &str = "cstore_cluster_term";

/// The sum of every sample of `name` in Prometheus text (labels ignored); `None` when absent.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name 3`, `name{a="b"} 3`, or a longer name that merely starts with `name`.
        let rest = if let Some(labelled) = rest.strip_prefix('{') {
            match labelled.find('}') {
                Some(end) => &labelled[end + 1..],
                None => continue,
            }
        } else if rest.starts_with(char::is_whitespace) {
            rest
        } else {
            continue;
        };
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        *total.get_or_insert(0.0) += value;
    }
    total
}

/// One member's election counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Elections {
    /// [`ELECTIONS_STARTED`].
    pub started: u64,
    /// [`ELECTIONS_WON`].
    pub won: u64,
    /// [`LEADER_CHANGES`].
    pub leader_changes: u64,
    /// The term: from `/v1/status` when it answers, else the [`TERM`] gauge.
    pub term: u64,
}

impl Elections {
    /// Parses the counters out of `/metrics` text, with the term from `/v1/status` if given.
    pub fn parse(metrics: &str, status: Option<&Value>) -> Elections {
        let count = |name| sample(metrics, name).map_or(0, |v| v as u64);
        Elections {
            started: count(ELECTIONS_STARTED),
            won: count(ELECTIONS_WON),
            leader_changes: count(LEADER_CHANGES),
            term: status
                .and_then(|s| s["term"].as_u64())
                .unwrap_or_else(|| count(TERM)),
        }
    }

    /// How much each figure grew since `before` (0 where it did not).
    pub fn since(&self, before: &Elections) -> Elections {
        Elections {
            started: self.started.saturating_sub(before.started),
            won: self.won.saturating_sub(before.won),
            leader_changes: self.leader_changes.saturating_sub(before.leader_changes),
            term: self.term.saturating_sub(before.term),
        }
    }

    /// True when nothing grew.
    pub fn is_quiet(&self) -> bool {
        *self == Elections::default()
    }
}

impl fmt::Display for Elections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "elections started {}, won {}, leader changes {}, term {}",
            self.started, self.won, self.leader_changes, self.term
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE cstore_cluster_elections_started_total counter
cstore_cluster_elections_started_total 2
cstore_cluster_elections_started_total_extra 100
cstore_cluster_elections_won_total{node=\"1\"} 1
cstore_cluster_elections_won_total{node=\"2\"} 3
cstore_cluster_term 7
";

    #[test]
    fn samples_are_summed_by_exact_name() {
        assert_eq!(sample(TEXT, ELECTIONS_STARTED), Some(2.0));
        assert_eq!(sample(TEXT, ELECTIONS_WON), Some(4.0));
        assert_eq!(sample(TEXT, LEADER_CHANGES), None);
        let e = Elections::parse(TEXT, None);
        assert_eq!(
            e,
            Elections {
                started: 2,
                won: 4,
                leader_changes: 0,
                term: 7
            }
        );
        let later = Elections { started: 3, ..e };
        assert_eq!(later.since(&e).started, 1);
        assert!(!later.since(&e).is_quiet());
        assert!(e.since(&e).is_quiet());
    }
}
