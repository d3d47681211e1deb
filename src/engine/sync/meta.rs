//! `_ferry_meta`: the replica's small key-value facts (client ID, next
//! mutation ID, cookie, schema version and the table definitions it was built
//! from, the undo-recording switch).

use super::error::Result;
use crate::engine::database::Database;
use crate::engine::value::Value;
use ferrydb_protocol::Cookie;

pub fn get(db: &mut Database, key: &str) -> Result<Option<Value>> {
    let rows = db.rows(
        "SELECT value FROM _ferry_meta WHERE key = ?1",
        &[Value::Text(key.to_owned())],
    )?;
    Ok(rows.rows.into_iter().next().map(|mut r| r.remove(0)))
}

pub fn get_text(db: &mut Database, key: &str) -> Result<Option<String>> {
    Ok(match get(db, key)? {
        Some(Value::Text(t)) => Some(t),
        _ => None,
    })
}

pub fn get_int(db: &mut Database, key: &str) -> Result<Option<i64>> {
    Ok(match get(db, key)? {
        Some(Value::Integer(i)) => Some(i),
        _ => None,
    })
}

pub fn set(db: &mut Database, key: &str, value: Value) -> Result<()> {
    db.execute(
        "INSERT OR REPLACE INTO _ferry_meta (key, value) VALUES (?1, ?2)",
        &[Value::Text(key.to_owned()), value],
    )?;
    Ok(())
}

/// The cookie is stored as its JSON text, so both of its forms round-trip.
pub fn get_cookie(db: &mut Database) -> Result<Option<Cookie>> {
    let json = get_text(db, "cookie")?.and_then(|t| serde_json::from_str(&t).ok());
    Ok(json.and_then(|json| Cookie::decode(json, "").ok()))
}

pub fn set_cookie(db: &mut Database, cookie: Option<&Cookie>) -> Result<()> {
    let value = match cookie {
        Some(c) => Value::Text(serde_json::to_string(c).expect("cookie serializes")),
        None => Value::Null,
    };
    set(db, "cookie", value)
}
