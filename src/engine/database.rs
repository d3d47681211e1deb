//! A SQLite connection that knows, for every statement it runs, which tables the
//! statement reads and which it writes. Live queries are built on the first,
//! change notification on the second.

use super::error::Result;
use super::patch::{Aligner, FreshRow};
use super::value::{QueryResult, Value};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

pub use super::table_set::TableSet;

/// What a statement touches, recorded by the SQLite authorizer when it is prepared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatementAccess {
    pub reads: TableSet,
    pub writes: TableSet,
    /// CREATE/DROP/ALTER: cached statements and their access sets are stale after it.
    pub changes_schema: bool,
    /// SQLite's own verdict that the statement does not write, not a guess from the text.
    pub readonly: bool,
}

/// The result of a statement that returned no rows to the caller.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResult {
    pub rows_affected: usize,
    pub last_insert_rowid: i64,
}

/// The authorizer is a `'static + Send` callback, so it reports into shared
/// state that the connection's owner reads right after preparing.
type AccessRecorder = Arc<Mutex<StatementAccess>>;

pub struct Database {
    conn: Connection,
    recorder: AccessRecorder,
    /// Access sets by SQL text. SQLite only runs the authorizer when it prepares a
    /// statement, and cached statements are not prepared again.
    access_by_sql: HashMap<String, Rc<StatementAccess>>,
    /// Tables written since the last time the caller collected them; collected
    /// once the connection is back in autocommit mode (the transaction ended).
    uncommitted_writes: TableSet,
}

impl Database {
    /// Opens a private in-memory database.
    pub fn open_in_memory() -> Result<Self> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    pub fn from_connection(mut conn: Connection) -> Result<Self> {
        let recorder = AccessRecorder::default();
        let sink = recorder.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            record_access(&sink, &ctx);
            Authorization::Allow
        }))?;
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Database {
            conn,
            recorder,
            access_by_sql: HashMap::new(),
            uncommitted_writes: TableSet::new(),
        })
    }

    /// The tables `sql` reads and writes, preparing it once if it is new.
    pub fn access(&mut self, sql: &str) -> Result<Rc<StatementAccess>> {
        if let Some(access) = self.access_by_sql.get(sql) {
            return Ok(access.clone());
        }
        *self.recorder.lock().expect("recorder poisoned") = StatementAccess::default();
        // Uncached on purpose: a statement from the cache is not prepared again,
        // so the authorizer would not run.
        let readonly = self.conn.prepare(sql)?.readonly();
        let mut access = std::mem::take(&mut *self.recorder.lock().expect("recorder poisoned"));
        access.readonly = readonly;
        let access = Rc::new(access);
        self.access_by_sql.insert(sql.to_owned(), access.clone());
        Ok(access)
    }

    /// Runs one statement that may write. Returns the outcome and, if this ended a
    /// transaction (or ran in autocommit mode), the tables it committed changes to.
    pub fn execute(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<(ExecResult, Option<TableSet>)> {
        let access = self.access(sql)?;
        {
            // Stepped to the end rather than `execute`d, so a statement that returns
            // rows (a SELECT, a write with RETURNING) runs too; its rows are dropped.
            let mut stmt = self.conn.prepare_cached(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            while rows.next()?.is_some() {}
        }
        let outcome = ExecResult {
            rows_affected: if access.writes.is_empty() {
                0
            } else {
                self.conn.changes() as usize
            },
            last_insert_rowid: self.conn.last_insert_rowid(),
        };
        self.uncommitted_writes
            .extend(access.writes.iter().cloned());
        if access.changes_schema {
            self.forget_statements();
        }
        Ok((outcome, self.take_committed_writes()))
    }

    /// Runs one statement once per parameter set, all in one transaction (its own,
    /// unless one is already open): the bulk-load path. Nothing is applied if any
    /// run fails.
    pub fn execute_many(
        &mut self,
        sql: &str,
        param_sets: &[Vec<Value>],
    ) -> Result<(ExecResult, Option<TableSet>)> {
        let access = self.access(sql)?;
        let own_transaction = self.conn.is_autocommit();
        if own_transaction {
            self.conn.execute_batch("BEGIN")?;
        }
        let mut outcome = ExecResult {
            rows_affected: 0,
            last_insert_rowid: 0,
        };
        let run = (|| -> Result<()> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            for params in param_sets {
                outcome.rows_affected += stmt.execute(rusqlite::params_from_iter(params))?;
            }
            Ok(())
        })();
        match run {
            Ok(()) if own_transaction => self.conn.execute_batch("COMMIT")?,
            Ok(()) => {}
            Err(e) => {
                if own_transaction {
                    self.conn.execute_batch("ROLLBACK")?;
                }
                return Err(e);
            }
        }
        outcome.last_insert_rowid = self.conn.last_insert_rowid();
        self.uncommitted_writes
            .extend(access.writes.iter().cloned());
        Ok((outcome, self.take_committed_writes()))
    }

    /// Runs a statement and returns its rows (a write with `RETURNING` works too),
    /// with the tables it committed changes to, as [`Database::execute`] does.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<(QueryResult, Option<TableSet>)> {
        let access = self.access(sql)?;
        let result = self.rows(sql, params)?;
        if access.writes.is_empty() {
            return Ok((result, None));
        }
        self.uncommitted_writes
            .extend(access.writes.iter().cloned());
        Ok((result, self.take_committed_writes()))
    }

    /// Runs a statement and collects its rows, without change tracking: for
    /// statements already known to be read-only.
    pub fn rows(&mut self, sql: &str, params: &[Value]) -> Result<QueryResult> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let width = columns.len();
        let mut rows = Vec::new();
        let mut cursor = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = cursor.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(Value::from(row.get_ref(i)?));
            }
            rows.push(values);
        }
        Ok(QueryResult { columns, rows })
    }

    /// Runs a live query again, lining its rows up with the previous result as
    /// they stream out: rows equal to their old counterpart are not copied.
    pub fn rows_aligned(
        &mut self,
        sql: &str,
        params: &[Value],
        old: &QueryResult,
    ) -> Result<(Vec<String>, Vec<FreshRow>)> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let width = columns.len();
        let old_rows: &[Vec<Value>] = if columns == old.columns {
            &old.rows
        } else {
            &[]
        };
        let mut aligner = Aligner::new(old_rows);
        let mut cursor = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = cursor.next()? {
            aligner.push(
                |old_row| (0..width).all(|i| row.get_ref(i).is_ok_and(|v| matches(&old_row[i], v))),
                || {
                    (0..width)
                        .map(|i| Ok(Value::from(row.get_ref(i)?)))
                        .collect()
                },
            )?;
        }
        Ok((columns, aligner.finish()))
    }

    /// The tables changed by transactions that have ended since the last call,
    /// or `None` while a transaction is still open or nothing was written.
    fn take_committed_writes(&mut self) -> Option<TableSet> {
        if !self.conn.is_autocommit() || self.uncommitted_writes.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.uncommitted_writes))
    }

    fn forget_statements(&mut self) {
        self.conn.flush_prepared_statement_cache();
        self.access_by_sql.clear();
    }
}

/// Whether a stored value equals one SQLite just produced, without copying it.
fn matches(stored: &Value, fresh: ValueRef<'_>) -> bool {
    match (stored, fresh) {
        (Value::Null, ValueRef::Null) => true,
        (Value::Integer(a), ValueRef::Integer(b)) => *a == b,
        (Value::Real(a), ValueRef::Real(b)) => a.to_bits() == b.to_bits(),
        (Value::Text(a), ValueRef::Text(b)) => a.as_bytes() == b,
        (Value::Blob(a), ValueRef::Blob(b)) => a.as_slice() == b,
        _ => false,
    }
}

fn record_access(recorder: &AccessRecorder, ctx: &AuthContext<'_>) {
    let mut access = recorder.lock().expect("recorder poisoned");
    let table = |name: &str| name.to_ascii_lowercase();
    match ctx.action {
        AuthAction::Read { table_name, .. } => {
            access.reads.insert(table(table_name));
        }
        // sqlite_sequence and friends are bookkeeping, not data anyone watches.
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if !table_name.starts_with("sqlite_") =>
        {
            access.writes.insert(table(table_name));
        }
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::DropTable { .. }
        | AuthAction::DropIndex { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempView { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::AlterTable { .. } => {
            access.changes_schema = true;
            // A table or view that appears, disappears or changes shape changes
            // the results of queries over it (one that failed may work now).
            match ctx.action {
                AuthAction::CreateTable { table_name }
                | AuthAction::DropTable { table_name }
                | AuthAction::AlterTable { table_name, .. } => {
                    access.writes.insert(table(table_name));
                }
                AuthAction::CreateView { view_name } | AuthAction::DropView { view_name } => {
                    access.writes.insert(table(view_name));
                }
                _ => {}
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Database {
        let mut db = Database::open_in_memory().unwrap();
        db.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT)",
            &[],
        )
        .unwrap();
        db.execute("CREATE TABLE tags (item INTEGER, tag TEXT)", &[])
            .unwrap();
        db
    }

    fn set(names: &[&str]) -> TableSet {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn records_reads_through_joins_subqueries_views_and_ctes() {
        let mut db = db();
        db.execute(
            "CREATE VIEW tagged AS SELECT i.title FROM items i JOIN tags t ON t.item = i.id",
            &[],
        )
        .unwrap();
        let cases = [
            ("SELECT title FROM items", set(&["items"])),
            (
                "SELECT i.title, t.tag FROM items i JOIN tags t ON t.item = i.id",
                set(&["items", "tags"]),
            ),
            (
                "SELECT title FROM items WHERE id IN (SELECT item FROM tags)",
                set(&["items", "tags"]),
            ),
            ("SELECT * FROM tagged", set(&["items", "tagged", "tags"])),
            (
                "WITH x AS (SELECT item FROM tags) SELECT count(*) FROM x",
                set(&["tags"]),
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(db.access(sql).unwrap().reads, expected, "{sql}");
        }
    }

    #[test]
    fn reports_written_tables_when_the_write_commits() {
        let mut db = db();
        let (_, changed) = db
            .execute(
                "INSERT INTO items (title) VALUES (?)",
                &[Value::Text("a".into())],
            )
            .unwrap();
        assert_eq!(changed, Some(set(&["items"])));

        db.execute("BEGIN", &[]).unwrap();
        let (_, changed) = db.execute("INSERT INTO tags VALUES (1, 'x')", &[]).unwrap();
        assert_eq!(
            changed, None,
            "nothing is reported while the transaction is open"
        );
        let (_, changed) = db.execute("UPDATE items SET title = 'b'", &[]).unwrap();
        assert_eq!(changed, None);
        let (_, changed) = db.execute("COMMIT", &[]).unwrap();
        assert_eq!(changed, Some(set(&["items", "tags"])));
    }

    #[test]
    fn cached_statements_keep_their_access_and_schema_changes_reset_it() {
        let mut db = db();
        for _ in 0..2 {
            let (_, changed) = db.execute("DELETE FROM items", &[]).unwrap();
            assert_eq!(changed, Some(set(&["items"])));
        }
        db.execute("ALTER TABLE items ADD COLUMN done INTEGER", &[])
            .unwrap();
        let rows = db.rows("SELECT * FROM items", &[]).unwrap();
        assert_eq!(rows.columns, ["id", "title", "done"]);
    }

    #[test]
    fn execute_many_is_one_transaction_that_applies_all_or_nothing() {
        let mut db = db();
        let sets: Vec<Vec<Value>> = (0..100).map(|i| vec![Value::Integer(i)]).collect();
        let (result, changed) = db
            .execute_many("INSERT INTO items (id) VALUES (?)", &sets)
            .unwrap();
        assert_eq!(result.rows_affected, 100);
        assert_eq!(changed, Some(set(&["items"])));

        // The 3rd set collides with an existing id: the first two must not stay.
        let sets: Vec<Vec<Value>> = [1000, 1001, 5]
            .iter()
            .map(|i| vec![Value::Integer(*i)])
            .collect();
        let err = db
            .execute_many("INSERT INTO items (id) VALUES (?)", &sets)
            .unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::SqlError);
        let count = db.rows("SELECT count(*) FROM items", &[]).unwrap();
        assert_eq!(count.rows, vec![vec![Value::Integer(100)]]);
    }

    #[test]
    fn sql_errors_are_errors_not_panics() {
        let mut db = db();
        let err = db.rows("SELEC nonsense", &[]).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::SqlError);
        let err = db
            .execute("INSERT INTO missing VALUES (1)", &[])
            .unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::SqlError);
    }

    #[test]
    fn values_round_trip_through_sqlite() {
        let mut db = db();
        db.execute("CREATE TABLE v (a, b, c, d, e)", &[]).unwrap();
        let values = vec![
            Value::Null,
            Value::Integer(i64::MAX),
            Value::Real(1.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 1, 255]),
        ];
        db.execute("INSERT INTO v VALUES (?, ?, ?, ?, ?)", &values)
            .unwrap();
        assert_eq!(db.rows("SELECT * FROM v", &[]).unwrap().rows, vec![values]);
    }
}
