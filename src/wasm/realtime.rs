//! The realtime channel: `GET {base}/events` kept open for the worker's
//! life, read as Server-Sent Events with fetch streaming (`EventSource`
//! cannot send the bearer header), each poke fed to the engine. Reconnects
//! back off with jitter; the `online` event cuts a wait short. While sync is
//! paused the channel is closed (its reader cancelled) and the loop ends;
//! resuming starts it again.

use super::sync::{event, global, request_init};
use super::worker::Shared;
use crate::engine::sync::Event;
use ferrydb_protocol::ServerEvent;
use js_sys::{Reflect, Uint8Array};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, Response};

/// Reconnects back off from the first delay to the last.
const RETRY_MS: (u32, u32) = (500, 10_000);

#[derive(Default)]
pub struct Realtime {
    running: bool,
    /// Wakes a reconnect that is waiting out its backoff.
    wake: Option<js_sys::Function>,
    /// The open connection's body reader: cancelling it ends the connection.
    reader: Option<ReadableStreamDefaultReader>,
}

/// Sync was paused: closes the open connection and ends the loop (it sees
/// `paused` when it wakes).
pub fn close(shared: &Rc<RefCell<Shared>>) {
    let (reader, wake) = {
        let mut state = shared.borrow_mut();
        let Some(host) = state.sync.as_mut() else {
            return;
        };
        (host.realtime.reader.take(), host.realtime.wake.take())
    };
    if let Some(reader) = reader {
        // Its promise only says when the stream is gone; nothing to wait for.
        let _ = reader.cancel();
    }
    if let Some(wake) = wake {
        let _ = wake.call0(&JsValue::UNDEFINED);
    }
}

/// Whether the channel should be closed now (paused, or sync gone); ends the
/// loop's turn in `running` so a resume starts a new one.
fn stopped(weak: &Weak<RefCell<Shared>>) -> bool {
    let Some(shared) = weak.upgrade() else {
        return true;
    };
    let mut state = shared.borrow_mut();
    match state.sync.as_mut() {
        Some(host) if host.paused => {
            host.realtime.running = false;
            true
        }
        Some(_) => false,
        None => true,
    }
}

pub fn ensure(shared: &Rc<RefCell<Shared>>) {
    {
        let mut state = shared.borrow_mut();
        let Some(host) = state.sync.as_mut() else {
            return;
        };
        if host.realtime.running {
            return;
        }
        host.realtime.running = true;
    }
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(realtime(weak));
}

pub fn wake(shared: &Rc<RefCell<Shared>>) {
    let wake = shared
        .borrow_mut()
        .sync
        .as_mut()
        .and_then(|h| h.realtime.wake.take());
    if let Some(wake) = wake {
        let _ = wake.call0(&JsValue::UNDEFINED);
    }
}

/// Keeps `GET {base}/events` open for the worker's life, feeding each poke to
/// the engine; reconnects with backoff (reset once a connection delivered).
async fn realtime(weak: Weak<RefCell<Shared>>) {
    let mut delay = RETRY_MS.0;
    loop {
        if stopped(&weak) {
            return;
        }
        let Some((url, token)) = weak.upgrade().and_then(|shared| {
            let state = shared.borrow();
            let host = state.sync.as_ref()?;
            Some((format!("{}/events", host.base), host.token.clone()))
        }) else {
            return;
        };
        let delivered = matches!(listen(&weak, &url, token.as_deref()).await, Ok(true));
        // That connection is over: a later pause must not cancel its reader.
        if let Some(shared) = weak.upgrade() {
            if let Some(host) = shared.borrow_mut().sync.as_mut() {
                host.realtime.reader = None;
            }
        }
        if delivered {
            delay = RETRY_MS.0;
        }
        let jitter = (js_sys::Math::random() * f64::from(delay) / 2.0) as u32;
        sleep(&weak, delay / 2 + jitter).await;
        delay = (delay * 2).min(RETRY_MS.1);
    }
}

/// Waits `ms`, or until the network comes back.
async fn sleep(weak: &Weak<RefCell<Shared>>, ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = global().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        if let Some(shared) = weak.upgrade() {
            if let Some(host) = shared.borrow_mut().sync.as_mut() {
                host.realtime.wake = Some(resolve);
            }
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// One realtime connection until it ends. `Ok(true)` if it delivered a message.
async fn listen(
    weak: &Weak<RefCell<Shared>>,
    url: &str,
    token: Option<&str>,
) -> Result<bool, JsValue> {
    let init = request_init("GET", token, None)?;
    let response: Response = JsFuture::from(global().fetch_with_str_and_init(url, &init))
        .await?
        .dyn_into()?;
    if response.status() != 200 {
        return Ok(false);
    }
    let Some(body) = response.body() else {
        return Ok(false);
    };
    if stopped_after_connect(weak) {
        let _ = body.cancel();
        return Ok(false);
    }
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    if let Some(shared) = weak.upgrade() {
        if let Some(host) = shared.borrow_mut().sync.as_mut() {
            host.realtime.reader = Some(reader.clone());
        }
    }
    let mut buffer = Vec::new();
    let mut delivered = false;
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if Reflect::get(&chunk, &"done".into())?.is_truthy() {
            return Ok(delivered);
        }
        let bytes: Uint8Array = Reflect::get(&chunk, &"value".into())?.unchecked_into();
        buffer.extend(bytes.to_vec().into_iter().filter(|&b| b != b'\r'));
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let message: Vec<u8> = buffer.drain(..end + 2).collect();
            let Some(shared) = weak.upgrade() else {
                return Ok(delivered);
            };
            delivered = true;
            for server_event in server_events(&message) {
                event(&shared, Event::Server(server_event));
            }
        }
    }
}

/// Paused while the connection was being made: it must not stay open.
fn stopped_after_connect(weak: &Weak<RefCell<Shared>>) -> bool {
    weak.upgrade()
        .is_none_or(|shared| shared.borrow().sync.as_ref().is_none_or(|h| h.paused))
}

/// The `data:` lines of one SSE message that parse as server events
/// (comments such as `: keepalive` and unknown events are skipped).
fn server_events(message: &[u8]) -> Vec<ServerEvent> {
    String::from_utf8_lossy(message)
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim_start()).ok())
        .filter_map(|json| ServerEvent::decode(json, "").ok())
        .collect()
}
