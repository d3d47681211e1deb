//! The team-app shape over HTTP on every store: projects, their members
//! (`viewer` or `editor`) and tasks (`tests/fixtures/projects.json`, described
//! in `tests/fixtures/README.md`). What a team relies on: members see their
//! projects' tasks, only editors write them, someone outside a project never
//! receives a key or value of it, and a member removed or demoted loses the
//! project's rows (or their write access) at once.

mod common;

use common::{store_urls, AppServer};
use serde_json::{json, Value as Json};

/// A server on the projects app.
struct Team(AppServer);

impl Team {
    async fn start(url: &str) -> Team {
        Team(AppServer::start(url, "tests/fixtures/projects.json").await)
    }

    /// Pushes one mutation as `user`; returns `ok` or the rejection's code.
    async fn push(&self, user: &str, name: &str, args: Json) -> String {
        self.0.push(user, name, args).await
    }

    /// Pushes one mutation as `user` that must apply.
    async fn run(&self, user: &str, name: &str, args: Json) {
        assert_eq!(self.push(user, name, args).await, "ok", "{user}: {name}");
    }

    /// A v2 pull of `user`'s group, subscribed to their projects and the
    /// tasks of each of `projects`.
    async fn pull(&self, user: &str, cookie: &Json, projects: &[&str]) -> Json {
        let mut subscriptions = vec![json!({"query": "myProjects", "args": {}})];
        for project in projects {
            subscriptions.push(json!({"query": "projectTasks", "args": {"project_id": project}}));
        }
        self.0.pull(user, cookie, &subscriptions).await
    }

    /// ada's project `p1` ("Launch") with grace as viewer, bob as editor and
    /// task `t1`; and ada's project `p2` ("Acquisition") with task `t2`,
    /// shared with no one.
    async fn launch_and_acquisition(&self) {
        self.run(
            "ada",
            "createProject",
            json!({"id": "p1", "name": "Launch", "owner": "ada"}),
        )
        .await;
        for (user, role) in [("grace", "viewer"), ("bob", "editor")] {
            self.run(
                "ada",
                "addMember",
                json!({"project_id": "p1", "user_id": user, "role": role}),
            )
            .await;
        }
        self.run(
            "ada",
            "addTask",
            json!({"id": "t1", "project_id": "p1", "title": "Press release", "assignee": "bob"}),
        )
        .await;
        self.run(
            "ada",
            "createProject",
            json!({"id": "p2", "name": "Acquisition", "owner": "ada"}),
        )
        .await;
        self.run(
            "ada",
            "addTask",
            json!({"id": "t2", "project_id": "p2", "title": "Due diligence on Initech", "assignee": null}),
        )
        .await;
    }
}

/// `op table label` per patch entry, the label being a row's or key's `id`,
/// or `project/user` for a membership.
fn ops(response: &Json) -> Vec<String> {
    let label = |row: &Json| match row.get("id") {
        Some(id) => id.as_str().unwrap().to_owned(),
        None => format!(
            "{}/{}",
            row["project_id"].as_str().unwrap(),
            row["user_id"].as_str().unwrap()
        ),
    };
    response["patch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| match op["type"].as_str().unwrap() {
            "put" => format!(
                "put {} {}",
                op["table"].as_str().unwrap(),
                label(&op["row"])
            ),
            "del" => format!(
                "del {} {}",
                op["table"].as_str().unwrap(),
                label(&op["key"])
            ),
            other => other.to_owned(),
        })
        .collect()
}

/// `query synced/total state` per subscription entry.
fn states(response: &Json) -> Vec<String> {
    response["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}/{} {}",
                s["query"].as_str().unwrap(),
                s["synced"],
                s["total"],
                s["state"].as_str().unwrap()
            )
        })
        .collect()
}

/// None of `secrets` appears anywhere in `body`, besides the subscription
/// entries' echo of the arguments the client itself sent.
fn assert_none_of(body: &Json, secrets: &[&str]) {
    let mut body = body.clone();
    if let Some(entries) = body["subscriptions"].as_array_mut() {
        for entry in entries {
            entry["args"] = Json::Null;
        }
    }
    let text = body.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} leaked in {text}");
    }
}

/// Everything of project `p2`, which only ada may read.
const ACQUISITION: [&str; 4] = ["p2", "t2", "Acquisition", "Initech"];

#[tokio::test]
async fn a_viewer_reads_the_projects_tasks_but_their_writes_are_forbidden() {
    for url in store_urls().await {
        let team = Team::start(&url).await;
        team.launch_and_acquisition().await;

        let grace = team.pull("grace", &Json::Null, &["p1"]).await;
        assert_eq!(
            ops(&grace),
            [
                "clear",
                "put projects p1",
                "put project_members p1/ada",
                "put project_members p1/bob",
                "put project_members p1/grace",
                "put tasks t1"
            ],
            "{url}"
        );
        assert_eq!(
            states(&grace),
            ["myProjects 4/4 complete", "projectTasks 1/1 complete"]
        );
        assert_none_of(&grace, &ACQUISITION);

        // Adding, editing or deleting a task, promoting herself, renaming
        // the project: each refused, and none changes what she reads.
        let attempts = [
            (
                "addTask",
                json!({"id": "t9", "project_id": "p1", "title": "Mine", "assignee": null}),
            ),
            (
                "editTask",
                json!({"id": "t1", "title": "Press release (grace)", "done": true}),
            ),
            ("deleteTask", json!({"id": "t1"})),
            (
                "setRole",
                json!({"project_id": "p1", "user_id": "grace", "role": "editor"}),
            ),
            (
                "renameProject",
                json!({"id": "p1", "name": "Grace's launch"}),
            ),
        ];
        for (name, args) in attempts {
            assert_eq!(
                team.push("grace", name, args).await,
                "forbidden",
                "{url}: {name}"
            );
        }
        let after = team.pull("grace", &grace["cookie"], &["p1"]).await;
        assert_eq!(ops(&after), Vec::<String>::new(), "{url}");
        assert_eq!(after["lastMutationIDChanges"], json!({"grace": 5}));
        let full = team.pull("grace", &Json::Null, &["p1"]).await;
        assert_eq!(
            full["patch"][5]["row"],
            json!({"id": "t1", "project_id": "p1", "title": "Press release", "done": false, "assignee": "bob"})
        );
    }
}

#[tokio::test]
async fn an_editors_task_writes_land_and_reach_every_member() {
    for url in store_urls().await {
        let team = Team::start(&url).await;
        team.launch_and_acquisition().await;
        let grace = team.pull("grace", &Json::Null, &["p1"]).await;
        let ada = team.pull("ada", &Json::Null, &["p1", "p2"]).await;

        team.run(
            "bob",
            "addTask",
            json!({"id": "t3", "project_id": "p1", "title": "Launch party", "assignee": "grace"}),
        )
        .await;
        team.run(
            "bob",
            "editTask",
            json!({"id": "t1", "title": "Press release", "done": true}),
        )
        .await;

        for (user, before) in [("grace", &grace), ("ada", &ada)] {
            let projects: &[&str] = if user == "ada" {
                &["p1", "p2"]
            } else {
                &["p1"]
            };
            let next = team.pull(user, &before["cookie"], projects).await;
            assert_eq!(
                ops(&next),
                ["put tasks t1", "put tasks t3"],
                "{url}: {user}"
            );
            assert_eq!(next["patch"][0]["row"]["done"], true);
            assert_eq!(next["patch"][1]["row"]["assignee"], "grace");
        }
        // An editor still writes only their own projects' tasks.
        assert_eq!(
            team.push(
                "bob",
                "addTask",
                json!({"id": "t8", "project_id": "p2", "title": "Peek", "assignee": null})
            )
            .await,
            "forbidden"
        );
        // Nor may an editor manage members: that is the owner's.
        assert_eq!(
            team.push(
                "bob",
                "addMember",
                json!({"project_id": "p1", "user_id": "carol", "role": "editor"})
            )
            .await,
            "forbidden"
        );
    }
}

/// carol belongs to no project, and grace to `p1` only: whatever they ask
/// for, and whatever happens in the projects meanwhile, no response carries
/// a key or a value of a project they are not in.
#[tokio::test]
async fn a_non_member_never_receives_a_key_or_value_of_the_projects_tasks() {
    for url in store_urls().await {
        let team = Team::start(&url).await;
        let carol = team.pull("carol", &Json::Null, &["p1", "p2"]).await;
        let grace = team.pull("grace", &Json::Null, &["p1", "p2"]).await;
        team.launch_and_acquisition().await;
        team.run(
            "bob",
            "addTask",
            json!({"id": "t3", "project_id": "p1", "title": "Launch party", "assignee": null}),
        )
        .await;
        team.run("ada", "deleteTask", json!({"id": "t2"})).await;
        team.run(
            "ada",
            "renameProject",
            json!({"id": "p2", "name": "Acquisition of Initech"}),
        )
        .await;
        let launch = ["p1", "t1", "t3", "Launch", "Press release"];
        let incremental = team.pull("carol", &carol["cookie"], &["p1", "p2"]).await;
        assert_eq!(ops(&incremental), Vec::<String>::new(), "{url}");
        assert_eq!(
            incremental["cookie"], carol["cookie"],
            "nothing changed for carol"
        );
        // Her own attempt to write into p1 is refused, and tells her nothing
        // but that her mutation was processed.
        let refused = team
            .push(
                "carol",
                "addTask",
                json!({"id": "t7", "project_id": "p1", "title": "Let me in", "assignee": null}),
            )
            .await;
        assert_eq!(refused, "forbidden");
        let acknowledged = team
            .pull("carol", &incremental["cookie"], &["p1", "p2"])
            .await;
        assert_eq!(ops(&acknowledged), Vec::<String>::new());
        assert_eq!(acknowledged["lastMutationIDChanges"], json!({"carol": 1}));
        let full = team.pull("carol", &Json::Null, &["p1", "p2"]).await;
        assert_eq!(ops(&full), ["clear"]);
        for body in [&incremental, &acknowledged, &full] {
            assert_none_of(body, &launch);
            assert_none_of(body, &ACQUISITION);
            assert_eq!(
                states(body),
                [
                    "myProjects 0/0 complete",
                    "projectTasks 0/0 complete",
                    "projectTasks 0/0 complete"
                ]
            );
        }

        // grace, a member of p1, gets p1's rows and still nothing of p2.
        let next = team.pull("grace", &grace["cookie"], &["p1", "p2"]).await;
        assert!(ops(&next).contains(&"put tasks t3".to_owned()), "{url}");
        assert_none_of(&next, &ACQUISITION);
        assert_none_of(
            &team.pull("grace", &Json::Null, &["p1", "p2"]).await,
            &ACQUISITION,
        );
    }
}

#[tokio::test]
async fn a_membership_change_moves_exactly_the_projects_rows_in_and_out() {
    for url in store_urls().await {
        let team = Team::start(&url).await;
        team.launch_and_acquisition().await;
        let grace = team.pull("grace", &Json::Null, &["p1"]).await;
        let bob = team.pull("bob", &Json::Null, &["p1"]).await;

        team.run(
            "ada",
            "removeMember",
            json!({"project_id": "p1", "user_id": "grace"}),
        )
        .await;
        let removed = team.pull("grace", &grace["cookie"], &["p1"]).await;
        assert_eq!(
            ops(&removed),
            [
                "del projects p1",
                "del project_members p1/ada",
                "del project_members p1/bob",
                "del project_members p1/grace",
                "del tasks t1"
            ],
            "{url}"
        );
        assert_eq!(
            states(&removed),
            ["myProjects 0/0 complete", "projectTasks 0/0 complete"]
        );
        // bob, still a member, loses only grace's membership.
        let remaining = team.pull("bob", &bob["cookie"], &["p1"]).await;
        assert_eq!(ops(&remaining), ["del project_members p1/grace"]);

        // Added back as an editor, grace gets the project again and may write.
        team.run(
            "ada",
            "addMember",
            json!({"project_id": "p1", "user_id": "grace", "role": "editor"}),
        )
        .await;
        let back = team.pull("grace", &removed["cookie"], &["p1"]).await;
        assert_eq!(
            ops(&back),
            [
                "put projects p1",
                "put project_members p1/ada",
                "put project_members p1/bob",
                "put project_members p1/grace",
                "put tasks t1"
            ]
        );
        assert_none_of(&back, &ACQUISITION);
        team.run(
            "grace",
            "editTask",
            json!({"id": "t1", "title": "Press release, v2", "done": false}),
        )
        .await;

        // Demoted to viewer, bob keeps reading but may no longer write.
        team.run(
            "ada",
            "setRole",
            json!({"project_id": "p1", "user_id": "bob", "role": "viewer"}),
        )
        .await;
        assert_eq!(
            team.push(
                "bob",
                "editTask",
                json!({"id": "t1", "title": "Bob's", "done": true})
            )
            .await,
            "forbidden"
        );
        let demoted = team.pull("bob", &remaining["cookie"], &["p1"]).await;
        assert_eq!(
            ops(&demoted),
            [
                "put project_members p1/bob",
                "put project_members p1/grace",
                "put tasks t1"
            ]
        );
        assert_eq!(demoted["patch"][2]["row"]["title"], "Press release, v2");

        // Roles are `viewer` or `editor`: the owner's rule refuses anything else.
        assert_eq!(
            team.push(
                "ada",
                "setRole",
                json!({"project_id": "p1", "user_id": "bob", "role": "admin"})
            )
            .await,
            "forbidden"
        );
    }
}
