//! A replication frame as a replica or a leader receives it: one WebSocket message.

use cstore_core::replication::{FRAME_BYTES_MAX, Frame, entry_wire_bytes};

use crate::record::{input_bytes, mode, mode_byte, payload_of, unchunk};
use crate::seeds;

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let bytes = input_bytes(mode, rest);
    // A browser replica may pass a lower bound than the default.
    let max = if mode.choice & 1 == 1 {
        64 + usize::from(mode.choice) * 64
    } else {
        FRAME_BYTES_MAX
    };
    let Ok(frame) = Frame::decode_limited(&bytes, max) else {
        return;
    };
    let _ = format!("{frame:?} {}", frame.kind_name());
    let again = Frame::decode(&frame.encode()).expect("a decoded frame re-encodes to a frame");
    assert_eq!(again, frame, "a frame survives a round trip");
    if let Frame::Entries { entries } = &frame {
        for entry in entries {
            let _ = entry.verify_hash();
            let _ = entry_wire_bytes(entry);
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for frame in seeds::frames() {
        let bytes = frame.encode();
        let mut raw = vec![mode_byte(false, false, 0)];
        raw.extend_from_slice(&bytes);
        out.push(raw);
        let mut sealed = vec![mode_byte(true, false, 0)];
        sealed.extend(unchunk(&[payload_of(&bytes)]));
        out.push(sealed);
    }
    out
}
