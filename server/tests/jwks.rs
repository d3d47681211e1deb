//! Bearer tokens verified with keys from a JWKS URL, against a real JWKS
//! server on 127.0.0.1 started by each test: RS256 and ES256 keys chosen by
//! `kid`, a key rotation, unknown `kid`s and the bounded refresh rate, issuer
//! and audience checks, and the JWKS server down. Keys are fixtures
//! (`tests/fixtures/jwks/`: private PEMs to sign with, public JWKs to serve).

mod common;

use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::{Json, Router};
use common::*;
use ferrydb_server::auth::jwks::JwksOptions;
use ferrydb_server::{AppError, Auth, Config};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "ferrydb-tests";

fn jwk(name: &str) -> Value {
    let path = repo().join(format!("server/tests/fixtures/jwks/{name}.jwk.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JWKS server whose key set a test can change, counting its fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(keys: &[&str]) -> JwksServer {
        let keys = Arc::new(Mutex::new(keys.iter().map(|k| jwk(k)).collect()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        let router = Router::new().route(
            "/.well-known/jwks.json",
            get(move || async move {
                counted.fetch_add(1, SeqCst);
                Json(json!({ "keys": *served.lock().unwrap() }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        JwksServer {
            url,
            keys,
            fetches,
            stop: Some(stop),
            task,
        }
    }

    fn serve(&self, keys: &[&str]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| jwk(k)).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(SeqCst)
    }

    /// Stops listening: later fetches are refused connections.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

/// Verifies against `url`, every unknown `kid` fetching again (or never
/// more than once an hour with `bounded`), expecting our issuer and audience.
fn verifier(url: &str, bounded: bool) -> Auth {
    let options = JwksOptions {
        min_refresh: if bounded {
            Duration::from_secs(3600)
        } else {
            Duration::ZERO
        },
        ..JwksOptions::default()
    };
    Auth::jwks(url, options)
        .unwrap()
        .expecting(Some(ISSUER), Some(AUDIENCE))
        .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `alice` signed with the fixture key `signer`, naming `kid`.
fn token_with(signer: &str, kid: &str, claims: Value) -> String {
    let pem =
        std::fs::read(repo().join(format!("server/tests/fixtures/jwks/{signer}.pem"))).unwrap();
    let (algorithm, key) = if signer.starts_with("ec") {
        (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap())
    } else {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap())
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    encode(&header, &claims, &key).unwrap()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE})
}

fn token(signer: &str) -> String {
    token_with(signer, signer, claims())
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {token}").parse().unwrap();
    headers.insert(header::AUTHORIZATION, value);
    headers
}

async fn refused(auth: &Auth, token: &str) -> AppError {
    auth.user(&bearer(token))
        .await
        .expect_err("the token must be refused")
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_the_key_their_kid_names() {
    let idp = JwksServer::start(&["rsa-1", "ec-1"]).await;
    let auth = verifier(&idp.url, true);
    for signer in ["rsa-1", "ec-1"] {
        assert_eq!(auth.user(&bearer(&token(signer))).await.unwrap(), "alice");
    }
    // One fetch served both keys and every later token.
    assert_eq!(idp.fetches(), 1);
    // Signed by another key than the one its kid names: forged.
    let forged = token_with("rsa-2", "rsa-1", claims());
    assert_eq!(refused(&auth, &forged).await.status, 401);
    // An HS256 token "signed" with the RSA key's public text: the key's type
    // decides the algorithm, so it is refused.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(jwk("rsa-1")["n"].as_str().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(refused(&auth, &confused).await.status, 401);
    // No kid: there is no key to choose.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let pem = std::fs::read(repo().join("server/tests/fixtures/jwks/rsa-1.pem")).unwrap();
    let no_kid = encode(
        &header,
        &claims(),
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    assert_eq!(refused(&auth, &no_kid).await.status, 401);
    idp.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token_and_the_withdrawn_one_stops_working() {
    let idp = JwksServer::start(&["rsa-1"]).await;
    let auth = verifier(&idp.url, false);
    assert_eq!(auth.user(&bearer(&token("rsa-1"))).await.unwrap(), "alice");
    idp.serve(&["rsa-2"]);
    // The cached rsa-1 still verifies until the set is fetched again.
    assert_eq!(auth.user(&bearer(&token("rsa-1"))).await.unwrap(), "alice");
    assert_eq!(idp.fetches(), 1);
    assert_eq!(auth.user(&bearer(&token("rsa-2"))).await.unwrap(), "alice");
    assert_eq!(idp.fetches(), 2);
    let err = refused(&auth, &token("rsa-1")).await;
    assert_eq!((err.status.as_u16(), err.code), (401, "unauthorized"));
    idp.stop().await;
}

#[tokio::test]
async fn an_unknown_kid_is_refused_and_refetches_at_most_once_per_interval() {
    let idp = JwksServer::start(&["rsa-1"]).await;
    let auth = verifier(&idp.url, true);
    assert_eq!(auth.user(&bearer(&token("rsa-1"))).await.unwrap(), "alice");
    for kid in ["nobody", "ghost", "rsa-2"] {
        let err = refused(&auth, &token_with("rsa-2", kid, claims())).await;
        assert_eq!((err.status.as_u16(), err.code), (401, "unauthorized"));
        assert!(err.message.contains(kid), "{}", err.message);
    }
    // Within the hour since the first fetch, made-up kids fetch nothing.
    assert_eq!(idp.fetches(), 1);
    // With no bound, an unknown kid fetches (and is still refused).
    let unbounded = auth_unbounded_after_first(&idp).await;
    assert_eq!(
        refused(&unbounded, &token_with("rsa-2", "ghost", claims()))
            .await
            .status,
        401
    );
    assert_eq!(idp.fetches(), 3);
    idp.stop().await;
}

/// An unbounded verifier that has already fetched once.
async fn auth_unbounded_after_first(idp: &JwksServer) -> Auth {
    let auth = verifier(&idp.url, false);
    auth.user(&bearer(&token("rsa-1"))).await.unwrap();
    auth
}

#[tokio::test]
async fn a_wrong_or_missing_issuer_or_audience_is_refused() {
    let idp = JwksServer::start(&["ec-1"]).await;
    let auth = verifier(&idp.url, true);
    let exp = now() + 600;
    for claims in [
        json!({"sub": "alice", "exp": exp, "iss": "https://evil.example", "aud": AUDIENCE}),
        json!({"sub": "alice", "exp": exp, "iss": ISSUER, "aud": "another-app"}),
        json!({"sub": "alice", "exp": exp, "aud": AUDIENCE}),
        json!({"sub": "alice", "exp": exp, "iss": ISSUER}),
        json!({"sub": "alice", "exp": now() - 600, "iss": ISSUER, "aud": AUDIENCE}),
    ] {
        let err = refused(&auth, &token_with("ec-1", "ec-1", claims.clone())).await;
        assert_eq!(err.status, 401, "{claims}");
    }
    // An audience list that includes ours is fine.
    let listed = json!({"sub": "alice", "exp": exp, "iss": ISSUER, "aud": ["other", AUDIENCE]});
    let user = auth
        .user(&bearer(&token_with("ec-1", "ec-1", listed)))
        .await;
    assert_eq!(user.unwrap(), "alice");
    idp.stop().await;
}

#[tokio::test]
async fn with_the_jwks_server_down_no_token_is_admitted() {
    // Never reachable: the first fetch fails, and the token is refused as
    // unavailable (retryable), not admitted and not a sign-in problem.
    let idp = JwksServer::start(&["rsa-1"]).await;
    let url = idp.url.clone();
    idp.stop().await;
    let auth = verifier(&url, false);
    for signer in ["rsa-1", "ec-1"] {
        let err = refused(&auth, &token(signer)).await;
        assert_eq!((err.status.as_u16(), err.code), (503, "unavailable"));
        assert!(err.message.contains("cannot fetch"), "{}", err.message);
    }
    assert!(auth.prefetch().await.is_err());

    // Down after a fetch: cached keys keep verifying; a kid not among them
    // cannot be checked, so it is refused.
    let idp = JwksServer::start(&["rsa-1"]).await;
    let auth = verifier(&idp.url, false);
    auth.prefetch().await.unwrap();
    idp.stop().await;
    assert_eq!(auth.user(&bearer(&token("rsa-1"))).await.unwrap(), "alice");
    let err = refused(&auth, &token("ec-1")).await;
    assert_eq!((err.status.as_u16(), err.code), (503, "unavailable"));
}

#[tokio::test]
async fn a_sync_push_is_authorized_by_a_jwks_token() {
    let idp = JwksServer::start(&["ec-1"]).await;
    let config = Config {
        auth: verifier(&idp.url, true),
        ..Config::default()
    };
    let server = server("memory", app_def(&app_json()), config).await;
    let push = push_body(
        "c",
        &[(
            1,
            "createList",
            json!({"id": "l", "owner": "alice", "name": "x"}),
        )],
    );
    let reply = server.post("/sync/push", &token("ec-1"), &push).await;
    assert_eq!(codes(&reply), ["ok"]);
    let reply = server.post("/sync/push", &token("rsa-1"), &push).await;
    assert_eq!(reply.status, 401);
    idp.stop().await;
}
