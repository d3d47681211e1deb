//! The storage layer's one error type. Each variant maps to a stable code the
//! engine passes on to JavaScript unchanged, and says whether trying again can help.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The backend refused a write for lack of space (OPFS/IndexedDB
    /// `QuotaExceededError`). Freeing space and retrying can help.
    #[error("storage quota exceeded: {0}")]
    Quota(String),
    /// The backend could not be reached or failed for a reason that may pass
    /// (file locked by another context, I/O error, SQLite could not open the
    /// page store).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Durable state is inconsistent in a way a crash cannot explain (a
    /// checkpoint whose segment files are missing or damaged). Retrying cannot
    /// help; the replica has to be rebuilt from the server.
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// The files were deleted under the running replica (the browser cleared
    /// the site's data or evicted it: an IndexedDB connection closed by the
    /// browser, an OPFS directory gone). What was durable is gone, and
    /// writing on would put frames on disk with nothing under them, so the
    /// log stops for good; the replica keeps working in memory. Retrying
    /// cannot help; a new worker starts from whatever storage then holds.
    #[error("storage cleared by the browser: {0}")]
    Cleared(String),
}

impl Error {
    /// The stable machine code; never renamed once shipped.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Quota(_) => "storage_quota",
            Error::Unavailable(_) => "storage_unavailable",
            Error::Corrupt(_) => "storage_corrupt",
            Error::Cleared(_) => "storage_cleared",
        }
    }

    /// Whether the same operation can succeed later without other changes.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Quota(_) | Error::Unavailable(_) => true,
            Error::Corrupt(_) | Error::Cleared(_) => false,
        }
    }
}

impl From<rusqlite::Error> for Error {
    /// SQLite failing to open or configure a connection on the page store is
    /// the storage being unavailable; SQL errors inside transactions never pass
    /// through this type.
    fn from(error: rusqlite::Error) -> Self {
        Error::Unavailable(format!("sqlite: {error}"))
    }
}
