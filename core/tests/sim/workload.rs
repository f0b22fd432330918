//! Random client transactions over a small key space, so that inserts clash, deletes miss and
//! patches find nothing now and then: the leader rejects those, as it would in production.

use cstore_core::doc::RawDoc;
use cstore_core::{Lsn, Op, Txn};
use serde_json::json;

use super::rng::Rng;

const COLLECTIONS: [&str; 2] = ["users", "orders"];
const KEYS: u64 = 12;

fn doc(rng: &mut Rng, id: u64) -> RawDoc {
    let value =
        json!({"_id": format!("k{id}"), "n": rng.below(1000), "tag": format!("t{}", rng.below(4))});
    RawDoc::from_value(&value).expect("a valid document")
}

fn op(rng: &mut Rng) -> Op {
    let collection = COLLECTIONS[rng.below(2) as usize].to_owned();
    let id = rng.below(KEYS);
    match rng.below(6) {
        0 => Op::Insert {
            doc: doc(rng, id),
            collection,
        },
        1..=3 => Op::Put {
            doc: doc(rng, id),
            collection,
            if_version: None,
        },
        4 => Op::Patch {
            id: format!("k{id}"),
            patch: json!({"n": rng.below(1000)}).to_string(),
            collection,
            if_version: None,
        },
        _ => Op::Delete {
            id: format!("k{id}"),
            collection,
            if_version: if rng.chance(0.1) {
                Some(Lsn::ZERO)
            } else {
                None
            },
        },
    }
}

/// One or two operations, all or nothing.
pub fn txn(rng: &mut Rng) -> Txn {
    let ops = (0..rng.range(1, 2)).map(|_| op(rng)).collect();
    Txn::new(ops)
}
