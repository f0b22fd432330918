//! A 3-member cstore Raft cluster (`cstore serve --node-id N --cluster 1=…,2=…,3=…`) for the
//! peer workloads: the counterpart of a 3-member etcd cluster, started through the test
//! harness's [`ClusterProcesses`] (free loopback ports, fresh data dirs, stopped by PID).
//!
//! ```text
//!  RaftCluster::start(3) ─► ClusterProcesses::start ─► wait_leader ─► probe write on the leader
//!        │                                                          (201 or "not available")
//!        ├─ leader(): index of the member every live member names as leader
//!        └─ members: ServerProcess (kill9 / restart by its own PID)
//! ```
//!
//! Cluster mode is built in parallel with this benchmark, so each step checks that it works
//! before a number is taken; a missing piece becomes [`PeerError::Unavailable`] with the
//! server's own words (the last line of its stderr).

use std::time::Duration;

use serde_json::{Value, json};

use super::error::PeerError;
use crate::cluster::{ClusterOptions, ClusterProcesses};
use crate::error::HarnessError;

/// Bound on the members agreeing on a leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on every member applying the same entry.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running cstore Raft cluster, stopped by PID on drop.
#[derive(Debug)]
pub struct RaftCluster {
    /// The members (member `i` has node id `i + 1`).
    pub processes: ClusterProcesses,
}

impl RaftCluster {
    /// Starts `members` members with the server's default timings, waits for a leader and
    /// checks that a write on it answers 201.
    pub fn start(members: usize) -> Result<RaftCluster, PeerError> {
        Self::start_with(members, ClusterOptions::default())
    }

    /// [`RaftCluster::start`] with explicit options.
    pub fn start_with(members: usize, options: ClusterOptions) -> Result<RaftCluster, PeerError> {
        let processes = ClusterProcesses::start(members, options).map_err(|e| match e {
            HarnessError::NotReady { reason, stderr } => {
                PeerError::Unavailable(format!("a cluster member {reason}: {}", last_line(&stderr)))
            }
            other => other.into(),
        })?;
        let cluster = RaftCluster { processes };
        let leader = cluster.leader()?;
        let reply = cluster
            .processes
            .client(leader)
            .post("/v1/c/probe", &json!({"probe": true}))
            .map_err(|e| PeerError::net("probe write on the leader", e))?;
        if !reply.is_success() {
            return Err(PeerError::Unavailable(format!(
                "a write on the leader answers {}: {}",
                reply.status,
                reply.text().trim()
            )));
        }
        Ok(cluster)
    }

    /// The index of the member all live members name as leader (waits up to
    /// [`LEADER_TIMEOUT`]).
    pub fn leader(&self) -> Result<usize, PeerError> {
        self.processes.wait_leader(LEADER_TIMEOUT).ok_or_else(|| {
            PeerError::Unavailable(format!(
                "the members agree on no leader within {} s: {}",
                LEADER_TIMEOUT.as_secs(),
                self.last_lines()
            ))
        })
    }

    /// Base URLs of the members, by index.
    pub fn urls(&self) -> Vec<String> {
        self.processes.members.iter().map(|m| m.url()).collect()
    }

    /// PIDs of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.processes
            .members
            .iter()
            .filter_map(|m| m.pid())
            .collect()
    }

    /// Member `i`'s `/v1/status`, when it answers.
    pub fn status(&self, i: usize) -> Option<Value> {
        self.processes.status(i)
    }

    /// Waits until there is a leader and every live member applied the leader's last entry
    /// (same LSN and hash); returns the leader's index.
    pub fn wait_healthy(&self) -> Result<usize, PeerError> {
        let leader = self.leader()?;
        let last = self
            .status(leader)
            .and_then(|s| s["last_lsn"].as_u64())
            .ok_or_else(|| PeerError::net("the leader's /v1/status", "no last_lsn"))?;
        self.processes
            .wait_converged(last, CONVERGE_TIMEOUT)
            .ok_or_else(|| {
                PeerError::net(
                    "waiting for the members to converge",
                    format!("not at LSN {last} within {} s", CONVERGE_TIMEOUT.as_secs()),
                )
            })?;
        Ok(leader)
    }

    /// The last stderr line of each member, for an error message.
    pub fn last_lines(&self) -> String {
        self.processes
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("member {}: {}", i + 1, last_line(&m.stderr())))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The line of a log that says what went wrong: the last one that mentions an error, else the
/// last non-empty one.
pub fn last_line(text: &str) -> &str {
    let mut lines = text.lines().rev().filter(|l| !l.trim().is_empty());
    let last = lines.clone().next();
    lines
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or(last)
        .unwrap_or("(no output)")
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_line_wins_over_a_trailing_hint() {
        let clap = "error: invalid value '30' for '--x'\n\nFor more information, try '--help'.\n";
        assert_eq!(last_line(clap), "error: invalid value '30' for '--x'");
        assert_eq!(last_line("a\nb\n\n"), "b");
        assert_eq!(last_line(""), "(no output)");
    }
}
