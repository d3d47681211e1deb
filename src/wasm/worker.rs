//! The worker's state: one engine over the recovered replica, the files its
//! log goes to, and the connected tabs. Storage I/O runs in one background
//! task at a time; commits made while it writes are batched into its next
//! write (group commit).

use super::convert;
use super::files::{self, Choice, Files};
use super::tabs::{self, Tabs};
use crate::engine::durability::StorageStatus;
use crate::engine::Engine;
use crate::storage::{self, recover, LogConfig};
use js_sys::Reflect;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::MessagePort;

/// Storage as tabs see it: which backend, what is on disk, what went wrong.
pub struct StorageState {
    pub files: Rc<Files>,
    pub path: Vec<String>,
    pub flushing: bool,
    /// What tabs are told, and when a stalled log is retried (decided by
    /// the engine's `StorageStatus`).
    pub status: StorageStatus,
}

pub struct Shared {
    pub engine: Engine,
    pub tabs: Tabs,
    pub storage: StorageState,
    /// Set once a tab opened the app with a sync server.
    pub sync: Option<super::sync::SyncHost>,
}

/// The worker: one engine, any number of tabs.
#[wasm_bindgen]
pub struct FerryWorker {
    shared: Rc<RefCell<Shared>>,
}

/// Opens the replica of database `name` for `user` (each user has separate
/// storage) on the backend `storage` allows: reads its files and recovers.
#[wasm_bindgen(js_name = openWorker)]
pub async fn open_worker(
    name: String,
    user: String,
    storage: String,
) -> Result<FerryWorker, JsValue> {
    let choice = Choice::parse(&storage)
        .ok_or_else(|| JsValue::from_str(&format!("unknown storage option `{storage}`")))?;
    let path = vec![name, user];
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    let (files, failures) = Files::open(choice, &parts).await;
    for failure in &failures {
        web_sys::console::warn_2(
            &"ferrydb: storage backend unavailable".into(),
            &files::describe(failure),
        );
    }
    if files.backend_name() != "memory" {
        // Best effort: the browser may refuse, and the data is still stored.
        wasm_bindgen_futures::spawn_local(async {
            super::opfs::request_persistence().await;
        });
    }
    let (engine, error) = match open_engine(&files).await {
        Ok(engine) => (engine, None),
        // Unreadable storage must not lock the app out: serve from memory, say so.
        Err(e) => (
            Engine::open_durable(recover(Vec::new(), LogConfig::default()).map_err(to_js)?)
                .map_err(|e| convert::error(&e))?,
            Some(e),
        ),
    };
    let mut engine = engine;
    engine.set_clock(Box::new(super::sync::now));
    let durable_seq = engine.durable_seq();
    let shared = Rc::new(RefCell::new(Shared {
        engine,
        tabs: Tabs::default(),
        storage: StorageState {
            files: Rc::new(files),
            path,
            flushing: false,
            status: StorageStatus::new(durable_seq, error),
        },
        sync: None,
    }));
    watch_for_clearing(&shared);
    Ok(FerryWorker { shared })
}

/// When the browser deletes the files under the running worker (site data
/// cleared), the log stops for good and the tabs are told at once, before
/// any write finds out.
fn watch_for_clearing(shared: &Rc<RefCell<Shared>>) {
    let weak = Rc::downgrade(shared);
    let on_close = Closure::once_into_js(move || {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let released = {
            let mut state = shared.borrow_mut();
            let Shared {
                engine, storage, ..
            } = &mut *state;
            let released =
                engine.storage_cleared("the browser closed the IndexedDB connection".into());
            if storage.status.failed(engine.storage_stalled()) {
                tabs::broadcast_storage(&state);
            }
            released
        };
        // Mutations held until they were on disk go out from memory now.
        super::sync::handled(&shared, released);
    });
    shared
        .borrow()
        .storage
        .files
        .on_forced_close(on_close.unchecked_ref());
}

async fn open_engine(files: &Files) -> Result<Engine, storage::Error> {
    let recovered = recover(files.read_all().await?, LogConfig::default())?;
    Engine::open_durable(recovered).map_err(|e| match e {
        crate::Error::Storage(e) => e,
        other => storage::Error::Unavailable(other.to_string()),
    })
}

fn to_js(e: storage::Error) -> JsValue {
    convert::error(&crate::Error::Storage(e))
}

#[wasm_bindgen]
impl FerryWorker {
    /// Serves a newly connected tab on `port`.
    pub fn connect(&self, port: MessagePort) {
        tabs::connect(&self.shared, port);
    }
}

/// Starts writing pending storage I/O unless a writer is already running.
pub fn flush_soon(shared: &Rc<RefCell<Shared>>) {
    {
        let mut state = shared.borrow_mut();
        if state.storage.flushing {
            return;
        }
        state.storage.flushing = true;
    }
    let shared = shared.clone();
    wasm_bindgen_futures::spawn_local(async move { flush(shared).await });
}

async fn flush(shared: Rc<RefCell<Shared>>) {
    loop {
        let next = {
            let mut state = shared.borrow_mut();
            state
                .engine
                .next_io()
                .map(|req| (req, state.storage.files.clone()))
        };
        let Some((request, files)) = next else {
            break;
        };
        let result = files.perform(&request).await;
        let saved = {
            let mut state = shared.borrow_mut();
            let Shared {
                engine, storage, ..
            } = &mut *state;
            let done = engine.io_done(request.id, result);
            if storage
                .status
                .io_done(engine.durable_seq(), engine.storage_stalled())
            {
                tabs::broadcast_storage(&state);
            }
            done.map(|d| d.sync)
        };
        // Mutations now on disk may be pushed.
        super::sync::handled(&shared, saved);
    }
    let mut state = shared.borrow_mut();
    state.storage.flushing = false;
    let Shared {
        engine, storage, ..
    } = &mut *state;
    // Stalled: keep serving from memory, tell the tabs, retry if it can help.
    let idle = storage.status.idle(engine.storage_stalled());
    if idle.tell {
        tabs::broadcast_storage(&state);
    }
    drop(state);
    if let Some(ms) = idle.retry_in_ms {
        retry_after(shared, ms);
    }
}

fn retry_after(shared: Rc<RefCell<Shared>>, ms: u32) {
    let retry = Closure::once_into_js(move || {
        {
            let mut state = shared.borrow_mut();
            state.storage.status.retry_fired();
            state.engine.resume_storage();
        }
        flush_soon(&shared);
    });
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let _ = global
        .set_timeout_with_callback_and_timeout_and_arguments_0(retry.unchecked_ref(), ms as i32);
}

/// Deletes every file of the database and starts over with an empty replica.
pub async fn delete_database(shared: &Rc<RefCell<Shared>>) -> Result<(), crate::Error> {
    let (files, path) = {
        let state = shared.borrow();
        (state.storage.files.clone(), state.storage.path.clone())
    };
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    files.remove_all(&parts).await?;
    let choice = match files.backend_name() {
        "indexeddb+opfs" => Choice::Auto,
        "opfs" => Choice::Opfs,
        "indexeddb" => Choice::IndexedDb,
        _ => Choice::Memory,
    };
    let (fresh, _) = Files::open(choice, &parts).await;
    {
        let mut state = shared.borrow_mut();
        state.engine.replace_replica(
            recover(Vec::new(), LogConfig::default())?,
            &random_uuid(),
            Some(random_seed()),
        )?;
        state.storage.files = Rc::new(fresh);
        state.storage.status = StorageStatus::default();
    }
    watch_for_clearing(shared);
    flush_soon(shared);
    super::sync::restart(shared);
    Ok(())
}

/// A fresh client ID (`crypto.randomUUID()`): unique across devices, since
/// the server keys mutation IDs by it.
pub fn random_uuid() -> String {
    Reflect::get(&js_sys::global(), &"crypto".into())
        .and_then(|crypto| {
            let f: js_sys::Function = Reflect::get(&crypto, &"randomUUID".into())?.dyn_into()?;
            f.call0(&crypto)
        })
        .ok()
        .and_then(|id| id.as_string())
        // As integers: formatting an f64 would bring float printing into the wasm.
        .unwrap_or_else(|| format!("c{}-{}", js_sys::Date::now() as u64, random_seed()))
}

/// A seed for the sync client's backoff jitter.
pub fn random_seed() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}
