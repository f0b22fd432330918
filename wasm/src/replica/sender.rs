//! How pending writes reach the leader: `POST {httpUrl}/v1/txns`, up to
//! [`BATCH_WRITES_MAX`] queued writes per request (each committed on its own, in order), or
//! `POST /v1/txn` for one write or an older server that has no `/v1/txns`.
//!
//! The answer sorts each attempt into three outcomes: committed (2xx, with the LSN; also a
//! `duplicate` answer to a resend), rejected by the leader as the authority (4xx: the write
//! will never apply, roll it back and report the code), or try again later (network
//! failure, 5xx, 408, 429). [`TxnSender`] is the seam, so tests can answer from an
//! in-browser leader.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use cstore_core::{Lsn, Op, Txn};
use serde_json::{Value, json};

use super::members::Members;
use crate::transport::http::{Answer, request};

/// What became of one attempt to commit a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// The leader committed it (now or on an earlier attempt) at this LSN.
    Committed { lsn: Lsn },
    /// The leader refused it for good.
    Rejected { code: String, message: String },
    /// It may not have arrived: try again later.
    Retry { code: String, message: String },
}

/// What became of a request carrying several writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// One outcome per write, in order, for the first writes of the batch (a sender may
    /// send fewer than it was given; the rest stay queued).
    Each(Vec<TxnOutcome>),
    /// The request as a whole failed: every write stays queued, try again later.
    Retry { code: String, message: String },
}

/// Sends writes to the leader.
pub trait TxnSender {
    /// Commits `txn` as write `seq` of `client`.
    fn send(&self, client: &str, seq: u64, txn: &Txn) -> impl Future<Output = TxnOutcome>;

    /// Most writes the writer hands to one [`TxnSender::send_batch`].
    fn batch_max(&self) -> usize {
        BATCH_WRITES_MAX
    }

    /// Commits several writes in order, each on its own, in as few requests as the sender
    /// can; by default one request for the first write.
    fn send_batch(
        &self,
        client: &str,
        writes: &[(u64, Txn)],
    ) -> impl Future<Output = BatchOutcome> {
        async move {
            match writes.first() {
                Some((seq, txn)) => BatchOutcome::Each(vec![self.send(client, *seq, txn).await]),
                None => BatchOutcome::Each(Vec::new()),
            }
        }
    }
}

/// The `/v1/txn` operation objects of a transaction.
pub fn wire_ops(txn: &Txn) -> Vec<Value> {
    txn.ops.iter().map(wire_op).collect()
}

fn wire_op(op: &Op) -> Value {
    let version = |v: &Option<Lsn>| v.map(|lsn| lsn.0);
    match op {
        Op::Insert { collection, doc } => {
            json!({"op": "insert", "collection": collection, "doc": doc.to_value()})
        }
        Op::Put {
            collection,
            doc,
            if_version,
        } => json!({"op": "put", "collection": collection, "doc": doc.to_value(),
                    "if_version": version(if_version)}),
        Op::Patch {
            collection,
            id,
            patch,
            if_version,
        } => {
            let patch: Value = serde_json::from_str(patch).unwrap_or(Value::Null);
            json!({"op": "patch", "collection": collection, "id": id, "patch": patch,
                   "if_version": version(if_version)})
        }
        Op::Delete {
            collection,
            id,
            if_version,
        } => json!({"op": "delete", "collection": collection, "id": id,
                    "if_version": version(if_version)}),
        Op::CreateCollection {
            collection,
            options,
        } => json!({"op": "create_collection", "collection": collection, "ttl_ms": options.ttl_ms}),
        Op::DropCollection { collection } => {
            json!({"op": "drop_collection", "collection": collection})
        }
        Op::CreateIndex { collection, spec } => {
            json!({"op": "create_index", "collection": collection, "index": spec})
        }
        Op::DropIndex { collection, name } => {
            json!({"op": "drop_index", "collection": collection, "name": name})
        }
        Op::SetTtl { collection, ttl_ms } => {
            json!({"op": "set_ttl", "collection": collection, "ttl_ms": ttl_ms})
        }
    }
}

/// Longest wait for the answer to a write request (a batch of hundreds commits in one).
pub const WRITE_TIMEOUT_MS: u64 = 30_000;
/// Longest wait for a read index.
pub const READ_INDEX_TIMEOUT_MS: u64 = 5_000;
/// Most writes sent in one `POST /v1/txns` (the server takes up to 1,000).
pub const BATCH_WRITES_MAX: usize = 500;

/// Where the HTTP calls go: one server, or whichever member of a cluster is the target.
#[derive(Clone, Debug)]
enum Targets {
    Fixed(String),
    Members(Rc<RefCell<Members>>),
}

/// Writes (and read indexes) through `fetch` to a server's HTTP API.
#[derive(Clone, Debug)]
pub struct FetchSender {
    targets: Targets,
    token: Option<String>,
    /// False once a server answered `404` to `/v1/txns` (an older server): one write per
    /// request from then on.
    batches: Rc<Cell<bool>>,
}

impl FetchSender {
    /// A sender to the server at `http_url`.
    pub fn new(http_url: &str, token: Option<&str>) -> FetchSender {
        FetchSender {
            targets: Targets::Fixed(http_url.trim_end_matches('/').to_owned()),
            token: token.map(str::to_owned),
            batches: Rc::new(Cell::new(true)),
        }
    }

    /// A sender to whichever member `members` names as the write target (shared with the
    /// cluster transport); a failure moves the target on.
    pub fn for_members(members: Rc<RefCell<Members>>, token: Option<&str>) -> FetchSender {
        FetchSender {
            targets: Targets::Members(members),
            token: token.map(str::to_owned),
            batches: Rc::new(Cell::new(true)),
        }
    }

    /// The base URL to use now, and the member's index (for [`FetchSender::failed`]).
    pub(crate) fn target(&self) -> Option<(Option<usize>, String)> {
        match &self.targets {
            Targets::Fixed(url) => Some((None, url.clone())),
            Targets::Members(members) => {
                let members = members.borrow();
                let index = members.write_target()?;
                let url = members
                    .member(index)
                    .http_url
                    .trim_end_matches('/')
                    .to_owned();
                Some((Some(index), url))
            }
        }
    }

    /// A call to member `index` failed in a way another member may not. A `503
    /// not_leader` that names the leader (`leader_url`) sends the next call there.
    pub(crate) fn failed(&self, index: Option<usize>) {
        if let (Targets::Members(members), Some(index)) = (&self.targets, index) {
            members.borrow_mut().write_failed(index);
        }
    }

    /// After an error answer from member `index`: moves on, to the leader it names if any.
    fn answered_error(&self, index: Option<usize>, answer: &Answer) {
        self.answered_error_text(index, &answer.text);
    }

    /// [`FetchSender::answered_error`] for the text of an error answer (also one answer of
    /// the write channel).
    pub(crate) fn answered_error_text(&self, index: Option<usize>, text: &str) {
        self.failed(index);
        let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let leader = body
            .get("error")
            .and_then(|e| e.get("leader_url"))
            .and_then(Value::as_str);
        if let (Targets::Members(members), Some(leader)) = (&self.targets, leader) {
            members.borrow_mut().note_leader(Some(leader));
        }
    }

    /// Member `index` named `leader_url` the leader: the next calls go there (if it is a
    /// member).
    pub(crate) fn moved_to_leader(&self, index: Option<usize>, leader_url: &str) {
        self.failed(index);
        if let Targets::Members(members) = &self.targets {
            members.borrow_mut().note_leader(Some(leader_url));
        }
    }

    async fn post(&self, path: &str, body: &str) -> Result<(Option<usize>, Answer), TxnOutcome> {
        let Some((index, base)) = self.target() else {
            return Err(no_member());
        };
        let url = format!("{base}{path}");
        match request(
            "POST",
            &url,
            self.token.as_deref(),
            Some(body),
            WRITE_TIMEOUT_MS,
        )
        .await
        {
            Ok(answer) => Ok((index, answer)),
            Err(message) => {
                self.failed(index);
                Err(TxnOutcome::Retry {
                    code: "network_error".into(),
                    message,
                })
            }
        }
    }

    /// `GET /v1/read-index` of the target member (then one other, if it fails): the LSN a
    /// linearizable read must wait for. `Err` is (code, message): `unavailable` when no
    /// member answers, or the server's code.
    pub async fn read_index(&self) -> Result<Lsn, (String, String)> {
        let attempts = match &self.targets {
            Targets::Fixed(_) => 1,
            Targets::Members(members) => members.borrow().len().min(2),
        };
        let mut last = ("unavailable".to_owned(), "no server to ask".to_owned());
        for _ in 0..attempts {
            let Some((index, base)) = self.target() else {
                break;
            };
            let url = format!("{base}/v1/read-index");
            match request(
                "GET",
                &url,
                self.token.as_deref(),
                None,
                READ_INDEX_TIMEOUT_MS,
            )
            .await
            {
                Ok(answer) if answer.status == 200 => {
                    let body: Value = serde_json::from_str(&answer.text).unwrap_or(Value::Null);
                    return match body.get("lsn").and_then(Value::as_u64) {
                        Some(lsn) => Ok(Lsn(lsn)),
                        None => Err(("bad_response".into(), format!("{url}: no lsn"))),
                    };
                }
                Ok(answer) => {
                    let (code, message) = error_fields(answer.status, &answer.text);
                    if answer.status < 500 {
                        return Err((code, message));
                    }
                    self.failed(index);
                    last = ("unavailable".into(), format!("{url}: {code}: {message}"));
                }
                Err(message) => {
                    self.failed(index);
                    last = ("unavailable".into(), message);
                }
            }
        }
        Err(last)
    }
}

fn no_member() -> TxnOutcome {
    TxnOutcome::Retry {
        code: "wrong_cluster".into(),
        message: "no usable server to write to".into(),
    }
}

/// The `/v1/txn` body of one write, with its origin.
pub(crate) fn txn_body(client: &str, seq: u64, txn: &Txn) -> Value {
    // The origin makes a resend after a lost answer commit at most once.
    let origin = txn.origin.as_ref();
    let client = origin.map_or(client, |o| o.client.as_str());
    let seq = origin.map_or(seq, |o| o.seq);
    json!({"ops": wire_ops(txn), "origin": {"client": client, "seq": seq}})
}

impl TxnSender for FetchSender {
    async fn send(&self, client: &str, seq: u64, txn: &Txn) -> TxnOutcome {
        let body = txn_body(client, seq, txn).to_string();
        match self.post("/v1/txn", &body).await {
            Ok((index, answer)) => {
                let outcome = classify(answer.status, &answer.text);
                if matches!(outcome, TxnOutcome::Retry { .. }) {
                    self.answered_error(index, &answer);
                }
                outcome
            }
            Err(outcome) => outcome,
        }
    }

    async fn send_batch(&self, client: &str, writes: &[(u64, Txn)]) -> BatchOutcome {
        let Some((seq, txn)) = writes.first() else {
            return BatchOutcome::Each(Vec::new());
        };
        if writes.len() == 1 || !self.batches.get() {
            return BatchOutcome::Each(vec![self.send(client, *seq, txn).await]);
        }
        let writes = &writes[..writes.len().min(BATCH_WRITES_MAX)];
        let txns: Vec<Value> = writes
            .iter()
            .map(|(seq, txn)| txn_body(client, *seq, txn))
            .collect();
        let body = json!({ "txns": txns }).to_string();
        let (index, answer) = match self.post("/v1/txns", &body).await {
            Ok(answered) => answered,
            Err(TxnOutcome::Retry { code, message }) => {
                return BatchOutcome::Retry { code, message };
            }
            Err(other) => unreachable!("post fails only with Retry, not {other:?}"),
        };
        if answer.status == 404 {
            // An older server: one write per request from now on.
            self.batches.set(false);
            return BatchOutcome::Each(vec![self.send(client, *seq, txn).await]);
        }
        if answer.status != 200 {
            return match classify(answer.status, &answer.text) {
                TxnOutcome::Retry { code, message } => {
                    self.answered_error(index, &answer);
                    BatchOutcome::Retry { code, message }
                }
                // The request as a whole was refused (too large, not allowed): the first
                // write alone gets its own, precise answer.
                _ => BatchOutcome::Each(vec![self.send(client, *seq, txn).await]),
            };
        }
        let outcomes = classify_batch(&answer.text, writes.len());
        if let BatchOutcome::Each(each) = &outcomes
            && each.iter().any(|o| matches!(o, TxnOutcome::Retry { .. }))
        {
            self.failed(index);
        }
        outcomes
    }
}

/// Sorts the `200` answer of `/v1/txns` for `count` writes into one outcome each.
pub fn classify_batch(text: &str, count: usize) -> BatchOutcome {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let Some(results) = body.get("results").and_then(Value::as_array) else {
        return BatchOutcome::Retry {
            code: "bad_response".into(),
            message: "a /v1/txns answer without results".into(),
        };
    };
    if results.len() != count {
        return BatchOutcome::Retry {
            code: "bad_response".into(),
            message: format!("{} results for {count} writes", results.len()),
        };
    }
    let outcomes = results
        .iter()
        .map(
            |result| match result.get("status").and_then(Value::as_u64) {
                Some(status) => classify(status as u16, &result.to_string()),
                None => classify(200, &result.to_string()),
            },
        )
        .collect();
    BatchOutcome::Each(outcomes)
}

/// The code and message of an error answer (the status when the body has none).
fn error_fields(status: u16, text: &str) -> (String, String) {
    error_fields_of(status, &serde_json::from_str(text).unwrap_or(Value::Null))
}

fn error_fields_of(status: u16, body: &Value) -> (String, String) {
    let error = body.get("error");
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let code = field("code").unwrap_or_else(|| format!("http_{status}"));
    let message = field("message").unwrap_or_else(|| format!("HTTP status {status}"));
    (code, message)
}

/// Sorts an HTTP answer of `/v1/txn` into an outcome.
pub fn classify(status: u16, text: &str) -> TxnOutcome {
    classify_body(status, &serde_json::from_str(text).unwrap_or(Value::Null))
}

/// [`classify`] of an answer already parsed.
pub fn classify_body(status: u16, body: &Value) -> TxnOutcome {
    if (200..300).contains(&status) {
        return match body.get("lsn").and_then(Value::as_u64) {
            Some(lsn) => TxnOutcome::Committed { lsn: Lsn(lsn) },
            None => TxnOutcome::Retry {
                code: "bad_response".into(),
                message: format!("status {status} without an lsn"),
            },
        };
    }
    let (code, message) = error_fields_of(status, body);
    let retry = status >= 500 || status == 408 || status == 429;
    if retry {
        TxnOutcome::Retry { code, message }
    } else {
        TxnOutcome::Rejected { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_sort_into_outcomes() {
        assert_eq!(
            classify(200, r#"{"lsn":7,"ids":["a"]}"#),
            TxnOutcome::Committed { lsn: Lsn(7) }
        );
        assert_eq!(
            classify(200, r#"{"lsn":7,"ids":["a"],"duplicate":true}"#),
            TxnOutcome::Committed { lsn: Lsn(7) }
        );
        let conflict = r#"{"error":{"code":"unique_violation","message":"taken"}}"#;
        assert_eq!(
            classify(409, conflict),
            TxnOutcome::Rejected {
                code: "unique_violation".into(),
                message: "taken".into()
            }
        );
        assert!(
            matches!(classify(503, "{}"), TxnOutcome::Retry { code, .. } if code == "http_503")
        );
        assert!(matches!(classify(429, ""), TxnOutcome::Retry { .. }));
    }

    #[test]
    fn batch_answers_sort_into_one_outcome_each() {
        let text = r#"{"results": [
            {"lsn": 4, "ids": ["a"]},
            {"status": 409, "error": {"code": "already_exists", "message": "b"}},
            {"status": 503, "error": {"code": "not_leader", "message": "election"}},
            {"lsn": 5, "ids": ["d"], "duplicate": true}
        ]}"#;
        let BatchOutcome::Each(each) = classify_batch(text, 4) else {
            panic!("a 200 answer with four results");
        };
        assert_eq!(each[0], TxnOutcome::Committed { lsn: Lsn(4) });
        assert!(matches!(&each[1], TxnOutcome::Rejected { code, .. } if code == "already_exists"));
        assert!(matches!(&each[2], TxnOutcome::Retry { code, .. } if code == "not_leader"));
        assert_eq!(each[3], TxnOutcome::Committed { lsn: Lsn(5) });
        assert!(matches!(
            classify_batch(text, 5),
            BatchOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_batch("{}", 1),
            BatchOutcome::Retry { .. }
        ));
    }
}
