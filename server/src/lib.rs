//! The reference server as a library: `app(config)` builds the router, so tests
//! drive it with `oneshot` requests and no socket.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use std::path::PathBuf;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

#[derive(Clone, Debug, Default)]
pub struct Config {
    /// A built demo site to serve at `/` (the `npm run demo` build), if any.
    pub static_dir: Option<PathBuf>,
}

pub fn app(config: &Config) -> Router {
    let mut router = Router::new().route("/healthz", get(healthz));
    if let Some(dir) = &config.static_dir {
        // `no-cache` = revalidate every time (never a stale build), but a file that
        // has not changed is not downloaded again and the browser keeps its
        // compiled wasm: what a returning visitor of a real deployment gets.
        let files = ServeDir::new(dir).append_index_html_on_directories(true);
        router = router
            .route("/demo", get(|| async { Redirect::permanent("/") }))
            .fallback_service(files)
            .layer(SetResponseHeaderLayer::overriding(
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

async fn healthz() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(app: Router, uri: &str) -> (StatusCode, Option<String>, String) {
        let res = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let mime = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, mime, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_answers_ok() {
        let (status, _, body) = get(app(&Config::default()), "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }

    #[tokio::test]
    async fn serves_the_demo_site_with_the_wasm_mime_type() {
        let dir = std::env::temp_dir().join(format!("ferrydb-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>demo</h1>").unwrap();
        std::fs::write(dir.join("x.wasm"), b"\0asm").unwrap();
        let app = app(&Config {
            static_dir: Some(dir.clone()),
        });
        let (status, _, body) = get(app.clone(), "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<h1>demo</h1>"));
        let (_, mime, _) = get(app.clone(), "/x.wasm").await;
        assert_eq!(mime.as_deref(), Some("application/wasm"));
        let (status, _, _) = get(app, "/missing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
