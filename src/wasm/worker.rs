//! The worker's entry: opens the replica's files, recovers the host from
//! them, and hands each connecting tab's port to the [`Runtime`].

use super::files::{self, Choice, Files};
use super::runtime::Runtime;
use crate::engine::Now;
use crate::host::{Env, Host};
use js_sys::Reflect;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::{MessagePort, WorkerGlobalScope};

/// The worker: one host, any number of tabs.
#[wasm_bindgen]
pub struct FerryWorker {
    runtime: Rc<Runtime>,
    epoch: u64,
}

/// Opens the replica of database `name` for `user` (each user has separate
/// storage) on the backend `storage` allows: reads its files and recovers.
/// A leader tab's worker (`leader`) first fences out older leaders.
#[wasm_bindgen(js_name = openWorker)]
pub async fn open_worker(
    name: String,
    user: String,
    storage: String,
    leader: bool,
) -> Result<FerryWorker, JsValue> {
    let choice = Choice::parse(&storage)
        .ok_or_else(|| JsValue::from_str(&format!("unknown storage option `{storage}`")))?;
    let path = vec![name, user];
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    let (files, failures) = if leader {
        Files::open_fenced(choice, &parts).await
    } else {
        Files::open(choice, &parts).await
    };
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
    let stored = files.read_all().await;
    let online = global().navigator().on_line();
    let host = Host::open(
        stored,
        files.log_config(),
        files.backend_name().to_owned(),
        online,
        Rc::new(BrowserEnv),
    )
    .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let epoch = files.epoch();
    let runtime = Runtime::start(host, files, path);
    Ok(FerryWorker { runtime, epoch })
}

#[wasm_bindgen]
impl FerryWorker {
    /// Serves a newly connected tab on `port`.
    pub fn connect(&self, port: MessagePort) {
        self.runtime.connect(port);
    }

    /// A leader tab's worker: its fencing epoch (0 without OPFS).
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> f64 {
        self.epoch as f64
    }
}

pub fn global() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

#[wasm_bindgen]
extern "C" {
    /// Milliseconds since the worker started, on a clock that setting the
    /// system time does not move (`setTimeout` runs on the same one).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// `performance.now()` in whole milliseconds: what timers are set against.
pub fn global_now() -> u64 {
    performance_now() as u64
}

/// The browser's clocks and randomness.
struct BrowserEnv;

impl Env for BrowserEnv {
    /// `Date.now()` for timestamps, `performance.now()` for all timing.
    fn now(&self) -> Now {
        Now {
            wall: js_sys::Date::now() as u64,
            monotonic: performance_now() as u64,
        }
    }

    fn seed(&self) -> u64 {
        (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
    }

    /// `crypto.randomUUID()`: unique across devices, since the server keys
    /// mutation IDs by it.
    fn client_id(&self) -> String {
        Reflect::get(&js_sys::global(), &"crypto".into())
            .and_then(|crypto| {
                let f: js_sys::Function =
                    Reflect::get(&crypto, &"randomUUID".into())?.dyn_into()?;
                f.call0(&crypto)
            })
            .ok()
            .and_then(|id| id.as_string())
            // As integers: formatting an f64 would bring float printing into the wasm.
            .unwrap_or_else(|| format!("c{}-{}", js_sys::Date::now() as u64, self.seed()))
    }
}
