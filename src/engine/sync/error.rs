//! Errors of the sync core. Each has a stable code the engine's error enum
//! takes over unchanged (see [`Error::code`]), so apps can switch on it.

use crate::engine::error::{Error as EngineError, ErrorCode};
use ferrydb_protocol::values::BadArguments;
use ferrydb_protocol::AppError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plain SQL statement tried to change a synced table (or ferrydb's own
    /// bookkeeping). Synced data only changes through mutators, so every change
    /// reaches the server.
    #[error("table `{table}` is synced: change it through a mutator, not plain SQL")]
    WriteOutsideMutator { table: String },
    /// A mutator's statements failed locally; nothing was applied or queued.
    #[error("mutator `{mutator}` failed: {message}")]
    MutatorFailed { mutator: String, message: String },
    /// The replica was written by a newer build of the app than this one.
    #[error(
        "this app (schema version {app_version}) is older than its local replica \
         (schema version {replica_version}): reload to get the new version"
    )]
    AppOutdated {
        app_version: u32,
        replica_version: u32,
    },
    #[error("no mutator named `{0}` in the app definition")]
    UnknownMutator(String),
    #[error("bad arguments for mutator `{mutator}`: {message}")]
    BadArguments { mutator: String, message: String },
    /// A subscription named a query the app definition does not have.
    #[error("no query named `{0}` in the app definition")]
    UnknownQuery(String),
    /// A subscription's arguments are missing, extra or of the wrong type.
    #[error("bad arguments for query `{query}`: {message}")]
    BadQueryArguments { query: String, message: String },
    /// The app definition failed validation, or its SQL does not prepare
    /// against the schema it defines.
    #[error("{0}")]
    InvalidApp(String),
    /// The server sent something the client cannot apply (a patch for an
    /// unknown table, a row missing its key). Nothing was applied.
    #[error("bad response from the sync server: {0}")]
    BadResponse(String),
    /// A server-side refusal of a whole request: it names a client that
    /// belongs to another user.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// SQLite or another engine error underneath.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Engine(e.into())
    }
}

impl From<BadArguments> for Error {
    fn from(e: BadArguments) -> Self {
        Error::BadArguments {
            mutator: e.mutator,
            message: e.message,
        }
    }
}

impl From<AppError> for Error {
    fn from(e: AppError) -> Self {
        Error::InvalidApp(e.to_string())
    }
}

impl Error {
    /// The stable machine code. Codes of engine errors pass through.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The code, from the one table of codes (`ErrorCode`).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::WriteOutsideMutator { .. } => ErrorCode::WriteOutsideMutator,
            Error::MutatorFailed { .. } => ErrorCode::MutatorFailed,
            Error::AppOutdated { .. } => ErrorCode::AppOutdated,
            Error::UnknownMutator(_) => ErrorCode::UnknownMutator,
            Error::BadArguments { .. } | Error::BadQueryArguments { .. } => ErrorCode::BadArguments,
            Error::UnknownQuery(_) => ErrorCode::UnknownQuery,
            Error::InvalidApp(_) => ErrorCode::InvalidApp,
            Error::BadResponse(_) => ErrorCode::BadResponse,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::Engine(e) => e.code(),
        }
    }

    /// Whether trying the same call again can succeed. Only a bad server
    /// response can (the next one may be fine); the rest are about the call.
    pub fn retryable(&self) -> bool {
        match self {
            Error::BadResponse(_) => true,
            Error::Engine(e) => e.retryable(),
            _ => false,
        }
    }
}
