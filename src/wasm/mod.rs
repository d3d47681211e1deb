//! The browser edge: the SharedWorker runtime. It runs one host
//! (`crate::host`, where every decision is made and tested natively): tab
//! ports, fetches, timers and storage I/O become its inputs, and its
//! outputs are performed here (`runtime.rs`). Storage I/O goes to OPFS and
//! IndexedDB (`files.rs`), HTTP through `fetch` (`http.rs`).

mod convert;
mod files;
mod http;
mod idb;
mod io_error;
mod opfs;
mod runtime;
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
