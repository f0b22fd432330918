//! The published form of a run: markdown tables for BENCHMARKS.md and a CSV for the chart.
//!
//! A row is either measured or "not available: <reason>"; there is no third kind, so a
//! workload that could not run can never show a number.

use std::fmt::Write as _;

use super::driver::WriteSummary;
use super::recovery::RecoveryReport;

/// Durable writes must reach this multiple of etcd's single-member ops/s.
pub const WRITES_VS_ETCD_TARGET: f64 = 5.0;
/// Recovery must replay at least this many entries per second.
pub const REPLAY_TARGET_PER_S: f64 = 1_000_000.0;

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

/// The verdict on the durable-write target, one line per workload with a cstore row.
pub fn writes_verdict(rows: &[WriteRow]) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|r| r.system.starts_with("cstore")) {
        let line = match (row.ops_per_s(), etcd_ops(rows, &row.workload)) {
            (Some(ours), Some(etcd)) => {
                let ratio = ours / etcd;
                let verdict = if ratio >= WRITES_VS_ETCD_TARGET {
                    "met"
                } else {
                    "MISSED"
                };
                format!(
                    "- {}: cstore {ours:.0} ops/s = {ratio:.1}× etcd ({etcd:.0}); target ≥ {WRITES_VS_ETCD_TARGET}×: **{verdict}**",
                    row.workload
                )
            }
            _ => format!("- {}: no comparison (a row is not available)", row.workload),
        };
        out.push_str(&line);
        out.push('\n');
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
}
