//! Client transactions over a small key space, so that inserts clash, deletes miss and patches
//! find nothing now and then (those entries commit as no-ops, the same on every member), and a
//! collection whose documents expire by the leader's clock (which the schedule makes jump).
//! Every transaction carries its write number, so no two are alike.

use cstore_core::doc::RawDoc;
use cstore_core::txn::CollectionOptions;
use cstore_core::{Lsn, Op, Txn};
use serde_json::json;

use super::rng::Rng;

const COLLECTIONS: [&str; 2] = ["users", "sessions"];
const KEYS: u64 = 10;
/// How long a document of `sessions` lives.
const SESSION_TTL_MS: u64 = 1_500;

fn doc(rng: &mut Rng, id: u64, write: u64) -> RawDoc {
    let value = json!({"_id": format!("k{id}"), "w": write, "n": rng.below(100)});
    RawDoc::from_value(&value).expect("a valid document")
}

fn op(rng: &mut Rng, write: u64) -> Op {
    let collection = COLLECTIONS[rng.below(2) as usize].to_owned();
    let id = rng.below(KEYS);
    match rng.below(8) {
        0 => Op::Insert {
            doc: doc(rng, id, write),
            collection,
        },
        1..=3 => Op::Put {
            doc: doc(rng, id, write),
            collection,
            if_version: None,
        },
        4 => Op::Patch {
            id: format!("k{id}"),
            patch: json!({"n": rng.below(1000), "w": write}).to_string(),
            collection,
            if_version: None,
        },
        5 => Op::Delete {
            id: format!("k{id}"),
            collection,
            if_version: rng.chance(0.2).then_some(Lsn::ZERO),
        },
        6 => Op::SetTtl {
            collection: "sessions".into(),
            ttl_ms: rng.chance(0.8).then_some(SESSION_TTL_MS),
        },
        _ => Op::CreateCollection {
            collection: "sessions".into(),
            options: CollectionOptions {
                ttl_ms: Some(SESSION_TTL_MS),
            },
        },
    }
}

/// Write number `write`: one or two operations, all or nothing.
pub fn txn(rng: &mut Rng, write: u64) -> Txn {
    let ops = (0..rng.range(1, 2)).map(|_| op(rng, write)).collect();
    Txn::new(ops)
}
