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

    /// As a storage error: which kind is `storage::Error::from_browser`'s call.
    pub fn to_storage(&self) -> crate::storage::Error {
        crate::storage::Error::from_browser(self.call, &self.dom_name(), self.message())
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
