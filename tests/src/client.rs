//! A small blocking HTTP client for tests: one method per verb, replies as status + headers +
//! body, JSON helpers for the contract's shapes (`{error: {code}}`, `/v1/status`).
//!
//! Transport failures (connection refused or reset, timeouts) come back as `Err` so that tests
//! which kill the server can tell "no answer" from "an answer".

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Client as HttpClient;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// How long one request may take before it counts as a transport failure.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Threads used by [`Client::get_docs`].
pub const POINT_READ_THREADS: usize = 8;

/// Documents per page in [`Client::all_docs`].
pub const FIND_PAGE_DOCS: usize = 1000;

/// An HTTP client bound to one server's base URL, with an optional bearer token.
#[derive(Clone, Debug)]
pub struct Client {
    http: HttpClient,
    base_url: String,
    token: Option<String>,
}

/// A reply: status, headers and the raw body.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `error.code` of a contract error body, if the body is one.
    pub fn error_code(&self) -> Option<String> {
        let value: Value = serde_json::from_slice(&self.body).ok()?;
        Some(value.get("error")?.get("code")?.as_str()?.to_string())
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        Some(self.headers.get(name)?.to_str().ok()?.to_string())
    }

    /// The body as (lossy) text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Panics unless the status is `status`; returns the JSON body.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text()
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Panics unless the reply is the error `status` with `code`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.error_code().as_deref()),
            (status, Some(code)),
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text()
        );
    }
}

impl Client {
    /// A client for `base_url` (such as `http://127.0.0.1:7070`) without a token.
    pub fn new(base_url: impl Into<String>) -> Client {
        Client::with_timeout_ms(base_url, REQUEST_TIMEOUT_MS)
    }

    /// A client whose requests fail after `timeout_ms` (connecting included).
    pub fn with_timeout_ms(base_url: impl Into<String>, timeout_ms: u64) -> Client {
        Client::built(HttpClient::builder(), base_url, timeout_ms)
    }

    /// A client from `builder` with the request and connect timeouts of `timeout_ms`.
    fn built(
        builder: reqwest::blocking::ClientBuilder,
        base_url: impl Into<String>,
        timeout_ms: u64,
    ) -> Client {
        let http = builder
            .timeout(Duration::from_millis(timeout_ms))
            .connect_timeout(Duration::from_millis(timeout_ms.min(2_000)))
            .build()
            .expect("an HTTP client builds");
        Client {
            http,
            base_url: base_url.into(),
            token: None,
        }
    }

    /// A client for an `https://` base URL that trusts `root_pem` (a PEM certificate: the CA,
    /// or a self-signed server certificate) besides the public web roots.
    pub fn with_root_pem(base_url: impl Into<String>, root_pem: &[u8], timeout_ms: u64) -> Client {
        let root = reqwest::Certificate::from_pem(root_pem).expect("a PEM certificate");
        let builder = HttpClient::builder()
            .use_rustls_tls()
            .add_root_certificate(root);
        Client::built(builder, base_url, timeout_ms)
    }

    /// The same client sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The same client without a token.
    pub fn without_token(&self) -> Client {
        Client {
            token: None,
            ..self.clone()
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends any request; `path` starts with `/` and may carry a query string.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base_url, path));
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some((content_type, bytes)) = body {
            // An empty content type sends the body without the header.
            if !content_type.is_empty() {
                request = request.header(CONTENT_TYPE, content_type);
            }
            request = request.body(bytes);
        }
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        let response = request.send()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes()?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Reply, reqwest::Error> {
        self.send(Method::GET, path, None, &[])
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Reply, reqwest::Error> {
        self.send(Method::DELETE, path, None, &[])
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.send(Method::POST, path, Some(json_body(body)), &[])
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.send(Method::PUT, path, Some(json_body(body)), &[])
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.send(Method::PATCH, path, Some(json_body(body)), &[])
    }

    /// Inserts `doc` into `collection` (`POST /v1/c/{collection}`).
    pub fn insert(&self, collection: &str, doc: &Value) -> Result<Reply, reqwest::Error> {
        self.post(&format!("/v1/c/{collection}"), doc)
    }

    /// Runs a transaction (`POST /v1/txn` with `{"ops": ops}`).
    pub fn txn(&self, ops: Vec<Value>) -> Result<Reply, reqwest::Error> {
        self.post("/v1/txn", &serde_json::json!({ "ops": ops }))
    }

    /// `POST /v1/c/{collection}/find` with `query`.
    pub fn find(&self, collection: &str, query: &Value) -> Result<Reply, reqwest::Error> {
        self.post(&format!("/v1/c/{collection}/find"), query)
    }

    /// Every document of `collection`, sorted by `_id`, fetched in pages of
    /// [`FIND_PAGE_DOCS`] (so a server-side cap on results cannot hide documents). An absent
    /// collection (`404`) has none. Panics on any other failure.
    #[track_caller]
    pub fn all_docs(&self, collection: &str) -> Vec<Value> {
        let mut docs = Vec::new();
        loop {
            let query = serde_json::json!({
                "filter": {},
                "sort": [["_id", 1]],
                "limit": FIND_PAGE_DOCS,
                "skip": docs.len(),
            });
            let reply = self.find(collection, &query).expect("find answers");
            if reply.status == 404 && docs.is_empty() {
                return docs;
            }
            let body = reply.expect_status(200);
            let page = body["docs"].as_array().expect("docs is an array");
            docs.extend(page.iter().cloned());
            if page.len() < FIND_PAGE_DOCS {
                return docs;
            }
        }
    }

    /// Fetches each of `ids` from `collection` by `GET /v1/c/{collection}/{id}`, over
    /// [`POINT_READ_THREADS`] threads: the documents found, by id (`404` means absent). Point
    /// reads check durability without relying on queries. Panics on any other answer.
    #[track_caller]
    pub fn get_docs(&self, collection: &str, ids: &[String]) -> BTreeMap<String, Value> {
        let chunk = ids.len().div_ceil(POINT_READ_THREADS).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = ids
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        let mut found = BTreeMap::new();
                        for id in part {
                            let path = format!("/v1/c/{collection}/{}", encode_segment(id));
                            let reply = self
                                .get(&path)
                                .unwrap_or_else(|e| panic!("GET {path}: no answer: {e}"));
                            match reply.status {
                                200 => {
                                    found.insert(id.clone(), reply.json());
                                }
                                404 => {}
                                _ => panic!("GET {path}: {} {}", reply.status, reply.text()),
                            }
                        }
                        found
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a reader thread does not panic"))
                .collect()
        })
    }

    /// The `count` of `collection` in `GET /v1/c`; 0 when it is not listed.
    #[track_caller]
    pub fn collection_count(&self, collection: &str) -> u64 {
        let listing = self
            .get("/v1/c")
            .expect("GET /v1/c answers")
            .expect_status(200);
        listing["collections"]
            .as_array()
            .unwrap_or_else(|| panic!("collections in {listing}"))
            .iter()
            .find(|c| c["name"] == collection)
            .map_or(0, |c| {
                c["count"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("a numeric count in {c}"))
            })
    }

    /// `GET /v1/status` as JSON, panicking on any failure.
    #[track_caller]
    pub fn status(&self) -> Value {
        self.get("/v1/status")
            .expect("status answers")
            .expect_status(200)
    }

    /// Waits until this node has applied `lsn` (at most `timeout`) and returns its status;
    /// panics naming `what` otherwise.
    #[track_caller]
    pub fn wait_applied(&self, lsn: u64, timeout: Duration, what: &str) -> Value {
        let started = std::time::Instant::now();
        loop {
            let status = self.status();
            if status["applied_lsn"].as_u64().unwrap_or(0) >= lsn {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "{what} did not reach lsn {lsn} in {timeout:?}: {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `last_lsn` from `/v1/status`.
    #[track_caller]
    pub fn last_lsn(&self) -> u64 {
        self.status()["last_lsn"]
            .as_u64()
            .expect("status has a numeric last_lsn")
    }
}

fn json_body(body: &Value) -> (&'static str, Vec<u8>) {
    (
        "application/json",
        serde_json::to_vec(body).expect("a Value serializes"),
    )
}

/// Percent-encodes `segment` for use as one path segment (RFC 3986 unreserved bytes kept).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode_segment("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
