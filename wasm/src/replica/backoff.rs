//! Jittered exponential backoff for reconnects and write retries.
//!
//! Thousands of tabs losing the same server must not come back in lockstep, so each delay is
//! drawn uniformly from [base/2, base] ("equal jitter"), with the base doubling per failure
//! up to a cap, and reset after a success.

/// First delay's base, in milliseconds.
pub const BACKOFF_START_MS: u64 = 100;
/// Largest delay, in milliseconds.
pub const BACKOFF_CAP_MS: u64 = 5_000;

/// The delay state of one retry loop.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// The delay before the next attempt after one more failure, given a random fraction in
    /// [0, 1).
    pub fn next_delay_ms(&mut self, random: f64) -> u64 {
        let base = BACKOFF_START_MS
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_CAP_MS);
        self.failures = self.failures.saturating_add(1);
        let half = base / 2;
        half + (random.clamp(0.0, 1.0) * half as f64) as u64
    }

    /// A success: the next failure starts from the smallest delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next_delay_ms(0.0), 50);
        assert_eq!(backoff.next_delay_ms(1.0), 200);
        let delays: Vec<u64> = (0..10).map(|_| backoff.next_delay_ms(0.999)).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert!(*delays.last().unwrap() <= BACKOFF_CAP_MS);
        assert!(*delays.last().unwrap() >= BACKOFF_CAP_MS / 2);
        backoff.reset();
        assert!(backoff.next_delay_ms(0.5) <= BACKOFF_START_MS);
    }
}
