//! How pending writes reach the leader: `POST {httpUrl}/v1/txn`, one write per request.
//!
//! The answer sorts each attempt into three outcomes: committed (2xx, with the LSN; also a
//! `duplicate` answer to a resend), rejected by the leader as the authority (4xx: the write
//! will never apply, roll it back and report the code), or try again later (network
//! failure, 5xx, 408, 429). [`TxnSender`] is the seam, so tests can answer from an
//! in-browser leader.

use std::future::Future;

use cstore_core::{Lsn, Op, Txn};
use serde_json::{Value, json};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::transport::websocket::describe;

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

/// Sends one write to the leader.
pub trait TxnSender {
    /// Commits `txn` as write `seq` of `client`.
    fn send(&self, client: &str, seq: u64, txn: &Txn) -> impl Future<Output = TxnOutcome>;
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

/// Writes through `fetch` to a leader's HTTP API.
#[derive(Clone, Debug)]
pub struct FetchSender {
    txn_url: String,
    token: Option<String>,
}

impl FetchSender {
    /// A sender to `{http_url}/v1/txn`.
    pub fn new(http_url: &str, token: Option<&str>) -> FetchSender {
        FetchSender {
            txn_url: format!("{}/v1/txn", http_url.trim_end_matches('/')),
            token: token.map(str::to_owned),
        }
    }

    async fn post(&self, body: String) -> Result<(u16, String), JsValue> {
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_body(&JsValue::from_str(&body));
        let headers = web_sys::Headers::new()?;
        headers.set("Content-Type", "application/json")?;
        if let Some(token) = &self.token {
            headers.set("Authorization", &format!("Bearer {token}"))?;
        }
        init.set_headers(&headers);
        let request = web_sys::Request::new_with_str_and_init(&self.txn_url, &init)?;
        let response = JsFuture::from(fetch(&request)).await?;
        let response: web_sys::Response = response.dyn_into()?;
        let text = JsFuture::from(response.text()?).await?;
        Ok((response.status(), text.as_string().unwrap_or_default()))
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn fetch(request: &web_sys::Request) -> js_sys::Promise;
}

impl TxnSender for FetchSender {
    async fn send(&self, client: &str, seq: u64, txn: &Txn) -> TxnOutcome {
        let mut body = json!({"ops": wire_ops(txn)});
        // The origin makes a resend after a lost answer commit at most once.
        let origin = txn.origin.as_ref();
        let client = origin.map_or(client, |o| o.client.as_str());
        let seq = origin.map_or(seq, |o| o.seq);
        body["origin"] = json!({"client": client, "seq": seq});
        match self.post(body.to_string()).await {
            Ok((status, text)) => classify(status, &text),
            Err(error) => TxnOutcome::Retry {
                code: "network_error".into(),
                message: describe(&error, "fetch failed"),
            },
        }
    }
}

/// Sorts an HTTP answer of `/v1/txn` into an outcome.
pub fn classify(status: u16, text: &str) -> TxnOutcome {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return match body.get("lsn").and_then(Value::as_u64) {
            Some(lsn) => TxnOutcome::Committed { lsn: Lsn(lsn) },
            None => TxnOutcome::Retry {
                code: "bad_response".into(),
                message: format!("status {status} without an lsn"),
            },
        };
    }
    let error = body.get("error");
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let code = field("code").unwrap_or_else(|| format!("http_{status}"));
    let message = field("message").unwrap_or_else(|| format!("HTTP status {status}"));
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
}
