//! The values a browser replica reads back from IndexedDB (the wasm crate's decoders, built
//! natively): a log segment, the snapshot store's records, a pending write, a meta record.
//!
//! `choice % 4` picks the store. Segment input: `[first][count][content]`, the key
//! `first + 1 ..= first + count`.

use cstore_core::state::State;
use cstore_core::{Hash, LogPosition, Lsn};
use cstore_wasm::idb::fuzzing;

use crate::record::{build_bytes, build_records, chunks, mode, mode_byte, payload_of, unchunk};
use crate::seeds;

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let bytes = |content: &[u8], relink: Option<LogPosition>| {
        if mode.sealed {
            build_bytes(content, relink.filter(|_| mode.relink))
        } else {
            content.to_vec()
        }
    };
    match mode.choice % 4 {
        0 => {
            let [first, count, content @ ..] = rest else {
                return;
            };
            let first = u64::from(*first) + 1;
            let last = first + u64::from(*count) - 1;
            let start = LogPosition {
                lsn: Lsn(first - 1),
                hash: Hash::ZERO,
            };
            let _ = fuzzing::decode_segment(first, last, &bytes(content, Some(start)));
        }
        1 => {
            let records: Vec<Vec<u8>> = if mode.sealed {
                build_records(rest, None)
            } else {
                chunks(rest).into_iter().map(<[u8]>::to_vec).collect()
            };
            if let Ok(snapshot) = fuzzing::decode_snapshot(&records) {
                let _ = State::from_snapshot(&snapshot);
            }
        }
        2 => {
            let _ = fuzzing::decode_pending(&bytes(rest, None));
        }
        _ => {
            let _ = fuzzing::decode_meta(&bytes(rest, None));
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // A segment of entries 1..=n.
    let records = seeds::entry_records();
    let count = u8::try_from(records.len()).expect("few seed entries");
    let mut raw = vec![mode_byte(false, false, 0), 0, count];
    raw.extend(records.concat());
    out.push(raw);
    let payloads: Vec<&[u8]> = records.iter().map(|r| payload_of(r)).collect();
    let mut sealed = vec![mode_byte(true, true, 0), 0, count];
    sealed.extend(unchunk(&payloads));
    out.push(sealed);
    // The snapshot store's records (header, chunks).
    for records in seeds::idb_snapshot_records() {
        let mut raw = vec![mode_byte(false, false, 1)];
        raw.extend(unchunk(&records));
        out.push(raw);
        let payloads: Vec<&[u8]> = records.iter().map(|r| payload_of(r)).collect();
        let mut sealed = vec![mode_byte(true, false, 1)];
        sealed.extend(unchunk(&payloads));
        out.push(sealed);
    }
    // A pending write and the meta records.
    for (choice, record) in seeds::idb_small_records() {
        let mut raw = vec![mode_byte(false, false, choice)];
        raw.extend_from_slice(&record);
        out.push(raw);
    }
    out
}
