//! How one app definition's synced tables relate to an earlier one's, the
//! rule the server applies on start and when it decides which client
//! versions it can serve. "Additive" means what the SDK's own replica
//! migration means by it: new tables, new nullable columns. Such a change
//! keeps every row, and a client of the earlier definition still reads and
//! writes the same columns; anything else (a table or column dropped, a
//! type changed, a column made NOT NULL or added NOT NULL, a key changed)
//! is breaking.

use crate::{Column, Table};

/// What became of one synced table.
#[derive(Clone, Debug, PartialEq)]
pub enum TableChange<'a> {
    Same,
    /// Not in the earlier definition.
    New,
    /// The same columns and key, plus these nullable columns, and perhaps
    /// other access rules (which take effect for every row at once).
    Additive {
        added: Vec<&'a Column>,
        rules_changed: bool,
    },
    /// Why the table cannot be changed in place, one reason per entry.
    Breaking(Vec<String>),
}

/// How `new` differs from `old` (`None`: it is a new table).
pub fn table_change<'a>(old: Option<&Table>, new: &'a Table) -> TableChange<'a> {
    let Some(old) = old else {
        return TableChange::New;
    };
    let t = &new.name;
    let mut breaking = Vec::new();
    if old.primary_key != new.primary_key {
        breaking.push(format!(
            "the primary key of `{t}` changed from ({}) to ({})",
            old.primary_key.join(", "),
            new.primary_key.join(", ")
        ));
    }
    for before in &old.columns {
        match new.column(&before.name) {
            None => breaking.push(format!("column `{t}.{}` was dropped", before.name)),
            Some(after) if after.ty != before.ty => breaking.push(format!(
                "column `{t}.{}` changed type from {} to {}",
                before.name,
                before.ty.as_str(),
                after.ty.as_str()
            )),
            Some(after) if before.nullable && !after.nullable => breaking.push(format!(
                "column `{t}.{}` is no longer nullable",
                before.name
            )),
            Some(_) => {}
        }
    }
    let added: Vec<&Column> = new
        .columns
        .iter()
        .filter(|c| old.column(&c.name).is_none())
        .collect();
    for column in added.iter().filter(|c| !c.nullable) {
        breaking.push(format!(
            "new column `{t}.{}` is NOT NULL (existing rows have no value for it; \
             declare it nullable to add it in place)",
            column.name
        ));
    }
    if !breaking.is_empty() {
        return TableChange::Breaking(breaking);
    }
    let rules_changed = old.access != new.access;
    if added.is_empty() && !rules_changed {
        return TableChange::Same;
    }
    TableChange::Additive {
        added,
        rules_changed,
    }
}

/// Every reason the tables `new` cannot replace `old` in place (empty when
/// the change is additive): breaking table changes and dropped tables.
pub fn breaking_changes(old: &[Table], new: &[Table]) -> Vec<String> {
    let mut reasons: Vec<String> = new
        .iter()
        .flat_map(
            |table| match table_change(old.iter().find(|t| t.name == table.name), table) {
                TableChange::Breaking(reasons) => reasons,
                _ => vec![],
            },
        )
        .collect();
    reasons.extend(
        old.iter()
            .filter(|t| !new.iter().any(|n| n.name == t.name))
            .map(|t| format!("table `{}` was dropped", t.name)),
    );
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AppDefinition;

    fn tables(columns: &str) -> Vec<Table> {
        AppDefinition::from_json(&format!(
            r#"{{"version": 1, "tables": [{{"name": "lists", "columns": [{{"name": "id", "type": "text"}}{columns}],
                "primaryKey": ["id"], "access": {{"read": "true", "write": "true"}}}}], "mutators": []}}"#
        ))
        .unwrap()
        .tables
    }

    #[test]
    fn a_new_nullable_column_is_additive_and_anything_else_is_named() {
        let v1 = tables(r#", {"name": "name", "type": "text"}"#);
        let v2 = tables(
            r#", {"name": "name", "type": "text"}, {"name": "color", "type": "text", "nullable": true}"#,
        );
        assert!(matches!(
            table_change(Some(&v1[0]), &v2[0]),
            TableChange::Additive { added, rules_changed: false } if added[0].name == "color"
        ));
        assert_eq!(table_change(Some(&v1[0]), &v1[0]), TableChange::Same);
        assert_eq!(table_change(None, &v1[0]), TableChange::New);
        assert!(breaking_changes(&v1, &v2).is_empty());
        assert_eq!(
            breaking_changes(&v2, &v1),
            ["column `lists.color` was dropped"]
        );
        let retyped = tables(r#", {"name": "name", "type": "integer"}"#);
        assert_eq!(
            breaking_changes(&v1, &retyped),
            ["column `lists.name` changed type from text to integer"]
        );
        let not_null =
            tables(r#", {"name": "name", "type": "text"}, {"name": "n", "type": "integer"}"#);
        assert!(breaking_changes(&v1, &not_null)[0].contains("`lists.n` is NOT NULL"));
        assert_eq!(breaking_changes(&v1, &[]), ["table `lists` was dropped"]);
    }
}
