//! `POST /sync/push` and `POST /sync/pull`: authenticate, parse with limits,
//! hand to the store, count. The store decides everything about the data.

use crate::error::AppError;
use crate::metrics::Metrics;
use crate::ServerState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrydb_protocol::{
    MutationResult, PullRequest, PullResponse, PushRequest, PushResponse, NEXT_COOKIE_HEADER,
    PROTOCOL_VERSION, PROTOCOL_VERSION_SUBSCRIPTIONS,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;

pub async fn push(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushResponse>, AppError> {
    let metrics = &state.metrics;
    Metrics::add(&metrics.push_requests, 1);
    let user = state.authorize(&headers).await?;
    let request: PushRequest = parse(body)?;
    let names = request.mutations.iter().flat_map(|m| {
        let arg_names = m.args.as_object().into_iter().flat_map(|args| args.keys());
        std::iter::once(&m.name).chain(arg_names)
    });
    no_nul(
        [&request.client_id, &request.client_group_id]
            .into_iter()
            .chain(names),
    )?;
    let limit = state.config.limits.push_batch;
    if request.mutations.len() > limit {
        return Err(AppError::too_large(format!(
            "a push may carry at most {limit} mutations, this one has {}",
            request.mutations.len()
        )));
    }
    let started = Instant::now();
    let response = state.sync_store()?.push(&user, request).await?;
    metrics.push_duration.observe(started.elapsed());
    if let PushResponse::Ok { results } = &response {
        for result in results {
            let counter = match result {
                MutationResult::Ok { .. } => &metrics.mutations_ok,
                MutationResult::AlreadyProcessed { .. } => &metrics.mutations_already_processed,
                MutationResult::Rejected { .. } => &metrics.mutations_rejected,
            };
            Metrics::add(counter, 1);
        }
    }
    Ok(Json(response))
}

/// Serialized here rather than by `Json`, to count the bytes sent.
pub async fn pull(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let metrics = &state.metrics;
    Metrics::add(&metrics.pull_requests, 1);
    let user = state.authorize(&headers).await?;
    let request: PullRequest = parse(body)?;
    no_nul([&request.client_id, &request.client_group_id])?;
    pull_version(state.pulls_by_subscription, &request)?;
    let started = Instant::now();
    let response = state.sync_store()?.pull(&user, request).await?;
    metrics.pull_duration.observe(started.elapsed());
    if let PullResponse::Ok(ok) = &response {
        Metrics::add(&metrics.pull_rows, ok.patch.len() as u64);
    }
    let body = serde_json::to_vec(&response)
        .map_err(|e| AppError::internal(format!("cannot serialize a pull response: {e}")))?;
    Metrics::add(&metrics.pull_bytes, body.len() as u64);
    let mut answer = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(next) = next_cookie(&response) {
        answer.headers_mut().insert(NEXT_COOKIE_HEADER, next);
    }
    Ok(answer)
}

/// The `ferry-next-cookie` hint of a page with `more`: its cookie as JSON,
/// in ASCII (a header value is), every other character escaped.
fn next_cookie(response: &PullResponse) -> Option<HeaderValue> {
    let PullResponse::Ok(page) = response else {
        return None;
    };
    if !page.more {
        return None;
    }
    let json = serde_json::to_string(&page.cookie).ok()?;
    let mut ascii = String::with_capacity(json.len());
    for c in json.chars() {
        // Outside strings JSON is ASCII, so only string characters are
        // escaped; DEL is ASCII but no header character.
        if c.is_ascii() && c != '\x7f' {
            ascii.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    HeaderValue::from_str(&ascii).ok()
}

/// Which protocol a pull must speak: v2 when the app defines queries (they
/// are then the read permissions, and a v1 pull would bypass them), v1
/// otherwise (nothing to subscribe to). Pushes are the same in both.
fn pull_version(by_subscription: bool, request: &PullRequest) -> Result<(), AppError> {
    match (by_subscription, request.protocol_version) {
        (true, PROTOCOL_VERSION_SUBSCRIPTIONS) if request.subscriptions.is_none() => Err(
            AppError::bad_request("a protocol 2 pull lists its `subscriptions` (`[]` for none)"),
        ),
        (true, PROTOCOL_VERSION_SUBSCRIPTIONS) | (false, PROTOCOL_VERSION) => Ok(()),
        (true, got) => Err(AppError::protocol_version(format!(
            "this server syncs by subscription (sync protocol {PROTOCOL_VERSION_SUBSCRIPTIONS}); \
             a protocol {got} client cannot pull from it: update the client"
        ))),
        (false, got) => Err(AppError::protocol_version(format!(
            "this server's app defines no queries: its pulls speak sync protocol \
             {PROTOCOL_VERSION}, not {got}"
        ))),
    }
}

/// Parses a request body: too large → 413, not JSON or the wrong shape →
/// 400 `bad_request`, a protocol version this server does not speak → 400
/// `protocol_version` (checked first, so a future client learns why even if
/// its shape changed). Pushes are the same in protocols 1 and 2.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, AppError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::too_large("the request body is larger than this server accepts")
        } else {
            AppError::bad_request(rejection.body_text())
        }
    })?;
    #[derive(Deserialize)]
    struct Versioned {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<u32>,
    }
    let versioned: Versioned = serde_json::from_slice(&bytes)
        .map_err(|e| AppError::bad_request(format!("the body is not a JSON object: {e}")))?;
    match versioned.protocol_version {
        Some(PROTOCOL_VERSION | PROTOCOL_VERSION_SUBSCRIPTIONS) => {}
        Some(other) => {
            return Err(AppError::protocol_version(format!(
                "this server speaks sync protocols {PROTOCOL_VERSION} and \
                 {PROTOCOL_VERSION_SUBSCRIPTIONS}, not {other}"
            )))
        }
        None => return Err(AppError::bad_request("missing protocolVersion")),
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::bad_request(format!("malformed request: {e}")))
}

/// Refuses names that carry a NUL character: client IDs, mutator and
/// argument names are stored (or quoted in a stored rejection) as text, and
/// Postgres text cannot hold NUL, so the Postgres store failed on them
/// (500) where SQLite did not. Refused here, every store answers alike. The
/// SDK never sends one: it makes its client IDs, and checks mutator and
/// argument names before it queues a mutation.
fn no_nul<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<(), AppError> {
    match names.into_iter().find(|name| name.contains('\0')) {
        Some(name) => Err(AppError::bad_request(format!(
            "{name:?}: names may not contain NUL characters"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrydb_protocol::{Cookie, PullOk};

    fn page(cookie: &str, more: bool) -> PullResponse {
        PullResponse::Ok(PullOk {
            cookie: Cookie::Text(cookie.into()),
            last_mutation_id_changes: Default::default(),
            patch: Vec::new(),
            more,
            subscriptions: Vec::new(),
        })
    }

    /// Any key can be in a cookie: the header says it in ASCII, and reads
    /// back as the same cookie.
    #[test]
    fn the_next_cookie_header_is_ascii_json_of_the_cookie_whatever_its_characters() {
        let cookie = "rows:1:2:[\"ü\u{1F600}\u{7f}\\\"\"]";
        let header = next_cookie(&page(cookie, true)).expect("a header");
        let text = header.to_str().unwrap();
        assert!(text.is_ascii() && !text.contains('\u{7f}'), "{text}");
        let read: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(read, serde_json::Value::String(cookie.into()));
        assert_eq!(
            next_cookie(&page(cookie, false)),
            None,
            "no more: no header"
        );
    }
}
