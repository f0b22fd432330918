//! A snapshot's state image, as a replica assembles it from chunks or a store reads it back:
//! the bytes are hashed into a `Snapshot` (so the hash check passes) and decoded.

use cstore_core::snapshot::Snapshot;
use cstore_core::state::State;
use cstore_core::{Hash, LogPosition, Lsn};

use crate::record::{mode, mode_byte};
use crate::seeds;

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    // The position the snapshot claims: the one its image holds (the image opens with its
    // version and applied position), or another for choices above 0.
    let held = postcard::take_from_bytes::<(u8, LogPosition)>(rest).map(|((_, at), _)| at);
    let position = match held {
        Ok(at) if mode.choice == 0 => at,
        _ => LogPosition {
            lsn: Lsn(u64::from(mode.choice)),
            hash: Hash::ZERO,
        },
    };
    let snapshot = Snapshot::new(position, rest.to_vec());
    if let Ok(state) = State::from_snapshot(&snapshot) {
        assert_eq!(
            state.encode(),
            snapshot.data,
            "an accepted image is canonical: it encodes back to its own bytes"
        );
    }
    if let Ok(filtered) = State::filter_snapshot(&snapshot, |name| name.starts_with('a')) {
        let _ = State::from_snapshot(&filtered);
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    seeds::snapshots()
        .into_iter()
        .map(|snapshot| {
            let mut out = vec![mode_byte(false, false, 0)];
            out.extend_from_slice(&snapshot.data);
            out
        })
        .collect()
}
