//! Secondary indexes: specs, the order-preserving key encoding, and the index structure.

pub mod key;
pub mod secondary;
pub mod spec;

pub use secondary::{IndexKey, SecondaryIndex, lookup_path};
pub use spec::{IndexField, IndexSpec, IndexSpecError};
