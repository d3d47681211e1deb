//! The SQL the model server runs per synced table: row versions kept by
//! triggers (plus tombstones: a deleted row keeps its version entry), pulls
//! filtered by the read rule, and write-rule checks over the rows a mutator
//! touched (the undo log the client uses records them here too).

use crate::engine::sync::schema::{undo_table, TableSql};
use ferrydb_protocol::sql::{Placeholders, Statement};
use ferrydb_protocol::Table;

pub struct ServerTable {
    pub sql: TableSql,
    pub create: Vec<String>,
    /// Rows changed since version `?2`, joined to their current state:
    /// key columns, readable flag (NULL if the row is gone), all columns.
    pub changes: String,
    /// The first page of a full sync: `?1` user, `?2` limit.
    pub first_page: String,
    /// A later page: `?1` user, `?2…` the last key sent, then the limit.
    pub next_page: String,
    /// Whether an old image / a new row breaks the write rule (`?1` user).
    pub write_violations: [String; 2],
    /// Whether the rules use `:user_id`, i.e. whether `?1` must be bound.
    pub write_uses_user: bool,
    /// Every row the user may read (`?1` user, if the read rule uses it).
    pub read_rows: String,
    pub read_uses_user: bool,
}

/// A rule as a SQL condition that is false (not NULL) when the rule does not
/// hold, and whether it uses `:user_id` (bound as `?1`).
fn rule(text: &str) -> (String, bool) {
    let statement = Statement::parse(text).expect("validated rule");
    let uses_user = !statement.params.is_empty();
    let condition = format!(
        "coalesce(({}), 0)",
        statement.render(Placeholders::Question)
    );
    (condition, uses_user)
}

impl ServerTable {
    pub fn new(table: &Table) -> ServerTable {
        let t = &table.name;
        let versions = format!("_ferry_rowver_{t}");
        let undo = undo_table(t);
        let key = table.primary_key.join(", ");
        let cols = table
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let key_tuple = |prefix: &str| {
            let list = table
                .primary_key
                .iter()
                .map(|k| format!("{prefix}{k}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({list})")
        };
        let key_defs = table
            .primary_key
            .iter()
            .map(|k| format!("{k} {}", table.column(k).expect("key").ty.sqlite_type()))
            .collect::<Vec<_>>()
            .join(", ");
        let (read, read_uses_user) = rule(&table.access.read);
        let (write, write_uses_user) = rule(&table.access.write);
        let stamp = |row: &str| {
            let matches = table
                .primary_key
                .iter()
                .map(|k| format!("{k} = {row}.{k}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let values = table
                .primary_key
                .iter()
                .map(|k| format!("{row}.{k}"))
                .collect::<Vec<_>>()
                .join(", ");
            // Delete-then-insert, never OR REPLACE: an outer statement's
            // conflict policy would override it inside the trigger.
            format!(
                "DELETE FROM {versions} WHERE {matches}; \
                 INSERT INTO {versions} ({key}, version) VALUES ({values}, (SELECT value FROM _ferry_version));"
            )
        };
        let create = vec![
            format!("CREATE TABLE {versions} ({key_defs}, version INTEGER NOT NULL, PRIMARY KEY ({key})) WITHOUT ROWID"),
            format!("CREATE TRIGGER {versions}_insert AFTER INSERT ON {t} BEGIN {} END", stamp("NEW")),
            format!(
                "CREATE TRIGGER {versions}_update AFTER UPDATE ON {t} BEGIN {} {} END",
                stamp("OLD"),
                stamp("NEW")
            ),
            format!("CREATE TRIGGER {versions}_delete AFTER DELETE ON {t} BEGIN {} END", stamp("OLD")),
        ];
        let join = table
            .primary_key
            .iter()
            .map(|k| format!("r.{k} = v.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let v_key = table
            .primary_key
            .iter()
            .map(|k| format!("v.{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let r_cols = table
            .columns
            .iter()
            .map(|c| format!("r.{}", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let n = table.primary_key.len();
        let after = (0..n)
            .map(|i| format!("?{}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        ServerTable {
            sql: TableSql::new(table),
            create,
            changes: format!(
                "SELECT {v_key}, r._ferry_readable, {r_cols} FROM {versions} v \
                 LEFT JOIN (SELECT *, {read} AS _ferry_readable FROM {t}) r ON {join} \
                 WHERE v.version > ?2 ORDER BY v.version"
            ),
            first_page: format!("SELECT {cols} FROM {t} WHERE {read} ORDER BY {key} LIMIT ?2"),
            next_page: format!(
                "SELECT {cols} FROM {t} WHERE {read} AND {} > ({after}) ORDER BY {key} LIMIT ?{}",
                key_tuple(""),
                n + 2
            ),
            write_violations: [
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {undo} WHERE _ferry_present = 1 AND NOT {write})"
                ),
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {t} WHERE {} IN (SELECT {key} FROM {undo}) AND NOT {write})",
                    key_tuple("")
                ),
            ],
            write_uses_user,
            read_rows: format!("SELECT {cols} FROM {t} WHERE {read} ORDER BY {key}"),
            read_uses_user,
        }
    }
}
