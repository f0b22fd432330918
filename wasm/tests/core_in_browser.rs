//! Core, compiled to wasm32, behaves in a browser exactly as it does natively.
//!
//! Replicas only agree if every platform computes the same bytes: the same canonical document
//! text, the same SHA-256 chain, the same record framing and the same index key order. These
//! tests run in headless Chromium (`wasm_bindgen_test_configure!(run_in_browser)`) through
//! `wasm-bindgen-test-runner`; the synchronous ones also run natively (`unsupported = test`),
//! and the fixed expected values (test vectors, one golden entry hash) tie both runs to the
//! same answers. The async tests drive `MemoryStore` through the `LogStore` trait with
//! `wasm-bindgen-futures`, the way the IndexedDB store will be driven.
//!
//! Run them in the browser with
//! `CHROMEDRIVER=$(command -v chromedriver) cargo test -p cstore-wasm --target wasm32-unknown-unknown`
//! (scripts/test.sh does).

use cstore_core::doc::{DocError, RawDoc};
use cstore_core::error::ErrorCode;
use cstore_core::index::key::{encode_component, encode_f64, encode_value};
use cstore_core::log::codec::{DecodeError, decode_entry, encode_entry};
use cstore_core::snapshot::hash_bytes;
use cstore_core::{LogEntry, LogPosition, Lsn, Op, Term, TimestampMs, Txn};
use serde_json::{Value, json};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The hash of [`golden_entry`]. Native and wasm runs both check it, so a mismatch in the
/// browser alone means wasm computes different bytes. If both fail, core's entry encoding
/// changed: that breaks every existing log and must come with a format version bump.
const GOLDEN_ENTRY_HASH: &str = "9bbc6dab01c5576e4695c455ae1cbbe97656872eb9ab2e494f1a7ab0f9fee6eb";

fn insert(collection: &str, doc: &str) -> Txn {
    Txn::single(Op::Insert {
        collection: collection.into(),
        doc: RawDoc::parse(doc).expect("test document is valid"),
    })
}

fn golden_entry() -> LogEntry {
    LogEntry::new(
        LogPosition::START,
        Term(3),
        TimestampMs(1_700_000_000_000),
        insert(
            "notes",
            r#"{"_id":"n1","text":"héllo","tags":["a","b"],"n":1.5}"#,
        ),
    )
}

/// A chain of `len` entries, each inserting one document.
fn chain(len: u64) -> Vec<LogEntry> {
    let mut entries: Vec<LogEntry> = Vec::new();
    for i in 1..=len {
        let prev = entries
            .last()
            .map_or(LogPosition::START, LogEntry::position);
        let doc = format!(r#"{{"_id":"d{i}","i":{i}}}"#);
        entries.push(LogEntry::new(
            prev,
            Term(1),
            TimestampMs(1000 + i),
            insert("c", &doc),
        ));
    }
    entries
}

#[wasm_bindgen_test(unsupported = test)]
fn package_version_is_exported() {
    assert_eq!(cstore_wasm::version(), env!("CARGO_PKG_VERSION"));
}

#[wasm_bindgen_test(unsupported = test)]
fn documents_parse_and_canonicalize() {
    let doc = RawDoc::parse(
        "{ \"z\": [1, 2.5, null], \"_id\": \"é1\",\n \"a\": {\"y\": true, \"x\": \"s\"} }",
    )
    .expect("valid document");
    assert_eq!(
        doc.as_str(),
        r#"{"_id":"é1","a":{"x":"s","y":true},"z":[1,2.5,null]}"#
    );
    assert_eq!(doc.id(), "é1");
    assert_eq!(doc.to_value()["a"]["y"], json!(true));

    let missing_id = RawDoc::parse(r#"{"a":1}"#).unwrap_err();
    assert_eq!(missing_id, DocError::MissingId);
    assert_eq!(missing_id.code(), "invalid_document");
    let not_json = RawDoc::parse("{").unwrap_err();
    assert_eq!(not_json.code(), "invalid_json");
}

#[wasm_bindgen_test(unsupported = test)]
fn sha256_matches_the_standard_vector() {
    // FIPS 180-2 test vector for "abc".
    assert_eq!(
        hash_bytes(b"abc").to_hex(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn golden_entry_hash_is_the_same_on_every_platform() {
    let entry = golden_entry();
    assert!(entry.verify_hash());
    assert_eq!(
        entry.hash.to_hex(),
        GOLDEN_ENTRY_HASH,
        "entry hash differs from the golden value: see GOLDEN_ENTRY_HASH"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn hash_chain_links_and_detects_tampering() {
    let entries = chain(16);
    let mut prev = LogPosition::START;
    for entry in &entries {
        assert!(
            entry.follows(prev),
            "entry {} does not follow {prev}",
            entry.lsn
        );
        assert!(entry.verify_hash());
        prev = entry.position();
    }
    assert_eq!(prev.lsn, Lsn(16));

    let mut tampered = entries[7].clone();
    tampered.timestamp = TimestampMs(0);
    assert!(!tampered.verify_hash());
    assert!(!entries[9].follows(entries[7].position()));
}

#[wasm_bindgen_test(unsupported = test)]
fn records_round_trip_and_a_flipped_byte_is_an_error() {
    let entries = chain(4);
    let mut buf = Vec::new();
    for entry in &entries {
        encode_entry(entry, &mut buf);
    }
    let mut offset = 0;
    for expected in &entries {
        let (decoded, used) = decode_entry(&buf[offset..]).expect("record decodes");
        assert_eq!(&decoded, expected);
        offset += used;
    }
    assert_eq!(offset, buf.len());

    // Every single flipped bit inside the first record is caught (crc32c covers all of it).
    let (_, first_len) = decode_entry(&buf).expect("first record decodes");
    for index in 0..first_len {
        let mut flipped = buf[..first_len].to_vec();
        flipped[index] ^= 0x01;
        let err = decode_entry(&flipped).expect_err("a flipped byte must not decode");
        assert!(
            matches!(
                err,
                DecodeError::BadChecksum { .. }
                    | DecodeError::Truncated { .. }
                    | DecodeError::TooLarge { .. }
            ),
            "byte {index}: unexpected {err:?}"
        );
    }

    let mut flipped = buf[..first_len].to_vec();
    *flipped.last_mut().expect("non-empty") ^= 0xFF;
    let err = decode_entry(&flipped).unwrap_err();
    assert_eq!(err.code(), "bad_checksum");
    let torn = decode_entry(&buf[..first_len - 1]).unwrap_err();
    assert_eq!(torn.code(), "truncated");
}

/// The crc32c of [`golden_entry`]'s record: natively the `crc32c` crate's, in the browser
/// core's own one-table sum (`core/src/log/crc.rs`). The flipped-byte test above would pass
/// with any self-consistent sum; this ties the two to the same bytes.
const GOLDEN_RECORD_CRC: u32 = 0x7e62_f821;

#[wasm_bindgen_test(unsupported = test)]
fn the_golden_record_has_the_same_crc_on_every_platform() {
    let mut record = Vec::new();
    encode_entry(&golden_entry(), &mut record);
    let crc = u32::from_le_bytes(record[4..8].try_into().expect("a record header"));
    assert_eq!(crc, GOLDEN_RECORD_CRC, "crc {crc:#010x}");
}

/// Float documents as a replica receives them (`RawDoc`'s `Deserialize`, the canonical check):
/// in the browser the check reads float tokens with serde_json, natively with `str::parse`
/// (`core/src/doc/canonical.rs`, `parse_float`); both must accept and refuse the same texts.
#[wasm_bindgen_test(unsupported = test)]
fn float_documents_are_canonical_or_not_alike_on_every_platform() {
    let received = |text: &str| serde_json::from_value::<RawDoc>(Value::String(text.into()));
    for canonical in [
        r#"{"_id":"f","n":0.1}"#,
        r#"{"_id":"f","n":-0.0}"#,
        r#"{"_id":"f","n":1e+300}"#,
        r#"{"_id":"f","n":5e-324}"#,
        r#"{"_id":"f","n":1.7976931348623157e+308}"#,
        r#"{"_id":"f","n":[2.5,-1.25e-7,123456.789]}"#,
    ] {
        assert_eq!(RawDoc::parse(canonical).expect("valid").as_str(), canonical);
        assert!(received(canonical).is_ok(), "{canonical} is canonical");
    }
    for other in [
        r#"{"_id":"f","n":0.10}"#,
        r#"{"_id":"f","n":1e300}"#,
        r#"{"_id":"f","n":1.0e+300}"#,
        r#"{"_id":"f","n":1E+300}"#,
        r#"{"_id":"f","n":1e400}"#,
        r#"{"_id":"f","n":0.1000000000000000055511151231257827}"#,
        r#"{"_id":"f","n":2.50}"#,
    ] {
        assert!(received(other).is_err(), "{other} is not canonical");
    }
}

fn key(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(value, &mut out);
    out
}

#[wasm_bindgen_test(unsupported = test)]
fn index_keys_preserve_order() {
    // Ascending in index order: by type first, then by value.
    let ordered = [
        json!(null),
        json!(-1e300),
        json!(-2.5),
        json!(-1),
        json!(0),
        json!(0.25),
        json!(3),
        json!(9_007_199_254_740_991_u64),
        json!(""),
        json!("a"),
        json!("a\u{0}b"),
        json!("ab"),
        json!("é"),
        json!({}),
        json!({"a": 1}),
        json!({"b": 0}),
        json!([]),
        json!([1]),
        json!([1, 2]),
        json!([2]),
        json!(false),
        json!(true),
    ];
    for pair in ordered.windows(2) {
        assert!(key(&pair[0]) < key(&pair[1]), "{} < {}", pair[0], pair[1]);
    }
    // The number encoding is fixed by the format: IEEE-754 bits with the sign bit flipped.
    assert_eq!(
        encode_f64(1.0),
        [0xBF, 0xF0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
    );
    assert_eq!(encode_f64(-0.0), encode_f64(0.0));

    // A compound key (name ascending, age descending) is the concatenation of its parts.
    let compound = |name: &str, age: i64| {
        let mut out = Vec::new();
        encode_component(Some(&json!(name)), false, &mut out);
        encode_component(Some(&json!(age)), true, &mut out);
        out
    };
    let mut rows = [
        compound("bob", 30),
        compound("al", 20),
        compound("bob", 40),
        compound("al", 25),
    ];
    rows.sort();
    assert_eq!(
        rows,
        [
            compound("al", 25),
            compound("al", 20),
            compound("bob", 40),
            compound("bob", 30),
        ]
    );
}

#[cfg(target_arch = "wasm32")]
mod storage {
    //! The storage conformance suite on `MemoryStore`, awaited on the browser's event loop:
    //! the same suite, on the same executor, that the IndexedDB store will have to pass.

    use cstore_core::storage::MemoryStore;
    use cstore_core::storage::conformance::{self, StoreHarness};
    use wasm_bindgen::JsValue;
    use wasm_bindgen_futures::{JsFuture, js_sys};
    use wasm_bindgen_test::wasm_bindgen_test;

    /// Yields to the browser's event loop once, so the suite really crosses await points that
    /// JavaScript resolves (a resolved Promise, through wasm-bindgen-futures).
    async fn yield_to_browser() {
        let resolved = js_sys::Promise::resolve(&JsValue::UNDEFINED);
        JsFuture::from(resolved)
            .await
            .expect("a resolved promise resolves");
    }

    /// Memory has nothing to reopen; the harness yields to the browser at each step instead.
    #[derive(Debug, Default)]
    struct BrowserMemoryHarness {
        created: usize,
        reopened: usize,
    }

    impl StoreHarness for BrowserMemoryHarness {
        type Store = MemoryStore;

        async fn create(&mut self) -> MemoryStore {
            yield_to_browser().await;
            self.created += 1;
            MemoryStore::new()
        }

        async fn reopen(&mut self, store: MemoryStore) -> MemoryStore {
            yield_to_browser().await;
            self.reopened += 1;
            store
        }
    }

    #[wasm_bindgen_test]
    async fn memory_store_passes_the_conformance_suite() {
        let mut harness = BrowserMemoryHarness::default();
        conformance::test_all(&mut harness).await;
        // The suite ran its properties (one store each) and reopened after them.
        assert!(harness.created >= 20, "created {}", harness.created);
        assert!(
            harness.reopened >= harness.created,
            "reopened {}",
            harness.reopened
        );
    }
}
