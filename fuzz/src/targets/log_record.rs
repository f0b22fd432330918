//! WAL records back to back, as recovery walks a segment: the framing decoder, the one-pass
//! entry check recovery uses, and the full entry decoder, which must agree.

use cstore_core::log::codec::{RecordKind, decode_record, decode_value};
use cstore_core::log::{check_entry_record, decode_entry};
use cstore_core::storage::Metadata;

use crate::record::{input_bytes, mode, mode_byte, payload_of, unchunk};
use crate::seeds;

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let bytes = input_bytes(mode, rest);
    let mut offset = 0;
    while offset < bytes.len() {
        let buf = &bytes[offset..];
        let _ = decode_value::<Metadata>(RecordKind::Metadata, buf);
        let checked = check_entry_record(buf);
        if let Ok((entry, used)) = decode_entry(buf) {
            assert!(entry.verify_hash(), "a decoded entry matches its hash");
            let (link, checked_used) = checked.expect("an entry that decodes passes the check");
            assert_eq!(used, checked_used, "both decoders take the same bytes");
            assert_eq!(link.position(), entry.position(), "both decoders agree");
            let _ = entry.filtered(|name| name.len() % 2 == 0);
        }
        match decode_record(buf) {
            Ok((_, _, used)) => offset += used,
            Err(_) => break,
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let records = seeds::entry_records();
    let mut raw = vec![mode_byte(false, false, 0)];
    raw.extend(records.concat());
    let payloads: Vec<&[u8]> = records.iter().map(|r| payload_of(r)).collect();
    let mut sealed = vec![mode_byte(true, true, 0)];
    sealed.extend(unchunk(&payloads));
    let mut out = vec![raw, sealed];
    for record in records.iter().take(4) {
        let mut one = vec![mode_byte(false, false, 0)];
        one.extend_from_slice(record);
        out.push(one);
    }
    out
}
