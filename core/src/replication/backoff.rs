//! Reconnect and retry delays: exponential with a cap, and jittered so that replicas cut off
//! together (a leader restart, thousands of tabs losing the same server) do not all knock
//! again in the same millisecond.
//!
//! Sans-IO like the rest of core: the caller draws the randomness (a fraction in `[0, 1)`,
//! e.g. `Math.random()` in the browser or a seeded generator on the server) and does the
//! sleeping.

/// Jittered exponential backoff ("equal jitter"): the n-th delay since the last
/// [`reset`](Backoff::reset) is drawn uniformly from the whole milliseconds in `[d/2, d]`,
/// where `d = min(initial · 2ⁿ, max)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    /// The un-jittered delay of the next attempt.
    next_ms: u64,
}

impl Backoff {
    /// Delays from `initial_ms` doubling up to `max_ms`.
    ///
    /// # Panics
    ///
    /// Unless `1 <= initial_ms <= max_ms`.
    pub fn new(initial_ms: u64, max_ms: u64) -> Backoff {
        assert!(
            initial_ms >= 1 && initial_ms <= max_ms,
            "backoff bounds {initial_ms}..{max_ms}"
        );
        Backoff {
            initial_ms,
            max_ms,
            next_ms: initial_ms,
        }
    }

    /// The delay before the next attempt, in milliseconds, given a random fraction in
    /// `[0, 1)` (a value outside is clamped, NaN counts as 0); each call doubles the next one.
    pub fn next_delay_ms(&mut self, random: f64) -> u64 {
        let ceiling = self.next_ms;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.max_ms);
        let floor = ceiling / 2;
        // At least 1; every whole millisecond of [floor, ceiling] is equally likely.
        let span = ceiling - floor + 1;
        let offset = (random.clamp(0.0, 1.0) * span as f64) as u64;
        floor + offset.min(span - 1)
    }

    /// A connection made progress: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.next_ms = self.initial_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stand-in for a random source: fractions spread over [0, 1).
    fn fractions() -> impl Iterator<Item = f64> {
        (0u64..).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64)
    }

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(100, 1_000);
        let mut random = fractions();
        let ceilings = [100, 200, 400, 800, 1_000, 1_000, 1_000];
        for ceiling in ceilings {
            let delay = backoff.next_delay_ms(random.next().unwrap());
            assert!(
                (ceiling / 2..=ceiling).contains(&delay),
                "{delay} outside [{}, {ceiling}]",
                ceiling / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay_ms(random.next().unwrap()) <= 100);
        // Jitter: not every delay at the cap is the same.
        let capped: Vec<u64> = (0..16)
            .map(|_| backoff.next_delay_ms(random.next().unwrap()))
            .skip(4)
            .collect();
        assert!(capped.iter().any(|d| *d != capped[0]), "{capped:?}");
    }

    #[test]
    fn the_random_fraction_picks_within_the_bounds() {
        let mut backoff = Backoff::new(100, 5_000);
        assert_eq!(backoff.next_delay_ms(0.0), 50);
        assert_eq!(backoff.next_delay_ms(1.0), 200);
        let delays: Vec<u64> = (0..10).map(|_| backoff.next_delay_ms(0.999)).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), 4_998);
        backoff.reset();
        assert!(backoff.next_delay_ms(0.5) <= 100);
        // Out of range and NaN are clamped rather than trusted.
        backoff.reset();
        assert_eq!(backoff.next_delay_ms(-3.0), 50);
        assert_eq!(backoff.next_delay_ms(7.0), 200);
        assert_eq!(backoff.next_delay_ms(f64::NAN), 200);
    }

    #[test]
    fn every_millisecond_of_the_range_can_be_drawn() {
        // Ceiling 3: [1, 3], three equally wide slices of [0, 1).
        let draw = |random: f64| Backoff::new(3, 3).next_delay_ms(random);
        assert_eq!(
            [0.0, 0.33, 0.34, 0.66, 0.67, 0.999_999].map(draw),
            [1, 1, 2, 2, 3, 3]
        );
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let mut backoff = Backoff::new(u64::MAX / 2, u64::MAX);
        let _ = backoff.next_delay_ms(0.0);
        let _ = backoff.next_delay_ms(0.0);
        assert_eq!(backoff.next_delay_ms(1.0), u64::MAX);
        assert_eq!(backoff.next_delay_ms(0.0), u64::MAX / 2);
    }

    #[test]
    #[should_panic(expected = "backoff bounds")]
    fn refuses_a_zero_start() {
        let _ = Backoff::new(0, 10);
    }

    #[test]
    #[should_panic(expected = "backoff bounds")]
    fn refuses_a_start_above_the_cap() {
        let _ = Backoff::new(20, 10);
    }
}
