//! The Collection Store server: the leader (and native follower) around `cstore-core`.
//!
//! The server is a driver: it does the IO that core leaves out (files, sockets, the clock).
//! Everything of substance (state, queries, the log format) lives in `cstore-core`. This
//! library holds the server's parts so that integration tests and the `cstore` binary share
//! them.

pub mod admin;
pub mod auth;
pub mod background;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod edge;
pub mod follower;
pub mod http;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod node;
pub mod replicate;
pub mod serve;
pub mod wal;
