//! What can be wrong with an app definition, said precisely enough to fix it
//! without reading ferrydb's source: which table, column, rule, mutator or
//! parameter, and why.

use std::fmt;

/// Why an app definition was refused.
#[derive(Debug)]
pub enum AppError {
    /// Not JSON (serde says where).
    Json(serde_json::Error),
    /// JSON, but not the shape of an app definition: which field, and why.
    Shape(crate::decode::DecodeError),
    /// Well-formed, but inconsistent.
    Invalid(Vec<Problem>),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Json(e) => write!(f, "app definition is not valid JSON: {e}"),
            AppError::Shape(e) => write!(f, "app definition does not have the expected shape: {e}"),
            AppError::Invalid(problems) => {
                write!(f, "app definition is invalid:")?;
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for AppError {}

/// One inconsistency in an app definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    BadVersion,
    BadName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },
    Duplicate {
        kind: &'static str,
        name: String,
    },
    NoColumns {
        table: String,
    },
    NoPrimaryKey {
        table: String,
    },
    UnknownColumn {
        table: String,
        column: String,
        context: &'static str,
    },
    BadKeyColumn {
        table: String,
        column: String,
        reason: &'static str,
    },
    BadRule {
        table: String,
        rule: &'static str,
        message: String,
    },
    NoStatements {
        mutator: String,
    },
    BadStatement {
        mutator: String,
        statement: usize,
        message: String,
    },
    UnknownTable {
        mutator: String,
        table: String,
    },
    LocalTableInMutator {
        mutator: String,
        table: String,
    },
    UndeclaredParam {
        mutator: String,
        param: String,
    },
    UnusedParam {
        mutator: String,
        param: String,
    },
    /// A query (protocol v2) that cannot be served: `part` names the table
    /// of the part at fault, if the problem is in one.
    BadQuery {
        query: String,
        part: Option<String>,
        message: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadVersion => write!(f, "`version` must be 1 or more"),
            Problem::BadName { kind, name, reason } => write!(f, "{kind} name `{name}` {reason}"),
            Problem::Duplicate { kind, name } => write!(f, "{kind} `{name}` is defined twice"),
            Problem::NoColumns { table } => write!(f, "table `{table}` has no columns"),
            Problem::NoPrimaryKey { table } => write!(
                f,
                "table `{table}` has no primary key (synced rows are addressed by key)"
            ),
            Problem::UnknownColumn {
                table,
                column,
                context,
            } => {
                write!(
                    f,
                    "{context} of table `{table}` refers to unknown column `{column}`"
                )
            }
            Problem::BadKeyColumn {
                table,
                column,
                reason,
            } => {
                write!(
                    f,
                    "primary key column `{column}` of table `{table}` {reason}"
                )
            }
            Problem::BadRule {
                table,
                rule,
                message,
            } => {
                write!(f, "{rule} rule of table `{table}`: {message}")
            }
            Problem::NoStatements { mutator } => write!(f, "mutator `{mutator}` has no SQL"),
            Problem::BadStatement {
                mutator,
                statement,
                message,
            } => {
                write!(
                    f,
                    "statement {} of mutator `{mutator}`: {message}",
                    statement + 1
                )
            }
            Problem::UnknownTable { mutator, table } => {
                write!(f, "mutator `{mutator}` refers to unknown table `{table}`")
            }
            Problem::LocalTableInMutator { mutator, table } => write!(
                f,
                "mutator `{mutator}` refers to local table `{table}`; mutators also run on \
                 the server, where local tables do not exist"
            ),
            Problem::UndeclaredParam { mutator, param } => write!(
                f,
                "mutator `{mutator}` uses parameter `:{param}` but does not declare it"
            ),
            Problem::UnusedParam { mutator, param } => write!(
                f,
                "mutator `{mutator}` declares parameter `{param}` but no statement uses it"
            ),
            Problem::BadQuery {
                query,
                part: Some(table),
                message,
            } => write!(f, "part `{table}` of query `{query}`: {message}"),
            Problem::BadQuery {
                query,
                part: None,
                message,
            } => write!(f, "query `{query}`: {message}"),
        }
    }
}
