//! A cross-check of the cstore row with a generator written in C, `wrk`, against the same server
//! right after our driver: the same `POST /v1/c/bench` of a document of the same bytes, the same
//! number of keep-alive connections, each with one request in flight. It plays the part that
//! redis-benchmark and pgbench play for their rows: if it were far faster, our driver (not
//! cstore) would bound the row.
//!
//! wrk has no warm-up; its whole run is measured. `--latency` prints the 50/75/90/99 %
//! quantiles, which give p50 and p99. A socket error or a non-2xx answer counts as an error.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::driver::WriteSummary;
use super::error::{PeerError, tool_output};

/// One wrk run's shape.
#[derive(Clone, Copy, Debug)]
pub struct WrkRun<'a> {
    /// The full URL posted to.
    pub url: &'a str,
    /// Connections (`-c`).
    pub clients: usize,
    /// wrk's own threads (`-t`).
    pub threads: usize,
    /// How long it runs (`-d`, whole seconds, at least 1).
    pub duration: Duration,
    /// The body of every request (JSON).
    pub body: &'a str,
    /// Where the Lua script goes.
    pub work_dir: &'a Path,
}

/// The Lua script making every request a `POST` of `body` (a Lua long string, so the JSON needs
/// no escaping; `body` must not contain `]==]`).
pub fn script(body: &str) -> String {
    assert!(
        !body.contains("]==]"),
        "the body closes the Lua long string"
    );
    format!(
        "wrk.method = \"POST\"\n\
         wrk.body = [==[{body}]==]\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n"
    )
}

/// Runs wrk and reads its report.
pub fn run(spec: WrkRun<'_>) -> Result<WriteSummary, PeerError> {
    let script_path = spec.work_dir.join("wrk-post.lua");
    std::fs::write(&script_path, script(spec.body))
        .map_err(|e| PeerError::net(format!("writing {}", script_path.display()), e))?;
    let mut command = Command::new("wrk");
    command
        .args(["-t", &spec.threads.clamp(1, spec.clients).to_string()])
        .args(["-c", &spec.clients.to_string()])
        .args(["-d", &format!("{}s", spec.duration.as_secs().max(1))])
        .arg("--latency")
        .arg("-s")
        .arg(&script_path)
        .arg(spec.url);
    let stdout = tool_output(command, "wrk", "wrk")?;
    parse_report(&stdout).ok_or_else(|| PeerError::net("reading wrk's report", stdout))
}

/// The rate, p50 and p99 and the errors of wrk 4's report (with `--latency`); `None` when a
/// figure is missing or unreadable.
pub fn parse_report(text: &str) -> Option<WriteSummary> {
    let mut ops_per_s = None;
    let mut p50_ms = None;
    let mut p99_ms = None;
    let mut errors = 0u64;
    for line in text.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            ops_per_s = Some(rate.trim().parse::<f64>().ok()?);
        } else if let Some(value) = line.strip_prefix("50%") {
            p50_ms = Some(duration_ms(value.trim())?);
        } else if let Some(value) = line.strip_prefix("99%") {
            p99_ms = Some(duration_ms(value.trim())?);
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += count.trim().parse::<u64>().ok()?;
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in counts.split(',') {
                errors += part.split_whitespace().nth(1)?.parse::<u64>().ok()?;
            }
        }
    }
    Some(WriteSummary {
        ops_per_s: ops_per_s?,
        p50_ms: p50_ms?,
        p99_ms: p99_ms?,
        p999_ms: None,
        errors,
    })
}

/// A wrk duration (`38.00us`, `1.37ms`, `2.50s`, `1.00m`) in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 3s test @ http://127.0.0.1:23902/v1/c/bench
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.32ms    1.30ms  18.05ms   91.80%
    Req/Sec    28.76k     6.71k   41.91k    65.00%
  Latency Distribution
     50%    0.90ms
     75%    1.37ms
     90%    2.26ms
     99%    6.76ms
  171825 requests in 3.00s, 37.58MB read
Requests/sec:  57224.51
Transfer/sec:     12.52MB
";

    #[test]
    fn reads_the_rate_the_quantiles_and_the_errors() {
        let summary = parse_report(REPORT).expect("parses");
        assert_eq!(summary.ops_per_s, 57224.51);
        assert_eq!(summary.p50_ms, 0.90);
        assert_eq!(summary.p99_ms, 6.76);
        assert_eq!(summary.errors, 0);

        let failing = REPORT.replace(
            "Requests/sec",
            "  Socket errors: connect 1, read 2, write 0, timeout 4\n  \
             Non-2xx or 3xx responses: 10\nRequests/sec",
        );
        assert_eq!(parse_report(&failing).expect("parses").errors, 17);

        let micro = REPORT.replace("0.90ms", "38.00us");
        assert!((parse_report(&micro).expect("parses").p50_ms - 0.038).abs() < 1e-12);
    }

    #[test]
    fn a_report_missing_or_garbling_a_figure_is_refused() {
        for broken in [
            REPORT.replace("Requests/sec:  57224.51\n", ""),
            REPORT.replace("     99%    6.76ms\n", ""),
            REPORT.replace("6.76ms", "6.76parsecs"),
            REPORT.replace("57224.51", "lots"),
            String::new(),
        ] {
            assert_eq!(parse_report(&broken), None, "{broken}");
        }
    }

    #[test]
    fn the_script_posts_the_body_verbatim() {
        let body = r#"{"note":"quotes \" and [brackets]"}"#;
        let lua = script(body);
        assert!(lua.contains(&format!("wrk.body = [==[{body}]==]")), "{lua}");
        assert!(lua.contains("wrk.method = \"POST\""));
    }
}
