//! Values between the wire and Postgres. Arguments are checked exactly as
//! the SDK and the SQLite store check them (`values::bind_args`: the same
//! `bad_arguments` messages), then bound with the parameter's declared
//! Postgres type. Rows come back as the wire JSON the SQLite store's `values::to_json`
//! produces: booleans as `true`/`false`, json columns nested, blobs as arrays
//! of bytes.

use ferrydb_protocol::ColumnType;
use ferrydb_protocol::Value;
use serde_json::Value as Json;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

pub type Param = Box<dyn ToSql + Sync + Send>;

/// A checked argument (as `bind_args` converts it) as a Postgres parameter of
/// the declared type.
pub fn to_param(ty: ColumnType, value: &Value) -> Param {
    match (ty, value) {
        (ColumnType::Integer, Value::Integer(i)) => Box::new(*i),
        (ColumnType::Integer, _) => Box::new(None::<i64>),
        (ColumnType::Real, Value::Real(r)) => Box::new(*r),
        (ColumnType::Real, Value::Integer(i)) => Box::new(*i as f64),
        (ColumnType::Real, _) => Box::new(None::<f64>),
        (ColumnType::Text, Value::Text(t)) => Box::new(t.clone()),
        (ColumnType::Text, _) => Box::new(None::<String>),
        (ColumnType::Blob, Value::Blob(b)) => Box::new(b.clone()),
        (ColumnType::Blob, _) => Box::new(None::<Vec<u8>>),
        (ColumnType::Boolean, Value::Integer(i)) => Box::new(*i != 0),
        (ColumnType::Boolean, _) => Box::new(None::<bool>),
        // `bind_args` keeps a json argument as its JSON text; a JSON `null`
        // argument is SQL NULL, as in SQLite.
        (ColumnType::Json, Value::Text(t)) => {
            Box::new(serde_json::from_str::<Json>(t).unwrap_or(Json::String(t.clone())))
        }
        (ColumnType::Json, _) => Box::new(None::<Json>),
    }
}

/// The Postgres array type of a parameter of type `ty`.
pub fn array_type(ty: ColumnType) -> tokio_postgres::types::Type {
    use tokio_postgres::types::Type;
    match ty {
        ColumnType::Integer => Type::INT8_ARRAY,
        ColumnType::Real => Type::FLOAT8_ARRAY,
        ColumnType::Text => Type::TEXT_ARRAY,
        ColumnType::Blob => Type::BYTEA_ARRAY,
        ColumnType::Boolean => Type::BOOL_ARRAY,
        ColumnType::Json => Type::JSONB_ARRAY,
    }
}

/// Checked arguments of one parameter (one per argument list) as a
/// Postgres array of the declared type, each converted as [`to_param`]
/// converts it.
pub fn to_array<'a>(ty: ColumnType, values: impl Iterator<Item = &'a Value>) -> Param {
    match ty {
        ColumnType::Integer => Box::new(
            values
                .map(|v| match v {
                    Value::Integer(i) => Some(*i),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Real => Box::new(
            values
                .map(|v| match v {
                    Value::Real(r) => Some(*r),
                    Value::Integer(i) => Some(*i as f64),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Text => Box::new(
            values
                .map(|v| match v {
                    Value::Text(t) => Some(t.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Blob => Box::new(
            values
                .map(|v| match v {
                    Value::Blob(b) => Some(b.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Boolean => Box::new(
            values
                .map(|v| match v {
                    Value::Integer(i) => Some(*i != 0),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Json => Box::new(
            values
                .map(|v| match v {
                    Value::Text(t) => {
                        Some(serde_json::from_str::<Json>(t).unwrap_or(Json::String(t.clone())))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
    }
}

/// A key value from a paging cursor, if it has the key column's type (and,
/// for text, no NUL: Postgres text cannot hold one, so no row has such a
/// key, and binding it would fail the query).
pub fn key_param(ty: ColumnType, value: &Value) -> Option<Param> {
    match (ty, value) {
        (ColumnType::Integer, Value::Integer(i)) => Some(Box::new(*i)),
        (ColumnType::Text, Value::Text(t)) if !t.contains('\0') => Some(Box::new(t.clone())),
        _ => None,
    }
}

pub fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Column `i` of `row`, of type `ty`, in its wire form.
pub fn to_json(row: &Row, i: usize, ty: ColumnType) -> Result<Json, tokio_postgres::Error> {
    Ok(match ty {
        ColumnType::Integer => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Json::Null, Json::from),
        ColumnType::Real => row
            .try_get::<_, Option<f64>>(i)?
            .and_then(serde_json::Number::from_f64)
            .map_or(Json::Null, Json::Number),
        ColumnType::Text => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Json::Null, Json::String),
        ColumnType::Blob => row
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Json::Null, |b| {
                Json::Array(b.into_iter().map(Json::from).collect())
            }),
        ColumnType::Boolean => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Json::Null, Json::Bool),
        ColumnType::Json => row.try_get::<_, Option<Json>>(i)?.unwrap_or(Json::Null),
    })
}
