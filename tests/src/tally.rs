//! Counting what a closed-loop load run's clients saw: successes with their latency in an HDR
//! histogram, failures with a few sample messages. Each client keeps its own [`Tally`]; the
//! run merges them at the end. Shared by the HTTP load tool and the peers driver.

use std::time::Instant;

use hdrhistogram::Histogram;

/// Largest latency recorded, in microseconds (higher values are clamped).
pub const LATENCY_MAX_US: u64 = 60_000_000;

/// One client's (or, merged, one run's) outcomes.
#[derive(Debug)]
pub struct Tally {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Latency of the successful requests, in microseconds.
    pub latency_us: Histogram<u64>,
    samples_max: usize,
}

impl Tally {
    /// An empty tally that keeps at most `samples_max` error messages.
    pub fn new(samples_max: usize) -> Tally {
        Tally {
            ok: 0,
            errors: 0,
            error_samples: Vec::new(),
            latency_us: new_histogram(),
            samples_max,
        }
    }

    /// Counts one request sent at `sent` that ended now with `outcome`.
    pub fn record(&mut self, sent: Instant, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.ok += 1;
                self.latency_us.saturating_record(micros.max(1));
            }
            Err(message) => {
                self.errors += 1;
                if self.error_samples.len() < self.samples_max {
                    self.error_samples.push(message);
                }
            }
        }
    }

    /// Adds another tally's counts, samples (up to this one's bound) and latencies.
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        let room = self.samples_max.saturating_sub(self.error_samples.len());
        self.error_samples
            .extend(other.error_samples.into_iter().take(room));
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds merge");
    }
}

/// The histogram every tally uses: 1 µs to [`LATENCY_MAX_US`], 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_samples_stay_bounded() {
        let mut run = Tally::new(2);
        for client in 0..3 {
            let mut tally = Tally::new(2);
            tally.record(Instant::now(), Ok(()));
            tally.record(Instant::now(), Err(format!("client {client}")));
            run.merge(tally);
        }
        assert_eq!((run.ok, run.errors), (3, 3));
        assert_eq!(run.error_samples, ["client 0", "client 1"]);
        assert_eq!(run.latency_us.len(), 3);
    }
}
