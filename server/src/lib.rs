//! The Collection Store server: the leader that owns the durable log, serving HTTP and (later)
//! replication. Everything of substance (state, queries, the log format) lives in
//! `cstore-core`; this crate does the IO around it.

pub mod clock;
pub mod leader;
