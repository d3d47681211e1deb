//! The cookie of a full sync in progress: `full:<version>:<table
//! index>:<JSON array of the last key sent>`. Opaque to clients, who send it
//! back; anything this server could not have written is refused, so a
//! tampered or stale cursor gets a reset, never a query that fails.

use super::pull::TableShape;
use ferrydb_protocol::{ColumnType, Value};
use serde_json::Value as Json;

#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    /// The version the full sync serves the state of.
    pub at: i64,
    /// The table being sent, an index into the app's tables.
    pub table: usize,
    /// The key of the last row sent, one value per key column.
    pub after: Vec<Value>,
}

impl Cursor {
    /// A cursor over `tables`: the table exists and the key has its key
    /// columns' count and types. Text with a NUL is no key: Postgres text
    /// cannot hold one, so neither store may be asked for it.
    pub fn parse(text: &str, tables: &[TableShape]) -> Option<Cursor> {
        let mut parts = text.splitn(4, ':');
        if parts.next()? != "full" {
            return None;
        }
        let at = parts.next()?.parse().ok()?;
        let table: usize = parts.next()?.parse().ok()?;
        let key: Vec<Json> = serde_json::from_str(parts.next()?).ok()?;
        let shape = tables.get(table)?;
        if key.len() != shape.key.len() {
            return None;
        }
        let after = shape
            .key
            .iter()
            .zip(&key)
            .map(|((_, ty), json)| key_value(*ty, json))
            .collect::<Option<Vec<_>>>()?;
        Some(Cursor { at, table, after })
    }

    pub fn render(&self) -> String {
        let key: Vec<Json> = self
            .after
            .iter()
            .map(|v| match v {
                Value::Integer(i) => Json::from(*i),
                Value::Text(t) => Json::from(t.as_str()),
                _ => Json::Null,
            })
            .collect();
        format!("full:{}:{}:{}", self.at, self.table, Json::Array(key))
    }
}

/// A key column's value from its JSON form (in a cursor, or in a row as a
/// store returned it). Keys are integers or text (validated).
pub fn key_value(ty: ColumnType, json: &Json) -> Option<Value> {
    match (ty, json) {
        (ColumnType::Integer, Json::Number(n)) => n.as_i64().map(Value::Integer),
        (ColumnType::Text, Json::String(s)) if !s.contains('\0') => Some(Value::Text(s.clone())),
        _ => None,
    }
}
