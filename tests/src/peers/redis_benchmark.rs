//! A cross-check of the redis row with redis's own generator, `redis-benchmark`, against the
//! same server right after our driver: if the two disagree widely, the RESP client of this
//! benchmark (not redis) would be the bottleneck, and the table would show it.

use std::process::Command;

use super::driver::WriteSummary;
use super::error::{PeerError, tool_output};

/// Runs `redis-benchmark -t set` with `clients` connections, each with `pipeline` SETs in
/// flight (`-P`; 1 waits for each answer), `requests` SETs of `value_bytes` bytes on random
/// keys, and reads its CSV line.
pub fn run(
    port: u16,
    clients: usize,
    pipeline: usize,
    requests: u64,
    value_bytes: usize,
) -> Result<WriteSummary, PeerError> {
    let mut command = Command::new("redis-benchmark");
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &clients.to_string(), "-n", &requests.to_string()])
        .args(["-P", &pipeline.to_string()])
        .args([
            "-d",
            &value_bytes.to_string(),
            "-r",
            "100000000",
            "-t",
            "set",
            "--csv",
        ]);
    let stdout = tool_output(command, "redis-benchmark", "redis-tools")?;
    parse_csv(&stdout).ok_or_else(|| PeerError::net("reading redis-benchmark's CSV", stdout))
}

/// The `"SET",...` line of redis-benchmark 7's CSV: test, rps, avg, min, p50, p95, p99, max.
pub fn parse_csv(text: &str) -> Option<WriteSummary> {
    let line = text.lines().find(|l| l.starts_with("\"SET\""))?;
    let fields: Vec<f64> = line
        .split(',')
        .skip(1)
        .map(|f| f.trim_matches('"').parse())
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 7 {
        return None;
    }
    Some(WriteSummary {
        ops_per_s: fields[0],
        p50_ms: fields[3],
        p99_ms: fields[5],
        p999_ms: None,
        errors: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_set_line() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                   \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"5268.70\",\"11.888\",\"0.864\",\"10.319\",\"25.519\",\"34.687\",\"78.655\"\n";
        let summary = parse_csv(csv).expect("parses");
        assert_eq!(summary.ops_per_s, 5268.70);
        assert_eq!(summary.p50_ms, 10.319);
        assert_eq!(summary.p99_ms, 34.687);
        assert_eq!(parse_csv("\"SET\",\"oops\""), None);
    }
}
