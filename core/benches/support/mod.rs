//! Fixtures shared by the benchmarks and the profiling example: user documents and a state
//! with the `users` collection and an index on `age`.

#![allow(dead_code)] // each bench target uses a different part

use serde_json::json;

use cstore_core::doc::RawDoc;
use cstore_core::index::IndexSpec;
use cstore_core::state::State;
use cstore_core::txn::CollectionOptions;
use cstore_core::{LogEntry, Op, Term, TimestampMs, Txn};

const CITIES: [&str; 8] = [
    "Oslo", "Rome", "Lima", "Pune", "Kyiv", "Baku", "Doha", "Riga",
];

/// A ~110-byte user document.
pub fn user(i: u64) -> RawDoc {
    user_padded(i, 0)
}

/// A user document with `padding` bytes of biography added.
pub fn user_padded(i: u64, padding: usize) -> RawDoc {
    let mut doc = json!({
        "_id": format!("u{i:08}"),
        "name": format!("user {i}"),
        "email": format!("user{i}@example.com"),
        "age": i % 90,
        "city": CITIES[(i % 8) as usize],
        "active": i.is_multiple_of(3),
    });
    if padding > 0 {
        doc["bio"] = json!("lorem ipsum ".repeat(padding / 12 + 1)[..padding]);
    }
    RawDoc::from_value(&doc).unwrap()
}

/// One insert of `user(i)`.
pub fn insert_op(i: u64) -> Txn {
    Txn::single(Op::Insert {
        collection: "users".into(),
        doc: user(i),
    })
}

/// One insert of `user(i)` under an id that lands anywhere among the ids before it (a
/// bijection of `i`, in hex), as random ids do; `insert_op`'s ids only ever ascend.
pub fn insert_scattered_op(i: u64) -> Txn {
    let mut doc = user(i).to_value();
    doc["_id"] = json!(format!("r{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    Txn::single(Op::Insert {
        collection: "users".into(),
        doc: RawDoc::from_value(&doc).unwrap(),
    })
}

/// A state with the `users` collection and the given indexes.
pub fn state_with(indexes: &[IndexSpec]) -> State {
    let mut state = State::new();
    let mut ops = vec![Op::CreateCollection {
        collection: "users".into(),
        options: CollectionOptions::default(),
    }];
    ops.extend(indexes.iter().map(|spec| Op::CreateIndex {
        collection: "users".into(),
        spec: spec.clone(),
    }));
    state
        .apply(&LogEntry::new(
            state.applied(),
            Term(1),
            TimestampMs(1),
            Txn::new(ops),
        ))
        .unwrap();
    state
}

/// A state with the `users` collection and an index on `age`.
pub fn indexed_state() -> State {
    state_with(&[IndexSpec::single("by_age", "age")])
}

/// Builds entries continuing `state`, one transaction each.
pub fn entries(state: &State, txns: impl Iterator<Item = Txn>) -> Vec<LogEntry> {
    let mut prev = state.applied();
    txns.map(|txn| {
        let entry = LogEntry::new(prev, Term(1), TimestampMs(2), txn);
        prev = entry.position();
        entry
    })
    .collect()
}
