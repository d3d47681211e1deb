//! `POST pull`: what a client group lacks, from its cookie.
//!
//! - No cookie: a full sync of the current state, in pages of at most the
//!   page size, in table then key order; the first page starts with `clear`.
//!   Pages carry a [`Cursor`]; the last page's cookie is the version the
//!   sync started at, so the next pull sends whatever changed meanwhile
//!   (rows sent twice are harmless).
//! - A version: every row or tombstone changed after it, a `put` when the
//!   user may read the row now, else a `del` of its key.
//! - A cookie this server could not have written (from its future, or a
//!   cursor it would not make): `resetReplica`, and the client starts over.

use super::cursor::{key_value, Cursor};
use super::push::{foreign, Who};
use super::versions::Versions;
use super::{Result, StoreError};
use ferrydb_protocol::{
    AppDefinition, ColumnType, Cookie, MismatchAction, PatchOp, PullOk, PullRequest, PullResponse,
    Row, SchemaMismatch, Value,
};
use futures_util::future::{try_join, try_join_all};
use std::collections::BTreeMap;
use std::future::Future;

/// A synced table as a client version's pulls see it: its columns and key
/// columns, with types.
#[derive(Clone, Debug)]
pub struct TableShape {
    pub name: String,
    /// Which of the store's tables (the server's app's) it is.
    pub index: usize,
    pub columns: Vec<(String, ColumnType)>,
    pub key: Vec<(String, ColumnType)>,
    /// The store's rows have columns this version does not know (a later
    /// version added them): they are left out of what it is sent.
    pub narrower: bool,
}

impl TableShape {
    /// The tables of `version` as the store of the server's `app` holds
    /// them: `version`'s tables are all among `app`'s (see `Versions`).
    pub fn projected(version: &AppDefinition, app: &AppDefinition) -> Vec<TableShape> {
        version
            .tables
            .iter()
            .map(|table| {
                let index = app
                    .tables
                    .iter()
                    .position(|t| t.name == table.name)
                    .expect("a served version's table is the server's");
                let typed =
                    |name: &String| (name.clone(), table.column(name).expect("key column").ty);
                TableShape {
                    name: table.name.clone(),
                    index,
                    columns: table
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.ty))
                        .collect(),
                    key: table.primary_key.iter().map(typed).collect(),
                    narrower: table.columns.len() < app.tables[index].columns.len(),
                }
            })
            .collect()
    }

    /// A row of the store as this version knows it.
    pub(super) fn row(&self, mut row: Row) -> Row {
        if self.narrower {
            row.retain(|name, _| self.columns.iter().any(|(c, _)| c == name));
        }
        row
    }
}

/// One entry of a table's change log, as the user may see it now.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The row as it is, which the user may read.
    Put(Row),
    /// The key of a row that is gone or that the user may not read.
    Del(Row),
}

/// Up to `limit` rows of table `table` that `user_id` may read, in key
/// order, after the key `after` (from the first row when `None`).
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    pub table: usize,
    pub user_id: &'a str,
    pub after: Option<&'a [Value]>,
    pub limit: usize,
}

/// What the core asks of a store inside one pull's snapshot.
pub trait PullTx {
    /// The current version, and whether the client or its group belongs to
    /// another user.
    fn state(&self, who: Who<'_>) -> impl Future<Output = Result<(i64, bool)>>;

    /// Every row or tombstone of table `table` with a version after `since`,
    /// in version order, with the read rule applied for `user_id`.
    fn changes(
        &self,
        table: usize,
        user_id: &str,
        since: i64,
    ) -> impl Future<Output = Result<Vec<Change>>>;

    /// One page of a table (see [`Page`]).
    fn page(&self, page: Page<'_>) -> impl Future<Output = Result<Vec<Row>>>;

    /// The clients of the group whose `lastMutationID` moved after version
    /// `since`, with its value.
    fn changed_clients(
        &self,
        group_id: &str,
        since: i64,
    ) -> impl Future<Output = Result<BTreeMap<String, u64>>>;
}

/// The answer that makes a client rebuild its replica from a full pull.
pub fn reset(schema_version: u32) -> PullResponse {
    PullResponse::SchemaMismatch(SchemaMismatch {
        server_schema_version: schema_version,
        action: MismatchAction::ResetReplica,
    })
}

/// Answers a pull of `user_id` from the store's snapshot `tx`, with the
/// tables and columns of the client's schema version.
pub async fn pull<T: PullTx>(
    tx: &T,
    versions: &Versions,
    page_size: usize,
    user_id: &str,
    request: &PullRequest,
) -> Result<PullResponse> {
    let served = match versions.serve(request.schema_version) {
        Ok(served) => served,
        Err(m) => return Ok(PullResponse::SchemaMismatch(m)),
    };
    let (tables, schema_version) = (&served.shapes[..], served.app.version);
    let who = Who {
        user_id,
        client_id: &request.client_id,
        group_id: &request.client_group_id,
    };
    let (version, foreign_client) = tx.state(who).await?;
    if foreign_client {
        return Err(foreign(who));
    }
    let full = |cursor: Cursor| async move {
        let page = full_page(tx, tables, page_size, user_id, cursor);
        try_join(page, tx.changed_clients(who.group_id, -1)).await
    };
    let ((patch, cookie, more), changed) = match &request.cookie {
        Some(Cookie::Integer(since)) if *since > version => return Ok(reset(schema_version)),
        Some(Cookie::Integer(since)) => {
            let changes = try_join_all(tables.iter().map(|t| tx.changes(t.index, user_id, *since)));
            let (changes, changed) =
                try_join(changes, tx.changed_clients(who.group_id, *since)).await?;
            let patch = tables
                .iter()
                .zip(changes)
                .flat_map(|(table, changes)| {
                    changes.into_iter().map(|change| match change {
                        Change::Put(row) => PatchOp::Put {
                            table: table.name.clone(),
                            row: table.row(row),
                        },
                        Change::Del(key) => PatchOp::Del {
                            table: table.name.clone(),
                            key,
                        },
                    })
                })
                .collect();
            ((patch, Cookie::Integer(version), false), changed)
        }
        None => {
            full(Cursor {
                at: version,
                table: 0,
                after: vec![],
            })
            .await?
        }
        Some(Cookie::Text(text)) => match Cursor::parse(text, tables) {
            Some(cursor) if cursor.at <= version => full(cursor).await?,
            _ => return Ok(reset(schema_version)),
        },
    };
    Ok(PullResponse::Ok(PullOk {
        cookie,
        last_mutation_id_changes: changed,
        patch,
        more,
        subscriptions: Vec::new(),
    }))
}

/// One page of the full sync at `from`: the rest of its table after its
/// key, then the following tables, until the page is full.
async fn full_page<T: PullTx>(
    tx: &T,
    tables: &[TableShape],
    page_size: usize,
    user_id: &str,
    from: Cursor,
) -> Result<(Vec<PatchOp>, Cookie, bool)> {
    let Cursor {
        at,
        mut table,
        mut after,
    } = from;
    let mut patch = if after.is_empty() && table == 0 {
        vec![PatchOp::Clear]
    } else {
        vec![]
    };
    let mut room = page_size.max(1);
    while table < tables.len() && room > 0 {
        let shape = &tables[table];
        let resume = (!after.is_empty()).then_some(after.as_slice());
        let rows = tx
            .page(Page {
                table: shape.index,
                user_id,
                after: resume,
                limit: room,
            })
            .await?;
        room -= rows.len().min(room);
        if room == 0 {
            let last = rows.last().expect("a full page has rows");
            after = shape
                .key
                .iter()
                .map(|(name, ty)| last.get(name).and_then(|json| key_value(*ty, json)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    StoreError::Internal(format!(
                        "a row of `{}` has a key no cursor can hold",
                        shape.name
                    ))
                })?;
        } else {
            table += 1;
            after = vec![];
        }
        patch.extend(rows.into_iter().map(|row| PatchOp::Put {
            table: shape.name.clone(),
            row: shape.row(row),
        }));
    }
    if table >= tables.len() {
        return Ok((patch, Cookie::Integer(at), false));
    }
    let cursor = Cursor { at, table, after };
    Ok((patch, Cookie::Text(cursor.render()), true))
}
