//! Keys from the identity provider's JWKS URL (Clerk, Auth0, Supabase …
//! publish one and rotate the keys in it). A token names its key by `kid`;
//! the key's type decides the one algorithm it verifies (RSA → RS256,
//! EC P-256 → ES256), so a token cannot pick a weaker one.
//!
//! The set is cached. It is fetched again when a token names a `kid` the
//! cache lacks (a rotation) or the cache is older than `max_age` (so a
//! withdrawn key stops working), but never more often than once per
//! `min_refresh`: a stream of made-up `kid`s cannot turn the server into a
//! load generator against the provider. Fetches are single-flight: requests
//! that miss together wait for one fetch.
//!
//! A failed fetch never admits a token. It keeps the keys already cached
//! (a provider outage does not log everyone out); a token whose key is not
//! among them is refused as `unavailable` (503, retryable: the client backs
//! off and tries again, rather than asking its user to sign in again).

use super::fetch::Fetcher;
use crate::error::AppError;
use axum::http::Uri;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct JwksOptions {
    /// Least time between two fetches.
    pub min_refresh: Duration,
    /// Cached keys older than this are fetched again before use (a failed
    /// fetch keeps them).
    pub max_age: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        // Ten seconds is what Auth0's and Clerk's SDKs allow between fetches on
        // an unknown `kid` (about 10 a minute); ten minutes is the cache age
        // the providers' own verifying libraries use.
        JwksOptions {
            min_refresh: Duration::from_secs(10),
            max_age: Duration::from_secs(600),
        }
    }
}

/// A verifying key and the one algorithm it accepts.
#[derive(Clone)]
pub struct Key {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

pub struct Jwks {
    url: Uri,
    fetcher: Fetcher,
    options: JwksOptions,
    cache: RwLock<Cache>,
    /// When the last fetch started; held across the fetch (single flight).
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<Key>>,
    /// When the keys were fetched; `None` until a fetch has succeeded.
    fetched: Option<Instant>,
}

impl Jwks {
    pub fn new(url: &str, options: JwksOptions) -> Result<Jwks, String> {
        let url: Uri = url
            .parse()
            .map_err(|e| format!("--jwks-url {url:?}: {e}"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(format!("--jwks-url {url}: not an http(s) URL"));
        }
        Ok(Jwks {
            url,
            fetcher: Fetcher::new(),
            options,
            cache: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The key `kid` names, fetching the set first if it is unknown or the
    /// cache is old and the refresh rate allows.
    pub async fn key(&self, kid: &str) -> Result<Arc<Key>, AppError> {
        if let Some(key) = self.cached(kid, true) {
            return Ok(key);
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.cached(kid, true) {
            return Ok(key);
        }
        let now = Instant::now();
        let may_fetch = last_fetch.is_none_or(|t| now >= t + self.options.min_refresh);
        let failure = if may_fetch {
            *last_fetch = Some(now);
            self.refresh(now).await.err()
        } else {
            None
        };
        drop(last_fetch);
        // After a fetch, or when none was allowed: a stale key still serves.
        if let Some(key) = self.cached(kid, false) {
            return Ok(key);
        }
        let fetched = self.cache.read().expect("JWKS cache").fetched.is_some();
        match failure {
            Some(e) => Err(AppError::unavailable(format!(
                "cannot fetch the identity provider's keys: {e}"
            ))),
            None if fetched => Err(AppError::unauthorized(format!(
                "the token's key {kid:?} is not in the identity provider's key set"
            ))),
            // A fetch failed earlier and the rate bounds a new one.
            None => Err(AppError::unavailable(
                "the identity provider's keys are not available yet",
            )),
        }
    }

    /// Fetches the set (at start, to show a wrong URL at once); the error
    /// says why it failed.
    pub async fn prefetch(&self) -> Result<(), String> {
        let now = Instant::now();
        *self.last_fetch.lock().await = Some(now);
        self.refresh(now).await
    }

    fn cached(&self, kid: &str, fresh_only: bool) -> Option<Arc<Key>> {
        let cache = self.cache.read().expect("JWKS cache");
        let fresh = cache
            .fetched
            .is_some_and(|t| t.elapsed() < self.options.max_age);
        (fresh || !fresh_only)
            .then(|| cache.keys.get(kid).cloned())
            .flatten()
    }

    async fn refresh(&self, now: Instant) -> Result<(), String> {
        let result = self
            .fetcher
            .get(&self.url)
            .await
            .and_then(|body| parse(&body));
        match result {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), url = %self.url, "fetched the JWKS");
                *self.cache.write().expect("JWKS cache") = Cache {
                    keys,
                    fetched: Some(now),
                };
                Ok(())
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "cannot fetch the JWKS");
                Err(e)
            }
        }
    }
}

/// The signing keys of a JWKS document, by `kid`. Keys this server cannot
/// use (no `kid`, encryption keys, other types or curves, an `alg` other
/// than the one the type implies) are skipped: a provider may publish them
/// for others.
fn parse(body: &[u8]) -> Result<HashMap<String, Arc<Key>>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let (Some(kid), Some(key)) = (jwk.common.key_id.clone(), signing_key(&jwk)) {
            keys.insert(kid, Arc::new(key));
        }
    }
    Ok(keys)
}

fn signing_key(jwk: &Jwk) -> Option<Key> {
    use jsonwebtoken::jwk::PublicKeyUse;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let (algorithm, implied) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => return None,
    };
    if jwk.common.key_algorithm.is_some_and(|alg| alg != implied) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { algorithm, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_rsa_and_p256_signing_keys_and_skips_the_rest() {
        let rsa: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/jwks/rsa-1.jwk.json")).unwrap();
        let ec: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/jwks/ec-1.jwk.json")).unwrap();
        let mut no_kid = rsa.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut encryption = rsa.clone();
        encryption["kid"] = "enc".into();
        encryption["use"] = "enc".into();
        let mut wrong_alg = ec.clone();
        wrong_alg["kid"] = "ec-as-rsa".into();
        wrong_alg["alg"] = "RS256".into();
        let hmac =
            serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"});
        let set = serde_json::json!({
            "keys": [rsa, ec, no_kid, encryption, wrong_alg, hmac, {"kty": "weird"}]
        });
        let keys = parse(set.to_string().as_bytes()).unwrap();
        let mut found: Vec<_> = keys
            .iter()
            .map(|(kid, key)| (kid.as_str(), key.algorithm))
            .collect();
        found.sort_by_key(|(kid, _)| *kid);
        assert_eq!(
            found,
            [("ec-1", Algorithm::ES256), ("rsa-1", Algorithm::RS256)]
        );
        assert!(parse(b"{\"no\": 1}").is_err());
    }
}
