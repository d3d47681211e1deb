//! Every message a tab sends the worker, defined once: [`tab_messages!`]
//! lists each variant's wire tag and its fields' wire names and kinds, and
//! from that one list come the Rust enum, its decoder (by tag and field
//! name, never by position) and the TypeScript type (`js/generated/`, kept
//! equal by `host::tests::typescript`).
//!
//! The decoder reads through [`MessageFields`]: a JS object in the worker
//! (`src/wasm/`), a JSON value in native tests and for the golden fixtures
//! (`tests/fixtures/messages/`). Reading a JS object field by field, rather
//! than through serde, keeps `execMany`'s rows (the bulk-load path) free of a
//! second deserializer in the wasm.

use crate::engine::live::SubscriptionId;
use crate::engine::request::Request;
use crate::engine::value::Value;

/// A tab's own numbering of its calls; the reply carries it back.
pub type CallId = u64;

/// Where a decoder reads one message's fields.
pub trait MessageFields {
    /// The `type` tag.
    fn tag(&self) -> Option<String>;
    /// `None` when missing, `null` or not a string.
    fn text(&self, name: &str) -> Option<String>;
    fn number(&self, name: &str) -> Option<f64>;
    fn flag(&self, name: &str) -> Option<bool>;
    /// Missing or `undefined` (`null` is present).
    fn missing(&self, name: &str) -> bool;
    /// A parameter list (SQLite values, JS conversions included).
    fn params(&self, name: &str) -> Result<Vec<Value>, String>;
    /// A list of parameter lists.
    fn param_sets(&self, name: &str) -> Result<Vec<Vec<Value>>, String>;
    /// Any JSON value (mutator arguments); missing is `null`.
    fn json(&self, name: &str) -> Result<serde_json::Value, String>;
}

/// How one field is read and typed in TypeScript.
pub trait FieldKind {
    type Out;
    /// Its TypeScript type.
    const TS: &'static str;
    /// Whether TypeScript may leave it out.
    const OPTIONAL: bool = false;
    fn read(fields: &impl MessageFields, name: &str) -> Result<Self::Out, String>;
    /// The field as JSON (`None`: left out), for fixtures and tests.
    fn to_json(value: &Self::Out) -> Option<serde_json::Value>;
}

/// The kinds of fields tab messages have.
pub mod kind {
    use super::{CallId, FieldKind, MessageFields, Value};

    pub struct Text;
    impl FieldKind for Text {
        type Out = String;
        const TS: &'static str = "string";
        fn read(f: &impl MessageFields, name: &str) -> Result<String, String> {
            f.text(name)
                .ok_or_else(|| format!("`{name}` must be a string"))
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            Some(serde_json::Value::from(v.as_str()))
        }
    }

    /// A string that may be missing or `null`.
    pub struct OptText;
    impl FieldKind for OptText {
        type Out = Option<String>;
        const TS: &'static str = "string | null";
        const OPTIONAL: bool = true;
        fn read(f: &impl MessageFields, name: &str) -> Result<Option<String>, String> {
            Ok(f.text(name))
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            v.as_deref().map(serde_json::Value::from)
        }
    }

    /// `true`, or else false.
    pub struct Flag;
    impl FieldKind for Flag {
        type Out = bool;
        const TS: &'static str = "boolean";
        fn read(f: &impl MessageFields, name: &str) -> Result<bool, String> {
            Ok(f.flag(name).unwrap_or(false))
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            Some(serde_json::Value::from(*v))
        }
    }

    /// A non-negative integer below 2^32.
    pub struct Int;
    impl FieldKind for Int {
        type Out = u32;
        const TS: &'static str = "number";
        fn read(f: &impl MessageFields, name: &str) -> Result<u32, String> {
            f.number(name)
                .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| format!("`{name}` must be an integer id"))
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            Some(serde_json::Value::from(*v))
        }
    }

    /// A call id: a non-negative integer within 2^53.
    pub struct Id;
    impl FieldKind for Id {
        type Out = CallId;
        const TS: &'static str = "number";
        fn read(f: &impl MessageFields, name: &str) -> Result<CallId, String> {
            f.number(name)
                .filter(|n| n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(n))
                .map(|n| n as CallId)
                .ok_or_else(|| format!("`{name}` must be an integer id"))
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            Some(serde_json::Value::from(*v))
        }
    }

    /// A non-negative integer below 2^32 that may be missing or `null`.
    pub struct OptInt;
    impl FieldKind for OptInt {
        type Out = Option<u32>;
        const TS: &'static str = "number | null";
        const OPTIONAL: bool = true;
        fn read(f: &impl MessageFields, name: &str) -> Result<Option<u32>, String> {
            match f.number(name) {
                None => Ok(None),
                Some(_) => Int::read(f, name).map(Some),
            }
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            v.map(serde_json::Value::from)
        }
    }

    /// SQL parameters; missing is none.
    pub struct Params;
    impl FieldKind for Params {
        type Out = Vec<Value>;
        const TS: &'static str = "SqlParam[]";
        fn read(f: &impl MessageFields, name: &str) -> Result<Vec<Value>, String> {
            if f.missing(name) {
                return Ok(Vec::new());
            }
            f.params(name)
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            Some(super::params_json(v))
        }
    }

    pub struct ParamSets;
    impl FieldKind for ParamSets {
        type Out = Vec<Vec<Value>>;
        const TS: &'static str = "SqlParam[][]";
        fn read(f: &impl MessageFields, name: &str) -> Result<Vec<Vec<Value>>, String> {
            f.param_sets(name)
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            Some(serde_json::Value::Array(
                v.iter().map(|set| super::params_json(set)).collect(),
            ))
        }
    }

    pub struct Json;
    impl FieldKind for Json {
        type Out = serde_json::Value;
        const TS: &'static str = "unknown";
        fn read(f: &impl MessageFields, name: &str) -> Result<serde_json::Value, String> {
            f.json(name)
        }
        fn to_json(v: &Self::Out) -> Option<serde_json::Value> {
            Some(v.clone())
        }
    }
}

/// One message's wire shape: its tag and its fields (wire name, TypeScript
/// type, optional). What the TypeScript types are generated from.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub tag: &'static str,
    pub fields: &'static [(&'static str, &'static str, bool)],
}

macro_rules! tab_messages {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $tag:literal { $( $field:ident : $kind:ident = $wire:literal ),* $(,)? }
    ),* $(,)?) => {
        /// A message from a tab, decoded.
        #[derive(Clone, Debug, PartialEq)]
        pub enum TabMessage {
            $( $(#[$doc])* $variant { $( $field: <kind::$kind as FieldKind>::Out ),* }, )*
        }

        impl TabMessage {
            /// Every message's wire shape, in definition order.
            pub const SHAPES: &'static [Shape] = &[
                $( Shape {
                    tag: $tag,
                    fields: &[ $( ($wire, <kind::$kind as FieldKind>::TS, <kind::$kind as FieldKind>::OPTIONAL) ),* ],
                }, )*
            ];

            pub fn tag(&self) -> &'static str {
                match self { $( TabMessage::$variant { .. } => $tag, )* }
            }

            /// The message as JSON, as a tab sends it.
            pub fn to_json(&self) -> serde_json::Value {
                let mut object = serde_json::Map::new();
                object.insert("type".into(), self.tag().into());
                match self {
                    $( TabMessage::$variant { $( $field ),* } => {
                        $( if let Some(v) = <kind::$kind as FieldKind>::to_json($field) {
                            object.insert($wire.into(), v);
                        } )*
                    } )*
                }
                serde_json::Value::Object(object)
            }

            /// Reads one message. The error names the field, for `bad_request`.
            pub fn decode(fields: &impl MessageFields) -> Result<TabMessage, String> {
                let tag = fields.tag().unwrap_or_default();
                match tag.as_str() {
                    $( $tag => Ok(TabMessage::$variant {
                        $( $field: <kind::$kind as FieldKind>::read(fields, $wire)?, )*
                    }), )*
                    other => Err(format!("unknown message type `{other}`")),
                }
            }
        }
    };
}

tab_messages! {
    /// The tab's Web Lock (held for its life): granted to the worker once the tab is gone.
    Hello = "hello" { lock: Text = "lock" },
    /// The tab's app definition (JSON text), its sync base URL and whether it has a token provider.
    Open = "open" { id: Id = "id", app: OptText = "app", server: OptText = "server", auth: Flag = "auth" },
    /// The answer to `needToken`: a token, none (`null`), or why the provider failed.
    Token = "token" { ask: Int = "ask", token: OptText = "token", error: OptText = "error" },
    /// The tab closes.
    Bye = "bye" {},
    DeleteDatabase = "deleteDatabase" { id: Id = "id" },
    /// `key`, on writes a tab may send again to a new leader tab: applied once (`engine::once`).
    Exec = "exec" { id: Id = "id", sql: Text = "sql", params: Params = "params", key: OptText = "key" },
    /// One statement, run once per parameter set in one transaction.
    ExecMany = "execMany" { id: Id = "id", sql: Text = "sql", rows: ParamSets = "rows", key: OptText = "key" },
    Query = "query" { id: Id = "id", sql: Text = "sql", params: Params = "params" },
    Subscribe = "subscribe" { id: Id = "id", subscription: Int = "subscription", sql: Text = "sql", params: Params = "params" },
    Unsubscribe = "unsubscribe" { id: Id = "id", subscription: Int = "subscription" },
    /// Runs the app's mutator `name` with `args` and queues it for the server.
    Mutate = "mutate" { id: Id = "id", name: Text = "name", args: Json = "args", key: OptText = "key" },
    ClearRejections = "clearRejections" { id: Id = "id" },
    PauseSync = "pauseSync" { id: Id = "id" },
    ResumeSync = "resumeSync" { id: Id = "id" },
    Stats = "stats" { id: Id = "id" },
    /// Holds the sync subscription to query `query` with `args` (protocol v2)
    /// as the tab's hold `hold`; `ttl` (ms) is how long it stays after the
    /// last holder lets go.
    SyncHold = "syncHold" { id: Id = "id", hold: Int = "hold", query: Text = "query", args: Json = "args", ttl: OptInt = "ttl" },
    /// Lets go of hold `hold`.
    SyncRelease = "syncRelease" { id: Id = "id", hold: Int = "hold" },
}

/// A message that could not be read: why, and its call id if it had one
/// (the reply to a call must still come, as `bad_request`).
#[derive(Clone, Debug, PartialEq)]
pub struct Undecodable {
    pub id: Option<CallId>,
    pub error: String,
}

impl TabMessage {
    /// Reads one message, or says why it cannot be read.
    pub fn read(fields: &impl MessageFields) -> Result<TabMessage, Undecodable> {
        TabMessage::decode(fields).map_err(|error| Undecodable {
            id: kind::Id::read(fields, "id").ok(),
            error,
        })
    }
}

/// The tags of messages that are not engine requests (the rest the host handles).
pub const CONTROL_TAGS: [&str; 5] = ["hello", "open", "token", "bye", "deleteDatabase"];

impl TabMessage {
    /// An engine request with the call id it answers and its once-key, for
    /// the messages that are one.
    pub fn into_request(self) -> Result<(CallId, Request, Option<String>), TabMessage> {
        let subscription = |s: u32| -> SubscriptionId { s };
        let (id, request) = match self {
            TabMessage::Exec {
                id,
                sql,
                params,
                key,
            } => return Ok((id, Request::Exec { sql, params }, key)),
            TabMessage::ExecMany { id, sql, rows, key } => {
                return Ok((id, Request::ExecMany { sql, rows }, key))
            }
            TabMessage::Mutate {
                id,
                name,
                args,
                key,
            } => return Ok((id, Request::Mutate { name, args }, key)),
            TabMessage::Query { id, sql, params } => (id, Request::Query { sql, params }),
            TabMessage::Subscribe {
                id,
                subscription: s,
                sql,
                params,
            } => (
                id,
                Request::Subscribe {
                    subscription: subscription(s),
                    sql,
                    params,
                },
            ),
            TabMessage::Unsubscribe {
                id,
                subscription: s,
            } => (
                id,
                Request::Unsubscribe {
                    subscription: subscription(s),
                },
            ),
            TabMessage::ClearRejections { id } => (id, Request::ClearRejections),
            TabMessage::PauseSync { id } => (id, Request::PauseSync),
            TabMessage::ResumeSync { id } => (id, Request::ResumeSync),
            TabMessage::Stats { id } => (id, Request::Stats),
            other => return Err(other),
        };
        Ok((id, request, None))
    }
}

fn params_json(values: &[Value]) -> serde_json::Value {
    serde_json::to_value(values).unwrap_or_default()
}

/// A tab message as JSON (golden fixtures, native tests). Integral numbers
/// bind as integers, as JavaScript numbers do.
impl MessageFields for serde_json::Value {
    fn tag(&self) -> Option<String> {
        self.text("type")
    }
    fn text(&self, name: &str) -> Option<String> {
        self.get(name)?.as_str().map(str::to_owned)
    }
    fn number(&self, name: &str) -> Option<f64> {
        self.get(name)?.as_f64()
    }
    fn flag(&self, name: &str) -> Option<bool> {
        self.get(name)?.as_bool()
    }
    fn missing(&self, name: &str) -> bool {
        self.get(name).is_none()
    }
    fn params(&self, name: &str) -> Result<Vec<Value>, String> {
        json_params(self.get(name))
    }
    fn param_sets(&self, name: &str) -> Result<Vec<Vec<Value>>, String> {
        let sets = self
            .get(name)
            .and_then(serde_json::Value::as_array)
            .ok_or("rows must be an array of arrays")?;
        sets.iter().map(|set| json_params(Some(set))).collect()
    }
    fn json(&self, name: &str) -> Result<serde_json::Value, String> {
        Ok(self.get(name).cloned().unwrap_or_default())
    }
}

fn json_params(list: Option<&serde_json::Value>) -> Result<Vec<Value>, String> {
    let list = list
        .and_then(serde_json::Value::as_array)
        .ok_or("params must be an array")?;
    list.iter()
        .map(|v| match v {
            serde_json::Value::Null => Ok(Value::Null),
            serde_json::Value::Bool(b) => Ok(Value::Integer(i64::from(*b))),
            serde_json::Value::Number(n) => Ok(match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::from_js_number(n.as_f64().unwrap_or_default()),
            }),
            serde_json::Value::String(s) => Ok(Value::Text(s.clone())),
            _ => Err("cannot bind an array or object as a SQLite value".to_owned()),
        })
        .collect()
}
