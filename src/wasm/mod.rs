//! The browser edge: the SharedWorker runtime. It owns one [`Engine`], accepts
//! a `MessagePort` per tab, turns port messages into engine requests and posts
//! replies and live-query updates back. No decisions are made here.

mod convert;
mod files;
mod idb;
mod io_error;
mod opfs;
mod realtime;
mod sync;
mod tabs;
mod worker;

use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    // A panic's message to the worker's console. Only the message: a stack
    // (what console_error_panic_hook adds, for 3 KB gzip) would show unnamed
    // `wasm-function[N]` frames, as wasm-opt strips the names.
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("ferrydb panicked: {info}").into());
    }));
}
