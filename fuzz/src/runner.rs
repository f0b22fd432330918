//! The stable smoke runner: replays a target's corpus, then mutates corpus entries with a
//! seeded RNG for a time budget. No coverage feedback, no instrumentation, no nightly: what a
//! CI run on a fresh clone can afford in seconds. The coverage-guided search is
//! `scripts/fuzz.sh` (libFuzzer); both run the same target functions.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::alloc_guard;
use crate::mutate::{Rng, mutate};
use crate::targets::Target;

/// An input that runs longer than this is a hang (debug builds; libFuzzer uses `-timeout`).
pub const HANG_MS: u128 = 2_000;

/// The committed corpus: `fuzz/corpus/<target>/`.
pub fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The inputs in `dir`, in file-name order (empty when it does not exist).
pub fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keeps panic messages for the report instead of printing each one.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|last| *last.borrow_mut() = info.to_string());
    }));
}

/// Runs one input: its duration, or the panic it raised.
pub fn run_one(target: &Target, input: &[u8]) -> Result<Duration, String> {
    let started = Instant::now();
    alloc_guard::set_input(input);
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    alloc_guard::clear_input();
    match result {
        Ok(()) => Ok(started.elapsed()),
        Err(_) => Err(LAST_PANIC.with(|last| last.borrow().clone())),
    }
}

/// One finding: the input and what happened.
#[derive(Debug, Clone)]
pub struct Finding {
    /// "crash" or "hang".
    pub kind: &'static str,
    /// The panic message, or the duration of a hang.
    pub message: String,
    /// The input.
    pub input: Vec<u8>,
}

/// What a smoke run of one target did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The target's name.
    pub target: &'static str,
    /// Inputs in its committed corpus (all replayed).
    pub corpus: usize,
    /// Inputs run, the corpus included.
    pub executions: u64,
    /// Crashes (panics) and hangs found.
    pub findings: Vec<Finding>,
    /// The slowest input, in milliseconds.
    pub slowest_ms: u128,
}

impl Outcome {
    /// Crashes found.
    pub fn crashes(&self) -> usize {
        self.findings.iter().filter(|f| f.kind == "crash").count()
    }

    /// Hangs found.
    pub fn hangs(&self) -> usize {
        self.findings.iter().filter(|f| f.kind == "hang").count()
    }
}

/// Replays `corpus` through `target`, then mutates it for `budget` with `seed`. Stops
/// early after 10 findings.
pub fn smoke(target: &'static Target, corpus: &[Vec<u8>], budget: Duration, seed: u64) -> Outcome {
    let mut outcome = Outcome {
        target: target.name,
        corpus: corpus.len(),
        executions: 0,
        findings: Vec::new(),
        slowest_ms: 0,
    };
    let check = |outcome: &mut Outcome, input: &[u8]| {
        outcome.executions += 1;
        match run_one(target, input) {
            Ok(took) => {
                outcome.slowest_ms = outcome.slowest_ms.max(took.as_millis());
                if took.as_millis() > HANG_MS {
                    outcome.findings.push(Finding {
                        kind: "hang",
                        message: format!("{} ms", took.as_millis()),
                        input: input.to_vec(),
                    });
                }
            }
            Err(message) => outcome.findings.push(Finding {
                kind: "crash",
                message,
                input: input.to_vec(),
            }),
        }
    };
    for input in corpus {
        check(&mut outcome, input);
    }
    let mut pool: Vec<Vec<u8>> = if corpus.is_empty() {
        vec![Vec::new()]
    } else {
        corpus.to_vec()
    };
    let mut rng = Rng::new(seed ^ fnv(target.name.as_bytes()));
    let started = Instant::now();
    while started.elapsed() < budget && outcome.findings.len() < 10 {
        let mut input = pool[rng.below(pool.len())].clone();
        let other = pool[rng.below(pool.len())].clone();
        mutate(&mut rng, &mut input, &other);
        check(&mut outcome, &input);
        // Keep some mutants as parents, so that mutations stack up (a bounded pool).
        if rng.below(16) == 0 {
            if pool.len() < 256 {
                pool.push(input);
            } else {
                let at = rng.below(pool.len());
                pool[at] = input;
            }
        }
    }
    outcome
}

/// FNV-1a, to give each target its own stream from one seed.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
