//! A graceful stop over real sockets, on every store: a push in flight when
//! the stop begins is committed and answered, an open realtime stream ends
//! at once with a retry hint, and the grace period bounds the wait for a
//! client that never finishes its request.
//!
//! "In flight" without sleeping: the push is sent with `Expect:
//! 100-continue` and its body held back; the server answers `100 Continue`
//! only once the push handler reads the body, so when the test has read it,
//! the request is being handled. The body follows after the stream's end
//! shows the stop has begun.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use ferrydb_server::{serve, Config, ServerState};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// The longest any awaited event may take before the test fails (a bound,
/// not a timing assertion: each event comes at once when all is well).
const BOUND: Duration = Duration::from_secs(30);

struct Running {
    state: Arc<ServerState>,
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(url: &str, grace: Duration) -> Running {
    let state = ServerState::start(Config::default(), Some((app_def(&app_json()), url)))
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let signal = async {
        let _ = stopped.await;
    };
    let served = tokio::spawn(serve(listener, state.clone(), signal, grace));
    Running {
        state,
        addr,
        stop,
        served,
    }
}

/// Reads from `stream` into `seen` until it contains `needle`.
async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let found = |seen: &[u8]| String::from_utf8_lossy(seen).contains(needle);
    let read = async {
        while !found(seen) {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the connection closed before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(BOUND, read).await.unwrap_or_else(|_| {
        panic!(
            "no {needle:?} within {BOUND:?}: {}",
            String::from_utf8_lossy(seen)
        )
    });
}

/// Opens a realtime stream as `alice` and reads its first poke.
async fn realtime(addr: std::net::SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = "GET /sync/events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer alice\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "data:").await;
    (stream, seen)
}

/// Sends a push's headers with `Expect: 100-continue` and waits for the
/// server to ask for the body; returns the connection and the body.
async fn push_in_flight(addr: std::net::SocketAddr) -> (TcpStream, Vec<u8>) {
    let body = push_body(
        "c",
        &[(
            1,
            "createList",
            json!({"id": "l", "owner": "alice", "name": "x"}),
        )],
    )
    .to_string()
    .into_bytes();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /sync/push HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer alice\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    read_until(&mut stream, &mut Vec::new(), "100 Continue\r\n\r\n").await;
    (stream, body)
}

#[tokio::test]
async fn a_push_in_flight_finishes_and_realtime_streams_end_with_a_retry_hint() {
    for url in store_urls().await {
        let server = start(&url, BOUND).await;
        let (mut events, mut seen_events) = realtime(server.addr).await;
        let (mut push, body) = push_in_flight(server.addr).await;
        let store = server.state.store.as_ref().unwrap();
        let before = store.version().await.unwrap();

        server.stop.send(()).unwrap();
        // The stream ends (the last chunk of a chunked body) after a retry hint.
        read_until(&mut events, &mut seen_events, "\r\n0\r\n\r\n").await;
        let text = String::from_utf8_lossy(&seen_events);
        assert!(text.contains("retry: 2000"), "{url}: {text}");

        // The push finishes: committed and answered.
        push.write_all(&body).await.unwrap();
        let mut reply = Vec::new();
        read_until(&mut push, &mut reply, "}]}").await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{url}: {reply}");
        assert!(reply.contains(r#""type":"ok""#), "{url}: {reply}");
        assert!(store.version().await.unwrap() > before, "{url}");

        // With nothing left in flight, the server is done.
        tokio::time::timeout(BOUND, server.served)
            .await
            .expect("the server stopped")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn the_grace_period_bounds_a_stop_that_a_stuck_request_would_hold() {
    let server = start("memory", Duration::from_millis(50)).await;
    // A push whose body never comes.
    let (_stuck, _body) = push_in_flight(server.addr).await;
    server.stop.send(()).unwrap();
    tokio::time::timeout(BOUND, server.served)
        .await
        .expect("the server stopped within the grace period")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_stopping_server_refuses_new_realtime_streams() {
    let server = sample_server("memory").await;
    server.state.shut_down();
    let request = Request::get("/sync/events")
        .header(header::AUTHORIZATION, "Bearer alice")
        .body(Body::empty())
        .unwrap();
    let response = server.router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}
