//! The fuzz targets: one function of the input bytes per decoder of outside bytes.
//!
//! A target returns normally for every input, accepted or refused. It panics only when a
//! property fails that must hold for every input: a decoded value re-encodes and decodes to
//! itself, two decoders of one record agree, a state decoded from a snapshot encodes back to
//! the same bytes. Panics, aborts (the allocation guard) and hangs are the findings.

mod auth_token;
mod find_query;
mod idb_records;
mod leader_session;
mod log_record;
mod replica_session;
mod replication_frame;
mod snapshot_image;
mod txn_body;
mod wal_dir;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: the corpus folder `fuzz/corpus/<name>` and the argument of the runners.
    pub name: &'static str,
    /// What it decodes.
    pub what: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
    /// The seed inputs, made by the real encoders (`fuzz-smoke write-seeds` stores them).
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order the runners take them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "replication_frame",
        what: "a replication frame off the wire (core Frame::decode_limited)",
        run: replication_frame::run,
        seeds: replication_frame::seeds,
    },
    Target {
        name: "replica_session",
        what: "a sequence of frames from a leader fed to core's Replica (snapshot transfer included)",
        run: replica_session::run,
        seeds: replica_session::seeds,
    },
    Target {
        name: "leader_session",
        what: "a sequence of frames from a replica fed to core's LeaderSession (hello, acks, snapshot acks)",
        run: leader_session::run,
        seeds: leader_session::seeds,
    },
    Target {
        name: "log_record",
        what: "WAL records back to back (core decode_record, decode_entry, check_entry_record)",
        run: log_record::run,
        seeds: log_record::seeds,
    },
    Target {
        name: "wal_dir",
        what: "a data directory (segments, meta, compaction point, snapshot file) opened by FileStore",
        run: wal_dir::run,
        seeds: wal_dir::seeds,
    },
    Target {
        name: "snapshot_image",
        what: "a snapshot's state image (core State::from_snapshot, filter_snapshot)",
        run: snapshot_image::run,
        seeds: snapshot_image::seeds,
    },
    Target {
        name: "idb_records",
        what: "IndexedDB values (wasm crate: log segments, snapshot records, pending writes, meta)",
        run: idb_records::run,
        seeds: idb_records::seeds,
    },
    Target {
        name: "txn_body",
        what: "a POST /v1/txn or /v1/txns body, parsed as the server does, then applied",
        run: txn_body::run,
        seeds: txn_body::seeds,
    },
    Target {
        name: "find_query",
        what: "a find body (filter, sort, limit, skip; core FindQuery::parse), then run on a collection with indexes",
        run: find_query::run,
        seeds: find_query::seeds,
    },
    Target {
        name: "auth_token",
        what: "a bearer token (server auth TokenKey::verify), raw or validly signed",
        run: auth_token::run,
        seeds: auth_token::seeds,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
