//! Reconnect delays: exponential with a cap, and jittered so that followers cut off together
//! (a leader restart) do not all knock again in the same millisecond.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Jittered exponential backoff: the n-th delay is drawn from `[d/2, d]` where
/// `d = min(initial · 2ⁿ, max)`.
#[derive(Debug)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    /// The un-jittered delay of the next attempt.
    next_ms: u64,
    rng: StdRng,
}

impl Backoff {
    /// Delays from `initial_ms` doubling up to `max_ms`, jittered by a generator seeded with
    /// `seed` (so a test sees the same delays every run).
    pub fn new(initial_ms: u64, max_ms: u64, seed: u64) -> Backoff {
        assert!(
            initial_ms >= 1 && initial_ms <= max_ms,
            "backoff bounds {initial_ms}..{max_ms}"
        );
        Backoff {
            initial_ms,
            max_ms,
            next_ms: initial_ms,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt, in milliseconds; each call doubles the next one.
    pub fn next_delay_ms(&mut self) -> u64 {
        let ceiling = self.next_ms;
        self.next_ms = (self.next_ms.saturating_mul(2)).min(self.max_ms);
        self.rng.random_range(ceiling / 2..=ceiling)
    }

    /// A connection made progress: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.next_ms = self.initial_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(100, 1_000, 7);
        let ceilings = [100, 200, 400, 800, 1_000, 1_000, 1_000];
        for ceiling in ceilings {
            let delay = backoff.next_delay_ms();
            assert!(
                (ceiling / 2..=ceiling).contains(&delay),
                "{delay} outside [{}, {ceiling}]",
                ceiling / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay_ms() <= 100);
        // Jitter: not every delay at the cap is the same.
        let capped: Vec<u64> = (0..16).map(|_| backoff.next_delay_ms()).skip(4).collect();
        assert!(capped.iter().any(|d| *d != capped[0]), "{capped:?}");
    }
}
