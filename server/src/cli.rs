//! The command line: `cstore serve …` and `cstore token create …`.
//!
//! Every option of `serve` that an operator sets once per deployment can also come from the
//! environment (`CSTORE_DATA_DIR`, `CSTORE_LISTEN`, `CSTORE_AUTH_SECRET`, `CSTORE_FOLLOW_TOKEN`,
//! `CSTORE_DEMO_DIR`), so a secret never has to appear in a process listing.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::{Claims, Scope, TokenKey, WeakSecret};

/// Collection Store: a replicated JSON document store.
#[derive(Debug, Parser)]
#[command(name = "cstore", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per process: the size of `ServeArgs` does not matter, boxing it would.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the leader; with --follow, a read replica).
    Serve(ServeArgs),
    /// Manage access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Look at and change a cluster: status, leadership transfer, membership.
    Cluster(ClusterArgs),
    /// Take a consistent backup (a snapshot and the log after it) while writes go on.
    Backup(BackupArgs),
    /// Rebuild a data directory from a backup, at its end or an earlier point (LSN or time).
    Restore(RestoreArgs),
}

/// Options of `cstore backup` (see docs/BACKUP.md).
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// A server's http://host:port (leader, read replica or cluster member), or a data
    /// directory (its server may be running).
    #[arg(long, value_name = "URL|DIR")]
    pub from: String,
    /// A new or empty directory for the backup.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Bearer token with scope `read`, for a server with auth.
    #[arg(long, env = "CSTORE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Options of `cstore restore` (see docs/BACKUP.md).
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup directory.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The data directory to create: new or empty, unless --force.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Restore the state right after this entry (default: the backup's last entry).
    #[arg(long, value_name = "N")]
    pub to_lsn: Option<u64>,
    /// Restore the state after every entry written at or before this RFC 3339 time.
    #[arg(long, value_name = "RFC3339")]
    pub to_time: Option<String>,
    /// Replace a non-empty data directory (it is renamed aside, not deleted).
    #[arg(long)]
    pub force: bool,
}

/// `cstore cluster …`: talks to any member over HTTP.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// A member's HTTP base URL.
    #[arg(
        long,
        env = "CSTORE_SERVER",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub server: String,
    /// Bearer token with scope `admin` (needed when the cluster has a secret).
    #[arg(long, env = "CSTORE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The cluster subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Print the members, their roles and positions as a table.
    Status,
    /// Move leadership to a voter (promotion by hand; the old leader becomes a follower).
    Transfer {
        /// The voter that should lead.
        #[arg(long)]
        to: u64,
    },
    /// Add a member: it joins as a learner, catches up, then becomes a voter.
    Add {
        /// Its node id.
        #[arg(long)]
        id: u64,
        /// Its HTTP base URL, e.g. http://127.0.0.1:7074.
        #[arg(long)]
        url: String,
    },
    /// Remove a member.
    Remove {
        /// Its node id.
        #[arg(long)]
        id: u64,
    },
}

/// Options of `cstore serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory of the log, snapshots and metadata.
    #[arg(long, env = "CSTORE_DATA_DIR", default_value = "./cstore-data")]
    pub data_dir: PathBuf,
    /// Address to listen on for HTTP and WebSocket.
    #[arg(long, env = "CSTORE_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Follow a leader as a read replica (its WebSocket URL, e.g. ws://host:7070/v1/replicate),
    /// or a cluster: its members' URLs separated by commas (the replica follows the leader and
    /// moves to another member when one fails).
    #[arg(long, value_name = "WS_URL[,WS_URL…]")]
    pub follow: Option<String>,
    /// This server's id in a cluster (with --cluster).
    #[arg(
        long,
        env = "CSTORE_NODE_ID",
        requires = "cluster",
        conflicts_with = "follow"
    )]
    pub node_id: Option<u64>,
    /// Run as a member of a Raft cluster: every member's id and HTTP base URL, the same list on
    /// every member, e.g. 1=http://127.0.0.1:7071,2=http://127.0.0.1:7072,3=http://127.0.0.1:7073.
    #[arg(
        long,
        env = "CSTORE_CLUSTER",
        value_name = "ID=URL,...",
        requires = "node_id"
    )]
    pub cluster: Option<String>,
    /// Cluster mode: the election timeout T in ms. A follower that has not heard from a leader
    /// for its lease (1.5 T) plus a random [T, 1.5 T) starts an election; a leader that has
    /// not heard from a majority for 1.5 T steps down.
    #[arg(long, default_value_t = crate::cluster::ELECTION_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub election_timeout_ms: u64,
    /// Cluster mode: how often the leader sends heartbeats, in ms.
    #[arg(long, default_value_t = crate::cluster::HEARTBEAT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(10..=30_000))]
    pub heartbeat_ms: u64,
    /// Token sent to the leader (as `Authorization: Bearer`) when following; needs scope `read`.
    #[arg(
        long,
        env = "CSTORE_FOLLOW_TOKEN",
        hide_env_values = true,
        requires = "follow"
    )]
    pub follow_token: Option<String>,
    /// Secret that signs access tokens; without it every request is allowed.
    #[arg(long, env = "CSTORE_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// Allow listening on a non-loopback address without an auth secret.
    #[arg(long)]
    pub insecure: bool,
    /// Write a snapshot and compact the log every N entries.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: Option<u64>,
    /// Write a checkpoint's snapshot file at most this fast, in MiB/s (0: unpaced). The log's
    /// syncs share the disk and wait for what was written before them: pacing the snapshot
    /// keeps the log's syncs as fast during a checkpoint as outside one.
    #[arg(long, value_name = "MIB", default_value_t = crate::leader::CHECKPOINT_WRITE_MIB_PER_S_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub checkpoint_write_mib_per_s: u64,
    /// Keep this many MiB of recent log entries in memory for replicas to catch up from; a
    /// replica further behind gets a snapshot.
    #[arg(long, value_name = "MIB", default_value_t = crate::replicate::TAIL_MIB_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub replication_tail_mib: u64,
    /// Directory of the built demo app served at `/` (default: web/dist/demo when it exists,
    /// else a placeholder page).
    #[arg(long, env = "CSTORE_DEMO_DIR", value_name = "DIR")]
    pub demo_dir: Option<PathBuf>,

    // Token secret rotation (see docs/OPERATIONS.md).
    /// The previous auth secret, during a rotation: tokens it signed are still accepted (it
    /// never signs). Remove it once clients hold tokens of the new --auth-secret.
    #[arg(
        long,
        env = "CSTORE_TOKEN_SECRET_OLD",
        hide_env_values = true,
        requires = "auth_secret"
    )]
    pub token_secret_old: Option<String>,
    /// Accept tokens of --token-secret-old only before this time (RFC 3339, e.g.
    /// 2026-12-31T00:00:00Z).
    #[arg(long, env = "CSTORE_TOKEN_SECRET_OLD_UNTIL", value_name = "RFC3339",
          value_parser = parse_rfc3339, requires = "token_secret_old")]
    pub token_secret_old_until: Option<u64>,
    // The network edge (docs/LIMITS.md): each bound is counted in
    // `cstore_limit_tripped_total{limit}` when it trips.
    /// Most connections open at once (WebSockets included); more are answered
    /// `503 too_many_connections` and closed.
    #[arg(long, env = "CSTORE_MAX_CONNECTIONS", value_name = "N",
          default_value_t = crate::edge::CONNECTIONS_MAX_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Most `/v1/replicate` WebSocket sessions at once; more are answered
    /// `503 too_many_sessions`.
    #[arg(long, env = "CSTORE_MAX_REPLICATION_SESSIONS", value_name = "N",
          default_value_t = crate::edge::REPLICATION_SESSIONS_MAX_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_replication_sessions: u64,
    /// A request head must arrive within this many ms (the first from accept, a later one from
    /// its first byte); else the connection is closed.
    #[arg(long, env = "CSTORE_HEADER_TIMEOUT_MS", value_name = "MS",
          default_value_t = crate::edge::HEADER_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_timeout_ms: u64,
    /// A kept-alive connection silent between requests (or not reading its answer) for this
    /// many ms is closed.
    #[arg(long, env = "CSTORE_IDLE_TIMEOUT_MS", value_name = "MS",
          default_value_t = crate::edge::IDLE_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub idle_timeout_ms: u64,
    /// A request body must arrive in full within this many ms of its head; else
    /// `408 body_timeout`.
    #[arg(long, env = "CSTORE_BODY_TIMEOUT_MS", value_name = "MS",
          default_value_t = crate::edge::BODY_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub body_timeout_ms: u64,
    /// Largest body of a document route (insert, put, patch) and of a find, in bytes.
    #[arg(long, env = "CSTORE_DOC_BODY_MAX_BYTES", value_name = "BYTES",
          default_value_t = crate::http::DOC_BODY_BYTES_MAX as u64,
          value_parser = clap::value_parser!(u64).range(1024..=(64 << 20)))]
    pub doc_body_max_bytes: u64,
    /// Largest body of `/v1/txn` and `/v1/txns`, in bytes.
    #[arg(long, env = "CSTORE_TXN_BODY_MAX_BYTES", value_name = "BYTES",
          default_value_t = crate::http::TXN_BODY_BYTES_MAX as u64,
          value_parser = clap::value_parser!(u64).range(1024..=(256 << 20)))]
    pub txn_body_max_bytes: u64,
    /// Largest WebSocket message a replica may send on `/v1/replicate`, in bytes.
    #[arg(long, env = "CSTORE_FRAME_MAX_BYTES", value_name = "BYTES",
          default_value_t = cstore_core::replication::FRAME_BYTES_MAX as u64,
          value_parser = clap::value_parser!(u64)
              .range(4096..=cstore_core::replication::FRAME_BYTES_MAX as u64))]
    pub frame_max_bytes: u64,
    /// A replica that sends nothing (it answers the leader's heartbeats), acknowledges nothing
    /// it was sent, or stops reading for this many ms is dropped.
    #[arg(long, env = "CSTORE_REPLICA_TIMEOUT_MS", value_name = "MS",
          default_value_t = crate::edge::REPLICA_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub replica_timeout_ms: u64,
    /// The newest replication protocol version served. Lower, the server refuses newer
    /// replicas as an older build does: the tests play an older leader with it, to check that
    /// newer replicas fall back. Not for production use.
    #[arg(long, value_name = "N", hide = true,
          default_value_t = cstore_core::replication::PROTOCOL_VERSION,
          value_parser = clap::value_parser!(u16).range(
              cstore_core::replication::PROTOCOL_VERSION_MIN as i64
                  ..=cstore_core::replication::PROTOCOL_VERSION as i64))]
    pub replication_protocol_max: u16,
    /// Threads that run the replication sessions, apart from the HTTP edge and the writes, so
    /// that thousands of replicas cannot delay a write; 0 runs them beside the HTTP edge.
    /// Default: half the CPUs, at least one.
    #[arg(long, env = "CSTORE_REPLICATION_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=1024))]
    pub replication_threads: Option<u64>,
    /// Serve HTTPS and WSS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(
        long,
        env = "CSTORE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "CSTORE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Extra trust roots (PEM) for https:// and wss:// peers: cluster members, the leader
    /// followed, forwarded writes (a private CA or a self-signed certificate).
    #[arg(long, env = "CSTORE_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

impl ServeArgs {
    /// The key that verifies tokens: `--auth-secret`, with `--token-secret-old` during a
    /// rotation; `None` without a secret (every request is allowed).
    pub fn token_key(&self) -> Result<Option<TokenKey>, WeakSecret> {
        let Some(secret) = self.auth_secret.as_deref() else {
            return Ok(None);
        };
        let key = TokenKey::new(secret)?;
        Ok(Some(match self.token_secret_old.as_deref() {
            Some(old) => key.with_old_secret(old, self.token_secret_old_until)?,
            None => key,
        }))
    }
}

/// `cstore token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token and print it.
    Create(TokenCreateArgs),
}

/// Options of `cstore token create`.
#[derive(Debug, Clone, Args)]
pub struct TokenCreateArgs {
    /// Scopes, comma-separated: replicate (only /v1/replicate), read, write, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scope: Vec<Scope>,
    /// Limit the token to these collections, comma-separated (reads and writes elsewhere are
    /// refused with 403 collection_forbidden; replication needs the explicit `replicate`
    /// scope, since the stream carries every collection).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...", value_parser = parse_collection)]
    pub collections: Option<Vec<String>>,
    /// Lifetime, e.g. 90s, 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Who the token is for (shows up in the server's logs).
    #[arg(long, default_value = "cstore-cli")]
    pub subject: String,
    /// The server's secret.
    #[arg(long, env = "CSTORE_AUTH_SECRET", hide_env_values = true)]
    pub secret: String,
}

impl TokenCreateArgs {
    /// The token these options describe, valid from `now_s` (Unix seconds) for `ttl`.
    pub fn mint(&self, now_s: u64) -> Result<String, WeakSecret> {
        let key = TokenKey::new(&self.secret)?;
        let claims = Claims {
            sub: self.subject.clone(),
            scopes: self.scope.clone(),
            exp: now_s.saturating_add(self.ttl.as_secs()),
            collections: self.collections.clone(),
        };
        Ok(key.mint(&claims))
    }
}

/// Parses a lifetime: a positive number with a unit `s`, `m`, `h` or `d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h or d (e.g. 24h)"))?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    let seconds = number
        .checked_mul(unit_s)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{text:?} is not a positive lifetime"))?;
    Ok(Duration::from_secs(seconds))
}

/// A collection name for `--collections`, checked as the server checks names.
fn parse_collection(name: &str) -> Result<String, String> {
    cstore_core::doc::validate_collection_name(name).map_err(|e| e.to_string())?;
    Ok(name.to_string())
}

/// Parses an RFC 3339 time (`2026-12-31T23:59:59Z`, `…T23:59:59.5+02:00`) into Unix
/// seconds (fractions dropped). Times before 1970 are refused.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as 2026-12-31T00:00:00Z");
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let number = |at: usize, len: usize| -> Result<i64, String> {
        let part = text.get(at..at + len).ok_or_else(bad)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| bytes[at] != c) {
        return Err(bad());
    }
    let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &fraction[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let hours: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let minutes: i64 = rest[4..6].parse().map_err(|_| bad())?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return Err(bad()),
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let unix = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u64::try_from(unix).map_err(|_| format!("{text:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "24",
            "h",
            "0s",
            "-1h",
            "1.5h",
            "2w",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-12-31T00:00:00Z"), Ok(1_798_675_200));
        assert_eq!(parse_rfc3339("2000-02-29T12:30:15.25Z"), Ok(951_827_415));
        assert_eq!(
            parse_rfc3339("2026-12-31T02:00:00+02:00"),
            Ok(1_798_675_200)
        );
        assert_eq!(
            parse_rfc3339("2026-12-30T22:00:00-02:00"),
            Ok(1_798_675_200)
        );
        for bad in [
            "",
            "2026-12-31",
            "2026-12-31T00:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-31T24:00:00Z",
            "2026-12-31T00:00:00+2:00",
            "1969-12-31T23:59:59Z",
            "2026-12-31T00:00:00.Z",
            "tomorrow",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_rotation_flags() {
        let cli = Cli::try_parse_from([
            "cstore",
            "serve",
            "--auth-secret",
            "new",
            "--token-secret-old",
            "old",
            "--token-secret-old-until",
            "2026-12-31T00:00:00Z",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.token_secret_old_until, Some(1_798_675_200));
        assert!(args.token_key().unwrap().unwrap().has_old_secret());
        // An old secret without a new one makes no sense.
        assert!(
            Cli::try_parse_from(["cstore", "serve", "--token-secret-old", "old"]).is_err()
                || std::env::var_os("CSTORE_AUTH_SECRET").is_some()
        );
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["cstore", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        // The environment of the test run could override these; only check when unset.
        if std::env::var_os("CSTORE_LISTEN").is_none() {
            assert_eq!(args.listen, "127.0.0.1:7070");
        }
        if std::env::var_os("CSTORE_DATA_DIR").is_none() {
            assert_eq!(args.data_dir, PathBuf::from("./cstore-data"));
        }
        assert!(!args.insecure);
    }

    #[test]
    fn token_create_parses_scopes() {
        let cli = Cli::try_parse_from([
            "cstore",
            "token",
            "create",
            "--scope",
            "read,write",
            "--ttl",
            "1h",
            "--secret",
            "s",
        ])
        .unwrap();
        let Command::Token(TokenCommand::Create(args)) = cli.command else {
            panic!("not token create")
        };
        assert_eq!(args.scope, vec![Scope::Read, Scope::Write]);
        assert_eq!(args.ttl, Duration::from_secs(3600));
        let token = args.mint(1000).unwrap();
        let claims = TokenKey::new("s").unwrap().verify(&token, 1000).unwrap();
        assert_eq!(claims.exp, 4600);
        assert_eq!(claims.sub, "cstore-cli");
        assert!(
            Cli::try_parse_from([
                "cstore", "token", "create", "--scope", "root", "--secret", "s"
            ])
            .is_err()
        );
        let limited = Cli::try_parse_from([
            "cstore",
            "token",
            "create",
            "--scope",
            "replicate,write",
            "--collections",
            "notes,todos",
            "--secret",
            "s",
        ])
        .unwrap();
        let Command::Token(TokenCommand::Create(args)) = limited.command else {
            panic!("not token create")
        };
        let claims = TokenKey::new("s")
            .unwrap()
            .verify(&args.mint(1000).unwrap(), 1000)
            .unwrap();
        assert_eq!(claims.scopes, vec![Scope::Replicate, Scope::Write]);
        assert_eq!(
            claims.collections,
            Some(vec!["notes".to_string(), "todos".to_string()])
        );
        assert!(
            Cli::try_parse_from([
                "cstore",
                "token",
                "create",
                "--scope",
                "read",
                "--collections",
                "bad name!",
                "--secret",
                "s"
            ])
            .is_err()
        );
    }
}
