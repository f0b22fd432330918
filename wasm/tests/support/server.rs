//! Talking to the real `cstore serve` that scripts/test.sh starts through
//! `wasm/tests/server-control.mjs`: its URLs (baked in at build time), plain HTTP calls, and
//! a transport wrapper that counts and can tamper with what the server streams.

use std::cell::RefCell;
use std::rc::Rc;

use cstore_core::replication::Frame;
use cstore_core::{LogPosition, Lsn};
use cstore_wasm::transport::{Connection, Incoming, Transport, TransportError};
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// The control/proxy URL (HTTP API with CORS, plus /control/*), when the script set it.
pub const CONTROL_URL: Option<&str> = option_env!("CSTORE_TEST_CONTROL_URL");
/// The server's `ws://…/v1/replicate`.
pub const WS_URL: Option<&str> = option_env!("CSTORE_TEST_WS_URL");

/// The URLs, or `None` (with a note) when the suite runs without a server. Built with
/// `CSTORE_TEST_REQUIRE_SERVER` set (scripts/test.sh sets it), a missing URL is a failure.
pub fn urls() -> Option<(&'static str, &'static str)> {
    match (CONTROL_URL, WS_URL) {
        (Some(control), Some(ws)) => Some((control, ws)),
        _ => {
            assert!(
                option_env!("CSTORE_TEST_REQUIRE_SERVER").is_none(),
                "CSTORE_TEST_REQUIRE_SERVER is set but the server URLs are not"
            );
            wasm_bindgen_test::console_log!(
                "no server: build with CSTORE_TEST_CONTROL_URL and CSTORE_TEST_WS_URL (scripts/test.sh does)"
            );
            None
        }
    }
}

/// `method url` with a JSON body; the status and the JSON answer (`null` if none).
pub async fn http(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(&body.to_string()));
        let headers = web_sys::Headers::new().unwrap();
        headers.set("content-type", "application/json").unwrap();
        init.set_headers(&headers);
    }
    let request = web_sys::Request::new_with_str_and_init(url, &init).unwrap();
    let window = web_sys::window().expect("tests run in a window");
    let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"))
        .dyn_into()
        .unwrap();
    let text = JsFuture::from(response.text().unwrap()).await.unwrap();
    let text = text.as_string().unwrap_or_default();
    (
        response.status(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Commits `ops` through `/v1/txn`; the LSN.
pub async fn txn(control: &str, ops: Value) -> u64 {
    let (status, answer) = http(
        "POST",
        &format!("{control}/v1/txn"),
        Some(&serde_json::json!({"ops": ops})),
    )
    .await;
    assert_eq!(status, 200, "txn failed: {answer}");
    answer["lsn"].as_u64().unwrap()
}

/// Inserts one document into `collection` on the server; returns the LSN.
pub async fn insert_doc(control: &str, collection: &str, doc: Value) -> u64 {
    let ops = serde_json::json!([{"op": "insert", "collection": collection, "doc": doc}]);
    txn(control, ops).await
}

/// The server's committed LSN.
pub async fn committed_lsn(control: &str) -> u64 {
    let (status, answer) = http("GET", &format!("{control}/v1/status"), None).await;
    assert_eq!(status, 200, "status failed: {answer}");
    answer["committed_lsn"].as_u64().unwrap()
}

/// Stops, starts or restarts the server (`action`).
pub async fn control(control: &str, action: &str) {
    let (status, answer) = http("POST", &format!("{control}/control/{action}"), None).await;
    assert_eq!(status, 200, "control {action} failed: {answer}");
}

/// What a [`Tap`] saw and will do.
#[derive(Debug, Default)]
pub struct TapState {
    /// Entries received in `Entries` frames, each LSN once per arrival.
    pub entries: Vec<Lsn>,
    /// Snapshot transfers begun, with their positions.
    pub snapshots: Vec<LogPosition>,
    /// Tamper with the next entries frame.
    pub tamper_next: bool,
}

/// Wraps a transport: counts what arrives, can corrupt the next `Entries` frame.
#[derive(Clone, Debug)]
pub struct Tap<T> {
    inner: T,
    pub state: Rc<RefCell<TapState>>,
}

impl<T> Tap<T> {
    pub fn new(inner: T) -> Tap<T> {
        Tap {
            inner,
            state: Rc::default(),
        }
    }
}

#[derive(Debug)]
pub struct TapConnection<C> {
    inner: C,
    state: Rc<RefCell<TapState>>,
}

impl<T: Transport> Transport for Tap<T> {
    type Connection = TapConnection<T::Connection>;

    async fn connect(&self) -> Result<Self::Connection, TransportError> {
        Ok(TapConnection {
            inner: self.inner.connect().await?,
            state: self.state.clone(),
        })
    }
}

impl<C: Connection> Connection for TapConnection<C> {
    fn send(&self, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.inner.send(bytes)
    }

    async fn recv(&self) -> Incoming {
        let incoming = self.inner.recv().await;
        let Incoming::Frame(bytes) = incoming else {
            return incoming;
        };
        let mut state = self.state.borrow_mut();
        match Frame::decode(&bytes) {
            Ok(Frame::Entries { mut entries }) => {
                state.entries.extend(entries.iter().map(|e| e.lsn));
                if std::mem::take(&mut state.tamper_next) {
                    entries[0].timestamp.0 += 1;
                    return Incoming::Frame(Frame::Entries { entries }.encode());
                }
                Incoming::Frame(bytes)
            }
            Ok(Frame::SnapshotBegin { position, .. }) => {
                state.snapshots.push(position);
                Incoming::Frame(bytes)
            }
            _ => Incoming::Frame(bytes),
        }
    }

    fn close(&self, reason: &str) {
        self.inner.close(reason)
    }
}

/// `GET url` as text (for `/metrics`): the status and the body.
pub async fn get_text(url: &str) -> (u16, String) {
    let window = web_sys::window().expect("tests run in a window");
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"))
        .dyn_into()
        .unwrap();
    let text = JsFuture::from(response.text().unwrap()).await.unwrap();
    (response.status(), text.as_string().unwrap_or_default())
}

/// The sum of the samples of every metric in the server's `/metrics` whose name (labels
/// included) contains `part`, and those names.
pub async fn metric_sum(control: &str, part: &str) -> (f64, Vec<String>) {
    let (status, text) = get_text(&format!("{control}/metrics")).await;
    assert_eq!(status, 200, "GET /metrics: {text}");
    let mut sum = 0.0;
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if name.contains(part)
            && let Ok(value) = value.parse::<f64>()
        {
            sum += value;
            names.push(name.to_owned());
        }
    }
    (sum, names)
}
