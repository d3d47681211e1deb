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
        self.error_code().as_str()
    }

    /// The code, from the one table of codes (`ErrorCode`).
    pub fn error_code(&self) -> crate::ErrorCode {
        use crate::ErrorCode;
        match self {
            Error::Quota(_) => ErrorCode::StorageQuota,
            Error::Unavailable(_) => ErrorCode::StorageUnavailable,
            Error::Corrupt(_) => ErrorCode::StorageCorrupt,
            Error::Cleared(_) => ErrorCode::StorageCleared,
        }
    }

    /// A browser storage call that failed: `call` is the JS call
    /// (`createWritable`, `transaction`, ...), `dom_name` the name of the
    /// `DOMException` it threw (empty if none), `message` what it said.
    ///
    /// - `QuotaExceededError` anywhere: the storage is full.
    /// - The files are gone under us: the browser closed our IndexedDB
    ///   connection (it does so when it deletes the database: site data
    ///   cleared, storage evicted; ferrydb closes it only in
    ///   `deleteDatabase`, after which these files are not used), so a new
    ///   `transaction` fails with `InvalidStateError`; or the OPFS directory
    ///   a write goes to no longer exists (`getFileHandle`: `NotFoundError`).
    /// - Anything else may pass.
    pub fn from_browser(call: &str, dom_name: &str, message: String) -> Error {
        match (dom_name, call) {
            ("QuotaExceededError", _) => Error::Quota(message),
            ("InvalidStateError", "transaction") | ("NotFoundError", "getFileHandle") => {
                Error::Cleared(message)
            }
            _ => Error::Unavailable(message),
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

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn browser_failures_are_classified_by_exception_and_call() {
        let kind = |call, name| Error::from_browser(call, name, "m".into()).code();
        assert_eq!(
            kind("createWritable", "QuotaExceededError"),
            "storage_quota"
        );
        assert_eq!(kind("put", "QuotaExceededError"), "storage_quota");
        assert_eq!(kind("transaction", "InvalidStateError"), "storage_cleared");
        assert_eq!(kind("getFileHandle", "NotFoundError"), "storage_cleared");
        // The same exceptions from other calls are not a clear.
        assert_eq!(kind("write", "InvalidStateError"), "storage_unavailable");
        assert_eq!(kind("getFile", "NotFoundError"), "storage_unavailable");
        assert_eq!(kind("getDirectory", ""), "storage_unavailable");
    }
}
