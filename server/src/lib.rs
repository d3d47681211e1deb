//! The reference sync server as a library: [`ServerState::start`] opens the
//! store, [`app`] builds the router, so tests drive it with `oneshot`
//! requests and no socket, and an app with custom needs embeds it;
//! [`serve`] runs it on a socket with a graceful stop.
//!
//! Routes: `POST /sync/push`, `POST /sync/pull`, `GET /sync/events`
//! (realtime, SSE), `/healthz`, `/metrics`, and in demo mode `/demo/*`
//! (see [`demo`]) plus the built demo site at `/`.

pub mod auth;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod rate_limit;
mod realtime;
pub mod store;
pub mod sync;
mod sync_routes;
mod tls;

pub use auth::Auth;
pub use error::AppError;
pub use store::{Pokes, Store, StoreError, StoreOptions};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use ferrydb_protocol::AppDefinition;
use metrics::Metrics;
use rate_limit::RateLimiter;
use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// Limits that keep one client from exhausting the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes (413 `too_large` beyond).
    pub body_bytes: usize,
    /// Most mutations in one push (413 `too_large` beyond).
    pub push_batch: usize,
    /// Most open realtime connections (503 `unavailable` beyond).
    pub realtime_connections: usize,
    /// Rows per page of an initial sync.
    pub page_size: usize,
    /// Sync requests (push, pull, realtime connects) per second per user,
    /// sustained; 0 = no limit (429 `rate_limited` beyond).
    pub requests_per_second: u32,
    /// How many requests a user may make at once before the rate applies.
    pub request_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 4 << 20,
            push_batch: 1000,
            realtime_connections: 10_000,
            page_size: 5000,
            // An honest client makes a few requests a second, more only while
            // paging an initial sync; this leaves room for many tabs' worth.
            requests_per_second: 50,
            request_burst: 200,
        }
    }
}

pub struct Config {
    pub auth: Auth,
    pub limits: Limits,
    /// A built demo site to serve at `/` (the `npm run demo` build), if any.
    pub static_dir: Option<PathBuf>,
    /// Enables the `/demo/*` switches. Never in production.
    pub demo: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            auth: Auth::Dev,
            limits: Limits::default(),
            static_dir: None,
            demo: false,
        }
    }
}

pub struct ServerState {
    pub config: Config,
    /// `None`: no app definition was given; only static files are served.
    pub store: Option<Store>,
    /// The app defines queries: pulls speak protocol v2 (sync by
    /// subscription) and v1 pulls are refused; otherwise pulls speak v1.
    pub pulls_by_subscription: bool,
    pub pokes: Pokes,
    /// This instance's v2 realtime channels and how pokes route among them.
    pub routes: realtime::Routes,
    pub metrics: Metrics,
    pub switches: demo::Switches,
    pub rate: RateLimiter,
    /// `true` once the server is shutting down (see [`serve`]).
    closing: watch::Sender<bool>,
}

impl ServerState {
    /// Opens the store at `store_url` for `app` (see [`store::open`]).
    pub async fn start(
        config: Config,
        app: Option<(AppDefinition, &str)>,
    ) -> Result<Arc<ServerState>, StoreError> {
        let pokes = Pokes::new();
        let pulls_by_subscription = app.as_ref().is_some_and(|(app, _)| !app.queries.is_empty());
        let store = match app {
            Some((app, url)) => {
                let options = StoreOptions {
                    page_size: config.limits.page_size,
                    pokes: pokes.clone(),
                };
                Some(store::open(url, app, options).await?)
            }
            None => None,
        };
        Ok(Arc::new(ServerState {
            store,
            pulls_by_subscription,
            pokes,
            routes: realtime::Routes::default(),
            metrics: Metrics::default(),
            switches: demo::Switches::default(),
            rate: RateLimiter::new(
                config.limits.requests_per_second,
                config.limits.request_burst,
            ),
            config,
            closing: watch::Sender::new(false),
        }))
    }

    /// Starts the shutdown: realtime streams end (with a retry hint) and new
    /// ones are refused; requests in flight go on.
    pub fn shut_down(&self) {
        self.closing.send_replace(true);
    }

    fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// The user a sync request comes from, once it is authenticated and
    /// within that user's request budget.
    async fn authorize(&self, headers: &HeaderMap) -> Result<String, AppError> {
        let user = self.config.auth.user(headers).await?;
        self.rate
            .take(&user, Instant::now())
            .map_err(AppError::rate_limited)?;
        Ok(user)
    }

    fn sync_store(&self) -> Result<&Store, AppError> {
        self.store.as_ref().ok_or_else(|| {
            AppError::unavailable("this server was started without an app definition (--app)")
        })
    }
}

/// Serves [`app`] on `listener` until `signal` resolves, then shuts down
/// gracefully: no new connections, realtime streams end with a retry hint
/// ([`ServerState::shut_down`]), requests in flight (a push being committed)
/// finish and are answered. Returns when they have, or after `grace` at the
/// latest, so a stuck client cannot hold up a deploy.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    signal: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (begun, begun_rx) = oneshot::channel();
    let closing = state.clone();
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            signal.await;
            closing.shut_down();
            let _ = begun.send(());
        })
        .into_future();
    let deadline = async {
        match begun_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The server ended before any signal.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still open at the end of the shutdown grace; closing them");
            Ok(())
        }
    }
}

pub fn app(state: Arc<ServerState>) -> Router {
    let mut sync = Router::new()
        .route("/sync/push", post(sync_routes::push))
        .route("/sync/pull", post(sync_routes::pull))
        .route("/sync/events", get(realtime::events))
        .layer(DefaultBodyLimit::max(state.config.limits.body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_failures,
        ));
    if state.config.demo {
        sync = sync.layer(middleware::from_fn_with_state(state.clone(), demo::inject));
    }
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(sync);
    if state.config.demo {
        router = router
            .route("/demo/faults", get(demo::get_faults).post(demo::set_faults))
            .route("/demo/mutations", get(demo::mutations))
            .route("/demo/clear-site-data", post(demo::clear_site_data));
    }
    let mut router = router.with_state(state.clone());
    if let Some(dir) = &state.config.static_dir {
        // `no-cache` = revalidate every time (never a stale build), but a file that
        // has not changed is not downloaded again and the browser keeps its
        // compiled wasm: what a returning visitor of a real deployment gets.
        let files = ServeDir::new(dir).append_index_html_on_directories(true);
        router = router
            .route("/demo", get(|| async { Redirect::permanent("/") }))
            .fallback_service(files)
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            ))
            // Cross-origin isolation gives pages 5 µs timers instead of 100 µs, which
            // the benchmark and the demo's latency readout need; ferrydb itself
            // works without it.
            .layer(SetResponseHeaderLayer::overriding(
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                HeaderName::from_static("cross-origin-embedder-policy"),
                HeaderValue::from_static("require-corp"),
            ));
    }
    router
}

async fn count_failures(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        Metrics::add(&state.metrics.failed_requests, 1);
    }
    response
}

async fn healthz(State(state): State<Arc<ServerState>>) -> Response {
    match &state.store {
        Some(store) => match store.version().await {
            Ok(_) => (StatusCode::OK, "ok").into_response(),
            Err(e) => AppError::from(e).into_response(),
        },
        None => (StatusCode::OK, "ok").into_response(),
    }
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(state.store.as_ref(), &state.pokes),
    )
        .into_response()
}
