//! Clients: each write is a task that proposes a transaction to one member (`client_write`, as
//! the server's proposer hands a checked proposal to openraft) and reports the answer; the
//! world takes the answers after each step and remembers what was acknowledged.

use std::sync::Arc;

use cstore_core::{Lsn, TimestampMs, Txn};
use cstore_server::cluster::entry::lsn_of;
use cstore_server::cluster::types::{Proposal, RaftLogId};
use openraft::AsyncRuntime;
use openraft::errors::{ClientWriteError, RaftError};

use super::types::{SimRaft, SimRuntime};
use super::{CLIENT_TIMEOUT, WALL_START_MS, World, workload};

/// A client's answer, as its task reports it.
#[derive(Debug, Clone)]
pub(super) enum Answer {
    /// Committed and applied at `log_id` (rejected: kept in the log as a no-op).
    Done { log_id: RaftLogId, rejected: bool },
    /// The member was not the leader: nothing was proposed.
    Refused,
    /// No answer (timeout, leadership lost, crash): it may or may not commit.
    Unknown,
}

#[derive(Debug, Clone)]
pub(super) struct ClientEvent {
    write: u64,
    member: u64,
    txn: Txn,
    answer: Answer,
}

/// A write acknowledged to its client: committed at `log_id`.
#[derive(Debug, Clone)]
pub struct Acked {
    pub write: u64,
    pub log_id: RaftLogId,
    pub txn: Txn,
}

impl Acked {
    pub fn lsn(&self) -> Lsn {
        lsn_of(self.log_id.index())
    }
}

impl World {
    /// A client sends one write: mostly to a member that believes it leads, sometimes to any.
    pub(super) fn write(&mut self) {
        let leaders = self.believed_leaders();
        let up = self.up_members();
        let m = if !leaders.is_empty() && self.rng.chance(0.85) {
            self.rng.pick(&leaders)
        } else if !up.is_empty() {
            self.rng.pick(&up)
        } else {
            return;
        };
        let write = self.next_write;
        self.next_write += 1;
        self.report.writes += 1;
        let txn = workload::txn(&mut self.rng, write);
        let member = &self.members[m];
        let wall = (WALL_START_MS + self.now_ms()) as i64 + member.wall_offset_ms;
        let proposal = Proposal {
            timestamp: TimestampMs(wall.max(0) as u64),
            txn: txn.clone(),
        };
        let raft: SimRaft = member.up.as_ref().expect("up").raft.clone();
        let id = member.id;
        let clients = Arc::clone(&self.clients);
        self.note(&format!("write {write} sent to {id}"));
        drop(SimRuntime::spawn(async move {
            let answer =
                match SimRuntime::timeout(CLIENT_TIMEOUT, raft.client_write(proposal)).await {
                    Ok(Ok(response)) => Answer::Done {
                        log_id: response.log_id,
                        rejected: response.data.rejection.is_some(),
                    },
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                        Answer::Refused
                    }
                    Ok(Err(_)) | Err(_) => Answer::Unknown,
                };
            clients.lock().expect("clients lock").push(ClientEvent {
                write,
                member: id,
                txn,
                answer,
            });
        }));
    }

    /// Takes the answers the clients got since the last step.
    pub(super) fn collect_answers(&mut self) {
        let events = std::mem::take(&mut *self.clients.lock().expect("clients lock"));
        for event in events {
            let text = match &event.answer {
                Answer::Done { log_id, rejected } => {
                    self.report.acked += 1;
                    if *rejected {
                        self.report.rejected += 1;
                    }
                    self.acked.push(Acked {
                        write: event.write,
                        log_id: *log_id,
                        txn: event.txn.clone(),
                    });
                    format!(
                        "write {} acknowledged by {} at {log_id}{}",
                        event.write,
                        event.member,
                        if *rejected { " (a no-op)" } else { "" }
                    )
                }
                Answer::Refused => {
                    self.report.refused += 1;
                    format!("write {} refused by {}", event.write, event.member)
                }
                Answer::Unknown => {
                    self.report.unknown += 1;
                    format!("write {} unanswered by {}", event.write, event.member)
                }
            };
            self.note(&text);
        }
    }
}
