//! Loading an app definition: the sample loads, and each kind of mistake is
//! reported precisely (which table, column, rule, mutator, parameter).

use ferrydb_protocol::sql::Placeholders;
use ferrydb_protocol::{AppDefinition, AppError, Problem};
use serde_json::{json, Value as Json};

fn sample() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/app.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn problems(app: Json) -> Vec<Problem> {
    match AppDefinition::from_json(&app.to_string()) {
        Err(AppError::Invalid(p)) => p,
        other => panic!("expected problems, got {other:?}"),
    }
}

/// Edits the sample with `edit` and returns what loading it reports.
fn problems_after(edit: impl FnOnce(&mut Json)) -> Vec<Problem> {
    let mut app = sample();
    edit(&mut app);
    problems(app)
}

fn table<'a>(app: &'a mut Json, name: &str) -> &'a mut Json {
    let tables = app["tables"].as_array_mut().unwrap();
    tables.iter_mut().find(|t| t["name"] == name).unwrap()
}

fn mutator<'a>(app: &'a mut Json, name: &str) -> &'a mut Json {
    let mutators = app["mutators"].as_array_mut().unwrap();
    mutators.iter_mut().find(|m| m["name"] == name).unwrap()
}

#[test]
fn the_sample_app_loads() {
    let app = AppDefinition::from_json(&sample().to_string()).unwrap();
    assert_eq!(app.tables.len(), 4);
    assert_eq!(app.local_tables[0].name, "drafts");
    let increment = app.mutator("increment").unwrap();
    let rendered = increment.rendered(Placeholders::Dollar);
    assert!(
        rendered[0].0.contains("VALUES ($1, $2)"),
        "{}",
        rendered[0].0
    );
    assert_eq!(rendered[0].1, [0, 1], "id, then by");
    assert_eq!(app.mutator("deleteList").unwrap().statements().len(), 3);
}

#[test]
fn json_errors_say_where() {
    // Not JSON: serde_json says where in the text.
    let err = AppDefinition::from_json("{\"version\": 1,\n \"tables\": [}").unwrap_err();
    assert!(matches!(err, AppError::Json(_)));
    assert!(err.to_string().contains("line 2"), "{err}");
    // JSON of the wrong shape: the error names the field.
    let err =
        AppDefinition::from_json("{\"version\": 1, \"tables\": [{\"name\": 1}]}").unwrap_err();
    assert!(matches!(err, AppError::Shape(_)));
    assert!(
        err.to_string()
            .contains("tables[0].name: expected a string, found a number"),
        "{err}"
    );
    // Unknown fields are typos, not extensions.
    let mut app = sample();
    app["mutatorz"] = json!([]);
    let err = AppDefinition::from_json(&app.to_string()).unwrap_err();
    assert!(err.to_string().contains("mutatorz"), "{err}");
    // A table without access rules is refused rather than made public.
    let mut app = sample();
    table(&mut app, "todos")
        .as_object_mut()
        .unwrap()
        .remove("access");
    let err = AppDefinition::from_json(&app.to_string()).unwrap_err();
    assert!(err.to_string().contains("access"), "{err}");
}

#[test]
fn rules_may_only_name_the_tables_own_columns() {
    let found = problems_after(|app| {
        table(app, "todos")["access"]["read"] = json!("ownr = :user_id OR lower(title) = 'x'");
    });
    assert_eq!(
        found,
        [Problem::UnknownColumn {
            table: "todos".into(),
            column: "ownr".into(),
            context: "read rule"
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "read rule of table `todos` refers to unknown column `ownr`"
    );
}

#[test]
fn rules_may_only_use_user_id_and_no_subqueries() {
    let found = problems_after(|app| {
        table(app, "lists")["access"]["write"] = json!("owner = :team");
        table(app, "todos")["access"]["read"] =
            json!("list_id IN (SELECT id FROM lists WHERE owner = :user_id)");
    });
    assert!(
        matches!(&found[0], Problem::BadRule { table, rule: "write", message }
        if table == "lists" && message.contains(":team"))
    );
    assert!(found.iter().any(
        |p| matches!(p, Problem::BadRule { table, rule: "read", message }
        if table == "todos" && message.contains("subqueries"))
    ));
}

/// The messages about `table`'s write rule.
fn write_rule_messages(found: &[Problem], of: &str) -> Vec<String> {
    found
        .iter()
        .filter_map(|p| match p {
            Problem::BadRule {
                table,
                rule: "write",
                message,
            } if table == of => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn write_rules_may_read_synced_tables_through_subqueries() {
    let collab = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/collab.json");
    AppDefinition::from_json(&std::fs::read_to_string(collab).unwrap()).unwrap();
    let mut app = sample();
    for (table_name, rule) in [
        (
            "todos",
            "owner = :user_id OR EXISTS (SELECT 1 FROM lists l JOIN todo_tags t \
             ON t.todo_id = todos.id AND t.owner = l.owner WHERE l.id = todos.list_id \
             AND l.owner = :user_id)",
        ),
        (
            "lists",
            "id IN (SELECT list_id FROM todos, todo_tags AS tt WHERE tt.todo_id = todos.id \
             AND tt.owner IS DISTINCT FROM :user_id) AND lists.owner IS NOT NULL",
        ),
        (
            "todo_tags",
            "owner = :user_id AND (SELECT count(*) FROM counters) < 10",
        ),
    ] {
        table(&mut app, table_name)["access"]["write"] = json!(rule);
    }
    AppDefinition::from_json(&app.to_string()).unwrap();
}

#[test]
fn a_write_rule_may_not_read_local_ferrydb_or_unknown_tables() {
    let found = problems_after(|app| {
        // Behind a comma, after a join condition, and in a nested subquery.
        table(app, "todos")["access"]["write"] =
            json!("EXISTS (SELECT 1 FROM lists l, drafts d WHERE l.id = todos.list_id)");
        table(app, "lists")["access"]["write"] = json!(
            "EXISTS (SELECT 1 FROM todos t JOIN counters c ON c.id = t.id, _ferry_clients x \
             WHERE x.user_id = :user_id)"
        );
        // SQLite matches quoted names without regard to case.
        table(app, "todos")["access"]["read"] = json!("\"_FERRY_version\" = 1");
        table(app, "todo_tags")["access"]["write"] =
            json!("todo_id IN (SELECT id FROM todos WHERE list_id IN (SELECT id FROM listz))");
        table(app, "counters")["access"]["write"] = json!("EXISTS (SELECT 1 FROM main.lists)");
    });
    assert_eq!(
        write_rule_messages(&found, "todos"),
        [
            "reads local table `drafts`, which exists on clients only (the server checks this \
          condition)"
        ],
        "{found:#?}"
    );
    assert_eq!(
        write_rule_messages(&found, "lists"),
        ["names `_ferry_clients`: names starting with `_ferry` belong to ferrydb"],
        "{found:#?}"
    );
    assert_eq!(
        write_rule_messages(&found, "todo_tags"),
        ["reads unknown table `listz`"],
        "{found:#?}"
    );
    assert_eq!(
        write_rule_messages(&found, "counters"),
        ["names `main.lists`: name tables without a schema"],
        "{found:#?}"
    );
    assert_eq!(
        found[0].to_string(),
        "write rule of table `lists`: names `_ferry_clients`: names starting with `_ferry` \
         belong to ferrydb"
    );
    assert!(found.contains(&Problem::BadRule {
        table: "todos".into(),
        rule: "read",
        message: "names `_FERRY_version`: names starting with `_ferry` belong to ferrydb".into()
    }));
    assert_eq!(found.len(), 5, "{found:#?}");
}

#[test]
fn names_in_a_write_rules_subqueries_must_exist() {
    let found = problems_after(|app| {
        table(app, "todos")["access"]["write"] = json!(
            "EXISTS (SELECT 1 FROM lists l WHERE l.ownr = :user_id AND x.id = todos.list_id \
             AND nme = 'a')"
        );
        table(app, "lists")["access"]["write"] =
            json!("EXISTS (WITH l AS (SELECT 1) SELECT 1 FROM l)");
        table(app, "counters")["access"]["write"] = json!("EXISTS (SELECT 1 FROM json_each(id))");
    });
    assert_eq!(
        write_rule_messages(&found, "todos"),
        [
            "refers to unknown column `l.ownr`",
            "unknown table or alias `x`"
        ],
        "{found:#?}"
    );
    assert!(found.contains(&Problem::UnknownColumn {
        table: "todos".into(),
        column: "nme".into(),
        context: "write rule"
    }));
    assert!(write_rule_messages(&found, "lists")
        .contains(&"common table expressions (`WITH`) are not allowed".to_owned()));
    assert_eq!(
        write_rule_messages(&found, "counters"),
        ["reads from function `json_each(…)`: a condition reads synced tables only"],
        "{found:#?}"
    );
}

#[test]
fn mutator_params_must_be_declared_and_used() {
    let found = problems_after(|app| {
        let m = mutator(app, "renameTodo");
        m["params"] =
            json!([{ "name": "id", "type": "text" }, { "name": "unused", "type": "text" }]);
    });
    assert_eq!(
        found,
        [
            Problem::UndeclaredParam {
                mutator: "renameTodo".into(),
                param: "title".into()
            },
            Problem::UnusedParam {
                mutator: "renameTodo".into(),
                param: "unused".into()
            },
        ]
    );
    assert_eq!(
        found[0].to_string(),
        "mutator `renameTodo` uses parameter `:title` but does not declare it"
    );
}

#[test]
fn mutators_may_only_touch_known_synced_tables() {
    let found = problems_after(|app| {
        mutator(app, "renameTodo")["sql"] = json!("UPDATE todo SET title = :title WHERE id = :id");
        mutator(app, "toggleTodo")["sql"] = json!([
            "UPDATE todos SET done = NOT done WHERE id = :id",
            "DELETE FROM drafts WHERE id = :id"
        ]);
    });
    assert_eq!(
        found,
        [
            Problem::LocalTableInMutator {
                mutator: "toggleTodo".into(),
                table: "drafts".into()
            },
            Problem::UnknownTable {
                mutator: "renameTodo".into(),
                table: "todo".into()
            },
        ]
    );
}

#[test]
fn common_table_expressions_and_table_functions_are_not_tables() {
    let mut app = sample();
    mutator(&mut app, "renameTodo")["sql"] = json!(
        "WITH t AS (SELECT value FROM json_each('[1]')) UPDATE todos SET title = :title WHERE id = :id AND EXISTS (SELECT 1 FROM t)"
    );
    AppDefinition::from_json(&app.to_string()).unwrap();
}

#[test]
fn duplicates_are_refused() {
    let found = problems_after(|app| {
        let lists = table(app, "lists").clone();
        app["tables"].as_array_mut().unwrap().push(lists);
        app["localTables"][0]["name"] = json!("todos");
        let increment = mutator(app, "increment").clone();
        app["mutators"].as_array_mut().unwrap().push(increment);
        table(app, "counters")["columns"][1]["name"] = json!("id");
        mutator(app, "toggleTodo")["params"] =
            json!([{ "name": "id", "type": "text" }, { "name": "id", "type": "text" }]);
    });
    for expected in [
        Problem::Duplicate {
            kind: "table",
            name: "lists".into(),
        },
        Problem::Duplicate {
            kind: "table",
            name: "todos".into(),
        },
        Problem::Duplicate {
            kind: "mutator",
            name: "increment".into(),
        },
        Problem::Duplicate {
            kind: "column",
            name: "counters.id".into(),
        },
        Problem::Duplicate {
            kind: "parameter",
            name: "toggleTodo.id".into(),
        },
    ] {
        assert!(
            found.contains(&expected),
            "{expected:?} missing from {found:#?}"
        );
    }
}

#[test]
fn bad_identifiers_are_refused() {
    let found = problems_after(|app| {
        table(app, "lists")["name"] = json!("Lists");
        table(app, "todos")["columns"][3]["name"] = json!("order");
        table(app, "counters")["name"] = json!("_ferry_counters");
        mutator(app, "increment")["name"] = json!("incr-ement");
    });
    let names: Vec<_> = found
        .iter()
        .filter_map(|p| match p {
            Problem::BadName { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        ["Lists", "order", "_ferry_counters", "incr-ement"],
        "{found:#?}"
    );
}

#[test]
fn primary_keys_must_exist_and_be_portable() {
    let found = problems_after(|app| {
        table(app, "lists")["primaryKey"] = json!([]);
        table(app, "todos")["primaryKey"] = json!(["id", "missing"]);
        table(app, "todos")["columns"][5]["type"] = json!("json");
        table(app, "counters")["primaryKey"] = json!(["value", "id"]);
        table(app, "counters")["columns"][1]["type"] = json!("real");
    });
    assert!(found.contains(&Problem::NoPrimaryKey {
        table: "lists".into()
    }));
    assert!(found.contains(&Problem::UnknownColumn {
        table: "todos".into(),
        column: "missing".into(),
        context: "primary key"
    }));
    assert!(found.contains(&Problem::BadKeyColumn {
        table: "counters".into(),
        column: "value".into(),
        reason: "must be of type integer or text"
    }));
}

#[test]
fn statements_are_checked() {
    let found = problems_after(|app| {
        mutator(app, "renameTodo")["sql"] = json!("UPDATE todos SET title = ? WHERE id = :id");
        mutator(app, "toggleTodo")["sql"] =
            json!("UPDATE todos SET done = 1; DELETE FROM todos WHERE id = :id");
        mutator(app, "deleteTodo")["sql"] = json!([]);
        app["version"] = json!(0);
    });
    assert_eq!(found[0], Problem::BadVersion);
    assert!(found.iter().any(
        |p| matches!(p, Problem::BadStatement { mutator, message, .. }
        if mutator == "renameTodo" && message.contains("`?`"))
    ));
    assert!(found.iter().any(
        |p| matches!(p, Problem::BadStatement { mutator, message, .. }
        if mutator == "toggleTodo" && message.contains("more than one statement"))
    ));
    assert!(found.contains(&Problem::NoStatements {
        mutator: "deleteTodo".into()
    }));
    // A trailing semicolon is fine.
    let mut app = sample();
    mutator(&mut app, "toggleTodo")["sql"] =
        json!("UPDATE todos SET done = NOT done WHERE id = :id;");
    AppDefinition::from_json(&app.to_string()).unwrap();
}

#[test]
fn the_error_lists_every_problem() {
    let mut app = sample();
    table(&mut app, "todos")["access"]["read"] = json!("nope");
    mutator(&mut app, "increment")["name"] = json!("createList");
    let err = AppDefinition::from_json(&app.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown column `nope`") && err.contains("`createList` is defined twice"),
        "{err}"
    );
}

/// A mutator that reads ferrydb's own tables (the server's clients and
/// rejections) could copy another user's bookkeeping into a row it may
/// write: refused, however the table is named in the statement.
#[test]
fn a_mutator_that_names_ferrydbs_own_tables_is_refused() {
    let found = problems_after(|app| {
        mutator(app, "increment")["sql"] =
            json!("INSERT INTO counters (id, value) SELECT :id, :by FROM counters, _ferry_clients");
    });
    assert!(
        found.iter().any(|p| matches!(p,
            Problem::BadStatement { mutator, message, .. }
                if mutator == "increment" && message.contains("`_ferry_clients`"))),
        "{found:#?}"
    );
}

fn collab() -> Json {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/collab.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Edits the collaborative sample's `listItems` query and returns what
/// loading the app reports about queries.
fn query_problems(edit: impl FnOnce(&mut Json)) -> Vec<String> {
    let mut app = collab();
    let queries = app["queries"].as_array_mut().unwrap();
    edit(
        queries
            .iter_mut()
            .find(|q| q["name"] == "listItems")
            .unwrap(),
    );
    problems(app)
        .into_iter()
        .filter(|p| matches!(p, Problem::BadQuery { .. } | Problem::Duplicate { .. }))
        .map(|p| p.to_string())
        .collect()
}

fn assert_refused(found: &[String], expected: &str) {
    assert!(
        found.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got {found:#?}"
    );
}

#[test]
fn the_collaborative_sample_with_queries_loads() {
    let app = AppDefinition::from_json(&collab().to_string()).unwrap();
    assert!(app.query("myLists").unwrap().sync_on_open);
    let items = &app.query("listItems").unwrap().parts[0];
    assert_eq!(items.statement().params, ["list_id", "user_id"]);
}

#[test]
fn query_parameters_are_declared_typed_used_and_never_user_id() {
    let found = query_problems(|q| {
        q["parts"][0]["where"] = json!("list_id = :list_id AND title = :missing");
    });
    assert_refused(
        &found,
        "part `items` of query `listItems`: uses parameter `:missing`, which the query does not declare",
    );
    let found = query_problems(|q| {
        q["params"] =
            json!([{"name": "list_id", "type": "text"}, {"name": "spare", "type": "integer"}]);
    });
    assert_refused(
        &found,
        "query `listItems`: declares parameter `spare` but no part uses it",
    );
    let found = query_problems(|q| {
        q["params"] =
            json!([{"name": "list_id", "type": "text"}, {"name": "user_id", "type": "text"}]);
    });
    assert_refused(
        &found,
        "query `listItems`: declares `user_id`, which the server always binds",
    );
    let found = query_problems(|q| q["syncOnOpen"] = json!(true));
    assert_refused(&found, "`syncOnOpen` needs a query without parameters");
    // Untyped: the shape decoder names the field.
    let mut app = collab();
    app["queries"][1]["params"][0] = json!({"name": "list_id"});
    let err = AppDefinition::from_json(&app.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("queries[1].params[0]") && err.contains("type"),
        "{err}"
    );
}

#[test]
fn query_names_are_like_mutator_names_and_unique() {
    let found = query_problems(|q| q["name"] = json!("myLists"));
    assert_refused(&found, "query `myLists` is defined twice");
    let mut app = collab();
    app["queries"][1]["name"] = json!("list items");
    let found = problems(app);
    assert!(
        found.iter().any(|p| matches!(p,
            Problem::BadName { kind: "query", name, .. } if name == "list items")),
        "{found:#?}"
    );
}

#[test]
fn each_part_names_one_synced_table_once() {
    let found = query_problems(|q| q["parts"][0]["table"] = json!("drafts"));
    assert_refused(
        &found,
        "part `drafts` of query `listItems`: is a local table",
    );
    let found = query_problems(|q| q["parts"][0]["table"] = json!("nope"));
    assert_refused(
        &found,
        "part `nope` of query `listItems`: is not a synced table",
    );
    let found = query_problems(|q| {
        q["parts"] = json!([
            {"table": "items", "where": "list_id = :list_id"},
            {"table": "items", "where": "title = :list_id"}
        ]);
    });
    assert_refused(&found, "part `items` of query `listItems`: is listed twice");
    let found = query_problems(|q| q["parts"] = json!([]));
    assert_refused(&found, "query `listItems`: has no parts");
}

/// A part's condition reads synced tables only: never ferrydb's own
/// bookkeeping (another user's clients) nor local tables (the server has
/// none), however the name is hidden (`FROM members, _ferry_clients`).
#[test]
fn a_query_reads_synced_tables_only_however_they_are_named() {
    for (condition, expected) in [
        (
            "list_id = :list_id AND EXISTS (SELECT 1 FROM members, _ferry_clients)",
            "names `_ferry_clients`: names starting with `_ferry` belong to ferrydb",
        ),
        (
            "list_id = :list_id AND EXISTS (SELECT 1 FROM members, drafts)",
            "names local table `drafts`",
        ),
        (
            "list_id = :list_id AND EXISTS (SELECT 1 FROM secrets)",
            "refers to unknown table `secrets`",
        ),
    ] {
        let found = query_problems(|q| q["parts"][0]["where"] = json!(condition));
        assert_refused(&found, expected);
    }
}

/// A row's membership may not depend on other rows' order or count, and a
/// condition is one expression; inside a subquery both are fine.
#[test]
fn order_limits_and_aggregates_only_inside_subqueries_and_no_statements() {
    for (condition, expected) in [
        (
            "list_id = :list_id LIMIT 10",
            "LIMIT is only allowed inside a subquery",
        ),
        (
            "list_id = :list_id OFFSET 1",
            "OFFSET is only allowed inside a subquery",
        ),
        (
            "list_id = :list_id ORDER BY id",
            "ORDER BY is only allowed inside a subquery",
        ),
        (
            "list_id = :list_id AND count(*) > 1",
            "the aggregate `count` is only allowed",
        ),
        (
            "list_id = :list_id; DELETE FROM items",
            "must be one expression, without `;`",
        ),
    ] {
        let found = query_problems(|q| q["parts"][0]["where"] = json!(condition));
        assert_refused(&found, expected);
    }
    let mut app = collab();
    app["queries"][1]["parts"][0]["where"] = json!(
        "list_id = :list_id AND id IN (SELECT id FROM items i WHERE i.list_id = :list_id \
         ORDER BY title LIMIT 5) AND (SELECT count(*) FROM members WHERE user_id = :user_id) > 0"
    );
    AppDefinition::from_json(&app.to_string()).unwrap();
}
