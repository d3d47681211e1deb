//! `GET /sync/events`: the realtime channel, Server-Sent Events over a plain
//! authenticated GET (clients read it with `fetch`, so the bearer header
//! works). The first event is a poke with the current version, so a client
//! that missed pokes while disconnected catches up at once; then one poke per
//! version the store announces. Pokes carry no data, only "pull". When the
//! server shuts down, each stream ends with an SSE `retry:` hint.
//!
//! Protocol v2 (`?clientGroupID=g`, on a server whose app defines queries):
//! the channel belongs to that group (another user's group is refused), and
//! a poke whose commits touched none of the tables the group's
//! subscriptions read (as recorded by its last pull) is not sent: the fact
//! that another user's rows changed never reaches it. A poke whose tables
//! are unknown, or one after the stream fell behind, is sent. v2 pokes
//! carry no cookie (the cookie is the group's view version, not the
//! server's).

use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::ServerState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use ferrydb_protocol::{Cookie, ServerEvent};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

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

impl Connection {
    fn open(state: Arc<ServerState>, group: Option<Group>) -> Connection {
        let count = state.metrics.realtime_clients.fetch_add(1, Relaxed) + 1;
        Connection {
            state,
            count,
            group,
        }
    }

    /// Whether the poke of `version` concerns this connection: always for
    /// a v1 channel; for a group's, when its commits touched a table the
    /// group's subscriptions read now (asked of the store on each poke, as
    /// every pull may change them), or when that cannot be known.
    async fn concerned_by(&self, version: i64) -> bool {
        let (Some(group), Some(touched)) = (&self.group, self.state.pokes.touched(version)) else {
            return true;
        };
        let Ok(store) = self.state.sync_store() else {
            return true;
        };
        match store.group_reads(&group.user, &group.id).await {
            Ok(reads) => !reads.is_disjoint(&touched),
            // Another user pulled the group since this channel opened on it
            // (it had no view then): it is theirs, and so are its pokes.
            Err(StoreError::Forbidden(_)) => false,
            Err(_) => true,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.state.metrics.realtime_clients.fetch_sub(1, Relaxed);
    }
}
