//! The database state: collections, documents and indexes, changed only by applying log entries.
