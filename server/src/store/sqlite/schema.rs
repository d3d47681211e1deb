//! The SQL the SQLite store runs, generated from the app definition: the
//! bookkeeping tables, each synced table with its row versions (tombstones
//! included: a deleted row keeps its version entry) and its touched log, both
//! kept by triggers, and the per-table pull and write-rule queries. The same
//! design as the Postgres store's (`postgres/schema.rs`), in SQLite's terms.
//!
//! Names are validated by the app definition (lowercase `snake_case`, never
//! `_ferry…`), so generated SQL names them unquoted, as mutators do.

pub use super::super::table_text::bookkeeping;
use super::super::table_text::{write_violation, Dialect, TableText};
use ferrydb_protocol::sql::{Placeholders, Statement};
use ferrydb_protocol::{ColumnType, Table};

/// Which layout of the server's own tables a database has. Databases of
/// earlier servers, which borrowed the SDK's replica tables (layout 1, no
/// `layout` entry), are moved to this one when opened ([`LAYOUT_1_LEFTOVERS`]).
pub const LAYOUT: &str = "ferrydb-sqlite-2";

/// What layout 1 had that this one does not: the SDK's outbox and
/// rejections, and its undo log's switch (per table, `undo_leftovers`).
pub const LAYOUT_1_LEFTOVERS: &[&str] = &[
    "DROP TABLE IF EXISTS _ferry_outbox",
    "DROP TABLE IF EXISTS _ferry_rejections",
    "DELETE FROM _ferry_meta WHERE key = 'recording'",
];

/// Layout 1's undo log of table `t`: its triggers and its table.
pub fn undo_leftovers(t: &str) -> Vec<String> {
    let mut sql: Vec<String> = ["insert", "update", "delete"]
        .iter()
        .map(|kind| format!("DROP TRIGGER IF EXISTS _ferry_undo_{t}_{kind}"))
        .collect();
    sql.push(format!("DROP TABLE IF EXISTS _ferry_undo_{t}"));
    sql
}

/// The server's own tables in SQLite's types (see [`bookkeeping`]).
pub const DIALECT: Dialect = Dialect {
    integer: "INTEGER",
    text: "TEXT",
    sequence: "INTEGER",
    bytewise: "",
};

/// A rule as a SQL condition that is false (never NULL) when the rule does
/// not hold, and whether it uses `:user_id` (bound as `?1`).
fn rule(text: &str) -> (String, bool) {
    let statement = Statement::parse(text).expect("validated rule");
    let uses_user = !statement.params.is_empty();
    let condition = format!(
        "coalesce(({}), 0)",
        statement.render(Placeholders::Question)
    );
    (condition, uses_user)
}

/// Whether a mutation broke one table's write rule, before or after
/// (`table_text::write_violation`), as a query, and whether it binds
/// `:user_id` (as `?1`).
pub struct WriteCheck {
    pub sql: String,
    pub uses_user: bool,
}

impl WriteCheck {
    /// The check of `table`, whose rule may read any of the `synced` tables.
    pub fn new(table: &Table, synced: &[Table]) -> WriteCheck {
        let violation = write_violation(table, synced, Placeholders::Question, "main.");
        WriteCheck {
            sql: format!("SELECT {violation}"),
            uses_user: !table.write_rule().params.is_empty(),
        }
    }
}

/// One synced table's SQL.
pub struct SqliteTable {
    /// Creates the table and its row versions with their triggers (the same
    /// in layout 1).
    pub create: Vec<String>,
    /// Creates the version index and the touched log with its triggers.
    pub create_log: Vec<String>,
    /// Makes the touched log's triggers (which name every column) again.
    pub refresh_log_triggers: Vec<String>,
    /// Rows changed since version `?2`, joined to their current state: key
    /// columns, readable flag (NULL if the row is gone), all columns.
    pub changes: String,
    /// The first page of a full sync: `?1` user, `?2` limit.
    pub first_page: String,
    /// A later page: `?1` user, `?2…` the last key sent, then the limit.
    pub next_page: String,
    /// Empties the touched log.
    pub clear_touched: String,
    /// Every row the user may read, in key order (`?1` user, if the read
    /// rule uses it): what a caught-up replica of that user holds.
    pub readable: String,
    pub read_uses_user: bool,
}

impl SqliteTable {
    pub fn new(table: &Table) -> SqliteTable {
        let t = &table.name;
        let versions = format!("_ferry_rowver_{t}");
        let touched = format!("_ferry_touched_{t}");
        let text = TableText::new(table);
        let (pk, key, cols) = (&table.primary_key, &text.key, &text.cols);
        let list = TableText::list;
        let column_names = &text.columns;
        let matches = |left: &str, right: &str| text.key_matches(left, right);
        let column_defs = |strict: bool| text.column_defs(strict, ColumnType::sqlite_type);
        let key_defs = text.key_defs(ColumnType::sqlite_type);
        let (read, read_uses_user) = rule(&table.access.read);
        // Delete-then-insert, never a conflict clause: an outer statement's
        // conflict policy would override it inside the trigger.
        let stamp = |row: &str| {
            format!(
                "DELETE FROM {versions} WHERE {}; \
                 INSERT INTO {versions} ({key}, version) VALUES ({}, (SELECT value FROM _ferry_version));",
                matches("", &format!("{row}.")),
                list(&format!("{row}."), pk)
            )
        };
        // The touched log keeps the first image of each row a mutation
        // touches (the row as it was, or "absent"), for the write rule.
        let not_saved = |row: &str| {
            format!(
                "NOT EXISTS (SELECT 1 FROM {touched} WHERE {})",
                matches("", &format!("{row}."))
            )
        };
        let save_old = format!(
            "INSERT INTO {touched} (_ferry_present, {cols}) SELECT 1, {} WHERE {};",
            list("OLD.", column_names),
            not_saved("OLD")
        );
        let save_at_new = format!(
            "INSERT INTO {touched} (_ferry_present, {cols}) SELECT 1, {cols} FROM {t} WHERE {} AND {}; \
             INSERT INTO {touched} (_ferry_present, {key}) SELECT 0, {} WHERE {};",
            matches("", "NEW."),
            not_saved("NEW"),
            list("NEW.", pk),
            not_saved("NEW")
        );
        let moved = format!("({}) IS NOT ({})", list("OLD.", pk), list("NEW.", pk));
        let create = vec![
            format!(
                "CREATE TABLE {t} ({}, PRIMARY KEY ({key})) WITHOUT ROWID",
                column_defs(true)
            ),
            format!("CREATE TABLE {versions} ({key_defs}, version INTEGER NOT NULL, PRIMARY KEY ({key})) WITHOUT ROWID"),
            format!("CREATE TRIGGER {versions}_insert AFTER INSERT ON {t} BEGIN {} END", stamp("NEW")),
            format!(
                "CREATE TRIGGER {versions}_update AFTER UPDATE ON {t} BEGIN {} {} END",
                stamp("OLD"),
                stamp("NEW")
            ),
            format!("CREATE TRIGGER {versions}_delete AFTER DELETE ON {t} BEGIN {} END", stamp("OLD")),
        ];
        let create_log = vec![
            format!("CREATE INDEX {versions}_version ON {versions} (version)"),
            format!(
                "CREATE TABLE {touched} (_ferry_present INTEGER NOT NULL, {}, PRIMARY KEY ({key})) WITHOUT ROWID",
                column_defs(false)
            ),
            format!("CREATE TRIGGER {touched}_insert BEFORE INSERT ON {t} BEGIN {save_at_new} END"),
            format!("CREATE TRIGGER {touched}_update BEFORE UPDATE ON {t} BEGIN {save_old} END"),
            format!(
                "CREATE TRIGGER {touched}_move BEFORE UPDATE ON {t} WHEN {moved} BEGIN {save_at_new} END"
            ),
            format!("CREATE TRIGGER {touched}_delete BEFORE DELETE ON {t} BEGIN {save_old} END"),
        ];
        let refresh_log_triggers = ["insert", "update", "move", "delete"]
            .iter()
            .map(|kind| format!("DROP TRIGGER {touched}_{kind}"))
            .chain(create_log[2..].iter().cloned())
            .collect();
        let n = pk.len();
        let after = text.key_placeholders('?');
        SqliteTable {
            create,
            create_log,
            refresh_log_triggers,
            changes: format!(
                "SELECT {}, r._ferry_readable, {} FROM {versions} v \
                 LEFT JOIN (SELECT *, {read} AS _ferry_readable FROM {t}) r ON {} \
                 WHERE v.version > ?2 ORDER BY v.version",
                list("v.", pk),
                list("r.", column_names),
                matches("r.", "v.")
            ),
            first_page: format!("SELECT {cols} FROM {t} WHERE {read} ORDER BY {key} LIMIT ?2"),
            next_page: format!(
                "SELECT {cols} FROM {t} WHERE {read} AND ({key}) > ({after}) ORDER BY {key} LIMIT ?{}",
                n + 2
            ),
            clear_touched: format!("DELETE FROM {touched}"),
            readable: format!("SELECT {cols} FROM {t} WHERE {read} ORDER BY {key}"),
            read_uses_user,
        }
    }
}
