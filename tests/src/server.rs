//! One `cstore serve` process under test: started on a free loopback port with a fresh data dir,
//! stopped by its PID (SIGKILL or SIGTERM), restarted on the same data dir and port.
//!
//! ```text
//!   start(opts) ─► spawn ─► poll /v1/health ──► Healthy ──► kill9() / terminate() ─► stopped
//!                    ▲           │ exited early: Exited{status, stderr}                 │
//!                    └───────────┴──────────────── restart() / start_again() ◄──────────┘
//! ```
//!
//! Every wait is bounded, and a failure carries the server's stderr. The child handle is held
//! (and reaped) by this type only, so the PID it signals can never belong to another process.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::binary::cstore_binary;
use crate::client::{Client, REQUEST_TIMEOUT_MS};
use crate::dirs::TempRoot;
use crate::error::HarnessError;

/// How often readiness and exit are polled.
const POLL_MS: u64 = 10;
/// Bound on one health probe.
const PROBE_TIMEOUT_MS: u64 = 1_000;
/// Attempts at a first start when the chosen port was taken in the meantime.
const PORT_ATTEMPTS_MAX: usize = 3;

/// How to start the server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `--auth-secret`: require tokens signed with this secret.
    pub auth_secret: Option<String>,
    /// `--checkpoint-every`: entries between snapshots.
    pub checkpoint_every: Option<u64>,
    /// `--follow`: run as a read replica of the leader at this `ws://…/v1/replicate` URL
    /// (see [`ServerOptions::follower_of`]).
    pub follow: Option<String>,
    /// `--follow-token`: the token a follower sends to its leader.
    pub follow_token: Option<String>,
    /// Further arguments after `serve ...`.
    pub extra_args: Vec<String>,
    /// Extra environment for the process.
    pub env: Vec<(String, String)>,
    /// Bound on waiting for `/v1/health` after a start.
    pub ready_timeout_ms: u64,
    /// The binary to run; default [`cstore_binary`].
    pub binary: Option<PathBuf>,
    /// Keep the temp dir (data and logs) after drop, and print its path.
    pub keep_dir: bool,
    /// Listen on this address instead of a free port chosen at start (cluster members must
    /// know each other's addresses before any of them starts).
    pub addr: Option<SocketAddr>,
    /// Serve HTTPS with this certificate chain and key (PEM files, passed as `--tls-cert` and
    /// `--tls-key`); the harness's clients trust `ca_pem`. URLs become `https://` / `wss://`.
    pub tls: Option<TlsFiles>,
}

/// The TLS files of a server under test.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// `--tls-cert`.
    pub cert: PathBuf,
    /// `--tls-key`.
    pub key: PathBuf,
    /// The PEM certificate clients trust (the CA, or the self-signed certificate itself).
    pub ca_pem: Vec<u8>,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            auth_secret: None,
            checkpoint_every: None,
            follow: None,
            follow_token: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            ready_timeout_ms: 10_000,
            binary: None,
            keep_dir: false,
            addr: None,
            tls: None,
        }
    }
}

impl ServerOptions {
    /// Options of a follower of `leader` (a leader or another follower, which relays).
    pub fn follower_of(leader: &ServerProcess) -> ServerOptions {
        ServerOptions {
            follow: Some(leader.replicate_url()),
            ..ServerOptions::default()
        }
    }
}

/// What a start led to.
#[derive(Debug)]
pub enum StartOutcome {
    /// `/v1/health` answered 200.
    Healthy,
    /// The process exited before it was healthy.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr.
        stderr: String,
    },
}

/// A running (or stopped) server process and its temp dir.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    addr: SocketAddr,
    binary: PathBuf,
    options: ServerOptions,
    starts: u32,
    probe: Client,
    // Dropped last: the process is dead before its files go.
    root: TempRoot,
}

impl ServerProcess {
    /// Starts a server on a fresh data dir and waits until it is healthy.
    pub fn start(options: ServerOptions) -> Result<ServerProcess, HarnessError> {
        let binary = match &options.binary {
            Some(path) => path.clone(),
            None => cstore_binary()?,
        };
        let mut root = TempRoot::new("server")?;
        if options.keep_dir {
            root.keep();
        }
        for dir in ["data", "logs"] {
            let path = root.path().join(dir);
            std::fs::create_dir(&path)
                .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
        }
        let fixed_addr = options.addr;
        let addr = match fixed_addr {
            Some(addr) => addr,
            None => free_port()?,
        };
        let probe = probe_client(addr, &options);
        let mut server = ServerProcess {
            child: None,
            addr,
            binary,
            options,
            starts: 0,
            probe,
            root,
        };
        for attempt in 1..=PORT_ATTEMPTS_MAX {
            match server.start_again()? {
                StartOutcome::Healthy => return Ok(server),
                StartOutcome::Exited { stderr, .. }
                    if attempt < PORT_ATTEMPTS_MAX
                        && port_taken(&stderr)
                        && fixed_addr.is_none() =>
                {
                    server.addr = free_port()?;
                    server.probe = probe_client(server.addr, &server.options);
                }
                StartOutcome::Exited { status, stderr } => {
                    return Err(HarnessError::NotReady {
                        reason: format!("exited with {status}"),
                        stderr,
                    });
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The options of the next start, to change (arguments, environment) between starts.
    pub fn options_mut(&mut self) -> &mut ServerOptions {
        &mut self.options
    }

    /// Starts the stopped server again on the same data dir and port, and waits until healthy.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        match self.start_again()? {
            StartOutcome::Healthy => Ok(()),
            StartOutcome::Exited { status, stderr } => Err(HarnessError::NotReady {
                reason: format!("exited with {status}"),
                stderr,
            }),
        }
    }

    /// Starts the stopped server again and reports whether it became healthy or exited; an
    /// error only if it did neither within the bound (it is then killed).
    pub fn start_again(&mut self) -> Result<StartOutcome, HarnessError> {
        if self.child.is_some() {
            return Err(HarnessError::State("the server is already running"));
        }
        self.starts += 1;
        let stdout = self.create_log("stdout")?;
        let stderr = self.create_log("stderr")?;
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(self.addr.to_string());
        if let Some(secret) = &self.options.auth_secret {
            command.arg("--auth-secret").arg(secret);
        }
        if let Some(every) = self.options.checkpoint_every {
            command.arg("--checkpoint-every").arg(every.to_string());
        }
        if let Some(url) = &self.options.follow {
            command.arg("--follow").arg(url);
        }
        if let Some(token) = &self.options.follow_token {
            command.arg("--follow-token").arg(token);
        }
        if let Some(tls) = &self.options.tls {
            command
                .arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
        }
        command
            .args(&self.options.extra_args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = command
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawning {command:?}"), e))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<StartOutcome, HarnessError> {
        let started = Instant::now();
        let timeout = Duration::from_millis(self.options.ready_timeout_ms);
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(StartOutcome::Exited {
                    status,
                    stderr: self.stderr(),
                });
            }
            if let Ok(reply) = self.probe.get("/v1/health")
                && reply.status == 200
            {
                return Ok(StartOutcome::Healthy);
            }
            if started.elapsed() > timeout {
                let _ = self.kill9();
                return Err(HarnessError::NotReady {
                    reason: format!(
                        "no healthy /v1/health on {} within {} ms",
                        self.addr, self.options.ready_timeout_ms
                    ),
                    stderr: self.stderr(),
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Kills the process with SIGKILL (by its PID) and reaps it.
    pub fn kill9(&mut self) -> Result<ExitStatus, HarnessError> {
        let mut child = self
            .child
            .take()
            .ok_or(HarnessError::State("the server is not running"))?;
        child
            .kill()
            .map_err(|e| HarnessError::io(format!("SIGKILL to pid {}", child.id()), e))?;
        child
            .wait()
            .map_err(|e| HarnessError::io(format!("reaping pid {}", child.id()), e))
    }

    /// Sends SIGTERM (by PID) and waits up to `timeout_ms` for the process to exit. On timeout
    /// the process is killed with SIGKILL and the error says so.
    pub fn terminate(&mut self, timeout_ms: u64) -> Result<ExitStatus, HarnessError> {
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(timeout_ms)
    }

    /// Sends `signal` to the process by its PID.
    pub fn signal(&self, signal: Signal) -> Result<(), HarnessError> {
        let pid = self
            .pid()
            .ok_or(HarnessError::State("the server is not running"))?;
        let raw = i32::try_from(pid).expect("a PID fits in i32");
        kill(Pid::from_raw(raw), signal).map_err(|source| HarnessError::Signal { pid, source })
    }

    /// Waits up to `timeout_ms` for the process to exit by itself; kills it past the bound.
    pub fn wait_exit(&mut self, timeout_ms: u64) -> Result<ExitStatus, HarnessError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            if started.elapsed() > Duration::from_millis(timeout_ms) {
                let pid = self.pid().unwrap_or(0);
                let _ = self.kill9();
                return Err(HarnessError::ExitTimeout {
                    pid,
                    timeout_ms,
                    stderr: self.stderr(),
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// The exit status if the process has exited (then it is reaped and no longer running).
    pub fn try_reap(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        let Some(child) = self.child.as_mut() else {
            return Err(HarnessError::State("the server is not running"));
        };
        let status = child
            .try_wait()
            .map_err(|e| HarnessError::io(format!("polling pid {}", child.id()), e))?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// The PID while the process is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process has not been reaped.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The loopback address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (`https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// `ws://<addr>/v1/replicate` (`wss://` with TLS): what a follower of this server follows.
    pub fn replicate_url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/v1/replicate", self.addr)
    }

    /// A client for this server, without a token (trusting its TLS certificate, if any).
    pub fn client(&self) -> Client {
        match &self.options.tls {
            Some(tls) => Client::with_root_pem(self.url(), &tls.ca_pem, REQUEST_TIMEOUT_MS),
            None => Client::new(self.url()),
        }
    }

    /// The server's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The temp dir holding `data/` and `logs/`.
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// The binary being run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The options it was started with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The stderr of the latest start.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts, "stderr")).unwrap_or_default()
    }

    /// The stderr of every start so far, each under a header line.
    pub fn all_stderr(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let text = std::fs::read_to_string(self.log_path(n, "stderr")).unwrap_or_default();
                format!("--- start {n} ---\n{text}")
            })
            .collect()
    }

    /// Mints a token with the server's `--auth-secret` through `cstore token create`.
    pub fn mint_token(&self, scopes: &[&str], ttl: &str) -> Result<String, HarnessError> {
        let secret = self
            .options
            .auth_secret
            .as_deref()
            .ok_or(HarnessError::State("the server has no --auth-secret"))?;
        crate::token::mint_token(&self.binary, secret, scopes, ttl)
    }

    /// Keeps the temp dir after drop (prints its path).
    pub fn keep_dir(&mut self) {
        self.root.keep();
    }

    fn log_path(&self, start: u32, stream: &str) -> PathBuf {
        self.root
            .path()
            .join("logs")
            .join(format!("start-{start}.{stream}"))
    }

    fn create_log(&self, stream: &str) -> Result<std::fs::File, HarnessError> {
        let path = self.log_path(self.starts, stream);
        std::fs::File::create(&path)
            .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback address whose port was free a moment ago, for a server the test starts next.
///
/// The port is drawn at random below the kernel's ephemeral range and checked by binding it:
/// a port the kernel handed out for port 0 is handed out again, and the ephemeral range is
/// also where every outgoing connection of the tests running in parallel gets its source
/// port, so one of them could take it before the server binds it ("Address already in use",
/// seen under load). Port 0's answer is the fallback.
pub fn free_port() -> Result<SocketAddr, HarnessError> {
    use rand::Rng;
    const LOWEST: u16 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOWEST + 1_000 {
        let mut rng = rand::rng();
        for _ in 0..64 {
            let port = rng.random_range(LOWEST..ephemeral_low);
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                return listener
                    .local_addr()
                    .map_err(|e| HarnessError::io("reading the bound port", e));
            }
        }
    }
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError::io("binding port 0", e))?;
    listener
        .local_addr()
        .map_err(|e| HarnessError::io("reading the bound port", e))
}

fn probe_client(addr: SocketAddr, options: &ServerOptions) -> Client {
    match &options.tls {
        Some(tls) => {
            Client::with_root_pem(format!("https://{addr}"), &tls.ca_pem, PROBE_TIMEOUT_MS)
        }
        None => Client::with_timeout_ms(format!("http://{addr}"), PROBE_TIMEOUT_MS),
    }
}

fn port_taken(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    lower.contains("address already in use") || lower.contains("addrinuse")
}
