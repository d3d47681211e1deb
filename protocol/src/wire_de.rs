//! Decoding the messages a client receives: push and pull replies and
//! realtime events, by hand ([`crate::decode`] says why). Unknown fields are
//! ignored, so a newer server may add some. The `Deserialize` impls of these
//! types parse JSON and call the same decoders, so serde users (the server's
//! tests) and the SDK read messages one way.

use crate::decode::{self, Fields, Result};
use crate::wire::{
    Cookie, MismatchAction, MutationResult, PatchOp, PullOk, PullResponse, PushResponse,
    RejectionCode, SchemaMismatch, ServerEvent, SubscriptionError, SubscriptionPhase,
    SubscriptionState,
};
use serde::de::{self as serde_de, Deserialize, Deserializer};
use serde_json::Value as Json;
use std::collections::BTreeMap;

impl Cookie {
    pub fn decode(json: Json, path: &str) -> Result<Cookie> {
        match json {
            Json::String(text) => Ok(Cookie::Text(text)),
            Json::Number(n) if n.is_i64() => Ok(Cookie::Integer(n.as_i64().unwrap_or_default())),
            _ => Err(decode::DecodeError {
                path: path.to_owned(),
                problem: "expected an integer or a string".into(),
            }),
        }
    }
}

/// The two kinds of reply to a push or pull, by their wire tags.
#[derive(Clone, Copy)]
enum Reply {
    Ok,
    SchemaMismatch,
}

const REPLY_TAGS: [(&str, Reply); 2] =
    [("ok", Reply::Ok), ("schemaMismatch", Reply::SchemaMismatch)];

impl PushResponse {
    pub fn decode(json: Json, path: &str) -> Result<PushResponse> {
        let mut f = Fields::of(json, path)?;
        match f.tag(&REPLY_TAGS)? {
            Reply::Ok => Ok(PushResponse::Ok {
                results: f.get("results", |v, p| decode::list(v, p, MutationResult::decode))?,
            }),
            Reply::SchemaMismatch => SchemaMismatch::decode(f).map(PushResponse::SchemaMismatch),
        }
    }
}

/// [`MutationResult`]'s variants by their wire tags.
#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    AlreadyProcessed,
    Rejected,
}

impl MutationResult {
    fn decode(json: Json, path: &str) -> Result<MutationResult> {
        let mut f = Fields::of(json, path)?;
        let tag = f.tag(&[
            ("ok", Outcome::Ok),
            ("alreadyProcessed", Outcome::AlreadyProcessed),
            ("rejected", Outcome::Rejected),
        ])?;
        let id = f.get("id", decode::u64)?;
        Ok(match tag {
            Outcome::Ok => MutationResult::Ok { id },
            Outcome::AlreadyProcessed => MutationResult::AlreadyProcessed { id },
            Outcome::Rejected => MutationResult::Rejected {
                id,
                code: RejectionCode::parse(&f.get("code", decode::string)?),
                message: f.get("message", decode::string)?,
            },
        })
    }
}

impl SchemaMismatch {
    /// From the fields of the message that carries it (`"type": "schemaMismatch"`).
    fn decode(mut f: Fields) -> Result<SchemaMismatch> {
        const ACTIONS: [(&str, MismatchAction); 3] = [
            ("updateApp", MismatchAction::UpdateApp),
            ("resetReplica", MismatchAction::ResetReplica),
            ("retryLater", MismatchAction::RetryLater),
        ];
        Ok(SchemaMismatch {
            server_schema_version: f.get("serverSchemaVersion", decode::u32)?,
            action: f.get("action", |v, p| decode::one_of(v, p, &ACTIONS))?,
        })
    }
}

impl PullResponse {
    pub fn decode(json: Json, path: &str) -> Result<PullResponse> {
        let mut f = Fields::of(json, path)?;
        if let Reply::SchemaMismatch = f.tag(&REPLY_TAGS)? {
            return SchemaMismatch::decode(f).map(PullResponse::SchemaMismatch);
        }
        Ok(PullResponse::Ok(PullOk {
            cookie: f.get("cookie", Cookie::decode)?,
            last_mutation_id_changes: f.get("lastMutationIDChanges", |v, p| {
                // Inserted one by one: `collect` into a BTreeMap would bring a
                // sort into the wasm.
                let mut changes = BTreeMap::new();
                for (client, id) in decode::object(v, p)? {
                    let id = decode::u64(id, &format!("{p}.{client}"))?;
                    changes.insert(client, id);
                }
                Ok(changes)
            })?,
            patch: f.get("patch", |v, p| decode::list(v, p, PatchOp::decode))?,
            more: f.get_or("more", false, decode::boolean)?,
            subscriptions: f.get_or("subscriptions", Vec::new(), |v, p| {
                decode::list(v, p, SubscriptionState::decode)
            })?,
        }))
    }
}

impl SubscriptionState {
    fn decode(json: Json, path: &str) -> Result<SubscriptionState> {
        let mut f = Fields::of(json, path)?;
        const PHASES: [(&str, SubscriptionPhase); 3] = [
            ("pending", SubscriptionPhase::Pending),
            ("complete", SubscriptionPhase::Complete),
            ("error", SubscriptionPhase::Error),
        ];
        Ok(SubscriptionState {
            query: f.get("query", decode::string)?,
            args: f.get("args", |v, _| Ok(v))?,
            state: f.get("state", |v, p| decode::one_of(v, p, &PHASES))?,
            synced: f.get("synced", decode::u64)?,
            total: f.get("total", decode::u64)?,
            error: match f.optional("error") {
                None | Some(Json::Null) => None,
                Some(error) => {
                    let mut e = Fields::of(error, &f.path("error"))?;
                    Some(SubscriptionError {
                        code: e.get("code", decode::string)?,
                        message: e.get("message", decode::string)?,
                    })
                }
            },
        })
    }
}

impl PatchOp {
    fn decode(json: Json, path: &str) -> Result<PatchOp> {
        let mut f = Fields::of(json, path)?;
        #[derive(Clone, Copy)]
        enum Op {
            Put,
            Del,
            Clear,
        }
        Ok(
            match f.tag(&[("put", Op::Put), ("del", Op::Del), ("clear", Op::Clear)])? {
                Op::Put => PatchOp::Put {
                    table: f.get("table", decode::string)?,
                    row: f.get("row", decode::object)?,
                },
                Op::Del => PatchOp::Del {
                    table: f.get("table", decode::string)?,
                    key: f.get("key", decode::object)?,
                },
                Op::Clear => PatchOp::Clear,
            },
        )
    }
}

impl ServerEvent {
    pub fn decode(json: Json, path: &str) -> Result<ServerEvent> {
        let mut f = Fields::of(json, path)?;
        f.tag(&[("poke", ())])?;
        Ok(ServerEvent::Poke {
            cookie: match f.optional("cookie") {
                None | Some(Json::Null) => None,
                Some(cookie) => Some(Cookie::decode(cookie, &f.path("cookie"))?),
            },
        })
    }
}

impl RejectionCode {
    pub fn parse(code: &str) -> RejectionCode {
        match code {
            "unknown_mutator" => RejectionCode::UnknownMutator,
            "bad_arguments" => RejectionCode::BadArguments,
            "forbidden" => RejectionCode::Forbidden,
            "mutator_failed" => RejectionCode::MutatorFailed,
            other => RejectionCode::App(other.to_owned()),
        }
    }
}

/// `Deserialize` through the decoders above.
macro_rules! deserialize_by_decoding {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                <$ty>::decode(Json::deserialize(deserializer)?, "").map_err(serde_de::Error::custom)
            }
        }
    )*};
}

deserialize_by_decoding!(Cookie, PushResponse, PullResponse, ServerEvent);

#[cfg(test)]
mod tests {
    use crate::wire::{Cookie, MutationResult, PatchOp, PullResponse, PushResponse, RejectionCode};
    use crate::wire::{MismatchAction, SchemaMismatch, ServerEvent};
    use serde_json::json;

    #[test]
    fn fields_in_any_order_and_unknown_ones_are_read_as_the_format_says() {
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
    fn missing_or_wrong_fields_are_errors_that_say_where() {
        for (bad, said) in [
            (
                json!({"type": "ok", "cookie": 1, "patch": []}),
                "missing field `lastMutationIDChanges`",
            ),
            (
                json!({"type": "ok", "cookie": 1, "lastMutationIDChanges": {}, "patch": [{"type": "put", "table": "t"}]}),
                "patch[0]: missing field `row`",
            ),
            (
                json!({"type": "ok", "cookie": 1, "lastMutationIDChanges": {}, "patch": [{"type": "put", "table": "t", "row": 3}]}),
                "patch[0].row: expected an object",
            ),
            (
                json!({"type": "ok", "cookie": 1, "lastMutationIDChanges": {}, "patch": [{"type": "upsert", "table": "t", "row": {}}]}),
                "patch[0].type: `upsert` is not one of put, del, clear",
            ),
            (
                json!({"type": "ok", "cookie": 1.5, "lastMutationIDChanges": {}, "patch": []}),
                "cookie: expected an integer or a string",
            ),
            (
                json!({"type": "ok", "cookie": 1, "lastMutationIDChanges": {"c": -1}, "patch": []}),
                "lastMutationIDChanges.c: expected a non-negative integer",
            ),
            (json!({"type": "nope"}), "type: `nope`"),
            (
                json!({"type": "schemaMismatch", "action": "updateApp"}),
                "missing field `serverSchemaVersion`",
            ),
            (
                json!({"cookie": 1, "lastMutationIDChanges": {}, "patch": []}),
                "missing field `type`",
            ),
            (json!([1]), "expected an object, found an array"),
        ] {
            let err = serde_json::from_str::<PullResponse>(&bad.to_string()).unwrap_err();
            assert!(err.to_string().contains(said), "{bad}: {err}");
        }
        let mismatch = json!({"type": "schemaMismatch", "serverSchemaVersion": 2, "action": "updateApp", "more": true});
        assert_eq!(
            serde_json::from_str::<PullResponse>(&mismatch.to_string()).unwrap(),
            PullResponse::SchemaMismatch(SchemaMismatch {
                server_schema_version: 2,
                action: MismatchAction::UpdateApp
            })
        );
    }

    #[test]
    fn push_replies_and_events_read_back_what_the_server_writes() {
        let reply = PushResponse::Ok {
            results: vec![
                MutationResult::Ok { id: 1 },
                MutationResult::AlreadyProcessed { id: 2 },
                MutationResult::Rejected {
                    id: 3,
                    code: RejectionCode::Forbidden,
                    message: "no".into(),
                },
                MutationResult::Rejected {
                    id: 4,
                    code: RejectionCode::App("over_quota".into()),
                    message: "full".into(),
                },
            ],
        };
        let mismatch = PushResponse::SchemaMismatch(SchemaMismatch {
            server_schema_version: 9,
            action: MismatchAction::RetryLater,
        });
        for sent in [reply, mismatch] {
            let text = serde_json::to_string(&sent).unwrap();
            assert_eq!(
                serde_json::from_str::<PushResponse>(&text).unwrap(),
                sent,
                "{text}"
            );
        }
        for sent in [
            ServerEvent::Poke { cookie: None },
            ServerEvent::Poke {
                cookie: Some(Cookie::Integer(-3)),
            },
        ] {
            let text = serde_json::to_string(&sent).unwrap();
            assert_eq!(
                serde_json::from_str::<ServerEvent>(&text).unwrap(),
                sent,
                "{text}"
            );
        }
        assert_eq!(
            serde_json::from_str::<ServerEvent>(r#"{"type":"poke"}"#).unwrap(),
            ServerEvent::Poke { cookie: None }
        );
        assert!(serde_json::from_str::<ServerEvent>(r#"{"type":"shove"}"#).is_err());
        assert!(
            serde_json::from_str::<PushResponse>(r#"{"type":"ok","results":[{"type":"ok"}]}"#)
                .is_err()
        );
    }
}
