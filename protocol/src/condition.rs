//! Reads a SQL condition about one row that may look at other synced tables
//! through `EXISTS` / `IN` subqueries (joins allowed): a write rule, or a
//! query part's `where`. It finds the tables the condition reads and the
//! names it gives them, and checks that every name in it is one the app
//! defines for the server: synced tables and their columns, never local
//! tables (they exist on clients only) nor ferrydb's own `_ferry…` tables.
//!
//! A shallow reading of tokens, not a parser: what it cannot place (a name
//! that is neither a keyword, a function, a table, an alias nor a column)
//! is refused, so a table hidden from it (`FROM a, b`, `JOIN … ON …, c`)
//! ends as a precise complaint rather than as a table nobody checked. The
//! server's SQL engine stays the final judge of the rest of the syntax.

use crate::app::{AppDefinition, Column, Table};
use crate::sql::{Token, TokenKind};

/// One thing wrong with a condition; the caller says whose condition it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Finding {
    /// An unqualified name that is no column of any table the condition reads.
    UnknownColumn(String),
    /// Anything else, as a sentence fragment ("reads local table `drafts`…").
    Bad(String),
}

/// Words a subquery is written with (besides the expression words the
/// caller allows).
#[rustfmt::skip]
const SUBQUERY_WORDS: &[&str] = &[
    "select", "from", "where", "exists", "join", "inner", "left", "right", "full", "outer",
    "cross", "natural", "on", "using", "group", "by", "having", "order", "asc", "desc", "limit",
    "offset", "union", "all", "except", "intersect", "any", "some", "nulls", "first", "last",
];

/// Words that end a `FROM` list (at the depth of its `FROM`).
#[rustfmt::skip]
const END_OF_FROM: &[&str] = &[
    "where", "group", "having", "order", "limit", "offset", "union", "except", "intersect",
    "window", "select",
];

/// Words that may follow a table in a `FROM` list without being its alias.
#[rustfmt::skip]
const NOT_ALIAS: &[&str] = &[
    "on", "using", "join", "inner", "left", "right", "full", "outer", "cross", "natural", "as",
];

/// A table the condition reads, as it appears in a `FROM` list or after
/// `JOIN`, and the name it is known by in the condition.
struct Source<'a> {
    /// The synced table, or `None` for a table already reported (its
    /// columns are not checked, so one mistake is reported once).
    table: Option<&'a Table>,
    /// The table's name as written, and its alias.
    names: Vec<String>,
}

/// Checks `tokens` (a condition about a row of `own`), with `keywords` the
/// expression words the caller allows.
pub(crate) fn check(
    app: &AppDefinition,
    own: &Table,
    tokens: &[Token],
    keywords: &[&str],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for token in tokens {
        match &token.kind {
            TokenKind::Punct(';') => findings.push(Finding::Bad("must be one expression".into())),
            k if k.is_word("with") => findings.push(Finding::Bad(
                "common table expressions (`WITH`) are not allowed".into(),
            )),
            k => {
                // Every name, wherever it stands: a table after a comma or
                // inside a function's arguments is still refused.
                if let Some(name) = k.identifier().filter(|n| is_ferrys(n)) {
                    findings.push(Finding::Bad(format!(
                        "names `{name}`: names starting with `_ferry` belong to ferrydb"
                    )));
                }
            }
        }
    }
    let (sources, placed) = sources(app, tokens, &mut findings);
    let known = |name: &str| -> Option<Option<&[Column]>> {
        if name == own.name {
            return Some(Some(&own.columns));
        }
        sources
            .iter()
            .find(|s| s.names.iter().any(|n| n == name))
            .map(|s| s.table.map(|t| t.columns.as_slice()))
    };
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        i += 1;
        let Some(name) = token.kind.identifier() else {
            continue;
        };
        let is_keyword = matches!(token.kind, TokenKind::Word(_))
            && (keywords.contains(&name.as_str()) || SUBQUERY_WORDS.contains(&name.as_str()));
        let is_call = punct_at(tokens, i, '(');
        // `CAST(x AS type)`, `SELECT x AS name`, `FROM t AS alias`.
        let is_named = i >= 2 && tokens[i - 2].kind.is_word("as");
        if placed[i - 1] || is_keyword || is_call || is_named || is_ferrys(&name) {
            continue;
        }
        if punct_at(tokens, i, '.') {
            // `qualifier.column`
            let column = tokens.get(i + 1).and_then(|t| t.kind.identifier());
            i += 2;
            match (known(&name), column) {
                (None, _) => {
                    findings.push(Finding::Bad(format!("unknown table or alias `{name}`")))
                }
                (Some(Some(columns)), Some(column))
                    if !columns.iter().any(|c| c.name == column) =>
                {
                    findings.push(Finding::Bad(format!(
                        "refers to unknown column `{name}.{column}`"
                    )))
                }
                _ => {}
            }
            continue;
        }
        let is_column = |columns: &[Column]| columns.iter().any(|c| c.name == name);
        let anywhere = is_column(&own.columns)
            || sources
                .iter()
                .any(|s| s.table.is_none_or(|t| is_column(&t.columns)));
        if !anywhere {
            findings.push(Finding::UnknownColumn(name));
        }
    }
    findings
}

/// The tables `tokens` read in `FROM` lists and joins, and which tokens name
/// a table or an alias there. A table the app does not sync is reported.
fn sources<'a>(
    app: &'a AppDefinition,
    tokens: &[Token],
    findings: &mut Vec<Finding>,
) -> (Vec<Source<'a>>, Vec<bool>) {
    let mut sources = Vec::new();
    let mut placed = vec![false; tokens.len()];
    // Per parenthesis depth: whether a `SELECT` there awaits its `FROM`
    // (a `FROM` elsewhere is `IS DISTINCT FROM` or `extract(… FROM …)`),
    // and whether a `FROM` list is open there.
    let mut select_open = vec![false];
    let mut from_open = vec![false];
    for (i, token) in tokens.iter().enumerate() {
        let depth = from_open.len() - 1;
        let starts_item = match &token.kind {
            TokenKind::Punct('(') => {
                select_open.push(false);
                from_open.push(false);
                false
            }
            TokenKind::Punct(')') => {
                if from_open.len() > 1 {
                    select_open.pop();
                    from_open.pop();
                }
                false
            }
            TokenKind::Punct(',') => from_open[depth],
            k if k.is_word("select") => {
                select_open[depth] = true;
                from_open[depth] = false;
                false
            }
            k if k.is_word("from") && select_open[depth] => {
                select_open[depth] = false;
                from_open[depth] = true;
                true
            }
            k if k.is_word("join") => true,
            k if END_OF_FROM.iter().any(|w| k.is_word(w)) => {
                from_open[depth] = false;
                false
            }
            _ => false,
        };
        if starts_item {
            if let Some(source) = source_at(app, tokens, i + 1, &mut placed, findings) {
                sources.push(source);
            }
        }
    }
    (sources, placed)
}

/// The `FROM` item that starts at token `at`: `table [AS] [alias]`, or
/// `None` for a parenthesised subquery (its own `FROM` is read when the loop
/// reaches it). A table function is refused: it is no synced table.
fn source_at<'a>(
    app: &'a AppDefinition,
    tokens: &[Token],
    at: usize,
    placed: &mut [bool],
    findings: &mut Vec<Finding>,
) -> Option<Source<'a>> {
    let name = tokens.get(at)?.kind.identifier()?;
    placed[at] = true;
    if punct_at(tokens, at + 1, '.') {
        if let Some(placed) = placed.get_mut(at + 2) {
            *placed = true;
        }
        let table = tokens.get(at + 2).and_then(|t| t.kind.identifier());
        findings.push(Finding::Bad(format!(
            "names `{name}.{}`: name tables without a schema",
            table.unwrap_or_default()
        )));
        return None;
    }
    let mut source = Source {
        table: None,
        names: vec![name.clone()],
    };
    if punct_at(tokens, at + 1, '(') {
        findings.push(Finding::Bad(format!(
            "reads from function `{name}(…)`: a condition reads synced tables only"
        )));
        return Some(source);
    }
    source.table = app.table(&name);
    if source.table.is_none() && !is_ferrys(&name) {
        findings.push(Finding::Bad(
            if app.local_tables.iter().any(|t| t.name == name) {
                format!(
                    "reads local table `{name}`, which exists on clients only (the server \
                     checks this condition)"
                )
            } else {
                format!("reads unknown table `{name}`")
            },
        ));
    }
    let mut next = at + 1;
    if tokens.get(next).is_some_and(|t| t.kind.is_word("as")) {
        next += 1;
    }
    if let Some(alias) = tokens.get(next).and_then(|t| match &t.kind {
        TokenKind::Word(w)
            if NOT_ALIAS
                .iter()
                .chain(END_OF_FROM)
                .any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            None
        }
        k => k.identifier(),
    }) {
        placed[next] = true;
        source.names.push(alias);
    }
    Some(source)
}

/// Whether `name` is in ferrydb's namespace. Case-blind: SQLite matches
/// even quoted names without regard to case.
fn is_ferrys(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("_ferry")
}

fn punct_at(tokens: &[Token], i: usize, c: char) -> bool {
    matches!(tokens.get(i), Some(Token { kind: TokenKind::Punct(p), .. }) if *p == c)
}
