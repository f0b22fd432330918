//! Pending writes over the write channel, `GET /v1/write` (docs/HTTP_API.md): one WebSocket
//! to the leader that carries a whole batch of queued writes without waiting between them,
//! answered one by one, in order. HTTP (`POST /v1/txns`, [`FetchSender`]) stays the fallback.
//!
//! ```text
//!  send_batch(writes) ──► channel allowed? ── no (forced HTTP, or refused lately) ──► FetchSender
//!        │ yes
//!        ▼
//!  the open channel to the write target, or open one ── upgrade failed ──► GET /v1/write asks why:
//!        │            404/405 (no such route): HTTP for HTTP_FALLBACK_MS
//!        │            426 (route there): /v1/status names another leader? open it there,
//!        │                               else HTTP for HTTP_FALLBACK_MS
//!        │            503 not_leader + leader_url: open it there
//!        │            anything else: this batch over HTTP
//!        ▼
//!  send {"req", "ops", "origin"} for each write (≤ IN_FLIGHT_BYTES_MAX unanswered bytes),
//!  read the answers in order: 2xx/duplicate ─► Committed, 4xx ─► Rejected, 5xx ─► Retry
//!        │
//!  closed or silent for WRITE_TIMEOUT_MS ──► the answered prefix is settled, the rest stays
//!  queued and is resent in order on a new channel (each write's origin makes it commit once)
//! ```
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
/// Most writes sent on the channel as one batch (the server commits up to 1,000 that have
/// arrived at once).
pub const CHANNEL_BATCH_MAX: usize = 2_000;
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
    /// Batches sent over HTTP instead.
    pub http_batches: u64,
    /// Channels that closed (or went silent) with writes unanswered.
    pub lost: u64,
    /// Answers that a write had committed before (a resend): `"duplicate": true` or
    /// `duplicate_origin`.
    pub duplicates: u64,
}

/// Why a channel could not be opened. A browser learns nothing from a failed upgrade, so the
/// sender asks with a plain `GET /v1/write`, and when that shows the route exists (`426`:
/// "not a WebSocket request", checked before the server looks at its role) the member's
/// `/v1/status` says whether another member leads.
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
    /// Sorts the answer to `GET /v1/write` (`None`: no answer at all) of the server at
    /// `base`, with its `/v1/status` body when it was asked (after a `426`).
    pub fn of_answers(base: &str, answer: Option<(u16, &str)>, status: Option<&Value>) -> Refusal {
        let Some((code, text)) = answer else {
            return Refusal::ThisBatch;
        };
        let other_leader = |url: &str| {
            let same = url
                .trim_end_matches('/')
                .eq_ignore_ascii_case(base.trim_end_matches('/'));
            (!same).then(|| Refusal::Leader(url.to_owned()))
        };
        match code {
            // No such route: an older server.
            404 | 405 => Refusal::ForAWhile,
            // The route is there, so the upgrade was refused for the server's role, or by
            // something on the way (a proxy that passes no upgrades).
            426 => status
                .and_then(|s| s["leader_url"].as_str())
                .and_then(other_leader)
                .unwrap_or(Refusal::ForAWhile),
            503 => {
                let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                match body["error"]["leader_url"].as_str() {
                    Some(url) if body["error"]["code"] == "not_leader" => {
                        other_leader(url).unwrap_or(Refusal::ThisBatch)
                    }
                    _ => Refusal::ThisBatch,
                }
            }
            _ => Refusal::ThisBatch,
        }
    }
}

/// The outcome of one answer of the channel, and whether it was a duplicate (its write had
/// committed before: `"duplicate": true`, or `duplicate_origin` for an older one); `Err` when
/// it is not JSON or its `req` is not the one expected (`"req": null` answers a message the
/// server could not read, in order like any other).
pub fn classify_answer(text: &str, expected_req: u64) -> Result<(TxnOutcome, bool), String> {
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
    let status = body["status"].as_u64().map_or(200, |s| s as u16);
    let outcome = classify_body(status, &body);
    let duplicate = match &outcome {
        TxnOutcome::Committed { .. } => body["duplicate"] == true,
        TxnOutcome::Rejected { code, .. } => code == "duplicate_origin",
        TxnOutcome::Retry { .. } => false,
    };
    Ok((outcome, duplicate))
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
    state: Rc<State>,
}

#[derive(Debug, Default)]
struct State {
    open: RefCell<Option<Open>>,
    /// `precise_ms()` until which writes go over HTTP.
    http_until_ms: Cell<f64>,
    next_req: Cell<u64>,
    stats: RefCell<ChannelStats>,
}

impl ChannelSender {
    /// A sender over `http`'s targets (one server or the members), in `mode`.
    pub fn new(http: FetchSender, token: Option<&str>, mode: WriteMode) -> ChannelSender {
        ChannelSender {
            http,
            token: token.map(str::to_owned),
            mode,
            state: Rc::default(),
        }
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
        let token = self.token.as_deref();
        let url = format!("{base}{WRITE_CHANNEL_PATH}");
        let answer = request("GET", &url, token, None, DIAGNOSE_TIMEOUT_MS)
            .await
            .ok();
        let mut status = None;
        if answer.as_ref().is_some_and(|a| a.status == 426) {
            let url = format!("{base}/v1/status");
            if let Ok(answer) = request("GET", &url, token, None, DIAGNOSE_TIMEOUT_MS).await
                && answer.status == 200
            {
                status = serde_json::from_str::<Value>(&answer.text).ok();
            }
        }
        let answer = answer.as_ref().map(|a| (a.status, a.text.as_str()));
        Refusal::of_answers(base, answer, status.as_ref())
    }

    /// Sends `writes` on `open` and reads their answers; the outcomes of the answered prefix,
    /// and the channel if it is still fit for the next batch.
    async fn pipeline(
        &self,
        mut open: Open,
        client: &str,
        writes: &[(u64, Txn)],
    ) -> (Vec<TxnOutcome>, Option<Open>, Option<(String, String)>) {
        let first_req = self.state.next_req.get();
        self.state.next_req.set(first_req + writes.len() as u64);
        let mut outcomes = Vec::with_capacity(writes.len());
        // The sizes of the messages sent and not answered yet, oldest first.
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let mut in_flight_bytes = 0;
        let mut sent = 0;
        let mut timer = Box::pin(sleep(WRITE_TIMEOUT_MS));
        let mut answered_by_timer = 0;
        let lost = loop {
            while sent < writes.len()
                && (in_flight.is_empty() || in_flight_bytes < IN_FLIGHT_BYTES_MAX)
            {
                let (seq, txn) = &writes[sent];
                let mut body = txn_body(client, *seq, txn);
                body["req"] = Value::from(first_req + sent as u64);
                let text = body.to_string();
                if open.channel.send(&text).is_err() {
                    // Read the answers to what went out; the rest stays queued.
                    break;
                }
                in_flight.push_back(text.len());
                in_flight_bytes += text.len();
                sent += 1;
            }
            if outcomes.len() == writes.len() {
                break None;
            }
            if in_flight.is_empty() {
                break Some(("send_failed".to_owned(), "nothing could be sent".to_owned()));
            }
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
            let expected = first_req + outcomes.len() as u64;
            let (outcome, duplicate) = match classify_answer(&text, expected) {
                Ok(sorted) => sorted,
                Err(message) => break Some(("bad_response".to_owned(), message)),
            };
            if duplicate {
                self.state.stats.borrow_mut().duplicates += 1;
            }
            if matches!(outcome, TxnOutcome::Retry { .. }) {
                self.http.answered_error_text(open.member, &text);
            }
            outcomes.push(outcome);
            in_flight_bytes -= in_flight.pop_front().expect("an answer to a message sent");
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
            Some((code, message)) if outcomes.is_empty() => {
                self.http.failed(member);
                BatchOutcome::Retry { code, message }
            }
            _ => BatchOutcome::Each(outcomes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::Lsn;
    use serde_json::json;

    #[test]
    fn answers_sort_into_outcomes_and_must_come_in_order() {
        assert_eq!(
            classify_answer(r#"{"req":3,"lsn":9,"ids":["a"]}"#, 3),
            Ok((TxnOutcome::Committed { lsn: Lsn(9) }, false))
        );
        assert_eq!(
            classify_answer(r#"{"req":4,"lsn":9,"ids":["a"],"duplicate":true}"#, 4),
            Ok((TxnOutcome::Committed { lsn: Lsn(9) }, true))
        );
        let older = r#"{"req":9,"status":409,"error":{"code":"duplicate_origin","message":"x"}}"#;
        assert!(matches!(
            classify_answer(older, 9),
            Ok((TxnOutcome::Rejected { .. }, true))
        ));
        let refused = r#"{"req":5,"status":409,"error":{"code":"already_exists","message":"x"}}"#;
        assert!(matches!(
            classify_answer(refused, 5),
            Ok((TxnOutcome::Rejected { code, .. }, false)) if code == "already_exists"
        ));
        let passing = r#"{"req":6,"status":503,"error":{"code":"not_leader","message":"x"}}"#;
        assert!(matches!(
            classify_answer(passing, 6),
            Ok((TxnOutcome::Retry { code, .. }, false)) if code == "not_leader"
        ));
        let unreadable =
            r#"{"req":null,"status":400,"error":{"code":"invalid_json","message":"x"}}"#;
        assert!(matches!(
            classify_answer(unreadable, 7),
            Ok((TxnOutcome::Rejected { .. }, false))
        ));
        assert!(classify_answer(r#"{"req":8,"lsn":1}"#, 7).is_err());
        assert!(classify_answer("not json", 7).is_err());
    }

    #[test]
    fn a_refused_upgrade_is_sorted_by_the_plain_answer() {
        let base = "http://h1:7070";
        let sort = |answer, status| Refusal::of_answers(base, answer, status);
        assert_eq!(sort(None, None), Refusal::ThisBatch);
        let missing = r#"{"error":{"code":"not_found"}}"#;
        assert_eq!(sort(Some((404, missing)), None), Refusal::ForAWhile);
        // The route exists: the status says whether another member leads.
        assert_eq!(sort(Some((426, "")), None), Refusal::ForAWhile);
        let follower = json!({"role": "follower", "leader_url": "http://h2:7070"});
        assert_eq!(
            sort(Some((426, "")), Some(&follower)),
            Refusal::Leader("http://h2:7070".into())
        );
        let leader = json!({"role": "leader", "leader_url": "http://H1:7070/"});
        assert_eq!(sort(Some((426, "")), Some(&leader)), Refusal::ForAWhile);
        let single = json!({"role": "leader", "leader_url": null});
        assert_eq!(sort(Some((426, "")), Some(&single)), Refusal::ForAWhile);
        let not_leader =
            r#"{"error":{"code":"not_leader","message":"m","leader_url":"http://h2:7070"}}"#;
        assert_eq!(
            sort(Some((503, not_leader)), None),
            Refusal::Leader("http://h2:7070".into())
        );
        let election = r#"{"error":{"code":"not_leader","message":"m","leader_url":null}}"#;
        assert_eq!(sort(Some((503, election)), None), Refusal::ThisBatch);
        assert_eq!(sort(Some((401, "{}")), None), Refusal::ThisBatch);
    }

    #[test]
    fn the_option_names_the_mode() {
        assert_eq!(WriteMode::parse("websocket"), Some(WriteMode::Channel));
        assert_eq!(WriteMode::parse("http"), Some(WriteMode::Http));
        assert_eq!(WriteMode::parse("ws"), None);
        assert_eq!(WriteMode::default(), WriteMode::Channel);
    }
}
