//! SQL text both stores generate from a synced table's definition: the
//! pieces their schemas are assembled from, and the write-rule check each
//! runs after a mutation ([`write_violation`]). Names are validated by
//! the app definition (lowercase `snake_case`, never `_ferry…`), so they
//! appear unquoted, as in mutators.

use ferrydb_protocol::sql::{Placeholders, Statement};
use ferrydb_protocol::{ColumnType, Table};

pub struct TableText<'a> {
    pub table: &'a Table,
    /// Its column names, in order.
    pub columns: Vec<String>,
    /// The column list, comma-separated.
    pub cols: String,
    /// The key column list, comma-separated.
    pub key: String,
}

impl<'a> TableText<'a> {
    pub fn new(table: &'a Table) -> Self {
        let columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        TableText {
            table,
            cols: columns.join(", "),
            key: table.primary_key.join(", "),
            columns,
        }
    }

    /// `names`, each behind `prefix`, comma-separated: `OLD.a, OLD.b`.
    pub fn list(prefix: &str, names: &[String]) -> String {
        names
            .iter()
            .map(|c| format!("{prefix}{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key columns of `left` equal those of `right`: `a = NEW.a AND …`.
    pub fn key_matches(&self, left: &str, right: &str) -> String {
        self.table
            .primary_key
            .iter()
            .map(|k| format!("{left}{k} = {right}{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Column definitions in the store's types: key columns are NOT NULL,
    /// and, when `strict`, every column not declared nullable.
    pub fn column_defs(&self, strict: bool, sql_type: fn(ColumnType) -> &'static str) -> String {
        self.table
            .columns
            .iter()
            .map(|c| {
                let not_null = self.table.primary_key.contains(&c.name) || (strict && !c.nullable);
                let null = if not_null { " NOT NULL" } else { "" };
                format!("{} {}{null}", c.name, sql_type(c.ty))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The placeholders a later page binds the last key to, after the user
    /// (`?2, ?3` or `$2, $3`).
    pub fn key_placeholders(&self, mark: char) -> String {
        (0..self.table.primary_key.len())
            .map(|i| format!("{mark}{}", i + 2))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key columns' definitions in the store's types.
    pub fn key_defs(&self, sql_type: fn(ColumnType) -> &'static str) -> String {
        self.table
            .primary_key
            .iter()
            .map(|k| format!("{k} {}", sql_type(self.table.column(k).expect("key").ty)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The `_ferry_meta` key under which a store records a served table.
pub fn meta_key(table: &Table) -> String {
    format!("table:{}", table.name)
}

/// The column types a store's own tables are declared with.
pub struct Dialect {
    pub integer: &'static str,
    pub text: &'static str,
    /// An integer key that numbers new rows by itself.
    pub sequence: &'static str,
    /// What makes text compare bytewise (as Rust compares strings), after a
    /// text expression: the order view keys are paged in.
    pub bytewise: &'static str,
}

/// The server's own tables, the same in every store: the table definitions
/// served, the version counter (its one row orders mutations), each
/// client's last mutation ID and owner, remembered rejections and the
/// mutation log.
pub fn bookkeeping(d: &Dialect) -> Vec<String> {
    let Dialect {
        integer: int,
        text,
        sequence,
        ..
    } = d;
    vec![
        format!("CREATE TABLE _ferry_meta (key {text} PRIMARY KEY, value {text} NOT NULL)"),
        format!(
            "CREATE TABLE _ferry_version (id {int} PRIMARY KEY CHECK (id = 1), value {int} NOT NULL)"
        ),
        "INSERT INTO _ferry_version VALUES (1, 0)".into(),
        format!(
            "CREATE TABLE _ferry_clients (client_id {text} PRIMARY KEY, client_group_id {text} NOT NULL, \
             last_mutation_id {int} NOT NULL, version {int} NOT NULL, user_id {text} NOT NULL)"
        ),
        "CREATE INDEX _ferry_clients_group ON _ferry_clients (client_group_id, version)".into(),
        format!(
            "CREATE TABLE _ferry_server_rejections (client_id {text} NOT NULL, mutation_id {int} NOT NULL, \
             code {text} NOT NULL, message {text} NOT NULL, PRIMARY KEY (client_id, mutation_id))"
        ),
        format!(
            "CREATE TABLE _ferry_mutation_log (seq {sequence} PRIMARY KEY, client_id {text} NOT NULL, \
             mutation_id {int} NOT NULL, name {text} NOT NULL, outcome {text} NOT NULL)"
        ),
    ]
}

/// Whether a mutation broke `table`'s write rule, as one boolean expression
/// (`:user_id` is the rule's only parameter, rendered in `style`), run after
/// the mutation's last statement, inside its transaction. For every row the
/// mutation touched (its key is in the table's touched log):
///
/// - **after**: the row as it is now must satisfy the rule against the
///   tables as they are now;
/// - **before**: the row as it was must satisfy the rule against the tables
///   as they were before the mutation started, so a mutator cannot first
///   make its user an editor and then pass the check on the old row.
///
/// The state before the mutation needs no second snapshot: the touched logs
/// hold the first image of every row the mutation touched (the row as it
/// was, or "absent"), so the rows as they were are the log's present rows,
/// and each synced table as it was is its untouched rows plus its log's
/// present rows. The "before" check runs the rule under common table
/// expressions that give each synced table's name to that union, shadowing
/// the table in the rule's subqueries, while the row itself comes from the
/// log under the table's name (for `items.list_id`). The rule's text is
/// never rewritten. `real_tables` is the prefix that names a real table
/// inside those expressions: SQLite reads a table expression naming itself
/// as a circular reference, Postgres never.
pub fn write_violation(
    table: &Table,
    synced: &[Table],
    style: Placeholders,
    real_tables: &str,
) -> String {
    let statement = Statement::parse(&table.access.write).expect("validated rule");
    let broken = format!("NOT coalesce(({}), false)", statement.render(style));
    let t = &table.name;
    let as_they_were = synced
        .iter()
        .map(|u| {
            let text = TableText::new(u);
            let (name, cols) = (&u.name, &text.cols);
            let touched = format!("_ferry_touched_{name}");
            // Always inlined: a rule reads a few rows of a table, by key,
            // and a materialised expression would copy the whole table.
            format!(
                "{name} AS NOT MATERIALIZED (\
                 SELECT {cols} FROM {real_tables}{name} AS _ferry_row \
                 WHERE NOT EXISTS (SELECT 1 FROM {touched} WHERE {}) \
                 UNION ALL SELECT {cols} FROM {touched} WHERE _ferry_present)",
                text.key_matches(&format!("{touched}."), "_ferry_row.")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    // Both checks start from the touched log, a few rows, and find the row
    // now by its key in a scalar subquery, which no planner turns into a
    // scan of the table (Postgres estimates an unanalysed log as large).
    format!(
        "(EXISTS (WITH {as_they_were} \
           SELECT 1 FROM _ferry_touched_{t} AS {t} WHERE _ferry_present AND {broken}) \
         OR EXISTS (SELECT 1 FROM _ferry_touched_{t} AS _ferry_key \
           WHERE (SELECT {broken} FROM {t} WHERE {})))",
        TableText::new(table).key_matches(&format!("{t}."), "_ferry_key.")
    )
}

/// Protocol v2's view of each client group (`sync::view`), the same in
/// every store: the group's view version, owner, last subscriptions (JSON)
/// and the `lastMutationID`s it told its clients (JSON); and every row the
/// group holds or held, with the row's version and the view version of its
/// last patch. Created if missing on every start, in the opening
/// transaction: the tables are additive, so a database keeps its layout and
/// a server of the previous release still opens it (it never reads them).
///
/// Beside them, each group's paging record (`sync::view::Paging`, JSON),
/// and its floor: the oldest cookie it is still served from (the view
/// version through which the rows that left it were forgotten).
/// View keys compare bytewise (the order pages read them in), declared so
/// where text does not by default.
pub fn view_tables(d: &Dialect) -> Vec<String> {
    let Dialect {
        integer: int,
        text,
        bytewise,
        ..
    } = d;
    let mut tables = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS _ferry_views (group_id {text} PRIMARY KEY, \
             user_id {text} NOT NULL, version {int} NOT NULL, subscriptions {text} NOT NULL, \
             clients {text} NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS _ferry_view_rows (group_id {text} NOT NULL, \
             table_name {text} NOT NULL, row_key {text}{bytewise} NOT NULL, \
             row_version {int} NOT NULL, \
             patch_version {int} NOT NULL, present {int} NOT NULL, \
             PRIMARY KEY (group_id, table_name, row_key))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS _ferry_view_pages (group_id {text} PRIMARY KEY, \
             paging {text} NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS _ferry_view_floors (group_id {text} PRIMARY KEY, \
             floor {int} NOT NULL)"
        ),
        // Poke routing finds the clients whose mutations a commit processed,
        // and the groups holding a written row by its key.
        "CREATE INDEX IF NOT EXISTS _ferry_clients_version ON _ferry_clients (version)".into(),
        "CREATE INDEX IF NOT EXISTS _ferry_view_rows_key ON _ferry_view_rows (table_name, row_key)"
            .into(),
    ];
    // Keys are bytewise in the primary key of a table made so; one made
    // before (by an earlier server) gets an index in that order.
    if !bytewise.is_empty() {
        tables.push(format!(
            "DO $$ BEGIN IF (SELECT collation_name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '_ferry_view_rows' \
             AND column_name = 'row_key') IS DISTINCT FROM 'C' THEN \
             CREATE INDEX IF NOT EXISTS _ferry_view_rows_bytewise \
             ON _ferry_view_rows (group_id, table_name, row_key{bytewise}); END IF; END $$"
        ));
    }
    tables
}

/// The view record's statements, the same text in both stores but for the
/// placeholder mark (`?` or `$`).
pub struct ViewText {
    /// Creates the group's view if it has none: `1` group, `2` user.
    pub create: String,
    /// The view's version, owner, clients and subscriptions: `1` group.
    pub head: String,
    pub held: String,
    /// `1` group, `2` version, `3` subscriptions, `4` clients.
    pub update_head: String,
    /// The view's owner and subscriptions: `1` group.
    pub reads: String,
    /// Every group's entry of one row: `1` table, `2` key.
    pub holders: String,
    mark: char,
    /// The view rows of a page (`sync::view::PatchedRows`): `1` group, `2`
    /// table, `3` after key, `4` at, `5` base, `6` least `present`, `7`
    /// limit.
    pub patched: String,
    /// The group's paging record: `1` group.
    pub paging: String,
    /// `1` group, `2` paging record.
    pub record_paging: String,
    /// The group's floor: `1` group.
    pub floor: String,
    /// Forgets the rows that left the group by a view version: `1` group,
    /// `2` version.
    pub prune: String,
    /// `1` group, `2` floor.
    pub record_floor: String,
    /// Marks every row of the group's view absent: `1` group.
    pub forget: String,
}

/// How a recorded view row replaces the group's entry for its table and key.
pub const VIEW_ROW_CONFLICT: &str = "ON CONFLICT (group_id, table_name, row_key) \
     DO UPDATE SET row_version = excluded.row_version, \
     patch_version = excluded.patch_version, present = excluded.present";

/// How a row a lazy page sends is recorded (`sync::LazyTx::record_sent`):
/// never over an entry at a later patch version.
pub const VIEW_ROW_SENT_CONFLICT: &str = "ON CONFLICT (group_id, table_name, row_key) \
     DO UPDATE SET row_version = excluded.row_version, \
     patch_version = excluded.patch_version, present = excluded.present \
     WHERE _ferry_view_rows.patch_version < excluded.patch_version";

impl ViewText {
    /// Records `rows` view rows in one statement: per row, its group,
    /// table, key, row version, patch version and present (0/1), in turn.
    pub fn upsert_rows(&self, rows: usize) -> String {
        self.insert_rows(rows, VIEW_ROW_CONFLICT)
    }

    /// As [`ViewText::upsert_rows`], for the rows a lazy page sends.
    pub fn upsert_sent_rows(&self, rows: usize) -> String {
        self.insert_rows(rows, VIEW_ROW_SENT_CONFLICT)
    }

    fn insert_rows(&self, rows: usize, conflict: &str) -> String {
        let values = (0..rows)
            .map(|row| {
                let marks = (1..=6)
                    .map(|column| format!("{}{}", self.mark, row * 6 + column))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("({marks})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO _ferry_view_rows \
             (group_id, table_name, row_key, row_version, patch_version, present) \
             VALUES {values} {conflict}"
        )
    }

    pub fn new(mark: char, d: &Dialect) -> ViewText {
        let p = |n: u8| format!("{mark}{n}");
        let bytewise = d.bytewise;
        ViewText {
            patched: format!(
                "SELECT table_name, row_key, row_version, patch_version, present \
                 FROM _ferry_view_rows WHERE group_id = {} AND table_name = {} \
                 AND row_key{bytewise} > {} AND patch_version <= {} AND patch_version > {} \
                 AND present >= {} ORDER BY row_key{bytewise} LIMIT {}",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7)
            ),
            paging: format!(
                "SELECT paging FROM _ferry_view_pages WHERE group_id = {}",
                p(1)
            ),
            forget: format!(
                "UPDATE _ferry_view_rows SET present = 0 WHERE group_id = {} AND present = 1",
                p(1)
            ),
            record_paging: format!(
                "INSERT INTO _ferry_view_pages (group_id, paging) VALUES ({}, {}) \
                 ON CONFLICT (group_id) DO UPDATE SET paging = excluded.paging",
                p(1),
                p(2)
            ),
            floor: format!(
                "SELECT floor FROM _ferry_view_floors WHERE group_id = {}",
                p(1)
            ),
            prune: format!(
                "DELETE FROM _ferry_view_rows WHERE group_id = {} AND present = 0 \
                 AND patch_version <= {}",
                p(1),
                p(2)
            ),
            record_floor: format!(
                "INSERT INTO _ferry_view_floors (group_id, floor) VALUES ({}, {}) \
                 ON CONFLICT (group_id) DO UPDATE SET floor = excluded.floor",
                p(1),
                p(2)
            ),
            create: format!(
                "INSERT INTO _ferry_views (group_id, user_id, version, subscriptions, clients) \
                 VALUES ({}, {}, 0, '[]', '{{}}') ON CONFLICT (group_id) DO NOTHING",
                p(1),
                p(2)
            ),
            head: format!(
                "SELECT version, user_id, clients, subscriptions FROM _ferry_views \
                 WHERE group_id = {}",
                p(1)
            ),
            held: format!(
                "SELECT table_name, row_key, row_version, patch_version, present \
                 FROM _ferry_view_rows WHERE group_id = {}",
                p(1)
            ),
            holders: format!(
                "SELECT group_id, row_key, row_version, present FROM _ferry_view_rows \
                 WHERE table_name = {} AND row_key = {}",
                p(1),
                p(2)
            ),
            reads: format!(
                "SELECT user_id, subscriptions FROM _ferry_views WHERE group_id = {}",
                p(1)
            ),
            update_head: format!(
                "UPDATE _ferry_views SET version = {}, subscriptions = {}, clients = {} \
                 WHERE group_id = {}",
                p(2),
                p(3),
                p(4),
                p(1)
            ),
            mark,
        }
    }
}

/// A query part as a statement over table `table`: the key columns and the
/// row version of every row `condition` (rendered with its placeholders)
/// selects. The row version is read in a subquery so the condition's
/// unqualified names can only mean the table's columns.
pub fn part_select(table: &Table, condition: &str) -> String {
    let t = &table.name;
    let keys = TableText::list(&format!("{t}."), &table.primary_key);
    let matches = table
        .primary_key
        .iter()
        .map(|k| format!("v.{k} = {t}.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "SELECT {keys}, coalesce((SELECT v.version FROM _ferry_rowver_{t} v WHERE {matches}), 0) \
         FROM {t} WHERE ({condition})"
    )
}

/// A query part's rows in its table's key order, whole, each with its row
/// version (`sync::LazyTx::part_rows`): the condition's `params`
/// placeholders first, then, if `after`, the key to start after (one per
/// key column), then the limit. The key range and the order are the
/// primary key's, so a page is a range of its index, as v1's pages are.
pub fn part_rows(table: &Table, condition: &str, params: usize, after: bool, mark: char) -> String {
    let t = &table.name;
    let text = TableText::new(table);
    let matches = table
        .primary_key
        .iter()
        .map(|k| format!("v.{k} = {t}.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let placeholder = |n: usize| format!("{mark}{}", params + n);
    let key_len = table.primary_key.len();
    let (range, limit) = if after {
        let marks = (1..=key_len)
            .map(placeholder)
            .collect::<Vec<_>>()
            .join(", ");
        (
            format!(" AND ({}) > ({marks})", text.key),
            placeholder(key_len + 1),
        )
    } else {
        (String::new(), placeholder(1))
    };
    format!(
        "SELECT {}, coalesce((SELECT v.version FROM _ferry_rowver_{t} v WHERE {matches}), 0) \
         FROM {t} WHERE ({condition}){range} ORDER BY {} LIMIT {limit}",
        text.cols, text.key
    )
}

/// How many rows a query part selects (`sync::LazyTx::count`).
pub fn part_count(table: &Table, condition: &str) -> String {
    format!("SELECT count(*) FROM {} WHERE ({condition})", table.name)
}

/// A row of `table` by key: `mark1…markN` the key columns.
pub fn row_by_key(table: &Table, mark: char) -> String {
    let text = TableText::new(table);
    let key = (1..=table.primary_key.len())
        .map(|i| format!("{mark}{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {} FROM {} WHERE ({}) = ({key})",
        text.cols, table.name, text.key
    )
}

/// Every client with a mutation processed after version `mark1`: its
/// group, itself and its `lastMutationID`.
pub fn processed_clients(mark: char) -> String {
    format!(
        "SELECT client_group_id, client_id, last_mutation_id FROM _ferry_clients \
         WHERE version > {mark}1"
    )
}

/// The keys of `table` written at a version after `mark1` (deleted ones
/// too: a tombstone keeps its entry), with their row version, read through
/// the row-version index.
pub fn written_keys(table: &Table, mark: char) -> String {
    format!(
        "SELECT {}, version FROM _ferry_rowver_{} WHERE version > {mark}1",
        table.primary_key.join(", "),
        table.name
    )
}

/// What [`part_select`] selects, among the rows written at a version after
/// placeholder `since` only (the condition's other placeholders come before
/// it). The written keys are read first, through the row-version index
/// (materialised: a few rows), and each row then by its key, never by a
/// scan of the table, whatever a planner estimates: SQLite never reorders
/// a `CROSS JOIN`. On Postgres (`batch`: a row source `_ferry_a` of
/// argument lists, `_ferry_i` numbering them, which the condition's
/// parameters name as its columns), one statement serves many argument
/// lists, and each row comes from a `LATERAL` subquery it cannot flatten
/// (`OFFSET 0`), so no generic plan hashes the whole table. The keys are
/// renamed so the condition's unqualified names mean only the table's
/// columns.
pub fn part_select_written(
    table: &Table,
    condition: &str,
    since: &str,
    batch: Option<&str>,
) -> String {
    let t = &table.name;
    let renamed = table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} AS _ferry_k{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let matches = table
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{t}.{k} = _ferry_w._ferry_k{i}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let keys = TableText::list(&format!("{t}."), &table.primary_key);
    let written = format!(
        "WITH _ferry_w AS MATERIALIZED (SELECT {renamed}, version AS _ferry_version \
         FROM _ferry_rowver_{t} WHERE version > {since})"
    );
    match batch {
        Some(args) => format!(
            "{written} SELECT _ferry_a._ferry_i, {keys}, _ferry_w._ferry_version FROM _ferry_w \
             CROSS JOIN LATERAL (SELECT * FROM {t} WHERE {matches} OFFSET 0) AS {t} \
             CROSS JOIN {args} WHERE ({condition})"
        ),
        None => format!(
            "{written} SELECT {keys}, _ferry_w._ferry_version FROM _ferry_w CROSS JOIN {t} \
             WHERE {matches} AND ({condition})"
        ),
    }
}

/// Which of `tables` have a row (or tombstone) with a version in
/// `(mark1, mark2]`: one name per row, read through each row-version index.
pub fn tables_touched(tables: &[Table], mark: char) -> String {
    tables
        .iter()
        .map(|t| {
            format!(
                "SELECT '{0}' WHERE EXISTS (SELECT 1 FROM _ferry_rowver_{0} \
                 WHERE version > {mark}1 AND version <= {mark}2)",
                t.name
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}
