//! A cluster of real `cstore serve` processes on loopback, for failover tests and benchmarks.
//!
//! ```text
//!  ClusterProcesses::start(n) ─► n free ports ─► `serve --node-id i --cluster 1=…,2=…,…` each
//!     │                                            (the lowest id initializes the cluster)
//!     ├─ wait_leader(): polls every live member's /v1/status until they name one leader
//!     ├─ kill9(i) / restart(i): by the member's own PID, same data dir and port
//!     └─ wait_converged(): every live member applied the same (lsn, hash)
//! ```
//!
//! Members are [`ServerProcess`]es, so every process is stopped by its PID when the test ends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Client;
use crate::error::HarnessError;
use crate::proxy::{Proxies, member_addr};
use crate::server::{ServerOptions, ServerProcess, free_port};

/// How a cluster is started.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// `--election-timeout-ms`; `None` keeps the server's default.
    pub election_timeout_ms: Option<u64>,
    /// `--heartbeat-ms`; `None` keeps the server's default.
    pub heartbeat_ms: Option<u64>,
    /// `--auth-secret` of every member.
    pub auth_secret: Option<String>,
    /// Further `serve` arguments of every member.
    pub extra_args: Vec<String>,
    /// Keep the members' temp dirs.
    pub keep_dir: bool,
}

/// The members of one cluster, by index (member `i` has node id `i + 1`).
#[derive(Debug)]
pub struct ClusterProcesses {
    /// The members.
    pub members: Vec<ServerProcess>,
    /// The `--cluster` list they were started with.
    pub list: String,
    options: ClusterOptions,
    /// The proxies between members, when started with [`ClusterProcesses::start_with_proxies`].
    pub proxies: Option<Proxies>,
    /// An `admin` token when the members have a secret (for status polling).
    admin_token: Option<String>,
}

/// The `--cluster` list for members on `addrs` (ids 1, 2, …).
pub fn member_list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}=http://{addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// The options of member `node_id` of a cluster on `list`, listening on `addr`.
pub fn member_options(
    node_id: u64,
    addr: SocketAddr,
    list: &str,
    options: &ClusterOptions,
) -> ServerOptions {
    let mut extra = vec![
        "--node-id".to_string(),
        node_id.to_string(),
        "--cluster".to_string(),
        list.to_string(),
    ];
    if let Some(ms) = options.election_timeout_ms {
        extra.extend(["--election-timeout-ms".to_string(), ms.to_string()]);
    }
    if let Some(ms) = options.heartbeat_ms {
        extra.extend(["--heartbeat-ms".to_string(), ms.to_string()]);
    }
    extra.extend(options.extra_args.iter().cloned());
    ServerOptions {
        auth_secret: options.auth_secret.clone(),
        extra_args: extra,
        addr: Some(addr),
        keep_dir: options.keep_dir,
        ..ServerOptions::default()
    }
}

impl ClusterProcesses {
    /// Starts `n` members on fresh data dirs and free loopback ports.
    pub fn start(n: usize, options: ClusterOptions) -> Result<ClusterProcesses, HarnessError> {
        let addrs = (0..n).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        let list = member_list(&addrs);
        ClusterProcesses::start_on(&addrs, list, options, None)
    }

    /// Starts `n` members, each on its own loopback IP (127.0.1.id) behind a proxy through
    /// which the others reach it (see `proxy.rs`), so links between members can be cut.
    pub fn start_with_proxies(
        n: usize,
        options: ClusterOptions,
    ) -> Result<ClusterProcesses, HarnessError> {
        let targets = (1..=n as u64)
            .map(member_addr)
            .collect::<Result<Vec<_>, _>>()?;
        let proxies = Proxies::start(&targets)?;
        let list = member_list(&proxies.addrs);
        ClusterProcesses::start_on(&targets, list, options, Some(proxies))
    }

    /// Starts member `i + 1` listening on `addrs[i]`, every one with the member list `list`.
    fn start_on(
        addrs: &[SocketAddr],
        list: String,
        options: ClusterOptions,
        proxies: Option<Proxies>,
    ) -> Result<ClusterProcesses, HarnessError> {
        let members = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                ServerProcess::start(member_options(i as u64 + 1, *addr, &list, &options))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let admin_token = admin_token(&members, &options)?;
        Ok(ClusterProcesses {
            members,
            list,
            options,
            proxies,
            admin_token,
        })
    }

    /// The proxies (panics when the cluster was started without them).
    pub fn links(&self) -> &Proxies {
        self.proxies.as_ref().expect("started with proxies")
    }

    /// The options the members run with.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// A client of member `i`.
    pub fn client(&self, i: usize) -> Client {
        self.members[i].client()
    }

    /// Member `i`'s `/v1/status`, or `None` when it does not answer (down, or killed).
    pub fn status(&self, i: usize) -> Option<Value> {
        if !self.members[i].is_running() {
            return None;
        }
        let mut client = Client::with_timeout_ms(self.members[i].url(), 1_000);
        if let Some(token) = &self.admin_token {
            client = client.with_token(token);
        }
        let reply = client.get("/v1/status").ok()?;
        (reply.status == 200).then(|| reply.json())
    }

    /// Indexes of the members that run.
    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_running())
            .collect()
    }

    /// Waits until every live member names the same leader, which is live and says it leads;
    /// returns its index.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.agreed_leader() {
                return Some(leader);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn agreed_leader(&self) -> Option<usize> {
        let mut named = None;
        for i in self.live() {
            let status = self.status(i)?;
            let leader: usize = status["leader_id"].as_str()?.parse::<usize>().ok()?;
            if named.is_some_and(|n| n != leader) {
                return None;
            }
            named = Some(leader);
        }
        let index = named?.checked_sub(1)?;
        let status = self.status(index)?;
        (status["role"] == "leader").then_some(index)
    }

    /// Waits until every live member has applied the same entry (same LSN and hash) at or
    /// after `min_lsn`; returns that `(lsn, hash)`.
    pub fn wait_converged(&self, min_lsn: u64, timeout: Duration) -> Option<(u64, String)> {
        let started = Instant::now();
        loop {
            let positions: Option<Vec<(u64, String)>> = self
                .live()
                .into_iter()
                .map(|i| {
                    let s = self.status(i)?;
                    Some((
                        s["applied_lsn"].as_u64()?,
                        s["applied_hash"].as_str()?.to_string(),
                    ))
                })
                .collect();
            if let Some(positions) = positions
                && let Some(first) = positions.first()
                && first.0 >= min_lsn
                && positions.iter().all(|p| p == first)
            {
                return Some(first.clone());
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every member's stderr, for failure messages.
    pub fn all_stderr(&self) -> String {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("--- member {} ---\n{}", i + 1, tail(&m.all_stderr(), 4_000)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn admin_token(
    members: &[ServerProcess],
    options: &ClusterOptions,
) -> Result<Option<String>, HarnessError> {
    match (&options.auth_secret, members.first()) {
        (Some(_), Some(member)) => Ok(Some(member.mint_token(&["admin"], "24h")?)),
        _ => Ok(None),
    }
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
