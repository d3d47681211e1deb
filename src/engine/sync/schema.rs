//! The SQL the replica is made of, generated from the app definition.
//!
//! Every synced table `t` has a twin `_ferry_undo_t` (same columns, all
//! nullable, plus `_ferry_present`) and three BEFORE triggers that, while
//! *recording* is on, save the first image of every row a statement touches:
//! the row as it was (`_ferry_present = 1`) or the fact that it did not exist
//! (`0`). Recording is on whenever mutators run, so the undo tables always hold
//! the server-confirmed image of exactly the rows pending mutations changed.
//! Rebase restores those images, applies the server's patch with recording
//! off, and re-runs the pending mutators (which record again).
//!
//! Why not keep a full copy of the server state: the undo log costs space only
//! for rows with pending changes, not a second copy of the whole replica. Why
//! not SQLite's session extension: rusqlite is built without it here.

use ferrydb_protocol::{ColumnType, LocalTable, Table};

/// ferrydb's own tables. They are never dropped by a rebuild: the outbox and
/// rejection log outlive the replicated tables.
pub const INTERNAL_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS _ferry_meta (key TEXT PRIMARY KEY NOT NULL, value)",
    "CREATE TABLE IF NOT EXISTS _ferry_outbox (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        -- a pull said the server processed it (lastMutationID >= id)
        acked INTEGER NOT NULL DEFAULT 0,
        -- a push reply said it committed (ok or alreadyProcessed)
        confirmed INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS _ferry_rejections (
        mutation_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        code TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        rejected_at INTEGER NOT NULL)",
];

pub const OUTBOX: &str = "_ferry_outbox";
pub const REJECTIONS: &str = "_ferry_rejections";

/// The trigger guard: true while rows touched must be saved in the undo log.
const RECORDING: &str = "(SELECT value FROM _ferry_meta WHERE key = 'recording') = 1";
pub const RECORDING_ON: &str = "UPDATE _ferry_meta SET value = 1 WHERE key = 'recording'";
pub const RECORDING_OFF: &str = "UPDATE _ferry_meta SET value = 0 WHERE key = 'recording'";

pub fn undo_table(table: &str) -> String {
    format!("_ferry_undo_{table}")
}

fn column_defs(columns: &[ferrydb_protocol::Column], key: &[String], strict: bool) -> String {
    columns
        .iter()
        .map(|c| {
            let not_null = key.contains(&c.name) || (strict && !c.nullable);
            format!(
                "{} {}{}",
                c.name,
                c.ty.sqlite_type(),
                if not_null { " NOT NULL" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements that create a synced table, its undo twin and its triggers.
pub fn create_synced(table: &Table) -> Vec<String> {
    let key = table.primary_key.join(", ");
    let mut sql = vec![
        format!(
            "CREATE TABLE {} ({}, PRIMARY KEY ({key})) WITHOUT ROWID",
            table.name,
            column_defs(&table.columns, &table.primary_key, true)
        ),
        format!(
            "CREATE TABLE {} (_ferry_present INTEGER NOT NULL, {}, PRIMARY KEY ({key})) WITHOUT ROWID",
            undo_table(&table.name),
            column_defs(&table.columns, &table.primary_key, false)
        ),
    ];
    sql.extend(create_triggers(table));
    sql
}

pub fn drop_synced(name: &str) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {name}"),
        format!("DROP TABLE IF EXISTS {}", undo_table(name)),
    ]
}

pub fn create_local(table: &LocalTable) -> String {
    let key = if table.primary_key.is_empty() {
        String::new()
    } else {
        format!(", PRIMARY KEY ({})", table.primary_key.join(", "))
    };
    format!(
        "CREATE TABLE {} ({}{key})",
        table.name,
        column_defs(&table.columns, &table.primary_key, true)
    )
}

/// `ALTER TABLE … ADD COLUMN` for a new nullable column, on the table and,
/// for a synced table, on its undo twin.
pub fn add_column(table: &str, column: &ferrydb_protocol::Column, synced: bool) -> Vec<String> {
    let def = format!("{} {}", column.name, column.ty.sqlite_type());
    let mut sql = vec![format!("ALTER TABLE {table} ADD COLUMN {def}")];
    if synced {
        sql.push(format!(
            "ALTER TABLE {} ADD COLUMN {def}",
            undo_table(table)
        ));
    }
    sql
}

const TRIGGER_KINDS: [&str; 3] = ["insert", "update", "delete"];

pub fn drop_triggers(table: &str) -> Vec<String> {
    TRIGGER_KINDS
        .iter()
        .map(|kind| format!("DROP TRIGGER IF EXISTS _ferry_undo_{table}_{kind}"))
        .collect()
}

/// The triggers list every column, so they are recreated when columns are added.
pub fn create_triggers(table: &Table) -> Vec<String> {
    let t = &table.name;
    let undo = undo_table(t);
    let cols = names(table);
    let key = table.primary_key.join(", ");
    let matches = |row: &str| -> String {
        table
            .primary_key
            .iter()
            .map(|k| format!("{k} = {row}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let of = |row: &str, list: &[String]| -> String {
        list.iter()
            .map(|c| format!("{row}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Guards instead of INSERT OR IGNORE: an outer `INSERT OR REPLACE` would
    // impose its conflict policy on statements inside the trigger and
    // overwrite the first (server-confirmed) image with a later one.
    let unsaved = |row: &str| format!("NOT EXISTS (SELECT 1 FROM {undo} WHERE {})", matches(row));
    let save_old = format!(
        "INSERT INTO {undo} (_ferry_present, {cols}) SELECT 1, {} WHERE {};",
        of(
            "OLD",
            &table
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        ),
        unsaved("OLD")
    );
    let save_at_new = format!(
        "INSERT INTO {undo} (_ferry_present, {cols}) SELECT 1, {cols} FROM {t} WHERE {} AND {};
         INSERT INTO {undo} (_ferry_present, {key}) SELECT 0, {} WHERE {};",
        matches("NEW"),
        unsaved("NEW"),
        of("NEW", &table.primary_key),
        unsaved("NEW")
    );
    let when = format!("WHEN {RECORDING}");
    vec![
        format!(
            "CREATE TRIGGER _ferry_undo_{t}_insert BEFORE INSERT ON {t} {when} BEGIN {save_at_new} END"
        ),
        format!(
            "CREATE TRIGGER _ferry_undo_{t}_update BEFORE UPDATE ON {t} {when} BEGIN {save_old} {save_at_new} END"
        ),
        format!("CREATE TRIGGER _ferry_undo_{t}_delete BEFORE DELETE ON {t} {when} BEGIN {save_old} END"),
    ]
}

fn names(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most rows of one batched put (see [`TableSql::put_batch`]).
const PUT_BATCH_ROWS: usize = 100;

/// The statements rebase and patching run against one synced table,
/// generated once so the connection's statement cache keeps them prepared.
#[derive(Clone, Debug)]
pub struct TableSql {
    pub name: String,
    pub columns: Vec<(String, ColumnType)>,
    pub key: Vec<(String, ColumnType)>,
    /// `INSERT OR REPLACE` of a whole row, columns in `columns` order.
    pub put: String,
    /// `put` for `put_batch_rows` rows at once (one multi-row `VALUES`):
    /// pages of an initial sync are applied a batch per statement, since a
    /// statement's fixed cost (statement journal, cursors, trigger program
    /// set-up) is several times that of inserting one row.
    pub put_batch: String,
    pub put_batch_rows: usize,
    /// Delete by key, key columns in `key` order.
    pub delete: String,
    pub clear: String,
    /// Every row in key order.
    pub all: String,
    /// Whether the undo log holds anything for this table.
    pub has_undo: String,
    /// Put back the saved images: delete touched rows, reinsert the saved
    /// ones, empty the log.
    pub undo: [String; 3],
}

impl TableSql {
    pub fn new(table: &Table) -> TableSql {
        let t = &table.name;
        let undo = undo_table(t);
        let cols = names(table);
        let key = table.primary_key.join(", ");
        let placeholders = (1..=table.columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let by_key = table
            .primary_key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ?{}", i + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        let key_tuple = if table.primary_key.len() == 1 {
            key.clone()
        } else {
            format!("({key})")
        };
        let column_type = |name: &String| table.column(name).expect("validated key").ty;
        // Well under SQLite's default limit of 32,766 bound parameters.
        let put_batch_rows = (16_000 / table.columns.len().max(1)).clamp(1, PUT_BATCH_ROWS);
        let row_placeholders = format!("({})", vec!["?"; table.columns.len()].join(", "));
        TableSql {
            name: t.clone(),
            columns: table
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.ty))
                .collect(),
            key: table
                .primary_key
                .iter()
                .map(|k| (k.clone(), column_type(k)))
                .collect(),
            put: format!("INSERT OR REPLACE INTO {t} ({cols}) VALUES ({placeholders})"),
            put_batch: format!(
                "INSERT OR REPLACE INTO {t} ({cols}) VALUES {}",
                vec![row_placeholders; put_batch_rows].join(", ")
            ),
            put_batch_rows,
            delete: format!("DELETE FROM {t} WHERE {by_key}"),
            clear: format!("DELETE FROM {t}"),
            all: format!("SELECT {cols} FROM {t} ORDER BY {key}"),
            has_undo: format!("SELECT EXISTS (SELECT 1 FROM {undo})"),
            undo: [
                format!("DELETE FROM {t} WHERE {key_tuple} IN (SELECT {key} FROM {undo})"),
                format!(
                    "INSERT INTO {t} ({cols}) SELECT {cols} FROM {undo} WHERE _ferry_present = 1"
                ),
                format!("DELETE FROM {undo}"),
            ],
        }
    }
}
