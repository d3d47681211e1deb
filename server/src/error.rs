//! The one place that decides what a client sees when a request fails: an
//! HTTP status and an `ErrorBody` with a stable code. Internal details are
//! logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrydb_protocol::ErrorBody;
use std::time::Duration;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<Duration>,
}

impl AppError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn protocol_version(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "protocol_version", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        AppError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many sync requests from this user; retry later",
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Any status, for demo-mode fault injection.
    pub fn injected(status: StatusCode) -> Self {
        let code = if status.is_server_error() {
            "unavailable"
        } else {
            "bad_request"
        };
        Self::new(status, code, "fault injected by the demo's server switch")
    }

    /// Whether the same request can succeed later.
    pub fn retryable(&self) -> bool {
        self.status.is_server_error()
            || self.status == StatusCode::UNAUTHORIZED
            || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError::*;
        match e {
            Forbidden(message) => AppError::forbidden(message),
            Unavailable(message) => AppError::unavailable(message),
            InvalidApp(message) | Internal(message) => AppError::internal(message),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let retryable = self.retryable();
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(message = %self.message, "request failed");
            "internal server error".to_owned()
        } else {
            tracing::debug!(code = self.code, message = %self.message, "request refused");
            self.message
        };
        let body = ErrorBody {
            code: self.code.to_owned(),
            message,
            retryable,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
