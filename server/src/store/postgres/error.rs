//! Which Postgres failures a client should retry (`Unavailable`, HTTP 503)
//! and which are bugs (`Internal`). Messages carry the SQLSTATE and the
//! server's one-line message, never its DETAIL (which quotes row data).

use crate::store::StoreError;
use deadpool_postgres::PoolError;

/// Whether `e` is about the connection or the server's load rather than the
/// statement: connection exceptions (class 08), shutdowns and "starting up"
/// (57P01–57P03), insufficient resources (class 53), serialization failures
/// and deadlocks (40001, 40P01), a statement or lock timeout (57014, 55P03:
/// the database is too busy; a valid mutation must not be rejected for
/// that), a lost socket or a closed connection.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "57014" | "55P03"
                )
        }
        None => {
            e.is_closed()
                || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                // A connect or read timeout: the server did not answer in time.
                || e.to_string().starts_with("timeout")
        }
    }
}

/// `e` in one line without row data: `SQLSTATE: message` for an error the
/// server reported, the driver's description (and its cause) otherwise.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Only the statement's own message (for a `mutator_failed` rejection, which
/// the client that sent the arguments sees).
pub fn statement_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if is_transient(&e) {
            StoreError::Unavailable(format!("postgres: {}", describe(&e)))
        } else {
            StoreError::Internal(format!("postgres: {}", describe(&e)))
        }
    }
}

/// Every failure to get a connection from the pool is the database being
/// out of reach (down, refusing, too busy to hand out a connection in time).
pub fn pool_error(e: PoolError) -> StoreError {
    let message = match &e {
        PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    };
    StoreError::Unavailable(format!("postgres: cannot get a connection: {message}"))
}

/// A connection attempt (outside the pool) that failed.
pub fn connect_error(e: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("postgres: cannot connect: {}", describe(e)))
}
