//! Reading typed messages out of parsed JSON (`serde_json::Value`), by hand.
//!
//! The app definition and every message a client receives (push and pull
//! replies, realtime events) are decoded here instead of by derived
//! `Deserialize`. Derived deserializers are generated anew for every type and
//! every reader, and internally tagged enums (`"type"` inside the object) add
//! serde's buffering of whole objects: in the browser SDK's wasm they were
//! 40 KB of its gzip size (measured). These decoders are plain functions over
//! a parsed tree, shared by the SDK and the server. Their errors name the
//! field (`tables[0].columns[1].type: ...`), which serde's did not.
//!
//! Semantics follow what the derives did: wire messages ignore unknown fields
//! (a newer server may add some); the app definition refuses them (a typo is
//! not an extension).

use serde_json::{Map, Value as Json};
use std::fmt;

/// A message that is JSON but not of the expected shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Where: `tables[0].name`; empty for the message as a whole.
    pub path: String,
    pub problem: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    /// The error of a value decoded with a path relative to `prefix`.
    fn under(mut self, prefix: &str) -> DecodeError {
        self.path = match self.path.as_bytes().first() {
            None => prefix.to_owned(),
            Some(b'[') => format!("{prefix}{}", self.path),
            Some(_) if prefix.is_empty() => self.path,
            Some(_) => format!("{prefix}.{}", self.path),
        };
        self
    }
}

pub type Result<T> = std::result::Result<T, DecodeError>;

/// Decodes a value, given its path. A function pointer, not a generic
/// closure: generic helpers would be compiled anew for every call site.
pub type Decoder<T> = fn(Json, &str) -> Result<T>;

fn error(path: &str, problem: impl Into<String>) -> DecodeError {
    DecodeError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// How a value is described in errors.
fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn expected(path: &str, what: &str, found: &Json) -> DecodeError {
    error(path, format!("expected {what}, found {}", kind(found)))
}

pub fn string(value: Json, path: &str) -> Result<String> {
    match value {
        Json::String(s) => Ok(s),
        other => Err(expected(path, "a string", &other)),
    }
}

pub fn u64(value: Json, path: &str) -> Result<u64> {
    value
        .as_u64()
        .ok_or_else(|| expected(path, "a non-negative integer", &value))
}

pub fn u32(value: Json, path: &str) -> Result<u32> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| expected(path, "an integer from 0 to 4294967295", &value))
}

pub fn boolean(value: Json, path: &str) -> Result<bool> {
    value
        .as_bool()
        .ok_or_else(|| expected(path, "a boolean", &value))
}

pub fn object(value: Json, path: &str) -> Result<Map<String, Json>> {
    match value {
        Json::Object(map) => Ok(map),
        other => Err(expected(path, "an object", &other)),
    }
}

/// Each element of an array, decoded by `each`. An element's path is made
/// only for an error: `each` is given a path relative to the element (``),
/// and what fails is placed under `path[i]` on the way out (a pull page's
/// 5,000 rows made 20,000 path strings that nobody read).
pub fn list<T>(value: Json, path: &str, each: Decoder<T>) -> Result<Vec<T>> {
    match value {
        Json::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| each(item, "").map_err(|e| e.under(&format!("{path}[{i}]"))))
            .collect(),
        other => Err(expected(path, "an array", &other)),
    }
}

/// One of the names of `table`, as a string: the value it names. Names
/// and values sit side by side in one table, so adding a variant cannot
/// shift the meaning of the others (as matching an index would).
pub fn one_of<T: Copy>(value: Json, path: &str, table: &[(&str, T)]) -> Result<T> {
    let name = string(value, path)?;
    match table.iter().find(|(n, _)| *n == name) {
        Some((_, value)) => Ok(*value),
        None => Err(error(
            path,
            format!("`{name}` is not one of {}", listed(table)),
        )),
    }
}

/// The names of `table`, comma-separated. Not `join`: its instantiation for
/// `&str` would be one more in the wasm.
fn listed<T>(table: &[(&str, T)]) -> String {
    table.iter().fold(String::new(), |mut all, (n, _)| {
        if !all.is_empty() {
            all += ", ";
        }
        all += n;
        all
    })
}

/// An object's fields, taken out one by one.
pub struct Fields {
    map: Map<String, Json>,
    path: String,
}

impl Fields {
    pub fn of(value: Json, path: &str) -> Result<Fields> {
        Ok(Fields {
            map: object(value, path)?,
            path: path.to_owned(),
        })
    }

    /// The path of field `key`, for errors and nested values.
    pub fn path<'k>(&self, key: &'k str) -> std::borrow::Cow<'k, str> {
        if self.path.is_empty() {
            std::borrow::Cow::Borrowed(key)
        } else {
            std::borrow::Cow::Owned(format!("{}.{key}", self.path))
        }
    }

    /// The field, if present (`null` counts as present).
    pub fn optional(&mut self, key: &str) -> Option<Json> {
        self.map.remove(key)
    }

    pub fn required(&mut self, key: &str) -> Result<Json> {
        self.map
            .remove(key)
            .ok_or_else(|| error(&self.path, format!("missing field `{key}`")))
    }

    /// The field decoded by `decode`, which is given the value and its path.
    pub fn get<T>(&mut self, key: &str, decode: Decoder<T>) -> Result<T> {
        let value = self.required(key)?;
        decode(value, &self.path(key))
    }

    /// Like [`Fields::get`], with `default` when the field is absent.
    pub fn get_or<T>(&mut self, key: &str, default: T, decode: Decoder<T>) -> Result<T> {
        match self.optional(key) {
            Some(value) => decode(value, &self.path(key)),
            None => Ok(default),
        }
    }

    /// The `"type"` tag of a tagged message: the value `table` gives its name.
    pub fn tag<T: Copy>(&mut self, table: &[(&str, T)]) -> Result<T> {
        let tag = self.required("type")?;
        one_of(tag, &self.path("type"), table)
    }

    /// Refuses fields nobody took (for formats where an unknown field is a typo).
    pub fn no_others(self) -> Result<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(key) => Err(error(&self.path, format!("unknown field `{key}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_field_and_what_was_wrong() {
        let mut fields = Fields::of(json!({"a": {"b": [1, "x"]}}), "").unwrap();
        let mut a = fields.get("a", Fields::of).unwrap();
        let err = a.get("b", |v, p| list(v, p, string)).unwrap_err();
        assert_eq!(err.to_string(), "a.b[0]: expected a string, found a number");
        let err = a.required("c").err().unwrap();
        assert_eq!(err.to_string(), "a: missing field `c`");
        let mut nested =
            Fields::of(json!({"p": [{"t": 1}, {"t": "x", "u": [true, 2]}]}), "m").unwrap();
        let err = nested
            .get("p", |v, p| {
                list(v, p, |v, p| {
                    let mut f = Fields::of(v, p)?;
                    f.get("t", string)?;
                    Ok(())
                })
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.p[0].t: expected a string, found a number"
        );
        let mut nested = Fields::of(json!({"p": [[1, true]]}), "").unwrap();
        let err = nested
            .get("p", |v, p| list(v, p, |v, p| list(v, p, u64)))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "p[0][1]: expected a non-negative integer, found a boolean"
        );
        let err = one_of(json!("int"), "type", &[("integer", 1), ("text", 2)]).unwrap_err();
        assert_eq!(err.to_string(), "type: `int` is not one of integer, text");
        assert!(u32(json!(4_294_967_296u64), "v").is_err());
        assert!(u64(json!(-1), "v").is_err() && u64(json!(1.5), "v").is_err());
    }

    #[test]
    fn unknown_fields_are_refused_only_when_asked() {
        let mut fields = Fields::of(json!({"a": 1, "typo": 2}), "t").unwrap();
        assert_eq!(fields.get("a", u64).unwrap(), 1);
        assert_eq!(fields.get_or("b", 7, u64).unwrap(), 7);
        assert_eq!(
            fields.no_others().unwrap_err().to_string(),
            "t: unknown field `typo`"
        );
    }
}
