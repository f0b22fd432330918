//! Seeds for the randomized tests. A fixed default keeps runs deterministic in what they choose
//! (kill points, damage offsets); `CSTORE_TEST_SEED=<u64>` explores other choices, and every
//! test prints the seed it used so a failure can be replayed.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// The environment variable that overrides the default seed.
pub const SEED_ENV: &str = "CSTORE_TEST_SEED";

/// A seeded rng for the test `name`; prints the seed and how to replay it.
pub fn seeded_rng(name: &str, default_seed: u64) -> (StdRng, u64) {
    let seed = match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={text:?} is not a u64")),
        Err(_) => default_seed,
    };
    println!("{name}: seed {seed} (replay with {SEED_ENV}={seed})");
    (StdRng::seed_from_u64(seed), seed)
}
