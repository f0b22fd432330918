//! The few IndexedDB calls this store needs, as Rust futures over `web-sys`.
//!
//! IndexedDB reports results through events on request and transaction objects. The `idb`
//! and `indexed_db_futures` crates wrap them, but each pins its own wasm-bindgen range, and
//! this crate must stay on the exact wasm-bindgen the test runner was built for; the glue we
//! need is small, so it is written here. Each wait registers `success`/`error` (or
//! `complete`/`abort`) handlers, resolves a oneshot channel from whichever fires first, and
//! unregisters the handlers when it ends or is dropped, so no event ever reaches a freed
//! closure.
//!
//! Transactions commit on their own once no request is pending at the end of a task. So a
//! caller issues every request of a transaction synchronously, makes the futures of all the
//! waits it needs (which registers their handlers at once), and only then awaits them: for a
//! write, the transaction's `complete` (the durability point). Nothing here awaits in the
//! middle of a transaction and then adds a request to it.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::{Closure, wasm_bindgen};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    Event, IdbDatabase, IdbFactory, IdbKeyRange, IdbObjectStore, IdbOpenDbRequest, IdbRequest,
    IdbTransaction, IdbTransactionMode,
};

use super::IdbError;

#[wasm_bindgen]
extern "C" {
    /// An `IDBDatabase` seen through the one binding web-sys keeps behind
    /// `web_sys_unstable_apis`.
    #[wasm_bindgen(js_name = IDBDatabase)]
    type DatabaseWithOptions;

    /// `IDBDatabase.transaction(names, mode, { durability })`; browsers that do not know the
    /// option ignore it.
    #[wasm_bindgen(method, catch, js_name = transaction)]
    fn transaction_with_options(
        this: &DatabaseWithOptions,
        store_names: &Array,
        mode: &str,
        options: &JsValue,
    ) -> Result<IdbTransaction, JsValue>;
}

type Handler = Closure<dyn FnMut(Event)>;
type Sender = Rc<RefCell<Option<oneshot::Sender<Result<JsValue, IdbError>>>>>;

/// Sends `result` if nothing was sent yet.
fn settle(sender: &Sender, result: Result<JsValue, IdbError>) {
    if let Some(tx) = sender.borrow_mut().take() {
        // The receiver is gone only when the wait was dropped; nobody wants the result then.
        let _ = tx.send(result);
    }
}

/// The IndexedDB factory of the current global (window or worker).
fn factory() -> Result<IdbFactory, IdbError> {
    let global = js_sys::global();
    let value = Reflect::get(&global, &JsValue::from_str("indexedDB"))
        .map_err(|e| IdbError::from_js("reading globalThis.indexedDB", &e))?;
    if value.is_undefined() || value.is_null() {
        return Err(IdbError::Unavailable(
            "this global has no indexedDB (private mode or an unsupported context)".into(),
        ));
    }
    value
        .dyn_into::<IdbFactory>()
        .map_err(|_| IdbError::Unavailable("globalThis.indexedDB is not an IDBFactory".into()))
}

/// Waits for a request's `success` (its result) or `error`. The handlers are registered when
/// this is called, not when the future is first polled, so a caller can issue several
/// requests, make their futures, and await them one after the other without missing an event.
pub(crate) fn request(
    req: &IdbRequest,
    context: &str,
) -> impl Future<Output = Result<JsValue, IdbError>> + use<> {
    let (tx, rx) = oneshot::channel();
    let sender: Sender = Rc::new(RefCell::new(Some(tx)));
    let on_success: Handler = {
        let (sender, req) = (sender.clone(), req.clone());
        let context = context.to_owned();
        Closure::new(move |_: Event| {
            let result = req.result().map_err(|e| IdbError::from_js(&context, &e));
            settle(&sender, result);
        })
    };
    let on_error: Handler = {
        let (sender, req) = (sender.clone(), req.clone());
        let context = context.to_owned();
        Closure::new(move |_: Event| {
            let error = match req.error() {
                Ok(Some(dom)) => IdbError::from_js(&context, &dom.into()),
                Ok(None) => IdbError::Failed(format!("{context}: request failed")),
                Err(e) => IdbError::from_js(&context, &e),
            };
            settle(&sender, Err(error));
        })
    };
    req.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    req.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let registration = Registration {
        target: Unregister::Request(req.clone()),
        _handlers: [on_success, on_error],
    };
    let context = context.to_owned();
    async move {
        let result = rx
            .await
            .unwrap_or_else(|_| Err(IdbError::Failed(format!("{context}: no answer"))));
        drop(registration);
        result
    }
}

/// Waits for a transaction's `complete` (IndexedDB's durability point) or `abort`. Like
/// [`request`], the handlers are registered at once.
pub(crate) fn transaction_done(
    transaction: &IdbTransaction,
    context: &str,
) -> impl Future<Output = Result<(), IdbError>> + use<> {
    let (tx, rx) = oneshot::channel();
    let sender: Sender = Rc::new(RefCell::new(Some(tx)));
    let on_complete: Handler = {
        let sender = sender.clone();
        Closure::new(move |_: Event| settle(&sender, Ok(JsValue::UNDEFINED)))
    };
    let on_abort: Handler = {
        let (sender, transaction) = (sender.clone(), transaction.clone());
        let context = context.to_owned();
        Closure::new(move |_: Event| {
            let error = match transaction.error() {
                Some(dom) => IdbError::from_js(&context, &dom.into()),
                None => IdbError::Failed(format!("{context}: transaction aborted")),
            };
            settle(&sender, Err(error));
        })
    };
    transaction.set_oncomplete(Some(on_complete.as_ref().unchecked_ref()));
    transaction.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
    let registration = Registration {
        target: Unregister::Transaction(transaction.clone()),
        _handlers: [on_complete, on_abort],
    };
    let context = context.to_owned();
    async move {
        let result = rx
            .await
            .map(|result| result.map(drop))
            .unwrap_or_else(|_| Err(IdbError::Failed(format!("{context}: no answer"))));
        drop(registration);
        result
    }
}

/// Two handlers registered on a request or transaction. Dropping it (when the wait ends, or
/// when its future is dropped early) first clears the handlers, then frees the closures, so no
/// event ever reaches a freed closure.
struct Registration {
    target: Unregister,
    _handlers: [Handler; 2],
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.target.clear();
    }
}

/// What to clear handlers on.
enum Unregister {
    Request(IdbRequest),
    Transaction(IdbTransaction),
    Open(IdbOpenDbRequest),
}

impl Unregister {
    fn clear(&self) {
        match self {
            Unregister::Request(req) => {
                req.set_onsuccess(None);
                req.set_onerror(None);
            }
            Unregister::Transaction(transaction) => {
                transaction.set_oncomplete(None);
                transaction.set_onabort(None);
            }
            Unregister::Open(req) => {
                req.set_onsuccess(None);
                req.set_onerror(None);
                req.set_onblocked(None);
                req.set_onupgradeneeded(None);
            }
        }
    }
}

/// Clears the handlers of an open or delete request when dropped, before its closures (which
/// are declared before it, so they drop after it).
struct ClearOnDrop(Unregister);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.clear();
    }
}

impl std::fmt::Debug for Unregister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unregister")
    }
}

/// How long an open or delete may stay `blocked` before it fails with `Blocked`. Our own
/// connections close on `versionchange`, and one that is just finishing a transaction ends
/// within milliseconds; a connection that is still open after this is another tab's.
pub const BLOCKED_GRACE_MS: i32 = 3_000;

/// Resolves after `ms` milliseconds (the global's `setTimeout`).
async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let set_timeout = Reflect::get(&js_sys::global(), &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match set_timeout {
            Some(set_timeout) => {
                let _ = set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(ms));
            }
            // No timers here: give up at once.
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Opens database `name` at `version`, running `upgrade(db, old_version)` when the stored
/// version is older. Fails with `Blocked` when another connection holds an older version open
/// for longer than [`BLOCKED_GRACE_MS`]; if the open succeeds after that, the late
/// connection is closed at once so it cannot block anyone else.
pub(crate) async fn open_database(
    name: &str,
    version: u32,
    upgrade: fn(&IdbDatabase, u32) -> Result<(), JsValue>,
) -> Result<IdbDatabase, IdbError> {
    let context = format!("opening database {name:?}");
    let req = factory()?.open_with_u32(name, version).map_err(|e| {
        match IdbError::from_js(&context, &e) {
            // `open` throws synchronously where storage is refused altogether.
            IdbError::Failed(text) => IdbError::Unavailable(text),
            other => other,
        }
    })?;
    let on_upgrade: Handler = {
        let req = req.clone();
        let context = context.clone();
        Closure::new(move |event: Event| {
            let old_version = Reflect::get(&event, &JsValue::from_str("oldVersion"))
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0) as u32;
            let outcome = req
                .result()
                .and_then(|db| db.dyn_into::<IdbDatabase>())
                .and_then(|db| upgrade(&db, old_version));
            if let Err(e) = outcome {
                web_sys::console::error_1(&JsValue::from_str(&format!(
                    "{context}: upgrade failed: {e:?}"
                )));
                // The abort fails the open request with an `AbortError`.
                if let Some(transaction) = req.transaction() {
                    let _ = transaction.abort();
                }
            }
        })
    };
    req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let result = wait_open_request(&req, name, &context, true).await;
    req.set_onupgradeneeded(None);
    drop(on_upgrade);
    result?
        .dyn_into::<IdbDatabase>()
        .map_err(|_| IdbError::Failed(format!("{context}: the result is not a database")))
}

/// Deletes database `name` (a no-op if it does not exist). Fails with `Blocked` when another
/// connection stays open for longer than [`BLOCKED_GRACE_MS`]; the deletion then still
/// happens once that connection closes.
pub(crate) async fn delete_database(name: &str) -> Result<(), IdbError> {
    let context = format!("deleting database {name:?}");
    let req = factory()?
        .delete_database(name)
        .map_err(|e| IdbError::from_js(&context, &e))?;
    wait_open_request(&req, name, &context, false)
        .await
        .map(drop)
}

/// Waits for an open or delete request: its result, its error, or `Blocked` once it has been
/// blocked for [`BLOCKED_GRACE_MS`]. After a `Blocked`, the handlers stay registered (their
/// closures are leaked, a few bytes once) so the late events land safely, and a database a late
/// success opens is closed.
async fn wait_open_request(
    req: &IdbOpenDbRequest,
    name: &str,
    context: &str,
    opens_database: bool,
) -> Result<JsValue, IdbError> {
    let (tx, rx) = oneshot::channel();
    let sender: Sender = Rc::new(RefCell::new(Some(tx)));
    let gave_up = Rc::new(std::cell::Cell::new(false));
    let (blocked_tx, blocked_rx) = oneshot::channel::<()>();
    let blocked_tx = RefCell::new(Some(blocked_tx));
    let on_success: Handler = {
        let (sender, req, gave_up) = (sender.clone(), req.clone(), gave_up.clone());
        let context = context.to_owned();
        Closure::new(move |_: Event| {
            let result = req.result().map_err(|e| IdbError::from_js(&context, &e));
            if gave_up.get() {
                if opens_database && let Ok(db) = result.map(JsCast::unchecked_into::<IdbDatabase>)
                {
                    db.close();
                }
                return;
            }
            settle(&sender, result);
        })
    };
    let on_error: Handler = {
        let (sender, req) = (sender.clone(), req.clone());
        let context = context.to_owned();
        Closure::new(move |event: Event| {
            // The request failed as a whole; nothing should bubble further.
            event.prevent_default();
            let error = match req.error() {
                Ok(Some(dom)) => IdbError::from_js(&context, &dom.into()),
                Ok(None) => IdbError::Failed(format!("{context}: failed")),
                Err(e) => IdbError::from_js(&context, &e),
            };
            // These names on open mean storage is not usable here at all.
            let error = match error {
                IdbError::Failed(text)
                    if text.contains("InvalidStateError") || text.contains("UnknownError") =>
                {
                    IdbError::Unavailable(text)
                }
                other => other,
            };
            settle(&sender, Err(error));
        })
    };
    let on_blocked: Handler = Closure::new(move |_: Event| {
        if let Some(tx) = blocked_tx.borrow_mut().take() {
            let _ = tx.send(());
        }
    });
    req.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    req.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    req.set_onblocked(Some(on_blocked.as_ref().unchecked_ref()));

    let blocked_too_long = async {
        if blocked_rx.await.is_ok() {
            sleep_ms(BLOCKED_GRACE_MS).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let answer = futures::future::select(rx, Box::pin(blocked_too_long)).await;
    match answer {
        futures::future::Either::Left((result, _)) => {
            let _unregister = ClearOnDrop(Unregister::Open(req.clone()));
            result.unwrap_or_else(|_| Err(IdbError::Failed(format!("{context}: no answer"))))
        }
        futures::future::Either::Right(((), _)) => {
            gave_up.set(true);
            on_success.forget();
            on_error.forget();
            on_blocked.forget();
            Err(IdbError::Blocked(name.to_owned()))
        }
    }
}

/// A transaction over `stores`. Read-write transactions ask for `durability: "strict"`, so
/// `complete` fires only once the data is flushed to disk (Chromium defaults to "relaxed").
pub(crate) fn transaction(
    db: &IdbDatabase,
    stores: &[&str],
    mode: IdbTransactionMode,
) -> Result<IdbTransaction, IdbError> {
    let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
    let context = format!("starting a transaction on {stores:?}");
    match mode {
        IdbTransactionMode::Readwrite => {
            let options = js_sys::Object::new();
            Reflect::set(&options, &"durability".into(), &"strict".into())
                .map_err(|e| IdbError::from_js(&context, &e))?;
            db.unchecked_ref::<DatabaseWithOptions>()
                .transaction_with_options(&names, "readwrite", &options)
        }
        _ => db.transaction_with_str_sequence_and_mode(&names, mode),
    }
    .map_err(|e| IdbError::from_js(&context, &e))
}

/// Object store `name` of `transaction`.
pub(crate) fn object_store(
    transaction: &IdbTransaction,
    name: &str,
) -> Result<IdbObjectStore, IdbError> {
    transaction
        .object_store(name)
        .map_err(|e| IdbError::from_js(&format!("object store {name:?}"), &e))
}

/// Turns the `Result<_, JsValue>` of a synchronous IndexedDB call into this layer's error.
pub(crate) fn call<T>(result: Result<T, JsValue>, context: &str) -> Result<T, IdbError> {
    result.map_err(|e| IdbError::from_js(context, &e))
}

/// The key of a `u64` (an LSN or a sequence number): an exact JS number.
pub(crate) fn key(value: u64) -> JsValue {
    assert!(value <= (1 << 53), "key {value} is beyond exact JS numbers");
    JsValue::from_f64(value as f64)
}

/// Keys `<= through`.
pub(crate) fn keys_through(through: u64) -> Result<IdbKeyRange, IdbError> {
    call(
        IdbKeyRange::upper_bound(&key(through)),
        "building a key range",
    )
}
