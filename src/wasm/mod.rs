//! The browser edge: the SharedWorker runtime. It owns one [`Engine`], accepts
//! a `MessagePort` per tab, turns port messages into engine requests and posts
//! replies and live-query updates back. No decisions are made here.

mod convert;
#[allow(dead_code)] // wired in with durable storage
mod idb;
#[allow(dead_code)] // wired in with durable storage
mod io_error;
#[allow(dead_code)] // wired in with durable storage
mod opfs;
mod tabs;

use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}
