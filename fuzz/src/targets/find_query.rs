//! A find request body (`POST /v1/c/{collection}/find`: filter, sort, limit, skip) parsed by
//! core, then run on a collection with secondary indexes, where debug builds assert the
//! planner's claim of an exact plan on every result.

use cstore_core::query::{FindQuery, count, find};

use crate::record::{mode, mode_byte};
use crate::seeds;

pub fn run(data: &[u8]) {
    let Some((_, rest)) = mode(data) else {
        return;
    };
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    // The route takes its own fields off first (server/src/http/find.rs), then core parses.
    if let Some(map) = body.as_object_mut() {
        for key in ["explain", "min_lsn", "min_lsn_timeout_ms", "consistency"] {
            map.remove(key);
        }
    }
    let Ok(query) = FindQuery::parse(&body) else {
        return;
    };
    let state = seeds::base_state();
    let collection = state.collection("notes").expect("the seed state has notes");
    let found = find(collection, &query).expect("a parsed query runs");
    let _ = found.plan.explain().to_string();
    let counted = count(collection, &query.filter);
    if query.limit.is_none() && query.skip == 0 {
        assert_eq!(found.docs.len(), counted.count, "find and count agree");
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    seeds::find_bodies()
        .into_iter()
        .map(|body| {
            let mut out = vec![mode_byte(false, false, 0)];
            out.extend_from_slice(body.as_bytes());
            out
        })
        .collect()
}
