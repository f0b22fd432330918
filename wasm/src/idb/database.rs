//! The replica's IndexedDB database: its schema, and the connection its stores share.
//!
//! [`IdbStore`](super::IdbStore) and [`PendingStore`](super::PendingStore) live in one
//! database per replica name, so one `deleteDatabase` drops everything a re-bootstrap must
//! drop, and both can share one connection. The connection closes itself when another context
//! asks to upgrade or delete the database (another tab destroying a corrupt store must not be
//! blocked by this one), and when the last store using it is dropped. Values are always
//! `Uint8Array`s of framed records; the two helpers at the end write and read them.

use std::rc::Rc;

use js_sys::Uint8Array;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Event, IdbDatabase, IdbObjectStore};

use super::IdbError;
use super::glue::{self, call};

/// The schema version; `upgrade` creates the object stores of each version.
const SCHEMA_VERSION: u32 = 1;
pub(crate) const LOG: &str = "log";
pub(crate) const SNAPSHOT: &str = "snapshot";
pub(crate) const META: &str = "meta";
pub(crate) const PENDING: &str = "pending";
pub(crate) const CLIENT_META: &str = "client_meta";

/// Creates the object stores of a schema version newer than `old_version`.
fn upgrade(db: &IdbDatabase, old_version: u32) -> Result<(), JsValue> {
    if old_version < 1 {
        for name in [LOG, SNAPSHOT, META, PENDING, CLIENT_META] {
            db.create_object_store(name)?;
        }
    }
    Ok(())
}

/// Opens (creating if needed) the database of replica `name`, closing the connection when
/// another context wants to upgrade or delete it (so this tab never blocks that).
pub(crate) async fn open_connection(name: &str) -> Result<Connection, IdbError> {
    let db = glue::open_database(name, SCHEMA_VERSION, upgrade).await?;
    let on_version_change: Closure<dyn FnMut(Event)> = {
        let db = db.clone();
        Closure::new(move |_: Event| db.close())
    };
    db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
    Ok(Connection(Rc::new(ConnectionInner {
        db,
        name: name.to_owned(),
        _on_version_change: on_version_change,
    })))
}

/// An open database, shared by an [`IdbStore`](super::IdbStore) and its [`PendingStore`](super::PendingStore)s; the connection
/// closes when the last of them is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Connection(Rc<ConnectionInner>);

#[derive(Debug)]
struct ConnectionInner {
    db: IdbDatabase,
    name: String,
    /// Closes `db` on `versionchange`; unregistered before it is freed.
    _on_version_change: Closure<dyn FnMut(Event)>,
}

impl Connection {
    pub(crate) fn db(&self) -> &IdbDatabase {
        &self.0.db
    }

    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }
}

impl Drop for ConnectionInner {
    fn drop(&mut self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

/// Copies a stored value out as bytes; anything but a `Uint8Array` is corrupt.
pub(crate) fn value_bytes(value: &JsValue, what: &str) -> Result<Vec<u8>, IdbError> {
    value
        .dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .ok_or_else(|| {
            IdbError::Corrupt(format!(
                "{what} is a {} value, not bytes",
                value.js_typeof().as_string().unwrap_or_default()
            ))
        })
}

/// Puts `bytes` under `key` (the request completes with the transaction).
pub(crate) fn put(store: &IdbObjectStore, key: &JsValue, bytes: &[u8]) -> Result<(), IdbError> {
    call(
        store.put_with_key(&Uint8Array::from(bytes), key),
        "queueing a put",
    )
    .map(drop)
}
