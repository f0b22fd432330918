//! The hash-chained log: entries and their framing on disk and on the wire.

pub mod codec;
#[cfg(any(target_arch = "wasm32", test))]
mod crc;
pub mod entry;
pub mod walk;

pub use codec::{DecodeError, RecordKind, decode_entry, encode_entry};
pub use entry::LogEntry;
pub use walk::{EntryLink, check_entry_record, decode_own_entry, read_entry_link};
