//! The Collection Store server: the leader (and native follower) around `cstore-core`.
//!
//! The server is a driver: it does the IO that core leaves out. This library holds its parts so
//! that integration tests and the `cstore` binary share them.

pub mod wal;
