//! Hand-written `Deserialize` for the pull reply and its patch ops, the one
//! message that carries bulk data. Derived deserializers of internally tagged
//! enums (`"type"` inside the object) first buffer the whole object into an
//! intermediate tree, since the tag may come last; for an initial-sync page
//! that is every row parsed twice. These visitors read the fields as they
//! come, whatever their order, and accept what the derived ones accept
//! (unknown fields ignored), with one difference: a field of the other
//! variant that comes *before* the tag must be well-formed (a server writes
//! the tag first; serde does).

use crate::wire::{Cookie, MismatchAction, PatchOp, PullOk, PullResponse, Row, SchemaMismatch};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt;

/// Field names, read without allocating.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum OpField {
    Type,
    Table,
    Row,
    Key,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum ResponseField {
    #[serde(rename = "type")]
    Type,
    #[serde(rename = "cookie")]
    Cookie,
    #[serde(rename = "lastMutationIDChanges")]
    Changes,
    #[serde(rename = "patch")]
    Patch,
    #[serde(rename = "more")]
    More,
    #[serde(rename = "serverSchemaVersion")]
    ServerSchemaVersion,
    #[serde(rename = "action")]
    Action,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum OpKind {
    Put,
    Del,
    Clear,
}

/// A row or key read before the tag: kept as JSON until the tag says
/// whether the variant uses it.
fn into_row<E: de::Error>(value: Option<Json>, field: &'static str) -> Result<Row, E> {
    match value {
        Some(Json::Object(row)) => Ok(row),
        Some(other) => Err(E::invalid_type(unexpected(&other), &"a map")),
        None => Err(E::missing_field(field)),
    }
}

fn unexpected(value: &Json) -> de::Unexpected<'_> {
    match value {
        Json::Null => de::Unexpected::Unit,
        Json::Bool(b) => de::Unexpected::Bool(*b),
        Json::Number(_) => de::Unexpected::Other("number"),
        Json::String(s) => de::Unexpected::Str(s),
        Json::Array(_) => de::Unexpected::Seq,
        Json::Object(_) => de::Unexpected::Map,
    }
}

fn set<T, E: de::Error>(slot: &mut Option<T>, value: T, field: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(field));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Deserialize<'de> for PatchOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OpVisitor;
        impl<'de> Visitor<'de> for OpVisitor {
            type Value = PatchOp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a patch op (put, del or clear)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PatchOp, A::Error> {
                let (mut kind, mut table, mut row, mut key) = (None, None, None, None);
                while let Some(field) = map.next_key::<OpField>()? {
                    match field {
                        OpField::Type => set(&mut kind, map.next_value::<OpKind>()?, "type")?,
                        OpField::Table => set(&mut table, map.next_value::<String>()?, "table")?,
                        OpField::Row => set(&mut row, map.next_value::<Json>()?, "row")?,
                        OpField::Key => set(&mut key, map.next_value::<Json>()?, "key")?,
                        OpField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let table = || table.ok_or_else(|| de::Error::missing_field("table"));
                match kind.ok_or_else(|| de::Error::missing_field("type"))? {
                    OpKind::Put => Ok(PatchOp::Put {
                        table: table()?,
                        row: into_row(row, "row")?,
                    }),
                    OpKind::Del => Ok(PatchOp::Del {
                        table: table()?,
                        key: into_row(key, "key")?,
                    }),
                    OpKind::Clear => Ok(PatchOp::Clear),
                }
            }
        }
        deserializer.deserialize_map(OpVisitor)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum ResponseKind {
    Ok,
    SchemaMismatch,
}

impl<'de> Deserialize<'de> for PullResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ResponseVisitor;
        impl<'de> Visitor<'de> for ResponseVisitor {
            type Value = PullResponse;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a pull response")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PullResponse, A::Error> {
                let mut kind = None;
                let mut cookie: Option<Cookie> = None;
                let mut changes: Option<BTreeMap<String, u64>> = None;
                let mut patch: Option<Vec<PatchOp>> = None;
                let mut more: Option<bool> = None;
                let mut server_schema_version: Option<u32> = None;
                let mut action: Option<MismatchAction> = None;
                use ResponseField as F;
                while let Some(field) = map.next_key::<ResponseField>()? {
                    let mismatch = matches!(kind, Some(ResponseKind::SchemaMismatch));
                    let ok = matches!(kind, Some(ResponseKind::Ok));
                    match field {
                        F::Type => set(&mut kind, map.next_value::<ResponseKind>()?, "type")?,
                        // Fields of the other variant are skipped once the tag is known.
                        F::Cookie | F::Changes | F::Patch | F::More if mismatch => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        F::ServerSchemaVersion | F::Action if ok => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        F::Cookie => set(&mut cookie, map.next_value()?, "cookie")?,
                        F::Changes => {
                            set(&mut changes, map.next_value()?, "lastMutationIDChanges")?
                        }
                        F::Patch => set(&mut patch, map.next_value()?, "patch")?,
                        F::More => set(&mut more, map.next_value()?, "more")?,
                        F::ServerSchemaVersion => set(
                            &mut server_schema_version,
                            map.next_value()?,
                            "serverSchemaVersion",
                        )?,
                        F::Action => set(&mut action, map.next_value()?, "action")?,
                        F::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                match kind.ok_or_else(|| de::Error::missing_field("type"))? {
                    ResponseKind::Ok => Ok(PullResponse::Ok(PullOk {
                        cookie: cookie.ok_or_else(|| de::Error::missing_field("cookie"))?,
                        last_mutation_id_changes: changes
                            .ok_or_else(|| de::Error::missing_field("lastMutationIDChanges"))?,
                        patch: patch.ok_or_else(|| de::Error::missing_field("patch"))?,
                        more: more.unwrap_or_default(),
                    })),
                    ResponseKind::SchemaMismatch => {
                        Ok(PullResponse::SchemaMismatch(SchemaMismatch {
                            server_schema_version: server_schema_version
                                .ok_or_else(|| de::Error::missing_field("serverSchemaVersion"))?,
                            action: action.ok_or_else(|| de::Error::missing_field("action"))?,
                        }))
                    }
                }
            }
        }
        deserializer.deserialize_map(ResponseVisitor)
    }
}

#[cfg(test)]
mod tests {
    use crate::wire::{Cookie, PatchOp, PullResponse};
    use serde_json::json;

    #[test]
    fn fields_in_any_order_and_unknown_ones_are_read_as_the_derived_format_says() {
        let text = json!({
            "patch": [
                {"row": {"id": "a", "value": 1}, "table": "counters", "type": "put", "extra": [1]},
                {"key": {"id": "b"}, "type": "del", "table": "counters"},
                {"type": "clear", "row": 7}
            ],
            "future": {"x": 1},
            "cookie": "full:3:0:[\"a\"]",
            "lastMutationIDChanges": {"c1": 4},
            "type": "ok"
        })
        .to_string();
        let PullResponse::Ok(pull) = serde_json::from_str::<PullResponse>(&text).unwrap() else {
            panic!("not ok");
        };
        assert_eq!(pull.cookie, Cookie::Text("full:3:0:[\"a\"]".into()));
        assert_eq!(pull.last_mutation_id_changes.get("c1"), Some(&4));
        assert!(!pull.more);
        assert!(
            matches!(&pull.patch[0], PatchOp::Put { table, row } if table == "counters" && row["value"] == 1)
        );
        assert!(matches!(&pull.patch[1], PatchOp::Del { key, .. } if key["id"] == "b"));
        assert_eq!(pull.patch[2], PatchOp::Clear);
        // What we write, we read back.
        let again: PullResponse =
            serde_json::from_str(&serde_json::to_string(&PullResponse::Ok(pull.clone())).unwrap())
                .unwrap();
        assert_eq!(again, PullResponse::Ok(pull));
    }

    #[test]
    fn missing_or_wrong_fields_are_errors() {
        for bad in [
            json!({"type": "ok", "cookie": 1, "patch": []}),
            json!({"type": "ok", "cookie": 1, "lastMutationIDChanges": {}, "patch": [{"type": "put", "table": "t"}]}),
            json!({"type": "ok", "cookie": 1, "lastMutationIDChanges": {}, "patch": [{"type": "put", "table": "t", "row": 3}]}),
            json!({"type": "ok", "cookie": 1, "lastMutationIDChanges": {}, "patch": [{"type": "upsert", "table": "t", "row": {}}]}),
            json!({"type": "nope"}),
            json!({"type": "schemaMismatch", "action": "updateApp"}),
            json!({"cookie": 1, "lastMutationIDChanges": {}, "patch": []}),
        ] {
            assert!(
                serde_json::from_str::<PullResponse>(&bad.to_string()).is_err(),
                "{bad}"
            );
        }
        let mismatch = json!({"type": "schemaMismatch", "serverSchemaVersion": 2, "action": "updateApp", "more": true});
        assert!(matches!(
            serde_json::from_str::<PullResponse>(&mismatch.to_string()).unwrap(),
            PullResponse::SchemaMismatch(m) if m.server_schema_version == 2
        ));
    }
}
