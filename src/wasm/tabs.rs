//! Tabs and their ports. Each tab holds a Web Lock for as long as it lives and
//! tells the worker its name; the worker queues a request for the same lock,
//! which is granted only when the tab is gone (a port gives no such signal).

use super::convert;
use crate::engine::live::{TabId, TabUpdates};
use crate::engine::request::Request;
use crate::engine::Engine;
use js_sys::{Array, Function, Reflect};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, MessagePort};

struct Tab {
    port: MessagePort,
    /// Kept alive as long as the tab is connected; dropping it detaches the handler.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

struct Shared {
    engine: Engine,
    tabs: HashMap<TabId, Tab>,
}

/// The worker: one engine, any number of tabs.
#[wasm_bindgen]
pub struct FerryWorker {
    shared: Rc<RefCell<Shared>>,
}

#[wasm_bindgen]
impl FerryWorker {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<FerryWorker, JsValue> {
        let engine = Engine::open_in_memory().map_err(|e| convert::error(&e))?;
        Ok(FerryWorker {
            shared: Rc::new(RefCell::new(Shared {
                engine,
                tabs: HashMap::new(),
            })),
        })
    }

    /// Serves a newly connected tab on `port`.
    pub fn connect(&self, port: MessagePort) {
        let tab = self.shared.borrow_mut().engine.connect_tab();
        let shared = Rc::downgrade(&self.shared);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(shared) = shared.upgrade() {
                on_message(&shared, tab, event.data());
            }
        });
        port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        self.shared.borrow_mut().tabs.insert(
            tab,
            Tab {
                port,
                _on_message: on_message,
            },
        );
    }
}

fn on_message(shared: &Rc<RefCell<Shared>>, tab: TabId, data: JsValue) {
    let kind = Reflect::get(&data, &"type".into())
        .ok()
        .and_then(|t| t.as_string())
        .unwrap_or_default();
    match kind.as_str() {
        "hello" => {
            if let Some(lock) = Reflect::get(&data, &"lock".into())
                .ok()
                .and_then(|l| l.as_string())
            {
                watch_tab_lock(shared, tab, &lock);
            }
        }
        "bye" => {
            // Detached in a later task: this very closure is running now.
            let shared = shared.clone();
            wasm_bindgen_futures::spawn_local(async move { disconnect(&shared, tab) });
        }
        _ => handle_request(shared, tab, &data),
    }
}

fn handle_request(shared: &Rc<RefCell<Shared>>, tab: TabId, data: &JsValue) {
    let id = Reflect::get(data, &"id".into()).unwrap_or(JsValue::UNDEFINED);
    let mut state = shared.borrow_mut();
    let (updates, reply) = match serde_wasm_bindgen::from_value::<Request>(data.clone()) {
        Ok(request) => {
            let handled = state.engine.handle(tab, request);
            (handled.updates, handled.reply)
        }
        Err(e) => (Vec::new(), Err(crate::Error::BadRequest(e.to_string()))),
    };
    // Updates first: a tab that awaits its write then finds it in its live queries.
    for tab_updates in &updates {
        post_updates(&state, tab_updates);
    }
    let message = match &reply {
        Ok(response) => convert::object(&[
            ("type", "reply".into()),
            ("id", id),
            ("ok", convert::response(response)),
        ]),
        Err(err) => convert::object(&[
            ("type", "reply".into()),
            ("id", id),
            ("error", convert::error(err)),
        ]),
    };
    if let Some(t) = state.tabs.get(&tab) {
        post(&t.port, &message);
    }
}

fn post_updates(state: &Shared, tab_updates: &TabUpdates) {
    let Some(tab) = state.tabs.get(&tab_updates.tab) else {
        return;
    };
    let updates: Array = tab_updates
        .updates
        .iter()
        .map(|update| {
            let subscription = JsValue::from_f64(update.subscription as f64);
            match &update.change {
                Ok(patch) => convert::object(&[
                    ("subscription", subscription),
                    ("patch", convert::patch(patch)),
                ]),
                Err(err) => convert::object(&[
                    ("subscription", subscription),
                    ("error", convert::error_data(err)),
                ]),
            }
        })
        .collect();
    post(
        &tab.port,
        &convert::object(&[("type", "live".into()), ("updates", updates.into())]),
    );
}

fn post(port: &MessagePort, message: &JsValue) {
    if let Err(e) = port.post_message(message) {
        web_sys::console::error_2(&"ferrydb: postMessage failed".into(), &e);
    }
}

fn disconnect(shared: &Rc<RefCell<Shared>>, tab: TabId) {
    let mut state = shared.borrow_mut();
    state.engine.disconnect_tab(tab);
    if let Some(t) = state.tabs.remove(&tab) {
        t.port.set_onmessage(None);
        t.port.close();
    }
}

/// Asks for the tab's lock; the grant means the tab has gone away.
fn watch_tab_lock(shared: &Rc<RefCell<Shared>>, tab: TabId, lock: &str) {
    let weak = Rc::downgrade(shared);
    let on_granted = Closure::once_into_js(move |_lock: JsValue| {
        if let Some(shared) = weak.upgrade() {
            disconnect(&shared, tab);
        }
    });
    let request = Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|nav| Reflect::get(&nav, &"locks".into()))
        .and_then(|locks| {
            let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
            request.call2(&locks, &lock.into(), &on_granted)
        });
    if let Err(e) = request {
        // Without Web Locks the tab is released only by an explicit goodbye.
        web_sys::console::warn_2(&"ferrydb: cannot watch tab lifetime".into(), &e);
    }
}
