//! ferrydb: a local-first sync SDK. The engine and storage are platform-free and
//! tested natively; everything that touches the browser lives in `wasm` and only
//! compiles for `wasm32`.

pub mod engine;
pub mod host;
pub mod storage;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use engine::error::{Error, ErrorCode, Result};
