//! Engine values to JavaScript values, built directly rather than through serde:
//! query rows are the hot path of every live-query update.

use crate::engine::database::ExecResult;
use crate::engine::error::Error;
use crate::engine::patch::{Patch, Segment};
use crate::engine::request::Response;
use crate::engine::value::{QueryResult, Value, MAX_SAFE_INTEGER};
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

/// `{columns, rows}` with rows as arrays: compact to post, and the TypeScript
/// side turns them into objects once, keeping unchanged rows' identity.
pub fn rows(result: &QueryResult) -> JsValue {
    object(&[
        ("columns", columns(&result.columns)),
        ("rows", row_list(&result.rows)),
    ])
}

fn columns(names: &[String]) -> JsValue {
    names
        .iter()
        .map(|c| JsValue::from_str(c))
        .collect::<Array>()
        .into()
}

fn row_list(rows: &[Vec<Value>]) -> JsValue {
    let list = Array::new_with_length(rows.len() as u32);
    for (i, row) in rows.iter().enumerate() {
        list.set(i as u32, row.iter().map(value).collect::<Array>().into());
    }
    list.into()
}

/// `{columns?, segments}`; a kept run is `[from, count]`, new rows are `{rows}`.
pub fn patch(patch: &Patch) -> JsValue {
    let segments: Array = patch
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Keep { from, count } => Array::of2(
                &JsValue::from_f64(*from as f64),
                &JsValue::from_f64(*count as f64),
            )
            .into(),
            Segment::Rows(rows) => object(&[("rows", row_list(rows))]),
        })
        .collect();
    match &patch.columns {
        Some(names) => object(&[("columns", columns(names)), ("segments", segments.into())]),
        None => object(&[("segments", segments.into())]),
    }
}

fn exec(result: &ExecResult) -> JsValue {
    object(&[
        (
            "rowsAffected",
            JsValue::from_f64(result.rows_affected as f64),
        ),
        (
            "lastInsertRowid",
            value(&Value::Integer(result.last_insert_rowid)),
        ),
    ])
}

pub fn response(response: &Response) -> JsValue {
    match response {
        Response::Exec(result) => exec(result),
        Response::Rows(result) => rows(result),
        Response::Stats(stats) => object(&[
            ("tabs", JsValue::from_f64(stats.tabs as f64)),
            ("liveQueries", JsValue::from_f64(stats.live_queries as f64)),
            (
                "subscriptions",
                JsValue::from_f64(stats.subscriptions as f64),
            ),
            // The replica's pages live in wasm memory: most of the worker's footprint.
            ("wasmMemoryBytes", JsValue::from_f64(wasm_memory_bytes())),
        ]),
        Response::Mutated { mutation_id } => {
            object(&[("mutationId", JsValue::from_f64(*mutation_id as f64))])
        }
        Response::Done => JsValue::UNDEFINED,
    }
}

/// Any serializable engine type as a plain JS value (maps as objects, `None`
/// as `null`): for the small, rare sync messages, where the cost of a JSON
/// round trip is moot. Through serde_json, which the wasm has anyway, so
/// every `Serialize` impl exists once.
pub fn to_js<T: serde::Serialize>(value: &T) -> JsValue {
    serde_json::to_string(value)
        .ok()
        .and_then(|text| js_sys::JSON::parse(&text).ok())
        .unwrap_or(JsValue::NULL)
}

/// `{code, message, retryable}`: the shape `FerryError` is built from.
pub fn error(err: &Error) -> JsValue {
    error_data(&err.to_data())
}

pub fn error_data(data: &crate::engine::error::ErrorData) -> JsValue {
    object(&[
        ("code", JsValue::from_str(data.code.as_str())),
        ("message", JsValue::from_str(&data.message)),
        ("retryable", JsValue::from_bool(data.retryable)),
    ])
}

fn wasm_memory_bytes() -> f64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    memory
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}
