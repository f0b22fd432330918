//! WAL damage at the process level: after a clean stop, the last WAL segment is truncated at a
//! sample of offsets, or has single bits flipped. Each damaged copy must either be refused
//! (non-zero exit, no panic, stderr naming the file and an offset) or start with an exact
//! prefix of the acknowledged writes: no wrong data, no invented entries. A server that starts
//! must also take new writes on top of the cut log and keep them across another restart.
//!
//! Every byte offset is covered at the store level by the file WAL's own tests; this samples
//! offsets (seeded) to prove the binary wires that recovery in and reports it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cstore_tests::dirs::{TempRoot, copy_tree, files_under};
use cstore_tests::seed::seeded_rng;
use cstore_tests::{ServerOptions, ServerProcess, StartOutcome};
use rand::Rng;
use serde_json::{Value, json};

const WRITES: usize = 200;
const RANDOM_TRUNCATIONS: usize = 6;
const BIT_FLIPS: usize = 8;

#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate(u64),
    FlipBit { offset: u64, bit: u8 },
}

/// The written documents by LSN.
type History = BTreeMap<u64, Value>;

/// The last segment file under `<data>/wal/`: the `.seg` file with the greatest name (segments
/// are named by their first LSN), or, for another naming, the last non-empty file by name.
fn last_segment(data_dir: &Path) -> PathBuf {
    let wal_dir = data_dir.join("wal");
    let files: Vec<PathBuf> = files_under(&wal_dir)
        .expect("the data dir has a wal/ dir")
        .into_iter()
        .filter(|f| std::fs::metadata(f).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    let segments: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments
        .last()
        .copied()
        .or(files.last())
        .cloned()
        .unwrap_or_else(|| panic!("no non-empty file under {}", wal_dir.display()))
}

fn apply(damage: Damage, file: &Path) {
    match damage {
        Damage::Truncate(len) => {
            let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            f.set_len(len).unwrap();
            f.sync_all().unwrap();
        }
        Damage::FlipBit { offset, bit } => {
            let mut bytes = std::fs::read(file).unwrap();
            bytes[usize::try_from(offset).unwrap()] ^= 1 << bit;
            std::fs::write(file, bytes).unwrap();
        }
    }
}

fn restore(pristine: &Path, data_dir: &Path) {
    std::fs::remove_dir_all(data_dir).unwrap();
    copy_tree(pristine, data_dir).unwrap();
}

/// Checks a started server against the history: last_lsn within it, documents exactly those
/// written up to last_lsn. Returns last_lsn.
fn assert_prefix(server: &ServerProcess, history: &History, what: &str) -> u64 {
    let client = server.client();
    let last_lsn = client.last_lsn();
    let max = *history.keys().last().unwrap();
    assert!(
        last_lsn <= max,
        "{what}: last_lsn {last_lsn} beyond anything written ({max})"
    );
    let ids: Vec<String> = history
        .values()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect();
    let got = client.get_docs("wal", &ids);
    let want: BTreeMap<String, Value> = history
        .range(..=last_lsn)
        .map(|(_, d)| (d["_id"].as_str().unwrap().to_string(), d.clone()))
        .collect();
    assert_eq!(
        got, want,
        "{what}: documents are not the prefix up to lsn {last_lsn}"
    );
    assert_eq!(
        client.collection_count("wal"),
        want.len() as u64,
        "{what}: documents beyond those written"
    );
    last_lsn
}

#[test]
fn a_damaged_wal_is_refused_or_recovered_to_a_prefix() {
    let (mut rng, seed) = seeded_rng("wal_damage", 0x7761_6c21);
    let mut server = ServerProcess::start(ServerOptions::default()).expect("server starts");
    let client = server.client();
    let mut history = History::new();
    for i in 0..WRITES {
        let doc = json!({"_id": format!("w{i:04}"), "n": i, "text": "t".repeat(i % 40)});
        let reply = client.insert("wal", &doc).unwrap().expect_status(201);
        history.insert(reply["lsn"].as_u64().unwrap(), doc);
    }
    let status = server.terminate(10_000).expect("clean stop");
    assert!(status.success(), "{}", server.stderr());

    let data_dir = server.data_dir();
    let pristine_root = TempRoot::new("pristine").unwrap();
    let pristine = pristine_root.path().join("data");
    copy_tree(&data_dir, &pristine).unwrap();
    let segment = last_segment(&data_dir);
    let relative = segment.strip_prefix(&data_dir).unwrap().to_path_buf();
    let file_name = segment.file_name().unwrap().to_string_lossy().into_owned();
    let len = std::fs::metadata(&segment).unwrap().len();
    println!("last segment {} ({len} bytes)", relative.display());

    let mut damages: Vec<Damage> = [0, 1, len / 2, len - 3, len - 1]
        .into_iter()
        .map(Damage::Truncate)
        .collect();
    damages.extend((0..RANDOM_TRUNCATIONS).map(|_| Damage::Truncate(rng.random_range(0..len))));
    // The first record's header, and the last record (a torn-looking tail).
    damages.push(Damage::FlipBit { offset: 0, bit: 0 });
    damages.push(Damage::FlipBit {
        offset: len - 2,
        bit: 3,
    });
    damages.extend((0..BIT_FLIPS).map(|_| Damage::FlipBit {
        offset: rng.random_range(0..len),
        bit: rng.random_range(0..8),
    }));

    // The undamaged copy starts with everything.
    restore(&pristine, &data_dir);
    server.restart().expect("the pristine copy starts");
    assert_eq!(
        assert_prefix(&server, &history, "pristine"),
        *history.keys().last().unwrap()
    );
    server.terminate(10_000).expect("clean stop");

    let mut refused = 0;
    let mut kept_after_truncation = Vec::new();
    for (n, damage) in damages.iter().enumerate() {
        let what = format!("seed {seed} case {n} {damage:?} of {}", relative.display());
        restore(&pristine, &data_dir);
        apply(*damage, &data_dir.join(&relative));
        match server
            .start_again()
            .unwrap_or_else(|e| panic!("{what}: {e}"))
        {
            StartOutcome::Exited { status, stderr } => {
                refused += 1;
                assert!(
                    status.code().is_some_and(|c| c != 0 && c != 101),
                    "{what}: a refusal is a clean non-zero exit, not {status}\n{stderr}"
                );
                assert!(!stderr.contains("panicked"), "{what}: panicked\n{stderr}");
                assert!(
                    stderr.contains(&file_name) && stderr.to_ascii_lowercase().contains("offset"),
                    "{what}: stderr names the file and the offset\n{stderr}"
                );
                let last_line = stderr.lines().last().unwrap_or_default();
                println!("{what}: refused ({status}): {last_line}");
            }
            StartOutcome::Healthy => {
                let kept = assert_prefix(&server, &history, &what);
                // New writes land on top of the cut log and survive a restart.
                let doc = json!({"_id": format!("after{n}"), "case": n});
                let reply = server
                    .client()
                    .insert("wal", &doc)
                    .unwrap()
                    .expect_status(201);
                let new_lsn = reply["lsn"].as_u64().unwrap();
                assert_eq!(
                    new_lsn,
                    kept + 1,
                    "{what}: the next write follows the kept prefix"
                );
                let status = server
                    .terminate(10_000)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(status.success(), "{what}: {}", server.stderr());
                server
                    .restart()
                    .unwrap_or_else(|e| panic!("{what}: restart after a write: {e}"));
                let mut extended = history
                    .range(..=kept)
                    .map(|(k, v)| (*k, v.clone()))
                    .collect::<History>();
                extended.insert(new_lsn, doc);
                assert_eq!(assert_prefix(&server, &extended, &what), new_lsn);
                if let Damage::Truncate(at) = damage {
                    kept_after_truncation.push((*at, kept));
                }
                println!("{what}: started with lsn {kept} of {}", history.len());
            }
        }
        if server.is_running() {
            let status = server
                .terminate(10_000)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(status.success(), "{what}: {}", server.stderr());
        }
    }
    println!("{} cases, {refused} refused", damages.len());
    // Cutting the log later never keeps less of it.
    kept_after_truncation.sort();
    for pair in kept_after_truncation.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "seed {seed}: truncating at {} kept lsn {}, but truncating later at {} kept only {}",
            pair[0].0,
            pair[0].1,
            pair[1].0,
            pair[1].1
        );
    }
}
