//! A `POST /v1/txn` or `POST /v1/txns` body, or a write channel message (`GET /v1/write`, a
//! transaction or a list of them, with a `req` tag): the server's own parsing from bytes to
//! transactions, then each transaction committed to a state the way the leader does (an
//! entry applied, with its undo on a rejection), and the entry through the log codec.

use cstore_core::log::codec::encode_entry;
use cstore_core::log::{LogEntry, decode_entry};
use cstore_core::state::State;
use cstore_core::{LogPosition, Term, TimestampMs};
use cstore_server::http::{decode_body_for_fuzzing, decode_message_for_fuzzing};

use crate::record::{mode, mode_byte};
use crate::seeds;

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    // Choice bit 1: a write channel message; else bit 0: `/v1/txns`, not `/v1/txn`.
    let decoded = if mode.choice & 2 != 0 {
        decode_message_for_fuzzing(rest)
    } else {
        decode_body_for_fuzzing(rest, mode.choice & 1 == 1)
    };
    let Ok(txns) = decoded else {
        return;
    };
    let mut state = seeds::base_state();
    for txn in txns {
        let at = state.applied();
        let before = state.state_hash();
        let entry = LogEntry::new(at, Term(1), TimestampMs(at.lsn.0 * 1000 + 10), txn);
        let mut bytes = Vec::new();
        encode_entry(&entry, &mut bytes);
        let (decoded, _) = decode_entry(&bytes).expect("an entry of a parsed body decodes");
        assert_eq!(decoded, entry, "an entry survives the log codec");
        if state.apply(&entry).is_err() {
            assert_eq!(
                state.state_hash(),
                before,
                "a rejected transaction leaves no trace"
            );
            assert_eq!(state.applied(), at);
        }
    }
    if let Ok(restored) = State::from_snapshot(&state.snapshot()) {
        assert_eq!(restored.state_hash(), state.state_hash());
    } else {
        panic!("a state's own snapshot restores");
    }
    let _: LogPosition = state.applied();
}

/// Bodies of canonical inserts and puts, which the routes read the short way (checked against
/// the general way by `decode_body_for_fuzzing`).
const CANONICAL_BODIES: [&str; 2] = [
    r#"{"ops":[{"collection":"notes","doc":{"_id":"e","n":5,"tag":"x"},"op":"insert"},{"collection":"notes","doc":{"n":6.5,"tag":"\u0001"},"op":"insert"},{"collection":"notes","doc":{"_id":"a","o":{"k":[true,null]}},"op":"put"}]}"#,
    r#"{"ops":[{"collection":"notes","doc":{"A":1,"_id":"f"},"op":"insert"}],"origin":{"client":"fuzz-client","seq":2}}"#,
];

pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for body in seeds::txn_bodies().into_iter().chain(CANONICAL_BODIES) {
        let mut one = vec![mode_byte(false, false, 0)];
        one.extend_from_slice(body.as_bytes());
        out.push(one);
    }
    let canonical = format!("{{\"txns\":[{}]}}", CANONICAL_BODIES.join(","));
    let mut batch = vec![mode_byte(false, false, 1)];
    batch.extend_from_slice(canonical.as_bytes());
    out.push(batch);
    let many = format!("{{\"txns\":[{}]}}", seeds::txn_bodies().join(","));
    let mut batch = vec![mode_byte(false, false, 1)];
    batch.extend_from_slice(many.as_bytes());
    out.push(batch);
    for (req, body) in seeds::txn_bodies().iter().enumerate() {
        // `{"req": n, …}`: the body with a request tag in front of its fields.
        let tagged = format!("{{\"req\":{req},{}", &body[1..]);
        let mut message = vec![mode_byte(false, false, 2)];
        message.extend_from_slice(tagged.as_bytes());
        out.push(message);
    }
    // A list of transactions in one channel message.
    let list = format!(
        "{{\"req\":99,\"txns\":[{}]}}",
        seeds::txn_bodies().join(",")
    );
    let mut message = vec![mode_byte(false, false, 2)];
    message.extend_from_slice(list.as_bytes());
    out.push(message);
    // Channel messages of canonical inserts and puts, which the channel reads the short way
    // (checked against the general way by `decode_message_for_fuzzing`): tagged, untagged,
    // and a tagged list.
    for (req, body) in CANONICAL_BODIES.iter().enumerate() {
        for message in [format!("{{\"req\":{req},{}", &body[1..]), body.to_string()] {
            let mut one = vec![mode_byte(false, false, 2)];
            one.extend_from_slice(message.as_bytes());
            out.push(one);
        }
    }
    let mut message = vec![mode_byte(false, false, 2)];
    message.extend_from_slice(format!("{{\"req\":7,{}", &canonical[1..]).as_bytes());
    out.push(message);
    out
}
