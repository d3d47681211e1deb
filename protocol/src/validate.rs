//! Checks an app definition before anyone runs it, and says precisely what is
//! wrong: which table, column, rule, mutator or parameter. All problems are
//! collected so a developer fixes the file in one pass.

use crate::app::{AppDefinition, Column, Table, USER_ID_PARAM};
#[cfg(feature = "sql-checks")]
use crate::condition::{self, Finding};
pub use crate::problem::{AppError, Problem};
use crate::sql::{tokenize, Statement, Token, TokenKind};

/// Words both engines reserve; a table or column named after one would need
/// quoting in every statement, so such names are refused up front.
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    "all", "alter", "and", "as", "asc", "between", "by", "case", "cast", "check", "collate",
    "column", "constraint", "create", "cross", "default", "delete", "desc", "distinct", "do",
    "drop", "else", "end", "except", "exists", "false", "for", "foreign", "from", "full",
    "group", "having", "in", "index", "inner", "insert", "intersect", "into", "is", "join",
    "key", "left", "like", "limit", "not", "null", "offset", "on", "or", "order", "outer",
    "primary", "references", "returning", "right", "select", "set", "table", "then", "to",
    "true", "union", "unique", "update", "user", "using", "values", "when", "where", "with",
];

/// Words that may appear in an access rule without naming a column.
#[rustfmt::skip]
#[cfg(feature = "sql-checks")]
const RULE_KEYWORDS: &[&str] = &[
    "and", "or", "not", "is", "null", "true", "false", "in", "like", "glob", "between", "case",
    "when", "then", "else", "end", "cast", "as", "collate", "escape", "distinct", "isnull",
    "notnull", "nocase",
];

pub(crate) fn app(app: &AppDefinition) -> Result<(), AppError> {
    let mut problems = Vec::new();
    if app.version == 0 {
        problems.push(Problem::BadVersion);
    }
    let mut table_names = Vec::new();
    let all_tables = app
        .tables
        .iter()
        .map(|t| (&t.name, &t.columns, &t.primary_key, true))
        .chain(
            app.local_tables
                .iter()
                .map(|t| (&t.name, &t.columns, &t.primary_key, false)),
        );
    for (name, columns, key, synced) in all_tables {
        check_table_name(name, &mut problems);
        if !first_time(&mut table_names, name.as_str()) {
            problems.push(Problem::Duplicate {
                kind: "table",
                name: name.clone(),
            });
        }
        check_columns(name, columns, &mut problems);
        check_key(name, columns, key, synced, &mut problems);
    }
    for table in &app.tables {
        for (rule, text) in [("read", &table.access.read), ("write", &table.access.write)] {
            check_rule(app, table, rule, text, &mut problems);
        }
    }
    let mut mutator_names = Vec::new();
    for mutator in &app.mutators {
        check_name("mutator", &mutator.name, true, &mut problems);
        if !first_time(&mut mutator_names, mutator.name.as_str()) {
            problems.push(Problem::Duplicate {
                kind: "mutator",
                name: mutator.name.clone(),
            });
        }
        check_mutator(app, mutator, &mut problems);
    }
    let mut query_names = Vec::new();
    for query in &app.queries {
        check_name("query", &query.name, true, &mut problems);
        if !first_time(&mut query_names, query.name.as_str()) {
            problems.push(Problem::Duplicate {
                kind: "query",
                name: query.name.clone(),
            });
        }
        check_query(app, query, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AppError::Invalid(problems))
    }
}

/// Table and column names: lowercase snake_case (Postgres folds unquoted names
/// to lowercase, SQLite ignores case, so only lowercase means the same in both),
/// not reserved, not in ferrydb's or SQLite's own namespace.
fn check_table_name(name: &str, problems: &mut Vec<Problem>) {
    check_name("table", name, false, problems)
}

fn check_name(kind: &'static str, name: &str, mixed_case: bool, problems: &mut Vec<Problem>) {
    let reason = if name.is_empty() {
        Some("is empty")
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Some("must start with a letter or `_` and contain only letters, digits and `_`")
    } else if !mixed_case && name.chars().any(|c| c.is_ascii_uppercase()) {
        Some("must be lowercase")
    } else if name.to_ascii_lowercase().starts_with("_ferry") {
        Some("is reserved: names starting with `_ferry` belong to ferrydb")
    } else if name.to_ascii_lowercase().starts_with("sqlite_") {
        Some("is reserved: names starting with `sqlite_` belong to SQLite")
    } else if !mixed_case && RESERVED.contains(&name) {
        Some("is a reserved SQL word")
    } else {
        None
    };
    if let Some(reason) = reason {
        problems.push(Problem::BadName {
            kind,
            name: name.to_owned(),
            reason,
        });
    }
}

fn check_columns(table: &str, columns: &[Column], problems: &mut Vec<Problem>) {
    if columns.is_empty() {
        problems.push(Problem::NoColumns {
            table: table.to_owned(),
        });
    }
    let mut seen = Vec::new();
    for column in columns {
        check_name("column", &column.name, false, problems);
        if !first_time(&mut seen, column.name.as_str()) {
            problems.push(Problem::Duplicate {
                kind: "column",
                name: format!("{table}.{}", column.name),
            });
        }
    }
}

fn check_key(
    table: &str,
    columns: &[Column],
    key: &[String],
    synced: bool,
    problems: &mut Vec<Problem>,
) {
    if synced && key.is_empty() {
        problems.push(Problem::NoPrimaryKey {
            table: table.to_owned(),
        });
    }
    let mut seen = Vec::new();
    for name in key {
        if !first_time(&mut seen, name.as_str()) {
            problems.push(Problem::BadKeyColumn {
                table: table.to_owned(),
                column: name.clone(),
                reason: "is listed twice",
            });
        }
        let Some(column) = columns.iter().find(|c| &c.name == name) else {
            problems.push(Problem::UnknownColumn {
                table: table.to_owned(),
                column: name.clone(),
                context: "primary key",
            });
            continue;
        };
        let reason = if column.nullable {
            Some("may not be nullable")
        } else if synced
            && !matches!(
                column.ty,
                crate::ColumnType::Integer | crate::ColumnType::Text
            )
        {
            // Keys travel in patches and are compared across engines: only
            // integers and text compare the same everywhere.
            Some("must be of type integer or text")
        } else {
            None
        };
        if let Some(reason) = reason {
            problems.push(Problem::BadKeyColumn {
                table: table.to_owned(),
                column: name.clone(),
                reason,
            });
        }
    }
}

/// A read rule is an expression over the row's own columns: it decides
/// what a v1 client pulls by the versions of the rows it reads, and a rule
/// that looked at other tables would change a row's visibility without
/// changing its version. A write rule may also read other synced tables
/// through `EXISTS` / `IN` subqueries ("the user is an editor of the row's
/// list"): the server checks it inside the push transaction, where the
/// tables it reads are as they were before the mutation (for the row before
/// it) and after it (for the row after it). Both use `:user_id` only.
fn check_rule(
    app: &AppDefinition,
    table: &Table,
    rule: &'static str,
    text: &str,
    problems: &mut Vec<Problem>,
) {
    let bad = |message: String| Problem::BadRule {
        table: table.name.clone(),
        rule,
        message,
    };
    let tokens = match tokenize(text) {
        Ok(t) if t.is_empty() => return problems.push(bad("is empty".into())),
        Ok(t) => t,
        Err(e) => return problems.push(bad(e.to_string())),
    };
    for token in &tokens {
        match &token.kind {
            TokenKind::Param(p) if p != USER_ID_PARAM => problems.push(bad(format!(
                "unknown parameter `:{p}` (rules may only use `:{USER_ID_PARAM}`)"
            ))),
            k if rule == "read" && k.is_word("select") => {
                return problems.push(bad(
                    "subqueries are not allowed: a read rule looks at its own row only (it \
                     decides what protocol v1 pulls, by row versions); a write rule may use \
                     them, and a v2 client reads through queries"
                        .into(),
                ))
            }
            _ => {}
        }
    }
    resolve_rule_names(app, table, rule, &tokens, problems);
}

/// Every name a rule reads must resolve: its subqueries' tables (synced
/// ones only), their aliases and columns (see `condition.rs`).
#[cfg(feature = "sql-checks")]
fn resolve_rule_names(
    app: &AppDefinition,
    table: &Table,
    rule: &'static str,
    tokens: &[Token],
    problems: &mut Vec<Problem>,
) {
    for finding in condition::check(app, table, tokens, RULE_KEYWORDS) {
        problems.push(match finding {
            Finding::UnknownColumn(column) => Problem::UnknownColumn {
                table: table.name.clone(),
                column,
                context: if rule == "read" {
                    "read rule"
                } else {
                    "write rule"
                },
            },
            Finding::Bad(message) => Problem::BadRule {
                table: table.name.clone(),
                rule,
                message,
            },
        });
    }
}

/// Without `sql-checks` (the SDK): only the server runs rules, and it
/// resolves their names when it starts.
#[cfg(not(feature = "sql-checks"))]
fn resolve_rule_names(_: &AppDefinition, _: &Table, _: &str, _: &[Token], _: &mut Vec<Problem>) {}

/// The tables a mutator statement reads and writes must be synced ones
/// (the server's check, with `sql-checks`: on a client the engine prepares
/// every statement when the app opens, and SQLite names an unknown table).
#[cfg(feature = "sql-checks")]
fn check_mutator_tables(
    app: &AppDefinition,
    name: &str,
    tokens: &[Token],
    problems: &mut Vec<Problem>,
) {
    for table in referenced_tables(tokens) {
        if app.table(&table).is_some() {
            continue;
        }
        problems.push(if app.local_tables.iter().any(|t| t.name == table) {
            Problem::LocalTableInMutator {
                mutator: name.to_owned(),
                table,
            }
        } else {
            Problem::UnknownTable {
                mutator: name.to_owned(),
                table,
            }
        });
    }
}

#[cfg(not(feature = "sql-checks"))]
fn check_mutator_tables(_: &AppDefinition, _: &str, _: &[Token], _: &mut Vec<Problem>) {}

#[cfg(feature = "sql-checks")]
fn next_is(tokens: &[Token], i: usize, c: char) -> bool {
    matches!(tokens.get(i + 1), Some(Token { kind: TokenKind::Punct(p), .. }) if *p == c)
}

fn check_mutator(app: &AppDefinition, mutator: &crate::Mutator, problems: &mut Vec<Problem>) {
    let name = &mutator.name;
    let mut declared = Vec::new();
    for param in &mutator.params {
        check_name("parameter", &param.name, true, problems);
        if !first_time(&mut declared, param.name.as_str()) {
            problems.push(Problem::Duplicate {
                kind: "parameter",
                name: format!("{name}.{}", param.name),
            });
        }
    }
    let statements = mutator.sql.as_slice();
    if statements.is_empty() || statements.iter().all(|s| s.trim().is_empty()) {
        problems.push(Problem::NoStatements {
            mutator: name.clone(),
        });
    }
    let mut used = Vec::new();
    for (index, source) in statements.iter().enumerate() {
        let bad = |message: String| Problem::BadStatement {
            mutator: name.clone(),
            statement: index,
            message,
        };
        let (statement, tokens) = match (Statement::parse(source), tokenize(source)) {
            (Ok(s), Ok(t)) => (s, t),
            (Err(e), _) | (_, Err(e)) => {
                problems.push(bad(e.to_string()));
                continue;
            }
        };
        let last = tokens.len().saturating_sub(1);
        if tokens
            .iter()
            .enumerate()
            .any(|(i, t)| t.kind == TokenKind::Punct(';') && i != last)
        {
            problems.push(bad(
                "holds more than one statement; list each separately".into()
            ));
        }
        // ferrydb's own tables (the server's clients, rejections and logs;
        // the client's outbox) are no mutator's business: reading them
        // would let one user's mutation copy another's bookkeeping into a
        // row. Checked on every name, since `FROM a, b` hides tables from
        // the reading below.
        if let Some(name) = tokens
            .iter()
            .filter_map(|t| t.kind.identifier())
            .find(|name| name.to_ascii_lowercase().starts_with("_ferry"))
        {
            problems.push(bad(format!(
                "names `{name}`: names starting with `_ferry` belong to ferrydb"
            )));
        }
        for param in statement.params {
            // Reported once per mutator, however many statements use it.
            if first_time(&mut used, param.clone()) && !declared.contains(&param.as_str()) {
                problems.push(Problem::UndeclaredParam {
                    mutator: name.clone(),
                    param,
                });
            }
        }
        check_mutator_tables(app, name, &tokens, problems);
    }
    for param in &mutator.params {
        if !used.contains(&param.name) {
            problems.push(Problem::UnusedParam {
                mutator: name.clone(),
                param: param.name.clone(),
            });
        }
    }
}

/// Functions that make a row's membership depend on other rows when used
/// outside a subquery (`count(*) > 2` over what?).
#[rustfmt::skip]
#[cfg(feature = "sql-checks")]
const AGGREGATES: &[&str] = &[
    "count", "sum", "avg", "min", "max", "total", "group_concat", "string_agg", "array_agg",
    "json_group_array", "json_group_object", "jsonb_agg", "json_agg", "bool_and", "bool_or",
    "every",
];

/// A query (protocol v2) is a read permission: each part selects whole rows
/// of one synced table with a condition the server alone evaluates, over
/// synced tables only, binding `:user_id` from the token and every other
/// parameter from the subscription's arguments.
pub(crate) fn check_query(app: &AppDefinition, query: &crate::Query, problems: &mut Vec<Problem>) {
    let name = &query.name;
    let bad = |part: Option<&str>, message: String| Problem::BadQuery {
        query: name.clone(),
        part: part.map(str::to_owned),
        message,
    };
    let mut declared = Vec::new();
    for param in &query.params {
        check_name("parameter", &param.name, true, problems);
        if param.name == USER_ID_PARAM {
            problems.push(bad(
                None,
                format!("declares `{USER_ID_PARAM}`, which the server always binds from the token"),
            ));
        } else if !first_time(&mut declared, param.name.as_str()) {
            problems.push(Problem::Duplicate {
                kind: "parameter",
                name: format!("{name}.{}", param.name),
            });
        }
    }
    if query.sync_on_open && !query.params.is_empty() {
        problems.push(bad(
            None,
            "`syncOnOpen` needs a query without parameters (it is subscribed to with `{}`)".into(),
        ));
    }
    if query.parts.is_empty() {
        problems.push(bad(None, "has no parts".into()));
    }
    let mut tables = Vec::new();
    let mut used = Vec::new();
    for part in &query.parts {
        let table = part.table.as_str();
        let bad = |message: String| bad(Some(table), message);
        if app.table(table).is_none() {
            problems.push(bad(if app.local_tables.iter().any(|t| t.name == table) {
                "is a local table, which never syncs".into()
            } else {
                "is not a synced table of this app".into()
            }));
        } else if !first_time(&mut tables, table) {
            problems.push(bad(
                "is listed twice: a query has at most one part per table (join the conditions with OR)"
                    .into(),
            ));
        }
        check_part_condition(&part.condition, &declared, &mut used, app, &bad, problems);
    }
    #[cfg(feature = "sql-checks")]
    for param in &query.params {
        if param.name != USER_ID_PARAM && !used.contains(&param.name) {
            problems.push(bad(
                None,
                format!("declares parameter `{}` but no part uses it", param.name),
            ));
        }
    }
}

/// The tables a statement names after `INTO`, `UPDATE`, `FROM` and `JOIN`,
/// minus the names of its own common table expressions and table-valued
/// functions (`FROM json_each(…)`). A shallow reading: tables after a comma in
/// a `FROM` list are not seen here, and are checked when the engine prepares
/// the statement.
#[cfg(feature = "sql-checks")]
fn referenced_tables(tokens: &[Token]) -> Vec<String> {
    let mut ctes = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        // `name AS (` introduces a common table expression.
        if t.kind.is_word("as") && next_is(tokens, i, '(') && i > 0 {
            if let Some(name) = tokens[i - 1].kind.identifier() {
                ctes.push(name);
            }
        }
    }
    let mut tables = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let after_from = t.kind.is_word("from") || t.kind.is_word("join");
        if !(after_from || t.kind.is_word("into") || t.kind.is_word("update")) {
            continue;
        }
        // `UPDATE OR IGNORE t`, `INSERT OR REPLACE INTO t`.
        let mut j = i + 1;
        if tokens.get(j).is_some_and(|t| t.kind.is_word("or")) {
            j += 2;
        }
        let Some(next) = tokens.get(j) else { continue };
        let Some(name) = next.kind.identifier() else {
            continue;
        };
        // `DO UPDATE SET` names no table; `FROM f(…)` is a function.
        if next.kind.is_word("set") || (after_from && next_is(tokens, j, '(')) {
            continue;
        }
        if !ctes.contains(&name) {
            tables.push(name);
        }
    }
    tables
}

/// Adds `item` to `seen` unless it is there; returns whether it was new. A
/// `Vec`: an app has tens of names, and this code also runs in the wasm, where
/// each B-tree instantiation costs kilobytes.
fn first_time<T: PartialEq>(seen: &mut Vec<T>, item: T) -> bool {
    let new = !seen.contains(&item);
    if new {
        seen.push(item);
    }
    new
}

/// The SQL of a query part's `where` (see [`check_query`]): parameters
/// declared, one expression, nothing that makes a row's membership depend on
/// other rows, no ferrydb or local tables. Only the server runs parts, and
/// only with `sql-checks` is this compiled (the SDK leaves it out).
#[cfg(feature = "sql-checks")]
fn check_part_condition(
    condition: &str,
    declared: &[&str],
    used: &mut Vec<String>,
    app: &AppDefinition,
    bad: &dyn Fn(String) -> Problem,
    problems: &mut Vec<Problem>,
) {
    let tokens = match tokenize(condition) {
        Ok(t) if t.is_empty() => {
            problems.push(bad("`where` is empty (write `true` for every row)".into()));
            return;
        }
        Ok(t) => t,
        Err(e) => {
            problems.push(bad(e.to_string()));
            return;
        }
    };
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match &token.kind {
            TokenKind::Punct('(') => depth += 1,
            TokenKind::Punct(')') => depth = depth.saturating_sub(1),
            TokenKind::Punct(';') => {
                problems.push(bad("`where` must be one expression, without `;`".into()))
            }
            TokenKind::Param(p) => {
                if p != USER_ID_PARAM && !declared.contains(&p.as_str()) {
                    problems.push(bad(format!(
                        "uses parameter `:{p}`, which the query does not declare"
                    )));
                }
                first_time(used, p.clone());
            }
            k if depth == 0 => {
                let word = k.identifier().filter(|_| matches!(k, TokenKind::Word(_)));
                let clause = match word.as_deref() {
                    Some(w @ ("limit" | "offset")) => Some(w.to_ascii_uppercase()),
                    Some("order") if tokens.get(i + 1).is_some_and(|t| t.kind.is_word("by")) => {
                        Some("ORDER BY".into())
                    }
                    Some("group") if tokens.get(i + 1).is_some_and(|t| t.kind.is_word("by")) => {
                        Some("GROUP BY".into())
                    }
                    Some(f) if AGGREGATES.contains(&f) && next_is(&tokens, i, '(') => {
                        Some(format!("the aggregate `{f}`"))
                    }
                    _ => None,
                };
                if let Some(clause) = clause {
                    problems.push(bad(format!(
                        "{clause} is only allowed inside a subquery: whether a row is selected \
                             must not depend on other rows' order or count"
                    )));
                }
            }
            _ => {}
        }
    }
    // Checked on every name, not only after FROM: `FROM a, _ferry_x`
    // hides the second table from `referenced_tables`.
    for ident in tokens.iter().filter_map(|t| t.kind.identifier()) {
        if ident.to_ascii_lowercase().starts_with("_ferry") {
            problems.push(bad(format!(
                "names `{ident}`: names starting with `_ferry` belong to ferrydb"
            )));
        } else if app.local_tables.iter().any(|t| t.name == ident) {
            problems.push(bad(format!(
                "names local table `{ident}`: queries run on the server, which has none"
            )));
        }
    }
    for named in referenced_tables(&tokens) {
        if app.table(&named).is_none() && !app.local_tables.iter().any(|t| t.name == named) {
            problems.push(bad(format!(
                "refers to unknown table `{named}` (subqueries may read synced tables only)"
            )));
        }
    }
}

#[cfg(not(feature = "sql-checks"))]
fn check_part_condition(
    _: &str,
    _: &[&str],
    _: &mut Vec<String>,
    _: &AppDefinition,
    _: &dyn Fn(String) -> Problem,
    _: &mut Vec<Problem>,
) {
}
