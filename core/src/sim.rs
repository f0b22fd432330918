//! The randomness the deterministic simulators share (the replication simulator in
//! `core/tests/sim`, the cluster simulator in `server/tests/cluster_sim`). Behind the `testing`
//! feature; like the rest of core it reads no clock and no entropy: the seed comes in.
//!
//! [`SimRng`] is SplitMix64: a tiny, well-mixed PRNG. One `u64` of state, so a seed reproduces a
//! run exactly, on every platform, with no dependency. A simulation may draw from several
//! streams forked from the seed (the schedule, the network, each member's disk), so that what
//! one part draws does not shift what another part sees.

/// A stream of a simulation's randomness.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A new stream, independent of this one from here on.
    pub fn fork(&mut self) -> SimRng {
        SimRng(self.next_u64())
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64) < p * (1u64 << 53) as f64
    }

    /// A probability: zero half the time (the fault is off for this seed), else up to `max`.
    pub fn maybe(&mut self, max: f64) -> f64 {
        if self.chance(0.5) {
            0.0
        } else {
            max * (self.below(1000) + 1) as f64 / 1000.0
        }
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}
