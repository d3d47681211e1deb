//! `GET /sync/events`: the realtime channel, Server-Sent Events over a plain
//! authenticated GET (clients read it with `fetch`, so the bearer header
//! works). The first event is a poke with the current version, so a client
//! that missed pokes while disconnected catches up at once; then one poke per
//! version the store announces. Pokes carry no data, only "pull".

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

pub async fn events(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    state.authorize(&headers).await?;
    let store = state.sync_store()?;
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
        (Some(first), receiver, connection),
        |(next, mut receiver, connection)| async move {
            let version = match next {
                Some(version) => version,
                None => loop {
                    match receiver.recv().await {
                        Ok(version) => break version,
                        // Fell behind: the newest poke says all the skipped ones said.
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    }
                },
            };
            Metrics::add(&connection.state.metrics.pokes_sent, 1);
            let poke = ServerEvent::Poke {
                cookie: Some(Cookie::Integer(version)),
            };
            let event = Event::default().data(serde_json::to_string(&poke).expect("serializes"));
            Some((Ok(event), (None, receiver, connection)))
        },
    );
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keepalive"),
    ))
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
