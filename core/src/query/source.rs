//! What the executor needs from a collection, and nothing more.
//!
//! The query engine does not know the collection type: it reads documents by id, walks all of
//! them in `_id` order, and reads the secondary indexes. Keeping that behind a small trait lets
//! the engine be tested against a plain map, and lets any holder of documents (the server's
//! state, a browser replica's optimistic view) be queried the same way.

use crate::doc::DocRef;
use crate::index::SecondaryIndex;

/// A set of documents with secondary indexes that queries can run against.
///
/// The indexes must be in step with the documents: every id an index holds names a document
/// that [`DocSource::get`] returns, under the key that document has now. The executor asserts
/// this.
pub trait DocSource {
    /// The document with this `_id`.
    fn get(&self, id: &str) -> Option<DocRef<'_>>;
    /// Every document, in `_id` order.
    fn scan(&self) -> Box<dyn Iterator<Item = DocRef<'_>> + '_>;
    /// The collection's secondary indexes.
    fn indexes(&self) -> &[SecondaryIndex];
}
