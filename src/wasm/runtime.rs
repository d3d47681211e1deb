//! The effect loop: browser events become host [`Input`]s, and the host's
//! [`Output`]s are performed here — posts to tab ports, fetches, streams,
//! timers, storage I/O. Nothing here decides; `crate::host` does, with
//! native tests. The host is borrowed only inside [`Runtime::run`] and
//! never while an output is performed, and no output calls back
//! synchronously, so no borrow can meet another.

use super::convert::{JsEncoder, JsFields};
use super::files::{Choice, Files};
use super::http;
use super::worker::global;
use crate::engine::live::TabId;
use crate::host::{FetchId, Host, Input, Output, TabMessage, Timer, WorkerMessage};
use js_sys::{Function, Reflect};
use std::cell::{RefCell, RefMut};
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use web_sys::{AbortController, MessageEvent, MessagePort};

pub struct Runtime {
    host: RefCell<Host>,
    platform: RefCell<Platform>,
    me: Weak<Runtime>,
}

/// What performing outputs needs to keep: handles, not decisions.
struct Platform {
    ports: Vec<Port>,
    /// One `setTimeout` handle per [`Timer`].
    timers: [Option<i32>; Timer::ALL.len()],
    /// One callback per [`Timer`], made once (a closure per `setTimeout`
    /// would leak each one that is cleared before it fires).
    on_timer: Vec<Closure<dyn FnMut()>>,
    streams: Vec<(FetchId, AbortController)>,
    files: Rc<Files>,
    path: Vec<String>,
}

struct Port {
    tab: TabId,
    port: MessagePort,
    /// Kept alive as long as the tab is connected.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Runtime {
    pub fn start(host: Host, files: Files, path: Vec<String>) -> Rc<Runtime> {
        let runtime = Rc::new_cyclic(|me: &Weak<Runtime>| {
            let on_timer = Timer::ALL
                .iter()
                .map(|&timer| {
                    let me = me.clone();
                    Closure::<dyn FnMut()>::new(move || {
                        if let Some(runtime) = me.upgrade() {
                            runtime.platform().timers[timer.index()] = None;
                            runtime.run(Input::TimerFired(timer));
                        }
                    })
                })
                .collect();
            Runtime {
                host: RefCell::new(host),
                platform: RefCell::new(Platform {
                    ports: Vec::new(),
                    timers: [None; Timer::ALL.len()],
                    on_timer,
                    streams: Vec::new(),
                    files: Rc::new(files),
                    path,
                }),
                me: me.clone(),
            }
        });
        runtime.watch_for_clearing();
        runtime.listen_network();
        runtime.run_outputs(Vec::new());
        runtime
    }

    fn host(&self) -> RefMut<'_, Host> {
        self.host.borrow_mut()
    }

    fn platform(&self) -> RefMut<'_, Platform> {
        self.platform.borrow_mut()
    }

    /// Feeds one input to the host and performs what it asks.
    pub fn run(&self, input: Input) {
        let outputs = self.host().handle(input);
        self.run_outputs(outputs);
    }

    /// A callback that feeds the host the input `make` builds, for as long
    /// as the runtime lives.
    fn feed<T>(&self, make: impl Fn(T) -> Input) -> impl Fn(T) {
        let me = self.me.clone();
        move |value| {
            if let Some(runtime) = me.upgrade() {
                runtime.run(make(value));
            }
        }
    }

    pub fn connect(&self, port: MessagePort) {
        let (tab, outputs) = self.host().connect_tab();
        let on_message = self.feed(move |data: JsValue| Input::Tab {
            tab,
            message: TabMessage::read(&JsFields(&data)),
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            on_message(event.data())
        });
        port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        self.platform().ports.push(Port {
            tab,
            port,
            _on_message: on_message,
        });
        self.run_outputs(outputs);
    }

    fn run_outputs(&self, outputs: Vec<Output>) {
        for output in outputs {
            self.perform(output);
        }
    }

    fn perform(&self, output: Output) {
        match output {
            Output::Post { tab, message } => self.post(Some(tab), &message),
            Output::Broadcast(message) => self.post(None, &message),
            Output::WatchTab { tab, lock } => self.watch_tab(tab, &lock),
            Output::CloseTab { tab } => {
                let mut platform = self.platform();
                if let Some(at) = platform.ports.iter().position(|p| p.tab == tab) {
                    let closed = platform.ports.remove(at);
                    closed.port.set_onmessage(None);
                    closed.port.close();
                    // Dropped in a later task: its handler may be running now.
                    wasm_bindgen_futures::spawn_local(async move { drop(closed) });
                }
            }
            Output::Fetch { fetch, request } => {
                let done = self.feed(move |response| Input::Fetched { fetch, response });
                let files = self.platform().files.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    // A leader tab's worker that another tab has taken over
                    // from pushes nothing (as if offline): mutations it
                    // appended in place since are not the new leader's.
                    // Other requests go at once, unchecked.
                    let superseded = request.sends_writes && !files.still_leads().await;
                    done(match superseded {
                        true => None,
                        false => http::fetch(&request).await,
                    })
                });
            }
            // Tasks spawned earlier run first: a fetch asked for before this
            // is sent before the host goes on.
            Output::Continue => {
                let go_on = self.feed(|()| Input::Continue);
                wasm_bindgen_futures::spawn_local(async move { go_on(()) });
            }
            Output::Stream { stream, request } => self.stream(stream, request),
            Output::CloseStream { stream } => {
                let mut platform = self.platform();
                if let Some(at) = platform.streams.iter().position(|(s, _)| *s == stream) {
                    platform.streams.remove(at).1.abort();
                }
            }
            Output::SetTimer { timer, at } => {
                let now = super::worker::global_now();
                let delay = at.saturating_sub(now).min(i32::MAX as u64) as i32;
                let mut platform = self.platform();
                if let Some(old) = platform.timers[timer.index()].take() {
                    global().clear_timeout_with_handle(old);
                }
                let callback = platform.on_timer[timer.index()].as_ref().unchecked_ref();
                platform.timers[timer.index()] = global()
                    .set_timeout_with_callback_and_timeout_and_arguments_0(callback, delay)
                    .ok();
            }
            Output::ClearTimer(timer) => {
                if let Some(old) = self.platform().timers[timer.index()].take() {
                    global().clear_timeout_with_handle(old);
                }
            }
            Output::StorageIo(request) => {
                let files = self.platform().files.clone();
                let id = request.id;
                let done = self.feed(move |result| Input::StorageDone { id, result });
                wasm_bindgen_futures::spawn_local(
                    async move { done(files.perform(&request).await) },
                );
            }
            Output::DeleteFiles => self.delete_files(),
            Output::Warn(message) => web_sys::console::warn_1(&message.into()),
        }
    }

    /// Posts to one tab, or to every tab.
    fn post(&self, to: Option<TabId>, message: &WorkerMessage) {
        let value = message.encode(&mut JsEncoder);
        let platform = self.platform.borrow();
        for port in platform
            .ports
            .iter()
            .filter(|p| to.is_none_or(|t| t == p.tab))
        {
            if let Err(e) = port.port.post_message(&value) {
                web_sys::console::error_2(&"ferrydb: postMessage failed".into(), &e);
            }
        }
    }

    /// Asks for the tab's Web Lock; the grant means the tab is gone.
    fn watch_tab(&self, tab: TabId, lock: &str) {
        let gone = self.feed(move |_: JsValue| Input::TabGone { tab });
        let on_granted = Closure::once_into_js(gone);
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

    fn stream(&self, stream: FetchId, request: crate::host::HttpRequest) {
        let Ok(controller) = AbortController::new() else {
            return self.run(Input::StreamEnded { stream });
        };
        let signal = controller.signal();
        self.platform().streams.push((stream, controller));
        let data = self.feed(move |bytes| Input::StreamData { stream, bytes });
        let me = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            http::stream(&request, &signal, data).await;
            let Some(runtime) = me.upgrade() else {
                return;
            };
            // Aborted streams were removed; the host wants no word of them.
            let open = {
                let mut platform = runtime.platform();
                let at = platform.streams.iter().position(|(s, _)| *s == stream);
                at.map(|at| platform.streams.remove(at))
            };
            if open.is_some() {
                runtime.run(Input::StreamEnded { stream });
            }
        });
    }

    /// Deletes every file of the database, opens the backend afresh and
    /// tells the host.
    fn delete_files(&self) {
        let (files, path) = {
            let platform = self.platform();
            (platform.files.clone(), platform.path.clone())
        };
        let me = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let parts: Vec<&str> = path.iter().map(String::as_str).collect();
            let result = files.remove_all(&parts).await;
            let choice = Choice::of_backend(files.backend_name());
            let (fresh, _) = if files.epoch() > 0 {
                Files::open_fenced(choice, &parts).await
            } else {
                Files::open(choice, &parts).await
            };
            let backend = fresh.backend_name().to_owned();
            let log = fresh.log_config();
            let Some(runtime) = me.upgrade() else {
                return;
            };
            runtime.platform().files = Rc::new(fresh);
            runtime.watch_for_clearing();
            runtime.run(Input::FilesDeleted {
                result,
                backend,
                log,
            });
        });
    }

    /// When the browser deletes the files under the running worker (site
    /// data cleared), the host hears at once, before any write finds out.
    fn watch_for_clearing(&self) {
        let cleared = self.feed(|_: JsValue| Input::StorageCleared {
            why: "the browser closed the IndexedDB connection".into(),
        });
        let on_close = Closure::once_into_js(cleared);
        self.platform()
            .files
            .on_forced_close(on_close.unchecked_ref());
    }

    fn listen_network(&self) {
        for (name, online) in [("online", true), ("offline", false)] {
            let changed = self.feed(move |_: JsValue| Input::Network { online });
            let listener = Closure::<dyn FnMut(JsValue)>::new(changed);
            let _ =
                global().add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
            // Listens for the worker's whole life.
            listener.forget();
        }
    }
}
