//! The committed corpus of every target replays without a crash or a hang, and every
//! target's seeds can still be made by the real encoders. Crash inputs that fuzzing found are
//! kept in the corpus (`crash-*`), so this test is also their regression test here; each has
//! a plain test in its decoder's crate as well.

use std::time::Duration;

use cstore_fuzz::TARGETS;
use cstore_fuzz::runner::{HANG_MS, corpus_root, load_corpus, run_one};

#[test]
fn every_corpus_input_runs_clean() {
    for target in TARGETS {
        let corpus = load_corpus(&corpus_root().join(target.name));
        assert!(!corpus.is_empty(), "{} has no corpus", target.name);
        for (i, input) in corpus.iter().enumerate() {
            let took = run_one(target, input)
                .unwrap_or_else(|panic| panic!("{} input {i}: {panic}", target.name));
            assert!(
                took < Duration::from_millis(HANG_MS as u64),
                "{} input {i} took {took:?}",
                target.name
            );
        }
    }
}

#[test]
fn every_target_makes_its_seeds() {
    for target in TARGETS {
        let seeds = (target.seeds)();
        assert!(!seeds.is_empty(), "{} makes no seeds", target.name);
        for seed in &seeds {
            (target.run)(seed);
        }
    }
}
