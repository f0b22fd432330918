//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`.
//!
//! The `metrics` facade lets any code record (`metrics::counter!(...)`) without knowing who
//! listens; this module installs the listener. The exporter runs no HTTP server of its own:
//! the API router serves its text, behind the same auth as everything else. Latencies and
//! batch sizes are histograms with explicit buckets, so Prometheus can aggregate them across
//! servers (summaries cannot be aggregated).
//!
//! Names recorded elsewhere: the leader's `cstore_writes_total{result}`,
//! `cstore_commit_batches_total`, `cstore_commit_batch_size`, `cstore_fsync_seconds`,
//! `cstore_committed_lsn`, `cstore_checkpoints_total`, `cstore_checkpoint_seconds` (from
//! a checkpoint's start to its snapshot in place) and `cstore_checkpoint_running` (1 while one
//! is under way); the HTTP layer's
//! `cstore_http_requests_total{method,route,status}` and
//! `cstore_http_request_seconds{method,route}` (see [`record_http_request`]); the write
//! channel's `cstore_write_channels` and `cstore_write_channel_txns_total`; the edge's
//! `cstore_limit_tripped_total{limit}` (see [`crate::edge::Limit`] and docs/LIMITS.md).

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for latencies in seconds: 50 µs to 10 s, roughly ×2.5 per step. A commit on a
/// quiet disk is ~0.1 ms, a busy one a few ms; HTTP requests add little on loopback.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Buckets for the number of transactions in one commit batch (up to the default
/// `batch_max` of 8192).
pub const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// How often [`PrometheusHandle::run_upkeep`] should run (it bounds the recorder's memory).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The bucket configuration was refused.
    #[error("metrics configuration: {0}")]
    Build(#[from] BuildError),
}

/// Builds the recorder with histogram buckets and installs it as the process's global
/// recorder. Call once per process; a second call fails.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("cstore_commit_batch_size".into()),
            BATCH_SIZE_BUCKETS,
        )?
        .install_recorder()?;
    Ok(handle)
}

/// Counts one HTTP request and records its latency. `route` is the route's pattern (e.g.
/// `/v1/c/{collection}/{id}`), never the raw path, so the label set stays bounded.
pub fn record_http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    metrics::counter!(
        "cstore_http_requests_total",
        "method" => method.to_string(),
        "route" => route.to_string(),
        "status" => status.to_string(),
    )
    .increment(1);
    metrics::histogram!(
        "cstore_http_request_seconds",
        "method" => method.to_string(),
        "route" => route.to_string(),
    )
    .record(elapsed.as_secs_f64());
}
