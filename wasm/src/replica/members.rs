//! The servers a replica may follow: one server, or the members of a cluster, and which one to
//! use next.
//!
//! Any member of a cluster streams its committed entries on `/v1/replicate` and forwards
//! writes to the leader, and the hash chain is the same on every member, so a replica can
//! move between members and resume from its own LSN. What it must never do is move to
//! another *store*: a member is used only once its `/v1/status` shows the store identity the
//! replica remembered on first contact (the cluster id, or "a single-node server").
//!
//! ```text
//!  connect round:  order() = [known leader] ++ [the members after the last one, cyclic]
//!    for each member: GET /v1/status ─► identity ≠ remembered? refuse for good (wrong_cluster)
//!                                   └─► names another member as leader? try that one first
//!                     WebSocket ─► connected: note_connected (a move counts as a switch)
//!    nobody usable ─► the sync loop waits out its jittered backoff, then a new round
//!  writes, read index: write_target() = known leader, else the connected member;
//!                      a failure there ─► write_failed(): the next usable member
//! ```
//!
//! [`Members`] is plain data with no IO, so the rotation is tested natively; the browser
//! side (`cluster.rs`) does the fetches and the WebSocket.

use serde_json::Value;

/// Most members one replica is given.
pub const MEMBERS_MAX: usize = 64;

/// One server: where it streams (`ws(s)://…/v1/replicate`) and its HTTP base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The `/v1/replicate` WebSocket URL.
    pub ws_url: String,
    /// The HTTP base URL (`http(s)://host:port`), for status, writes and read indexes.
    pub http_url: String,
}

/// Which store a server holds, by its `/v1/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreIdentity {
    /// A member of the cluster with this id (hex).
    Cluster(String),
    /// A single-node server (or a read replica of one): it names no cluster.
    SingleNode,
    /// A cluster member that does not know its cluster's id yet (not initialized).
    Uninitialized,
}

impl StoreIdentity {
    /// The identity a `/v1/status` body shows: a `cluster_id` field (even `null`) marks a
    /// cluster member; a server without one is a single node.
    pub fn of_status(status: &Value) -> StoreIdentity {
        match status.get("cluster_id") {
            None => StoreIdentity::SingleNode,
            Some(Value::String(id)) if !id.is_empty() => StoreIdentity::Cluster(id.clone()),
            Some(_) => StoreIdentity::Uninitialized,
        }
    }

    /// How it is remembered in the local database.
    pub fn to_meta(&self) -> Option<String> {
        match self {
            StoreIdentity::Cluster(id) => Some(format!("cluster:{id}")),
            StoreIdentity::SingleNode => Some("single".to_owned()),
            StoreIdentity::Uninitialized => None,
        }
    }

    /// Whether a server with this identity holds the store remembered as `remembered`;
    /// `Err` says why not.
    pub fn check(&self, remembered: Option<&str>) -> Result<(), String> {
        let Some(meta) = self.to_meta() else {
            return Err("the member's cluster is not initialized yet".to_owned());
        };
        match remembered {
            None => Ok(()),
            Some(known) if known == meta => Ok(()),
            Some(known) => Err(format!(
                "it holds {} but this replica's data came from {}",
                describe(&meta),
                describe(known)
            )),
        }
    }
}

fn describe(meta: &str) -> String {
    match meta.strip_prefix("cluster:") {
        Some(id) => format!("cluster {}", &id[..id.len().min(16)]),
        None => "a single-node server".to_owned(),
    }
}

/// What a member's `/v1/status` tells the rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Which store it holds.
    pub identity: StoreIdentity,
    /// The HTTP base of the leader it knows, if any.
    pub leader_url: Option<String>,
    /// The last entry it applied (what it can stream from).
    pub applied_lsn: Option<u64>,
}

impl MemberStatus {
    /// Reads the parts used here from a `/v1/status` body.
    pub fn parse(status: &Value) -> MemberStatus {
        MemberStatus {
            identity: StoreIdentity::of_status(status),
            leader_url: status
                .get("leader_url")
                .and_then(Value::as_str)
                .map(str::to_owned),
            applied_lsn: status.get("applied_lsn").and_then(Value::as_u64),
        }
    }
}

/// A member refused for good: it holds another store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Its HTTP base.
    pub url: String,
    /// Stable code (`wrong_cluster`).
    pub code: String,
    /// Why.
    pub message: String,
}

/// The members and what the replica knows of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    members: Vec<Member>,
    /// The member the replication connection is (or last was) on.
    connected: Option<usize>,
    /// Where the next round starts after: the last member connected or tried.
    last: usize,
    /// The member the last status named leader.
    leader: Option<usize>,
    /// Where writes go after a failure moved them off the connected member.
    write: Option<usize>,
    /// Members that hold another store, never used again.
    refused: Vec<Option<Refused>>,
    /// How often the connection moved to another member.
    switches: u64,
}

impl Members {
    /// The members, in the order given (the first is tried first). At least one.
    pub fn new(members: Vec<Member>) -> Members {
        assert!(!members.is_empty(), "a replica follows at least one server");
        let count = members.len();
        Members {
            members,
            connected: None,
            last: count - 1,
            leader: None,
            write: None,
            refused: vec![None; count],
            switches: 0,
        }
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: there is at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `index`.
    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    /// Whether member `index` may be used (it was not refused).
    pub fn usable(&self, index: usize) -> bool {
        self.refused[index].is_none()
    }

    /// The members refused so far.
    pub fn refused(&self) -> impl Iterator<Item = &Refused> {
        self.refused.iter().flatten()
    }

    /// How often the connection moved to another member.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The member connected (or last connected).
    pub fn connected(&self) -> Option<usize> {
        self.connected
    }

    /// The order of one connect round: the known leader first, then every member after the
    /// last one used, cyclically; refused members are left out.
    pub fn order(&self) -> Vec<usize> {
        let count = self.members.len();
        let mut order = Vec::with_capacity(count);
        if let Some(leader) = self.leader.filter(|&l| self.usable(l)) {
            order.push(leader);
        }
        for step in 1..=count {
            let index = (self.last + step) % count;
            if self.usable(index) && !order.contains(&index) {
                order.push(index);
            }
        }
        order
    }

    /// The member whose HTTP base is `url` (compared without a trailing slash, scheme and host
    /// case-insensitively).
    pub fn index_of(&self, url: &str) -> Option<usize> {
        let wanted = normalize(url);
        self.members
            .iter()
            .position(|m| normalize(&m.http_url) == wanted)
    }

    /// A status named `leader_url` leader (or no leader): remember it, if it is a member.
    pub fn note_leader(&mut self, leader_url: Option<&str>) -> Option<usize> {
        self.leader = leader_url.and_then(|url| self.index_of(url));
        self.leader.filter(|&l| self.usable(l))
    }

    /// Member `index` was tried (and failed): the next round starts after it.
    pub fn note_tried(&mut self, index: usize) {
        self.last = index;
    }

    /// The replication connection is on member `index` now.
    pub fn note_connected(&mut self, index: usize) {
        if self.connected.is_some_and(|before| before != index) {
            self.switches += 1;
        }
        self.connected = Some(index);
        self.last = index;
    }

    /// Member `index` holds another store: never use it again.
    pub fn refuse(&mut self, index: usize, code: &str, message: String) {
        self.refused[index] = Some(Refused {
            url: self.members[index].http_url.clone(),
            code: code.to_owned(),
            message,
        });
        if self.leader == Some(index) {
            self.leader = None;
        }
        if self.write == Some(index) {
            self.write = None;
        }
        if self.connected == Some(index) {
            self.connected = None;
        }
    }

    /// Where writes and read-index requests go: the known leader, else the member writes
    /// were moved to, else the connected one, else the first usable one.
    pub fn write_target(&self) -> Option<usize> {
        [self.leader, self.write, self.connected]
            .into_iter()
            .flatten()
            .find(|&i| self.usable(i))
            .or_else(|| (0..self.members.len()).find(|&i| self.usable(i)))
    }

    /// A write (or read index) to member `index` failed in a way another member may not:
    /// the next ones go to the next usable member.
    pub fn write_failed(&mut self, index: usize) {
        if self.leader == Some(index) {
            self.leader = None;
        }
        let count = self.members.len();
        self.write = (1..=count)
            .map(|step| (index + step) % count)
            .find(|&i| self.usable(i));
    }
}

fn normalize(url: &str) -> String {
    url.trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn three() -> Members {
        Members::new(
            (1..=3)
                .map(|i| Member {
                    ws_url: format!("ws://h{i}/v1/replicate"),
                    http_url: format!("http://h{i}"),
                })
                .collect(),
        )
    }

    #[test]
    fn rounds_start_after_the_last_member_and_prefer_the_leader() {
        let mut members = three();
        assert_eq!(members.order(), vec![0, 1, 2]);
        members.note_tried(0);
        assert_eq!(members.order(), vec![1, 2, 0]);
        members.note_connected(1);
        assert_eq!(members.switches(), 0, "a first connection is no switch");
        assert_eq!(members.note_leader(Some("http://H3/")), Some(2));
        assert_eq!(members.order(), vec![2, 0, 1]);
        members.note_connected(2);
        assert_eq!(members.switches(), 1);
        members.note_connected(2);
        assert_eq!(
            members.switches(),
            1,
            "reconnecting to the same member is no switch"
        );
        assert_eq!(members.note_leader(Some("http://elsewhere")), None);
        assert_eq!(members.order(), vec![0, 1, 2]);
    }

    #[test]
    fn refused_members_are_never_tried_nor_written_to() {
        let mut members = three();
        members.note_leader(Some("http://h2"));
        members.refuse(1, "wrong_cluster", "another cluster".into());
        assert_eq!(members.order(), vec![0, 2]);
        assert_eq!(members.write_target(), Some(0));
        assert_eq!(members.refused().count(), 1);
        members.refuse(0, "wrong_cluster", "x".into());
        members.refuse(2, "wrong_cluster", "x".into());
        assert!(members.order().is_empty());
        assert_eq!(members.write_target(), None);
    }

    #[test]
    fn writes_go_to_the_leader_and_move_on_after_a_failure() {
        let mut members = three();
        assert_eq!(members.write_target(), Some(0), "nothing known: the first");
        members.note_connected(1);
        assert_eq!(
            members.write_target(),
            Some(1),
            "the connected member forwards"
        );
        members.note_leader(Some("http://h3"));
        assert_eq!(members.write_target(), Some(2));
        members.write_failed(2);
        assert_eq!(
            members.write_target(),
            Some(0),
            "the one after the failed one"
        );
        members.write_failed(0);
        assert_eq!(members.write_target(), Some(1));
    }

    #[test]
    fn identities_from_status_and_the_guard() {
        let cluster = StoreIdentity::of_status(&json!({"role": "leader", "cluster_id": "ab12"}));
        assert_eq!(cluster, StoreIdentity::Cluster("ab12".into()));
        let single = StoreIdentity::of_status(&json!({"role": "leader", "leader_url": null}));
        assert_eq!(single, StoreIdentity::SingleNode);
        let fresh = StoreIdentity::of_status(&json!({"cluster_id": null, "init_error": null}));
        assert_eq!(fresh, StoreIdentity::Uninitialized);

        assert!(cluster.check(None).is_ok(), "first contact");
        assert!(cluster.check(Some("cluster:ab12")).is_ok());
        let other = StoreIdentity::Cluster("cd34".into()).check(Some("cluster:ab12"));
        assert!(other.unwrap_err().contains("cluster ab12"));
        assert!(single.check(Some("cluster:ab12")).is_err());
        assert!(cluster.check(Some("single")).is_err());
        assert!(
            fresh.check(None).is_err(),
            "an uninitialized member is not used"
        );

        let status = MemberStatus::parse(&json!({"cluster_id": "ab12", "leader_url": "http://h1"}));
        assert_eq!(status.leader_url.as_deref(), Some("http://h1"));
    }
}
