//! A failed browser storage call: which JS call failed, and the value it threw.

use wasm_bindgen::{JsCast, JsValue};

#[derive(Debug)]
pub struct IoError {
    /// The JS call that failed, e.g. `createWritable`.
    pub call: &'static str,
    pub value: JsValue,
}

impl IoError {
    pub fn new(call: &'static str, value: JsValue) -> Self {
        IoError { call, value }
    }

    /// The DOMException name (`QuotaExceededError`, `NotFoundError`, ...), if any.
    pub fn dom_name(&self) -> String {
        self.value
            .dyn_ref::<web_sys::DomException>()
            .map(|e| e.name())
            .unwrap_or_default()
    }

    /// The storage is full: writes cannot succeed until space is freed.
    pub fn is_quota(&self) -> bool {
        self.dom_name() == "QuotaExceededError"
    }

    /// The files are gone under us: the browser closed our IndexedDB
    /// connection (it does so when it deletes the database: site data
    /// cleared, storage evicted; ferrydb closes it only in `deleteDatabase`,
    /// after which these files are not used), or the OPFS directory a write
    /// goes to no longer exists.
    pub fn is_cleared(&self) -> bool {
        match self.dom_name().as_str() {
            "InvalidStateError" => self.call == "transaction",
            "NotFoundError" => self.call == "getFileHandle",
            _ => false,
        }
    }

    pub fn message(&self) -> String {
        let detail = self
            .value
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| self.value.as_string())
            .or_else(|| js_sys::JSON::stringify(&self.value).ok()?.as_string())
            .unwrap_or_else(|| "a value that is neither an Error nor JSON".into());
        format!("{} failed: {}", self.call, detail)
    }
}
