//! The engine's one error type. Every variant has a stable machine code that
//! crosses into JavaScript unchanged (`FerryError.code`) and says whether
//! retrying the same call can help.

use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Defines a table of stable codes once: the enum, its wire strings, and
/// for each code when it happens (the README's words). The TypeScript
/// unions and the README tables are generated from these tables and checked
/// by `host::tests::typescript`.
macro_rules! code_table {
    ($(#[$meta:meta])* pub enum $name:ident {
        $( $(#[$doc:meta])* $variant:ident = $code:literal, $when:literal; )*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$doc])* $variant, )*
        }

        impl $name {
            /// Every code with its wire string and when it happens, in table order.
            pub const ALL: &'static [($name, &'static str, &'static str)] =
                &[ $( ($name::$variant, $code, $when), )* ];

            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $code, )* }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use code_table;

code_table! {
    /// Stable error codes (`FerryError.code`). These strings are public API:
    /// apps switch on them, so a code is never renamed once shipped. A few
    /// are raised only by the TypeScript client; they are here so that one
    /// table lists them all.
    pub enum ErrorCode {
        /// The SQL failed to prepare or run (syntax, unknown table, constraint).
        SqlError = "sql_error", "SQL failed to prepare or run (syntax, missing table, constraint)";
        /// The request from a tab was malformed (unknown type, wrong field types).
        BadRequest = "bad_request", "a malformed request, or a live query that writes";
        /// A subscription id the tab never registered, or already released.
        UnknownSubscription = "unknown_subscription", "unsubscribing an id the worker does not hold";
        /// An invariant inside ferrydb broke; a bug to report.
        Internal = "internal", "a bug in ferrydb";
        /// Raised by the TypeScript client: the worker could not start.
        WorkerUnavailable = "worker_unavailable", "the worker's wasm failed to load";
        /// Raised by the TypeScript client: a call after `close()`.
        Closed = "closed", "the database was closed in this tab";
        /// The browser refused to store more (quota exhausted).
        StorageQuota = "storage_quota", "the browser refused to store more; writes stay in memory, `durable` rejects (at once while it lasts); once space returns they reach the disk (`storage.durableSeq`)";
        /// Durable storage could not be reached or failed; writes stay in memory.
        StorageUnavailable = "storage_unavailable", "storage failed or could not be read; the replica keeps working in memory";
        /// Stored data is inconsistent beyond what a crash explains.
        StorageCorrupt = "storage_corrupt", "stored data inconsistent beyond what a crash explains";
        /// The browser deleted the stored replica under the running worker (site
        /// data cleared, storage evicted); writes stay in memory only.
        StorageCleared = "storage_cleared", "the browser deleted the stored replica under the running app (site data cleared, storage evicted): nothing is written again, `durable` rejects, the replica keeps working and syncing in memory; once every tab is closed, the next start re-syncs from the server";
        /// Raised by the TypeScript client when the worker says `reset`.
        DatabaseDeleted = "database_deleted", "`deleteDatabase()` ended this live query";
        /// Plain SQL tried to change a synced table: use a mutator.
        WriteOutsideMutator = "write_outside_mutator", "plain SQL tried to change a synced table (or ferrydb's own `_ferry_*`); use a mutator. Local tables take plain SQL";
        /// No mutator of that name in the app definition.
        UnknownMutator = "unknown_mutator", "`mutate` named a mutator the app definition does not have (locally, or the server's rejection)";
        /// A mutator's arguments are missing, extra or of the wrong type.
        BadArguments = "bad_arguments", "a mutator's or a `sync` query's arguments are missing, extra or of the wrong type (locally, or the server's rejection or subscription state)";
        /// No query of that name in the app definition.
        UnknownQuery = "unknown_query", "`sync` named a query the app definition does not have (locally, or the server's subscription state)";
        /// A mutator's statements failed locally; nothing was applied or queued.
        MutatorFailed = "mutator_failed", "a mutator's statement failed (a constraint, say): locally nothing is applied or queued; from the server, a rejection";
        /// The access rules refuse this user the change (a server's rejection).
        Forbidden = "forbidden", "`server` promise: the server's access rules refused the mutation (its effects are rolled back everywhere)";
        /// Raised by the TypeScript client: a rejection with an app-defined code.
        Rejected = "rejected", "`server` promise: the server rejected the mutation with an app-defined code (in `error.rejection.code`)";
        /// The app definition is invalid, or its SQL does not prepare.
        InvalidApp = "invalid_app", "the app definition is invalid, or a mutator does not prepare against its schema";
        /// This build of the app is older than the replica (or the worker) it
        /// met, or a newer build opened the database since: reload.
        AppOutdated = "app_outdated", "this tab's app is older than the replica or than the app the worker runs: a newer build opened this database (perhaps in another tab since this one opened: the `appOutdated` event said so). Reload. Writes made before are kept and sync";
        /// The sync server sent something that cannot be applied.
        BadResponse = "bad_response", "the sync server sent something that cannot be applied";
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unknown subscription {0}")]
    UnknownSubscription(u32),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Storage(#[from] crate::storage::Error),
    /// An error recorded earlier (a live query's last evaluation) and reported again.
    #[error("{}", .0.message)]
    Recorded(ErrorData),
    /// A sync-core error other than an engine error underneath (those are
    /// unwrapped): the code says which.
    #[error("{message}")]
    Sync { code: ErrorCode, message: String },
}

impl From<crate::engine::sync::Error> for Error {
    fn from(e: crate::engine::sync::Error) -> Self {
        use crate::engine::sync::Error as S;
        match e {
            S::Engine(inner) => inner,
            other => Error::Sync {
                code: other.error_code(),
                message: other.to_string(),
            },
        }
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Sql(_) => ErrorCode::SqlError,
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::UnknownSubscription(_) => ErrorCode::UnknownSubscription,
            Error::Internal(_) => ErrorCode::Internal,
            Error::Recorded(data) => data.code,
            Error::Sync { code, .. } => *code,
            Error::Storage(e) => e.error_code(),
        }
    }

    /// Whether the same call can succeed if tried again unchanged. None of the
    /// local errors can: they are about the request, not the moment.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Recorded(data) => data.retryable,
            Error::Storage(e) => e.retryable(),
            Error::Sync { code, .. } => *code == ErrorCode::BadResponse,
            _ => false,
        }
    }

    /// The error as plain data, the shape that crosses into JavaScript.
    pub fn to_data(&self) -> ErrorData {
        ErrorData {
            code: self.code(),
            message: self.to_string(),
            retryable: self.retryable(),
        }
    }
}

/// An error flattened to data for the wire (`{code, message, retryable}`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorData {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
}
