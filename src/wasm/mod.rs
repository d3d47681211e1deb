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
    console_error_panic_hook::set_once();
}
