//! Demo mode (`--demo`): switches for watching sync under trouble, and the
//! server's mutation log. Never enabled in production: anyone can flip them.
//!
//! - `POST /demo/faults` `{"failStatus": 500 | null, "latencyMs": 0, "hold":
//!   false}`: while `failStatus` is set, every `/sync/*` request answers that
//!   status; `latencyMs` delays each one (the demo's "slow server"); while
//!   `hold` is set, each one waits (after the delay) until it is cleared, so
//!   a test can crash the server with requests certainly in flight.
//! - `GET /demo/mutations`: every time a mutation was processed, in order.
//! - `POST /demo/clear-site-data`: answers `Clear-Site-Data: "storage"`, so
//!   the browser deletes the site's stored data under the running app (as a
//!   user clearing it would), in any browser: a test's way to clear storage.

use crate::error::AppError;
use crate::ServerState;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub fail_status: Option<u16>,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub hold: bool,
}

#[derive(Default)]
pub struct Switches {
    faults: Mutex<Faults>,
    /// Wakes the requests held while `hold` was set.
    changed: Notify,
}

impl Switches {
    fn get(&self) -> Faults {
        *self.faults.lock().expect("faults lock")
    }

    fn set(&self, faults: Faults) {
        *self.faults.lock().expect("faults lock") = faults;
        self.changed.notify_waiters();
    }

    /// Returns once `hold` is clear.
    async fn released(&self) {
        loop {
            // Registered before the check, so a change in between still wakes it.
            let changed = self.changed.notified();
            if !self.get().hold {
                return;
            }
            changed.await;
        }
    }
}

pub async fn set_faults(
    State(state): State<Arc<ServerState>>,
    Json(faults): Json<Faults>,
) -> Result<Json<Faults>, AppError> {
    if let Some(status) = faults.fail_status {
        if StatusCode::from_u16(status)
            .map_or(true, |s| !s.is_client_error() && !s.is_server_error())
        {
            return Err(AppError::bad_request(
                "failStatus must be a 4xx or 5xx status",
            ));
        }
    }
    state.switches.set(faults);
    tracing::info!(?faults, "demo faults set");
    Ok(Json(faults))
}

pub async fn get_faults(State(state): State<Arc<ServerState>>) -> Json<Faults> {
    Json(state.switches.get())
}

#[derive(Serialize)]
pub struct MutationLog {
    mutations: Vec<crate::store::LoggedMutation>,
}

pub async fn mutations(
    State(state): State<Arc<ServerState>>,
) -> Result<Json<MutationLog>, AppError> {
    let mutations = state.sync_store()?.mutation_log().await?;
    Ok(Json(MutationLog { mutations }))
}

/// `POST /demo/clear-site-data`: the browser clears the site's storage (OPFS,
/// IndexedDB, local storage) on receiving this answer.
pub async fn clear_site_data() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [(HeaderName::from_static("clear-site-data"), "\"storage\"")],
    )
}

/// Applies the switches to a `/sync/*` request.
pub async fn inject(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    let faults = state.switches.get();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    state.switches.released().await;
    let faults = state.switches.get();
    if let Some(status) = faults
        .fail_status
        .and_then(|s| StatusCode::from_u16(s).ok())
    {
        return AppError::injected(status).into_response();
    }
    next.run(request).await
}
