//! A cross-check of the PostgreSQL row with PostgreSQL's own generator, `pgbench`, against the
//! same server right after our driver: a custom script of the same `INSERT` (same table, a
//! document of the same bytes, a prepared statement), the same number of connections. If it
//! were far faster, our tokio-postgres driver (not PostgreSQL) would bound the row.
//!
//! pgbench reports its rate on stdout; its per-transaction log (`--log`, one file per thread,
//! the third field the latency in µs) gives the same quantiles as the other rows.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::driver::WriteSummary;
use super::error::{PeerError, tool_output};
use super::postgres::{POSTGRES_BIN_DIR, POSTGRES_DATABASE, POSTGRES_PACKAGE, POSTGRES_ROLE};
use crate::tally::new_histogram;

/// The script: a random key (a text primary key like the driver's, in another range) and the
/// document passed as a variable, cast to `jsonb` by the server as in the driver's insert.
pub const SCRIPT: &str = "\\set n random(1, 999999999999999)\n\
                          INSERT INTO bench (id, doc) VALUES (:n, CAST(:doc AS jsonb));\n";

/// One pgbench run's shape.
#[derive(Clone, Copy, Debug)]
pub struct PgbenchRun<'a> {
    /// The server's port on 127.0.0.1.
    pub port: u16,
    /// Connections (`-c`).
    pub clients: usize,
    /// pgbench's own threads (`-j`).
    pub threads: usize,
    /// How long it runs (`-T`, whole seconds, at least 1).
    pub duration: Duration,
    /// The document every insert carries.
    pub doc: &'a str,
    /// Where the script and the logs go.
    pub work_dir: &'a Path,
}

/// Runs pgbench and reads its rate and its logs.
pub fn run(spec: PgbenchRun<'_>) -> Result<WriteSummary, PeerError> {
    let script = spec.work_dir.join("pgbench-insert.sql");
    std::fs::write(&script, SCRIPT)
        .map_err(|e| PeerError::net(format!("writing {}", script.display()), e))?;
    let log_prefix = spec.work_dir.join("pgbench-log");
    let program = format!("{POSTGRES_BIN_DIR}/pgbench");
    let seconds = spec.duration.as_secs().max(1);
    let mut command = Command::new(&program);
    command
        .args(["-h", "127.0.0.1", "-p", &spec.port.to_string()])
        .args(["-U", POSTGRES_ROLE, "-n", "-M", "prepared"])
        .args(["-c", &spec.clients.to_string()])
        .args(["-j", &spec.threads.max(1).to_string()])
        .args(["-T", &seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg("-D")
        .arg(format!("doc={}", spec.doc))
        .arg("--log")
        .arg(format!("--log-prefix={}", log_prefix.display()))
        .arg(POSTGRES_DATABASE);
    let stdout = tool_output(command, &program, POSTGRES_PACKAGE)?;
    let report = parse_report(&stdout)
        .ok_or_else(|| PeerError::net("reading pgbench's report", stdout.to_string()))?;
    let prefix = log_prefix
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a plain file name");
    let entries = std::fs::read_dir(spec.work_dir)
        .map_err(|e| PeerError::net("listing pgbench's logs", e))?;
    let mut logs = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            logs.push(
                std::fs::read_to_string(entry.path())
                    .map_err(|e| PeerError::net("reading a pgbench log", e))?,
            );
        }
    }
    summarize(report, logs.iter().map(String::as_str))
        .ok_or_else(|| PeerError::net("reading pgbench's logs", "no transaction logged"))
}

/// The summary's rate and failures, with the latency quantiles of the logs' lines (a line
/// without a latency counts as an error); `None` when no line has one.
pub fn summarize<'a>(
    report: PgbenchReport,
    logs: impl Iterator<Item = &'a str>,
) -> Option<WriteSummary> {
    // The driver's bounds, so a latency beyond them is clamped the same way.
    let mut latency_us = new_histogram();
    let mut unreadable = 0u64;
    for line in logs.flat_map(str::lines) {
        match log_latency_us(line) {
            Some(us) => latency_us.saturating_record(us),
            None => unreadable += 1,
        }
    }
    if latency_us.is_empty() {
        return None;
    }
    let ms = |q: f64| latency_us.value_at_quantile(q) as f64 / 1000.0;
    Some(WriteSummary {
        ops_per_s: report.tps,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: Some(ms(0.999)),
        errors: report.failed + unreadable,
    })
}

/// What pgbench's summary says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PgbenchReport {
    /// `tps = ... (without initial connection time)`.
    pub tps: f64,
    /// `number of failed transactions: N (...)` (0 when the line is absent).
    pub failed: u64,
}

/// Reads pgbench 15's summary.
pub fn parse_report(text: &str) -> Option<PgbenchReport> {
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let failed = match text
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
    {
        Some(rest) => rest.split_whitespace().next()?.parse().ok()?,
        None => 0,
    };
    Some(PgbenchReport { tps, failed })
}

/// The latency of one log line: `client_id transaction_no time script_no time_epoch time_us`.
pub fn log_latency_us(line: &str) -> Option<u64> {
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_and_the_log_lines() {
        let text = "transaction type: /tmp/x/pgbench-insert.sql\n\
                    number of clients: 64\n\
                    number of transactions actually processed: 105921\n\
                    number of failed transactions: 2 (0.002%)\n\
                    latency average = 4.834 ms\n\
                    initial connection time = 61.551 ms\n\
                    tps = 13240.106215 (without initial connection time)\n";
        assert_eq!(
            parse_report(text),
            Some(PgbenchReport {
                tps: 13240.106215,
                failed: 2
            })
        );
        assert_eq!(parse_report("tps = oops\n"), None);
        assert_eq!(parse_report("no summary\n"), None);
        assert_eq!(log_latency_us("3 17 4821 0 1765000000 123456"), Some(4821));
        assert_eq!(log_latency_us("3 17 failed 0 1765000000 123456"), None);
        assert_eq!(log_latency_us("3 17"), None);
    }

    #[test]
    fn quantiles_come_from_every_log_in_microseconds() {
        let report = PgbenchReport {
            tps: 8000.0,
            failed: 1,
        };
        // 98 transactions of 5 ms in one thread's log, 2 of 40 ms and a torn line in the other.
        let first: String = (0..98)
            .map(|i| format!("0 {i} 5000 0 1765000000 {i}\n"))
            .collect();
        let second = "1 0 40000 0 1765000000 1\n1 1 40000 0 1765000000 2\n1 2\n";
        let summary = summarize(report, [first.as_str(), second].into_iter()).expect("logged");
        assert_eq!(summary.ops_per_s, 8000.0);
        assert!((4.99..=5.01).contains(&summary.p50_ms), "{summary:?}");
        assert!((39.9..=40.1).contains(&summary.p99_ms), "{summary:?}");
        assert_eq!(summary.errors, 2, "the failed one and the torn line");
        assert_eq!(summarize(report, ["", "1 2\n"].into_iter()), None);
    }
}
