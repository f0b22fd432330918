//! The Collection Store server: the leader that owns the durable log, serving HTTP and (later)
//! replication. Everything of substance (state, queries, the log format) lives in
//! `cstore-core`; this crate does the IO around it.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod serve;
