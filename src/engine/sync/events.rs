//! What goes into and comes out of the [`SyncClient`](super::SyncClient).
//! The host turns each [`Effect`] into I/O and feeds the outcome back as an
//! [`Event`]; it never decides anything itself.

use super::replica::Rejection;
use crate::engine::database::TableSet;
use ferrydb_protocol::{PullRequest, PullResponse, PushRequest, PushResponse, ServerEvent};
use serde::Serialize;

/// Timing knobs, all in milliseconds.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Most mutations sent in one push.
    pub push_batch: usize,
    /// Pokes arriving within this window become one pull.
    pub poke_debounce_ms: u64,
    /// A request without a reply after this long counts as failed; a late
    /// reply is ignored.
    pub request_timeout_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Pull this often even without pokes (the realtime channel can drop
    /// messages); `None` to rely on pokes alone.
    pub pull_interval_ms: Option<u64>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            push_batch: 100,
            poke_debounce_ms: 50,
            request_timeout_ms: 30_000,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            pull_interval_ms: Some(60_000),
        }
    }
}

/// Something that happened, told to the client by the host.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The network is reachable (also sent once at start to begin syncing).
    Online,
    Offline,
    /// A mutation was added to the outbox.
    Mutated,
    /// The app's token provider answered (`None`: no auth, send no header).
    Token(Option<String>),
    /// No token could be had: the provider threw, or no tab could ask it.
    /// Syncing backs off and asks again later; local writes go on.
    TokenFailed(String),
    /// The reply to `SendPush { id, .. }`.
    PushResponse {
        id: u64,
        response: PushResponse,
    },
    /// The reply to `SendPull { id, .. }`.
    PullResponse {
        id: u64,
        response: PullResponse,
    },
    /// Request `id` failed: an HTTP status, or 0 when no response arrived.
    HttpError {
        id: u64,
        status: u16,
    },
    /// Request `id` got a 200 whose body is not a valid response.
    InvalidResponse {
        id: u64,
        message: String,
    },
    /// A message from the realtime channel.
    Server(ServerEvent),
    /// The timer set by the last `SetTimer` fired.
    Timer,
    /// The app paused sync (`db.pauseSync()`, the demo's offline switch): no
    /// requests and no timers until `Resume`; requests in flight are
    /// abandoned (their replies ignored). Mutations keep queueing.
    Pause,
    /// The app resumed sync: sends at once (the backoff is forgotten), and
    /// lifts a `forbidden` stop.
    Resume,
    /// The group's desired subscriptions changed (`Replica::set_desired`):
    /// pull at once, so new ones start syncing and dropped ones' rows leave.
    SubscriptionsChanged,
}

/// Something the host must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// `POST push` with the token as bearer (if any); answer with
    /// `PushResponse` or `HttpError` carrying the same `id`.
    SendPush {
        id: u64,
        token: Option<String>,
        request: PushRequest,
    },
    SendPull {
        id: u64,
        token: Option<String>,
        request: PullRequest,
    },
    /// Fire `Timer` at this time (ms on the monotonic clock, `Now::monotonic`);
    /// replaces the previous timer.
    SetTimer { at: u64 },
    /// Ask the app's token provider; answer with `Token`.
    NeedToken,
    /// These tables' contents changed: refresh live queries over them.
    Changed(TableSet),
    /// Tell the app.
    Emit(SyncEvent),
    /// The status changed; show it in every tab.
    Status(SyncStatus),
}

/// Events for the app (`db.on(...)` in TypeScript).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SyncEvent {
    /// The server runs a newer schema: this build must be updated (reloaded)
    /// before it can sync again. Local reads and writes keep working.
    #[serde(rename_all = "camelCase")]
    UpdateNeeded { server_schema_version: u32 },
    /// The server asked for a fresh replica: synced tables were rebuilt, the
    /// outbox kept, a full pull follows.
    #[serde(rename_all = "camelCase")]
    SchemaReset { server_schema_version: u32 },
    /// The server refused these mutations; their effects are gone after the
    /// next pull. They are also in the rejection log.
    Rejected { rejections: Vec<Rejection> },
    /// The server refused the token even after one refresh.
    Unauthorized,
    /// Sent only to the tabs of an older build when a newer one opened the
    /// database (`AppOpened::Upgraded`): the replica now has the newer
    /// schema, so their requests fail with `app_outdated` from now on;
    /// their earlier writes are kept and sync. Reload.
    #[serde(rename_all = "camelCase")]
    AppOutdated { schema_version: u32 },
}

/// The sync status every tab shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Online, and the last exchange with the server succeeded.
    pub connected: bool,
    pub uploading: bool,
    pub downloading: bool,
    /// Mutations in the outbox.
    pub pending_mutations: u64,
    /// When the replica last caught up with the server (wall clock, ms since
    /// the Unix epoch).
    pub last_synced_at: Option<u64>,
    /// Why syncing is failing, while it is.
    pub error: Option<StatusError>,
    /// The app paused sync (`Event::Pause`); the host closes its realtime
    /// channel while this is set.
    pub paused: bool,
    /// Set while the replica downloads from empty (its first sync, or after a
    /// reset), until the server says there is no more.
    pub initial_sync: Option<InitialSync>,
}

/// Progress of a download into an empty replica, for a progress bar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InitialSync {
    /// Rows applied so far (`put`s of every page).
    pub received: u64,
    /// The rows to expect in all: protocol v2 says it (the sum of the
    /// subscriptions' `total`s); v1 does not, so it stays `None` there.
    pub total: Option<u64>,
}

/// Why syncing is failing: a stable code to switch on and words for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusError {
    pub code: StatusErrorCode,
    pub message: String,
}

impl StatusError {
    pub fn new(code: StatusErrorCode, message: impl Into<String>) -> Self {
        StatusError {
            code,
            message: message.into(),
        }
    }
}

crate::engine::error::code_table! {
    /// Stable codes of [`StatusError`] (`db.syncStatus.error.code`; public
    /// API, like the engine's error codes).
    pub enum StatusErrorCode {
        /// No response: offline, DNS, connection refused, the server is down.
        Network = "network", "no response";
        /// The server answered with an HTTP error (5xx, unexpected 4xx).
        ServerError = "server_error", "5xx or an unexpected 4xx";
        /// No answer within the request deadline.
        Timeout = "timeout", "no answer within 30 s";
        /// The server's answer could not be used (unparseable, unappliable, or it
        /// processed none of the pushed mutations).
        BadResponse = "bad_response", "the server's answer could not be used";
        /// The app's token provider failed, or no tab could ask it.
        AuthRequired = "auth_required", "the `auth` provider threw, or no open tab could ask it; local writes keep working";
        /// The server refused the token even after a refresh.
        Unauthorized = "unauthorized", "the server refused the token after one refresh";
        /// The server runs a newer schema: this build must be updated.
        UpdateNeeded = "update_needed", "the server runs a newer schema; the `updateNeeded` event fires";
        /// The server runs an older schema or cannot serve this replica yet.
        ServerBehind = "server_behind", "the server runs an older schema";
        /// The server refused a whole request with 403 (e.g. this client ID
        /// belongs to another user). Retrying cannot help: sync stops until
        /// `Resume` (or a new worker).
        Forbidden = "forbidden", "the server refused a whole request (403): sync stops until `resumeSync()` or a reload";
    }
}
