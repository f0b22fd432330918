//! Peer processes (etcd, redis, PostgreSQL) for the comparison: each on its own temp data dir
//! and fixed high loopback ports, its output in a log file, stopped by its own PID (SIGKILL on
//! drop unless [`SpawnOptions::graceful_stop`] asks for a signal first; the benchmark never
//! needs their data afterwards). The failover workload kills an etcd member with SIGKILL and
//! starts it again on the same data dir ([`PeerProcess::restart`]). A peer that refuses to run
//! as root (PostgreSQL) runs as another user ([`SpawnOptions::run_as`]), its data dir handed to
//! that user, and is still this process's child, so its PID is the peer's own.
//!
//! The ports are fixed so a reader can reproduce a run by hand (and so etcd's members can name
//! each other up front); they sit well above the usual 2379/6379 to stay clear of any system
//! instance. A start waits, bounded, until the peer answers its own health check.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
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

/// A user to run a peer as: its numeric ids, looked up by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name (for messages).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl RunAs {
    /// The user called `user` from the system's user database.
    pub fn lookup(user: &str) -> Result<RunAs, PeerError> {
        let found = nix::unistd::User::from_name(user)
            .map_err(|e| PeerError::net(format!("looking up user {user}"), e))?
            .ok_or_else(|| {
                PeerError::Unavailable(format!("no user named {user} on this system"))
            })?;
        Ok(RunAs {
            user: user.into(),
            uid: found.uid.as_raw(),
            gid: found.gid.as_raw(),
        })
    }
}

/// How to start a peer, beyond its program and arguments (the default: as this user, no setup,
/// SIGKILL to stop).
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    /// Runs the peer and its setup commands as this user, after handing it the data dir.
    pub run_as: Option<RunAs>,
    /// Commands run to completion first, in order, as the same user, with `{dir}` in their
    /// arguments replaced like the peer's (PostgreSQL's `initdb`): program and arguments.
    pub setup: Vec<(String, Vec<String>)>,
    /// Stops the peer with this signal and waits this long for it to exit before SIGKILL.
    pub graceful_stop: Option<(Signal, Duration)>,
}

/// One running peer process.
#[derive(Debug)]
pub struct PeerProcess {
    name: String,
    program: String,
    package: String,
    args: Vec<String>,
    options: SpawnOptions,
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
        PeerProcess::spawn_with(name, program, package, args, SpawnOptions::default())
    }

    /// [`PeerProcess::spawn`] with `options`: the setup commands run first (a failure quotes
    /// the log), then the peer.
    pub fn spawn_with(
        name: &str,
        program: &str,
        package: &str,
        args: &[String],
        options: SpawnOptions,
    ) -> Result<PeerProcess, PeerError> {
        let root = TempRoot::new(name)?;
        let data = root.path().join("data");
        let start_error = |what: String, e: std::io::Error| PeerError::Start {
            name: name.into(),
            reason: format!("{what}: {e}"),
        };
        std::fs::create_dir(&data)
            .map_err(|e| start_error(format!("creating {}", data.display()), e))?;
        if let Some(user) = &options.run_as {
            std::os::unix::fs::chown(&data, Some(user.uid), Some(user.gid)).map_err(|e| {
                start_error(format!("handing {} to {}", data.display(), user.user), e)
            })?;
        }
        let log = root.path().join("output.log");
        let data_text = data.display().to_string();
        let expand = |args: &[String]| -> Vec<String> {
            args.iter()
                .map(|a| a.replace("{dir}", &data_text))
                .collect()
        };
        let args = expand(args);
        let options = SpawnOptions {
            setup: options
                .setup
                .iter()
                .map(|(program, args)| (program.clone(), expand(args)))
                .collect(),
            ..options
        };
        let mut peer = PeerProcess {
            name: name.into(),
            program: program.into(),
            package: package.into(),
            args,
            options,
            child: None,
            log,
            root,
        };
        for (program, args) in peer.options.setup.clone() {
            let status = peer
                .command(&program, &args)?
                .status()
                .map_err(|e| peer.spawn_error(&program, e))?;
            if !status.success() {
                return Err(peer.failed(format!("{program} exited with {status}")));
            }
        }
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
        let child = self
            .command(&self.program, &self.args)?
            .spawn()
            .map_err(|e| self.spawn_error(&self.program, e))?;
        self.child = Some(child);
        Ok(())
    }

    /// `program args`, output appended to the log, as the configured user.
    fn command(&self, program: &str, args: &[String]) -> Result<Command, PeerError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| PeerError::Start {
                name: self.name.clone(),
                reason: format!("opening {}: {e}", self.log.display()),
            })?;
        let stderr = file.try_clone().map_err(|e| PeerError::Start {
            name: self.name.clone(),
            reason: format!("cloning a file handle: {e}"),
        })?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr);
        if let Some(user) = &self.options.run_as {
            // std drops root's supplementary groups too when it sets the uid; the working dir
            // is one the user can enter (ours may not be).
            command
                .uid(user.uid)
                .gid(user.gid)
                .current_dir(self.root.path());
        }
        Ok(command)
    }

    fn spawn_error(&self, program: &str, e: std::io::Error) -> PeerError {
        match e.kind() {
            std::io::ErrorKind::NotFound => PeerError::Missing {
                program: program.into(),
                package: self.package.clone(),
            },
            _ => PeerError::Start {
                name: self.name.clone(),
                reason: format!("spawning {program}: {e}"),
            },
        }
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

    /// Sends `signal` to the process by its PID and reaps it once it exits; SIGKILL if it
    /// still runs after `grace`. Returns whether it exited by itself.
    pub fn shutdown(&mut self, signal: Signal, grace: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let Ok(pid) = i32::try_from(child.id()) else {
            self.stop();
            return false;
        };
        if kill(Pid::from_raw(pid), signal).is_err() {
            self.stop();
            return false;
        }
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(POLL);
        }
        self.stop();
        false
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
        match self.options.graceful_stop {
            Some((signal, grace)) => {
                self.shutdown(signal, grace);
            }
            None => self.stop(),
        }
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
