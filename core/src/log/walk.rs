//! Reading an entry record in one pass: each operation is hashed from its bytes as they sit in
//! the record, instead of being encoded again after decoding.
//!
//! A log entry's body is postcard, field after field:
//!
//! ```text
//! lsn term timestamp │ op count, op 1 … op n │ origin │ omitted │ prev_hash (32) │ hash (32)
//!                      └ SHA-256 of each op's bytes ┘
//! ```
//!
//! The walk reads the fields in that order with postcard, and takes each operation's span from
//! what its decoding consumed. Two walks share it:
//!
//! - [`decode_entry`](super::codec::decode_entry) decodes everything (documents are checked
//!   canonical as they decode) and verifies the hash: one decode per entry read;
//! - [`check_entry_record`] decodes operations into a borrowed mirror that skips documents'
//!   contents and verifies crc, hash and structure only, for a store's open-time scan, where
//!   the documents are decoded (and checked) later, when the entries are read.
//!
//! The mirror must encode exactly like [`Op`]; the tests below hold the two together.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codec::{DecodeError, RecordKind, decode_record};
use super::entry::HashedHeader;
use crate::doc::RawDoc;
use crate::index::IndexSpec;
use crate::log::LogEntry;
use crate::txn::{CollectionOptions, OmittedOp, Op, Origin, Txn};
use crate::types::{Hash, LogPosition, Lsn, Term, TimestampMs};

/// What the chain needs of an entry: its place and both hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLink {
    /// The entry's LSN.
    pub lsn: Lsn,
    /// The hash of the entry before it.
    pub prev_hash: Hash,
    /// Its own (verified) hash.
    pub hash: Hash,
}

impl EntryLink {
    /// True when this entry directly follows `prev` in a chain.
    pub fn follows(&self, prev: LogPosition) -> bool {
        self.lsn == prev.lsn.next() && self.prev_hash == prev.hash
    }

    /// Where this entry stands: its lsn and hash.
    pub fn position(&self) -> LogPosition {
        LogPosition {
            lsn: self.lsn,
            hash: self.hash,
        }
    }
}

/// An [`Op`] as borrowed text: same variants in the same order, same field types on the wire,
/// nothing allocated for names, ids and documents.
#[derive(Deserialize)]
#[allow(dead_code)] // read only for its encoding's length
enum OpMirror<'a> {
    CreateCollection {
        collection: &'a str,
        options: CollectionOptions,
    },
    DropCollection {
        collection: &'a str,
    },
    CreateIndex {
        collection: &'a str,
        spec: IndexSpec,
    },
    DropIndex {
        collection: &'a str,
        name: &'a str,
    },
    SetTtl {
        collection: &'a str,
        ttl_ms: Option<u64>,
    },
    Insert {
        collection: &'a str,
        doc: &'a str,
    },
    Put {
        collection: &'a str,
        doc: &'a str,
        if_version: Option<Lsn>,
    },
    Patch {
        collection: &'a str,
        id: &'a str,
        patch: &'a str,
        if_version: Option<Lsn>,
    },
    Delete {
        collection: &'a str,
        id: &'a str,
        if_version: Option<Lsn>,
    },
}

/// An [`Origin`], borrowed; encodes exactly like it.
#[derive(Serialize, Deserialize)]
struct OriginMirror<'a> {
    client: &'a str,
    seq: u64,
}

/// Operations per entry whose hashes are kept on the stack while the entry is walked.
const OPS_INLINE: usize = 8;
/// Bytes of a SHA-256 hash.
const HASH_BYTES: usize = 32;

/// The next postcard value of `rest`, which moves past it.
fn take<'a, T: Deserialize<'a>>(rest: &mut &'a [u8]) -> Result<T, DecodeError> {
    let (value, after) =
        postcard::take_from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    *rest = after;
    Ok(value)
}

/// An entry body, walked, but for its operations; `G` is the origin type decoded.
struct Walked<G> {
    lsn: Lsn,
    term: Term,
    timestamp: TimestampMs,
    origin: Option<G>,
    omitted: Vec<OmittedOp>,
    prev_hash: Hash,
    hash: Hash,
}

/// Walks an entry body, handing each decoded operation and its bytes to `on_op`, and verifies the hash from
/// the operations' bytes.
fn walk<'a, O, G>(
    mut rest: &'a [u8],
    mut on_op: impl FnMut(O, &'a [u8]) -> Result<(), DecodeError>,
) -> Result<Walked<G>, DecodeError>
where
    O: Deserialize<'a>,
    G: Deserialize<'a> + Serialize,
{
    let lsn: Lsn = take(&mut rest)?;
    let term: Term = take(&mut rest)?;
    let timestamp: TimestampMs = take(&mut rest)?;
    let count: u64 = take(&mut rest)?;
    // Most entries carry a few operations: their hashes stay on the stack.
    let mut inline = [Hash::ZERO; OPS_INLINE];
    let mut spilled = Vec::new();
    for i in 0..count {
        let before = rest;
        let op = take(&mut rest)?;
        let span = &before[..before.len() - rest.len()];
        on_op(op, span)?;
        let op_hash = Hash(Sha256::digest(span).into());
        if i < OPS_INLINE as u64 {
            inline[i as usize] = op_hash;
        } else {
            if spilled.is_empty() {
                // Every operation takes at least one byte: a corrupt count cannot ask for more.
                spilled.reserve((count as usize).min(before.len()));
                spilled.extend_from_slice(&inline);
            }
            spilled.push(op_hash);
        }
    }
    let op_hashes = if spilled.is_empty() {
        &inline[..count as usize]
    } else {
        &spilled[..]
    };
    let origin: Option<G> = take(&mut rest)?;
    let omitted: Vec<OmittedOp> = take(&mut rest)?;
    // The two hashes end the body, 32 raw bytes each (postcard writes a `[u8; 32]` as is).
    if rest.len() != 2 * HASH_BYTES {
        return Err(DecodeError::Malformed(format!(
            "{} bytes where the two hashes should be",
            rest.len()
        )));
    }
    let (prev_hash, hash) = rest.split_at(HASH_BYTES);
    let prev_hash = Hash(prev_hash.try_into().expect("32 bytes"));
    let hash = Hash(hash.try_into().expect("32 bytes"));
    let header = HashedHeader {
        prev: prev_hash,
        lsn,
        term,
        timestamp,
        origin: &origin,
    };
    if header.hash(op_hashes.iter().copied(), &omitted) != Some(hash) {
        return Err(DecodeError::HashMismatch { lsn });
    }
    Ok(Walked {
        lsn,
        term,
        timestamp,
        origin,
        omitted,
        prev_hash,
        hash,
    })
}

/// Decodes a whole entry body and verifies its hash.
pub(super) fn decode_entry_body(body: &[u8]) -> Result<LogEntry, DecodeError> {
    let mut ops = Vec::new();
    let walked: Walked<Origin> = walk(body, |op: Op, _| {
        ops.push(op);
        Ok(())
    })?;
    Ok(entry_of(walked, ops))
}

fn entry_of(walked: Walked<Origin>, ops: Vec<Op>) -> LogEntry {
    LogEntry {
        lsn: walked.lsn,
        term: walked.term,
        timestamp: walked.timestamp,
        txn: Txn {
            ops,
            origin: walked.origin,
            omitted: walked.omitted,
        },
        prev_hash: walked.prev_hash,
        hash: walked.hash,
    }
}

/// A document of a record of our own log, whose hash has been checked (see below).
fn own_doc(text: &str) -> Result<RawDoc, DecodeError> {
    RawDoc::from_own_log(text)
        .ok_or_else(|| DecodeError::Malformed("a document is not in canonical form".into()))
}

/// [`decode_entry`](super::codec::decode_entry) for a record that a store reads back from its
/// own log: everything is checked the same (crc, structure, SHA-256 hash) except that the
/// documents of inserts and puts are taken as the canonical text they are, without proving it
/// again.
///
/// Why that is sound: a document enters a node's log only as a [`RawDoc`](crate::doc::RawDoc),
/// which is canonical by construction, whether the node's leader validated it from a client's
/// JSON or the node decoded it (with the full check) from a peer's replication frame, a
/// Raft message or a backup. The entry's hash, checked here, covers each operation's bytes,
/// and the crc covers the record: so the bytes read back are the ones that were checked when
/// they were written. Bytes from outside (a peer's frames, a replica's IndexedDB, a backup
/// being restored) must keep using `decode_entry`. Debug builds check the form anyway.
pub fn decode_own_entry(buf: &[u8]) -> Result<(LogEntry, usize), DecodeError> {
    let (kind, body, used) = decode_record(buf)?;
    if kind != RecordKind::Entry {
        return Err(DecodeError::WrongKind {
            expected: RecordKind::Entry,
            found: kind,
        });
    }
    // The operations are built only once the hash has been checked: until then the
    // documents are just bytes.
    let mut mirrors = Vec::new();
    let walked: Walked<Origin> = walk(body, |op: OpMirror<'_>, span| {
        mirrors.push((op, span));
        Ok(())
    })?;
    let mut ops = Vec::with_capacity(mirrors.len());
    for (op, span) in mirrors {
        ops.push(match op {
            OpMirror::Insert { collection, doc } => Op::Insert {
                collection: collection.into(),
                doc: own_doc(doc)?,
            },
            OpMirror::Put {
                collection,
                doc,
                if_version,
            } => Op::Put {
                collection: collection.into(),
                doc: own_doc(doc)?,
                if_version,
            },
            // The rest carry no document: decoded as usual from their bytes.
            _ => postcard::from_bytes(span).map_err(|e| DecodeError::Malformed(e.to_string()))?,
        });
    }
    Ok((entry_of(walked, ops), used))
}

/// Checks the entry record at the start of `buf` (framing, crc, version, kind, structure and
/// SHA-256 hash) without decoding its documents, and returns its link in the chain and the
/// bytes it took. Documents are checked when the entry is decoded with
/// [`decode_entry`](super::codec::decode_entry).
pub fn check_entry_record(buf: &[u8]) -> Result<(EntryLink, usize), DecodeError> {
    let (kind, body, used) = decode_record(buf)?;
    if kind != RecordKind::Entry {
        return Err(DecodeError::WrongKind {
            expected: RecordKind::Entry,
            found: kind,
        });
    }
    let walked: Walked<OriginMirror<'_>> = walk(body, |_: OpMirror<'_>, _| Ok(()))?;
    let link = EntryLink {
        lsn: walked.lsn,
        prev_hash: walked.prev_hash,
        hash: walked.hash,
    };
    Ok((link, used))
}

/// Reads the entry record at the start of `buf` only as far as the chain needs it: framing,
/// crc, version and kind are checked, and its LSN (the body's first field) and both hashes (the
/// body's last 64 bytes) are returned **as stored, without checking the hash** against the
/// contents or walking the operations. Returns the link and the bytes the record took.
///
/// For a store's open-time scan when every entry it does not check here is decoded with
/// [`decode_entry`](super::codec::decode_entry) (which checks the hash) before its state is
/// served: the replay at start decodes each entry above the snapshot anyway. The chain of
/// stored hashes, checked by the scan with [`EntryLink::follows`], and each entry's own hash,
/// checked when it is decoded, together prove the same as [`check_entry_record`] on every
/// record, with one walk and one SHA-256 per entry instead of two.
pub fn read_entry_link(buf: &[u8]) -> Result<(EntryLink, usize), DecodeError> {
    let (kind, body, used) = decode_record(buf)?;
    if kind != RecordKind::Entry {
        return Err(DecodeError::WrongKind {
            expected: RecordKind::Entry,
            found: kind,
        });
    }
    let mut rest = body;
    let lsn: Lsn = take(&mut rest)?;
    // The two hashes end the body, after at least the term, timestamp, op count, origin and
    // omitted fields (one byte each at the least).
    if rest.len() < 2 * HASH_BYTES + 5 {
        return Err(DecodeError::Malformed(format!(
            "a {}-byte entry body is too short to hold its hashes",
            body.len()
        )));
    }
    let hashes = &rest[rest.len() - 2 * HASH_BYTES..];
    let (prev_hash, hash) = hashes.split_at(HASH_BYTES);
    let link = EntryLink {
        lsn,
        prev_hash: Hash(prev_hash.try_into().expect("32 bytes")),
        hash: Hash(hash.try_into().expect("32 bytes")),
    };
    Ok((link, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RawDoc;
    use crate::index::IndexSpec;
    use crate::log::codec::{decode_entry, encode_entry, encode_record};

    /// One operation of every variant. The match is exhaustive on purpose: a new variant
    /// does not compile until it is added here (and to the mirror).
    fn every_op() -> Vec<Op> {
        let doc = RawDoc::parse(r#"{"_id":"a","s":"x\"y","n":[1,2.5]}"#).unwrap();
        let spec: IndexSpec =
            serde_json::from_value(serde_json::json!({"name": "by_n", "fields": [{"path": "n"}]}))
                .unwrap();
        let ops = vec![
            Op::CreateCollection {
                collection: "c".into(),
                options: CollectionOptions { ttl_ms: Some(5) },
            },
            Op::DropCollection {
                collection: "c".into(),
            },
            Op::CreateIndex {
                collection: "c".into(),
                spec,
            },
            Op::DropIndex {
                collection: "c".into(),
                name: "by_n".into(),
            },
            Op::SetTtl {
                collection: "c".into(),
                ttl_ms: None,
            },
            Op::Insert {
                collection: "c".into(),
                doc: doc.clone(),
            },
            Op::Put {
                collection: "c".into(),
                doc,
                if_version: Some(Lsn(300)),
            },
            Op::Patch {
                collection: "c".into(),
                id: "a".into(),
                patch: r#"{"n":1}"#.into(),
                if_version: None,
            },
            Op::Delete {
                collection: "cé".into(),
                id: "a".into(),
                if_version: Some(Lsn(u64::MAX)),
            },
        ];
        for op in &ops {
            match op {
                Op::CreateCollection { .. }
                | Op::DropCollection { .. }
                | Op::CreateIndex { .. }
                | Op::DropIndex { .. }
                | Op::SetTtl { .. }
                | Op::Insert { .. }
                | Op::Put { .. }
                | Op::Patch { .. }
                | Op::Delete { .. } => {}
            }
        }
        ops
    }

    #[test]
    fn the_mirror_reads_every_op_to_its_end() {
        for op in every_op() {
            let bytes = postcard::to_allocvec(&op).unwrap();
            let mut rest = &bytes[..];
            let _: OpMirror<'_> = take(&mut rest).unwrap();
            assert!(rest.is_empty(), "{op:?}");
        }
        let origin = Origin {
            client: "tab-1".into(),
            seq: 9,
        };
        let mirror = OriginMirror {
            client: "tab-1",
            seq: 9,
        };
        assert_eq!(
            postcard::to_allocvec(&Some(origin)).unwrap(),
            postcard::to_allocvec(&Some(mirror)).unwrap()
        );
    }

    fn entries() -> Vec<LogEntry> {
        let first = LogEntry::new(
            LogPosition::START,
            Term(2),
            TimestampMs(7),
            Txn::new(every_op()).with_origin(Origin {
                client: "tab-1".into(),
                seq: 3,
            }),
        );
        let filtered = first
            .filtered(|c| c == "c")
            .expect("one op is on another collection");
        let tick = LogEntry::new(first.position(), Term(2), TimestampMs(8), Txn::tick());
        vec![first, filtered, tick]
    }

    #[test]
    fn one_pass_decoding_matches_the_derived_decoding() {
        for entry in entries() {
            let mut record = Vec::new();
            encode_entry(&entry, &mut record);
            let (decoded, used) = decode_entry(&record).unwrap();
            assert_eq!((decoded, used), (entry.clone(), record.len()));
            assert_eq!(
                decode_own_entry(&record).unwrap(),
                (entry.clone(), record.len())
            );
            let derived: LogEntry = postcard::from_bytes(&record[10..]).unwrap();
            assert_eq!(derived, entry);
            let (link, used) = check_entry_record(&record).unwrap();
            assert_eq!(used, record.len());
            assert_eq!(read_entry_link(&record).unwrap(), (link, used));
            assert_eq!(
                link,
                EntryLink {
                    lsn: entry.lsn,
                    prev_hash: entry.prev_hash,
                    hash: entry.hash
                }
            );
        }
    }

    mod random {
        use proptest::prelude::*;

        use super::*;

        fn name() -> impl Strategy<Value = String> {
            "[a-c][a-c0-9]{0,3}"
        }

        fn op() -> impl Strategy<Value = Op> {
            let doc = ("[a-z0-9é\"\\\\]{1,12}", any::<i64>(), "[ -~é]{0,40}").prop_map(
                |(id, n, text)| {
                    let value = serde_json::json!({"_id": id, "n": n, "t": text, "a": [n, 1.5]});
                    RawDoc::from_value(&value).expect("a valid document")
                },
            );
            let version = proptest::option::of(any::<u64>().prop_map(Lsn));
            prop_oneof![
                (name(), doc.clone()).prop_map(|(collection, doc)| Op::Insert { collection, doc }),
                (name(), doc, version.clone()).prop_map(|(collection, doc, if_version)| Op::Put {
                    collection,
                    doc,
                    if_version
                }),
                (name(), "[a-z]{1,8}", any::<i32>(), version.clone()).prop_map(
                    |(collection, id, n, if_version)| Op::Patch {
                        collection,
                        id,
                        patch: format!(r#"{{"n":{n}}}"#),
                        if_version,
                    }
                ),
                (name(), "[a-z]{1,8}", version).prop_map(|(collection, id, if_version)| {
                    Op::Delete {
                        collection,
                        id,
                        if_version,
                    }
                }),
                (name(), proptest::option::of(any::<u64>()))
                    .prop_map(|(collection, ttl_ms)| { Op::SetTtl { collection, ttl_ms } }),
            ]
        }

        fn entry() -> impl Strategy<Value = (LogEntry, String)> {
            (
                proptest::collection::vec(op(), 0..12),
                proptest::option::of(("[a-z0-9-]{1,20}", any::<u64>())),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<[u8; 32]>(),
                name(),
            )
                .prop_map(|(ops, origin, lsn, term, at, prev, keep)| {
                    let mut txn = Txn::new(ops);
                    if let Some((client, seq)) = origin {
                        txn = txn.with_origin(Origin { client, seq });
                    }
                    let prev = LogPosition {
                        lsn: Lsn(lsn.saturating_sub(1)),
                        hash: Hash(prev),
                    };
                    (LogEntry::new(prev, Term(term), TimestampMs(at), txn), keep)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// The hash taken from a record's bytes (each operation's span hashed where it
            /// sits) is the hash `compute_hash` takes from the decoded entry, for whole entries
            /// and for entries with operations left out: the encoding is postcard's canonical
            /// one, so hashing the bytes and re-encoding agree.
            #[test]
            fn the_hash_from_bytes_is_compute_hash((entry, keep) in entry()) {
                let filtered = entry.filtered(|c| c == keep);
                for entry in std::iter::once(entry).chain(filtered) {
                    prop_assert_eq!(entry.compute_hash(), Some(entry.hash));
                    let mut record = Vec::new();
                    encode_entry(&entry, &mut record);
                    let (decoded, used) = decode_entry(&record).expect("the hash from bytes matches");
                    prop_assert_eq!(used, record.len());
                    prop_assert_eq!(decoded.compute_hash(), Some(entry.hash));
                    prop_assert_eq!(&decoded, &entry);
                    prop_assert_eq!(decode_own_entry(&record).expect("decodes"), (entry.clone(), used));
                    let (link, _) = check_entry_record(&record).expect("the cheap walk agrees");
                    prop_assert_eq!(link.position(), entry.position());
                    prop_assert_eq!(read_entry_link(&record).expect("the link reads"), (link, used));
                }
            }
        }
    }

    /// Every single-byte change to a well-framed body (crc recomputed) is refused by both
    /// walks, or decodes to the very same entry in both: never to another entry.
    #[test]
    fn changed_bodies_are_refused_by_both_walks() {
        for entry in entries() {
            let mut record = Vec::new();
            encode_entry(&entry, &mut record);
            let body = record[10..].to_vec();
            for at in 0..body.len() {
                for delta in [1u8, 0x80] {
                    let mut changed = body.clone();
                    changed[at] = changed[at].wrapping_add(delta);
                    let mut framed = Vec::new();
                    encode_record(RecordKind::Entry, &changed, &mut framed);
                    assert_eq!(
                        decode_own_entry(&framed).ok(),
                        decode_entry(&framed).ok(),
                        "byte {at} +{delta}"
                    );
                    match (decode_entry(&framed), check_entry_record(&framed)) {
                        (Err(_), Err(_)) => {}
                        (Ok((decoded, _)), Ok((link, _))) => {
                            assert_eq!(decoded, entry, "byte {at} +{delta}");
                            assert_eq!(link.position(), entry.position());
                        }
                        (full, cheap) => panic!("byte {at} +{delta}: {full:?} vs {cheap:?}"),
                    }
                }
            }
        }
    }
}
