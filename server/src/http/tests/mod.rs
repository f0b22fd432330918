//! Handler-level tests: requests through the real router (`tower::ServiceExt::oneshot`) over
//! a leader on a `MemoryStore`. No sockets.

mod auth;
mod bad_input;
mod demo;
mod find;
mod routes;
mod txn;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use tower::ServiceExt;

use cstore_core::Hash;
use cstore_core::storage::MemoryStore;

use super::{AppState, router};
use crate::auth::{Claims, Scope, TokenKey};
use crate::leader::{Leader, LeaderConfig};
use crate::node::Node;

/// The secret of harnesses with auth.
pub const SECRET: &str = "handler test secret";

/// The process-wide recorder: `metrics` allows one per process, and tests share it.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| crate::metrics::install().expect("first install in this process"))
        .clone()
}

/// A router over a fresh leader.
pub struct Harness {
    pub leader: Leader,
    router: Router,
    key: Option<TokenKey>,
}

impl Harness {
    /// Without auth.
    pub async fn open() -> Harness {
        Harness::build(None).await
    }

    /// With auth, secret [`SECRET`].
    pub async fn with_auth() -> Harness {
        Harness::build(Some(TokenKey::new(SECRET).unwrap())).await
    }

    /// Without auth, serving the demo app from `dir`.
    pub async fn with_demo(dir: std::path::PathBuf) -> Harness {
        Harness::build_with(None, Some(dir)).await
    }

    async fn build(key: Option<TokenKey>) -> Harness {
        Harness::build_with(key, None).await
    }

    async fn build_with(key: Option<TokenKey>, demo_dir: Option<std::path::PathBuf>) -> Harness {
        let leader = Leader::open(MemoryStore::new(), LeaderConfig::default())
            .await
            .expect("leader opens on an empty store");
        let router = router(AppState {
            node: Node::Leader(leader.clone()),
            auth: key.clone().map(Arc::new),
            metrics: metrics_handle(),
            replication: Node::Leader(leader.clone()).replicator(key.clone().map(Arc::new)),
            demo_dir,
            data_dir: None,
        });
        Harness {
            leader,
            router,
            key,
        }
    }

    /// A token with these scopes, valid for an hour.
    pub fn token(&self, scopes: &[Scope]) -> String {
        let now_s = crate::clock::now_ms().0 / 1000;
        self.key.as_ref().expect("harness has auth").mint(&Claims {
            sub: "test".into(),
            scopes: scopes.to_vec(),
            exp: now_s + 3600,
            collections: None,
        })
    }

    /// The hash of the whole state: equal before and after a refused request.
    pub fn state_hash(&self) -> Hash {
        self.leader.read(|s| s.state_hash())
    }

    /// Sends a request. `body` is sent as `application/json` when `Some`.
    pub async fn call(&self, method: Method, uri: &str, body: Option<&str>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        self.send(request).await
    }

    /// Sends a request built by the test.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).expect("responses are UTF-8"),
        }
    }

    /// A write that must succeed; returns its JSON answer.
    pub async fn ok(&self, method: Method, uri: &str, body: Option<&str>) -> Value {
        let reply = self.call(method.clone(), uri, body).await;
        assert!(
            reply.status.is_success(),
            "{method} {uri}: {} {}",
            reply.status,
            reply.body
        );
        reply.json()
    }
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// The error code of an error response, after checking the error shape.
    pub fn code(&self) -> String {
        let json = self.json();
        let error = json["error"]
            .as_object()
            .unwrap_or_else(|| panic!("not an error: {json}"));
        // `ack_unknown` also carries the write's LSN: the write happened.
        let extra = usize::from(error.get("code") == Some(&Value::from("ack_unknown")));
        assert_eq!(
            error.len(),
            2 + extra,
            "error has exactly code and message: {json}"
        );
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
        error["code"]
            .as_str()
            .expect("code is a string")
            .to_string()
    }

    /// Asserts an error with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code().as_str()),
            (status, code),
            "body: {}",
            self.body
        );
    }
}
