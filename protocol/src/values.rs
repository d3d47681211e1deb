//! How the portable column types travel: JSON on the wire and in mutator
//! arguments, SQLite values in the replica. One mapping for rows and
//! arguments, so a value survives client → server → other client unchanged.
//!
//! | type    | JSON                   | SQLite          |
//! |---------|------------------------|-----------------|
//! | integer | integral number        | INTEGER         |
//! | real    | number                 | REAL            |
//! | text    | string                 | TEXT            |
//! | blob    | array of bytes (0–255) | BLOB            |
//! | boolean | `true` / `false`       | INTEGER 1 / 0   |
//! | json    | any JSON value         | TEXT (its JSON) |
//!
//! `null` is SQL NULL for every type (so a json column cannot tell a JSON
//! `null` from no value).

use crate::value::{Value, MAX_SAFE_INTEGER};
use crate::{ColumnType, Mutator, Param, Query};
use serde_json::{Map, Value as Json};

/// Converts a wire value to the SQLite value stored for a column of type `ty`.
pub fn from_json(ty: ColumnType, json: &Json) -> Result<Value, String> {
    let wrong = || format!("expected {}, got {json}", expected(ty));
    Ok(match (ty, json) {
        (_, Json::Null) => Value::Null,
        (ColumnType::Json, j) => Value::Text(j.to_string()),
        (ColumnType::Integer, Json::Number(n)) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            // JavaScript sends every number as a double: 2.0 means 2.
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64 => {
                    Value::Integer(f as i64)
                }
                _ => return Err(wrong()),
            },
        },
        (ColumnType::Real, Json::Number(n)) => Value::Real(n.as_f64().ok_or_else(wrong)?),
        (ColumnType::Text, Json::String(s)) => Value::Text(s.clone()),
        (ColumnType::Boolean, Json::Bool(b)) => Value::Integer(*b as i64),
        (ColumnType::Blob, Json::Array(items)) => Value::Blob(
            items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(wrong)?,
        ),
        _ => return Err(wrong()),
    })
}

fn expected(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "an integer",
        ColumnType::Real => "a number",
        ColumnType::Text => "a string",
        ColumnType::Blob => "an array of bytes",
        ColumnType::Boolean => "true or false",
        ColumnType::Json => "a JSON value",
    }
}

/// Converts a stored SQLite value of a column of type `ty` to its wire form.
pub fn to_json(ty: ColumnType, value: &Value) -> Json {
    match (ty, value) {
        (_, Value::Null) => Json::Null,
        (ColumnType::Boolean, Value::Integer(i)) => Json::Bool(*i != 0),
        (ColumnType::Json, Value::Text(t)) => {
            serde_json::from_str(t).unwrap_or_else(|_| Json::String(t.clone()))
        }
        (_, Value::Integer(i)) => Json::from(*i),
        (_, Value::Real(r)) => serde_json::Number::from_f64(*r).map_or(Json::Null, Json::Number),
        (_, Value::Text(t)) => Json::String(t.clone()),
        (_, Value::Blob(b)) => Json::Array(b.iter().map(|&b| Json::from(b)).collect()),
    }
}

/// Arguments a mutator cannot run with: the client refuses the call, the
/// server rejects the mutation (`bad_arguments`), with this one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadArguments {
    pub mutator: String,
    pub message: String,
}

impl std::fmt::Display for BadArguments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bad arguments for mutator `{}`: {}",
            self.mutator, self.message
        )
    }
}

impl std::error::Error for BadArguments {}

/// Checks `args` against the mutator's declared parameters and converts them:
/// the values in declaration order. Unknown keys are refused (they are typos),
/// missing ones are NULL only when the parameter is nullable.
pub fn bind_args(mutator: &Mutator, args: &Json) -> Result<Vec<Value>, BadArguments> {
    bind_params(&mutator.params, args).map_err(|message| BadArguments {
        mutator: mutator.name.clone(),
        message,
    })
}

/// A subscription's arguments against its query's parameters, by the same
/// rule as a mutator's (the message without the mutator's name: the pull
/// answer names the subscription). `:user_id` is not among them: the server
/// binds it from the token.
pub fn bind_query_args(query: &Query, args: &Json) -> Result<Vec<Value>, String> {
    bind_params(&query.params, args)
}

/// [`bind_args`] over any declared parameters (a mutator's, or a query's:
/// subscription arguments are checked and converted exactly the same way).
pub fn bind_params(params: &[Param], args: &Json) -> Result<Vec<Value>, String> {
    let empty = Map::new();
    let object = match args {
        Json::Object(o) => o,
        Json::Null => &empty,
        other => return Err(format!("arguments must be an object, got {other}")),
    };
    if let Some(extra) = object
        .keys()
        .find(|k| !params.iter().any(|p| &p.name == *k))
    {
        return Err(format!("unknown argument `{extra}`"));
    }
    params
        .iter()
        .map(|param| {
            let value = object.get(&param.name).unwrap_or(&Json::Null);
            if value.is_null() && !param.nullable {
                return Err(format!("`{}` is required", param.name));
            }
            from_json(param.ty, value).map_err(|e| format!("`{}`: {e}", param.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_type_round_trips_through_its_wire_form() {
        let cases = [
            (ColumnType::Integer, json!(42)),
            (ColumnType::Real, json!(1.5)),
            (ColumnType::Text, json!("héllo")),
            (ColumnType::Blob, json!([0, 1, 255])),
            (ColumnType::Boolean, json!(true)),
            (ColumnType::Json, json!({"a": [1, "b", null]})),
            (ColumnType::Text, Json::Null),
        ];
        for (ty, wire) in cases {
            let stored = from_json(ty, &wire).unwrap();
            assert_eq!(to_json(ty, &stored), wire, "{ty:?}");
        }
        assert_eq!(
            from_json(ColumnType::Integer, &json!(2.0)),
            Ok(Value::Integer(2))
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let err = from_json(ColumnType::Boolean, &json!(1)).unwrap_err();
        assert_eq!(err, "expected true or false, got 1");
        assert!(from_json(ColumnType::Integer, &json!(1.5)).is_err());
        assert!(from_json(ColumnType::Blob, &json!([256])).is_err());
    }
}
