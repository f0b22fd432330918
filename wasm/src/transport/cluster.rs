//! The transport of a replica that follows several servers (the members of a cluster): before
//! each connection it asks a member's `/v1/status` which store it holds and who leads, then
//! opens the WebSocket to the leader if it can, else to any member (they all stream committed
//! entries), and never to a member of another store.
//!
//! The rotation itself (which member next, the leader first, counting switches) is plain data
//! in [`Members`], shared with the writer's sender so that writes and read indexes go to the
//! same place. The store's identity is remembered in the local database (a [`MetaStore`]) on
//! first contact (the identity most members show); a member whose identity differs is
//! refused for good (`wrong_cluster`).

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;

use super::http::request;
use super::websocket::{WebSocketConnection, WebSocketTransport};
use super::{MembersReport, Transport, TransportError};
use crate::replica::members::{MemberStatus, Members};
use crate::replica::pending::MetaStore;

/// Longest wait for a member's `/v1/status`.
pub const STATUS_TIMEOUT_MS: u64 = 2_000;
/// The name of the remembered store identity in the local database's metadata.
pub const IDENTITY_META: &str = "store_identity";

/// Opens WebSockets to whichever member of a cluster is usable.
#[derive(Debug)]
pub struct ClusterTransport<M> {
    members: Rc<RefCell<Members>>,
    sockets: Vec<WebSocketTransport>,
    token: Option<String>,
    meta: M,
    /// The remembered identity: `None` until read from `meta`.
    remembered: RefCell<Option<Option<String>>>,
    /// The LSN the replica resumes after (see [`Transport::resume_from`]).
    resume_lsn: std::cell::Cell<u64>,
}

impl<M: MetaStore> ClusterTransport<M> {
    /// A transport over `members` (shared with the writes' sender), remembering the store's
    /// identity in `meta`.
    pub fn new(members: Rc<RefCell<Members>>, token: Option<&str>, meta: M) -> ClusterTransport<M> {
        let sockets = {
            let list = members.borrow();
            (0..list.len())
                .map(|i| WebSocketTransport::new(&list.member(i).ws_url, token))
                .collect()
        };
        ClusterTransport {
            members,
            sockets,
            token: token.map(str::to_owned),
            meta,
            remembered: RefCell::new(None),
            resume_lsn: std::cell::Cell::new(0),
        }
    }

    async fn remembered(&self) -> Result<Option<String>, TransportError> {
        if let Some(known) = self.remembered.borrow().clone() {
            return Ok(known);
        }
        let stored = self
            .meta
            .get_meta(IDENTITY_META)
            .await
            .map_err(|e| TransportError::Connect(format!("reading the store identity: {e}")))?;
        let known = stored.and_then(|bytes| String::from_utf8(bytes).ok());
        *self.remembered.borrow_mut() = Some(known.clone());
        Ok(known)
    }

    /// `GET /v1/status` of member `index`.
    async fn fetch_status(&self, index: usize) -> Result<MemberStatus, String> {
        let url = self.members.borrow().member(index).http_url.clone();
        let status_url = format!("{}/v1/status", url.trim_end_matches('/'));
        let answer = request(
            "GET",
            &status_url,
            self.token.as_deref(),
            None,
            STATUS_TIMEOUT_MS,
        )
        .await
        .map_err(|e| format!("{url}: {e}"))?;
        if answer.status != 200 {
            return Err(format!("{url}: /v1/status answered {}", answer.status));
        }
        let body: Value = serde_json::from_str(&answer.text)
            .map_err(|e| format!("{url}: /v1/status is not JSON: {e}"))?;
        Ok(MemberStatus::parse(&body))
    }

    /// On first contact (no identity remembered yet) asks every member at once, and takes
    /// the store most of those that answer hold (the first member's on a tie), so that one
    /// wrong URL in the list cannot decide which store the replica follows; members of
    /// another store are refused.
    async fn first_contact(&self) -> Result<(), TransportError> {
        if self.remembered().await?.is_some() {
            return Ok(());
        }
        let count = self.members.borrow().len();
        let answers = futures::future::join_all((0..count).map(|i| self.fetch_status(i))).await;
        let identities: Vec<Option<String>> = answers
            .iter()
            .map(|answer| answer.as_ref().ok().and_then(|s| s.identity.to_meta()))
            .collect();
        let mut best: Option<(&str, usize)> = None;
        for meta in identities.iter().flatten() {
            let votes = identities
                .iter()
                .filter(|other| other.as_deref() == Some(meta.as_str()))
                .count();
            if best.is_none_or(|(_, most)| votes > most) {
                best = Some((meta.as_str(), votes));
            }
        }
        let Some((chosen, _)) = best else {
            return Ok(());
        };
        for (index, answer) in answers.iter().enumerate() {
            if let Ok(status) = answer
                && let Err(why) = status.identity.check(Some(chosen))
                && status.identity.to_meta().is_some()
            {
                let url = self.members.borrow().member(index).http_url.clone();
                self.members.borrow_mut().refuse(
                    index,
                    "wrong_cluster",
                    format!("{url} is not a member of this store: {why}"),
                );
            }
        }
        self.meta
            .put_meta(IDENTITY_META, chosen.as_bytes())
            .await
            .map_err(|e| TransportError::Connect(format!("saving the store identity: {e}")))?;
        *self.remembered.borrow_mut() = Some(Some(chosen.to_owned()));
        Ok(())
    }

    /// `GET /v1/status` of member `index`, checked against the remembered identity (saved on
    /// first contact). `Err((refuse, message))`: refuse is true when the member holds another
    /// store.
    async fn probe(&self, index: usize) -> Result<MemberStatus, (bool, String)> {
        let url = self.members.borrow().member(index).http_url.clone();
        let status = self.fetch_status(index).await.map_err(|e| (false, e))?;
        let known = self
            .remembered()
            .await
            .map_err(|e| (false, e.to_string()))?;
        match status.identity.check(known.as_deref()) {
            Ok(()) => {}
            // Not initialized yet: try it again next round.
            Err(why) if status.identity.to_meta().is_none() => {
                return Err((false, format!("{url}: {why}")));
            }
            Err(why) => return Err((true, format!("{url} is not a member of this store: {why}"))),
        }
        // A member that has not applied what this replica holds would answer its hello with
        // a snapshot (it cannot find the replica's last entry): wait for it to catch up.
        let resume = self.resume_lsn.get();
        if let Some(applied) = status.applied_lsn
            && applied < resume
        {
            return Err((
                false,
                format!("{url} has applied {applied}, behind this replica's {resume}"),
            ));
        }
        if known.is_none()
            && let Some(meta) = status.identity.to_meta()
        {
            self.meta
                .put_meta(IDENTITY_META, meta.as_bytes())
                .await
                .map_err(|e| (false, format!("saving the store identity: {e}")))?;
            *self.remembered.borrow_mut() = Some(Some(meta));
        }
        Ok(status)
    }
}

impl<M: MetaStore> Transport for ClusterTransport<M> {
    type Connection = WebSocketConnection;

    async fn connect(&self) -> Result<WebSocketConnection, TransportError> {
        self.first_contact().await?;
        let mut queue: std::collections::VecDeque<usize> = self.members.borrow().order().into();
        // A few members (at most MEMBERS_MAX): vectors instead of sets keep set code out of
        // the module.
        let mut tried = Vec::new();
        let mut probed = Vec::new();
        let mut failures = Vec::new();
        while let Some(index) = queue.pop_front() {
            if tried.contains(&index) || !self.members.borrow().usable(index) {
                continue;
            }
            if !probed.contains(&index) {
                match self.probe(index).await {
                    Ok(status) => {
                        probed.push(index);
                        let leader = self
                            .members
                            .borrow_mut()
                            .note_leader(status.leader_url.as_deref());
                        // The leader first, if this one is not it; this one stays next.
                        if let Some(leader) = leader
                            && leader != index
                            && !tried.contains(&leader)
                            && !probed.contains(&leader)
                        {
                            queue.push_front(index);
                            queue.push_front(leader);
                            continue;
                        }
                    }
                    Err((refuse, message)) => {
                        tried.push(index);
                        let mut members = self.members.borrow_mut();
                        members.note_tried(index);
                        if refuse {
                            members.refuse(index, "wrong_cluster", message.clone());
                        }
                        failures.push(message);
                        continue;
                    }
                }
            }
            tried.push(index);
            match self.sockets[index].connect().await {
                Ok(connection) => {
                    self.members.borrow_mut().note_connected(index);
                    return Ok(connection);
                }
                Err(error) => {
                    self.members.borrow_mut().note_tried(index);
                    failures.push(error.to_string());
                }
            }
        }
        let members = self.members.borrow();
        if members.refused().count() == members.len() {
            let why: Vec<String> = members.refused().map(|r| r.message.clone()).collect();
            return Err(TransportError::WrongCluster(format!(
                "no member holds this replica's store: {}",
                why.join("; ")
            )));
        }
        Err(TransportError::Connect(format!(
            "no member could be reached: {}",
            failures.join("; ")
        )))
    }

    fn resume_from(&self, lsn: u64) {
        self.resume_lsn.set(lsn);
    }

    fn report(&self) -> Option<MembersReport> {
        let members = self.members.borrow();
        Some(MembersReport {
            connected_url: members
                .connected()
                .map(|i| members.member(i).http_url.clone()),
            switches: members.switches(),
            refused: members.refused().cloned().collect(),
        })
    }
}
