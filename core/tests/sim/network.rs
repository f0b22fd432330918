//! An in-memory network between the leader and its replicas that misbehaves on purpose.
//!
//! ```text
//! send(bytes) ─► drop? ─► flip a bit? ─► tamper an entry? ─► delay (FIFO unless reordered)
//!                                                            └► duplicate with its own delay
//! cut(conn)   ─► in-flight packets of the connection vanish, except "leaked" ones, which a
//!                broken proxy delivers into the replica's next connection. A leader's close
//!                cuts only once its frames in flight to the replica arrived (a WebSocket
//!                close follows the frames before it); other closes cut at once
//! isolate     ─► every packet to or from the replica vanishes silently until healed
//! ```
//!
//! Packets carry bytes, not frames, so the codec's checks are part of what is tested. A
//! "tampered" packet is a decoded `Entries` frame with one entry's timestamp changed and its
//! hash left alone (or a snapshot chunk with a flipped bit), re-encoded with a valid checksum:
//! only the replica's hash checks can see it.
//! A "spliced" packet carries entries of another history: each one hashes correctly, but the
//! first does not link to the leader's chain, which only the replica's `follows` check sees.

use cstore_core::replication::Frame;
use cstore_core::{Hash, TimestampMs};

use super::rng::Rng;

/// Which end a packet goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToLeader,
    ToReplica,
}

/// One connection's identity; a reconnect makes a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// How badly the network behaves; all zero while healing.
#[derive(Clone, Debug, Default)]
pub struct NetFaults {
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub corrupt: f64,
    pub tamper: f64,
    pub splice: f64,
    pub leak: f64,
    pub delay_ms_max: u64,
}

#[derive(Debug)]
pub struct Packet {
    pub deliver_at: u64,
    seq: u64,
    pub replica: usize,
    pub conn: ConnId,
    pub dir: Dir,
    /// Survived the cut of its connection; delivered into whatever connection is current.
    pub leaked: bool,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Network {
    packets: Vec<Packet>,
    seq: u64,
    /// Per (replica, direction): the latest delivery time, to keep channels FIFO.
    tail: Vec<[u64; 2]>,
    pub faults: NetFaults,
    pub isolated_until: Vec<u64>,
    pub stats: NetStats,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub tampered: u64,
    pub spliced: u64,
    pub leaked: u64,
}

impl Network {
    pub fn new(replicas: usize, faults: NetFaults) -> Network {
        Network {
            tail: vec![[0; 2]; replicas],
            isolated_until: vec![0; replicas],
            faults,
            ..Network::default()
        }
    }

    pub fn is_isolated(&self, replica: usize, now: u64) -> bool {
        self.isolated_until[replica] > now
    }

    pub fn send(
        &mut self,
        rng: &mut Rng,
        now: u64,
        replica: usize,
        conn: ConnId,
        dir: Dir,
        mut bytes: Vec<u8>,
    ) {
        self.stats.sent += 1;
        if self.is_isolated(replica, now) || rng.chance(self.faults.drop) {
            self.stats.dropped += 1;
            return;
        }
        if dir == Dir::ToReplica && rng.chance(self.faults.tamper) && tamper(rng, &mut bytes) {
            self.stats.tampered += 1;
        }
        if dir == Dir::ToReplica && rng.chance(self.faults.splice) && splice(rng, &mut bytes) {
            self.stats.spliced += 1;
        }
        if rng.chance(self.faults.corrupt) {
            let bit = rng.below(bytes.len() as u64 * 8);
            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }
        let copies = if rng.chance(self.faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for copy in 0..copies {
            let mut deliver_at = now + rng.range(0, self.faults.delay_ms_max);
            let channel = &mut self.tail[replica][dir as usize];
            // In order, like a TCP stream, unless this packet is picked to overtake.
            if copy == 0 && !rng.chance(self.faults.reorder) {
                deliver_at = deliver_at.max(*channel);
                *channel = deliver_at;
            }
            self.seq += 1;
            self.packets.push(Packet {
                deliver_at,
                seq: self.seq,
                replica,
                conn,
                dir,
                leaked: false,
                bytes: bytes.clone(),
            });
        }
    }

    /// Whether a packet of `conn` in direction `dir` is still on its way.
    pub fn in_flight(&self, conn: ConnId, dir: Dir) -> bool {
        self.packets
            .iter()
            .any(|p| p.conn == conn && p.dir == dir && !p.leaked)
    }

    /// The connection closed: its packets vanish, unless a broken proxy leaks them.
    pub fn cut(&mut self, rng: &mut Rng, conn: ConnId) {
        let leak = self.faults.leak;
        let mut leaked = 0;
        self.packets.retain_mut(|p| {
            if p.conn != conn || p.leaked {
                return true;
            }
            p.leaked = rng.chance(leak);
            leaked += p.leaked as u64;
            p.leaked
        });
        self.stats.leaked += leaked;
    }

    /// Removes and returns the packets due by `now`, in delivery order.
    pub fn due(&mut self, now: u64) -> Vec<Packet> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.packets.len() {
            if self.packets[i].deliver_at <= now {
                due.push(self.packets.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| (p.deliver_at, p.seq));
        due
    }
}

/// Changes one entry of an `Entries` frame without fixing its hash, or one byte of a snapshot
/// chunk, and re-frames it with a valid checksum. False if not such a frame.
fn tamper(rng: &mut Rng, bytes: &mut Vec<u8>) -> bool {
    let frame = match Frame::decode(bytes) {
        Ok(Frame::Entries { mut entries }) if !entries.is_empty() => {
            let index = rng.below(entries.len() as u64) as usize;
            let entry = &mut entries[index];
            entry.timestamp = TimestampMs(entry.timestamp.0 + 1 + rng.below(1000));
            Frame::Entries { entries }
        }
        Ok(Frame::SnapshotChunk { offset, mut bytes }) if !bytes.is_empty() => {
            let index = rng.below(bytes.len() as u64) as usize;
            bytes[index] ^= 1 << rng.below(8);
            Frame::SnapshotChunk { offset, bytes }
        }
        _ => return false,
    };
    *bytes = frame.encode();
    true
}

/// Replaces an `Entries` frame's entries by self-consistent ones of another history: the same
/// LSNs, each hash right, but chained from a foreign `prev_hash`. False if not such a frame.
fn splice(rng: &mut Rng, bytes: &mut Vec<u8>) -> bool {
    let Ok(Frame::Entries { mut entries }) = Frame::decode(bytes) else {
        return false;
    };
    let mut prev_hash = Hash([rng.below(256) as u8 | 1; 32]);
    for entry in &mut entries {
        entry.prev_hash = prev_hash;
        entry.hash = entry.compute_hash().expect("entries from a frame hash");
        prev_hash = entry.hash;
    }
    if entries.is_empty() {
        return false;
    }
    *bytes = Frame::Entries { entries }.encode();
    true
}
