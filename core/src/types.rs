//! Newtypes for the numbers and digests that the protocol talks about.
//!
//! A bare `u64` could be an LSN, a term or a timestamp; these types make the difference a
//! compile error. They are `Copy`, ordered, and serialize as their inner value.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Log sequence number: the gap-free position of an entry in the log. The first entry is 1;
/// `Lsn(0)` means "nothing yet".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The LSN before the first entry.
    pub const ZERO: Lsn = Lsn(0);

    /// The next LSN. Overflow is a bug: 2^64 entries will not be written.
    #[must_use]
    pub fn next(self) -> Lsn {
        Lsn(self.0.checked_add(1).expect("LSN overflow"))
    }

    /// The previous LSN, or `Lsn::ZERO` for `Lsn::ZERO`.
    #[must_use]
    pub fn prev(self) -> Lsn {
        Lsn(self.0.saturating_sub(1))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Leadership term. Every entry carries the term of the leader that wrote it; a replica refuses
/// entries from a term older than one it has seen.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Milliseconds since the Unix epoch, as read by the leader's clock and carried in the log.
/// Core never reads a clock; this always comes in as an argument.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct TimestampMs(pub u64);

impl fmt::Display for TimestampMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Identity of a replica (or server node), chosen by the replica and stable across restarts.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ReplicaId(pub u64);

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A SHA-256 digest: of a log entry (chained), or of a state.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Hash(pub [u8; 32]);

/// What the derive would do (a newtype around a tuple of 32 bytes), with the bytes read in a
/// loop: serde's `[u8; 32]` reads them in 32 unrolled steps, about 4 KB of the browser module.
impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Hash, D::Error> {
        use serde::de::{Error, SeqAccess, Visitor};

        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of length 32")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hash, A::Error> {
                let mut bytes = [0u8; 32];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(Hash(bytes))
            }
        }

        struct Newtype;
        impl<'de> Visitor<'de> for Newtype {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("tuple struct Hash")
            }
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Hash, D::Error> {
                deserializer.deserialize_tuple(32, Bytes)
            }
        }

        deserializer.deserialize_newtype_struct("Hash", Newtype)
    }
}

impl Hash {
    /// The `prev_hash` of the first entry in a log.
    pub const ZERO: Hash = Hash([0; 32]);

    /// Lowercase hex, as shown in status output and logs.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits identify a hash in logs and test failures; the full 64 are noise.
        write!(f, "Hash({}…)", &self.to_hex()[..8])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A position in the log together with the hash of the entry there: enough to detect
/// divergence between two logs by comparing one pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogPosition {
    /// The LSN of the entry (`Lsn::ZERO` for an empty log).
    pub lsn: Lsn,
    /// The hash of that entry (`Hash::ZERO` for an empty log).
    pub hash: Hash,
}

impl LogPosition {
    /// The position of an empty log.
    pub const START: LogPosition = LogPosition {
        lsn: Lsn::ZERO,
        hash: Hash::ZERO,
    };
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.lsn, &self.hash.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_reads_as_the_derived_newtype_of_32_bytes() {
        let hash = Hash(std::array::from_fn(|i| i as u8 * 7));
        let wire = postcard::to_allocvec(&hash).unwrap();
        assert_eq!(wire.len(), 32, "a tuple: no length prefix");
        assert_eq!(postcard::from_bytes::<Hash>(&wire).unwrap(), hash);
        assert!(postcard::from_bytes::<Hash>(&wire[..31]).is_err());
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), hash);
        let short = serde_json::from_str::<Hash>("[1,2,3]").unwrap_err();
        assert!(
            short.to_string().contains("an array of length 32"),
            "{short}"
        );
    }

    #[test]
    fn lsn_steps() {
        assert_eq!(Lsn(1).next(), Lsn(2));
        assert_eq!(Lsn::ZERO.prev(), Lsn::ZERO);
        assert_eq!(Lsn(5).prev(), Lsn(4));
    }

    #[test]
    fn hash_hex() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x01;
        let hex = Hash(bytes).to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00"));
        assert!(hex.ends_with("01"));
        assert_eq!(format!("{:?}", Hash(bytes)), "Hash(ab000000…)");
    }
}
