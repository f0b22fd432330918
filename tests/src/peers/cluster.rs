//! A cstore leader with native followers (`cstore serve --follow ws://leader/v1/replicate`),
//! written to with `?ack=replicas:N`: the replicated counterpart of a 3-member etcd cluster.
//!
//! Followers and replica acks are built in parallel with this benchmark, so the set-up checks
//! that each piece really works before a number is taken: the followers start and stay up,
//! the leader lists them in `/v1/status`, and one probe write with the ack policy succeeds.
//! Any missing piece becomes [`PeerError::Unavailable`] with the server's own words.

use std::time::{Duration, Instant};

use serde_json::json;

use super::error::PeerError;
use crate::error::HarnessError;
use crate::{ServerOptions, ServerProcess};

/// Bound on the leader seeing its followers.
const FOLLOWERS_TIMEOUT: Duration = Duration::from_secs(15);

/// A leader and its followers, stopped by PID on drop.
#[derive(Debug)]
pub struct CstoreCluster {
    leader: ServerProcess,
    followers: Vec<ServerProcess>,
}

impl CstoreCluster {
    /// Starts a leader and `followers` followers, then checks that a write with `ack` works.
    pub fn start(followers: usize, ack: &str) -> Result<CstoreCluster, PeerError> {
        let leader = ServerProcess::start(ServerOptions::default())?;
        let follow = format!("ws://{}/v1/replicate", leader.addr());
        let mut cluster = CstoreCluster {
            leader,
            followers: Vec::new(),
        };
        for i in 0..followers {
            let options = ServerOptions {
                extra_args: vec!["--follow".into(), follow.clone()],
                ..ServerOptions::default()
            };
            match ServerProcess::start(options) {
                Ok(follower) => cluster.followers.push(follower),
                Err(HarnessError::NotReady { reason, stderr }) => {
                    return Err(PeerError::Unavailable(format!(
                        "follower {i} {reason}: {}",
                        last_line(&stderr)
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        cluster.wait_for_followers(followers)?;
        let client = cluster.leader.client();
        let reply = client
            .post(&format!("/v1/c/bench?ack={ack}"), &json!({"probe": true}))
            .map_err(|e| PeerError::net("probe write", e))?;
        if !reply.is_success() {
            return Err(PeerError::Unavailable(format!(
                "a write with ack={ack} answers {}: {}",
                reply.status,
                reply.text().trim()
            )));
        }
        Ok(cluster)
    }

    /// The leader's base URL.
    pub fn leader_url(&self) -> String {
        self.leader.url()
    }

    /// PIDs of the leader and the followers.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(&self.leader)
            .chain(&self.followers)
            .filter_map(ServerProcess::pid)
            .collect()
    }

    fn wait_for_followers(&mut self, want: usize) -> Result<(), PeerError> {
        let started = Instant::now();
        loop {
            for (i, follower) in self.followers.iter_mut().enumerate() {
                if let Ok(Some(status)) = follower.try_reap() {
                    return Err(PeerError::Unavailable(format!(
                        "follower {i} exited with {status}: {}",
                        last_line(&follower.stderr())
                    )));
                }
            }
            let status = self
                .leader
                .client()
                .get("/v1/status")
                .map_err(|e| PeerError::net("the leader's /v1/status", e))?
                .json();
            let Some(replicas) = status["replicas"].as_array() else {
                return Err(PeerError::Unavailable(
                    "the leader's /v1/status has no `replicas` list".into(),
                ));
            };
            if replicas.len() >= want {
                return Ok(());
            }
            if started.elapsed() > FOLLOWERS_TIMEOUT {
                return Err(PeerError::Unavailable(format!(
                    "the leader lists {} of {want} followers after {} s",
                    replicas.len(),
                    FOLLOWERS_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The last non-empty line of a log, the usual place of a fatal error.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
}
