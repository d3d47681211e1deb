//! The sync client's link to the server and to the tabs' token providers
//! (`docs/protocol.md` §9): its effects become fetches, a timer, token asks
//! and messages to tabs; fetch outcomes, the timer, answers and deadlines
//! become its events.
//!
//! - Each request is a fetch with an id never used before; a restart (new
//!   replica, upgraded app) forgets the requests in flight, so their late
//!   replies are dropped (the new client reuses request ids).
//! - A pull page with `more` is followed at once by a pull with its cookie,
//!   which its `ferry-next-cookie` header gives before the body is decoded:
//!   that one is sent ahead (prefetched) and used only if the client's next
//!   pull has exactly its body and token. The page is decoded and applied
//!   only after that pull is under way (`Output::Continue`): decoding and
//!   applying a page take longer than the server takes to prepare the next,
//!   so the two overlap. Without the header, the client's next pull follows
//!   the applied page.
//! - Token asks go where [`TokenAsks`] decides, each with one deadline timer.

use super::interface::{FetchId, HttpRequest, HttpResponse, Output, Timer};
use super::realtime::Realtime;
use super::worker_message::WorkerMessage;
use super::Host;
use crate::engine::live::TabId;
use crate::engine::replication::SyncWork;
use crate::engine::sync::{Effect, Event, TokenAsk, TokenAsks, TOKEN_TIMEOUT_MS};
use crate::engine::SyncHandled;
use ferrydb_protocol::{Cookie, PullRequest, PullResponse, PushResponse};

pub struct SyncLink {
    /// The sync base URL: `{base}/push`, `{base}/pull`, `{base}/events`.
    pub base: String,
    /// The bearer token of the latest request, for the realtime channel.
    pub bearer: Option<String>,
    asks: TokenAsks,
    /// The ask whose deadline timer is set.
    deadline: Option<(TabId, u32)>,
    in_flight: Vec<InFlight>,
    prefetched: Option<Prefetched>,
    /// A page held back until its prefetch is under way.
    held: Option<Held>,
    pub realtime: Realtime,
}

struct InFlight {
    fetch: FetchId,
    /// The sync client's request id.
    id: u64,
    /// `None` for a push; a pull's request, to prefetch the next page from.
    pull: Option<PullRequest>,
}

/// A pull page held back, as it came, until the pull sent ahead of it is
/// under way.
struct Held {
    id: u64,
    body: String,
}

/// A pull sent ahead of the client.
struct Prefetched {
    fetch: FetchId,
    bearer: Option<String>,
    body: String,
    /// Its outcome, once it came (`Some(None)`: no response).
    outcome: Option<Option<HttpResponse>>,
}

impl Host {
    /// Starts syncing with the server at `base`.
    pub(super) fn start_sync(&mut self, base: &str) {
        let seed = self.env.seed();
        self.sync = Some(SyncLink {
            base: base.trim_end_matches('/').to_owned(),
            bearer: None,
            asks: TokenAsks::default(),
            deadline: None,
            in_flight: Vec::new(),
            prefetched: None,
            held: None,
            realtime: Realtime::new(seed),
        });
        if self.online {
            self.sync_event(Event::Online);
        }
    }

    /// The sync client was replaced (new replica, upgraded app): forget the
    /// old one's requests and ask, and start the new one, paused if the
    /// old one was.
    pub(super) fn restart_sync(&mut self, paused: bool) {
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        link.in_flight.clear();
        link.prefetched = None;
        link.held = None;
        link.asks.forget_ask();
        link.deadline = None;
        self.out.push(Output::ClearTimer(Timer::Sync));
        self.out.push(Output::ClearTimer(Timer::TokenDeadline));
        if paused {
            self.sync_event(Event::Pause);
        }
        if self.online {
            self.sync_event(Event::Online);
        }
    }

    /// Feeds one event to the sync client and carries out what follows.
    pub(super) fn sync_event(&mut self, event: Event) {
        let handled = self.engine.sync_event(event);
        self.sync_handled(handled.map(Some));
    }

    pub(super) fn sync_handled(&mut self, handled: crate::Result<Option<SyncHandled>>) {
        let handled = match handled {
            Ok(Some(handled)) => handled,
            Ok(None) => return,
            Err(e) => {
                self.out
                    .push(Output::Warn(format!("ferrydb: sync failed: {e}")));
                return;
            }
        };
        for updates in handled.updates {
            self.post(updates.tab, WorkerMessage::Live(updates.updates));
        }
        self.carry_out(handled.work);
        self.tell_subscription_states();
    }

    /// Does what the engine asked after a request or sync event.
    pub(super) fn carry_out(&mut self, work: SyncWork) {
        for settled in work.settled {
            self.broadcast(WorkerMessage::Settled(settled));
        }
        for effect in work.effects {
            match effect {
                Effect::SendPush { id, token, request } => {
                    let body = serde_json::to_string(&request).expect("a push request serializes");
                    self.send(id, token, body, None);
                }
                Effect::SendPull { id, token, request } => {
                    let body = serde_json::to_string(&request).expect("a pull request serializes");
                    self.send(id, token, body, Some(request));
                }
                Effect::SetTimer { at } => self.out.push(Output::SetTimer {
                    timer: Timer::Sync,
                    at,
                }),
                Effect::NeedToken => self.need_token(),
                Effect::Emit(event) => self.broadcast(WorkerMessage::SyncEvent(event)),
                Effect::Status(status) => {
                    let (paused, connected) = (status.paused, status.connected);
                    self.broadcast(WorkerMessage::SyncStatus(status));
                    if paused {
                        // Nothing is sent while paused; `Resume` sets a new timer.
                        self.out.push(Output::ClearTimer(Timer::Sync));
                        self.realtime_close();
                    } else if connected {
                        self.realtime_ensure();
                    }
                }
                // The engine refreshed live queries already.
                Effect::Changed(_) => {}
            }
        }
    }

    /// `POST {base}/push` or `/pull` for the client's request `id`.
    fn send(&mut self, id: u64, bearer: Option<String>, body: String, pull: Option<PullRequest>) {
        let fetch_id = self.fetch_id();
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        link.bearer.clone_from(&bearer);
        let ahead = link
            .prefetched
            .take()
            .filter(|p| pull.is_some() && p.bearer == bearer && p.body == body);
        let push = pull.is_none();
        let path = if push { "push" } else { "pull" };
        let url = format!("{}/{path}", link.base);
        match ahead {
            Some(ahead) => {
                link.in_flight.push(InFlight {
                    fetch: ahead.fetch,
                    id,
                    pull,
                });
                if let Some(outcome) = ahead.outcome {
                    self.fetched(ahead.fetch, outcome);
                }
            }
            None => {
                link.in_flight.push(InFlight {
                    fetch: fetch_id,
                    id,
                    pull,
                });
                self.out.push(Output::Fetch {
                    fetch: fetch_id,
                    request: HttpRequest {
                        method: "POST",
                        url,
                        bearer,
                        body: Some(body),
                        sends_writes: push,
                    },
                });
            }
        }
    }

    /// A fetch ended: the reply of a request in flight, or a prefetch's.
    /// Anything else belongs to a client since replaced and is dropped.
    pub(super) fn fetched(&mut self, fetch: FetchId, response: Option<HttpResponse>) {
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        if let Some(ahead) = link.prefetched.as_mut().filter(|p| p.fetch == fetch) {
            ahead.outcome = Some(response);
            return;
        }
        let Some(at) = link.in_flight.iter().position(|r| r.fetch == fetch) else {
            return;
        };
        let InFlight { id, pull, .. } = link.in_flight.remove(at);
        let path = if pull.is_some() { "pull" } else { "push" };
        let event = match response {
            Some(HttpResponse {
                status: 200,
                body,
                next_cookie,
            }) => {
                if let (Some(mut next), Some(cookie)) =
                    (pull, next_cookie.as_deref().and_then(cookie_of))
                {
                    next.cookie = Some(cookie);
                    self.prefetch(&next);
                    if let Some(link) = self.sync.as_mut() {
                        link.held = Some(Held { id, body });
                        self.out.push(Output::Continue);
                    }
                    return;
                }
                parse_reply(id, path, &body)
            }
            None => Event::HttpError { id, status: 0 },
            Some(HttpResponse { status, .. }) => Event::HttpError { id, status },
        };
        self.sync_event(event);
    }

    /// Decodes and applies the page held back for its prefetch.
    pub(super) fn continue_sync(&mut self) {
        if let Some(Held { id, body }) = self.sync.as_mut().and_then(|l| l.held.take()) {
            self.sync_event(parse_reply(id, "pull", &body));
        }
    }

    /// Sends the pull that will follow the page about to be decoded and
    /// applied, so the server prepares it meanwhile.
    fn prefetch(&mut self, next: &PullRequest) {
        let fetch = self.fetch_id();
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        let body = serde_json::to_string(next).expect("a pull request serializes");
        let bearer = link.bearer.clone();
        self.out.push(Output::Fetch {
            fetch,
            request: HttpRequest {
                method: "POST",
                url: format!("{}/pull", link.base),
                bearer: bearer.clone(),
                body: Some(body.clone()),
                sends_writes: false,
            },
        });
        link.prefetched = Some(Prefetched {
            fetch,
            bearer,
            body,
            outcome: None,
        });
    }

    /// The client needs a token: ask the tab [`TokenAsks`] chooses.
    fn need_token(&mut self) {
        let tabs = self.tabs.token_tabs();
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        let decision = link.asks.need(&tabs);
        self.carry_out_ask(decision);
    }

    fn carry_out_ask(&mut self, decision: TokenAsk) {
        match decision {
            TokenAsk::Ask { tab, ask } => {
                if let Some(link) = self.sync.as_mut() {
                    link.deadline = Some((tab, ask));
                }
                self.post(tab, WorkerMessage::NeedToken { ask });
                let at = self.at(TOKEN_TIMEOUT_MS);
                self.out.push(Output::SetTimer {
                    timer: Timer::TokenDeadline,
                    at,
                });
            }
            TokenAsk::Answer(answer) => self.sync_event(answer),
        }
    }

    pub(super) fn token_deadline(&mut self) {
        let tabs = self.tabs.token_tabs();
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        let Some((tab, ask)) = link.deadline.take() else {
            return;
        };
        if let Some(decision) = link.asks.timed_out(tab, ask, &tabs) {
            self.carry_out_ask(decision);
        }
    }

    /// A tab answered ask `ask` (`Ok(None)`: it has no auth).
    pub(super) fn token_answered(
        &mut self,
        tab: TabId,
        ask: u32,
        answer: Result<Option<String>, String>,
    ) {
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        let Some(event) = link.asks.answered(tab, ask, answer) else {
            return;
        };
        link.deadline = None;
        self.out.push(Output::ClearTimer(Timer::TokenDeadline));
        self.sync_event(event);
    }

    /// A tab went away: if it was asked for a token, ask another.
    pub(super) fn token_tab_gone(&mut self, tab: TabId) {
        let tabs = self.tabs.token_tabs();
        let Some(link) = self.sync.as_mut() else {
            return;
        };
        if let Some(decision) = link.asks.tab_gone(tab, &tabs) {
            if link.deadline.is_some_and(|(t, _)| t == tab) {
                link.deadline = None;
                self.out.push(Output::ClearTimer(Timer::TokenDeadline));
            }
            self.carry_out_ask(decision);
        }
    }
}

/// A 200's body as the reply it should be, or `InvalidResponse`.
fn parse_reply(id: u64, path: &str, body: &str) -> Event {
    let parsed = if path == "push" {
        decode(body, PushResponse::decode).map(|response| Event::PushResponse { id, response })
    } else {
        decode(body, PullResponse::decode).map(|response| Event::PullResponse { id, response })
    };
    parsed.unwrap_or_else(|e| Event::InvalidResponse {
        id,
        message: format!("the {path} reply is not valid: {e}"),
    })
}

/// The cookie a `ferry-next-cookie` header gives, if it is one.
fn cookie_of(header: &str) -> Option<Cookie> {
    Cookie::decode(serde_json::from_str(header).ok()?, "").ok()
}

/// Parses `text` as JSON, then decodes it (`ferrydb_protocol::decode`).
fn decode<T>(
    text: &str,
    decoder: fn(serde_json::Value, &str) -> ferrydb_protocol::decode::Result<T>,
) -> Result<T, String> {
    let json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    decoder(json, "").map_err(|e| e.to_string())
}
