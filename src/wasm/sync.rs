//! The sync client's host in the worker (`docs/protocol.md` §9): it carries
//! out the engine's sync effects — `fetch` for push and pull, one
//! `setTimeout`, token asks to the tab the engine's `TokenAsks` chooses —
//! and feeds every outcome back as an event — and turns the worker's
//! `online` / `offline` events into events. The realtime channel is in `realtime.rs`. It decides nothing.

use super::convert;
use super::realtime;
use super::tabs;
use super::worker::{self, Shared};
use crate::engine::live::TabId;
use crate::engine::replication::{Settled, SyncWork};
use crate::engine::sync::{Effect, Event, TokenAsk, TokenAsks, TokenTab, TOKEN_TIMEOUT_MS};
use crate::engine::{Now, SyncHandled};
use ferrydb_protocol::{PullRequest, PullResponse, PushResponse};
use serde_json::Value as Json;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, RequestInit, Response, WorkerGlobalScope};

pub struct SyncHost {
    /// The sync base URL: `{base}/push`, `{base}/pull`, `{base}/events`.
    pub base: String,
    timer: Option<i32>,
    /// The one callback every `setTimeout` runs (a closure per timer would
    /// leak each one that is cleared before it fires).
    on_timer: Closure<dyn FnMut()>,
    /// Bumped when the replica is replaced (`deleteDatabase`): replies to
    /// requests of the old client are dropped, since the new client reuses
    /// request ids.
    generation: u32,
    /// The bearer token of the latest request, for the realtime channel.
    pub token: Option<String>,
    /// Which tab is asked for a token (the engine decides; this carries out).
    asks: TokenAsks,
    /// The realtime channel's state.
    pub realtime: super::realtime::Realtime,
    /// The app paused sync (mirrors the engine's status): the realtime
    /// channel stays closed, and a replaced replica's new client starts
    /// paused too. Kept in memory only, so a new worker syncs again.
    pub paused: bool,
    /// The next page of an initial sync, requested while the current one is
    /// applied (see [`prefetch`]).
    prefetched: Option<Prefetched>,
}

/// A pull sent ahead of the engine: used if the engine's next pull has
/// exactly this body and token, else dropped.
struct Prefetched {
    generation: u32,
    token: Option<String>,
    body: String,
    response: js_sys::Promise,
}

/// Starts syncing with the server at `base` (the first tab that opened the
/// app with a server chose it).
pub fn start(shared: &Rc<RefCell<Shared>>, base: String) {
    let weak = Rc::downgrade(shared);
    let on_timer = Closure::<dyn FnMut()>::new(move || {
        if let Some(shared) = weak.upgrade() {
            if let Some(host) = shared.borrow_mut().sync.as_mut() {
                host.timer = None;
            }
            event(&shared, Event::Timer);
        }
    });
    shared.borrow_mut().sync = Some(SyncHost {
        base: base.trim_end_matches('/').to_owned(),
        timer: None,
        on_timer,
        generation: 0,
        token: None,
        asks: TokenAsks::default(),
        realtime: Default::default(),
        paused: false,
        prefetched: None,
    });
    listen_network(shared);
    if navigator_online() {
        event(shared, Event::Online);
    }
}

/// The replica was replaced: forget the old client's requests, and start the
/// new client (its first pull is a full one).
pub fn restart(shared: &Rc<RefCell<Shared>>) {
    let paused = {
        let mut state = shared.borrow_mut();
        let Some(host) = state.sync.as_mut() else {
            return;
        };
        host.generation += 1;
        host.asks.forget_ask();
        host.prefetched = None;
        if let Some(old) = host.timer.take() {
            global().clear_timeout_with_handle(old);
        }
        host.paused
    };
    if paused {
        event(shared, Event::Pause);
    }
    if navigator_online() {
        event(shared, Event::Online);
    }
}

/// Feeds one event to the engine and carries out what it asks for.
pub fn event(shared: &Rc<RefCell<Shared>>, event: Event) {
    let handled = shared.borrow_mut().engine.sync_event(event);
    self::handled(shared, handled.map(Some));
}

/// Carries out what the engine asked for after a sync event. Call with
/// `shared` not borrowed.
pub fn handled(shared: &Rc<RefCell<Shared>>, handled: Result<Option<SyncHandled>, crate::Error>) {
    let handled = match handled {
        Ok(Some(handled)) => handled,
        Ok(None) => return,
        Err(e) => {
            web_sys::console::error_2(&"ferrydb: sync failed".into(), &convert::error(&e));
            return;
        }
    };
    for updates in &handled.updates {
        tabs::post_updates(&shared.borrow(), updates);
    }
    if handled.commit_seq.is_some() {
        worker::flush_soon(shared);
    }
    carry_out(shared, handled.work);
}

/// Does what the engine asked. Call with `shared` not borrowed.
pub fn carry_out(shared: &Rc<RefCell<Shared>>, work: SyncWork) {
    for settled in &work.settled {
        tabs::broadcast(&shared.borrow(), &settled_message(settled));
    }
    for effect in work.effects {
        match effect {
            Effect::SendPush { id, token, request } => {
                let body = serde_json::to_string(&request).expect("a push request serializes");
                send(shared, id, "push", token, body, None);
            }
            Effect::SendPull { id, token, request } => {
                let body = serde_json::to_string(&request).expect("a pull request serializes");
                send(shared, id, "pull", token, body, Some(request));
            }
            Effect::SetTimer { at } => set_timer(shared, at),
            Effect::NeedToken => ask_token(shared),
            Effect::Emit(sync_event) => {
                let message = convert::object(&[
                    ("type", "syncEvent".into()),
                    ("event", convert::to_js(&sync_event)),
                ]);
                tabs::broadcast(&shared.borrow(), &message);
            }
            Effect::Status(status) => {
                tabs::broadcast(&shared.borrow(), &status_message(&status));
                set_paused(shared, status.paused);
                if status.connected {
                    realtime::ensure(shared);
                }
            }
            // The engine refreshed live queries already.
            Effect::Changed(_) => {}
        }
    }
}

/// Follows the engine's `paused`: pausing closes the realtime channel and
/// drops the timer (the engine sets a new one on resume).
fn set_paused(shared: &Rc<RefCell<Shared>>, paused: bool) {
    let changed = {
        let mut state = shared.borrow_mut();
        let Some(host) = state.sync.as_mut() else {
            return;
        };
        let changed = host.paused != paused;
        host.paused = paused;
        if paused {
            if let Some(old) = host.timer.take() {
                global().clear_timeout_with_handle(old);
            }
        }
        changed
    };
    if changed && paused {
        realtime::close(shared);
    }
}

pub fn status_message(status: &crate::engine::sync::SyncStatus) -> JsValue {
    convert::object(&[
        ("type", "syncStatus".into()),
        ("status", convert::to_js(status)),
    ])
}

fn settled_message(settled: &Settled) -> JsValue {
    convert::object(&[
        ("type", "settled".into()),
        ("settled", convert::to_js(settled)),
    ])
}

pub fn global() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn navigator_online() -> bool {
    global().navigator().on_line()
}

#[wasm_bindgen]
extern "C" {
    /// Milliseconds since the worker started, on a clock that setting the
    /// system time does not move (`setTimeout` runs on the same one).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// The engine's clock: `Date.now()` for timestamps, `performance.now()` for
/// all timing (see `engine::Now`).
pub fn now() -> Now {
    Now {
        wall: js_sys::Date::now() as u64,
        monotonic: performance_now() as u64,
    }
}

fn listen_network(shared: &Rc<RefCell<Shared>>) {
    for (name, online) in [("online", true), ("offline", false)] {
        let weak = Rc::downgrade(shared);
        let listener = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                if online {
                    realtime::wake(&shared);
                    event(&shared, Event::Online);
                } else {
                    event(&shared, Event::Offline);
                }
            }
        });
        let _ = global().add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        // Listens for the worker's whole life.
        listener.forget();
    }
}

/// `POST {base}/{path}`, then the matching event: the parsed reply, an
/// `HttpError` (status 0: no response), or `InvalidResponse` for a 200 whose
/// body is not the expected JSON. `pull_request` is what a pull's `body`
/// encodes, to prefetch the next page from.
fn send(
    shared: &Rc<RefCell<Shared>>,
    id: u64,
    path: &'static str,
    token: Option<String>,
    body: String,
    pull_request: Option<PullRequest>,
) {
    let (url, generation, ahead) = {
        let mut state = shared.borrow_mut();
        let Some(host) = state.sync.as_mut() else {
            return;
        };
        host.token.clone_from(&token);
        let ahead = host.prefetched.take().filter(|p| {
            path == "pull" && p.generation == host.generation && p.token == token && p.body == body
        });
        (format!("{}/{path}", host.base), host.generation, ahead)
    };
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        let outcome = match ahead {
            Some(ahead) => response_text(ahead.response).await,
            None => fetch_text("POST", &url, token.as_deref(), Some(&body)).await,
        };
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let current = shared.borrow().sync.as_ref().map(|h| h.generation);
        if current != Some(generation) {
            return; // for the client of a replica since replaced
        }
        let reply = match outcome {
            Err(_) => Event::HttpError { id, status: 0 },
            Ok((200, text)) => parse_reply(id, path, &text),
            Ok((status, _)) => Event::HttpError { id, status },
        };
        if let Event::PullResponse {
            response: PullResponse::Ok(pull),
            ..
        } = &reply
        {
            if let (true, Some(request)) = (pull.more, pull_request) {
                prefetch(&shared, &url, token, request, &pull.cookie);
            }
        }
        event(&shared, reply);
    });
}

/// A page with `more` is followed at once by a pull with its cookie and
/// otherwise the same request (`Replica::pull_request`): send that now, so
/// the server prepares the next page while this one is applied.
fn prefetch(
    shared: &Rc<RefCell<Shared>>,
    url: &str,
    token: Option<String>,
    mut next: PullRequest,
    cookie: &ferrydb_protocol::Cookie,
) {
    next.cookie = Some(cookie.clone());
    let body = serde_json::to_string(&next).expect("a pull request serializes");
    let Ok(init) = request_init("POST", token.as_deref(), Some(&body)) else {
        return;
    };
    let response = global().fetch_with_str_and_init(url, &init);
    // A prefetch the engine does not want is never awaited: its failure is
    // not an unhandled rejection.
    thread_local! {
        static IGNORE: Closure<dyn FnMut(JsValue)> = Closure::new(|_| {});
    }
    IGNORE.with(|ignore| {
        let _ = response.catch(ignore);
    });
    let mut state = shared.borrow_mut();
    if let Some(host) = state.sync.as_mut() {
        host.prefetched = Some(Prefetched {
            generation: host.generation,
            token,
            body,
            response,
        });
    }
}

fn parse_reply(id: u64, path: &str, text: &str) -> Event {
    let parsed = if path == "push" {
        decode(text, PushResponse::decode).map(|response| Event::PushResponse { id, response })
    } else {
        decode(text, PullResponse::decode).map(|response| Event::PullResponse { id, response })
    };
    parsed.unwrap_or_else(|e| Event::InvalidResponse {
        id,
        message: format!("the {path} reply is not valid: {e}"),
    })
}

/// Parses `text` as JSON, then decodes it (`ferrydb_protocol::decode`).
fn decode<T>(
    text: &str,
    decoder: fn(Json, &str) -> ferrydb_protocol::decode::Result<T>,
) -> Result<T, String> {
    let json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    decoder(json, "").map_err(|e| e.to_string())
}

pub fn request_init(
    method: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<RequestInit, JsValue> {
    let headers = Headers::new()?;
    if body.is_some() {
        headers.set("Content-Type", "application/json")?;
    }
    if let Some(token) = token {
        headers.set("Authorization", &format!("Bearer {token}"))?;
    }
    let init = RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers);
    init.set_cache(web_sys::RequestCache::NoStore);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    Ok(init)
}

/// The status and body text of a request; `Err` when no response came.
async fn fetch_text(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), JsValue> {
    let init = request_init(method, token, body)?;
    response_text(global().fetch_with_str_and_init(url, &init)).await
}

/// The status and body text of the response `fetch` promised.
async fn response_text(response: js_sys::Promise) -> Result<(u16, String), JsValue> {
    let response: Response = JsFuture::from(response).await?.dyn_into()?;
    let status = response.status();
    let text = JsFuture::from(response.text()?).await?;
    Ok((status, text.as_string().unwrap_or_default()))
}

fn set_timer(shared: &Rc<RefCell<Shared>>, at: u64) {
    let delay = at.saturating_sub(now().monotonic).min(i32::MAX as u64) as i32;
    let mut state = shared.borrow_mut();
    let Some(host) = state.sync.as_mut() else {
        return;
    };
    if let Some(old) = host.timer.take() {
        global().clear_timeout_with_handle(old);
    }
    host.timer = global()
        .set_timeout_with_callback_and_timeout_and_arguments_0(
            host.on_timer.as_ref().unchecked_ref(),
            delay,
        )
        .ok();
}

/// The connected tabs as token asks see them, in connection order.
fn token_tabs(tabs: &tabs::Tabs) -> Vec<TokenTab> {
    tabs.iter().map(|(id, t)| (*id, t.auth)).collect()
}

/// The sync client needs a token: ask the tab the engine's [`TokenAsks`]
/// chooses, or tell the client what it decided instead.
fn ask_token(shared: &Rc<RefCell<Shared>>) {
    let decision = {
        let mut state = shared.borrow_mut();
        let tabs = token_tabs(&state.tabs);
        let Some(host) = state.sync.as_mut() else {
            return;
        };
        host.asks.need(&tabs)
    };
    carry_out_ask(shared, decision);
}

fn carry_out_ask(shared: &Rc<RefCell<Shared>>, decision: TokenAsk) {
    match decision {
        TokenAsk::Ask { tab, ask } => {
            let message = convert::object(&[
                ("type", "needToken".into()),
                ("ask", JsValue::from_f64(ask as f64)),
            ]);
            if let Some(t) = shared.borrow().tabs.get(&tab) {
                tabs::post(t.port(), &message);
            }
            token_deadline(Rc::downgrade(shared), tab, ask);
        }
        TokenAsk::Answer(answer) => event(shared, answer),
    }
}

/// Reports the deadline of ask `ask` to the engine when it passes.
fn token_deadline(weak: Weak<RefCell<Shared>>, tab: TabId, ask: u32) {
    let expire = Closure::once_into_js(move || {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let decision = {
            let mut state = shared.borrow_mut();
            let tabs = token_tabs(&state.tabs);
            let Some(host) = state.sync.as_mut() else {
                return;
            };
            host.asks.timed_out(tab, ask, &tabs)
        };
        if let Some(decision) = decision {
            carry_out_ask(&shared, decision);
        }
    });
    let _ = global().set_timeout_with_callback_and_timeout_and_arguments_0(
        expire.unchecked_ref(),
        TOKEN_TIMEOUT_MS as i32,
    );
}

/// A tab answered token ask `ask`: `Ok(None)` means "no auth".
pub fn answer_token(
    shared: &Rc<RefCell<Shared>>,
    tab: TabId,
    ask: u32,
    answer: Result<Option<String>, String>,
) {
    let answer = {
        let mut state = shared.borrow_mut();
        let Some(host) = state.sync.as_mut() else {
            return;
        };
        host.asks.answered(tab, ask, answer)
    };
    if let Some(answer) = answer {
        event(shared, answer);
    }
}

/// A tab went away: if it was asked for a token, ask another.
pub fn tab_gone(shared: &Rc<RefCell<Shared>>, tab: TabId) {
    let decision = {
        let mut state = shared.borrow_mut();
        let tabs = token_tabs(&state.tabs);
        let Some(host) = state.sync.as_mut() else {
            return;
        };
        host.asks.tab_gone(tab, &tabs)
    };
    if let Some(decision) = decision {
        carry_out_ask(shared, decision);
    }
}
