//! The JavaScript API of the browser replica: the `Replica` class.
//!
//! The npm package in `web/` wraps these exports one to one, so the names and shapes here are
//! a contract. Reads are synchronous and local; writes resolve once they are applied locally
//! and queued durably (the leader confirms later); everything that fails throws (or rejects
//! with) an `Error` carrying a stable snake_case `code` property.
//!
//! ```text
//! Replica.open(options) -> Promise<Replica>
//!   options: {url | urls, token?, name?, httpUrl?, collections?}
//!   url: "ws(s)://host/v1/replicate"; httpUrl (for writes) defaults to "http(s)://host"
//!   urls: the members of a cluster (ws URLs; not with url or httpUrl): the replica prefers
//!     the leader (from /v1/status), moves to another member when one fails, remembers the
//!     store's identity in its database and refuses servers of another store (wrong_cluster)
//!   collections: follow only these; other collections' reads and writes: not_subscribed
//!   name: the local database's name (default "cstore"); token: sent as ?token= and Bearer
//!   writeChannel: "websocket" (default: pending writes drain over the leader's /v1/write
//!     WebSocket, with POST /v1/txns as the fallback) or "http" (POST /v1/txns only)
//! replica.get(collection, id) -> object | undefined                 sync, local
//! replica.readBarrier() -> Promise<number>   before a linearizable read: the cluster's read
//!   index, then the local apply of it; rejects with `offline` / `unavailable`
//! replica.collections() -> string[] | null                          the subscription
//! replica.find(collection, query) -> object[]                       sync, local
//!   query: {filter, sort, limit, skip} (the server's find body)
//! replica.count(collection, filter) -> number                       sync, local
//! replica.insert(collection, doc) -> Promise<{id, pending: true}>   `_id` generated if absent
//! replica.put(collection, doc) -> Promise<{id, pending: true}>      doc needs a string `_id`
//! replica.update(collection, id, patch) -> Promise<{id, pending: true}>   RFC 7386 merge patch
//! replica.remove(collection, id) -> Promise<{id, pending: true}>
//! replica.watch(collection, query, callback) -> number (watch id)
//!   callback(docs: object[]): once at once (a microtask later), then once per batch of
//!   changes (replicated or local) that alters the result
//! replica.unwatch(id) -> boolean
//! replica.status() -> {online, connected, role: "replica", appliedLsn, leaderLsn, lag,
//!                      pendingWrites, lastError: {code, message} | null, rebootstraps,
//!                      member, memberSwitches, refusedMembers: [{url, code, message}],
//!                      closed, clientId}
//! replica.onStatus(callback(status))                    after each batch of status changes
//! replica.onRejected(callback({seq, code, message, ops}))  a write the leader refused, rolled back
//! replica.flush() -> Promise<void>    resolves when every pending write is confirmed or rejected
//! replica.close() -> Promise<void>    stops syncing; pending writes stay queued for next open
//! ```
//!
//! Error codes thrown here: `invalid_options`, `invalid_argument`, `invalid_query` and the
//! other query codes, `invalid_document`/`invalid_id`, a local rejection
//! (`already_exists`, `not_found`, `unique_violation`, ...), `too_many_pending`, `closed`,
//! `not_subscribed`, `offline` and `unavailable` (linearizable reads), and storage codes
//! (`storage_io`, ...). `onRejected` reports the leader's codes.
//!
//! The local copy and the pending writes live in IndexedDB (database `name`), so a reload
//! opens at once with the data and the writes it had, and syncs only what it missed.

use std::cell::RefCell;
use std::rc::Rc;

use cstore_core::doc::validate_collection_name;
use cstore_core::query::{Filter, FindQuery};
use cstore_core::replication::SUBSCRIPTION_COLLECTIONS_MAX;
#[cfg(not(target_arch = "wasm32"))]
use cstore_core::storage::MemoryStore;
use cstore_core::{DocRef, StoredDoc, Txn};
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::error::ReplicaError;
#[cfg(target_arch = "wasm32")]
use crate::idb::{IdbError, IdbStore, PendingStore};
use crate::replica::channel_sender::{ChannelSender, WriteMode};
use crate::replica::members::{MEMBERS_MAX, Member, Members};
#[cfg(not(target_arch = "wasm32"))]
use crate::replica::pending::MemoryPending;
use crate::replica::sender::FetchSender;
use crate::replica::shared::RejectedWrite;
use crate::replica::status::{ROLE, Status};
use crate::replica::{Parts, ReadIndexFn, ReplicaHandle, Settings};
use crate::transport::cluster::ClusterTransport;

/// A browser replica of a Collection Store leader (JavaScript class `Replica`).
#[wasm_bindgen]
#[derive(Debug)]
pub struct Replica {
    handle: Rc<ReplicaHandle>,
}

/// The options of `Replica.open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    /// The servers to follow: one (`url`), or the members of a cluster (`urls`).
    pub members: Vec<Member>,
    /// A token with scope `read` (and `write` for writes).
    pub token: Option<String>,
    /// The local database's name.
    pub name: String,
    /// The collections to follow (`collections`); `None` follows all.
    pub collections: Option<Vec<String>>,
    /// How pending writes reach the leader (`writeChannel`).
    pub write_mode: WriteMode,
}

impl OpenOptions {
    /// Parses the JS options object.
    pub fn parse(options: &Value) -> Result<OpenOptions, ReplicaError> {
        let invalid = |m: &str| ReplicaError::InvalidOptions(m.to_owned());
        let map = options
            .as_object()
            .ok_or_else(|| invalid("options must be an object"))?;
        if let Some(key) = map.keys().find(|k| {
            !matches!(
                k.as_str(),
                "url" | "urls" | "token" | "name" | "httpUrl" | "collections" | "writeChannel"
            )
        }) {
            return Err(invalid(&format!("unknown option `{key}`")));
        }
        let text = |key: &str| -> Result<Option<String>, ReplicaError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(&format!("`{key}` must be a string"))),
            }
        };
        let strings = |key: &str| -> Result<Option<Vec<String>>, ReplicaError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(invalid(&format!("`{key}` must be an array of strings"))),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(invalid(&format!("`{key}` must be an array of strings"))),
            }
        };
        let member = |ws_url: String, http_url: Option<String>| -> Result<Member, ReplicaError> {
            let http_url = match http_url {
                Some(http_url) => http_url,
                None => http_base(&ws_url).ok_or_else(|| {
                    invalid(&format!("`{ws_url}` must start with ws:// or wss://"))
                })?,
            };
            Ok(Member { ws_url, http_url })
        };
        let members = match (text("url")?, strings("urls")?) {
            (Some(_), Some(_)) => return Err(invalid("give `url` or `urls`, not both")),
            (None, None) => return Err(invalid("`url` (or `urls`) is required")),
            (Some(url), None) => vec![member(url, text("httpUrl")?)?],
            (None, Some(urls)) => {
                if text("httpUrl")?.is_some() {
                    return Err(invalid(
                        "`httpUrl` goes with `url`; with `urls` each member's HTTP base comes from its URL",
                    ));
                }
                if urls.is_empty() {
                    return Err(invalid("`urls` is empty: name at least one server"));
                }
                if urls.len() > MEMBERS_MAX {
                    return Err(invalid(&format!(
                        "`urls` names more than {MEMBERS_MAX} servers"
                    )));
                }
                let members = urls
                    .into_iter()
                    .map(|url| member(url, None))
                    .collect::<Result<Vec<_>, _>>()?;
                // At most MEMBERS_MAX urls: a pairwise check needs no set type in the module.
                let twice = members.iter().enumerate().any(|(i, m)| {
                    members[..i]
                        .iter()
                        .any(|other| other.http_url == m.http_url)
                });
                if twice {
                    return Err(invalid("`urls` names a server twice"));
                }
                members
            }
        };
        let collections = match strings("collections")? {
            None => None,
            Some(names) => {
                if names.is_empty() {
                    return Err(invalid("`collections` is empty: name at least one"));
                }
                if names.len() > SUBSCRIPTION_COLLECTIONS_MAX {
                    return Err(invalid(&format!(
                        "`collections` names more than {SUBSCRIPTION_COLLECTIONS_MAX}"
                    )));
                }
                for name in &names {
                    validate_collection_name(name)
                        .map_err(|e| invalid(&format!("`collections`: {e}")))?;
                }
                Some(names)
            }
        };
        let write_mode = match text("writeChannel")? {
            None => WriteMode::default(),
            Some(name) => WriteMode::parse(&name).ok_or_else(|| {
                invalid(&format!(
                    "`writeChannel` is \"websocket\" or \"http\", not \"{name}\""
                ))
            })?,
        };
        Ok(OpenOptions {
            members,
            write_mode,
            token: text("token")?,
            name: text("name")?.unwrap_or_else(|| "cstore".to_owned()),
            collections,
        })
    }
}

/// What a browser replica is built from: IndexedDB for the log and the pending writes.
#[cfg(target_arch = "wasm32")]
type BrowserParts = Parts<IdbStore, ClusterTransport<PendingStore>, PendingStore, ChannelSender>;
/// Natively (tests, clippy) there is no IndexedDB: memory stands in.
#[cfg(not(target_arch = "wasm32"))]
type BrowserParts =
    Parts<MemoryStore, ClusterTransport<MemoryPending>, MemoryPending, ChannelSender>;

/// An error the opening recovered from: (code, message).
pub type Recovered = Option<(&'static str, String)>;

/// Builds the parts of replica `options.name`. A database too damaged to open is deleted
/// (with its pending writes: nothing in it can be trusted) and created afresh; that is
/// reported beside the parts so the status can say so.
async fn browser_parts(
    options: &OpenOptions,
) -> Result<(BrowserParts, FetchSender, Recovered), ReplicaError> {
    // The transport and the sender share the members: writes go where the replica knows the
    // leader is, and a failover found by either helps the other.
    let members = Rc::new(RefCell::new(Members::new(options.members.clone())));
    let token = options.token.as_deref();
    let http = FetchSender::for_members(members.clone(), token);
    let sender = ChannelSender::new(http.clone(), token, options.write_mode);
    #[cfg(target_arch = "wasm32")]
    {
        let (store, recovered) = open_idb_store(&options.name).await?;
        let pending = store.pending();
        let transport = ClusterTransport::new(members, token, pending.clone());
        let parts = Parts {
            store,
            transport,
            pending,
            sender,
        };
        Ok((parts, http, recovered))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let pending = MemoryPending::new();
        let parts = Parts {
            store: MemoryStore::new(),
            transport: ClusterTransport::new(members, token, pending.clone()),
            pending,
            sender,
        };
        Ok((parts, http, None))
    }
}

/// Opens the IndexedDB store of replica `name`. A database too damaged to open is deleted
/// (with its pending writes: nothing in it can be trusted) and created afresh; the error is
/// returned beside the store, for [`ReplicaHandle::note_recovered`].
#[cfg(target_arch = "wasm32")]
pub async fn open_idb_store(name: &str) -> Result<(IdbStore, Recovered), ReplicaError> {
    let storage = |e: IdbError| ReplicaError::Storage(e.into());
    match IdbStore::open(name).await {
        Ok(store) => Ok((store, None)),
        Err(IdbError::Corrupt(message)) => {
            IdbStore::destroy(name).await.map_err(storage)?;
            let store = IdbStore::open(name).await.map_err(storage)?;
            Ok((store, Some(("storage_corrupt", message))))
        }
        Err(error) => Err(storage(error)),
    }
}

/// `ws://host:port/path` → `http://host:port` (and wss → https).
pub fn http_base(ws_url: &str) -> Option<String> {
    let (scheme, rest) = if let Some(rest) = ws_url.strip_prefix("ws://") {
        ("http", rest)
    } else if let Some(rest) = ws_url.strip_prefix("wss://") {
        ("https", rest)
    } else {
        return None;
    };
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

/// A JS value as JSON (`undefined` is `null`).
fn to_json(value: &JsValue) -> Result<Value, ReplicaError> {
    if value.is_undefined() || value.is_null() {
        return Ok(Value::Null);
    }
    let text = js_sys::JSON::stringify(value)
        .map_err(|_| ReplicaError::InvalidArgument("value cannot be turned into JSON".into()))?;
    let text: String = text.into();
    serde_json::from_str(&text).map_err(|e| ReplicaError::InvalidArgument(e.to_string()))
}

/// A stored document as a JS object.
fn doc_to_js(doc: DocRef<'_>) -> JsValue {
    js_sys::JSON::parse(doc.doc.as_str()).expect("stored documents are valid JSON")
}

/// Documents as a JS array, parsed in one `JSON.parse`.
fn docs_to_js<'a>(docs: impl ExactSizeIterator<Item = DocRef<'a>>) -> JsValue {
    let mut text = String::with_capacity(2 + docs.len() * 64);
    text.push('[');
    for (i, doc) in docs.enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(doc.doc.as_str());
    }
    text.push(']');
    js_sys::JSON::parse(&text).expect("stored documents are valid JSON")
}

fn set(object: &js_sys::Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property of a plain fresh object cannot fail.
    let _ = js_sys::Reflect::set(object, &key.into(), &value.into());
}

/// The JS object of `status()`.
pub fn status_to_js(status: &Status, client: &str) -> JsValue {
    let object = js_sys::Object::new();
    set(&object, "online", status.online);
    set(&object, "connected", status.connected);
    set(&object, "role", ROLE);
    set(&object, "appliedLsn", status.applied_lsn.0 as f64);
    set(&object, "leaderLsn", status.leader_lsn.0 as f64);
    set(&object, "lag", status.lag() as f64);
    set(&object, "pendingWrites", status.pending_writes as f64);
    let last_error = match &status.last_error {
        Some(error) => {
            let e = js_sys::Object::new();
            set(&e, "code", error.code.as_str());
            set(&e, "message", error.message.as_str());
            e.into()
        }
        None => JsValue::NULL,
    };
    set(&object, "lastError", last_error);
    set(&object, "rebootstraps", status.rebootstraps as f64);
    set(
        &object,
        "member",
        status
            .member
            .as_deref()
            .map_or(JsValue::NULL, JsValue::from_str),
    );
    set(&object, "memberSwitches", status.member_switches as f64);
    let refused = js_sys::Array::new();
    for member in &status.refused_members {
        let m = js_sys::Object::new();
        set(&m, "url", member.url.as_str());
        set(&m, "code", member.code.as_str());
        set(&m, "message", member.message.as_str());
        refused.push(&m);
    }
    set(&object, "refusedMembers", refused);
    set(&object, "closed", status.closed);
    set(&object, "clientId", client);
    object.into()
}

fn rejected_to_js(write: &RejectedWrite) -> JsValue {
    let object = js_sys::Object::new();
    set(&object, "seq", write.seq as f64);
    set(&object, "code", write.code.as_str());
    set(&object, "message", write.message.as_str());
    let ops = js_sys::JSON::parse(&write.ops_json).unwrap_or(JsValue::NULL);
    set(&object, "ops", ops);
    object.into()
}

fn written(id: &str) -> JsValue {
    let object = js_sys::Object::new();
    set(&object, "id", id);
    set(&object, "pending", true);
    object.into()
}

/// `future_to_promise` over a boxed future: one instantiation of its task code for every
/// method that returns a promise, instead of one per future type (a few KB of wasm each).
fn promise(
    future: impl std::future::Future<Output = Result<JsValue, JsValue>> + 'static,
) -> js_sys::Promise {
    let future: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>> =
        Box::pin(future);
    wasm_bindgen_futures::future_to_promise(future)
}

/// The promise of one write: every write method shares this one future (and its code).
fn write_promise(
    handle: Rc<ReplicaHandle>,
    prepared: Result<(String, Txn), ReplicaError>,
) -> js_sys::Promise {
    promise(async move {
        let (id, txn) = prepared?;
        handle.write(txn).await?;
        Ok(written(&id))
    })
}

fn parse_query(query: &JsValue) -> Result<FindQuery, ReplicaError> {
    Ok(FindQuery::parse(&to_json(query)?)?)
}

impl Replica {
    /// Wraps a replica opened in Rust (with any store and transport): for tests and
    /// measurements of this face over an in-browser leader.
    pub fn from_handle(handle: ReplicaHandle) -> Replica {
        Replica {
            handle: Rc::new(handle),
        }
    }
}

#[wasm_bindgen]
impl Replica {
    /// Opens a replica of the leader at `options.url` and starts syncing.
    pub async fn open(options: JsValue) -> Result<Replica, JsValue> {
        let options = OpenOptions::parse(&to_json(&options)?)?;
        let (parts, sender, recovered) = browser_parts(&options).await?;
        let read_index: ReadIndexFn = Rc::new(move || {
            let sender = sender.clone();
            Box::pin(async move { sender.read_index().await })
        });
        let settings = Settings {
            subscription: options.collections.clone(),
            read_index: Some(read_index),
        };
        let handle = ReplicaHandle::open_with(parts, settings).await?;
        if let Some((code, message)) = recovered {
            handle.note_recovered(code, &message);
        }
        Ok(Replica {
            handle: Rc::new(handle),
        })
    }

    /// The document, or `undefined`.
    pub fn get(&self, collection: &str, id: &str) -> Result<JsValue, JsValue> {
        self.handle.check_subscribed(collection)?;
        Ok(self.handle.with_doc(collection, id, |doc| {
            doc.map_or(JsValue::UNDEFINED, doc_to_js)
        }))
    }

    /// Resolves (with the LSN waited for) once a local read sees every write acknowledged
    /// by the cluster before this call: the read index, then the local copy applying it.
    /// Rejects with `offline` (no connection) or `unavailable` (no answer, no quorum).
    #[wasm_bindgen(js_name = readBarrier)]
    pub fn read_barrier(&self) -> js_sys::Promise {
        let handle = self.handle.clone();
        promise(async move {
            let lsn = handle.read_barrier().await?;
            Ok(JsValue::from_f64(lsn.0 as f64))
        })
    }

    /// The collections this replica follows (`null`: all).
    pub fn collections(&self) -> JsValue {
        match self.handle.subscription() {
            Some(names) => names
                .iter()
                .map(|n| JsValue::from_str(n))
                .collect::<js_sys::Array>()
                .into(),
            None => JsValue::NULL,
        }
    }

    /// The documents matching `query` (`{filter, sort, limit, skip}`).
    pub fn find(&self, collection: &str, query: JsValue) -> Result<JsValue, JsValue> {
        self.handle.check_subscribed(collection)?;
        let query = parse_query(&query)?;
        Ok(self
            .handle
            .find_with(collection, &query, |docs| docs_to_js(docs.iter().copied()))?)
    }

    /// How many documents match `filter`.
    pub fn count(&self, collection: &str, filter: JsValue) -> Result<f64, JsValue> {
        self.handle.check_subscribed(collection)?;
        let filter = Filter::parse(&to_json(&filter)?).map_err(ReplicaError::from)?;
        Ok(self.handle.count(collection, &filter) as f64)
    }

    /// Inserts `doc`; resolves with `{id, pending: true}` once queued durably.
    pub fn insert(&self, collection: String, doc: JsValue) -> js_sys::Promise {
        let prepared = to_json(&doc).and_then(|doc| self.handle.insert_txn(&collection, doc));
        write_promise(self.handle.clone(), prepared)
    }

    /// Creates or replaces `doc` (which has an `_id`).
    pub fn put(&self, collection: String, doc: JsValue) -> js_sys::Promise {
        let prepared = to_json(&doc).and_then(|doc| self.handle.put_txn(&collection, doc));
        write_promise(self.handle.clone(), prepared)
    }

    /// Merges `patch` into document `id`.
    pub fn update(&self, collection: String, id: String, patch: JsValue) -> js_sys::Promise {
        let prepared = to_json(&patch)
            .and_then(|patch| self.handle.update_txn(&collection, &id, &patch))
            .map(|txn| (id, txn));
        write_promise(self.handle.clone(), prepared)
    }

    /// Removes document `id`.
    pub fn remove(&self, collection: String, id: String) -> js_sys::Promise {
        let txn = self.handle.remove_txn(&collection, &id);
        write_promise(self.handle.clone(), Ok((id, txn)))
    }

    /// Calls `callback(docs)` with the result of `query` now and after each change to it.
    pub fn watch(
        &self,
        collection: &str,
        query: JsValue,
        callback: js_sys::Function,
    ) -> Result<u32, JsValue> {
        let query = parse_query(&query)?;
        let callback = Rc::new(move |docs: &[StoredDoc]| {
            let _ = callback.call1(
                &JsValue::NULL,
                &docs_to_js(docs.iter().map(StoredDoc::to_ref)),
            );
        });
        Ok(self.handle.watch(collection, query, callback)?)
    }

    /// Stops a watch.
    pub fn unwatch(&self, id: u32) -> bool {
        self.handle.unwatch(id)
    }

    /// The replica's status.
    pub fn status(&self) -> JsValue {
        status_to_js(&self.handle.status(), self.handle.client_id())
    }

    /// Calls `callback(status)` after each batch of status changes.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, callback: js_sys::Function) {
        let client = self.handle.client_id().to_owned();
        self.handle.on_status(Rc::new(move |status: &Status| {
            let _ = callback.call1(&JsValue::NULL, &status_to_js(status, &client));
        }));
    }

    /// Calls `callback({seq, code, message, ops})` for each write the leader refuses.
    #[wasm_bindgen(js_name = onRejected)]
    pub fn on_rejected(&self, callback: js_sys::Function) {
        self.handle
            .on_rejected(Rc::new(move |write: &RejectedWrite| {
                let _ = callback.call1(&JsValue::NULL, &rejected_to_js(write));
            }));
    }

    /// Resolves when every pending write is confirmed or rejected.
    pub fn flush(&self) -> js_sys::Promise {
        let handle = self.handle.clone();
        promise(async move {
            handle.flush().await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops syncing; resolves when the background loops ended.
    pub fn close(&self) -> js_sys::Promise {
        let handle = self.handle.clone();
        promise(async move {
            handle.close().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::ErrorCode;
    use serde_json::json;

    #[test]
    fn options_default_the_http_url_from_the_ws_url() {
        let options = OpenOptions::parse(&json!({"url": "wss://db.example:8443/v1/replicate"}));
        let options = options.unwrap();
        assert_eq!(options.members.len(), 1);
        assert_eq!(options.members[0].http_url, "https://db.example:8443");
        assert_eq!(options.name, "cstore");
        assert_eq!(options.collections, None);
        assert_eq!(
            http_base("ws://127.0.0.1:7070/v1/replicate?token=x").unwrap(),
            "http://127.0.0.1:7070"
        );
        let bad = OpenOptions::parse(&json!({"url": "http://x"})).unwrap_err();
        assert_eq!(bad.code(), "invalid_options");
        assert_eq!(options.write_mode, WriteMode::Channel);
        let http =
            OpenOptions::parse(&json!({"url": "ws://x/v1/replicate", "writeChannel": "http"}));
        assert_eq!(http.unwrap().write_mode, WriteMode::Http);
        for bad in [json!("tcp"), json!(true)] {
            let options = json!({"url": "ws://x/v1/replicate", "writeChannel": bad});
            let error = OpenOptions::parse(&options).unwrap_err();
            assert_eq!(error.code(), "invalid_options", "{options}");
        }
        let unknown = OpenOptions::parse(&json!({"url": "ws://x", "tokn": "t"})).unwrap_err();
        assert_eq!(unknown.code(), "invalid_options");
        assert!(OpenOptions::parse(&json!({})).is_err());
        let explicit =
            OpenOptions::parse(&json!({"url": "ws://x/v1/replicate", "httpUrl": "http://y"}));
        assert_eq!(explicit.unwrap().members[0].http_url, "http://y");
    }

    #[test]
    fn options_name_a_cluster_by_its_members() {
        let options = OpenOptions::parse(&json!({"urls": [
            "ws://a:1/v1/replicate", "ws://b:2/v1/replicate", "wss://c:3/v1/replicate"
        ]}))
        .unwrap();
        let http: Vec<&str> = options
            .members
            .iter()
            .map(|m| m.http_url.as_str())
            .collect();
        assert_eq!(http, ["http://a:1", "http://b:2", "https://c:3"]);
        assert_eq!(options.members[1].ws_url, "ws://b:2/v1/replicate");

        let refused = [
            json!({"urls": []}),
            json!({"url": "ws://a/v1/replicate", "urls": ["ws://b/v1/replicate"]}),
            json!({"urls": ["ws://a/v1/replicate", "ws://a/v1/replicate"]}),
            json!({"urls": ["ws://a/v1/replicate", "http://b"]}),
            json!({"urls": "ws://a/v1/replicate"}),
            json!({"urls": ["ws://a/v1/replicate", 3]}),
            json!({"urls": ["ws://a/v1/replicate"], "httpUrl": "http://a"}),
        ];
        for options in refused {
            let error = OpenOptions::parse(&options).unwrap_err();
            assert_eq!(error.code(), "invalid_options", "{options}");
        }
    }

    #[test]
    fn options_subscribe_to_valid_collections() {
        let options = OpenOptions::parse(&json!({"url": "ws://a/v1/replicate",
                                                 "collections": ["notes", "tags"]}));
        assert_eq!(
            options.unwrap().collections,
            Some(vec!["notes".to_owned(), "tags".to_owned()])
        );
        for collections in [json!([]), json!([""]), json!(["_cluster"]), json!("notes")] {
            let options = json!({"url": "ws://a/v1/replicate", "collections": collections});
            let error = OpenOptions::parse(&options).unwrap_err();
            assert_eq!(error.code(), "invalid_options", "{options}");
        }
    }
}
