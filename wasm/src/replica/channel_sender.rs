//! Pending writes over the write channel, `GET /v1/write` (docs/HTTP_API.md): one WebSocket
//! to the leader that carries a whole batch of queued writes as lists of transactions, several
//! lists in flight without waiting between them, each list answered by one message, in order.
//! HTTP (`POST /v1/txns`, [`FetchSender`]) stays the fallback.
//!
//! ```text
//!  send_batch(writes) ──► channel allowed? ── no (forced HTTP, or refused lately) ──► FetchSender
//!        │ yes
//!        ▼
//!  the open channel to the write target, or open one ── upgrade failed ──► GET /v1/write asks why:
//!        │            404/405 (no such route): HTTP for HTTP_FALLBACK_MS
//!        │            503 not_leader + leader_url: open it there
//!        │            426 (the route is there and leads: a proxy drops upgrades):
//!        │                HTTP for HTTP_FALLBACK_MS
//!        │            anything else: this batch over HTTP
//!        ▼
//!  send {"req", "txns": [≤ LIST_TXNS_MAX writes, ≤ LIST_BYTES_MAX]} after {"req", "txns"} …
//!  (≤ IN_FLIGHT_BYTES_MAX unanswered bytes), read the answers {"req", "results"} in order,
//!  one result per write: 2xx/duplicate ─► Committed, 4xx ─► Rejected, 5xx ─► Retry
//!        │
//!  closed or silent for WRITE_TIMEOUT_MS ──► the answered lists are settled, the rest stays
//!  queued and is resent in order on a new channel (each write's origin makes it commit once):
//!  at once if some were answered or the connection broke before any answer (once), else
//!  after the writer's backoff
//! ```
//!
//! A list costs the browser one `send` and one incoming message whatever its length (tens of
//! microseconds each in Chromium), where a message per write made the channel slower than
//! HTTP batches. A server that refuses a list as a whole (a `4xx` answer without `results`:
//! one that predates lists reads it as a transaction without `ops`) wrote none of it; the
//! sender then sends one transaction per message, as the channel always allowed.
//!
//! The channel is taken out of the sender while a batch is on it and put back only when every
//! message sent was answered, so a batch abandoned half way (the replica closed) drops its
//! channel rather than leave answers for the next batch to misread. A closed channel is
//! reopened lazily, on the next batch.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use cstore_core::Txn;
use futures::future::{Either, select};
use serde_json::Value;

use super::sender::{
    BATCH_WRITES_MAX, BatchOutcome, FetchSender, TxnOutcome, TxnSender, WRITE_TIMEOUT_MS,
    classify_body, txn_body,
};
use crate::time::{precise_ms, sleep};
use crate::transport::http::request;
use crate::transport::write_channel::{WRITE_CHANNEL_PATH, WriteChannel, write_channel_url};

/// How long the writes go over HTTP after a server refused the channel for a reason that
/// will not pass by itself soon (an older server without the route, an upgrade blocked on
/// the way).
pub const HTTP_FALLBACK_MS: f64 = 60_000.0;
/// Most bytes of transactions sent on the channel and not yet answered: past it the sender
/// waits for answers before it sends more (at least one is always in flight).
pub const IN_FLIGHT_BYTES_MAX: usize = 4 << 20;
/// A channel idle longer than this is closed and a new one opened for the next batch: a
/// connection that died silently meanwhile (a laptop lid, a proxy's idle cut) would
/// otherwise cost a whole [`WRITE_TIMEOUT_MS`] before its writes are resent.
pub const IDLE_REOPEN_MS: f64 = 20_000.0;
/// Most writes sent on the channel as one batch, in lists of [`LIST_TXNS_MAX`]. The writer
/// settles a batch (one IndexedDB step) before it sends the next, and the channel idles
/// meanwhile: large batches keep those pauses few (half of the replica's pending bound, so a
/// full queue drains in two). The unanswered bytes stay bounded by [`IN_FLIGHT_BYTES_MAX`]
/// whatever the batch.
pub const CHANNEL_BATCH_MAX: usize = 5_000;
/// Most writes in one message (the server takes lists of up to 1,000, and commits up to
/// 1,000 transactions that have arrived as one batch: four lists fill one).
pub const LIST_TXNS_MAX: usize = 250;
/// Most bytes of one message, unless its one write is larger: far below the server's message
/// bound (`--txn-body-max-bytes`, 32 MiB by default), and far above the size at which the
/// per-message cost stops mattering.
pub const LIST_BYTES_MAX: usize = 256 << 10;
/// The code of a channel given up because the server refused a list as a whole.
const LIST_REFUSED: &str = "list_refused";
/// Longest wait for the answer to `GET /v1/write` that asks why an upgrade failed.
const DIAGNOSE_TIMEOUT_MS: u64 = 5_000;

/// How the replica sends its pending writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// The write channel, with HTTP as the fallback (the default).
    #[default]
    Channel,
    /// `POST /v1/txns` only.
    Http,
}

impl WriteMode {
    /// The mode named by the `writeChannel` option (`"websocket"` or `"http"`).
    pub fn parse(name: &str) -> Option<WriteMode> {
        match name {
            "websocket" => Some(WriteMode::Channel),
            "http" => Some(WriteMode::Http),
            _ => None,
        }
    }
}

/// What the sender did, for tests and measurements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Channels opened.
    pub opened: u64,
    /// Upgrades that failed.
    pub refused: u64,
    /// Writes answered over a channel.
    pub channel_writes: u64,
    /// Messages sent on channels (a list of writes each, or one write after a server refused
    /// a list).
    pub channel_messages: u64,
    /// Batches sent over HTTP instead.
    pub http_batches: u64,
    /// Channels that closed (or went silent) with writes unanswered.
    pub lost: u64,
    /// Answers that a write had committed before (a resend): `"duplicate": true` or
    /// `duplicate_origin`.
    pub duplicates: u64,
}

/// Why a channel could not be opened. A browser learns nothing from a failed upgrade, so the
/// sender asks with a plain `GET /v1/write`: the server checks everything it can refuse (the
/// token, its role) before it looks for an upgrade, so the answer says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another server leads: open the channel there.
    Leader(String),
    /// No channel here for a while: [`HTTP_FALLBACK_MS`] over HTTP.
    ForAWhile,
    /// Send this batch over HTTP and try the channel again next time.
    ThisBatch,
}

impl Refusal {
    /// Sorts the answer to `GET /v1/write` (`None`: no answer at all) of the server at `base`.
    pub fn of_answer(base: &str, answer: Option<(u16, &str)>) -> Refusal {
        let Some((code, text)) = answer else {
            return Refusal::ThisBatch;
        };
        match code {
            // No such route (an older server), or a route there that leads and accepts this
            // client, so something on the way (a proxy) passes no upgrades.
            404 | 405 | 426 => Refusal::ForAWhile,
            503 => {
                let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                match body["error"]["leader_url"].as_str() {
                    Some(url) if body["error"]["code"] == "not_leader" => {
                        let same = url
                            .trim_end_matches('/')
                            .eq_ignore_ascii_case(base.trim_end_matches('/'));
                        if same {
                            Refusal::ThisBatch
                        } else {
                            Refusal::Leader(url.to_owned())
                        }
                    }
                    _ => Refusal::ThisBatch,
                }
            }
            _ => Refusal::ThisBatch,
        }
    }
}

/// What one answer of the channel says about the writes of its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// One outcome per write, in order, each with whether it was a duplicate (its write had
    /// committed before: `"duplicate": true`, or `duplicate_origin` from an older server).
    Each(Vec<(TxnOutcome, bool)>),
    /// The server refused the list as a whole and wrote none of it (its code and message).
    ListRefused(String, String),
}

/// Sorts the answer `text` to the message with request tag `expected_req` that carried `count`
/// writes, as a list (`list`) or alone. `Err` when it is not JSON, its `req` is not the one
/// expected (`"req": null` answers a message the server could not read, in order like any
/// other), or a list's answer holds another number of results.
pub fn classify_answer(
    text: &str,
    expected_req: u64,
    count: usize,
    list: bool,
) -> Result<Answer, String> {
    let body: Value =
        serde_json::from_str(text).map_err(|e| format!("an answer that is not JSON: {e}"))?;
    match &body["req"] {
        Value::Null => {}
        req if req.as_u64() == Some(expected_req) => {}
        req => {
            return Err(format!(
                "the answer to req {req} came where {expected_req} was due"
            ));
        }
    }
    if !list {
        assert_eq!(count, 1, "a message without a list carries one write");
        return Ok(Answer::Each(vec![classify_result(&body)]));
    }
    match body.get("results").and_then(Value::as_array) {
        Some(results) if results.len() == count => {
            Ok(Answer::Each(results.iter().map(classify_result).collect()))
        }
        Some(results) => Err(format!(
            "{} results for a list of {count} writes",
            results.len()
        )),
        None => match classify_result(&body).0 {
            TxnOutcome::Rejected { code, message } => Ok(Answer::ListRefused(code, message)),
            other => Err(format!("a list answered without results: {other:?}")),
        },
    }
}

/// The outcome of one result (a single write's answer, or one of a list's `results`), and
/// whether it was a duplicate.
fn classify_result(result: &Value) -> (TxnOutcome, bool) {
    let status = result["status"].as_u64().map_or(200, |s| s as u16);
    let outcome = classify_body(status, result);
    let duplicate = match &outcome {
        TxnOutcome::Committed { .. } => result["duplicate"] == true,
        TxnOutcome::Rejected { code, .. } => code == "duplicate_origin",
        TxnOutcome::Retry { .. } => false,
    };
    (outcome, duplicate)
}

/// One message on the channel, sent and not answered yet.
#[derive(Debug)]
struct Sent {
    req: u64,
    /// Writes it carries, and whether as a list.
    count: usize,
    list: bool,
    bytes: usize,
}

/// The text of the message with tag `req` that carries `bodies` (transaction bodies, already
/// text): a list, or the one body alone.
fn message_text(req: u64, bodies: &[String], list: bool) -> String {
    if !list {
        assert_eq!(
            bodies.len(),
            1,
            "a message without a list carries one write"
        );
        // A body is a non-empty JSON object, `{"ops": …}`: the tag goes first.
        let rest = bodies[0]
            .strip_prefix('{')
            .expect("a transaction body is an object");
        return format!("{{\"req\":{req},{rest}");
    }
    let length = bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 32;
    let mut text = String::with_capacity(length);
    text.push_str("{\"req\":");
    text.push_str(&req.to_string());
    text.push_str(",\"txns\":[");
    for (i, body) in bodies.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(body);
    }
    text.push_str("]}");
    text
}

/// An open channel and where it goes.
#[derive(Debug)]
struct Open {
    channel: WriteChannel,
    /// The member's index (`None`: a fixed server) and HTTP base.
    member: Option<usize>,
    base: String,
    /// `precise_ms()` when its last batch ended.
    idle_since_ms: f64,
}

/// Sends pending writes over the write channel, or over HTTP (see the module docs).
#[derive(Clone, Debug)]
pub struct ChannelSender {
    http: FetchSender,
    token: Option<String>,
    mode: WriteMode,
    list_txns_max: usize,
    state: Rc<State>,
}

#[derive(Debug, Default)]
struct State {
    open: RefCell<Option<Open>>,
    /// `precise_ms()` until which writes go over HTTP.
    http_until_ms: Cell<f64>,
    next_req: Cell<u64>,
    /// A server refused a list as a whole: one write per message from then on.
    singles: Cell<bool>,
    stats: RefCell<ChannelStats>,
}

impl ChannelSender {
    /// A sender over `http`'s targets (one server or the members), in `mode`.
    pub fn new(http: FetchSender, token: Option<&str>, mode: WriteMode) -> ChannelSender {
        ChannelSender {
            http,
            token: token.map(str::to_owned),
            mode,
            list_txns_max: LIST_TXNS_MAX,
            state: Rc::default(),
        }
    }

    /// The same sender with at most `writes` writes per message (1 to [`LIST_TXNS_MAX`]):
    /// tests use short lists to cut a channel between them.
    pub fn with_list_txns_max(mut self, writes: usize) -> ChannelSender {
        assert!(
            (1..=LIST_TXNS_MAX).contains(&writes),
            "lists of 1 to {LIST_TXNS_MAX} writes, not {writes}"
        );
        self.list_txns_max = writes;
        self
    }

    /// The HTTP sender underneath (for read indexes).
    pub fn http(&self) -> &FetchSender {
        &self.http
    }

    /// What it did so far.
    pub fn stats(&self) -> ChannelStats {
        self.state.stats.borrow().clone()
    }

    /// Whether the next batch may use the channel.
    fn channel_allowed(&self) -> bool {
        self.mode == WriteMode::Channel && precise_ms() >= self.state.http_until_ms.get()
    }

    async fn over_http(&self, client: &str, writes: &[(u64, Txn)]) -> BatchOutcome {
        self.state.stats.borrow_mut().http_batches += 1;
        self.http.send_batch(client, writes).await
    }

    /// The open channel to the write target, or a new one; `Err` says what to do instead.
    async fn take_or_open(&self) -> Result<Open, Option<BatchOutcome>> {
        let Some((member, base)) = self.http.target() else {
            return Err(Some(BatchOutcome::Retry {
                code: "wrong_cluster".into(),
                message: "no usable server to write to".into(),
            }));
        };
        if let Some(open) = self.state.open.borrow_mut().take()
            && open.base == base
            && open.channel.is_open()
            && precise_ms() - open.idle_since_ms < IDLE_REOPEN_MS
        {
            return Ok(open);
        }
        // A refusal that names the leader is followed once; the HTTP sender follows further.
        let mut target = (member, base);
        for _ in 0..2 {
            let (member, base) = target;
            let url = write_channel_url(&base, self.token.as_deref()).ok_or(None)?;
            match WriteChannel::open(&url).await {
                Ok(channel) => {
                    self.state.stats.borrow_mut().opened += 1;
                    return Ok(Open {
                        channel,
                        member,
                        base,
                        idle_since_ms: 0.0,
                    });
                }
                Err(_) => self.state.stats.borrow_mut().refused += 1,
            }
            match self.diagnose(&base).await {
                Refusal::Leader(leader) => {
                    self.http.moved_to_leader(member, &leader);
                    match self.http.target() {
                        Some((next, next_base)) if next_base.trim_end_matches('/') != base => {
                            target = (next, next_base);
                        }
                        // Not one of the members (or one fixed server, a read replica
                        // say): HTTP, which such a server forwards, for a while.
                        _ => {
                            self.state
                                .http_until_ms
                                .set(precise_ms() + HTTP_FALLBACK_MS);
                            return Err(None);
                        }
                    }
                }
                Refusal::ForAWhile => {
                    self.state
                        .http_until_ms
                        .set(precise_ms() + HTTP_FALLBACK_MS);
                    return Err(None);
                }
                Refusal::ThisBatch => return Err(None),
            }
        }
        Err(None)
    }

    /// Asks the server at `base` why the upgrade failed (see [`Refusal`]).
    async fn diagnose(&self, base: &str) -> Refusal {
        let url = format!("{base}{WRITE_CHANNEL_PATH}");
        let answer = request(
            "GET",
            &url,
            self.token.as_deref(),
            None,
            DIAGNOSE_TIMEOUT_MS,
        )
        .await
        .ok();
        Refusal::of_answer(base, answer.as_ref().map(|a| (a.status, a.text.as_str())))
    }

    /// Sends `writes` on `open` and reads their answers; the outcomes of the answered prefix,
    /// the channel if it is still fit for the next batch, and why it was given up if it was.
    async fn pipeline(
        &self,
        mut open: Open,
        client: &str,
        writes: &[(u64, Txn)],
    ) -> (Vec<TxnOutcome>, Option<Open>, Option<(String, String)>) {
        let list = !self.state.singles.get();
        let list_txns_max = if list { self.list_txns_max } else { 1 };
        let mut outcomes = Vec::with_capacity(writes.len());
        // The messages sent and not answered yet, oldest first.
        let mut in_flight: VecDeque<Sent> = VecDeque::new();
        let mut in_flight_bytes = 0;
        let mut sent = 0;
        let mut timer = Box::pin(sleep(WRITE_TIMEOUT_MS));
        let mut answered_by_timer = 0;
        let lost = loop {
            while sent < writes.len()
                && (in_flight.is_empty() || in_flight_bytes < IN_FLIGHT_BYTES_MAX)
            {
                // The next writes that fit in one message (always at least one).
                let mut bodies = Vec::new();
                let mut bytes = 0;
                for (seq, txn) in &writes[sent..] {
                    let body = txn_body(client, *seq, txn).to_string();
                    if !bodies.is_empty() && bytes + body.len() > LIST_BYTES_MAX {
                        break;
                    }
                    bytes += body.len() + 1;
                    bodies.push(body);
                    if bodies.len() == list_txns_max {
                        break;
                    }
                }
                let req = self.state.next_req.get();
                self.state.next_req.set(req + 1);
                let text = message_text(req, &bodies, list);
                if open.channel.send(&text).is_err() {
                    // Read the answers to what went out; the rest stays queued.
                    break;
                }
                self.state.stats.borrow_mut().channel_messages += 1;
                in_flight.push_back(Sent {
                    req,
                    count: bodies.len(),
                    list,
                    bytes: text.len(),
                });
                in_flight_bytes += text.len();
                sent += bodies.len();
            }
            if outcomes.len() == writes.len() {
                break None;
            }
            let Some(due) = in_flight.front() else {
                break Some(("send_failed".to_owned(), "nothing could be sent".to_owned()));
            };
            // One timer for the whole batch: it gives up only after a full period in which
            // no answer came (a timer per answer costs more than the answer).
            let answer = loop {
                match select(Box::pin(open.channel.next()), timer.as_mut()).await {
                    Either::Left((answer, _)) => break answer,
                    Either::Right(((), _)) if outcomes.len() > answered_by_timer => {
                        answered_by_timer = outcomes.len();
                        timer = Box::pin(sleep(WRITE_TIMEOUT_MS));
                    }
                    Either::Right(((), _)) => {
                        break Err((
                            "timeout".to_owned(),
                            format!("no answer on the write channel in {WRITE_TIMEOUT_MS} ms"),
                        ));
                    }
                }
            };
            let text = match answer {
                Ok(text) => text,
                Err(closed) => break Some(closed),
            };
            let each = match classify_answer(&text, due.req, due.count, due.list) {
                Ok(Answer::Each(each)) => each,
                Ok(Answer::ListRefused(code, message)) => {
                    // Nothing of it was written, and a list sent after it may be refused or
                    // not: this channel is given up, and the rest goes one write per message.
                    self.state.singles.set(true);
                    break Some((
                        LIST_REFUSED.to_owned(),
                        format!("the server refused a list of writes: {code}: {message}"),
                    ));
                }
                Err(message) => break Some(("bad_response".to_owned(), message)),
            };
            let mut told_failure = false;
            for (outcome, duplicate) in each {
                if duplicate {
                    self.state.stats.borrow_mut().duplicates += 1;
                }
                if let TxnOutcome::Retry { .. } = &outcome
                    && !told_failure
                {
                    // The first such result says where the leader is, if it knows.
                    told_failure = true;
                    self.http
                        .answered_error_text(open.member, &first_retry_text(&text, due.list));
                }
                outcomes.push(outcome);
            }
            let due = in_flight.pop_front().expect("the answer to a message sent");
            in_flight_bytes -= due.bytes;
        };
        self.state.stats.borrow_mut().channel_writes += outcomes.len() as u64;
        match lost {
            None if open.channel.is_open() => {
                open.idle_since_ms = precise_ms();
                (outcomes, Some(open), None)
            }
            None => (outcomes, None, None),
            Some(why) => {
                self.state.stats.borrow_mut().lost += 1;
                if why.0 == "body_too_large" {
                    // HTTP answers such a write with its own precise error.
                    self.state
                        .http_until_ms
                        .set(precise_ms() + HTTP_FALLBACK_MS);
                }
                open.channel.close(&why.0);
                (outcomes, None, Some(why))
            }
        }
    }
}

/// The text of the first retryable result of an answer (the answer itself for one write).
fn first_retry_text(text: &str, list: bool) -> String {
    if !list {
        return text.to_owned();
    }
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    body["results"]
        .as_array()
        .and_then(|results| {
            results
                .iter()
                .find(|r| matches!(classify_result(r).0, TxnOutcome::Retry { .. }))
        })
        .map_or_else(String::new, Value::to_string)
}

impl TxnSender for ChannelSender {
    fn batch_max(&self) -> usize {
        if self.channel_allowed() {
            CHANNEL_BATCH_MAX
        } else {
            BATCH_WRITES_MAX
        }
    }

    async fn send(&self, client: &str, seq: u64, txn: &Txn) -> TxnOutcome {
        match self.send_batch(client, &[(seq, txn.clone())]).await {
            BatchOutcome::Each(mut each) if !each.is_empty() => each.swap_remove(0),
            BatchOutcome::Each(_) => unreachable!("a batch of one answers one"),
            BatchOutcome::Retry { code, message } => TxnOutcome::Retry { code, message },
        }
    }

    async fn send_batch(&self, client: &str, writes: &[(u64, Txn)]) -> BatchOutcome {
        if writes.is_empty() {
            return BatchOutcome::Each(Vec::new());
        }
        // One more round at once, on a new channel, when the first ended without an answer
        // because the server refused a list as a whole (the batch goes again one write per
        // message) or the connection broke (a stale one: the writer's backoff is for a server
        // that keeps failing, and every write has an origin, so one the server did read
        // commits once).
        let mut again = true;
        loop {
            if !self.channel_allowed() {
                return self.over_http(client, writes).await;
            }
            let open = match self.take_or_open().await {
                Ok(open) => open,
                Err(Some(outcome)) => return outcome,
                Err(None) => return self.over_http(client, writes).await,
            };
            let member = open.member;
            let (outcomes, open, lost) = self.pipeline(open, client, writes).await;
            *self.state.open.borrow_mut() = open;
            match lost {
                Some((code, _))
                    if outcomes.is_empty()
                        && again
                        && matches!(
                            code.as_str(),
                            LIST_REFUSED | "connection_closed" | "connection_error"
                        ) =>
                {
                    again = false;
                }
                Some((code, message)) if outcomes.is_empty() => {
                    self.http.failed(member);
                    return BatchOutcome::Retry { code, message };
                }
                _ => return BatchOutcome::Each(outcomes),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::Lsn;

    fn each(text: &str, req: u64, count: usize) -> Vec<(TxnOutcome, bool)> {
        match classify_answer(text, req, count, true) {
            Ok(Answer::Each(each)) => each,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn a_lists_answer_sorts_into_one_outcome_per_write() {
        let answer = r#"{"req":3,"results":[
            {"lsn":9,"ids":["a"]},
            {"lsn":7,"ids":["b"],"duplicate":true},
            {"status":409,"error":{"code":"already_exists","message":"x"}},
            {"status":409,"error":{"code":"duplicate_origin","message":"x"}},
            {"status":503,"error":{"code":"not_leader","message":"x","leader_url":"http://h2"}}
        ]}"#;
        let each = each(answer, 3, 5);
        assert_eq!(each[0], (TxnOutcome::Committed { lsn: Lsn(9) }, false));
        assert_eq!(each[1], (TxnOutcome::Committed { lsn: Lsn(7) }, true));
        assert!(
            matches!(&each[2], (TxnOutcome::Rejected { code, .. }, false) if code == "already_exists")
        );
        assert!(matches!(&each[3], (TxnOutcome::Rejected { .. }, true)));
        assert!(
            matches!(&each[4], (TxnOutcome::Retry { code, .. }, false) if code == "not_leader")
        );
        assert_eq!(
            first_retry_text(answer, true),
            r#"{"error":{"code":"not_leader","leader_url":"http://h2","message":"x"},"status":503}"#
        );
        // The answer of another message, or with a result too few or too many, is a broken
        // channel: nothing of it is taken as an outcome.
        assert!(classify_answer(answer, 4, 5, true).is_err());
        assert!(classify_answer(answer, 3, 4, true).is_err());
        assert!(classify_answer(answer, 3, 6, true).is_err());
        assert!(classify_answer("not json", 3, 5, true).is_err());
    }

    #[test]
    fn a_list_refused_as_a_whole_wrote_nothing() {
        // As the server answers a list it cannot take, and as one that predates lists answers
        // a message without "ops".
        let refused = r#"{"req":5,"status":400,"error":{"code":"invalid_txn","message":"no ops"}}"#;
        assert_eq!(
            classify_answer(refused, 5, 10, true),
            Ok(Answer::ListRefused("invalid_txn".into(), "no ops".into()))
        );
        let unreadable =
            r#"{"req":null,"status":400,"error":{"code":"invalid_json","message":"x"}}"#;
        assert!(matches!(
            classify_answer(unreadable, 6, 10, true),
            Ok(Answer::ListRefused(code, _)) if code == "invalid_json"
        ));
        // A whole answer that is not a refusal is not understood.
        assert!(classify_answer(r#"{"req":7,"lsn":1,"ids":[]}"#, 7, 2, true).is_err());
    }

    #[test]
    fn single_answers_sort_as_before() {
        let one = |text: &str, req| match classify_answer(text, req, 1, false) {
            Ok(Answer::Each(mut each)) if each.len() == 1 => Ok(each.remove(0)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(
            one(r#"{"req":4,"lsn":9,"ids":["a"],"duplicate":true}"#, 4),
            Ok((TxnOutcome::Committed { lsn: Lsn(9) }, true))
        );
        let refused = r#"{"req":5,"status":409,"error":{"code":"already_exists","message":"x"}}"#;
        assert!(matches!(
            one(refused, 5),
            Ok((TxnOutcome::Rejected { code, .. }, false)) if code == "already_exists"
        ));
        assert!(one(r#"{"req":8,"lsn":1}"#, 7).is_err());
    }

    #[test]
    fn messages_carry_a_list_or_one_write_with_the_tag() {
        let bodies = vec![r#"{"ops":[1]}"#.to_owned(), r#"{"ops":[2]}"#.to_owned()];
        let list = message_text(12, &bodies, true);
        assert_eq!(list, r#"{"req":12,"txns":[{"ops":[1]},{"ops":[2]}]}"#);
        let parsed: Value = serde_json::from_str(&list).unwrap();
        assert_eq!(parsed["txns"].as_array().unwrap().len(), 2);
        let single = message_text(13, &bodies[..1], false);
        assert_eq!(single, r#"{"req":13,"ops":[1]}"#);
    }

    #[test]
    fn a_refused_upgrade_is_sorted_by_the_plain_answer() {
        let base = "http://h1:7070";
        let sort = |answer| Refusal::of_answer(base, answer);
        assert_eq!(sort(None), Refusal::ThisBatch);
        let missing = r#"{"error":{"code":"not_found"}}"#;
        assert_eq!(sort(Some((404, missing))), Refusal::ForAWhile);
        assert_eq!(sort(Some((405, ""))), Refusal::ForAWhile);
        // The route is there and this server leads: the upgrade was lost on the way.
        assert_eq!(sort(Some((426, ""))), Refusal::ForAWhile);
        let not_leader =
            r#"{"error":{"code":"not_leader","message":"m","leader_url":"http://h2:7070"}}"#;
        assert_eq!(
            sort(Some((503, not_leader))),
            Refusal::Leader("http://h2:7070".into())
        );
        let itself =
            r#"{"error":{"code":"not_leader","message":"m","leader_url":"http://H1:7070/"}}"#;
        assert_eq!(sort(Some((503, itself))), Refusal::ThisBatch);
        let election = r#"{"error":{"code":"not_leader","message":"m","leader_url":null}}"#;
        assert_eq!(sort(Some((503, election))), Refusal::ThisBatch);
        assert_eq!(sort(Some((401, "{}"))), Refusal::ThisBatch);
    }

    #[test]
    fn the_option_names_the_mode() {
        assert_eq!(WriteMode::parse("websocket"), Some(WriteMode::Channel));
        assert_eq!(WriteMode::parse("http"), Some(WriteMode::Http));
        assert_eq!(WriteMode::parse("ws"), None);
        assert_eq!(WriteMode::default(), WriteMode::Channel);
    }
}
