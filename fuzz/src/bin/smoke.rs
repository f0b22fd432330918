//! The stable fuzz runner: `fuzz-smoke [--seconds N] [--seed S] [TARGET...]` replays each
//! target's committed corpus, mutates it for N seconds (default 3), prints a table, and fails
//! on any crash or hang. `fuzz-smoke write-seeds` rewrites the seed files of
//! `fuzz/corpus/<target>/seed-*` from the real encoders; `fuzz-smoke replay TARGET FILE...`
//! runs saved inputs (libFuzzer's crash files) in a debug build with the panic shown.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use cstore_fuzz::runner::{corpus_root, hex, load_corpus, quiet_panics, run_one, smoke};
use cstore_fuzz::{TARGETS, Target, target};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("write-seeds") => write_seeds(),
        Some("replay") => replay(&args[1..]),
        Some("list") => {
            for t in TARGETS {
                println!("{:<18} {}", t.name, t.what);
            }
            ExitCode::SUCCESS
        }
        _ => run(&args),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("fuzz-smoke: {message}");
    eprintln!(
        "usage: fuzz-smoke [--seconds N] [--seed S] [TARGET...] | write-seeds | replay TARGET FILE... | list"
    );
    ExitCode::from(2)
}

fn run(args: &[String]) -> ExitCode {
    let mut seconds = 3.0f64;
    let mut seed = 1u64;
    let mut chosen: Vec<&'static Target> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seconds = s,
                None => return usage("--seconds takes a number"),
            },
            "--seed" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seed = s,
                None => return usage("--seed takes an integer"),
            },
            name => match target(name) {
                Some(t) => chosen.push(t),
                None => return usage(&format!("no target {name:?} (try `list`)")),
            },
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().collect();
    }
    quiet_panics();
    let started = Instant::now();
    println!(
        "{:<18} {:>7} {:>11} {:>8} {:>6} {:>11}",
        "target", "corpus", "executions", "crashes", "hangs", "slowest ms"
    );
    let mut failed = false;
    let mut total = 0;
    for t in chosen {
        let corpus = load_corpus(&corpus_root().join(t.name));
        let outcome = smoke(t, &corpus, Duration::from_secs_f64(seconds), seed);
        total += outcome.executions;
        println!(
            "{:<18} {:>7} {:>11} {:>8} {:>6} {:>11}",
            outcome.target,
            outcome.corpus,
            outcome.executions,
            outcome.crashes(),
            outcome.hangs(),
            outcome.slowest_ms
        );
        for finding in &outcome.findings {
            failed = true;
            println!(
                "  {} ({}): input {}",
                finding.kind,
                finding.message,
                hex(&finding.input)
            );
        }
    }
    println!(
        "{} executions in {:.1} s (seed {seed}); allocations above {} MiB abort the run",
        total,
        started.elapsed().as_secs_f64(),
        cstore_fuzz::alloc_guard::ALLOCATION_BYTES_MAX >> 20
    );
    if failed {
        println!("FAILED: reproduce with `fuzz-smoke replay TARGET FILE` after saving the input");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn write_seeds() -> ExitCode {
    for t in TARGETS {
        let dir = corpus_root().join(t.name);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        for old in std::fs::read_dir(&dir).expect("corpus folder").flatten() {
            if old.file_name().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(old.path()).expect("old seed");
            }
        }
        let seeds = (t.seeds)();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("seed file");
        }
        println!("{:<18} {} seeds", t.name, seeds.len());
    }
    ExitCode::SUCCESS
}

fn replay(args: &[String]) -> ExitCode {
    let Some((name, files)) = args.split_first() else {
        return usage("replay takes a target and files");
    };
    let Some(t) = target(name) else {
        return usage(&format!("no target {name:?}"));
    };
    quiet_panics();
    let mut failed = false;
    for file in files {
        let input = std::fs::read(file).expect("input file");
        match run_one(t, &input) {
            Ok(took) => println!("{file}: ok in {} ms", took.as_millis()),
            Err(message) => {
                failed = true;
                println!("{file}: CRASH {message}\n  input {}", hex(&input));
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
