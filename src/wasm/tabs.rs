//! Tabs and their ports. Each tab holds a Web Lock for as long as it lives and
//! tells the worker its name; the worker queues a request for the same lock,
//! which is granted only when the tab is gone (a port gives no such signal).

use super::convert;
use super::sync;
use super::worker::{self, Shared};
use crate::engine::error::ErrorData;
use crate::engine::live::{TabId, TabUpdates};
use crate::engine::replication;
use crate::engine::request::Request;
use crate::engine::sync::SyncEvent;
use crate::engine::AppOpened;
use js_sys::{Array, Function, Reflect};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, MessagePort};

pub struct Tab {
    port: MessagePort,
    /// Kept alive as long as the tab is connected; dropping it detaches the handler.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    /// For a tab that opened the app with a server: whether it has a token
    /// provider to ask. `None`: it does not sync.
    pub auth: Option<bool>,
    /// Why this tab may not use the replica (its app is older or newer than
    /// the one the worker runs); every request it sends gets this error.
    refused: Option<ErrorData>,
}

impl Tab {
    pub fn port(&self) -> &MessagePort {
        &self.port
    }
}

/// The connected tabs, by id. A `Vec` scanned by id, not a `HashMap`: a
/// worker serves a handful of tabs, and each map instantiation costs the wasm
/// kilobytes.
#[derive(Default)]
pub struct Tabs(Vec<(TabId, Tab)>);

impl Tabs {
    fn insert(&mut self, id: TabId, tab: Tab) {
        self.0.retain(|(t, _)| *t != id);
        self.0.push((id, tab));
    }

    pub fn get(&self, id: &TabId) -> Option<&Tab> {
        self.0.iter().find(|(t, _)| t == id).map(|(_, tab)| tab)
    }

    fn get_mut(&mut self, id: &TabId) -> Option<&mut Tab> {
        self.0.iter_mut().find(|(t, _)| t == id).map(|(_, tab)| tab)
    }

    fn remove(&mut self, id: &TabId) -> Option<Tab> {
        let at = self.0.iter().position(|(t, _)| t == id)?;
        Some(self.0.remove(at).1)
    }

    pub fn values(&self) -> impl Iterator<Item = &Tab> {
        self.0.iter().map(|(_, tab)| tab)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TabId, &Tab)> {
        self.0.iter().map(|(id, tab)| (id, tab))
    }
}

pub fn connect(shared: &Rc<RefCell<Shared>>, port: MessagePort) {
    let tab = shared.borrow_mut().engine.connect_tab();
    let weak = Rc::downgrade(shared);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Some(shared) = weak.upgrade() {
            on_message(&shared, tab, event.data());
        }
    });
    port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let mut state = shared.borrow_mut();
    post(&port, &storage_message(&state));
    state.tabs.insert(
        tab,
        Tab {
            port,
            _on_message: on_message,
            auth: None,
            refused: None,
        },
    );
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
        "open" => open_app(shared, tab, &data),
        "token" => {
            let field =
                |name: &str| Reflect::get(&data, &name.into()).unwrap_or(JsValue::UNDEFINED);
            let ask = field("ask").as_f64().unwrap_or(0.0) as u32;
            let answer = match field("error").as_string() {
                Some(why) => Err(why),
                None => Ok(field("token").as_string()),
            };
            sync::answer_token(shared, tab, ask, answer);
        }
        "bye" => {
            // Detached in a later task: this very closure is running now.
            let shared = shared.clone();
            wasm_bindgen_futures::spawn_local(async move { disconnect(&shared, tab) });
        }
        "deleteDatabase" => {
            let id = Reflect::get(&data, &"id".into()).unwrap_or(JsValue::UNDEFINED);
            let shared = shared.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let result = worker::delete_database(&shared).await;
                let state = shared.borrow();
                for t in state.tabs.values() {
                    post(&t.port, &convert::object(&[("type", "reset".into())]));
                }
                if let Some(t) = state.tabs.get(&tab) {
                    post(&t.port, &reply(id, result.map(|()| JsValue::UNDEFINED)));
                }
                broadcast_storage(&state);
            });
        }
        _ => handle_request(shared, tab, &data),
    }
}

/// `{type: 'open', id, app?, server?, auth}`: the tab's app definition (JSON
/// text), its sync base URL and whether it has a token provider. The first
/// tab with an app opens the replica (and starts syncing if it names a
/// server); later tabs must run the same schema version.
fn open_app(shared: &Rc<RefCell<Shared>>, tab: TabId, data: &JsValue) {
    let field = |name: &str| Reflect::get(data, &name.into()).unwrap_or(JsValue::UNDEFINED);
    let id = field("id");
    let server = field("server").as_string();
    let auth = field("auth").as_bool().unwrap_or(false);
    let mut start_sync = None;
    let mut restart_sync = false;
    let result = {
        let mut state = shared.borrow_mut();
        let result = match field("app").as_string() {
            None => Ok(()),
            Some(app) => {
                let seed = server.as_ref().map(|_| worker::random_seed());
                state
                    .engine
                    .open_app(tab, &app, &worker::random_uuid(), seed)
                    .map(|opened| {
                        let started = match (opened, seed) {
                            (AppOpened::Now { sync }, _) => sync,
                            // The first tab gave no server; this one does.
                            (AppOpened::Already, Some(seed)) => state.engine.enable_sync(seed),
                            (AppOpened::Already, None) => false,
                            (AppOpened::Upgraded { outdated }, _) => {
                                refuse_outdated(&mut state, &outdated);
                                restart_sync = state.sync.is_some();
                                !restart_sync && state.engine.syncing()
                            }
                        };
                        if started {
                            start_sync.clone_from(&server);
                        }
                    })
            }
        };
        let syncing = state.engine.syncing();
        if let Some(t) = state.tabs.get_mut(&tab) {
            match &result {
                Ok(()) => t.auth = (syncing && server.is_some()).then_some(auth),
                Err(e) => t.refused = Some(e.to_data()),
            }
        }
        result
    };
    worker::flush_soon(shared);
    if let Some(base) = start_sync {
        sync::start(shared, base);
    }
    if restart_sync {
        sync::restart(shared);
    }
    let state = shared.borrow();
    let Some(t) = state.tabs.get(&tab) else {
        return;
    };
    post(&t.port, &reply(id, result.map(|()| JsValue::UNDEFINED)));
    // What the tab must know now, not only at the next change.
    if let Some(status) = state.engine.sync_status() {
        post(&t.port, &sync::status_message(status));
    }
    if let Some(replication) = state.engine.replication() {
        for event in replication.sticky_events() {
            post(
                &t.port,
                &convert::object(&[
                    ("type", "syncEvent".into()),
                    ("event", convert::to_js(event)),
                ]),
            );
        }
    }
}

/// A newer build upgraded the replica: these tabs' app is older. Their
/// requests are refused from now on, and they are told so.
fn refuse_outdated(state: &mut Shared, outdated: &[TabId]) {
    let Some(running) = state.engine.replication().map(|r| r.app().version) else {
        return;
    };
    let event = SyncEvent::AppOutdated {
        schema_version: running,
    };
    let message = convert::object(&[
        ("type", "syncEvent".into()),
        ("event", convert::to_js(&event)),
    ]);
    let refusal = replication::outdated(running).to_data();
    for id in outdated {
        if let Some(t) = state.tabs.get_mut(id) {
            t.refused = Some(refusal.clone());
            post(&t.port, &message);
        }
    }
}

fn handle_request(shared: &Rc<RefCell<Shared>>, tab: TabId, data: &JsValue) {
    let id = Reflect::get(data, &"id".into()).unwrap_or(JsValue::UNDEFINED);
    let (commit_seq, sync_work) = {
        let mut state = shared.borrow_mut();
        let refused = state.tabs.get(&tab).and_then(|t| t.refused.clone());
        let handled = match (refused, parse_request(data)) {
            (Some(error), _) => crate::engine::Handled {
                updates: Vec::new(),
                reply: Err(crate::Error::Recorded(error)),
                commit_seq: None,
                sync: Default::default(),
            },
            (None, Ok(request)) => state.engine.handle(tab, request),
            (None, Err(e)) => crate::engine::Handled {
                updates: Vec::new(),
                reply: Err(crate::Error::BadRequest(e)),
                commit_seq: None,
                sync: Default::default(),
            },
        };
        // Updates first: a tab that awaits its write then finds it in its live queries.
        for tab_updates in &handled.updates {
            post_updates(&state, tab_updates);
        }
        let message = reply(id, handled.reply.map(|r| convert::response(&r)));
        if let Some(seq) = handled.commit_seq {
            // The tab resolves this write's `durable` once `durableSeq` reaches it.
            let _ = Reflect::set(&message, &"seq".into(), &JsValue::from_f64(seq as f64));
        }
        if let Some(t) = state.tabs.get(&tab) {
            post(&t.port, &message);
        }
        (handled.commit_seq, handled.sync)
    };
    if commit_seq.is_some() {
        worker::flush_soon(shared);
    }
    sync::carry_out(shared, sync_work);
}

/// A tab's request, read by hand rather than through a serde deserializer
/// for JS values: that one would be a second copy of every `Deserialize`
/// impl in the wasm (the other is serde_json's), and `execMany`'s rows are
/// the bulk-load hot path anyway. (Going through JSON and `Request`'s derived
/// `Deserialize` for the rare requests costs 9.5 KB gzip, measured.) Mirrors
/// `Request`'s serde shape (and `js/protocol.ts`): a camelCase `type` tag,
/// `params` optional. Every `Request` variant must have its arm here.
fn parse_request(data: &JsValue) -> Result<Request, String> {
    let field = |name: &str| Reflect::get(data, &name.into()).unwrap_or(JsValue::UNDEFINED);
    let text = |name: &str| {
        field(name)
            .as_string()
            .ok_or_else(|| format!("`{name}` must be a string"))
    };
    let params = || match field("params") {
        v if v.is_undefined() => Ok(Vec::new()),
        v => convert::params(&v),
    };
    let subscription = || {
        field("subscription")
            .as_f64()
            .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
            .map(|n| n as u32)
            .ok_or("`subscription` must be an integer id")
    };
    let kind = field("type").as_string().unwrap_or_default();
    Ok(match kind.as_str() {
        "exec" => Request::Exec {
            sql: text("sql")?,
            params: params()?,
        },
        "execMany" => Request::ExecMany {
            sql: text("sql")?,
            rows: convert::param_sets(&field("rows"))?,
        },
        "query" => Request::Query {
            sql: text("sql")?,
            params: params()?,
        },
        "subscribe" => Request::Subscribe {
            subscription: subscription()?,
            sql: text("sql")?,
            params: params()?,
        },
        "unsubscribe" => Request::Unsubscribe {
            subscription: subscription()?,
        },
        "mutate" => Request::Mutate {
            name: text("name")?,
            args: convert::json(&field("args"))?,
        },
        "clearRejections" => Request::ClearRejections,
        "pauseSync" => Request::PauseSync,
        "resumeSync" => Request::ResumeSync,
        "stats" => Request::Stats,
        other => return Err(format!("unknown request type `{other}`")),
    })
}

fn reply(id: JsValue, result: Result<JsValue, crate::Error>) -> JsValue {
    match result {
        Ok(ok) => convert::object(&[("type", "reply".into()), ("id", id), ("ok", ok)]),
        Err(err) => convert::object(&[
            ("type", "reply".into()),
            ("id", id),
            ("error", convert::error(&err)),
        ]),
    }
}

pub fn post_updates(state: &Shared, tab_updates: &TabUpdates) {
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

/// `{type: 'storage', backend, durableSeq, error?}`: what tabs show as status and
/// use to resolve `durable` promises.
fn storage_message(state: &Shared) -> JsValue {
    let mut fields = vec![
        ("type", JsValue::from_str("storage")),
        (
            "backend",
            JsValue::from_str(state.storage.files.backend_name()),
        ),
        (
            "durableSeq",
            JsValue::from_f64(state.storage.status.durable_seq as f64),
        ),
    ];
    if let Some(error) = &state.storage.status.error {
        fields.push((
            "error",
            convert::error(&crate::Error::Storage(error.clone())),
        ));
    }
    convert::object(&fields)
}

pub fn broadcast_storage(state: &Shared) {
    broadcast(state, &storage_message(state));
}

/// Posts `message` to every connected tab.
pub fn broadcast(state: &Shared, message: &JsValue) {
    for tab in state.tabs.values() {
        post(&tab.port, message);
    }
}

pub fn post(port: &MessagePort, message: &JsValue) {
    if let Err(e) = port.post_message(message) {
        web_sys::console::error_2(&"ferrydb: postMessage failed".into(), &e);
    }
}

fn disconnect(shared: &Rc<RefCell<Shared>>, tab: TabId) {
    {
        let mut state = shared.borrow_mut();
        state.engine.disconnect_tab(tab);
        if let Some(t) = state.tabs.remove(&tab) {
            t.port.set_onmessage(None);
            t.port.close();
        }
    }
    sync::tab_gone(shared, tab);
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
