//! `GET /sync/events`: the realtime channel, Server-Sent Events over a plain
//! authenticated GET (clients read it with `fetch`, so the bearer header
//! works). The first event is a poke with the current version, so a client
//! that missed pokes while disconnected catches up at once; then one poke per
//! version the store announces. Pokes carry no data, only "pull". When the
//! server shuts down, each stream ends with an SSE `retry:` hint.

use crate::error::AppError;
use crate::metrics::Metrics;
use crate::ServerState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use ferrydb_protocol::{Cookie, ServerEvent};
use futures_util::stream::{self, Stream};
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

pub async fn events(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    state.authorize(&headers).await?;
    let store = state.sync_store()?;
    let mut closing = state.closing();
    if *closing.borrow_and_update() {
        return Err(AppError::unavailable("this server is shutting down"));
    }
    let limit = state.config.limits.realtime_connections as u64;
    // Count first, then check: two connections racing for the last slot
    // cannot both get it.
    let connection = Connection::open(state.clone());
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
            let version = match next {
                Next::Poke(version) => version,
                Next::End => return None,
                Next::Wait => loop {
                    tokio::select! {
                        received = receiver.recv() => match received {
                            Ok(version) => break version,
                            // Fell behind: the newest poke says all the skipped ones said.
                            Err(RecvError::Lagged(_)) => continue,
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
                cookie: Some(Cookie::Integer(version)),
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
}

impl Connection {
    fn open(state: Arc<ServerState>) -> Connection {
        let count = state.metrics.realtime_clients.fetch_add(1, Relaxed) + 1;
        Connection { state, count }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.state.metrics.realtime_clients.fetch_sub(1, Relaxed);
    }
}
