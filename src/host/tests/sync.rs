//! The sync client's requests: timeouts, stale replies after a restart,
//! prefetched pages, pause.

use super::*;

#[test]
fn a_request_without_an_answer_times_out_and_its_late_reply_is_ignored() {
    let (mut h, _tab, pull) = syncing();
    // The client set its request deadline; the server never answers.
    let deadline = h.timer(Timer::Sync).expect("a request deadline");
    h.take();
    h.fire(Timer::Sync, deadline);
    assert_eq!(h.status().unwrap()["error"]["code"], "timeout");
    let retry_at = h.timer(Timer::Sync).expect("a retry after backoff");
    assert!(retry_at > deadline);
    h.take();
    // The abandoned request's reply comes after all: nothing follows from it.
    h.reply(pull, pull_ok(9, false));
    assert!(h.status().is_none(), "no status change: {:?}", h.out);
    assert!(h.take_fetches().is_empty());
    // The retry goes out when its timer fires, as a new fetch.
    h.fire(Timer::Sync, retry_at);
    let pulls = to("pull", &h.take_fetches());
    assert_eq!(pulls.len(), 1);
    assert_ne!(pulls[0].0, pull, "fetch ids are never reused");
}

#[test]
fn replies_to_the_replaced_client_are_dropped_after_delete_database() {
    let (mut h, tab, old_pull) = syncing();
    let delete = h.call(tab, json!({ "type": "deleteDatabase" }));
    assert!(h.out.contains(&Output::DeleteFiles));
    h.take();
    h.input(Input::FilesDeleted {
        result: Ok(()),
        backend: "memory".into(),
        log: Default::default(),
    });
    let posted = h.posted(tab);
    assert!(posted.iter().any(|m| m["type"] == "reset"));
    assert!(posted
        .iter()
        .any(|m| m["type"] == "reply" && m["id"] == delete && m.get("error").is_none()));
    h.settle_storage();
    // A new client asks for its token afresh.
    let ask = posted
        .iter()
        .find(|m| m["type"] == "needToken")
        .expect("asked");
    h.send(
        tab,
        json!({ "type": "token", "ask": ask["ask"], "token": "t2" }),
    );
    // The new client starts with a full pull, under a new client ID (its
    // request ids start over, so only fetch ids tell the two apart).
    let pulls = to("pull", &h.take_fetches());
    assert_eq!(pulls.len(), 1);
    let (new_pull, request) = &pulls[0];
    let body: Json = serde_json::from_str(request.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body["clientGroupID"].as_str().map(|s| s.is_empty()),
        Some(false)
    );
    h.take();
    // The old client's pull answers late: dropped.
    h.reply(old_pull, pull_ok(5, false));
    assert!(
        h.status().is_none(),
        "the stale reply changed nothing: {:?}",
        h.out
    );
    // The new one's is applied.
    h.reply(*new_pull, pull_ok(7, false));
    let status = h.status().expect("the new client caught up");
    assert_eq!(status["connected"], true);
    assert!(status["lastSyncedAt"].is_number());
}

#[test]
fn the_next_page_is_prefetched_and_used_when_the_client_asks_for_it() {
    let (mut h, _tab, pull) = syncing();
    h.reply(pull, pull_ok(1, true));
    let fetches = h.take_fetches();
    // One pull sent ahead while the page was applied; the client's own next
    // pull had exactly its body, so it was not sent again.
    assert_eq!(to("pull", &fetches).len(), 1, "{fetches:?}");
    let (ahead, request) = &to("pull", &fetches)[0];
    let body: Json = serde_json::from_str(request.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["cookie"], 1);
    h.reply(*ahead, pull_ok(2, false));
    let status = h.status().unwrap();
    assert!(
        status["lastSyncedAt"].is_number(),
        "the prefetched page was applied: {status}"
    );
}

/// Applying a page takes longer than the server takes to prepare the next:
/// the next pull must be on its way before the page is applied.
#[test]
fn a_page_is_applied_only_after_the_next_pull_is_sent() {
    let (mut h, _tab, pull) = syncing();
    let out = h.host.handle(Input::Fetched {
        fetch: pull,
        response: Some(HttpResponse {
            status: 200,
            body: pull_ok(1, true).to_string(),
        }),
    });
    let sent = out.iter().position(|o| matches!(o, Output::Fetch { .. }));
    assert_eq!(sent, Some(0), "the prefetch first: {out:?}");
    assert!(matches!(out.last(), Some(Output::Continue)), "{out:?}");
    assert_eq!(out.len(), 2, "nothing applied yet: {out:?}");
    h.input(Input::Continue);
    assert!(h.status().is_some(), "applied on Continue: {:?}", h.out);
}

#[test]
fn pausing_closes_the_realtime_channel_and_resuming_reopens_it() {
    let (mut h, tab, pull) = syncing();
    h.reply(pull, pull_ok(1, false));
    let stream = h
        .out
        .iter()
        .find_map(|o| match o {
            Output::Stream { stream, request } => Some((*stream, request.clone())),
            _ => None,
        })
        .expect("connected: the realtime channel opens");
    assert!(stream.1.url.ends_with("/events"));
    assert_eq!(stream.1.bearer.as_deref(), Some("t1"));
    h.take();
    h.call(tab, json!({ "type": "pauseSync" }));
    assert!(h.out.contains(&Output::CloseStream { stream: stream.0 }));
    h.take();
    h.call(tab, json!({ "type": "resumeSync" }));
    let pulls = to("pull", &h.take_fetches());
    assert_eq!(pulls.len(), 1, "resuming syncs at once");
    h.reply(pulls[0].0, pull_ok(2, false));
    assert!(h.out.iter().any(|o| matches!(o, Output::Stream { .. })));
}

/// A push carries the replica's writes: a leader tab's worker that another
/// took over from must not send it (the platform checks the fence for
/// these only). Pulls and the realtime channel go unchecked.
#[test]
fn only_a_push_is_marked_as_sending_writes() {
    let (mut h, tab, pull) = syncing();
    h.reply(pull, pull_ok(1, false));
    let args = json!({ "id": "a", "listId": "l1", "owner": "u", "title": "a" });
    h.call(
        tab,
        json!({ "type": "mutate", "name": "addTodo", "args": args }),
    );
    h.settle_storage();
    let fetches = h.take_fetches();
    let pushes = to("push", &fetches);
    assert_eq!(pushes.len(), 1, "{fetches:?}");
    assert!(pushes[0].1.sends_writes);
    assert!(to("pull", &fetches).iter().all(|(_, r)| !r.sends_writes));
}
