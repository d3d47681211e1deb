//! The app definition: one JSON file that both the SDK and the server load, so
//! the tables a client replicates, the mutators it may run and the rules the
//! server enforces come from one source and cannot drift.
//!
//! ```json
//! { "version": 3,
//!   "tables": [{ "name": "todos",
//!                "columns": [{ "name": "id", "type": "text" }, …],
//!                "primaryKey": ["id"],
//!                "access": { "read": "owner = :user_id", "write": "owner = :user_id" } }],
//!   "localTables": [{ "name": "drafts", "columns": […], "primaryKey": ["id"] }],
//!   "mutators": [{ "name": "addTodo",
//!                  "params": [{ "name": "id", "type": "text" }, …],
//!                  "sql": ["INSERT INTO todos (id, …) VALUES (:id, …)"] }] }
//! ```
//!
//! `docs/protocol.md` describes every field; [`crate::validate`] the checks.

use crate::decode::{self, Fields};
use crate::sql::{Placeholders, Statement};
use crate::validate::{self, AppError};
use serde::Serialize;
use serde_json::Value as Json;

/// A whole app definition. Build one with [`AppDefinition::from_json`], which
/// validates it; a definition that exists in memory is assumed valid.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppDefinition {
    /// The schema version. Bump it when tables or mutators change; clients and
    /// server compare it on open and on every sync exchange.
    pub version: u32,
    /// Tables replicated between the server and every client (filtered by the
    /// read rule).
    pub tables: Vec<Table>,
    /// Client-only tables (UI state, drafts): plain SQL writes, never synced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local_tables: Vec<LocalTable>,
    pub mutators: Vec<Mutator>,
    /// Named read queries (protocol v2): a client syncs the rows of the
    /// queries it subscribes to, and only those. They are the read
    /// permissions of a v2 client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<Query>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// Column names, in key order. Composite keys are allowed.
    pub primary_key: Vec<String>,
    /// Who may read and write each row. Required: a public table says so with
    /// `"true"`, so nothing becomes public by omission.
    pub access: Access,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalTable {
    pub name: String,
    pub columns: Vec<Column>,
    /// Optional for local tables (a plain rowid table without one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether the column may hold NULL. Columns are NOT NULL unless they say so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nullable: bool,
}

/// The portable column and parameter types. Each maps to one SQLite and one
/// Postgres type, and to one JSON shape on the wire (see `docs/protocol.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ColumnType {
    Integer,
    Real,
    Text,
    Blob,
    /// `true`/`false` on the wire; 0/1 in SQLite.
    Boolean,
    /// Any JSON value on the wire; its JSON text in SQLite, `jsonb` in Postgres.
    Json,
}

impl ColumnType {
    pub fn sqlite_type(self) -> &'static str {
        match self {
            ColumnType::Integer | ColumnType::Boolean => "INTEGER",
            ColumnType::Real => "REAL",
            ColumnType::Text | ColumnType::Json => "TEXT",
            ColumnType::Blob => "BLOB",
        }
    }

    pub fn postgres_type(self) -> &'static str {
        match self {
            ColumnType::Integer => "bigint",
            ColumnType::Real => "double precision",
            ColumnType::Text => "text",
            ColumnType::Blob => "bytea",
            ColumnType::Boolean => "boolean",
            ColumnType::Json => "jsonb",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Integer => "integer",
            ColumnType::Real => "real",
            ColumnType::Text => "text",
            ColumnType::Blob => "blob",
            ColumnType::Boolean => "boolean",
            ColumnType::Json => "json",
        }
    }
}

/// Per-table access rules: SQL boolean expressions over the row's columns and
/// the `:user_id` of the authenticated user, evaluated by the server only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Access {
    /// Which rows a user pulls (protocol v1): the row's own columns only.
    pub read: String,
    /// Which rows a mutator may change: checked on the row before the
    /// mutation, against the tables as they were, and after it, against the
    /// tables as they are. May read other synced tables through `EXISTS` /
    /// `IN` subqueries (`docs/protocol.md` §11.5).
    pub write: String,
}

/// The only parameter an access rule may use.
pub const USER_ID_PARAM: &str = "user_id";

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mutator {
    pub name: String,
    pub params: Vec<Param>,
    /// One statement, or several run in order inside one transaction.
    pub sql: Statements,
}

/// A named, parameterized read query (protocol v2, `docs/protocol.md` §11).
/// A subscription to it with arguments syncs the rows each part selects for
/// the subscribing user.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub name: String,
    /// Declared and typed; `:user_id` is never declared: the server binds it
    /// from the token.
    pub params: Vec<Param>,
    /// One per table the query syncs; each selects whole rows of its table.
    pub parts: Vec<QueryPart>,
    /// Synced from open, with no arguments (only for a query without params).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_on_open: bool,
}

/// The rows of one synced table that a query selects: those for which
/// `where` is true. `where` may use the query's parameters, `:user_id`, and
/// `EXISTS`/`IN` subqueries (with joins) over synced tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueryPart {
    pub table: String,
    #[serde(rename = "where")]
    pub condition: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// A nullable parameter may be `null` or left out of the arguments.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nullable: bool,
}

/// `"sql": "…"` or `"sql": ["…", "…"]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Statements {
    One(String),
    Many(Vec<String>),
}

impl Statements {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Statements::One(s) => std::slice::from_ref(s),
            Statements::Many(v) => v,
        }
    }
}

impl AppDefinition {
    /// Parses and validates an app definition. Every problem found is reported,
    /// not only the first.
    pub fn from_json(text: &str) -> Result<AppDefinition, AppError> {
        let json: Json = serde_json::from_str(text).map_err(AppError::Json)?;
        let app = AppDefinition::decode(json, "").map_err(AppError::Shape)?;
        app.validate()?;
        Ok(app)
    }

    /// Reads the definition's shape (no checks beyond it); unknown fields are
    /// refused everywhere: a typo is not an extension.
    pub fn decode(json: Json, path: &str) -> Result<AppDefinition, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let app = AppDefinition {
            version: f.get("version", decode::u32)?,
            tables: f.get("tables", |v, p| decode::list(v, p, Table::decode))?,
            local_tables: f.get_or("localTables", Vec::new(), |v, p| {
                decode::list(v, p, LocalTable::decode)
            })?,
            mutators: f.get_or("mutators", Vec::new(), |v, p| {
                decode::list(v, p, Mutator::decode)
            })?,
            queries: f.get_or("queries", Vec::new(), |v, p| {
                decode::list(v, p, Query::decode)
            })?,
        };
        f.no_others()?;
        Ok(app)
    }

    /// Checks names, keys, rules and mutators (see [`crate::validate`]).
    pub fn validate(&self) -> Result<(), AppError> {
        validate::app(self)
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn mutator(&self, name: &str) -> Option<&Mutator> {
        self.mutators.iter().find(|m| m.name == name)
    }

    pub fn query(&self, name: &str) -> Option<&Query> {
        self.queries.iter().find(|q| q.name == name)
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The read rule with `:user_id` rendered as a placeholder (it binds to
    /// placeholder 1 if the rule uses it at all; see [`Statement::params`]).
    pub fn read_rule(&self) -> Statement {
        Statement::parse(&self.access.read).expect("validated rule")
    }

    pub fn write_rule(&self) -> Statement {
        Statement::parse(&self.access.write).expect("validated rule")
    }
}

impl Mutator {
    /// The mutator's statements with their parameters located.
    pub fn statements(&self) -> Vec<Statement> {
        self.sql
            .as_slice()
            .iter()
            .map(|s| Statement::parse(s).expect("validated statement"))
            .collect()
    }

    /// Each statement rendered for one engine, with, for each of its
    /// placeholders in order, the index of the declared parameter it binds.
    pub fn rendered(&self, style: Placeholders) -> Vec<(String, Vec<usize>)> {
        self.statements()
            .into_iter()
            .map(|s| {
                let args = s
                    .params
                    .iter()
                    .map(|name| {
                        self.params
                            .iter()
                            .position(|p| &p.name == name)
                            .expect("validated param")
                    })
                    .collect();
                (s.render(style), args)
            })
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Decoders of the definition's parts (see [`AppDefinition::decode`]).
fn names(json: Json, path: &str) -> Result<Vec<String>, decode::DecodeError> {
    decode::list(json, path, decode::string)
}

fn columns(json: Json, path: &str) -> Result<Vec<Column>, decode::DecodeError> {
    decode::list(json, path, Column::decode)
}

impl Table {
    pub fn decode(json: Json, path: &str) -> Result<Table, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let table = Table {
            name: f.get("name", decode::string)?,
            columns: f.get("columns", columns)?,
            primary_key: f.get("primaryKey", names)?,
            access: f.get("access", Access::decode)?,
        };
        f.no_others()?;
        Ok(table)
    }
}

impl LocalTable {
    pub fn decode(json: Json, path: &str) -> Result<LocalTable, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let table = LocalTable {
            name: f.get("name", decode::string)?,
            columns: f.get("columns", columns)?,
            primary_key: f.get_or("primaryKey", Vec::new(), names)?,
        };
        f.no_others()?;
        Ok(table)
    }
}

impl Column {
    fn decode(json: Json, path: &str) -> Result<Column, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let column = Column {
            name: f.get("name", decode::string)?,
            ty: f.get("type", ColumnType::decode)?,
            nullable: f.get_or("nullable", false, decode::boolean)?,
        };
        f.no_others()?;
        Ok(column)
    }
}

impl ColumnType {
    const ALL: [ColumnType; 6] = [
        ColumnType::Integer,
        ColumnType::Real,
        ColumnType::Text,
        ColumnType::Blob,
        ColumnType::Boolean,
        ColumnType::Json,
    ];

    fn decode(json: Json, path: &str) -> Result<ColumnType, decode::DecodeError> {
        let table = ColumnType::ALL.map(|t| (t.as_str(), t));
        decode::one_of(json, path, &table)
    }
}

impl Access {
    fn decode(json: Json, path: &str) -> Result<Access, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let access = Access {
            read: f.get("read", decode::string)?,
            write: f.get("write", decode::string)?,
        };
        f.no_others()?;
        Ok(access)
    }
}

impl Mutator {
    fn decode(json: Json, path: &str) -> Result<Mutator, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let mutator = Mutator {
            name: f.get("name", decode::string)?,
            params: f.get_or("params", Vec::new(), |v, p| {
                decode::list(v, p, Param::decode)
            })?,
            sql: f.get("sql", |v, p| match v {
                Json::String(one) => Ok(Statements::One(one)),
                Json::Array(_) => names(v, p).map(Statements::Many),
                _ => Err(decode::DecodeError {
                    path: p.to_owned(),
                    problem: "expected a string or an array of strings".into(),
                }),
            })?,
        };
        f.no_others()?;
        Ok(mutator)
    }
}

impl Query {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    fn decode(json: Json, path: &str) -> Result<Query, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let query = Query {
            name: f.get("name", decode::string)?,
            params: f.get_or("params", Vec::new(), |v, p| {
                decode::list(v, p, Param::decode)
            })?,
            parts: f.get("parts", |v, p| decode::list(v, p, QueryPart::decode))?,
            sync_on_open: f.get_or("syncOnOpen", false, decode::boolean)?,
        };
        f.no_others()?;
        Ok(query)
    }
}

impl QueryPart {
    /// The condition with its parameters located (`:user_id` among them).
    pub fn statement(&self) -> Statement {
        Statement::parse(&self.condition).expect("validated query")
    }

    fn decode(json: Json, path: &str) -> Result<QueryPart, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let part = QueryPart {
            table: f.get("table", decode::string)?,
            condition: f.get("where", decode::string)?,
        };
        f.no_others()?;
        Ok(part)
    }
}

impl Param {
    fn decode(json: Json, path: &str) -> Result<Param, decode::DecodeError> {
        let mut f = Fields::of(json, path)?;
        let param = Param {
            name: f.get("name", decode::string)?,
            ty: f.get("type", ColumnType::decode)?,
            nullable: f.get_or("nullable", false, decode::boolean)?,
        };
        f.no_others()?;
        Ok(param)
    }
}
