//! The IndexedDB edge of durable storage, for browsers without async OPFS
//! writes (Safari before 26): the same whole-file operations as `opfs`, each
//! file one record of one object store, committed with `durability: 'strict'`.

use super::io_error::IoError;
use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbObjectStore, IdbOpenDbRequest, IdbRequest, IdbTransaction, WorkerGlobalScope,
};

const STORE: &str = "files";

pub struct IdbDirectory {
    db: IdbDatabase,
}

/// A request's result as a promise (IndexedDB predates promises).
async fn request(call: &'static str, req: IdbRequest) -> Result<JsValue, IoError> {
    let promise = Promise::new(&mut |resolve, reject| {
        let ok = req.clone();
        let on_success = Closure::once_into_js(move |_: JsValue| {
            let _ = resolve.call1(
                &JsValue::UNDEFINED,
                &ok.result().unwrap_or(JsValue::UNDEFINED),
            );
        });
        let failed = req.clone();
        let on_error = Closure::once_into_js(move |_: JsValue| {
            let error = failed
                .error()
                .ok()
                .flatten()
                .map(JsValue::from)
                .unwrap_or(JsValue::NULL);
            let _ = reject.call1(&JsValue::UNDEFINED, &error);
        });
        req.set_onsuccess(Some(on_success.unchecked_ref()));
        req.set_onerror(Some(on_error.unchecked_ref()));
    });
    JsFuture::from(promise)
        .await
        .map_err(|e| IoError::new(call, e))
}

/// Resolves when a write transaction has committed (not merely been queued).
async fn committed(tx: &IdbTransaction) -> Result<(), IoError> {
    let promise = Promise::new(&mut |resolve, reject| {
        let on_complete = Closure::once_into_js(move |_: JsValue| {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        });
        let failed = tx.clone();
        let on_error = Closure::once_into_js(move |_: JsValue| {
            let error = failed.error().map(JsValue::from).unwrap_or(JsValue::NULL);
            let _ = reject.call1(&JsValue::UNDEFINED, &error);
        });
        tx.set_oncomplete(Some(on_complete.unchecked_ref()));
        tx.set_onerror(Some(on_error.unchecked_ref()));
        tx.set_onabort(Some(on_error.unchecked_ref()));
    });
    JsFuture::from(promise)
        .await
        .map(|_| ())
        .map_err(|e| IoError::new("transaction", e))
}

fn database_name(path: &[&str]) -> String {
    std::iter::once("ferrydb")
        .chain(path.iter().copied())
        .collect::<Vec<_>>()
        .join("/")
}

impl IdbDirectory {
    pub async fn open(path: &[&str]) -> Result<Self, IoError> {
        let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
        let factory = scope
            .indexed_db()
            .map_err(|e| IoError::new("indexedDB", e))?
            .ok_or_else(|| {
                IoError::new("indexedDB", JsValue::from_str("IndexedDB is not available"))
            })?;
        let open: IdbOpenDbRequest = factory
            .open_with_u32(&database_name(path), 1)
            .map_err(|e| IoError::new("indexedDB.open", e))?;
        let upgrading = open.clone();
        let on_upgrade = Closure::once_into_js(move |_: JsValue| {
            if let Ok(result) = upgrading.result() {
                let db: IdbDatabase = result.unchecked_into();
                let _ = db.create_object_store(STORE);
            }
        });
        open.set_onupgradeneeded(Some(on_upgrade.unchecked_ref()));
        let db: IdbDatabase = request("indexedDB.open", open.into())
            .await?
            .unchecked_into();
        Ok(IdbDirectory { db })
    }

    /// A transaction on the store. Writes ask for `durability: 'strict'` (the
    /// default lets Chromium acknowledge before the data reaches the disk); the
    /// options argument is called through JS because web-sys marks it unstable.
    fn store(&self, mode: &str) -> Result<(IdbTransaction, IdbObjectStore), IoError> {
        let options = super::convert::object(&[("durability", "strict".into())]);
        let transaction: js_sys::Function = js_sys::Reflect::get(&self.db, &"transaction".into())
            .and_then(|f| f.dyn_into())
            .map_err(|e| IoError::new("transaction", e))?;
        let tx: IdbTransaction = transaction
            .call3(&self.db, &STORE.into(), &mode.into(), &options)
            .map_err(|e| IoError::new("transaction", e))?
            .unchecked_into();
        let store = tx
            .object_store(STORE)
            .map_err(|e| IoError::new("objectStore", e))?;
        Ok((tx, store))
    }

    pub async fn list(&self) -> Result<Vec<String>, IoError> {
        let (_, store) = self.store("readonly")?;
        let req = store
            .get_all_keys()
            .map_err(|e| IoError::new("getAllKeys", e))?;
        let keys: Array = request("getAllKeys", req).await?.unchecked_into();
        Ok(keys.iter().filter_map(|k| k.as_string()).collect())
    }

    pub async fn read(&self, name: &str) -> Result<Vec<u8>, IoError> {
        let (_, store) = self.store("readonly")?;
        let req = store
            .get(&name.into())
            .map_err(|e| IoError::new("get", e))?;
        let value = request("get", req).await?;
        if value.is_undefined() {
            return Err(IoError::new(
                "get",
                JsValue::from_str(&format!("no file {name}")),
            ));
        }
        Ok(Uint8Array::new(&value).to_vec())
    }

    pub async fn write(&self, name: &str, bytes: &[u8]) -> Result<(), IoError> {
        let (tx, store) = self.store("readwrite")?;
        store
            .put_with_key(&Uint8Array::from(bytes), &name.into())
            .map_err(|e| IoError::new("put", e))?;
        committed(&tx).await
    }

    pub async fn delete(&self, name: &str) -> Result<(), IoError> {
        let (tx, store) = self.store("readwrite")?;
        store
            .delete(&name.into())
            .map_err(|e| IoError::new("delete", e))?;
        committed(&tx).await
    }

    /// Calls `on_close` if the browser closes this connection, which it does
    /// when it deletes the database under us (site data cleared, storage
    /// evicted); never for our own [`IdbDirectory::close`].
    pub fn on_forced_close(&self, on_close: &js_sys::Function) {
        self.db.set_onclose(Some(on_close));
    }

    /// Closes this connection: `deleteDatabase` waits for every open one.
    pub fn close(&self) {
        self.db.close();
    }

    pub async fn remove_all(path: &[&str]) -> Result<(), IoError> {
        let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
        let Ok(Some(factory)) = scope.indexed_db() else {
            return Ok(());
        };
        let req = factory
            .delete_database(&database_name(path))
            .map_err(|e| IoError::new("deleteDatabase", e))?;
        request("deleteDatabase", req.into()).await.map(|_| ())
    }
}
