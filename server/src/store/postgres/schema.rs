//! The SQL the Postgres store runs, generated from the app definition: the
//! bookkeeping tables, each synced table with its row versions (tombstones
//! included: a deleted row keeps its version entry) and its "touched" log,
//! both kept by plpgsql triggers, and the per-table pull and write-rule
//! queries. The same design as the SQLite store's (`sqlite/schema.rs`), in
//! Postgres types.
//!
//! Names are validated by the app definition (lowercase `snake_case`, never
//! `_ferry…`), so generated SQL names them unquoted, as mutators do.

pub use super::super::table_text::bookkeeping;
use super::super::table_text::{self, Dialect, TableText};
use ferrydb_protocol::sql::Placeholders;
use ferrydb_protocol::{ColumnType, Table};
use tokio_postgres::types::Type;

/// Postgres truncates longer identifiers silently, which could make two
/// generated names collide.
pub const MAX_IDENTIFIER: usize = 63;

/// The transaction-local setting that says "a push is running mutators": it
/// turns the touched-row triggers on. Any other write to a synced table (an
/// operator's `UPDATE` in psql, a backfill) bumps the version itself, once
/// per statement, and pokes, so clients get it like any other change.
pub const RECORDING: &str = "ferrydb.recording";

/// The channel every push that processed something notifies, with the new
/// version as payload.
pub const POKE_CHANNEL: &str = "ferrydb_poke";

/// Serialises opening (creating tables) across server instances.
pub const OPEN_LOCK: i64 = 0x0066_6572_7279_6462; // "ferrydb"

/// The server's own tables in Postgres's types (see [`bookkeeping`]).
pub const DIALECT: Dialect = Dialect {
    integer: "bigint",
    text: "text",
    sequence: "bigserial",
    bytewise: " COLLATE \"C\"",
};

/// What the Postgres store adds to the bookkeeping: its layout, and the
/// triggers' functions for writes outside pushes.
pub const BOOKKEEPING_EXTRA: &[&str] = &[
    "INSERT INTO _ferry_meta VALUES ('layout', 'ferrydb-postgres-1')",
    // A write outside a push: a version of its own, and a poke.
    "CREATE FUNCTION _ferry_bump() RETURNS trigger LANGUAGE plpgsql AS $ferry$ \
     DECLARE _ferry_v bigint; \
     BEGIN \
       IF current_setting('ferrydb.recording', true) IS DISTINCT FROM 'on' THEN \
         UPDATE _ferry_version SET value = value + 1 RETURNING value INTO _ferry_v; \
         PERFORM pg_notify('ferrydb_poke', _ferry_v::text); \
       END IF; \
       RETURN NULL; \
     END $ferry$",
    // TRUNCATE fires no row triggers, so it would leave no tombstones and
    // clients would keep the rows forever.
    "CREATE FUNCTION _ferry_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $ferry$ \
     BEGIN \
       RAISE EXCEPTION 'ferrydb: % is a synced table: delete its rows with DELETE, not TRUNCATE', \
         TG_TABLE_NAME USING ERRCODE = 'feature_not_supported'; \
     END $ferry$",
];

pub fn pg_type(ty: ColumnType) -> Type {
    match ty {
        ColumnType::Integer => Type::INT8,
        ColumnType::Real => Type::FLOAT8,
        ColumnType::Text => Type::TEXT,
        ColumnType::Blob => Type::BYTEA,
        ColumnType::Boolean => Type::BOOL,
        ColumnType::Json => Type::JSONB,
    }
}

/// A rule as a condition that is false (never NULL) when the rule does not
/// hold. `:user_id`, the only parameter a rule may use, becomes `$1`.
fn rule(text: &str) -> String {
    let statement = ferrydb_protocol::sql::Statement::parse(text).expect("validated rule");
    format!(
        "coalesce(({}), false)",
        statement.render(Placeholders::Dollar)
    )
}

/// One synced table's SQL.
#[derive(Clone, Debug)]
pub struct PgTable {
    pub name: String,
    pub columns: Vec<(String, ColumnType)>,
    pub key: Vec<(String, ColumnType)>,
    /// Creates the table, its row versions, its touched log and the triggers.
    pub create: Vec<String>,
    /// (Re)creates the touched-log trigger's function, which names every column.
    pub record_function: String,
    /// Rows changed since version `$2`, joined to their current state: key
    /// columns, readable flag (NULL if the row is gone), all columns. `$1` user.
    pub changes: String,
    /// The first page of a full sync: `$1` user, `$2` limit.
    pub first_page: String,
    /// A later page: `$1` user, `$2…` the last key sent, then the limit.
    pub next_page: String,
    /// Empties the touched log.
    pub clear_touched: String,
}

pub fn versions_table(t: &str) -> String {
    format!("_ferry_rowver_{t}")
}

pub fn touched_table(t: &str) -> String {
    format!("_ferry_touched_{t}")
}

impl PgTable {
    pub fn new(table: &Table) -> PgTable {
        let t = &table.name;
        let versions = versions_table(t);
        let touched = touched_table(t);
        let text = TableText::new(table);
        let (pk, key, cols) = (&table.primary_key, &text.key, &text.cols);
        let list = TableText::list;
        let column_names = &text.columns;
        let matches = |left: &str, right: &str| text.key_matches(left, right);
        let ty = |name: &String| table.column(name).expect("validated key").ty;
        let column_defs = |strict: bool| text.column_defs(strict, ColumnType::postgres_type);
        // Whether an UPDATE moved the row to another key (else the old and
        // new images have one key, stamped and saved once).
        let moved = format!(
            "ROW({}) IS DISTINCT FROM ROW({})",
            list("OLD.", pk),
            list("NEW.", pk)
        );
        let key_defs = text.key_defs(ColumnType::postgres_type);
        let read = rule(&table.access.read);
        // Row versions: every row a statement inserts, updates (old and new
        // key) or deletes gets the version of the mutation being processed.
        let stamp = |row: &str| {
            format!(
                "INSERT INTO {versions} ({key}, version) VALUES ({}, _ferry_v) \
                 ON CONFLICT ({key}) DO UPDATE SET version = excluded.version;",
                list(&format!("{row}."), pk)
            )
        };
        // The touched log keeps the first image of each row a mutation
        // touches (the row as it was, or "absent"), for the write rule.
        let save_old = format!(
            "INSERT INTO {touched} (_ferry_present, {cols}) VALUES (true, {}) ON CONFLICT DO NOTHING;",
            list("OLD.", column_names)
        );
        let save_at_new = format!(
            "INSERT INTO {touched} (_ferry_present, {cols}) SELECT true, {cols} FROM {t} WHERE {} \
             ON CONFLICT DO NOTHING; \
             INSERT INTO {touched} (_ferry_present, {key}) VALUES (false, {}) ON CONFLICT DO NOTHING;",
            matches("", "NEW."),
            list("NEW.", pk)
        );
        // Names every column: made again when columns are added.
        let record_function = format!(
            "CREATE OR REPLACE FUNCTION _ferry_record_{t}() RETURNS trigger LANGUAGE plpgsql AS $ferry$ \
             BEGIN \
               IF TG_OP = 'DELETE' THEN {save_old} RETURN OLD; \
               ELSIF TG_OP = 'UPDATE' THEN \
                 {save_old} \
                 IF {moved} THEN {save_at_new} END IF; \
               ELSE {save_at_new} END IF; \
               RETURN NEW; \
             END $ferry$"
        );
        let create = vec![
            format!("CREATE TABLE {t} ({}, PRIMARY KEY ({key}))", column_defs(true)),
            format!(
                "CREATE TABLE {versions} ({key_defs}, version bigint NOT NULL, PRIMARY KEY ({key}))"
            ),
            format!("CREATE INDEX {versions}_version ON {versions} (version)"),
            // Only ever holds rows inside a push's transaction: no WAL needed.
            format!(
                "CREATE UNLOGGED TABLE {touched} (_ferry_present boolean NOT NULL, {}, PRIMARY KEY ({key}))",
                column_defs(false)
            ),
            format!(
                "CREATE FUNCTION _ferry_stamp_{t}() RETURNS trigger LANGUAGE plpgsql AS $ferry$ \
                 DECLARE _ferry_v bigint := (SELECT value FROM _ferry_version); \
                 BEGIN \
                   IF TG_OP = 'DELETE' THEN {old} \
                   ELSIF TG_OP = 'UPDATE' THEN \
                     IF {moved} THEN {old} END IF; \
                     {new} \
                   ELSE {new} END IF; \
                   RETURN NULL; \
                 END $ferry$",
                old = stamp("OLD"),
                new = stamp("NEW")
            ),
            format!(
                "CREATE TRIGGER _ferry_stamp AFTER INSERT OR UPDATE OR DELETE ON {t} \
                 FOR EACH ROW EXECUTE FUNCTION _ferry_stamp_{t}()"
            ),
            format!(
                "CREATE TRIGGER _ferry_bump BEFORE INSERT OR UPDATE OR DELETE ON {t} \
                 FOR EACH STATEMENT WHEN (current_setting('{RECORDING}', true) IS DISTINCT FROM 'on') \
                 EXECUTE FUNCTION _ferry_bump()"
            ),
            format!(
                "CREATE TRIGGER _ferry_no_truncate BEFORE TRUNCATE ON {t} \
                 FOR EACH STATEMENT EXECUTE FUNCTION _ferry_refuse_truncate()"
            ),
            record_function.clone(),
            format!(
                "CREATE TRIGGER _ferry_record BEFORE INSERT OR UPDATE OR DELETE ON {t} \
                 FOR EACH ROW WHEN (current_setting('{RECORDING}', true) = 'on') \
                 EXECUTE FUNCTION _ferry_record_{t}()"
            ),
        ];
        let key_tuple = format!("({key})");
        let n = pk.len();
        let after = text.key_placeholders('$');
        PgTable {
            name: t.clone(),
            columns: table.columns.iter().map(|c| (c.name.clone(), c.ty)).collect(),
            key: pk.iter().map(|k| (k.clone(), ty(k))).collect(),
            create,
            record_function,
            changes: format!(
                "SELECT {}, r._ferry_readable, {} FROM {versions} v \
                 LEFT JOIN (SELECT *, {read} AS _ferry_readable FROM {t}) r ON {} \
                 WHERE v.version > $2 ORDER BY v.version",
                list("v.", pk),
                list("r.", column_names),
                matches("r.", "v.")
            ),
            first_page: format!("SELECT {cols} FROM {t} WHERE {read} ORDER BY {key} LIMIT $2"),
            next_page: format!(
                "SELECT {cols} FROM {t} WHERE {read} AND {key_tuple} > ({after}) ORDER BY {key} LIMIT ${}",
                n + 2
            ),
            clear_touched: format!("DELETE FROM {touched}"),
        }
    }

    /// The names this table adds to the database (checked against
    /// [`MAX_IDENTIFIER`]).
    pub fn identifiers(&self) -> Vec<String> {
        let t = &self.name;
        vec![
            versions_table(t),
            format!("{}_version", versions_table(t)),
            touched_table(t),
            format!("{}_pkey", touched_table(t)),
            format!("{}_pkey", versions_table(t)),
            format!("_ferry_stamp_{t}"),
            format!("_ferry_record_{t}"),
        ]
    }

    /// The parameter types of the page queries.
    pub fn page_types(&self, first: bool) -> Vec<Type> {
        let mut types = vec![Type::TEXT];
        if !first {
            types.extend(self.key.iter().map(|(_, ty)| pg_type(*ty)));
        }
        types.push(Type::INT8);
        types
    }
}

/// Whether a row the mutation touched broke `table`'s write rule, before or
/// after (`table_text::write_violation`; `$1` user): a boolean expression.
/// The real tables need no schema prefix: a Postgres common table
/// expression without `RECURSIVE` never sees its own name.
pub fn write_violation(table: &Table, synced: &[Table]) -> String {
    table_text::write_violation(table, synced, Placeholders::Dollar, "")
}

/// All tables' write rules in one query: an array with, per table of
/// `synced`, whether it was broken ([`write_violation`]).
pub fn write_check(synced: &[Table]) -> String {
    if synced.is_empty() {
        return "SELECT ARRAY[]::boolean[]".into();
    }
    let checks = synced
        .iter()
        .map(|t| write_violation(t, synced))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT ARRAY[{checks}]")
}

/// The bookkeeping of one processed mutation, in one statement: empty the
/// touched logs, move the client's `lastMutationID` (first use records its
/// owner), log the processing, remember a rejection. Parameters: client,
/// group, mutation ID, version, user, mutator name, outcome (`ok` or the
/// code), rejection message (NULL when it was applied).
pub fn finish_mutation(tables: &[PgTable]) -> String {
    let mut ctes: Vec<String> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| format!("touched_{i} AS ({})", t.clear_touched))
        .collect();
    ctes.push(
        "client AS (INSERT INTO _ferry_clients (client_id, client_group_id, last_mutation_id, version, user_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO UPDATE \
         SET last_mutation_id = excluded.last_mutation_id, version = excluded.version)"
            .into(),
    );
    ctes.push(
        "log AS (INSERT INTO _ferry_mutation_log (client_id, mutation_id, name, outcome) \
         VALUES ($1, $3, $6, $7))"
            .into(),
    );
    format!(
        "WITH {} INSERT INTO _ferry_server_rejections (client_id, mutation_id, code, message) \
         SELECT $1, $3, $7, $8 WHERE $8 IS NOT NULL",
        ctes.join(", ")
    )
}

pub const FINISH_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// The rows of `table` whose keys are among the tuples made of its key
/// columns' arrays (`$1` the first key column's values, `$2` the second's,
/// …): a page of a v2 pull's `put`s in one statement.
pub fn rows_by_keys(table: &Table) -> String {
    let text = TableText::new(table);
    let arrays = table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let ty = table.column(k).expect("key column").ty;
            format!("${}::{}[]", i + 1, ty.postgres_type())
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {} FROM {} WHERE ({}) IN (SELECT * FROM unnest({arrays}))",
        text.cols, table.name, text.key
    )
}
