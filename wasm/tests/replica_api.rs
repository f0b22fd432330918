//! The JavaScript face of the browser replica (`Replica` in api.rs), called the way the npm
//! package calls it: JS option objects, promises, plain JS documents, `Error`s with `code`.
//!
//! The local copy is in IndexedDB (a fresh database per test). No leader is reachable here
//! (the URL points at a closed port), which is exactly the offline case: reads and writes
//! must work locally, writes stay pending, the status says why it is not connected. Syncing through this face is covered by `replica_server.rs`.

mod support;

use cstore_wasm::api::Replica;
use js_sys::{Array, Reflect};
use support::wait_until;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn js(json: &str) -> JsValue {
    js_sys::JSON::parse(json).expect("test JSON")
}

fn field(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).expect("an object")
}

fn code_of(error: &JsValue) -> String {
    assert!(
        error.is_instance_of::<js_sys::Error>(),
        "{error:?} is not an Error"
    );
    field(error, "code").as_string().expect("a string code")
}

async fn offline_replica() -> Replica {
    // Port 9 (discard) on loopback: nothing listens, connects fail fast. A fresh database
    // name per test: IndexedDB outlives a replica.
    let name = format!("api-{:x}", cstore_wasm::time::random_u64());
    let options = format!(r#"{{"url": "ws://127.0.0.1:9/v1/replicate", "name": "{name}"}}"#);
    Replica::open(js(&options))
        .await
        .expect("open resolves without a leader")
}

#[wasm_bindgen_test]
async fn open_refuses_bad_options_with_a_code() {
    let error = Replica::open(js("{}")).await.unwrap_err();
    assert_eq!(code_of(&error), "invalid_options");
    let error = Replica::open(js(r#"{"url": "http://x/"}"#))
        .await
        .unwrap_err();
    assert_eq!(code_of(&error), "invalid_options");
}

#[wasm_bindgen_test]
async fn reads_and_writes_work_offline_through_the_js_face() {
    let replica = offline_replica().await;
    let written = JsFuture::from(replica.insert("notes".into(), js(r#"{"text": "hi", "n": 1}"#)))
        .await
        .unwrap();
    let id = field(&written, "id").as_string().unwrap();
    assert_eq!(field(&written, "pending"), JsValue::TRUE);
    JsFuture::from(replica.put("notes".into(), js(r#"{"_id": "fixed", "n": 2}"#)))
        .await
        .unwrap();
    JsFuture::from(replica.update("notes".into(), "fixed".into(), js(r#"{"n": 3}"#)))
        .await
        .unwrap();

    let doc = replica.get("notes", &id).unwrap();
    assert_eq!(field(&doc, "text").as_string().unwrap(), "hi");
    assert!(replica.get("notes", "missing").unwrap().is_undefined());
    let found: Array = replica
        .find(
            "notes",
            js(r#"{"filter": {"n": {"$gte": 2}}, "sort": {"n": -1}}"#),
        )
        .unwrap()
        .dyn_into()
        .unwrap();
    assert_eq!(found.length(), 1);
    assert_eq!(field(&found.get(0), "n").as_f64(), Some(3.0));
    assert_eq!(replica.count("notes", js("{}")).unwrap(), 2.0);
    assert_eq!(replica.count("nothing", JsValue::UNDEFINED).unwrap(), 0.0);

    let status = replica.status();
    assert_eq!(field(&status, "pendingWrites").as_f64(), Some(3.0));
    assert_eq!(field(&status, "connected"), JsValue::FALSE);
    assert_eq!(field(&status, "role").as_string().unwrap(), "replica");
    for key in [
        "online",
        "appliedLsn",
        "leaderLsn",
        "lag",
        "rebootstraps",
        "lastError",
    ] {
        assert!(
            Reflect::has(&status, &key.into()).unwrap(),
            "status lacks {key}"
        );
    }
    wait_until("a connect error in the status", 5_000, || {
        let error = field(&replica.status(), "lastError");
        !error.is_null() && field(&error, "code").as_string().is_some()
    })
    .await;

    JsFuture::from(replica.remove("notes".into(), "fixed".into()))
        .await
        .unwrap();
    assert!(replica.get("notes", "fixed").unwrap().is_undefined());
    JsFuture::from(replica.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn errors_carry_stable_codes() {
    let replica = offline_replica().await;
    let error = replica
        .find("c", js(r#"{"filter": {"a": {"$bogus": 1}}}"#))
        .unwrap_err();
    assert_eq!(code_of(&error), "invalid_query");
    let error = replica.find("c", js(r#"{"colour": 1}"#)).unwrap_err();
    assert_eq!(code_of(&error), "invalid_query");
    let error = JsFuture::from(replica.insert("c".into(), js("[1, 2]")))
        .await
        .unwrap_err();
    assert_eq!(code_of(&error), "invalid_argument");
    let error = JsFuture::from(replica.update("c".into(), "ghost".into(), js(r#"{"a": 1}"#)))
        .await
        .unwrap_err();
    assert_eq!(code_of(&error), "collection_not_found");
    JsFuture::from(replica.insert("c".into(), js(r#"{"_id": "a"}"#)))
        .await
        .unwrap();
    let error = JsFuture::from(replica.insert("c".into(), js(r#"{"_id": "a"}"#)))
        .await
        .unwrap_err();
    assert_eq!(code_of(&error), "already_exists");
    let error = JsFuture::from(replica.put("c".into(), js(r#"{"no_id": true}"#)))
        .await
        .unwrap_err();
    assert_eq!(code_of(&error), "invalid_argument");

    JsFuture::from(replica.close()).await.unwrap();
    let error = JsFuture::from(replica.insert("c".into(), js("{}")))
        .await
        .unwrap_err();
    assert_eq!(code_of(&error), "closed");
}

#[wasm_bindgen_test]
async fn watch_calls_back_with_plain_documents() {
    let replica = offline_replica().await;
    let calls = Array::new();
    let sink = calls.clone();
    let callback = wasm_bindgen::closure::Closure::<dyn Fn(JsValue)>::new(move |docs: JsValue| {
        sink.push(&docs);
    });
    let query = js(r#"{"filter": {"done": false}, "sort": {"_id": 1}}"#);
    let id = replica
        .watch(
            "todo",
            query,
            callback
                .as_ref()
                .unchecked_ref::<js_sys::Function>()
                .clone(),
        )
        .unwrap();
    wait_until("the first call", 1_000, || calls.length() == 1).await;
    assert_eq!(calls.get(0).dyn_into::<Array>().unwrap().length(), 0);
    JsFuture::from(replica.insert("todo".into(), js(r#"{"_id": "t1", "done": false}"#)))
        .await
        .unwrap();
    JsFuture::from(replica.insert("todo".into(), js(r#"{"_id": "t2", "done": true}"#)))
        .await
        .unwrap();
    wait_until("the insert's call", 1_000, || calls.length() == 2).await;
    let docs: Array = calls.get(1).dyn_into().unwrap();
    assert_eq!(docs.length(), 1);
    assert_eq!(field(&docs.get(0), "_id").as_string().unwrap(), "t1");
    assert!(replica.unwatch(id));
    assert!(!replica.unwatch(id));
    JsFuture::from(replica.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn close_returns_promptly_even_while_connecting_and_writing() {
    // An address that never answers: connects and fetches hang rather than fail.
    let name = format!("api-{:x}", cstore_wasm::time::random_u64());
    let options = format!(r#"{{"url": "ws://10.255.255.1:9/v1/replicate", "name": "{name}"}}"#);
    let replica = Replica::open(js(&options)).await.unwrap();
    JsFuture::from(replica.insert("c".into(), js("{}")))
        .await
        .unwrap();
    cstore_wasm::time::sleep(50).await;
    let started = js_sys::Date::now();
    JsFuture::from(replica.close()).await.unwrap();
    let took_ms = js_sys::Date::now() - started;
    assert!(took_ms < 1_000.0, "close took {took_ms} ms");
    assert_eq!(field(&replica.status(), "closed"), JsValue::TRUE);
}
