//! Snapshots: the whole state at one log position, with a hash of that state.
//!
//! The state is encoded canonically (collections by name, documents by id), so equal states
//! have equal bytes and equal hashes, however they were reached. A snapshot plus the entries
//! after its position rebuilds exactly the state the full log builds; the property tests in
//! `state` check this.

use serde::{Deserialize, Serialize};

use crate::types::{Hash, LogPosition};

/// The state at `position`, encoded. Stores treat `data` as opaque bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last entry the state includes.
    pub position: LogPosition,
    /// SHA-256 of `data`: the state hash.
    pub state_hash: Hash,
    /// The canonical encoding of the state (see `state::State::encode`).
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("position", &self.position)
            .field("state_hash", &self.state_hash)
            .field("data_bytes", &self.data.len())
            .finish()
    }
}

impl Snapshot {
    /// Builds a snapshot from encoded state, computing its hash.
    pub fn new(position: LogPosition, data: Vec<u8>) -> Snapshot {
        Snapshot {
            position,
            state_hash: hash_bytes(&data),
            data,
        }
    }

    /// True when `data` matches `state_hash`.
    pub fn verify(&self) -> bool {
        hash_bytes(&self.data) == self.state_hash
    }
}

/// SHA-256 of a byte string.
pub fn hash_bytes(bytes: &[u8]) -> Hash {
    let mut hasher = Hasher::default();
    hasher.update(bytes);
    hasher.finish()
}

/// [`hash_bytes`] of bytes given in pieces: the hash of their concatenation (a snapshot's
/// state hash, made as its image is encoded a step at a time).
#[derive(Clone, Debug, Default)]
pub struct Hasher(sha2::Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    pub fn finish(self) -> Hash {
        Hash(sha2::Digest::finalize(self.0).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_made_in_pieces_is_the_hash_of_the_whole() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for piece in [1, 63, 64, 65, 1000, 10_000] {
            let mut hasher = Hasher::default();
            for chunk in bytes.chunks(piece) {
                hasher.update(chunk);
            }
            assert_eq!(hasher.finish(), hash_bytes(&bytes), "pieces of {piece}");
        }
        assert_ne!(hash_bytes(&bytes[1..]), hash_bytes(&bytes));
    }
}
