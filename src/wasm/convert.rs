//! Values between JavaScript and Rust, built and read directly rather than
//! through serde: query rows are the hot path of every live-query update,
//! and `execMany`'s parameters the bulk-load path. [`JsEncoder`] and
//! [`JsFields`] are the JS side of the host's one message definition
//! (`crate::host::worker_message`, `crate::host::tab_message`).

use crate::engine::value::{Value, MAX_SAFE_INTEGER};
use crate::host::{Encoder, MessageFields};
use js_sys::{Array, BigInt, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

/// A plain object from key/value pairs.
pub fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (key, value) in fields {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&obj, &JsValue::from_str(key), value);
    }
    obj.into()
}

pub fn value(v: &Value) -> JsValue {
    match v {
        Value::Null => JsValue::NULL,
        Value::Integer(i) if i.abs() <= MAX_SAFE_INTEGER => JsValue::from_f64(*i as f64),
        // Beyond 2^53 a JS number would silently lose digits; a BigInt keeps them.
        Value::Integer(i) => BigInt::from(*i).into(),
        Value::Real(r) => JsValue::from_f64(*r),
        Value::Text(t) => JsValue::from_str(t),
        Value::Blob(b) => Uint8Array::from(b.as_slice()).into(),
    }
}

/// A JavaScript value bound as a SQLite parameter: integral numbers within
/// 2^53 and bigints become integers, other numbers reals, booleans 0/1.
pub fn param(v: &JsValue) -> Result<Value, String> {
    if let Some(n) = v.as_f64() {
        return Ok(Value::from_js_number(n));
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::Text(s));
    }
    if v.is_null() || v.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Integer(b as i64));
    }
    if v.is_bigint() {
        return i64::try_from(v.clone())
            .map(Value::Integer)
            .map_err(|_| "a bigint parameter does not fit in 64 bits".to_owned());
    }
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(Value::Blob(bytes.to_vec()));
    }
    // Named by its JavaScript type, not `Debug`: that formatter is more wasm
    // and JS glue, for a message.
    let kind = v.js_typeof().as_string().unwrap_or_default();
    Err(format!(
        "cannot bind a value of type {kind} as a SQLite value"
    ))
}

/// One parameter list (`exec`, `query`, `subscribe`).
pub fn params(v: &JsValue) -> Result<Vec<Value>, String> {
    let list = v.dyn_ref::<Array>().ok_or("params must be an array")?;
    list.iter().map(|v| param(&v)).collect()
}

/// Many parameter sets (`execMany`), read directly: serde's generic path costs
/// more than the inserts themselves for a 10,000-row load.
pub fn param_sets(v: &JsValue) -> Result<Vec<Vec<Value>>, String> {
    let sets = v
        .dyn_ref::<Array>()
        .ok_or("rows must be an array of arrays")?;
    let mut out = Vec::with_capacity(sets.length() as usize);
    for set in sets.iter() {
        if !set.is_array() {
            return Err("rows must be an array of arrays".to_owned());
        }
        out.push(params(&set)?);
    }
    Ok(out)
}

/// A JSON value (mutator arguments) through `JSON.stringify`: `undefined` is
/// `null`, as a missing field was.
pub fn json(v: &JsValue) -> Result<serde_json::Value, String> {
    if v.is_undefined() {
        return Ok(serde_json::Value::Null);
    }
    let text = js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| JsValue::from(s).as_string())
        .ok_or("mutator arguments must be JSON")?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// Any serializable engine type as a plain JS value (maps as objects, `None`
/// as `null`): the small, rare sync messages, through serde-wasm-bindgen's
/// serializer (+3 KB gzip, measured; its deserializer would cost 13.6 KB, so
/// JS values are read by hand: see `docs/architecture.md`, Size).
pub fn to_js<T: serde::Serialize>(value: &T) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    value.serialize(&serializer).unwrap_or(JsValue::NULL)
}

pub fn wasm_memory_bytes() -> f64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

/// Builds worker messages as JS values.
pub struct JsEncoder;

impl Encoder for JsEncoder {
    type Out = JsValue;
    fn text(&mut self, s: &str) -> JsValue {
        JsValue::from_str(s)
    }
    fn number(&mut self, n: f64) -> JsValue {
        JsValue::from_f64(n)
    }
    fn flag(&mut self, b: bool) -> JsValue {
        JsValue::from_bool(b)
    }
    fn nothing(&mut self) -> JsValue {
        JsValue::UNDEFINED
    }
    fn null(&mut self) -> JsValue {
        JsValue::NULL
    }
    fn sql(&mut self, v: &Value) -> JsValue {
        value(v)
    }
    fn list(&mut self, items: Vec<JsValue>) -> JsValue {
        let list = Array::new_with_length(items.len() as u32);
        for (i, item) in items.into_iter().enumerate() {
            list.set(i as u32, item);
        }
        list.into()
    }
    fn object(&mut self, fields: Vec<(&'static str, JsValue)>) -> JsValue {
        object(&fields)
    }
    fn serialized<T: serde::Serialize>(&mut self, value: &T) -> JsValue {
        to_js(value)
    }
    fn memory_bytes(&mut self) -> f64 {
        wasm_memory_bytes()
    }
}

/// A tab message's fields, read from the posted JS object.
pub struct JsFields<'a>(pub &'a JsValue);

impl JsFields<'_> {
    fn get(&self, name: &str) -> JsValue {
        Reflect::get(self.0, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
    }
}

impl MessageFields for JsFields<'_> {
    fn tag(&self) -> Option<String> {
        self.get("type").as_string()
    }
    fn text(&self, name: &str) -> Option<String> {
        self.get(name).as_string()
    }
    fn number(&self, name: &str) -> Option<f64> {
        self.get(name).as_f64()
    }
    fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).as_bool()
    }
    fn missing(&self, name: &str) -> bool {
        self.get(name).is_undefined()
    }
    fn params(&self, name: &str) -> Result<Vec<Value>, String> {
        params(&self.get(name))
    }
    fn param_sets(&self, name: &str) -> Result<Vec<Vec<Value>>, String> {
        param_sets(&self.get(name))
    }
    fn json(&self, name: &str) -> Result<serde_json::Value, String> {
        json(&self.get(name))
    }
}
