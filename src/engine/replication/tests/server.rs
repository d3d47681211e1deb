//! Sync through the host contract against the reference server's SQLite store (`SqliteServer`).

use super::*;

#[test]
fn a_mutation_reaches_another_device_and_settles_ok() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    let mut phone = Device::new("p", "alice", true);
    alice.start(&mut server);
    phone.start(&mut server);
    let tab = alice.tab();
    let id = alice.add_todo(tab, "t1", "alice").unwrap();
    assert_eq!(alice.status.as_ref().unwrap().pending_mutations, 1);
    alice.sync(&mut server);
    assert_eq!(rejected_ids(&alice), [(id, None)]);
    assert_eq!(alice.status.as_ref().unwrap().pending_mutations, 0);
    assert!(alice.status.as_ref().unwrap().connected);

    let phone_tab = phone.tab();
    phone.event(Event::Server(ferrydb_protocol::ServerEvent::Poke {
        cookie: None,
    }));
    phone.sync(&mut server);
    assert_eq!(
        phone.column(phone_tab, "SELECT id FROM todos"),
        [text("t1")]
    );
    assert_eq!(
        server.executions().unwrap().values().sum::<u32>(),
        1,
        "once on the server"
    );
}

#[test]
fn a_rejected_mutation_settles_with_the_servers_code_and_its_row_goes() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    alice.start(&mut server);
    let tab = alice.tab();
    let bad = alice.add_todo(tab, "theirs", "bob").unwrap();
    let good = alice.add_todo(tab, "mine", "alice").unwrap();
    assert_eq!(
        alice.column(tab, "SELECT count(*) FROM todos"),
        [Value::Integer(2)]
    );
    alice.sync(&mut server);
    assert_eq!(
        rejected_ids(&alice),
        [(bad, Some("forbidden".into())), (good, None)]
    );
    assert!(
        matches!(&alice.emitted[..], [SyncEvent::Rejected { rejections }] if rejections[0].code == "forbidden")
    );
    assert_eq!(alice.column(tab, "SELECT id FROM todos"), [text("mine")]);
    assert_eq!(
        alice.column(tab, "SELECT code FROM _ferry_rejections"),
        [text("forbidden")]
    );
    // The app dismisses them: the log empties (plain SQL may not do it).
    let clear = alice.engine.handle(tab, Request::ClearRejections);
    assert_eq!(clear.reply.unwrap(), Response::Done);
    assert!(alice
        .column(tab, "SELECT code FROM _ferry_rejections")
        .is_empty());
    let later = alice.add_todo(tab, "later", "alice").unwrap();
    alice.sync(&mut server);
    assert_eq!(rejected_ids(&alice).last(), Some(&(later, None)));
}

#[test]
fn server_failures_back_off_and_recover_without_losing_or_repeating_writes() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    alice.start(&mut server);
    let tab = alice.tab();
    let ids: Vec<u64> = (0..3)
        .map(|i| alice.add_todo(tab, &format!("t{i}"), "alice").unwrap())
        .collect();
    alice.settle_for(&mut server, Some(500), 20_000);
    let status = alice.status.clone().unwrap();
    assert_eq!(
        status.error.map(|e| e.code),
        Some(StatusErrorCode::ServerError)
    );
    assert_eq!(status.pending_mutations, 3);
    assert!(alice.settled.is_empty());
    // The server is back: the next retry (after the backoff) goes through.
    alice.settle_for(&mut server, None, 120_000);
    let settled: Vec<u64> = alice.settled.iter().map(|s| s.mutation_id).collect();
    assert_eq!(settled, ids);
    assert_eq!(alice.status.as_ref().unwrap().error, None);
    assert!(server.executions().unwrap().values().all(|&n| n == 1));
}

#[test]
fn a_token_provider_that_fails_is_reported_and_local_writes_go_on() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    alice.token = Err("the provider threw".into());
    alice.start(&mut server);
    let status = alice.status.clone().unwrap();
    assert_eq!(
        status.error.map(|e| e.code),
        Some(StatusErrorCode::AuthRequired)
    );
    let tab = alice.tab();
    alice.add_todo(tab, "t1", "alice").unwrap();
    assert_eq!(alice.status.as_ref().unwrap().pending_mutations, 1);
    // The provider works again: asked after the backoff, and the write goes out.
    alice.token = Ok("alice".into());
    alice.settle_for(&mut server, None, 120_000);
    assert_eq!(alice.settled.len(), 1);
    assert_eq!(alice.status.as_ref().unwrap().error, None);
}

#[test]
fn a_newer_server_schema_stops_sync_keeps_local_writes_and_stays_known() {
    let mut server = SqliteServer::new(AppDefinition::from_json(&app_version(2)).unwrap()).unwrap();
    let mut alice = Device::new("a", "alice", true);
    alice.start(&mut server);
    assert!(matches!(
        alice.emitted[..],
        [SyncEvent::UpdateNeeded {
            server_schema_version: 2
        }]
    ));
    let sticky: Vec<_> = alice
        .engine
        .replication()
        .unwrap()
        .sticky_events()
        .collect();
    assert_eq!(sticky.len(), 1, "told to tabs that connect later");
    let tab = alice.tab();
    alice.add_todo(tab, "t1", "alice").unwrap();
    alice.sync(&mut server);
    assert!(alice.io.is_empty());
    assert_eq!(alice.column(tab, "SELECT id FROM todos"), [text("t1")]);
    assert_eq!(
        alice
            .status
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .map(|e| e.code),
        Some(StatusErrorCode::UpdateNeeded)
    );
}

/// The sample app, version 2, with what a server can take on in place: a
/// new table and a mutator that writes it.
fn app_with_comments() -> String {
    let mut app: Json = serde_json::from_str(&app_version(2)).unwrap();
    app["tables"].as_array_mut().unwrap().push(json!({
        "name": "comments",
        "columns": [
            {"name": "id", "type": "text"},
            {"name": "owner", "type": "text"},
            {"name": "body", "type": "text"}
        ],
        "primaryKey": ["id"],
        "access": {"read": "owner = :user_id", "write": "owner = :user_id"}
    }));
    app["mutators"].as_array_mut().unwrap().push(json!({
        "name": "addComment",
        "params": [{"name": "id", "type": "text"}, {"name": "owner", "type": "text"}, {"name": "body", "type": "text"}],
        "sql": "INSERT INTO comments (id, owner, body) VALUES (:id, :owner, :body)"
    }));
    app.to_string()
}

#[test]
fn a_newer_build_upgrading_a_syncing_replica_delivers_the_old_tabs_writes_and_syncs_on() {
    // The deploy: the server runs version 2 already; the old build's worker
    // is told to update and keeps the old tab's writes queued.
    let v2 = app_with_comments();
    let mut server = SqliteServer::new(AppDefinition::from_json(&v2).unwrap()).unwrap();
    let mut laptop = Device::new("a", "alice", true);
    laptop.start(&mut server);
    let old = laptop.opener;
    let queued = laptop.add_todo(old, "queued", "alice").unwrap();
    laptop.sync(&mut server);
    assert_eq!(
        server.last_mutation_id("a").unwrap(),
        0,
        "not accepted from version 1"
    );

    let new = laptop.tab();
    let opened = laptop.engine.open_app(new, &v2, "x", Some(9)).unwrap();
    assert_eq!(
        opened,
        AppOpened::Upgraded {
            outdated: vec![old]
        }
    );
    let status = laptop.engine.sync_status().unwrap().clone();
    assert_eq!(
        status.error, None,
        "the old build's updateNeeded is not this one's"
    );
    assert_eq!(
        laptop.engine.replication().unwrap().sticky_events().count(),
        0
    );
    // The host drops the old client's requests and starts the new one.
    laptop.io.clear();
    laptop.start(&mut server);
    laptop
        .mutate(
            new,
            "addComment",
            json!({"id": "c1", "owner": "alice", "body": "new"}),
        )
        .unwrap();
    laptop.sync(&mut server);
    assert_eq!(
        rejected_ids(&laptop),
        [(queued, None), (queued + 1, None)],
        "the old tab's write settles (it may still be awaiting it)"
    );
    assert_eq!(server.last_mutation_id("a").unwrap(), queued + 1);
    assert_eq!(
        server.executions().unwrap().values().sum::<u32>(),
        2,
        "each once"
    );
    assert_eq!(laptop.column(new, "SELECT id FROM todos"), [text("queued")]);
    assert_eq!(
        laptop.column(new, "SELECT body FROM comments"),
        [text("new")]
    );
}

#[test]
fn an_unparseable_reply_is_a_bad_response_and_is_retried() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", true);
    alice.event(Event::Online);
    assert_eq!(alice.io, [Effect::NeedToken]);
    alice.io.clear();
    alice.event(Event::Token(Some("alice".into())));
    let Some(Effect::SendPull { id, .. }) = alice.io.pop() else {
        panic!("no pull: {:?}", alice.io);
    };
    alice.event(Event::InvalidResponse {
        id,
        message: "expected value at line 1".into(),
    });
    assert_eq!(
        alice
            .status
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .map(|e| e.code),
        Some(StatusErrorCode::BadResponse)
    );
    alice.settle_for(&mut server, None, 120_000);
    let status = alice.status.clone().unwrap();
    assert!(status.connected && status.error.is_none() && status.last_synced_at.is_some());
}

#[test]
fn a_replica_opened_without_a_server_can_start_syncing_later() {
    let mut server = server();
    let mut alice = Device::new("a", "alice", false);
    let tab = alice.tab();
    let id = alice.add_todo(tab, "early", "alice").unwrap();
    assert!(!alice.engine.syncing());
    assert!(alice.engine.enable_sync(3));
    assert!(!alice.engine.enable_sync(4), "once");
    alice.start(&mut server);
    // Made before syncing started: its `server` outcome still comes.
    assert_eq!(rejected_ids(&alice), [(id, None)]);
    assert_eq!(alice.status.as_ref().unwrap().pending_mutations, 0);
    assert_eq!(server.last_mutation_id("a").unwrap(), id);
}

#[test]
fn a_mutation_is_pushed_only_once_on_disk_so_a_crash_cannot_leave_the_server_ahead() {
    let mut server = server();
    let mut disk = MemoryBackend::default();
    let mut laptop = Device::on_disk(&disk, "laptop", "alice");
    laptop.start(&mut server);
    laptop.flush(&mut disk);
    let tab = laptop.tab();
    laptop.add_todo(tab, "saved", "alice").unwrap();
    assert!(
        !laptop
            .io
            .iter()
            .any(|e| matches!(e, Effect::SendPush { .. })),
        "not pushed before it is on disk"
    );
    laptop.flush(&mut disk);
    assert!(
        laptop
            .io
            .iter()
            .any(|e| matches!(e, Effect::SendPush { .. })),
        "pushed once it is: {:?}",
        laptop.io
    );
    laptop.sync(&mut server);
    // Made, applied, never written: the crash takes it.
    laptop.add_todo(tab, "unsaved", "alice").unwrap();
    laptop.sync(&mut server);
    assert_eq!(server.executions().unwrap().values().sum::<u32>(), 1);

    // The device restarts from what is on disk; its next mutation gets the
    // lost one's ID, which the server must not know.
    let mut laptop = Device::on_disk(&disk, "unused", "alice");
    laptop.start(&mut server);
    let tab = laptop.tab();
    assert_eq!(laptop.add_todo(tab, "after-crash", "alice").unwrap(), 2);
    laptop.flush(&mut disk);
    laptop.sync(&mut server);
    assert_eq!(rejected_ids(&laptop), [(2, None)]);
    assert_eq!(laptop.status.as_ref().unwrap().pending_mutations, 0);
    assert_eq!(
        laptop.column(tab, "SELECT id FROM todos ORDER BY id"),
        [text("after-crash"), text("saved")]
    );
    let mut phone = Device::new("phone", "alice", true);
    phone.start(&mut server);
    let phone_tab = phone.tab();
    assert_eq!(
        phone.column(phone_tab, "SELECT id FROM todos ORDER BY id"),
        [text("after-crash"), text("saved")],
        "the server has the write made after the crash"
    );
}

/// Storage cleared under the running app: no restart comes back from the
/// deleted files, so what was held until it reached the disk goes to the
/// server from memory, and so does what comes after.
#[test]
fn once_storage_is_cleared_mutations_go_to_the_server_from_memory() {
    let mut server = server();
    let mut disk = MemoryBackend::default();
    let mut laptop = Device::on_disk(&disk, "laptop", "alice");
    laptop.start(&mut server);
    laptop.flush(&mut disk);
    let tab = laptop.tab();
    laptop.add_todo(tab, "held", "alice").unwrap();
    laptop.sync(&mut server);
    assert_eq!(
        server.executions().unwrap().values().sum::<u32>(),
        0,
        "held: not on disk"
    );

    let released = laptop.engine.storage_cleared("cleared".into()).unwrap();
    assert!(released.is_some(), "the held mutation is released");
    laptop.take(released.unwrap().work);
    laptop.add_todo(tab, "after", "alice").unwrap();
    laptop.sync(&mut server);
    assert_eq!(server.executions().unwrap().values().sum::<u32>(), 2);
    assert_eq!(laptop.status.as_ref().unwrap().pending_mutations, 0);
}
