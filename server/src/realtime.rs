//! `GET /sync/events`: the realtime channel, Server-Sent Events over a plain
//! authenticated GET (clients read it with `fetch`, so the bearer header
//! works). The first event is a poke with the current version, so a client
//! that missed pokes while disconnected catches up at once; then one poke per
//! version the store announces. Pokes carry no data, only "pull". When the
//! server shuts down, each stream ends with an SSE `retry:` hint.
//!
//! Protocol v2 (`?clientGroupID=g`, on a server whose app defines queries):
//! the channel belongs to that group (another user's group is refused), and
//! a poke is sent only if its commits concern the group: its next pull
//! would change what it holds (`sync::route`). The routing of each poke is
//! computed once, for every v2 channel of this instance, in one store
//! transaction ([`Routes`]); so the fact that another user's rows changed
//! never reaches a group. A poke whose commits are unknown, one after the
//! stream fell behind, or one the store could not route, is sent. v2 pokes
//! carry no cookie (the cookie is the group's view version, not the
//! server's).

use crate::error::AppError;
use crate::metrics::Metrics;
use crate::sync::Listener;
use crate::ServerState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use ferrydb_protocol::{Cookie, ServerEvent};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::OnceCell;

/// What a closing stream asks its client to wait before reconnecting: long
/// enough for a restarted server or another instance to take over, short
/// enough that pokes resume soon. (EventSource clients obey it; the SDK
/// reconnects with its own jittered backoff.)
pub const RECONNECT_AFTER: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
pub struct EventsQuery {
    #[serde(rename = "clientGroupID")]
    client_group_id: Option<String>,
}

pub async fn events(
    State(state): State<Arc<ServerState>>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let user = state.authorize(&headers).await?;
    let store = state.sync_store()?;
    let group = match query.client_group_id {
        Some(group) if state.pulls_by_subscription => {
            // Refuses another user's group before anything is sent.
            store.group_reads(&user, &group).await?;
            Some(Group { user, id: group })
        }
        _ => None,
    };
    let mut closing = state.closing();
    if *closing.borrow_and_update() {
        return Err(AppError::unavailable("this server is shutting down"));
    }
    let limit = state.config.limits.realtime_connections as u64;
    // Count first, then check: two connections racing for the last slot
    // cannot both get it.
    let connection = Connection::open(state.clone(), group);
    if connection.count > limit {
        return Err(AppError::unavailable(format!(
            "this server holds at most {limit} realtime connections"
        )));
    }
    let receiver = state.pokes.subscribe();
    let first = store.version().await?;
    let stream = stream::unfold(
        (Next::Poke(first), receiver, closing, connection),
        |(next, mut receiver, mut closing, connection)| async move {
            let mut fell_behind = false;
            let version = match next {
                Next::Poke(version) => version,
                Next::End => return None,
                Next::Wait => loop {
                    // Pokes already sent are judged before the shutdown is:
                    // a stream ends having handled every poke before it.
                    tokio::select! {
                        biased;
                        received = receiver.recv() => match received {
                            Ok(version) if fell_behind || connection.concerned_by(version).await => break version,
                            Ok(_) => continue,
                            // Fell behind: the newest poke says all the skipped
                            // ones said, whatever they touched.
                            Err(RecvError::Lagged(_)) => {
                                fell_behind = true;
                                continue;
                            }
                            Err(RecvError::Closed) => return None,
                        },
                        // The server is stopping: a last event with the retry
                        // hint, then the stream ends, so a graceful shutdown
                        // does not wait on it.
                        _ = async { closing.wait_for(|closing| *closing).await.map(drop) } => {
                            let last = Event::default()
                                .retry(RECONNECT_AFTER)
                                .comment("server shutting down");
                            return Some((Ok(last), (Next::End, receiver, closing, connection)));
                        }
                    }
                },
            };
            let metrics = &connection.state.metrics;
            Metrics::add(&metrics.pokes_sent, 1);
            if let Some(announced) = connection.state.pokes.announced_at(version) {
                metrics.sync_lag.observe(announced.elapsed());
            }
            let poke = ServerEvent::Poke {
                cookie: match connection.group {
                    Some(_) => None,
                    None => Some(Cookie::Integer(version)),
                },
            };
            let event = Event::default().data(serde_json::to_string(&poke).expect("serializes"));
            Some((Ok(event), (Next::Wait, receiver, closing, connection)))
        },
    );
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keepalive"),
    ))
}

/// What a realtime stream does next.
enum Next {
    /// Send this version (the first event).
    Poke(i64),
    /// Wait for a poke or the shutdown.
    Wait,
    /// The last event was sent.
    End,
}

/// One open realtime connection, counted in the metrics until it is dropped
/// (the client went away and axum dropped the stream).
struct Connection {
    state: Arc<ServerState>,
    count: u64,
    /// The v2 client group it pokes, if any.
    group: Option<Group>,
}

struct Group {
    user: String,
    id: String,
}

impl Group {
    fn listener(&self) -> Listener {
        (self.user.clone(), self.id.clone())
    }
}

/// How many pokes' routings are kept (as many as the channel remembers).
const ROUTINGS_KEPT: usize = 64;

/// This instance's v2 channels, and the routing of the recent pokes among
/// them: the first channel to judge a poke routes it for all of them (one
/// store transaction), the others wait for that answer.
#[derive(Default)]
pub struct Routes {
    /// Open v2 channels, counted per (user, group).
    listening: Mutex<BTreeMap<Listener, usize>>,
    routings: Mutex<VecDeque<(i64, Routed)>>,
}

/// A poke's routing, computed by the first channel that asks (`None`: it
/// could not be).
type Routed = Arc<OnceCell<Option<Routing>>>;

/// One poke's routing: the channels it was computed for, and of those the
/// ones it concerns.
struct Routing {
    asked: BTreeSet<Listener>,
    concerned: BTreeSet<Listener>,
}

impl Routes {
    fn listen(&self, listener: Listener) {
        *self
            .listening
            .lock()
            .expect("routes")
            .entry(listener)
            .or_default() += 1;
    }

    fn leave(&self, listener: &Listener) {
        let mut listening = self.listening.lock().expect("routes");
        if let Some(count) = listening.get_mut(listener) {
            *count -= 1;
            if *count == 0 {
                listening.remove(listener);
            }
        }
    }

    /// The routing of poke `version` (`None`: it could not be computed).
    async fn routing(&self, state: &ServerState, version: i64, since: i64) -> Routed {
        let cell = {
            let mut routings = self.routings.lock().expect("routes");
            match routings.iter().find(|(v, _)| *v == version) {
                Some((_, cell)) => cell.clone(),
                None => {
                    if routings.len() == ROUTINGS_KEPT {
                        routings.pop_front();
                    }
                    let cell = Arc::new(OnceCell::new());
                    routings.push_back((version, cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_init(|| async {
            let asked: BTreeSet<Listener> = self
                .listening
                .lock()
                .expect("routes")
                .keys()
                .cloned()
                .collect();
            let store = state.sync_store().ok()?;
            match store.route(since, asked.iter().cloned().collect()).await {
                Ok(concerned) => Some(Routing { asked, concerned }),
                Err(e) => {
                    tracing::warn!(error = %e, version, "cannot route a poke: sending it to every channel");
                    None
                }
            }
        })
        .await;
        cell
    }
}

impl Connection {
    fn open(state: Arc<ServerState>, group: Option<Group>) -> Connection {
        let count = state.metrics.realtime_clients.fetch_add(1, Relaxed) + 1;
        if let Some(group) = &group {
            state.routes.listen(group.listener());
        }
        Connection {
            state,
            count,
            group,
        }
    }

    /// Whether the poke of `version` concerns this connection: always for
    /// a v1 channel; for a group's, when the poke's routing says so, or when
    /// that cannot be known (its commits are unknown, the routing failed,
    /// or the channel opened after it was computed).
    async fn concerned_by(&self, version: i64) -> bool {
        let (Some(group), Some(since)) = (&self.group, self.state.pokes.since(version)) else {
            return true;
        };
        let routing = self.state.routes.routing(&self.state, version, since).await;
        let listener = group.listener();
        match routing.get() {
            Some(Some(routing)) if routing.asked.contains(&listener) => {
                routing.concerned.contains(&listener)
            }
            _ => true,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.state.metrics.realtime_clients.fetch_sub(1, Relaxed);
        if let Some(group) = &self.group {
            self.state.routes.leave(&group.listener());
        }
    }
}
