//! Which client schema versions a server serves, decided once for every
//! store. A server on version N serves clients on N, and clients on every
//! earlier version M whose app definition its store recorded (a server that
//! served M did) when N's tables extend M's additively
//! ([`ferrydb_protocol::evolve`]): such a client pulls the tables and columns
//! M defines, and its pushes run M's mutators, whose statements name only
//! columns that still exist (the columns N added are nullable, so M's
//! inserts leave them NULL). Every other version is answered with
//! [`SchemaMismatch::between`]: `updateApp` for an older client, `retryLater`
//! for a newer one (a deploy in progress).

use super::pull::TableShape;
use ferrydb_protocol::evolve::breaking_changes;
use ferrydb_protocol::{AppDefinition, SchemaMismatch};
use std::collections::BTreeMap;

/// One app definition the server serves, with its tables as pulls see them.
#[derive(Clone, Debug)]
pub struct Served {
    pub app: AppDefinition,
    /// The tables this version's clients know, each with the store's index
    /// of the table and only the columns the version defines.
    pub shapes: Vec<TableShape>,
}

#[derive(Clone, Debug)]
pub struct Versions {
    current: u32,
    served: BTreeMap<u32, Served>,
}

impl Versions {
    /// The server's own `app`, and the earlier definitions of `recorded`
    /// that it can serve (later ones and its own version are skipped).
    pub fn new(app: AppDefinition, recorded: impl IntoIterator<Item = AppDefinition>) -> Self {
        let current = app.version;
        let mut served = BTreeMap::new();
        for old in recorded {
            if old.version >= current {
                continue;
            }
            let breaking = breaking_changes(&old.tables, &app.tables);
            if !breaking.is_empty() {
                tracing::info!(
                    version = old.version,
                    why = breaking.join("; "),
                    "clients of this schema version must update their app"
                );
                continue;
            }
            let shapes = TableShape::projected(&old, &app);
            served.insert(old.version, Served { app: old, shapes });
        }
        let shapes = TableShape::projected(&app, &app);
        served.insert(current, Served { app, shapes });
        Versions { current, served }
    }

    /// What serves a client on `schema_version`, or the answer it gets.
    pub fn serve(&self, schema_version: u32) -> Result<&Served, SchemaMismatch> {
        match self.served.get(&schema_version) {
            Some(served) => Ok(served),
            None => Err(SchemaMismatch::between(schema_version, self.current)
                .expect("the current version is served")),
        }
    }

    /// The server's own definition.
    pub fn current(&self) -> &Served {
        &self.served[&self.current]
    }

    /// Every definition served, the server's own last.
    pub fn all(&self) -> impl Iterator<Item = &Served> {
        self.served.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrydb_protocol::MismatchAction;

    fn app(version: u32, columns: &str) -> AppDefinition {
        AppDefinition::from_json(&format!(
            r#"{{"version": {version}, "tables": [{{"name": "lists", "columns": [{{"name": "id", "type": "text"}}{columns}],
                "primaryKey": ["id"], "access": {{"read": "true", "write": "true"}}}}], "mutators": []}}"#
        ))
        .unwrap()
    }

    #[test]
    fn an_older_version_is_served_when_the_change_since_is_additive() {
        let v1 = app(1, r#", {"name": "name", "type": "text"}"#);
        let v2 = app(
            2,
            r#", {"name": "name", "type": "text"}, {"name": "color", "type": "text", "nullable": true}"#,
        );
        let v3 = app(
            3,
            r#", {"name": "color", "type": "text", "nullable": true}"#,
        );
        let versions = Versions::new(v2.clone(), [v1.clone(), v3.clone()]);
        let old = versions.serve(1).unwrap();
        let columns: Vec<&str> = old.shapes[0]
            .columns
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(columns, ["id", "name"]);
        assert_eq!(versions.serve(2).unwrap().shapes[0].columns.len(), 3);
        assert_eq!(
            versions.serve(3).unwrap_err().action,
            MismatchAction::RetryLater
        );
        // v3 dropped `name`: a v1 or v2 client cannot be served by it.
        let versions = Versions::new(v3, [v1, v2]);
        assert_eq!(
            versions.serve(1).unwrap_err().action,
            MismatchAction::UpdateApp
        );
        assert_eq!(
            versions.serve(2).unwrap_err().action,
            MismatchAction::UpdateApp
        );
    }
}
