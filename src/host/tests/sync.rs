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

/// A server that does not say the next cookie in a header still pages:
/// the client's next pull follows the applied page.
#[test]
fn without_the_next_cookie_header_the_next_pull_follows_the_applied_page() {
    let (mut h, _tab, pull) = syncing();
    h.reply(pull, pull_ok(1, true));
    let pulls = to("pull", &h.take_fetches());
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let (next, request) = &pulls[0];
    assert_eq!(cookie_sent(request), 1);
    h.reply(*next, pull_ok(2, false));
    let status = h.status().unwrap();
    assert!(status["lastSyncedAt"].is_number(), "{status}");
}

/// A page of `pull_ok(cookie, more)` whose `ferry-next-cookie` header says
/// `hint`.
fn hinted(fetch: FetchId, cookie: u64, hint: &str) -> Input {
    Input::Fetched {
        fetch,
        response: Some(HttpResponse {
            status: 200,
            body: pull_ok(cookie, true).to_string(),
            next_cookie: Some(hint.into()),
        }),
    }
}

fn cookie_sent(request: &HttpRequest) -> Json {
    serde_json::from_str::<Json>(request.body.as_deref().unwrap()).unwrap()["cookie"].clone()
}

/// Decoding and applying a page take longer than the server takes to
/// prepare the next: with the page's cookie in its header, the next pull
/// goes out before the page is decoded, and decoding it sends nothing more.
#[test]
fn the_next_cookie_header_sends_the_next_pull_before_the_page_is_decoded() {
    let (mut h, _tab, pull) = syncing();
    let out = h.host.handle(hinted(pull, 1, "1"));
    let [Output::Fetch {
        fetch: ahead,
        request,
    }, Output::Continue] = &out[..]
    else {
        panic!("the prefetch, then nothing until Continue: {out:?}");
    };
    assert_eq!(cookie_sent(request), 1);
    let ahead = *ahead;
    h.input(Input::Continue);
    assert!(h.status().is_some(), "decoded and applied on Continue");
    assert!(
        h.take_fetches().is_empty(),
        "the pull sent ahead is the one the client wanted"
    );
    h.reply(ahead, pull_ok(2, false));
    assert!(h.status().unwrap()["lastSyncedAt"].is_number());
}

/// The header is a hint: one that does not match the page's cookie costs a
/// request, never a page.
#[test]
fn a_next_cookie_header_that_is_wrong_is_only_a_wasted_request() {
    let (mut h, _tab, pull) = syncing();
    h.input(hinted(pull, 1, "99"));
    let pulls = to("pull", &h.take_fetches());
    let cookies: Vec<Json> = pulls.iter().map(|(_, r)| cookie_sent(r)).collect();
    assert_eq!(cookies, [99, 1], "the hinted one, then the page's own");
    let (first, second) = (&pulls[0], &pulls[1]);
    // The wrong one's reply is dropped; the right one's is applied.
    h.take();
    h.reply(first.0, pull_ok(50, false));
    assert!(h.status().is_none(), "the wrong one's reply is dropped");
    h.reply(second.0, pull_ok(2, false));
    let status = h.status().unwrap();
    assert!(status["lastSyncedAt"].is_number(), "{status}");
    assert!(h.take_fetches().is_empty());
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
