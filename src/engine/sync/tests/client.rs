//! The sync state machine, driven by hand: which effects each event causes.

use super::*;
use crate::engine::Now;
use ferrydb_protocol::{
    Cookie, MismatchAction, MutationResult, PullOk, PullRequest, PushRequest, SchemaMismatch,
    ServerEvent,
};

struct Harness {
    client: SyncClient,
    replica: Replica,
    db: Database,
    /// The monotonic clock.
    now: u64,
    /// How far the wall clock is from the monotonic one (set to jump it).
    wall_offset: i64,
}

impl Harness {
    fn new() -> Harness {
        let (replica, db) = super::client("c1");
        Harness {
            client: SyncClient::new(SyncConfig::default(), 42),
            replica,
            db,
            now: 1_000,
            wall_offset: 0,
        }
    }

    /// Online with a token, first pull answered: the steady state.
    fn started() -> Harness {
        let mut h = Harness::new();
        h.step(Event::Online);
        let effects = h.step(Event::Token(Some("tok".into())));
        let (id, _) = pull_sent(&effects).unwrap();
        h.step(Event::PullResponse {
            id,
            response: pull_ok(1, false),
        });
        h
    }

    fn step(&mut self, event: Event) -> Vec<Effect> {
        self.client
            .handle(self.clock(), event, &mut self.replica, &mut self.db)
            .unwrap()
    }

    fn clock(&self) -> Now {
        Now {
            wall: self.now.saturating_add_signed(self.wall_offset),
            monotonic: self.now,
        }
    }

    fn at(&mut self, now: u64, event: Event) -> Vec<Effect> {
        self.now = now;
        self.step(event)
    }

    fn mutate(&mut self) -> Vec<Effect> {
        mutate(
            &self.replica,
            &mut self.db,
            "increment",
            json!({"id": "c", "by": 1}),
        );
        self.step(Event::Mutated)
    }
}

fn pull_sent(effects: &[Effect]) -> Option<(u64, PullRequest)> {
    effects.iter().find_map(|e| match e {
        Effect::SendPull { id, request, .. } => Some((*id, request.clone())),
        _ => None,
    })
}

fn push_sent(effects: &[Effect]) -> Option<(u64, PushRequest)> {
    effects.iter().find_map(|e| match e {
        Effect::SendPush { id, request, .. } => Some((*id, request.clone())),
        _ => None,
    })
}

fn timer(effects: &[Effect]) -> Option<u64> {
    effects.iter().find_map(|e| match e {
        Effect::SetTimer { at } => Some(*at),
        _ => None,
    })
}

fn emitted(effects: &[Effect]) -> Vec<SyncEvent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Emit(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

fn pull_ok(cookie: i64, more: bool) -> PullResponse {
    PullResponse::Ok(PullOk {
        cookie: Cookie::Integer(cookie),
        last_mutation_id_changes: Default::default(),
        patch: vec![],
        more,
        subscriptions: Vec::new(),
    })
}

fn mismatch(action: MismatchAction) -> PullResponse {
    PullResponse::SchemaMismatch(SchemaMismatch {
        server_schema_version: 2,
        action,
    })
}

#[test]
fn starting_asks_for_a_token_then_pulls_with_it() {
    let mut h = Harness::new();
    let effects = h.step(Event::Online);
    assert!(effects.contains(&Effect::NeedToken));
    assert!(pull_sent(&effects).is_none());
    let effects = h.step(Event::Token(Some("tok".into())));
    let Some(Effect::SendPull { token, request, .. }) = effects
        .iter()
        .find(|e| matches!(e, Effect::SendPull { .. }))
    else {
        panic!("{effects:?}")
    };
    assert_eq!(token.as_deref(), Some("tok"));
    assert_eq!(request.cookie, None);
    assert_eq!(
        timer(&effects),
        Some(h.now + 30_000),
        "the request deadline"
    );
    let status = effects
        .iter()
        .find_map(|e| match e {
            Effect::Status(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert!(status.downloading);
}

#[test]
fn a_mutation_is_pushed_at_once_and_a_pull_follows_the_reply() {
    let mut h = Harness::started();
    let effects = h.mutate();
    let (id, request) = push_sent(&effects).unwrap();
    assert_eq!(request.mutations.len(), 1);
    // A second mutation waits for the push in flight.
    assert!(push_sent(&h.mutate()).is_none());
    let effects = h.step(Event::PushResponse {
        id,
        response: PushResponse::Ok {
            results: vec![MutationResult::Ok { id: 1 }],
        },
    });
    let (_, next) = push_sent(&effects).expect("the second mutation goes next");
    assert_eq!(next.mutations.iter().map(|m| m.id).collect::<Vec<_>>(), [2]);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Changed(t) if t.contains("_ferry_outbox"))));
    let due = timer(&effects).unwrap();
    assert_eq!(due, h.now + 50, "the pull after a push is debounced");
    assert!(pull_sent(&h.at(due, Event::Timer)).is_some());
}

#[test]
fn failures_back_off_exponentially_with_jitter_and_success_resets() {
    let mut h = Harness::started();
    h.step(Event::Server(ServerEvent::Poke { cookie: None }));
    let effects = h.at(h.now + 50, Event::Timer);
    let (mut id, _) = pull_sent(&effects).unwrap();
    let mut delays = Vec::new();
    for _ in 0..5 {
        let effects = h.step(Event::HttpError { id, status: 503 });
        assert!(pull_sent(&effects).is_none(), "no retry before the backoff");
        let at = timer(&effects).unwrap();
        delays.push(at - h.now);
        let error = h.client.status().error.clone().unwrap();
        assert_eq!(error.code, StatusErrorCode::ServerError);
        assert!(error.message.contains("503"));
        id = pull_sent(&h.at(at, Event::Timer))
            .expect("retried after the backoff")
            .0;
    }
    for (i, d) in delays.iter().enumerate() {
        let cap = 500u64 << i;
        assert!((cap / 2..=cap).contains(d), "delay {i} = {d}, cap {cap}");
    }
    h.step(Event::PullResponse {
        id,
        response: pull_ok(2, false),
    });
    assert!(h.client.status().connected && h.client.status().error.is_none());
    h.step(Event::Server(ServerEvent::Poke { cookie: None }));
    let (id, _) = pull_sent(&h.at(h.now + 50, Event::Timer)).unwrap();
    let at = timer(&h.step(Event::HttpError { id, status: 0 })).unwrap();
    assert!(at - h.now <= 500, "back to the base delay");
}

#[test]
fn a_wall_clock_set_back_an_hour_during_a_backoff_does_not_postpone_the_retry() {
    let mut h = Harness::started();
    h.wall_offset = 1_800_000_000_000;
    let (id, _) = push_sent(&h.mutate()).unwrap();
    let retry = timer(&h.step(Event::HttpError { id, status: 503 })).unwrap();
    assert!(retry - h.now <= 500, "the first backoff step");
    // NTP (or the user) sets the clock back an hour while the retry waits.
    h.wall_offset -= 3_600_000;
    let effects = h.at(retry, Event::Timer);
    let (id, _) = push_sent(&effects).expect("retried when the backoff ended");
    h.step(Event::PushResponse {
        id,
        response: PushResponse::Ok {
            results: vec![MutationResult::Ok { id: 1 }],
        },
    });
    let (id, _) = pull_sent(&h.at(h.now + 50, Event::Timer)).expect("the pull after the push");
    let effects = h.step(Event::PullResponse {
        id,
        response: pull_ok(2, false),
    });
    assert_eq!(
        timer(&effects),
        Some(h.now + 60_000),
        "the periodic pull a minute on, not an hour and a minute"
    );
    let status = h.client.status();
    assert!(status.connected && status.error.is_none());
    assert_eq!(
        status.last_synced_at,
        Some(h.clock().wall),
        "shown in the clock's new time"
    );
}

#[test]
fn a_wall_clock_set_forward_an_hour_does_not_time_out_a_request_just_sent() {
    let mut h = Harness::started();
    let (id, _) = push_sent(&h.mutate()).unwrap();
    h.wall_offset = 3_600_000;
    // A poke wakes the client 50 ms later, with the push still in flight.
    h.step(Event::Server(ServerEvent::Poke { cookie: None }));
    let effects = h.at(h.now + 50, Event::Timer);
    assert!(pull_sent(&effects).is_some());
    assert_eq!(h.client.status().error, None, "no timeout");
    assert!(h.client.status().uploading, "the push is still awaited");
    h.step(Event::PushResponse {
        id,
        response: PushResponse::Ok {
            results: vec![MutationResult::Ok { id: 1 }],
        },
    });
    let confirmed =
        h.db.rows("SELECT confirmed FROM _ferry_outbox WHERE id = 1", &[])
            .unwrap();
    assert_eq!(confirmed.rows[0][0], Value::Integer(1), "its reply counted");
}

#[test]
fn a_401_refreshes_the_token_once() {
    let mut h = Harness::started();
    let (id, _) = push_sent(&h.mutate()).unwrap();
    let effects = h.step(Event::HttpError { id, status: 401 });
    assert!(effects.contains(&Effect::NeedToken));
    assert!(emitted(&effects).is_empty());
    let (id, _) =
        push_sent(&h.step(Event::Token(Some("fresh".into())))).expect("retried with the new token");
    let effects = h.step(Event::HttpError { id, status: 401 });
    assert_eq!(emitted(&effects), [SyncEvent::Unauthorized]);
    assert!(
        !effects.contains(&Effect::NeedToken),
        "not before the backoff"
    );
    let effects = h.at(timer(&effects).unwrap(), Event::Timer);
    assert!(effects.contains(&Effect::NeedToken));
}

#[test]
fn pokes_are_debounced_into_one_pull_and_skipped_when_caught_up() {
    let mut h = Harness::started();
    assert!(h
        .step(Event::Server(ServerEvent::Poke {
            cookie: Some(Cookie::Integer(1))
        }))
        .iter()
        .all(|e| !matches!(e, Effect::SetTimer { .. })));
    let start = h.now;
    for t in [0, 10, 20, 40] {
        let effects = h.at(
            start + t,
            Event::Server(ServerEvent::Poke {
                cookie: Some(Cookie::Integer(5)),
            }),
        );
        assert!(pull_sent(&effects).is_none());
    }
    let effects = h.at(start + 50, Event::Timer);
    assert!(pull_sent(&effects).is_some());
    assert!(
        pull_sent(&h.at(start + 60, Event::Timer)).is_none(),
        "one pull for four pokes"
    );
}

#[test]
fn late_replies_to_timed_out_requests_are_ignored() {
    let mut h = Harness::started();
    let (id, _) = push_sent(&h.mutate()).unwrap();
    assert!(h.client.awaits(id));
    let deadline = h.now + 30_000;
    let effects = h.at(deadline, Event::Timer);
    assert_eq!(
        h.client.status().error.as_ref().map(|e| e.code),
        Some(StatusErrorCode::Timeout)
    );
    let retry = timer(&effects).unwrap();
    let (new_id, _) = push_sent(&h.at(retry, Event::Timer)).unwrap();
    assert_ne!(id, new_id);
    assert!(!h.client.awaits(id) && h.client.awaits(new_id));
    let late = h.step(Event::PushResponse {
        id,
        response: PushResponse::Ok {
            results: vec![MutationResult::Ok { id: 1 }],
        },
    });
    assert!(!late.iter().any(|e| matches!(e, Effect::Changed(_))));
    assert!(
        h.client.status().uploading,
        "the new push is still in flight"
    );
}

#[test]
fn offline_sends_nothing_and_online_catches_up() {
    let mut h = Harness::started();
    h.step(Event::Offline);
    assert!(push_sent(&h.mutate()).is_none());
    assert!(!h.client.status().connected);
    let effects = h.step(Event::Online);
    assert!(push_sent(&effects).is_some() && pull_sent(&effects).is_some());
}

#[test]
fn more_pulls_again_at_once() {
    let mut h = Harness::new();
    h.step(Event::Online);
    let (id, _) = pull_sent(&h.step(Event::Token(None))).unwrap();
    let effects = h.step(Event::PullResponse {
        id,
        response: pull_ok(1, true),
    });
    let (_, request) = pull_sent(&effects).unwrap();
    assert_eq!(request.cookie, Some(Cookie::Integer(1)));
    assert_eq!(h.client.status().last_synced_at, None, "not caught up yet");
}

#[test]
fn a_newer_server_stops_sync_and_tells_the_app() {
    let mut h = Harness::started();
    h.step(Event::Server(ServerEvent::Poke { cookie: None }));
    let (id, _) = pull_sent(&h.at(h.now + 50, Event::Timer)).unwrap();
    let effects = h.step(Event::PullResponse {
        id,
        response: mismatch(MismatchAction::UpdateApp),
    });
    assert_eq!(
        emitted(&effects),
        [SyncEvent::UpdateNeeded {
            server_schema_version: 2
        }]
    );
    // Local writes still work; nothing is sent any more.
    assert!(push_sent(&h.mutate()).is_none());
    assert!(h
        .step(Event::Server(ServerEvent::Poke { cookie: None }))
        .iter()
        .all(|e| !matches!(e, Effect::SetTimer { .. })));
}

#[test]
fn a_reset_demand_rebuilds_and_pulls_in_full() {
    let mut h = Harness::started();
    h.mutate();
    h.step(Event::Server(ServerEvent::Poke { cookie: None }));
    let (id, _) = pull_sent(&h.at(h.now + 50, Event::Timer)).unwrap();
    let effects = h.step(Event::PullResponse {
        id,
        response: mismatch(MismatchAction::ResetReplica),
    });
    assert_eq!(
        emitted(&effects),
        [SyncEvent::SchemaReset {
            server_schema_version: 2
        }]
    );
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Changed(t) if t.contains("counters"))));
    let (_, request) = pull_sent(&effects).unwrap();
    assert_eq!(request.cookie, None);
    assert_eq!(
        h.replica.pending_count(&mut h.db).unwrap(),
        1,
        "the outbox survives"
    );
}

#[test]
fn rejections_are_emitted_and_a_push_nobody_processed_backs_off() {
    let mut h = Harness::started();
    let (id, _) = push_sent(&h.mutate()).unwrap();
    let rejected = MutationResult::Rejected {
        id: 1,
        code: ferrydb_protocol::RejectionCode::Forbidden,
        message: "no".into(),
    };
    let effects = h.step(Event::PushResponse {
        id,
        response: PushResponse::Ok {
            results: vec![rejected],
        },
    });
    let [SyncEvent::Rejected { rejections }] = &emitted(&effects)[..] else {
        panic!("{effects:?}")
    };
    assert_eq!(rejections[0].code, "forbidden");
    let (id, _) = push_sent(&h.mutate()).unwrap();
    let effects = h.step(Event::PushResponse {
        id,
        response: PushResponse::Ok { results: vec![] },
    });
    assert!(push_sent(&effects).is_none(), "backing off, not hammering");
    assert!(timer(&effects).is_some());
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let run = || {
        let mut h = Harness::started();
        let (mut id, _) = push_sent(&h.mutate()).unwrap();
        let mut times = Vec::new();
        for _ in 0..4 {
            let at = timer(&h.step(Event::HttpError { id, status: 500 })).unwrap();
            times.push(at);
            id = push_sent(&h.at(at, Event::Timer)).unwrap().0;
        }
        times
    };
    assert_eq!(run(), run());
}

#[test]
fn a_failed_token_ask_is_reported_and_asked_again_after_the_backoff() {
    let mut h = Harness::new();
    assert!(h.step(Event::Online).contains(&Effect::NeedToken));
    let effects = h.step(Event::TokenFailed("provider threw".into()));
    assert_eq!(
        h.client.status().error.as_ref().map(|e| e.code),
        Some(StatusErrorCode::AuthRequired)
    );
    assert!(
        !effects.contains(&Effect::NeedToken),
        "not before the backoff"
    );
    let effects = h.at(timer(&effects).unwrap(), Event::Timer);
    assert!(effects.contains(&Effect::NeedToken));
}

#[test]
fn an_invalid_reply_backs_off_and_is_retried() {
    let mut h = Harness::started();
    let (id, _) = push_sent(&h.mutate()).unwrap();
    let effects = h.step(Event::InvalidResponse {
        id,
        message: "not JSON".into(),
    });
    assert_eq!(
        h.client.status().error.as_ref().map(|e| e.code),
        Some(StatusErrorCode::BadResponse)
    );
    assert!(push_sent(&effects).is_none());
    let retry = h.at(timer(&effects).unwrap(), Event::Timer);
    assert!(push_sent(&retry).is_some(), "the same mutations again");
    // A stray invalid reply for a request not in flight changes nothing.
    let before = h.client.status().clone();
    h.step(Event::InvalidResponse {
        id: 999,
        message: "x".into(),
    });
    assert_eq!(h.client.status(), &before);
}

#[test]
fn paused_sends_nothing_sets_no_timer_and_resume_drains_at_once() {
    let mut h = Harness::started();
    let (id, _) = push_sent(&h.mutate()).unwrap();
    let effects = h.step(Event::Pause);
    assert!(h.client.status().paused && !h.client.status().connected);
    assert!(
        !h.client.status().uploading,
        "the push in flight is abandoned"
    );
    assert!(timer(&effects).is_none());
    // Its late reply changes nothing: the mutation stays queued.
    h.step(Event::PushResponse {
        id,
        response: PushResponse::Ok {
            results: vec![MutationResult::Ok { id: 1 }],
        },
    });
    // Writes, pokes, the network coming back and timers all stay quiet.
    for event in [
        Event::Mutated,
        Event::Server(ServerEvent::Poke { cookie: None }),
        Event::Online,
        Event::Timer,
    ] {
        let effects = h.at(h.now + 70_000, event);
        assert!(push_sent(&effects).is_none() && pull_sent(&effects).is_none());
        assert!(timer(&effects).is_none(), "{effects:?}");
    }
    h.mutate();
    assert_eq!(h.client.status().pending_mutations, 2);
    let effects = h.step(Event::Resume);
    assert!(!h.client.status().paused);
    let (_, request) = push_sent(&effects).expect("the outbox drains at once");
    assert_eq!(
        request.mutations.iter().map(|m| m.id).collect::<Vec<_>>(),
        [1, 2],
        "the abandoned push goes again with the same ids"
    );
    assert!(pull_sent(&effects).is_some(), "and catches up");
    assert!(timer(&effects).is_some(), "the request deadline");
}

#[test]
fn a_403_stops_sync_with_forbidden_until_resumed() {
    let mut h = Harness::started();
    let (id, _) = push_sent(&h.mutate()).unwrap();
    let effects = h.step(Event::HttpError { id, status: 403 });
    let error = h.client.status().error.clone().unwrap();
    assert_eq!(error.code, StatusErrorCode::Forbidden);
    assert_eq!(error.code.as_str(), "forbidden");
    assert!(!h.client.status().connected);
    assert!(timer(&effects).is_none(), "no retry is scheduled");
    // Nothing is retried, however long it waits or whatever happens.
    for event in [
        Event::Timer,
        Event::Mutated,
        Event::Server(ServerEvent::Poke { cookie: None }),
    ] {
        let effects = h.at(h.now + 3_600_000, event);
        assert!(push_sent(&effects).is_none() && pull_sent(&effects).is_none());
    }
    assert_eq!(
        h.client.status().error.as_ref().map(|e| e.code),
        Some(StatusErrorCode::Forbidden)
    );
    let effects = h.step(Event::Resume);
    assert!(push_sent(&effects).is_some(), "resuming tries again");
    assert_eq!(h.client.status().error, None);
}

#[test]
fn initial_sync_reports_rows_received_until_the_last_page() {
    let mut server = server().with_page_size(2);
    let (mut writer, mut wdb) = super::client("writer");
    for i in 0..5 {
        add_todo(&writer, &mut wdb, &format!("t{i}"), "u", "x");
    }
    sync(&mut writer, &mut wdb, &mut server, "u");

    let mut h = Harness::new();
    assert_eq!(
        h.client.status().initial_sync,
        None,
        "before the first pull"
    );
    h.step(Event::Online);
    let mut effects = h.step(Event::Token(Some("u".into())));
    let mut seen = Vec::new();
    while let Some((id, request)) = pull_sent(&effects) {
        seen.push(h.client.status().initial_sync);
        let PullResponse::Ok(ok) = server.pull("u", &request).unwrap() else {
            panic!("schema mismatch")
        };
        let response = PullResponse::Ok(ok);
        effects = h.step(Event::PullResponse { id, response });
    }
    let progress = |received| {
        Some(InitialSync {
            received,
            total: None,
        })
    };
    assert_eq!(seen, [progress(0), progress(2), progress(4)]);
    assert_eq!(
        h.client.status().initial_sync,
        None,
        "done after the last page"
    );
    assert_eq!(column(&mut h.db, "SELECT id FROM todos").len(), 5);

    // Catching up later is not an initial sync.
    h.step(Event::Server(ServerEvent::Poke { cookie: None }));
    pull_sent(&h.at(h.now + 50, Event::Timer)).unwrap();
    assert_eq!(h.client.status().initial_sync, None);
}

/// A poke that arrives during a paged initial sync announces a version newer
/// than the snapshot being paged, whose final cookie is the snapshot's: the
/// page requests do not answer it, so a pull must follow the last page.
/// (Seen in the browser: a server restarted mid-sync poked once on reconnect,
/// the pages absorbed it, and the new rows waited for the 60 s interval pull.)
#[test]
fn a_poke_during_a_paged_sync_is_answered_by_a_pull_after_the_last_page() {
    let mut server = server().with_page_size(2);
    let (mut writer, mut wdb) = super::client("writer");
    for i in 0..5 {
        add_todo(&writer, &mut wdb, &format!("t{i}"), "u", "x");
    }
    sync(&mut writer, &mut wdb, &mut server, "u");

    let mut h = Harness::new();
    h.step(Event::Online);
    let (id, request) = pull_sent(&h.step(Event::Token(Some("u".into())))).unwrap();
    let mut effects = h.step(Event::PullResponse {
        id,
        response: server.pull("u", &request).unwrap(),
    });
    // Another device writes (a key before the pager's cursor), and the
    // server pokes while the next page is in flight.
    add_todo(&writer, &mut wdb, "a-new", "u", "x");
    sync(&mut writer, &mut wdb, &mut server, "u");
    let version = server.version().unwrap();
    let poked = h.step(Event::Server(ServerEvent::Poke {
        cookie: Some(Cookie::Integer(version)),
    }));
    // The host's one timer: the latest `SetTimer` stands.
    let mut timer_at = timer(&poked);
    let mut pulls = 1;
    loop {
        timer_at = timer(&effects).or(timer_at);
        if let Some((id, request)) = pull_sent(&effects) {
            pulls += 1;
            let response = server.pull("u", &request).unwrap();
            effects = h.step(Event::PullResponse { id, response });
        } else if let Some(at) = timer_at.take().filter(|&at| at < h.now + 1_000) {
            effects = h.at(at.max(h.now), Event::Timer);
        } else {
            break;
        }
    }
    assert_eq!(
        column(&mut h.db, "SELECT id FROM todos ORDER BY id"),
        ["a-new", "t0", "t1", "t2", "t3", "t4"].map(text),
        "the row written during the paged sync arrives without waiting for the interval pull"
    );
    assert_eq!(h.replica.cookie(), Some(&Cookie::Integer(version)));
    assert_eq!(pulls, 4, "three pages and one catch-up pull");
}
