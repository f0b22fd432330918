//! What goes on the wire, and when: the flow-control half of a leader session.
//!
//! ```text
//! pending (≤ one read batch) ──► window has room? ──► Entries frames (≤ frame_bytes_max each)
//!        ▲                           │ entries in flight = sent − acked ≤ window_entries_max
//!        └── ReadEntries ◄── empty   │ bytes in flight (this connection) ≤ window_bytes_max
//! snapshot (Arc) ──► chunks while sent − acked bytes ≤ window_bytes_max ──► SnapshotEnd
//! ```
//!
//! An empty window always takes one entry or chunk however large, so nothing blocks forever;
//! a full one waits for acknowledgements, which is the backpressure a slow replica feels.

use std::sync::Arc;

use super::{LeaderCommand, LeaderSession, Phase};
use crate::log::LogEntry;
use crate::replication::entries_frame::EntriesFrame;
use crate::replication::frame::{Frame, entry_wire_bytes};
use crate::types::{Lsn, TimestampMs};

impl LeaderSession {
    pub(super) fn has_in_flight(&self) -> bool {
        match &self.phase {
            Phase::Snapshot(t) => t.sent_bytes > t.acked_bytes,
            Phase::Streaming => self.sent.lsn > self.acked,
            _ => false,
        }
    }

    /// Sends what the window allows, and reads more when the held batch ran out.
    pub(super) fn pump(&mut self, now: TimestampMs, out: &mut Vec<LeaderCommand>) {
        match &self.phase {
            Phase::Snapshot(_) => self.pump_snapshot(now, out),
            Phase::Streaming => self.pump_entries(now, out),
            _ => {}
        }
    }

    pub(super) fn pump_snapshot(&mut self, now: TimestampMs, out: &mut Vec<LeaderCommand>) {
        let window = self.config.window_bytes_max;
        let chunk_max = self.config.snapshot_chunk_bytes as u64;
        loop {
            let Phase::Snapshot(t) = &mut self.phase else {
                unreachable!("pumping a snapshot")
            };
            let total = t.snapshot.data.len() as u64;
            if t.sent_bytes == total {
                let position = t.snapshot.position;
                self.send(now, Frame::SnapshotEnd, out);
                // Entries after the snapshot follow at once; the replica acknowledges the
                // snapshot's position once installed, which opens the entry window.
                self.phase = Phase::Streaming;
                self.sent = position;
                self.progress_at = now;
                self.pump_entries(now, out);
                return;
            }
            let in_flight = t.sent_bytes - t.acked_bytes;
            if in_flight > 0 && in_flight + chunk_max.min(total - t.sent_bytes) > window {
                return;
            }
            let offset = t.sent_bytes;
            let end = (offset + chunk_max).min(total);
            let bytes = t.snapshot.data[offset as usize..end as usize].to_vec();
            t.sent_bytes = end;
            self.send(now, Frame::SnapshotChunk { offset, bytes }, out);
        }
    }

    pub(super) fn pump_entries(&mut self, now: TimestampMs, out: &mut Vec<LeaderCommand>) {
        let mut batch: Vec<Arc<LogEntry>> = Vec::new();
        let mut batch_bytes = 0u64;
        while let Some(entry) = self.pending.front() {
            let bytes = entry_wire_bytes(entry) as u64;
            // `in_flight_bytes` already counts the batch; `sent` moves when it is flushed.
            let entries_in_flight = self.sent.lsn.0 - self.acked.0 + batch.len() as u64;
            if entries_in_flight >= self.config.window_entries_max {
                break;
            }
            // An empty byte window takes one entry however large, so nothing can block.
            if self.in_flight_bytes > 0
                && self.in_flight_bytes + bytes > self.config.window_bytes_max
            {
                break;
            }
            if !batch.is_empty() && batch_bytes + bytes > self.config.frame_bytes_max as u64 {
                self.send_entries(now, std::mem::take(&mut batch), out);
                batch_bytes = 0;
            }
            let entry = self.pending.pop_front().expect("peeked");
            self.in_flight.push_back((entry.lsn, bytes));
            self.in_flight_bytes += bytes;
            batch_bytes += bytes;
            batch.push(entry);
        }
        if !batch.is_empty() {
            self.send_entries(now, batch, out);
        }
        self.maybe_ask_ack(now, out);
        self.maybe_read(out);
    }

    /// Asks a replica that acknowledges only on request (protocol version 3) for an
    /// acknowledgement of what was sent, when something depends on it: a write waits for it
    /// ([`LeaderSession::set_acks_awaited`]), the window is half full (so it reopens before it
    /// closes), or no ask went out for a heartbeat interval (so `ack_timeout_ms` and the
    /// replica's reported lag stay meaningful). The ask is a heartbeat right behind the
    /// entries, in the same write to the socket. Other replicas acknowledge every persisted
    /// batch unasked.
    pub(super) fn maybe_ask_ack(&mut self, now: TimestampMs, out: &mut Vec<LeaderCommand>) {
        if !self.acks_on_request
            || !matches!(self.phase, Phase::Streaming)
            || self.sent.lsn <= self.ack_asked
            || self.sent.lsn <= self.acked
        {
            return;
        }
        let c = &self.config;
        let in_flight = self.sent.lsn.0 - self.acked.0;
        let wanted = self.acks_awaited;
        let half_full = in_flight.saturating_mul(2) >= c.window_entries_max
            || self.in_flight_bytes.saturating_mul(2) >= c.window_bytes_max;
        let due = now.0.saturating_sub(self.ack_asked_at.0) >= c.heartbeat_interval_ms;
        if wanted || half_full || due {
            self.send_heartbeat(now, out);
        }
    }

    pub(super) fn send_entries(
        &mut self,
        now: TimestampMs,
        entries: Vec<Arc<LogEntry>>,
        out: &mut Vec<LeaderCommand>,
    ) {
        if self.sent.lsn == self.acked {
            self.progress_at = now;
        }
        // `sent` moves only here: the batch was accounted in flight by the caller.
        self.sent = entries.last().expect("non-empty batch").position();
        self.last_sent = now;
        let as_committed = self.subscription.is_none();
        out.push(LeaderCommand::SendEntries(EntriesFrame::new(
            entries,
            as_committed,
        )));
    }

    pub(super) fn maybe_read(&mut self, out: &mut Vec<LeaderCommand>) {
        if self.reading.is_some() || !self.pending.is_empty() {
            return;
        }
        let in_flight = self.sent.lsn.0 - self.acked.0;
        let room = self.config.window_entries_max.saturating_sub(in_flight);
        let available = self.committed.lsn.0.saturating_sub(self.sent.lsn.0);
        let count = room.min(available).min(self.config.read_entries_max);
        if count > 0 {
            let from = self.sent.lsn.next();
            self.read(from, Lsn(from.0 + count), out);
        }
    }
}
