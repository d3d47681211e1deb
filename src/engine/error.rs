//! The engine's one error type. Every variant has a stable machine code that
//! crosses into JavaScript unchanged (`FerryError.code`) and says whether
//! retrying the same call can help.

use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stable error codes. These strings are public API: the TypeScript wrapper and
/// apps switch on them, so a code is never renamed once shipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The SQL failed to prepare or run (syntax, unknown table, constraint).
    SqlError,
    /// The request from a tab was malformed (unknown type, wrong field types).
    BadRequest,
    /// A subscription id the tab never registered, or already released.
    UnknownSubscription,
    /// An invariant inside ferrydb broke; a bug to report.
    Internal,
    /// The browser refused to store more (quota exhausted).
    StorageQuota,
    /// Durable storage could not be reached or failed; writes stay in memory.
    StorageUnavailable,
    /// Stored data is inconsistent beyond what a crash explains.
    StorageCorrupt,
    /// The browser deleted the stored replica under the running worker (site
    /// data cleared, storage evicted); writes stay in memory only.
    StorageCleared,
    /// Plain SQL tried to change a synced table: use a mutator.
    WriteOutsideMutator,
    /// A mutator's statements failed locally; nothing was applied or queued.
    MutatorFailed,
    /// No mutator of that name in the app definition.
    UnknownMutator,
    /// A mutator's arguments are missing, extra or of the wrong type.
    BadArguments,
    /// The app definition is invalid, or its SQL does not prepare.
    InvalidApp,
    /// This build of the app is older than the replica (or the worker) it
    /// met, or a newer build opened the database since: reload.
    AppOutdated,
    /// The sync server sent something that cannot be applied.
    BadResponse,
    /// The access rules refuse this user the change (a server's rejection).
    Forbidden,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SqlError => "sql_error",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownSubscription => "unknown_subscription",
            ErrorCode::Internal => "internal",
            ErrorCode::StorageQuota => "storage_quota",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::StorageCorrupt => "storage_corrupt",
            ErrorCode::StorageCleared => "storage_cleared",
            ErrorCode::WriteOutsideMutator => "write_outside_mutator",
            ErrorCode::MutatorFailed => "mutator_failed",
            ErrorCode::UnknownMutator => "unknown_mutator",
            ErrorCode::BadArguments => "bad_arguments",
            ErrorCode::InvalidApp => "invalid_app",
            ErrorCode::AppOutdated => "app_outdated",
            ErrorCode::BadResponse => "bad_response",
            ErrorCode::Forbidden => "forbidden",
        }
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
        let message = e.to_string();
        let code = match e {
            S::Engine(inner) => return inner,
            S::WriteOutsideMutator { .. } => ErrorCode::WriteOutsideMutator,
            S::MutatorFailed { .. } => ErrorCode::MutatorFailed,
            S::AppOutdated { .. } => ErrorCode::AppOutdated,
            S::UnknownMutator(_) => ErrorCode::UnknownMutator,
            S::BadArguments { .. } => ErrorCode::BadArguments,
            S::InvalidApp(_) => ErrorCode::InvalidApp,
            S::BadResponse(_) => ErrorCode::BadResponse,
            S::Forbidden(_) => ErrorCode::Forbidden,
        };
        Error::Sync { code, message }
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
            Error::Storage(crate::storage::Error::Quota(_)) => ErrorCode::StorageQuota,
            Error::Storage(crate::storage::Error::Unavailable(_)) => ErrorCode::StorageUnavailable,
            Error::Storage(crate::storage::Error::Corrupt(_)) => ErrorCode::StorageCorrupt,
            Error::Storage(crate::storage::Error::Cleared(_)) => ErrorCode::StorageCleared,
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
