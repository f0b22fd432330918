//! The published form of a run: markdown tables for BENCHMARKS.md and a CSV for the chart.
//!
//! A row is either measured or "not available: <reason>"; there is no third kind, so a
//! workload that could not run can never show a number.

use std::fmt::Write as _;

use super::driver::WriteSummary;
use super::failover::FailoverReport;
use super::reads::ReadRow;
use super::recovery::RecoveryReport;

/// Durable writes must reach this multiple of etcd's single-member ops/s.
pub const WRITES_VS_ETCD_TARGET: f64 = 5.0;
/// Durable single-node writes must reach this multiple of redis's (`appendfsync always`).
pub const WRITES_VS_REDIS_TARGET: f64 = 1.2;
/// Durable single-node writes must reach this multiple of PostgreSQL's ops/s.
pub const WRITES_VS_POSTGRES_TARGET: f64 = 3.0;
/// How the PostgreSQL rows' systems start (the first is the driver's, the one compared).
pub const POSTGRES_SYSTEM_PREFIX: &str = "PostgreSQL";
/// Recovery must replay at least this many entries per second.
pub const REPLAY_TARGET_PER_S: f64 = 1_000_000.0;
/// cstore's write unavailability after a leader kill, p99, must stay at or under this.
pub const FAILOVER_P99_TARGET_MS: f64 = 1_000.0;

/// One line of the write comparison.
#[derive(Debug)]
pub struct WriteRow {
    /// "single node" or "replicated (3 copies)".
    pub workload: String,
    /// The system and its settings.
    pub system: String,
    /// The measurement, or why there is none.
    pub outcome: Result<WriteSummary, String>,
}

impl WriteRow {
    /// Ops/s when measured.
    pub fn ops_per_s(&self) -> Option<f64> {
        self.outcome.as_ref().ok().map(|s| s.ops_per_s)
    }
}

/// The markdown table of write rows; "vs etcd" compares with the etcd row of the same workload.
pub fn writes_markdown(rows: &[WriteRow]) -> String {
    let mut out = String::new();
    out.push_str("| workload | system | ops/s | p50 ms | p99 ms | p99.9 ms | errors | vs etcd |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        match &row.outcome {
            Ok(summary) => {
                let versus = etcd_ops(rows, &row.workload)
                    .map(|etcd| format!("{:.1}×", summary.ops_per_s / etcd))
                    .unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                    row.workload,
                    row.system,
                    summary.ops_per_s,
                    summary.p50_ms,
                    summary.p99_ms,
                    summary
                        .p999_ms
                        .map_or_else(|| "–".to_string(), |ms| format!("{ms:.2}")),
                    summary.errors,
                    versus
                );
            }
            Err(reason) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | not available: {} | | | | | |",
                    row.workload,
                    row.system,
                    one_line(reason)
                );
            }
        }
    }
    out
}

/// The peers a cstore row is held against, each where its workload has a row of it: how that
/// peer's systems start (the first such row is the one compared: the driver's, not a
/// cross-check), its name in the verdict, the target ratio, and the digits of the ratio.
const PEER_TARGETS: [(&str, &str, f64, usize); 3] = [
    ("etcd", "etcd", WRITES_VS_ETCD_TARGET, 1),
    ("redis", "redis 7", WRITES_VS_REDIS_TARGET, 2),
    (
        POSTGRES_SYSTEM_PREFIX,
        "PostgreSQL 15",
        WRITES_VS_POSTGRES_TARGET,
        2,
    ),
];

/// A cstore row measured by this benchmark's driver: the rows held against the targets. A
/// cross-check by another generator ("cstore via wrk") is shown, not judged, like redis's and
/// PostgreSQL's.
fn is_cstore_driver_row(system: &str) -> bool {
    system.starts_with("cstore") && !system.contains(" via ")
}

/// The verdict on the durable-write targets: for each cstore row (named by its workload, and by
/// its system too where a workload has more than one cstore row), one line per peer that its
/// workload measured, with the ratio and whether it meets the target.
pub fn writes_verdict(rows: &[WriteRow]) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|r| is_cstore_driver_row(&r.system)) {
        let cstore_rows = rows
            .iter()
            .filter(|r| r.workload == row.workload && is_cstore_driver_row(&r.system))
            .count();
        let name = if cstore_rows > 1 {
            format!("{}, {}", row.workload, row.system)
        } else {
            row.workload.clone()
        };
        let mut compared = false;
        for (prefix, peer, target, digits) in PEER_TARGETS {
            let Some(theirs) = rows
                .iter()
                .find(|r| r.workload == row.workload && r.system.starts_with(prefix))
            else {
                continue;
            };
            compared = true;
            let line = match (row.ops_per_s(), theirs.ops_per_s()) {
                (Some(ours), Some(theirs)) => {
                    let ratio = ours / theirs;
                    let verdict = if ratio >= target { "met" } else { "MISSED" };
                    format!(
                        "- {name}: cstore {ours:.0} ops/s = {ratio:.digits$}× {peer} ({theirs:.0}); target ≥ {target}×: **{verdict}**"
                    )
                }
                _ => format!("- {name}: no comparison with {peer} (a row is not available)"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        if !compared {
            out.push_str(&format!(
                "- {name}: no comparison (no peer in this workload)\n"
            ));
        }
    }
    out
}

/// `workload,system,ops_per_s,p50_ms,p99_ms` for every measured row.
pub fn writes_csv(rows: &[WriteRow]) -> String {
    let mut out = String::from("workload,system,ops_per_s,p50_ms,p99_ms\n");
    for row in rows {
        if let Ok(summary) = &row.outcome {
            let _ = writeln!(
                out,
                "{},{},{:.0},{:.3},{:.3}",
                row.workload.replace(',', ";"),
                row.system.replace(',', ";"),
                summary.ops_per_s,
                summary.p50_ms,
                summary.p99_ms
            );
        }
    }
    out
}

/// The markdown table of recovery measurements.
pub fn recovery_markdown(rows: &[Result<RecoveryReport, (String, String)>]) -> String {
    let mut out = String::new();
    out.push_str("| checkpoints | entries in log before kill | data dir MB | snapshot at LSN | entries replayed | to /v1/health ms | to LSN ms | server's own ms | replayed/s (to health) | target ≥ 1M/s |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for row in rows {
        match row {
            Ok(r) => {
                let verdict = if r.snapshot_lsn() > 0 {
                    "– (mostly the snapshot load)".to_string()
                } else if r.replayed == 0 {
                    "– (nothing replayed)".to_string()
                } else if r.replay_per_s() >= REPLAY_TARGET_PER_S {
                    "met".to_string()
                } else {
                    "**MISSED**".to_string()
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {} | {} | {:.0} | {:.0} | {} | {:.0} | {} |",
                    r.config.label,
                    r.last_lsn,
                    r.data_bytes as f64 / 1e6,
                    r.snapshot_lsn(),
                    r.replayed,
                    r.health_ms,
                    r.lsn_ms,
                    r.server_ms,
                    r.replay_per_s(),
                    verdict
                );
            }
            Err((label, reason)) => {
                let _ = writeln!(
                    out,
                    "| {label} | not available: {} | | | | | | | | |",
                    one_line(reason)
                );
            }
        }
    }
    out
}

/// The markdown table of the failover trials: one row per system.
pub fn failover_markdown(rows: &[Result<FailoverReport, (String, String)>]) -> String {
    let mut out = String::new();
    out.push_str("| system | election settings | trials | p50 ms | p99 ms | max ms | failed trials | writes acked / failed during the trials |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        match row {
            Ok(r) if !r.unavailable_ms.is_empty() => {
                let ms = |q: f64| {
                    r.quantile_ms(q)
                        .map_or_else(|| "–".into(), |v| format!("{v:.0}"))
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                    r.system,
                    r.settings,
                    r.unavailable_ms.len(),
                    ms(0.5),
                    ms(0.99),
                    ms(1.0),
                    r.failures.len(),
                    r.acked,
                    r.errors
                );
            }
            Ok(r) => {
                let reason = r
                    .failures
                    .first()
                    .map_or_else(|| "no trial ran".to_string(), |f| one_line(f));
                let _ = writeln!(
                    out,
                    "| {} | {} | not available: {reason} | | | | | |",
                    r.system, r.settings
                );
            }
            Err((system, reason)) => {
                let _ = writeln!(
                    out,
                    "| {system} | | not available: {} | | | | | |",
                    one_line(reason)
                );
            }
        }
    }
    out
}

/// The verdict on cstore's failover target, and every trial's figure per system.
pub fn failover_verdict(rows: &[Result<FailoverReport, (String, String)>]) -> String {
    let mut out = String::new();
    for row in rows {
        let Ok(r) = row else { continue };
        if r.system.starts_with("cstore") {
            let line = match r.quantile_ms(0.99) {
                Some(p99) => {
                    let verdict = if p99 <= FAILOVER_P99_TARGET_MS && r.failures.is_empty() {
                        "met"
                    } else {
                        "MISSED"
                    };
                    format!(
                        "- cstore: p99 {p99:.0} ms over {} trials ({} failed); target p99 ≤ {FAILOVER_P99_TARGET_MS:.0} ms: **{verdict}**",
                        r.unavailable_ms.len(),
                        r.failures.len()
                    )
                }
                None => "- cstore: no trial completed; target p99 ≤ 1000 ms: **MISSED**".into(),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    for row in rows {
        let Ok(r) = row else { continue };
        let values: Vec<String> = r.unavailable_ms.iter().map(|v| format!("{v:.0}")).collect();
        let _ = writeln!(
            out,
            "- {}, each trial in order (ms): {}",
            r.system,
            if values.is_empty() {
                "none".to_string()
            } else {
                values.join(", ")
            }
        );
        for failure in &r.failures {
            let _ = writeln!(out, "  - {}", one_line(failure));
        }
    }
    out
}

/// The markdown table of read latencies.
pub fn reads_markdown(rows: &[ReadRow]) -> String {
    let mut out = String::new();
    out.push_str("| system | read | on | reads/s | p50 ms | p99 ms | p99.9 ms | errors |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|\n");
    for row in rows {
        match &row.outcome {
            Ok(s) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |",
                    row.system,
                    row.read,
                    row.member,
                    s.ops_per_s,
                    s.p50_ms,
                    s.p99_ms,
                    s.p999_ms
                        .map_or_else(|| "–".to_string(), |ms| format!("{ms:.2}")),
                    s.errors
                );
            }
            Err(reason) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | not available: {} | | | | |",
                    row.system,
                    row.read,
                    row.member,
                    one_line(reason)
                );
            }
        }
    }
    out
}

fn etcd_ops(rows: &[WriteRow], workload: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.workload == workload && r.system.starts_with("etcd"))
        .and_then(WriteRow::ops_per_s)
}

/// A reason fit for one table cell: first line, no pipes.
fn one_line(reason: &str) -> String {
    reason.lines().next().unwrap_or("").replace('|', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_row_shows_its_reason_and_no_number() {
        let rows = vec![WriteRow {
            workload: "replicated".into(),
            system: "cstore".into(),
            outcome: Err("follower 0 exited | code 2\nmore".into()),
        }];
        let table = writes_markdown(&rows);
        assert!(
            table.contains("| not available: follower 0 exited / code 2 |"),
            "{table}"
        );
        assert_eq!(writes_csv(&rows).lines().count(), 1, "only the header");
        assert!(writes_verdict(&rows).contains("no comparison"));
    }

    fn row(workload: &str, system: &str, ops: f64) -> WriteRow {
        WriteRow {
            workload: workload.into(),
            system: system.into(),
            outcome: Ok(summary(ops)),
        }
    }

    fn summary(ops_per_s: f64) -> WriteSummary {
        WriteSummary {
            ops_per_s,
            p50_ms: 1.0,
            p99_ms: 2.0,
            p999_ms: None,
            errors: 0,
        }
    }

    #[test]
    fn two_cstore_rows_of_one_workload_get_a_verdict_each_by_name() {
        let row = |system: &str, ops| WriteRow {
            workload: "3 copies".into(),
            system: system.into(),
            outcome: Ok(summary(ops)),
        };
        let rows = vec![
            row("cstore leader + 2 followers", 2000.0),
            row("cstore 3-member Raft cluster", 6000.0),
            row("etcd 3.4 (3 members)", 1000.0),
        ];
        let verdict = writes_verdict(&rows);
        assert!(
            verdict.contains("- 3 copies, cstore 3-member Raft cluster: cstore 6000 ops/s = 6.0× etcd (1000); target ≥ 5×: **met**"),
            "{verdict}"
        );
        assert!(verdict.contains("2.0× etcd"), "{verdict}");
        assert!(writes_markdown(&rows).contains("| 6.0× |"));
    }

    #[test]
    fn redis_is_compared_from_its_first_row_and_a_workload_without_peers_says_so() {
        let rows = vec![
            row("single node", "cstore (ack=local)", 30000.0),
            row("single node", "redis 7 (appendfsync always)", 50000.0),
            row("single node", "redis 7 via redis-benchmark", 1.0),
            row("single node", "cstore via wrk (a C client)", 90000.0),
            row("pipelined", "cstore write channel", 90000.0),
            row("pipelined", "redis 7 via redis-benchmark -P 16", 60000.0),
            row("alone", "cstore leader", 1.0),
        ];
        let verdict = writes_verdict(&rows);
        assert!(
            verdict.contains(
                "- single node: cstore 30000 ops/s = 0.60× redis 7 (50000); target ≥ 1.2×: **MISSED**"
            ),
            "{verdict}"
        );
        assert!(
            verdict.contains(
                "- pipelined: cstore 90000 ops/s = 1.50× redis 7 (60000); target ≥ 1.2×: **met**"
            ),
            "{verdict}"
        );
        assert!(
            !verdict.contains("etcd"),
            "no etcd row, no etcd line: {verdict}"
        );
        assert!(
            !verdict.contains("wrk") && !verdict.contains("1.80×"),
            "a cross-check is not judged: {verdict}"
        );
        assert!(
            verdict.contains("- alone: no comparison (no peer in this workload)"),
            "{verdict}"
        );
    }

    #[test]
    fn a_postgres_row_gets_its_own_verdict_in_its_workload_only() {
        let mut rows = vec![
            row("single node", "cstore (ack=local)", 24000.0),
            row("single node", "etcd 3.4 (1 member)", 4000.0),
            row("single node", "PostgreSQL 15 (jsonb)", 10000.0),
            row("single node", "PostgreSQL 15 via pgbench", 1000.0),
            row("3 copies", "cstore leader + 2 followers", 9000.0),
            row("3 copies", "etcd 3.4 (3 members)", 1000.0),
        ];
        let verdict = writes_verdict(&rows);
        assert!(
            verdict.contains(
                "- single node: cstore 24000 ops/s = 2.40× PostgreSQL 15 (10000); target ≥ 3×: **MISSED**"
            ),
            "{verdict}"
        );
        assert!(
            verdict.contains("6.0× etcd (4000); target ≥ 5×: **met**"),
            "{verdict}"
        );
        assert_eq!(verdict.matches("PostgreSQL").count(), 1, "{verdict}");
        rows[2].outcome = Ok(summary(8000.0));
        assert!(
            writes_verdict(&rows).contains("= 3.00× PostgreSQL 15 (8000); target ≥ 3×: **met**")
        );
        rows[2].outcome = Err("postgres is not installed".into());
        assert!(
            writes_verdict(&rows).contains(
                "- single node: no comparison with PostgreSQL 15 (a row is not available)"
            )
        );
    }

    #[test]
    fn failover_rows_show_quantiles_or_the_reason() {
        let mut ours = FailoverReport {
            system: "cstore 3-member Raft cluster".into(),
            settings: "defaults".into(),
            unavailable_ms: (1..=20).map(|i| f64::from(i) * 50.0).collect(),
            failures: Vec::new(),
            acked: 10,
            errors: 3,
            error_samples: Vec::new(),
        };
        let rows = vec![
            Ok(ours),
            Err((
                "etcd 3.4 (3 members)".to_string(),
                "etcd is not installed\nmore".to_string(),
            )),
        ];
        let table = failover_markdown(&rows);
        assert!(
            table.contains(
                "| cstore 3-member Raft cluster | defaults | 20 | 500 | 1000 | 1000 | 0 | 10 / 3 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| etcd 3.4 (3 members) | | not available: etcd is not installed |")
        );
        assert!(failover_verdict(&rows).contains("target p99 ≤ 1000 ms: **met**"));
        let Ok(first) = &rows[0] else { unreachable!() };
        ours = FailoverReport {
            unavailable_ms: vec![1200.0],
            failures: Vec::new(),
            acked: 0,
            errors: 0,
            error_samples: Vec::new(),
            system: first.system.clone(),
            settings: first.settings.clone(),
        };
        assert!(failover_verdict(&[Ok(ours)]).contains("**MISSED**"));
    }
}
