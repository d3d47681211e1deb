//! One small HTTP(S) GET, for the identity provider's JWKS: hyper's HTTP/1
//! client over a TCP connection, wrapped in rustls for `https` (certificate
//! verified against Mozilla's roots and the host name). A connection per
//! fetch: fetches are rare (bounded by the JWKS refresh rate), so a pool
//! would only hold idle sockets.

use axum::http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// A JWKS is a few keys; anything far larger is not one.
const MAX_BODY: usize = 1 << 20;
/// Connect, TLS, request and body together: a hung identity provider must
/// not hold a sync request for long (the request fails as unavailable).
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct Fetcher {
    tls: TlsConnector,
}

impl Fetcher {
    pub fn new() -> Fetcher {
        let config = crate::tls::client_config(crate::tls::mozilla_roots())
            .expect("ring supports the default TLS versions");
        Fetcher {
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// The body of a `200 OK` answer to `GET uri`; anything else is an error
    /// message naming what went wrong (never the body).
    pub async fn get(&self, uri: &Uri) -> Result<Bytes, String> {
        tokio::time::timeout(TIMEOUT, self.get_now(uri))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", TIMEOUT.as_secs())))
    }

    async fn get_now(&self, uri: &Uri) -> Result<Bytes, String> {
        let host = uri.host().ok_or("the URL has no host")?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the URL is neither http:// nor https://".into()),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // `[::1]` in a URL is `::1` to the resolver.
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((bare_host, port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, uri.authority().map_or(host, |a| a.as_str()))
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        if https {
            let name = ServerName::try_from(bare_host.to_owned())
                .map_err(|e| format!("not a TLS server name: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(tls, request).await
        } else {
            exchange(tcp, request).await
        }
    }
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new()
    }
}

async fn exchange<S>(io: S, request: Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // Driven here rather than spawned, so a timeout that drops this future
    // drops the socket with it.
    let fetch = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(body.to_bytes())
    };
    tokio::pin!(connection);
    tokio::select! {
        result = fetch => result,
        // A connection that ends cleanly first leaves the answer to `fetch`.
        Err(e) = &mut connection => Err(format!("HTTP: {e}")),
    }
}
