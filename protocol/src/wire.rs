//! The messages of sync protocol v1: `POST push`, `POST pull`, the realtime
//! channel's events and the body of an HTTP error. Field names are camelCase on
//! the wire; tagged enums carry their variant in `"type"`. `docs/protocol.md`
//! is the prose version; `tests/fixtures/protocol/*.json` the golden examples.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// A row or key as sent on the wire: column name → JSON value (see
/// `docs/protocol.md` for how each column type is written).
pub type Row = Map<String, Json>;

/// The server's position in its change stream, opaque to the client: it only
/// stores it and sends it back. Integers and strings are both allowed so a
/// server can use a plain version number or encode a paging cursor.
/// Deserialized by hand (`wire_de.rs`), like every message a client receives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Cookie {
    Integer(i64),
    Text(String),
}

/// `POST push`: mutations in mutation-ID order, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushRequest {
    pub protocol_version: u32,
    pub schema_version: u32,
    #[serde(rename = "clientGroupID")]
    pub client_group_id: String,
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub mutations: Vec<Mutation>,
}

/// One call of a named mutator. The server runs its own copy of the mutator
/// with these arguments; no SQL ever travels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mutation {
    /// Per client, starting at 1, without gaps.
    pub id: u64,
    pub name: String,
    /// A JSON object: parameter name → value.
    pub args: Json,
    /// When the client ran it, milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// Deserialized by hand (`wire_de.rs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PushResponse {
    /// The mutations the server got to, in order. A mutation missing from the
    /// list was not processed (the server stopped early) and is sent again.
    Ok {
        results: Vec<MutationResult>,
    },
    SchemaMismatch(SchemaMismatch),
}

/// What the server did with one mutation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MutationResult {
    /// Ran and committed now.
    Ok { id: u64 },
    /// Already ran (committed) in an earlier push: a retry after a lost reply.
    AlreadyProcessed { id: u64 },
    /// Will never apply. The mutation still counts as processed, so the queue
    /// behind it moves on; a retried push gets the same rejection back.
    Rejected {
        id: u64,
        code: RejectionCode,
        message: String,
    },
}

impl MutationResult {
    pub fn id(&self) -> u64 {
        match self {
            MutationResult::Ok { id }
            | MutationResult::AlreadyProcessed { id }
            | MutationResult::Rejected { id, .. } => *id,
        }
    }
}

/// Why the server rejected a mutation. Stable snake_case strings; a server
/// with custom mutator logic may send codes of its own (`App`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// The server's app definition has no mutator of that name.
    UnknownMutator,
    /// Arguments missing, extra, or of the wrong type.
    BadArguments,
    /// The access rules do not let this user write a row the mutator changed.
    Forbidden,
    /// A statement failed on the server (a constraint, a type error).
    MutatorFailed,
    #[serde(untagged)]
    App(String),
}

impl RejectionCode {
    pub fn as_str(&self) -> &str {
        match self {
            RejectionCode::UnknownMutator => "unknown_mutator",
            RejectionCode::BadArguments => "bad_arguments",
            RejectionCode::Forbidden => "forbidden",
            RejectionCode::MutatorFailed => "mutator_failed",
            RejectionCode::App(code) => code,
        }
    }
}

/// `POST pull`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequest {
    pub protocol_version: u32,
    pub schema_version: u32,
    #[serde(rename = "clientGroupID")]
    pub client_group_id: String,
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// The cookie of the last response applied; `null` for a first (full) sync.
    pub cookie: Option<Cookie>,
    /// Protocol v2 (required there, absent in v1): every subscription the
    /// group wants now, each distinct `(query, args)` once. The server syncs
    /// their rows and removes the rows of subscriptions no longer listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<Vec<Subscription>>,
}

/// A subscription to a named query of the app definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub query: String,
    /// A JSON object: parameter name → value (`:user_id` is never sent).
    pub args: Json,
}

/// What a v2 pull response says of one requested subscription.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionState {
    pub query: String,
    pub args: Json,
    pub state: SubscriptionPhase,
    /// Rows it selects that the client has once this response is applied.
    pub synced: u64,
    /// Rows it selects at this response's view version.
    pub total: u64,
    /// Why it can never sync (`state` is `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SubscriptionError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SubscriptionPhase {
    /// Pages of its rows follow (`more`).
    Pending,
    /// Every row it selects is in the state this response brings the client to.
    Complete,
    /// Unknown query or bad arguments: it syncs nothing.
    Error,
}

/// `code`: `unknown_query` or `bad_arguments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubscriptionError {
    pub code: String,
    pub message: String,
}

/// Deserialized by hand (`wire_de.rs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PullResponse {
    Ok(PullOk),
    SchemaMismatch(SchemaMismatch),
}

/// The changes since the request's cookie, for the rows this user may read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullOk {
    pub cookie: Cookie,
    /// For clients of this group whose last processed mutation moved: the ID of
    /// that mutation. Its effects (and those of all before it) are in the state
    /// this response brings the client to.
    #[serde(rename = "lastMutationIDChanges")]
    pub last_mutation_id_changes: BTreeMap<String, u64>,
    /// Applied in order. A response to a `null` cookie starts with `clear`.
    pub patch: Vec<PatchOp>,
    /// More changes are waiting: pull again at once with the new cookie.
    pub more: bool,
    /// Protocol v2: one entry per requested subscription, in request order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SubscriptionState>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PatchOp {
    /// Insert the row, or replace the row with the same primary key.
    Put { table: String, row: Row },
    /// Delete the row with this primary key (no error if absent).
    Del { table: String, key: Row },
    /// Delete every row of every synced table.
    Clear,
}

/// The client's schema version and the server's do not match; `action` says
/// what the client must do. Sent instead of a normal response, with HTTP 200.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaMismatch {
    pub server_schema_version: u32,
    pub action: MismatchAction,
}

impl SchemaMismatch {
    /// What a server on `server` answers a client on `client`: nothing when
    /// they match, `updateApp` for an older client, `retryLater` for a newer
    /// one (a deploy in progress). One rule for every server.
    pub fn between(client: u32, server: u32) -> Option<SchemaMismatch> {
        let action = match client.cmp(&server) {
            std::cmp::Ordering::Equal => return None,
            std::cmp::Ordering::Less => MismatchAction::UpdateApp,
            std::cmp::Ordering::Greater => MismatchAction::RetryLater,
        };
        Some(SchemaMismatch {
            server_schema_version: server,
            action,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MismatchAction {
    /// The server runs a newer app: this client's build is too old to sync.
    /// The app is told (an event); it decides when to reload.
    UpdateApp,
    /// The client's replica cannot be patched forward: rebuild it from a full
    /// pull, keeping the outbox.
    ResetReplica,
    /// The client is newer than the server (a deploy in progress): try again
    /// later.
    RetryLater,
}

/// A message on the realtime channel (SSE or WebSocket). Deserialized by
/// hand (`wire_de.rs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerEvent {
    /// The server moved on: pull. `cookie` is the server's position now, so a
    /// client already there can skip the pull.
    Poke { cookie: Option<Cookie> },
}

/// The JSON body of any HTTP error response (4xx, 5xx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable snake_case code: `unauthorized`, `bad_request`,
    /// `protocol_version`, `too_large`, `rate_limited`, `internal`, …
    pub code: String,
    pub message: String,
    /// Whether sending the same request again can succeed.
    pub retryable: bool,
}
