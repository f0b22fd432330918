//! Peer processes (etcd, redis) for the comparison: each on its own temp data dir and fixed
//! high loopback ports, its output in a log file, stopped by its own PID (SIGKILL on drop; the
//! benchmark never needs their data afterwards). The failover workload kills an etcd member
//! with SIGKILL and starts it again on the same data dir ([`PeerProcess::restart`]).
//!
//! The ports are fixed so a reader can reproduce a run by hand (and so etcd's members can name
//! each other up front); they sit well above the usual 2379/6379 to stay clear of any system
//! instance. A start waits, bounded, until the peer answers its own health check.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::PeerError;
use crate::dirs::TempRoot;

/// First client port of etcd members (member i listens on `ETCD_CLIENT_PORT + i`).
pub const ETCD_CLIENT_PORT: u16 = 23790;
/// First peer port of etcd members.
pub const ETCD_PEER_PORT: u16 = 23800;
/// The redis port.
pub const REDIS_PORT: u16 = 26379;
/// Bound on a peer becoming healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between health probes.
const POLL: Duration = Duration::from_millis(50);
/// Bytes of a peer's log quoted in an error.
const LOG_TAIL_BYTES: usize = 2000;

/// One running peer process.
#[derive(Debug)]
pub struct PeerProcess {
    name: String,
    program: String,
    package: String,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    // Dropped after the process is dead.
    root: TempRoot,
}

impl PeerProcess {
    /// Spawns `program args...` with its data under a fresh temp dir (`{dir}` in an argument
    /// is replaced by that dir's `data/`).
    pub fn spawn(
        name: &str,
        program: &str,
        package: &str,
        args: &[String],
    ) -> Result<PeerProcess, PeerError> {
        let root = TempRoot::new(name)?;
        let data = root.path().join("data");
        std::fs::create_dir(&data).map_err(|e| PeerError::Start {
            name: name.into(),
            reason: format!("creating {}: {e}", data.display()),
        })?;
        let log = root.path().join("output.log");
        let data_text = data.display().to_string();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{dir}", &data_text))
            .collect();
        let mut peer = PeerProcess {
            name: name.into(),
            program: program.into(),
            package: package.into(),
            args,
            child: None,
            log,
            root,
        };
        peer.launch()?;
        Ok(peer)
    }

    /// Starts the stopped process again with the same arguments and data dir (its output is
    /// appended to the same log). Does not wait for it: see [`PeerProcess::wait_ready`].
    pub fn restart(&mut self) -> Result<(), PeerError> {
        if self.child.is_some() {
            return Err(PeerError::Start {
                name: self.name.clone(),
                reason: "restart of a running process".into(),
            });
        }
        self.launch()
    }

    fn launch(&mut self) -> Result<(), PeerError> {
        let name = self.name.clone();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| PeerError::Start {
                name: name.clone(),
                reason: format!("opening {}: {e}", self.log.display()),
            })?;
        let stderr = file.try_clone().map_err(|e| PeerError::Start {
            name: name.clone(),
            reason: format!("cloning a file handle: {e}"),
        })?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => PeerError::Missing {
                    program: self.program.clone(),
                    package: self.package.clone(),
                },
                _ => PeerError::Start {
                    name,
                    reason: format!("spawning {}: {e}", self.program),
                },
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until `healthy()` is true; fails if the process exits or the bound passes.
    pub fn wait_ready(&mut self, mut healthy: impl FnMut() -> bool) -> Result<(), PeerError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.failed(format!("exited with {status}")));
            }
            if healthy() {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(
                    self.failed(format!("not healthy within {} s", READY_TIMEOUT.as_secs()))
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// True while the process has not been stopped (it may have exited by itself).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process by its PID (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The temp dir holding its data and log.
    pub fn root_dir(&self) -> &std::path::Path {
        self.root.path()
    }

    fn failed(&self, reason: String) -> PeerError {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut from = text.len().saturating_sub(LOG_TAIL_BYTES);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        PeerError::Start {
            name: self.name.clone(),
            reason: format!("{reason}\n--- log tail ---\n{}", &text[from..]),
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running etcd cluster of one or more members on loopback.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<PeerProcess>,
    client_urls: Vec<String>,
}

impl EtcdCluster {
    /// Starts `size` members with ports from `port_offset` up, and waits until all are healthy.
    pub fn start(size: u16, port_offset: u16) -> Result<EtcdCluster, PeerError> {
        assert!((1..=5).contains(&size), "1 to 5 members");
        let client = |i: u16| format!("http://127.0.0.1:{}", ETCD_CLIENT_PORT + port_offset + i);
        let peer = |i: u16| format!("http://127.0.0.1:{}", ETCD_PEER_PORT + port_offset + i);
        let initial: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer(i))).collect();
        let mut members = Vec::new();
        for i in 0..size {
            let args: Vec<String> = [
                "--name",
                &format!("m{i}"),
                "--data-dir",
                "{dir}",
                "--listen-client-urls",
                &client(i),
                "--advertise-client-urls",
                &client(i),
                "--listen-peer-urls",
                &peer(i),
                "--initial-advertise-peer-urls",
                &peer(i),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-token",
                "cstore-bench",
                "--initial-cluster-state",
                "new",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            members.push(PeerProcess::spawn(
                &format!("etcd-m{i}"),
                "etcd",
                "etcd-server",
                &args,
            )?);
        }
        let http = blocking_http();
        let client_urls: Vec<String> = (0..size).map(client).collect();
        for (member, url) in members.iter_mut().zip(&client_urls) {
            member.wait_ready(|| etcd_healthy(&http, url))?;
        }
        Ok(EtcdCluster {
            members,
            client_urls,
        })
    }

    /// The client URL of the current raft leader (writes sent elsewhere are forwarded to it).
    pub fn leader_url(&self) -> Result<String, PeerError> {
        Ok(self.client_urls[self.leader_index()?].clone())
    }

    /// The index of the member that leads now, asking every running member's
    /// `/v3/maintenance/status` (the first that says it leads).
    pub fn leader_index(&self) -> Result<usize, PeerError> {
        let http = blocking_http();
        for (i, url) in self.client_urls.iter().enumerate() {
            if !self.members[i].is_running() {
                continue;
            }
            let status = etcd_status(&http, url)?;
            let member = status["header"]["member_id"].as_str();
            if member.is_some() && member == status["leader"].as_str() {
                return Ok(i);
            }
        }
        Err(PeerError::net(
            "finding the etcd leader",
            "no member says it leads",
        ))
    }

    /// The client URLs of the members, by index.
    pub fn client_urls(&self) -> &[String] {
        &self.client_urls
    }

    /// PIDs of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(PeerProcess::pid).collect()
    }

    /// Member `i`'s PID while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].pid()
    }

    /// Kills member `i` with SIGKILL by its PID and reaps it.
    pub fn kill9(&mut self, i: usize) {
        self.members[i].stop();
    }

    /// Starts the killed member `i` again on its data dir (it rejoins the cluster it was in)
    /// and waits until it answers its health check.
    pub fn restart(&mut self, i: usize) -> Result<(), PeerError> {
        self.members[i].restart()?;
        let http = blocking_http();
        let url = self.client_urls[i].clone();
        self.members[i].wait_ready(|| etcd_healthy(&http, &url))
    }

    /// Waits until every member answers its health check and all name the same leader, one of
    /// them; returns its index. `None` when that does not happen within `timeout`.
    pub fn wait_healthy(&self, timeout: Duration) -> Option<usize> {
        let http = blocking_http();
        let started = Instant::now();
        loop {
            if let Some(leader) = self.agreed_leader(&http) {
                return Some(leader);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    fn agreed_leader(&self, http: &reqwest::blocking::Client) -> Option<usize> {
        let mut leader = None;
        let mut ids = Vec::with_capacity(self.client_urls.len());
        for (member, url) in self.members.iter().zip(&self.client_urls) {
            if !member.is_running() || !etcd_healthy(http, url) {
                return None;
            }
            let status = etcd_status(http, url).ok()?;
            let named = status["leader"].as_str()?.to_string();
            if named == "0" || leader.as_ref().is_some_and(|l| *l != named) {
                return None;
            }
            leader = Some(named);
            ids.push(status["header"]["member_id"].as_str()?.to_string());
        }
        let leader = leader?;
        ids.iter().position(|id| *id == leader)
    }
}

/// A member's `/v3/maintenance/status` (ids are strings in the JSON gateway).
fn etcd_status(http: &reqwest::blocking::Client, url: &str) -> Result<Value, PeerError> {
    http.post(format!("{url}/v3/maintenance/status"))
        .body("{}")
        .send()
        .and_then(|r| r.json())
        .map_err(|e| PeerError::net(format!("etcd status at {url}"), e))
}

/// Starts redis with an append-only file synced on every write (`appendfsync always`), no RDB
/// snapshots, on [`REDIS_PORT`].
pub fn start_redis() -> Result<PeerProcess, PeerError> {
    let args: Vec<String> = [
        "--port",
        &REDIS_PORT.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        "{dir}",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--daemonize",
        "no",
        "--logfile",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut redis = PeerProcess::spawn("redis", "redis-server", "redis-server", &args)?;
    let addr = redis_addr();
    redis.wait_ready(|| redis_pings(addr))?;
    Ok(redis)
}

/// The redis address.
pub fn redis_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], REDIS_PORT))
}

fn blocking_http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a blocking HTTP client builds")
}

fn etcd_healthy(http: &reqwest::blocking::Client, url: &str) -> bool {
    http.get(format!("{url}/health"))
        .send()
        .and_then(|r| r.json::<Value>())
        .is_ok_and(|v| v["health"] == "true")
}

fn redis_pings(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
