//! `POST /v1/txn`: several operations, all or nothing; `POST /v1/txns`: several such
//! transactions in one request, each on its own.
//!
//! The body is parsed in two steps: first as JSON (`invalid_json`), then each operation by
//! its `op` tag into a wire type (`invalid_txn` for a wrong shape), then into core's [`Op`]
//! with the same validation as the single-document routes. Every error names the operation
//! it concerns.
//!
//! A body of inserts and puts of canonical documents (what the browser replica and
//! `cstore-load` send) takes a shorter way to the same transactions: the envelope is read
//! with each document left as borrowed text, and each document is proven canonical in one
//! pass and copied as it is ([`RawDoc::from_canonical`]), where the general way builds a tree
//! of the whole body and serializes every document again. Anything that way does not take
//! whole goes the general way, so errors and results are the general way's:
//!
//! ```text
//!  bytes ─► fast_txn ── every op an insert or put of canonical text ──► (Txn, ids)
//!             │ anything else (other ops, whitespace in a document, any error)
//!             └──────► parse_json ─► parse ─► (Txn, ids) or the error
//! ```

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use cstore_core::doc::{RawDoc, ensure_id, validate_collection_name, validate_id};
use cstore_core::index::IndexSpec;
use cstore_core::state::{Rejection, TxnError};
use cstore_core::txn::{CollectionOptions, Origin, TXN_OPS_MAX};
use cstore_core::{ErrorCode, Lsn, Op, Txn};

use super::AppState;
use super::auth::{Authorized, NeedsWrite};
use super::body::{JsonBytes, TXN_BODY_BYTES_MAX, parse_json};
use super::error::ApiError;
use super::params::Ack;
use crate::leader::WriteError;
use crate::node::Node;

/// One operation as clients send it; see docs/HTTP_API.md.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum WireOp {
    Insert {
        collection: String,
        doc: Value,
    },
    Put {
        collection: String,
        doc: Value,
        #[serde(default)]
        if_version: Option<u64>,
    },
    Patch {
        collection: String,
        id: String,
        patch: Value,
        #[serde(default)]
        if_version: Option<u64>,
    },
    Delete {
        collection: String,
        id: String,
        #[serde(default)]
        if_version: Option<u64>,
    },
    CreateCollection {
        collection: String,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    DropCollection {
        collection: String,
    },
    CreateIndex {
        collection: String,
        index: IndexSpec,
    },
    DropIndex {
        collection: String,
        name: String,
    },
    SetTtl {
        collection: String,
        ttl_ms: Option<u64>,
    },
}

/// `POST /v1/txn`: `{"ops":[…], "origin"?: {"client", "seq"}}` → `{"lsn":n,"ids":[…]}` with
/// the `_id` of each insert and put, in order.
///
/// With an `origin` the write commits at most once: a retry of the client's last committed
/// `seq` is answered with that write's LSN and `"duplicate": true` (once it is durable), an
/// older `seq` with `409 duplicate_origin`. The state keeps the record (see core's
/// `txn::Origin`), so this holds across restarts.
pub async fn commit(
    auth: Authorized<NeedsWrite>,
    State(app): State<Arc<AppState>>,
    ack: Ack,
    JsonBytes(body): JsonBytes<TXN_BODY_BYTES_MAX>,
) -> Result<Json<Value>, ApiError> {
    let node = &app.node;
    let (txn, ids) = parse_bytes(&mut || node.generate_id(), &body)?;
    auth.check_collections(txn.ops.iter().map(|op| op.collection()))?;
    // A rejection names its operation in its message (core's `Rejection` does).
    let _held = ack.hold(&app);
    let (lsn, duplicate) = written(node, node.write(txn).await).await?;
    ack.settle(&app, lsn).await?;
    Ok(Json(answer(lsn, ids, duplicate)))
}

/// Most transactions in one `POST /v1/txns`.
pub const TXNS_MAX: usize = 1_000;

/// `POST /v1/txns`: `{"txns": [{"ops":[…], "origin"?}, …]}` → `{"results": [...]}`: several
/// independent transactions in one request, committed in this order, each on its own. Each
/// result is what `POST /v1/txn` would have answered for that transaction alone: its success
/// body, or `{"status": 409, "error": {"code", "message"}}`. What a client with a queue of
/// writes uses (the browser replica drains its offline queue with it): one round trip and
/// shared fsyncs for hundreds of writes instead of one each.
///
/// No transaction commits after one that failed for a passing reason (`5xx`: no leader, no
/// quorum, the server stopping); those after it answer a passing error too. So a client retries,
/// in order, from its first failed write: with origins that stays exactly-once, and a retry is
/// never mistaken for a duplicate of a later write. (An `ack_unknown` write may still commit;
/// one after it commits only if it does.)
pub async fn commit_many(
    auth: Authorized<NeedsWrite>,
    State(app): State<Arc<AppState>>,
    ack: Ack,
    JsonBytes(body): JsonBytes<TXN_BODY_BYTES_MAX>,
) -> Result<Json<Value>, ApiError> {
    let items = parse_many_bytes(&mut || app.node.generate_id(), &body)?;
    let results = commit_each(&app, &auth, &ack, items).await;
    let results: Vec<Value> = results.into_iter().map(result_body).collect();
    Ok(Json(json!({ "results": results })))
}

/// Commits independent transactions in this order, each on its own, sharing the commit
/// batches: the work of `POST /v1/txns` and of each batch of the write channel
/// (`GET /v1/write`). An item that did not parse as a transaction, or names a collection the
/// token may not use, is answered with its error and never written. One result per item, in
/// order; see [`commit_many`] for what happens after a passing failure, and [`result_body`]
/// for the answer of each.
pub(super) async fn commit_each(
    app: &AppState,
    auth: &Authorized<NeedsWrite>,
    ack: &Ack,
    items: Vec<Parsed>,
) -> Vec<Result<Written, ApiError>> {
    let node = &app.node;
    // Parse every transaction first; one that does not parse is answered and never written.
    let mut results: Vec<Result<Written, ApiError>> = Vec::with_capacity(items.len());
    let mut txns = Vec::new();
    let mut pending = Vec::new();
    // What the debug line reports; nothing is kept for it when it is off.
    let trace = tracing::enabled!(tracing::Level::DEBUG);
    let mut origins = Vec::new();
    for item in items {
        // A transaction on a collection the token may not use is answered like one that does
        // not parse: never written.
        let parsed = item.and_then(|(txn, ids)| {
            auth.check_collections(txn.ops.iter().map(|op| op.collection()))?;
            Ok((txn, ids))
        });
        match parsed {
            Ok((txn, ids)) => {
                if trace {
                    origins.push(txn.origin.as_ref().map(|o| (o.client.clone(), o.seq)));
                }
                txns.push(txn);
                pending.push((results.len(), ids));
                results.push(Err(ApiError::Internal("not written".into())));
            }
            Err(error) => {
                if trace {
                    origins.push(None);
                }
                results.push(Err(error));
            }
        }
    }
    if txns.is_empty() {
        return results;
    }
    let _held = ack.hold(app);
    let written_all = node.write_many(txns).await;
    for ((at, ids), result) in pending.into_iter().zip(written_all) {
        results[at] = written(node, result)
            .await
            .map(|(lsn, duplicate)| (lsn, ids, duplicate));
    }
    // The acknowledgement of the newest committed write covers every earlier one.
    let newest = results.iter().flatten().map(|(lsn, _, _)| *lsn).max();
    if let Some(newest) = newest
        && let Err(ApiError::AckUnknown { policy, why, .. }) = ack.settle(app, newest).await
    {
        for result in &mut results {
            if let Ok((lsn, _, _)) = result {
                let lsn = *lsn;
                *result = Err(ApiError::AckUnknown { lsn, policy, why });
            }
        }
    }
    if trace {
        trace_many(&origins, &results);
    }
    results
}

/// The answer for one transaction of `POST /v1/txns` or the write channel: what
/// `POST /v1/txn` would have answered for it alone, its success body or
/// `{"status": 409, "error": {"code", "message"}}`.
pub(super) fn result_body(result: Result<Written, ApiError>) -> Value {
    match result {
        Ok((lsn, ids, duplicate)) => answer(lsn, ids, duplicate),
        Err(error) => json!({"status": error.status().as_u16(), "error": error.body()}),
    }
}

/// A committed transaction's LSN, the ids of its inserts and puts, and whether it repeated an
/// earlier write.
pub(super) type Written = (Lsn, Vec<String>, bool);

/// Logs (at debug) what a `POST /v1/txns` carried and how each transaction ended: the origins'
/// range and every result that was not a plain commit.
fn trace_many(origins: &[Option<(String, u64)>], results: &[Result<Written, ApiError>]) {
    let seqs: Vec<u64> = origins.iter().flatten().map(|(_, seq)| *seq).collect();
    let client = origins.iter().flatten().next().map(|(c, _)| c.as_str());
    let unusual: Vec<String> = origins
        .iter()
        .zip(results)
        .filter_map(|(origin, result)| {
            let seq = origin.as_ref().map_or(0, |(_, seq)| *seq);
            match result {
                Ok((_, _, false)) => None,
                Ok((lsn, _, true)) => Some(format!("{seq}:duplicate@{}", lsn.0)),
                Err(error) => Some(format!("{seq}:{}", error.code())),
            }
        })
        .collect();
    tracing::debug!(
        ?client,
        first_seq = seqs.first(),
        last_seq = seqs.last(),
        count = results.len(),
        in_order = seqs.windows(2).all(|w| w[0] < w[1]),
        ?unusual,
        "POST /v1/txns"
    );
}

/// One transaction of a request as it parsed: the transaction and the ids of its inserts and
/// puts, or why it cannot be written.
pub(super) type Parsed = Result<(Txn, Vec<String>), ApiError>;

/// The `txns` of a `POST /v1/txns` body.
pub(super) fn parse_many(body: Value) -> Result<Vec<Value>, ApiError> {
    let (body, txns) = array_field(body, "txns")?;
    if let Some(key) = body.keys().next() {
        return Err(ApiError::InvalidTxn(format!("unknown field `{key}`")));
    }
    check_count(txns.len(), "txns", TXNS_MAX, "transactions")?;
    Ok(txns)
}

/// Each of already-parsed transactions (a write channel message's) as it parses.
pub(super) fn parse_each(new_id: &mut dyn FnMut() -> String, items: Vec<Value>) -> Vec<Parsed> {
    items.into_iter().map(|item| parse(new_id, item)).collect()
}

/// A `POST /v1/txn` body's transaction: the short way when it takes the whole body, else the
/// general one (see the module docs).
fn parse_bytes(new_id: &mut dyn FnMut() -> String, bytes: &[u8]) -> Parsed {
    if let Some(parsed) = fast_txn(new_id, bytes) {
        return Ok(parsed);
    }
    parse(new_id, parse_json(bytes)?)
}

/// A `POST /v1/txns` body's transactions, each as it parses: the short way when it takes every
/// one of them, else the general one.
fn parse_many_bytes(
    new_id: &mut dyn FnMut() -> String,
    bytes: &[u8],
) -> Result<Vec<Parsed>, ApiError> {
    if let Some(parsed) = fast_txns(new_id, bytes) {
        return Ok(parsed.into_iter().map(Ok).collect());
    }
    let items = parse_many(parse_json(bytes)?)?;
    Ok(parse_each(new_id, items))
}

/// `{"ops": […], "origin"?}` with each operation's document left as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastTxn<'a> {
    #[serde(borrow)]
    ops: Vec<FastOp<'a>>,
    #[serde(default, borrow)]
    origin: Option<FastOrigin<'a>>,
}

/// `{"client", "seq"}` and nothing more: serde skips the text of fields it ignores without
/// checking all of it (a lone surrogate escape), which the general way's tree refuses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastOrigin<'a> {
    client: &'a str,
    seq: u64,
}

/// `{"op": "insert" | "put", "collection", "doc", "if_version"?}`: nothing more.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastOp<'a> {
    op: &'a str,
    collection: &'a str,
    #[serde(borrow)]
    doc: &'a RawValue,
    /// `None` when the field is absent, `Some(None)` when it is `null` (an insert may not
    /// carry it at all; a put takes `null` as no precondition, as the browser replica sends).
    #[serde(default, deserialize_with = "present")]
    if_version: Option<Option<u64>>,
}

/// A field that is there, even as `null`.
fn present<'de, D: serde::Deserializer<'de>>(field: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(field).map(Some)
}

/// `{"txns": […]}` with each transaction left as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastTxns<'a> {
    #[serde(borrow)]
    txns: Vec<&'a RawValue>,
}

/// The transaction of a `POST /v1/txn` body of inserts and puts of canonical documents, the
/// same as [`parse`] makes of it; `None` for anything else, even a body `parse` takes (it goes
/// the general way). Ids the general way then makes are simply not these.
fn fast_txn(new_id: &mut dyn FnMut() -> String, bytes: &[u8]) -> Option<(Txn, Vec<String>)> {
    fast_txn_of(new_id, serde_json::from_slice(bytes).ok()?)
}

/// [`fast_txn`] of a transaction already read.
fn fast_txn_of(
    new_id: &mut dyn FnMut() -> String,
    FastTxn { ops, origin }: FastTxn<'_>,
) -> Option<(Txn, Vec<String>)> {
    if ops.is_empty() || ops.len() > TXN_OPS_MAX {
        return None;
    }
    let origin = origin.map(|FastOrigin { client, seq }| Origin {
        client: client.to_owned(),
        seq,
    });
    if let Some(origin) = &origin {
        origin.validate().ok()?;
    }
    let mut txn = Txn::default();
    for FastOp {
        op,
        collection,
        doc,
        if_version,
    } in ops
    {
        validate_collection_name(collection).ok()?;
        let collection = collection.to_owned();
        let op = match (op, if_version) {
            // With an `origin`, every insert names its `_id` (see `parse`).
            ("insert", None) => Op::Insert {
                collection,
                doc: RawDoc::from_canonical(doc.get(), || origin.is_none().then(&mut *new_id))?,
            },
            ("put", if_version) => Op::Put {
                collection,
                doc: RawDoc::from_canonical(doc.get(), || None)?,
                if_version: if_version.flatten().map(Lsn),
            },
            _ => return None,
        };
        txn.ops.push(op);
    }
    txn.origin = origin;
    Some(with_ids(txn))
}

/// [`fast_txn`] for each transaction of a `POST /v1/txns` body, when it takes every one.
fn fast_txns(new_id: &mut dyn FnMut() -> String, bytes: &[u8]) -> Option<Vec<(Txn, Vec<String>)>> {
    let FastTxns { txns } = serde_json::from_slice(bytes).ok()?;
    if txns.is_empty() || txns.len() > TXNS_MAX {
        return None;
    }
    txns.into_iter()
        .map(|txn| fast_txn(new_id, txn.get().as_bytes()))
        .collect()
}

/// A write channel message (`{"req"?, "ops", "origin"?}` or `{"req"?, "txns": […]}`), read
/// without a JSON tree. A field that is there as `null` is `Some(None)`: the general way
/// tells it from one that is not there at all (`{"txns": […], "origin": null}` is refused).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastMessage<'a> {
    #[serde(default)]
    req: Option<u64>,
    #[serde(default, borrow, deserialize_with = "there")]
    ops: Option<Option<Vec<FastOp<'a>>>>,
    #[serde(default, borrow, deserialize_with = "there")]
    origin: Option<Option<FastOrigin<'a>>>,
    #[serde(default, borrow, deserialize_with = "there")]
    txns: Option<Option<Vec<&'a RawValue>>>,
}

/// A field that is there, whatever it holds.
fn there<'de, D, T>(field: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(field).map(Some)
}

/// A write channel message read the short way.
pub(super) struct FastRead {
    /// Its `req`, if it has one.
    pub req: Option<u64>,
    /// Whether it was a list (`{"txns": […]}`), answered with `{"results": […]}`.
    pub list: bool,
    /// Its transactions, with the ids of their inserts and puts.
    pub txns: Vec<(Txn, Vec<String>)>,
}

/// The short way for a write channel message whose transactions are all inserts and puts of
/// canonical documents (what the browser replica sends); `None` for anything else, which the
/// channel reads the general way, with the same results.
pub(super) fn fast_message(new_id: &mut dyn FnMut() -> String, bytes: &[u8]) -> Option<FastRead> {
    let FastMessage {
        req,
        ops,
        origin,
        txns,
    } = serde_json::from_slice(bytes).ok()?;
    let (list, txns) = match (ops, txns) {
        (Some(Some(ops)), None) => {
            let origin = origin.flatten();
            (false, vec![fast_txn_of(new_id, FastTxn { ops, origin })?])
        }
        (None, Some(Some(txns))) if origin.is_none() && (1..=TXNS_MAX).contains(&txns.len()) => {
            let txns = txns
                .into_iter()
                .map(|txn| fast_txn(new_id, txn.get().as_bytes()))
                .collect::<Option<Vec<_>>>()?;
            (true, txns)
        }
        _ => return None,
    };
    Some(FastRead { req, list, txns })
}

/// Ids `fuzz-1`, `fuzz-2`, … for the inserts without an `_id` of what the fuzz targets decode.
pub(super) fn fuzz_ids() -> impl FnMut() -> String {
    let mut next = 0u64;
    move || {
        next += 1;
        format!("fuzz-{next}")
    }
}

/// The decoding of a `POST /v1/txn` (`many = false`) or `POST /v1/txns` body as the routes do
/// it, from the bytes to the transactions they would commit, for the fuzz targets in `fuzz/`.
/// Inserts without an `_id` get `fuzz-1`, `fuzz-2`, …. Where the short way takes a body, it
/// panics unless the general way makes the same transactions of it.
#[doc(hidden)]
pub fn decode_body_for_fuzzing(bytes: &[u8], many: bool) -> Result<Vec<Txn>, ApiError> {
    let route = if many {
        parse_many_bytes(&mut fuzz_ids(), bytes)?
    } else {
        vec![parse_bytes(&mut fuzz_ids(), bytes)]
    };
    let route: Result<Vec<Txn>, ApiError> = route.into_iter().map(|p| p.map(|(t, _)| t)).collect();
    let fast = if many {
        fast_txns(&mut fuzz_ids(), bytes)
    } else {
        fast_txn(&mut fuzz_ids(), bytes).map(|one| vec![one])
    };
    if let Some(fast) = fast {
        let body = parse_json(bytes).expect("what the short way reads is JSON");
        let items = if many {
            parse_many(body).expect("what the short way reads is a list")
        } else {
            vec![body]
        };
        let general: Vec<Txn> = parse_for_fuzzing(items).expect("the short way took it");
        let fast: Vec<Txn> = fast.into_iter().map(|(txn, _)| txn).collect();
        assert_eq!(fast, general, "the short way made other transactions");
    }
    route
}

/// The transactions of already-parsed bodies, with the ids `fuzz-1`, `fuzz-2`, ….
pub(super) fn parse_for_fuzzing(items: Vec<Value>) -> Result<Vec<Txn>, ApiError> {
    let mut new_id = fuzz_ids();
    items
        .into_iter()
        .map(|item| parse(&mut new_id, item).map(|(txn, _)| txn))
        .collect()
}

/// A write's LSN and whether it repeated an earlier one, or its error. The retry of a client's
/// last committed `origin` is answered with the first attempt's LSN once that is durable (its
/// answer was lost; a retry after `ack_unknown` waits for the replicas again).
async fn written(node: &Node, result: Result<Lsn, WriteError>) -> Result<(Lsn, bool), ApiError> {
    match result {
        Ok(lsn) => Ok((lsn, false)),
        Err(WriteError::Rejected(Rejection {
            error:
                TxnError::DuplicateOrigin {
                    seq,
                    last_seq,
                    last_lsn,
                    ..
                },
            ..
        })) if seq == last_seq => {
            node.wait_durable(last_lsn).await?;
            Ok((last_lsn, true))
        }
        Err(error) => Err(error.into()),
    }
}

/// The success body of one transaction.
fn answer(lsn: Lsn, ids: Vec<String>, duplicate: bool) -> Value {
    if duplicate {
        json!({"lsn": lsn.0, "ids": ids, "duplicate": true})
    } else {
        json!({"lsn": lsn.0, "ids": ids})
    }
}

/// The array `key` of a body that must be an object, and the object's other fields.
fn array_field(
    body: Value,
    key: &str,
) -> Result<(serde_json::Map<String, Value>, Vec<Value>), ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::InvalidTxn(format!(
            "the body must be an object {{\"{key}\": […]}}"
        )));
    };
    match body.remove(key) {
        Some(Value::Array(items)) => Ok((body, items)),
        Some(_) => Err(ApiError::InvalidTxn(format!("`{key}` must be an array"))),
        None => Err(ApiError::InvalidTxn(format!("the body has no `{key}`"))),
    }
}

/// `400 invalid_txn` when the array `key` is empty, `413 txn_too_large` past `max` items.
fn check_count(count: usize, key: &str, max: usize, noun: &str) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::InvalidTxn(format!("`{key}` is empty")));
    }
    if count > max {
        let message = format!("{count} {noun}; the limit is {max}");
        return Err(Rejection::from(TxnError::TooLarge(message)).into());
    }
    Ok(())
}

/// The transaction and the ids of its inserts and puts; `new_id` names an insert without an
/// `_id` (the node's id generator).
fn parse(new_id: &mut dyn FnMut() -> String, body: Value) -> Parsed {
    let (mut body, ops) = array_field(body, "ops")?;
    let origin = match body.remove("origin") {
        None | Some(Value::Null) => None,
        Some(origin) => {
            let origin: Origin = serde_json::from_value(origin).map_err(|e| {
                ApiError::InvalidTxn(format!(
                    "`origin` must be {{\"client\": string, \"seq\": integer}}: {e}"
                ))
            })?;
            origin
                .validate()
                .map_err(|e| Rejection::from(TxnError::InvalidOrigin(e)))?;
            Some(origin)
        }
    };
    if let Some(key) = body.keys().next() {
        return Err(ApiError::InvalidTxn(format!("unknown field `{key}`")));
    }
    // Core refuses too many operations too; refusing here skips parsing them.
    check_count(ops.len(), "ops", TXN_OPS_MAX, "operations")?;
    let mut txn = Txn::default();
    for (op_index, op) in ops.into_iter().enumerate() {
        if origin.is_some() && is_insert_without_id(&op) {
            // A retry must write the same documents: the leader cannot pick their ids.
            let message = "with an `origin`, every insert names its `_id`";
            return Err(ApiError::InvalidTxn(message.into()).in_op(op_index));
        }
        let op = parse_op(new_id, op).map_err(|e| e.in_op(op_index))?;
        txn.ops.push(op);
    }
    txn.origin = origin;
    Ok(with_ids(txn))
}

/// A transaction and the `_id` of each of its inserts and puts, in order: what the answer
/// lists.
fn with_ids(txn: Txn) -> (Txn, Vec<String>) {
    let ids = txn
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Insert { doc, .. } | Op::Put { doc, .. } => Some(doc.id()),
            _ => None,
        })
        .collect();
    (txn, ids)
}

fn parse_op(new_id: &mut dyn FnMut() -> String, op: Value) -> Result<Op, ApiError> {
    // Inserts are most of a typical batch. Taking a well-formed one apart by hand skips serde's
    // internally tagged enum, which copies each document through an intermediate tree and
    // then builds a second `Value` of it. Anything else takes the general path below.
    let op = match op {
        Value::Object(mut map) if is_plain_insert(&map) => {
            let (Some(Value::String(collection)), Some(doc)) =
                (map.remove("collection"), map.remove("doc"))
            else {
                unreachable!("checked by is_plain_insert");
            };
            let op = insert(new_id, collection, doc)?;
            validate_collection_name(op.collection())?;
            return Ok(op);
        }
        op => op,
    };
    let op: WireOp = serde_json::from_value(op).map_err(|e| ApiError::InvalidTxn(e.to_string()))?;
    let op = match op {
        WireOp::Insert { collection, doc } => insert(new_id, collection, doc)?,
        WireOp::Put {
            collection,
            doc,
            if_version,
        } => Op::Put {
            collection,
            doc: RawDoc::from_value(&doc)?,
            if_version: if_version.map(Lsn),
        },
        WireOp::Patch {
            collection,
            id,
            patch,
            if_version,
        } => {
            validate_id(&id)?;
            if !patch.is_object() {
                return Err(ApiError::InvalidPatch(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            Op::Patch {
                collection,
                id,
                patch: patch.to_string(),
                if_version: if_version.map(Lsn),
            }
        }
        WireOp::Delete {
            collection,
            id,
            if_version,
        } => {
            validate_id(&id)?;
            Op::Delete {
                collection,
                id,
                if_version: if_version.map(Lsn),
            }
        }
        WireOp::CreateCollection { collection, ttl_ms } => Op::CreateCollection {
            collection,
            options: CollectionOptions { ttl_ms },
        },
        WireOp::DropCollection { collection } => Op::DropCollection { collection },
        WireOp::CreateIndex { collection, index } => Op::CreateIndex {
            collection,
            spec: index,
        },
        WireOp::DropIndex { collection, name } => Op::DropIndex { collection, name },
        WireOp::SetTtl { collection, ttl_ms } => Op::SetTtl { collection, ttl_ms },
    };
    validate_collection_name(op.collection())?;
    Ok(op)
}

fn is_insert_without_id(op: &Value) -> bool {
    op.get("op").and_then(Value::as_str) == Some("insert")
        && op.get("doc").is_some_and(|doc| doc.get("_id").is_none())
}

/// `{"op": "insert", "collection": "<string>", "doc": …}` and nothing else.
fn is_plain_insert(map: &serde_json::Map<String, Value>) -> bool {
    map.len() == 3
        && map.get("op").and_then(Value::as_str) == Some("insert")
        && map.get("collection").is_some_and(Value::is_string)
        && map.contains_key("doc")
}

/// An insert of `doc`, which gets a generated `_id` when it has none.
fn insert(
    new_id: &mut dyn FnMut() -> String,
    collection: String,
    mut doc: Value,
) -> Result<Op, ApiError> {
    ensure_id(&mut doc, new_id);
    Ok(Op::Insert {
        collection,
        doc: RawDoc::from_value(&doc)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canonical inserts (with and without an `_id`) and puts, with and without an origin.
    const CANONICAL: [&str; 4] = [
        r#"{"ops":[{"collection":"notes","doc":{"_id":"a","n":1,"tag":"x"},"op":"insert"},{"collection":"notes","doc":{"n":2,"tag":"\u0001y"},"op":"insert"},{"collection":"notes","doc":{"A":[1.5,{"b":null}],"_id":"c"},"op":"put"}]}"#,
        r#"{"origin":{"client":"app-1","seq":7},"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a","n":1}},{"doc":{"_id":"b"},"op":"put","collection":"notes","if_version":null},{"collection":"notes","doc":{"_id":"c"},"if_version":4,"op":"put"}]}"#,
        r#"{"ops":[{"op":"insert","collection":"notes","doc":{}}],"origin":null}"#,
        r#"{"ops":[{"op":"insert","collection":"notes","doc":{"Z":"last before _id","z":"after"}}]}"#,
    ];

    fn general(bytes: &[u8]) -> Parsed {
        parse(&mut fuzz_ids(), parse_json(bytes)?)
    }

    #[test]
    fn canonical_inserts_and_puts_take_the_short_way_to_the_same_transaction() {
        for body in CANONICAL {
            let fast = fast_txn(&mut fuzz_ids(), body.as_bytes()).expect(body);
            let general = general(body.as_bytes()).expect(body);
            assert_eq!(fast, general, "{body}");
        }
        let (txn, ids) = fast_txn(&mut fuzz_ids(), CANONICAL[0].as_bytes()).unwrap();
        assert_eq!(ids, ["a", "fuzz-1", "c"]);
        let Op::Insert { doc, .. } = &txn.ops[1] else {
            panic!("an insert");
        };
        assert_eq!(doc.as_str(), r#"{"_id":"fuzz-1","n":2,"tag":"\u0001y"}"#);
        let many = format!(r#"{{"txns":[{}]}}"#, CANONICAL.join(","));
        let fast = fast_txns(&mut fuzz_ids(), many.as_bytes()).expect("all canonical");
        assert_eq!(fast.len(), CANONICAL.len());
        assert!(decode_body_for_fuzzing(many.as_bytes(), true).is_ok());
    }

    #[test]
    fn anything_else_goes_the_general_way() {
        let bodies = [
            // Not canonical: whitespace, key order, a float written otherwise.
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{ "_id":"a"}}]}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"n":1,"_id":"a"}}]}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a","n":1.50}}]}"#,
            // Other operations and fields.
            r#"{"ops":[{"op":"patch","collection":"notes","id":"a","patch":{"n":1}}]}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a"},"if_version":null}]}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a"},"if_version":1}]}"#,
            r#"{"ops":[{"op":"put","collection":"notes","doc":{"_id":"a"},"if_version":-1}]}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a"}}],"extra":1}"#,
            r#"{"ops":[{"op":"ins\u0065rt","collection":"notes","doc":{"_id":"a"}}]}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a"},"op":"put"}]}"#,
            r#"{"ops":[],"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a"}}]}"#,
            // Errors the general way names.
            r#"{"ops":[]}"#,
            r#"{"ops":[{"op":"insert","collection":"no/tes","doc":{"_id":"a"}}]}"#,
            r#"{"ops":[{"op":"put","collection":"notes","doc":{"n":1}}]}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":""}}]}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"n":1}}],"origin":{"client":"c","seq":1}}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a"}}],"origin":{"client":"c","seq":0}}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a"}}],"origin":{"client":"c","seq":1,"x":"\ud800"}}"#,
            r#"{"ops":[{"op":"insert","collection":"notes","doc":{"_id":"a","$x":1}}]}"#,
            r#"[]"#,
        ];
        for body in bodies {
            assert!(
                fast_txn(&mut fuzz_ids(), body.as_bytes()).is_none(),
                "{body}"
            );
        }
        let surrogate = bodies.iter().find(|b| b.contains("ud800")).unwrap();
        let general_error = general(surrogate.as_bytes()).unwrap_err();
        assert_eq!(general_error.code(), "invalid_json");
        let too_many = format!(
            r#"{{"ops":[{}]}}"#,
            vec![r#"{"op":"insert","collection":"c","doc":{"_id":"a"}}"#; TXN_OPS_MAX + 1]
                .join(",")
        );
        assert!(fast_txn(&mut fuzz_ids(), too_many.as_bytes()).is_none());
        // One transaction the short way does not take sends the whole list the general way.
        let many = format!(r#"{{"txns":[{},{}]}}"#, CANONICAL[0], bodies[0]);
        assert!(fast_txns(&mut fuzz_ids(), many.as_bytes()).is_none());
    }

    /// Every body one edit away from a canonical one: where the short way takes it, the
    /// general way makes the same transactions (`decode_body_for_fuzzing` panics otherwise).
    #[test]
    fn bodies_one_edit_away_agree() {
        let mut taken = 0;
        for body in CANONICAL {
            for at in 0..body.len() {
                for edit in ["", " ", "\"", "\\", ",", "}", "]", "1", "a", "_", "$", "é"] {
                    let (before, after) = body.as_bytes().split_at(at);
                    for skip in [0, 1] {
                        let after = &after[skip.min(after.len())..];
                        let bytes = [before, edit.as_bytes(), after].concat();
                        let _ = decode_body_for_fuzzing(&bytes, false);
                        let many = [b"{\"txns\":[".as_slice(), &bytes, b"]}"].concat();
                        let _ = decode_body_for_fuzzing(&many, true);
                        taken += usize::from(fast_txn(&mut fuzz_ids(), &bytes).is_some());
                    }
                }
            }
        }
        // Some edits keep a body canonical (a letter in a value): the check saw both ways.
        assert!(taken > 100, "{taken}");
    }
}
