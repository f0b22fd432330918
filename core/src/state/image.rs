//! The canonical encoding of a [`State`]: what snapshots hold and what the state hash covers.
//!
//! ```text
//! version: u8 = 2
//! applied: LogPosition, last_timestamp
//! collections (by name): [ name, options, index specs (creation order),
//!                          documents (by _id): [ (StoredDoc, expires_at) ] ]
//! origins (by client): [ (client, OriginRecord { seq, lsn, at }) ]
//! ```
//!
//! An image can also be encoded in steps while entries go on applying ([`ImageBuilder`], begun by
//! `State::begin_image`): the collections keep each document that changes as it was, and the
//! bytes come out the same.
//!
//! Encoding streams straight from the live maps (no copy of the state); decoding checks every
//! document, the order of names and ids, and rebuilds the indexes, so a decoded state is one
//! that applying entries could have produced.

use serde::{Deserialize, Serialize, Serializer};

use super::collection::SortedDocs;
use super::{Collection, OriginRecord, State, TxnError};
use crate::doc::{DocRef, DocText, StoredDoc, validate_stored_collection_name};
use crate::error::ErrorCode;
use crate::index::IndexSpec;
use crate::txn::{CollectionOptions, Origin};
use crate::types::{LogPosition, Lsn, TimestampMs};

const IMAGE_VERSION: u8 = 2;

/// Why snapshot bytes did not rebuild a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot data does not match its state hash")]
    HashMismatch,
    #[error("unknown snapshot format version {0}")]
    UnknownVersion(u8),
    #[error("snapshot is malformed: {0}")]
    Malformed(String),
}

impl ErrorCode for SnapshotError {
    fn code(&self) -> &'static str {
        match self {
            SnapshotError::HashMismatch => "snapshot_hash_mismatch",
            SnapshotError::UnknownVersion(_) => "unknown_version",
            SnapshotError::Malformed(_) => "snapshot_malformed",
        }
    }
}

/// Serializes the items an iterator-making closure yields as a sequence of known length.
struct Seq<F>(F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: IntoIterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq((self.0)())
    }
}

/// Encodes the state into a buffer of `capacity` bytes to start with (the size of the last
/// image, say: growing a buffer of tens of megabytes by doubling copies it and faults in fresh
/// pages at every step).
pub(super) fn encode(state: &State, capacity: usize) -> Vec<u8> {
    let collections = Seq(|| {
        state.collections.iter().map(|(name, c)| {
            let specs = Seq(|| c.indexes().iter().map(|i| i.spec()));
            let docs = Seq(|| c.scan().map(|doc| (doc, c.expires_at(&doc.doc.id_str()))));
            (name, c.options(), specs, docs)
        })
    });
    let origins = Seq(|| state.origins.iter());
    let image = (
        IMAGE_VERSION,
        state.applied,
        state.last_timestamp,
        collections,
        origins,
    );
    postcard::to_extend(&image, Vec::with_capacity(capacity))
        .expect("encoding into a Vec cannot fail")
}

/// An image of a state encoded in steps while entries go on applying (see
/// [`State::begin_image`]). Holds what the image needs of the state as it was when it
/// began and the collections cannot keep: the head, each collection's name and document count
/// (no collection or index comes or goes while the image is current), and the origins. The
/// bytes come out equal to those [`encode`] gave then.
#[derive(Debug)]
pub struct ImageBuilder {
    id: u64,
    position: LogPosition,
    /// The bytes encoded and not yet taken ([`ImageBuilder::take_encoded`]).
    out: Vec<u8>,
    /// The image's first bytes (version, position, collection count), for a rewind.
    head: Vec<u8>,
    /// The collections, by name, with how many documents each held.
    collections: Vec<(String, usize)>,
    /// The collection being encoded (an index into `collections`); `collections.len()` once
    /// every document is, and one more once the origins are too: the image is complete.
    current: usize,
    /// In the current collection: whether its head is written, the last id visited, and how
    /// many documents were encoded.
    head_written: bool,
    after: Option<Box<str>>,
    docs_written: usize,
    /// The origins' encoding, appended by the step that encodes the last document.
    origins: Vec<u8>,
}

/// Appends a document of an image, `(StoredDoc, Option<TimestampMs>)`, in postcard's
/// encoding, written out by hand: through serde it was most of a checkpoint's CPU. The tests
/// hold the two to the same bytes (an image built in steps equals [`encode`]'s).
fn put_doc(out: &mut Vec<u8>, doc: DocRef<'_>, expires_at: Option<TimestampMs>) {
    put_varint(out, doc.version.0);
    let text = doc.doc.as_str();
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
    match expires_at {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            put_varint(out, at.0);
        }
    }
}

/// postcard's unsigned varint: seven bits a byte, low first, the high bit set on all but the
/// last.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// What a step of an [`ImageBuilder`] left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageStep {
    /// More documents remain.
    More,
    /// The image is complete: end it to take its bytes (those not taken already).
    Done,
    /// The image is not the state's current one (spoiled, or another began): end it and
    /// take another (or encode the state whole).
    Spoiled,
}

impl ImageBuilder {
    pub(super) fn begin(state: &State, id: u64) -> ImageBuilder {
        let head = (
            IMAGE_VERSION,
            state.applied,
            state.last_timestamp,
            state.collections.len(),
        );
        let head = postcard::to_extend(&head, Vec::new()).expect("encoding into a Vec cannot fail");
        let out = head.clone();
        let origins = postcard::to_extend(&Seq(|| state.origins.iter()), Vec::new())
            .expect("encoding into a Vec cannot fail");
        ImageBuilder {
            id,
            position: state.applied,
            out,
            head,
            collections: state
                .collections
                .iter()
                .map(|(name, c)| (name.clone(), c.len()))
                .collect(),
            current: 0,
            head_written: false,
            after: None,
            docs_written: 0,
            origins,
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// The position of the state the image is of.
    pub fn position(&self) -> LogPosition {
        self.position
    }

    /// Takes the bytes encoded since the last take (the image's first bytes, at first),
    /// leaving the buffer empty with its room: an image can be written out as it is encoded,
    /// in pieces the size of a step, instead of held whole.
    pub fn take_encoded(&mut self, into: impl FnOnce(&[u8])) {
        into(&self.out);
        self.out.clear();
    }

    /// Starts the image over from its first byte: its steps then encode the same bytes again,
    /// as long as it is current (a first pass can hash an image, a second write it after the
    /// hash). Drops the bytes not taken.
    pub fn rewind(&mut self) {
        self.out.clear();
        self.out.extend_from_slice(&self.head);
        self.current = 0;
        self.head_written = false;
        self.after = None;
        self.docs_written = 0;
    }

    /// Makes room for at least `bytes` more, so that a step (which runs under a lock) does
    /// not grow the buffer.
    pub fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    /// Encodes up to `docs_max` (> 0) more ids of the state, which is this image's current.
    pub(super) fn step(&mut self, state: &State, docs_max: usize) -> ImageStep {
        let mut budget = docs_max;
        while let Some((name, count)) = self.collections.get(self.current) {
            let collection = state
                .collections
                .get(name)
                .expect("no collection comes or goes while its image is current");
            let mut out = std::mem::take(&mut self.out);
            if !self.head_written {
                let specs = Seq(|| collection.indexes().iter().map(|i| i.spec()));
                let head = (name, collection.options(), specs, *count);
                out = postcard::to_extend(&head, out).expect("encoding into a Vec cannot fail");
                self.head_written = true;
            }
            let mut written = 0;
            let last =
                collection.frozen_docs_after(self.after.as_deref(), &mut budget, |doc, at| {
                    put_doc(&mut out, doc, at);
                    written += 1;
                });
            self.out = out;
            self.docs_written += written;
            match last {
                Some(id) => {
                    self.after = Some(id);
                    return ImageStep::More;
                }
                None => {
                    assert_eq!(
                        self.docs_written, *count,
                        "collection {name:?} of the image holds as many documents as it did"
                    );
                    self.current += 1;
                    self.head_written = false;
                    self.after = None;
                    self.docs_written = 0;
                    if budget == 0 && self.current < self.collections.len() {
                        return ImageStep::More;
                    }
                }
            }
        }
        if self.current == self.collections.len() {
            // The last document is encoded: the origins end the image (once).
            self.out.extend_from_slice(&self.origins);
            self.current += 1;
        }
        ImageStep::Done
    }

    /// The position of a complete image and its bytes not taken yet (all of them if none
    /// were taken).
    pub(super) fn finish(self) -> Option<(LogPosition, Vec<u8>)> {
        if self.current <= self.collections.len() {
            return None;
        }
        Some((self.position, self.out))
    }
}

/// A collection's documents as an image from outside is decoded: each proved canonical.
type OutsideDocs = Vec<(StoredDoc, Option<TimestampMs>)>;

/// A decoded image; `D` is how each collection's documents are read: [`OutsideDocs`], or
/// [`OwnDocs`], trusted and put into their runs as they are read (see [`decode_own`]).
#[derive(Serialize, Deserialize)]
struct Image<D = OutsideDocs> {
    version: u8,
    applied: LogPosition,
    last_timestamp: TimestampMs,
    collections: Vec<CollectionImage<D>>,
    origins: Vec<(String, OriginRecord)>,
}

#[derive(Serialize, Deserialize)]
struct CollectionImage<D = OutsideDocs> {
    name: String,
    options: CollectionOptions,
    indexes: Vec<IndexSpec>,
    docs: D,
}

/// A document of a snapshot this store saved itself: read without proving its text canonical
/// again (see [`decode_own`]), and borrowed from the image's bytes; the same bytes as a
/// [`StoredDoc`].
#[derive(Deserialize)]
struct OwnStoredDoc<'a> {
    version: Lsn,
    doc: &'a str,
}

/// A collection's documents as the store's own snapshot is decoded: each one, as soon as it
/// is read, checked against the one before and copied into its run. No list of the documents
/// is built on the way (two lists of a million were a third of a restart: their growth and the
/// fresh pages the kernel zeroed for them).
struct OwnDocs(Loader);

impl<'de> Deserialize<'de> for OwnDocs {
    fn deserialize<De: serde::Deserializer<'de>>(deserializer: De) -> Result<OwnDocs, De::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = OwnDocs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of documents")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OwnDocs, A::Error> {
                let mut loader = Loader::default();
                // After a refusal the rest is still read, so that the image's bytes are
                // consumed as far as they go; `build` reports the refusal.
                while let Some((doc, expires_at)) =
                    seq.next_element::<(OwnStoredDoc<'de>, Option<TimestampMs>)>()?
                {
                    if loader.refused.is_some() {
                        continue;
                    }
                    match DocText::from_own_log(doc.doc) {
                        Some(text) => loader.take(
                            DocRef {
                                version: doc.version,
                                doc: text,
                            },
                            expires_at,
                        ),
                        None => loader.refused = Some(Refusal::NotCanonical),
                    }
                }
                Ok(OwnDocs(loader))
            }
        }
        deserializer.deserialize_seq(Visit)
    }
}

/// The documents of a collection of an image, read one way or the other.
trait ImageDocs {
    fn load(self) -> Loader;
}

impl ImageDocs for OutsideDocs {
    fn load(self) -> Loader {
        let mut loader = Loader::default();
        for (doc, expires_at) in &self {
            if loader.refused.is_some() {
                break;
            }
            loader.take(doc.to_ref(), *expires_at);
        }
        loader
    }
}

impl ImageDocs for OwnDocs {
    fn load(self) -> Loader {
        self.0
    }
}

/// Why a collection's documents were refused.
enum Refusal {
    OutOfOrder(String),
    NotCanonical,
}

/// Takes a collection's documents in the image's order, checking that their ids ascend
/// strictly, into the collection's runs: each document is copied once, where it stays.
#[derive(Default)]
struct Loader {
    docs: SortedDocs,
    /// The id of the last document taken.
    last_id: Option<String>,
    /// The highest version taken.
    newest: Lsn,
    /// The first refusal; nothing is taken after it.
    refused: Option<Refusal>,
}

impl Loader {
    fn take(&mut self, doc: DocRef<'_>, expires_at: Option<TimestampMs>) {
        let id = doc.doc.id_str();
        match &mut self.last_id {
            Some(last) if **last >= *id => {
                self.refused = Some(Refusal::OutOfOrder(id.into_owned()));
                return;
            }
            Some(last) => {
                last.clear();
                last.push_str(&id);
            }
            None => self.last_id = Some(id.into_owned()),
        }
        self.newest = self.newest.max(doc.version);
        self.docs.push(doc, expires_at);
    }

    /// The documents taken, or why they were refused: `collection`'s documents must be no
    /// newer than `applied`.
    fn finish(self, collection: &str, applied: Lsn) -> Result<SortedDocs, SnapshotError> {
        let malformed = |msg: String| Err(SnapshotError::Malformed(msg));
        match self.refused {
            Some(Refusal::OutOfOrder(id)) => {
                return malformed(format!("document {id:?} in `{collection}` out of order"));
            }
            Some(Refusal::NotCanonical) => {
                return malformed("a document of the store's own snapshot is not canonical".into());
            }
            None => {}
        }
        if self.newest > applied {
            let id = self
                .docs
                .iter()
                .find(|doc| doc.version > applied)
                .map(|doc| doc.doc.id_str().into_owned())
                .unwrap_or_default();
            return malformed(format!("document {id:?} is newer than the snapshot"));
        }
        Ok(self.docs)
    }
}

/// The image `bytes` hold, with each collection's documents read as `D`: its version known,
/// nothing after it.
fn take<'a, D: Deserialize<'a>>(bytes: &'a [u8]) -> Result<Image<D>, SnapshotError> {
    if let Some(&version) = bytes.first()
        && version != IMAGE_VERSION
    {
        return Err(SnapshotError::UnknownVersion(version));
    }
    let (image, rest): (Image<D>, _) =
        postcard::take_from_bytes(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SnapshotError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    debug_assert_eq!(image.version, IMAGE_VERSION);
    Ok(image)
}

/// The image `bytes` hold, every document proved canonical, and the bytes the canonical
/// encoding of that image.
fn parse(bytes: &[u8]) -> Result<Image, SnapshotError> {
    let image: Image = take(bytes)?;
    // postcard also reads integers in more bytes than needed (an overlong varint). Such an
    // image would decode to a state whose hash (the SHA-256 of its canonical bytes) differs
    // from the snapshot's, so only the canonical bytes are accepted: the image is encoded
    // again, compared byte by byte without a copy.
    // A difference stops the encoding with an error; nothing else can fail it.
    let canonical =
        postcard::serialize_with_flavor(&image, SameBytes { expected: bytes }).unwrap_or(false);
    if !canonical {
        return Err(SnapshotError::Malformed(
            "the image is not in its canonical encoding (an overlong integer?)".into(),
        ));
    }
    Ok(image)
}

/// The applied position and last leader timestamp an image starts with, read without decoding
/// the rest (a backup's manifest needs only these of a large snapshot).
pub(super) fn head(bytes: &[u8]) -> Result<(LogPosition, TimestampMs), SnapshotError> {
    match bytes.first() {
        Some(&version) if version != IMAGE_VERSION => {
            return Err(SnapshotError::UnknownVersion(version));
        }
        _ => {}
    }
    let ((_, applied, last_timestamp), _): ((u8, LogPosition, TimestampMs), _) =
        postcard::take_from_bytes(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    Ok((applied, last_timestamp))
}

/// A postcard output that compares what is written with `expected` instead of storing it;
/// its output is whether the two were equal.
struct SameBytes<'a> {
    expected: &'a [u8],
}

impl postcard::ser_flavors::Flavor for SameBytes<'_> {
    type Output = bool;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self.expected.strip_prefix(data) {
            Some(rest) => {
                self.expected = rest;
                Ok(())
            }
            None => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<bool> {
        Ok(self.expected.is_empty())
    }
}

/// The image with only the collections `keep` accepts: what a replica subscribed to them
/// holds at the same position. Encoded exactly as [`encode`] would encode that state.
pub(super) fn filter(bytes: &[u8], keep: impl Fn(&str) -> bool) -> Result<Vec<u8>, SnapshotError> {
    let mut image = parse(bytes)?;
    image.collections.retain(|c| keep(&c.name));
    Ok(postcard::to_allocvec(&image).expect("encoding into a Vec cannot fail"))
}

/// Decodes an image from outside (a leader's snapshot, a backup): every document is proved
/// canonical, the image's own encoding too, then everything [`build`] checks.
pub(super) fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
    build(parse(bytes)?)
}

/// Decodes an image this store saved itself and whose state hash the store checks (a restart;
/// the server checks it while this runs, and drops the result on a mismatch): its documents
/// were canonical when it was written, and its bytes are unchanged.
/// Every writer of a data directory's snapshot either encoded its own [`State`] (a checkpoint)
/// or decoded the bytes with the full check of [`decode`] before saving them (a snapshot
/// from a leader or a Raft peer, `cstore restore`), or copied such a file (`cstore backup`
/// of a data directory). So neither the documents' canonical form nor the image's encoding is
/// proved again (the two are a fifth of a restart); the order of names and ids, versions,
/// index specs and origins still are, by [`build`]. Debug builds check the documents anyway.
pub(super) fn decode_own(bytes: &[u8]) -> Result<State, SnapshotError> {
    build(take::<OwnDocs>(bytes)?)
}

/// The state an image holds, checking the order of names and ids, documents' versions, index
/// specs and origin records, and rebuilding the indexes.
fn build<D: ImageDocs>(image: Image<D>) -> Result<State, SnapshotError> {
    let mut state = State {
        applied: image.applied,
        last_timestamp: image.last_timestamp,
        ..State::default()
    };
    let malformed = |msg: String| SnapshotError::Malformed(msg);
    let mut last_name: Option<String> = None;
    for c in image.collections {
        validate_stored_collection_name(&c.name).map_err(|e| malformed(e.to_string()))?;
        if last_name.as_ref().is_some_and(|last| *last >= c.name) {
            return Err(malformed(format!("collection `{}` out of order", c.name)));
        }
        let docs = c.docs.load().finish(&c.name, image.applied.lsn)?;
        for (i, spec) in c.indexes.iter().enumerate() {
            if c.indexes[..i].iter().any(|s| s.name == spec.name) {
                return Err(malformed(format!("index `{}` appears twice", spec.name)));
            }
        }
        let collection = Collection::rebuild(&c.name, c.options, c.indexes, docs)
            .map_err(|e: TxnError| malformed(e.to_string()))?;
        state.collections.insert(c.name.clone(), collection);
        last_name = Some(c.name);
    }
    for (client, record) in image.origins {
        let origin = Origin {
            client,
            seq: record.seq,
        };
        origin.validate().map_err(malformed)?;
        if record.lsn > image.applied.lsn || record.lsn == Lsn::ZERO {
            return Err(malformed(format!(
                "origin {:?} committed at lsn {} outside the snapshot",
                origin.client, record.lsn
            )));
        }
        if state
            .origins
            .last_client()
            .is_some_and(|last| *last >= *origin.client)
        {
            return Err(malformed(format!(
                "origin {:?} out of order",
                origin.client
            )));
        }
        if record.at > image.last_timestamp {
            return Err(malformed(format!(
                "origin {:?} written after the snapshot's clock",
                origin.client
            )));
        }
        state.origins.load(origin.client, record);
    }
    Ok(state)
}
