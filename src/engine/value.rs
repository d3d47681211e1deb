//! Query results. The value type itself is the protocol's: the SDK and the
//! server bind and read the same values.

pub use ferrydb_protocol::value::{Value, MAX_SAFE_INTEGER};
use serde::Serialize;

/// The rows of one query, column names once, values row by row.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}
