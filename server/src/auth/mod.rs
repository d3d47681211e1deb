//! Who is asking: the user id from the request's bearer token. Production
//! servers verify a JWT — HS256 with a shared secret, RS256 with the
//! identity provider's public key, or RS256/ES256 with a key from its JWKS
//! URL chosen by the token's `kid` ([`jwks`]) — take the user from `sub`,
//! and check `iss` and `aud` when told what to expect; the demo's
//! `--dev-auth` takes the token itself as the user id. Tokens are never
//! logged.

mod fetch;
pub mod jwks;

use crate::error::AppError;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use jwks::{Jwks, JwksOptions, Key};
use serde::Deserialize;
use std::sync::Arc;

pub enum Auth {
    /// The token is the user id (demo and tests only).
    Dev,
    /// Boxed: keys are large, and `Auth` lives in the server state.
    Jwt(Box<Jwt>),
}

pub struct Jwt {
    keys: Keys,
    /// `exp` (required), and `iss`/`aud` once set by [`Auth::expecting`];
    /// the algorithm comes from the key.
    validation: Validation,
}

enum Keys {
    /// One key given at start (`--jwt-secret`, `--jwt-public-key`).
    Fixed(Arc<Key>),
    /// The identity provider's current keys, by `kid`.
    Jwks(Box<Jwks>),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Auth {
    /// HS256 tokens signed with `secret`; `exp` is required.
    pub fn hs256(secret: &[u8]) -> Result<Auth, String> {
        if secret.len() < 16 {
            return Err("a JWT secret must be at least 16 bytes".into());
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| format!("bad JWT secret: {e}"))?;
        Ok(Auth::fixed(Algorithm::HS256, key))
    }

    /// RS256 tokens verified with a PEM public key; `exp` is required.
    pub fn rs256(public_key_pem: &[u8]) -> Result<Auth, String> {
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|e| format!("not an RSA public key in PEM form: {e}"))?;
        Ok(Auth::fixed(Algorithm::RS256, key))
    }

    /// RS256 and ES256 tokens verified with the key their `kid` names in
    /// the JWKS at `url`; `exp` is required. Nothing is fetched yet (see
    /// [`Auth::prefetch`]).
    pub fn jwks(url: &str, options: JwksOptions) -> Result<Auth, String> {
        Ok(Auth::Jwt(Box::new(Jwt {
            keys: Keys::Jwks(Box::new(Jwks::new(url, options)?)),
            validation: Validation::default(),
        })))
    }

    fn fixed(algorithm: Algorithm, key: DecodingKey) -> Auth {
        Auth::Jwt(Box::new(Jwt {
            keys: Keys::Fixed(Arc::new(Key { algorithm, key })),
            validation: Validation::default(),
        }))
    }

    /// Also requires the `iss` claim to be `issuer` and `aud` to include
    /// `audience`, where given. Without an audience a token that carries
    /// `aud` is refused: it was meant for some other service.
    pub fn expecting(self, issuer: Option<&str>, audience: Option<&str>) -> Result<Auth, String> {
        let Auth::Jwt(mut jwt) = self else {
            return match (issuer, audience) {
                (None, None) => Ok(self),
                _ => Err("--jwt-issuer and --jwt-audience need JWT auth, not --dev-auth".into()),
            };
        };
        let validation = &mut jwt.validation;
        if let Some(issuer) = issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        if let Some(audience) = audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".into());
        }
        Ok(Auth::Jwt(jwt))
    }

    /// With a JWKS: fetches it now, so a wrong URL shows at start. A failure
    /// is not fatal (requests fetch again, at the bounded rate).
    pub async fn prefetch(&self) -> Result<(), String> {
        match self {
            Auth::Jwt(jwt) => match &jwt.keys {
                Keys::Jwks(jwks) => jwks.prefetch().await,
                Keys::Fixed(_) => Ok(()),
            },
            Auth::Dev => Ok(()),
        }
    }

    /// The authenticated user of a request: 401 for a missing or invalid
    /// token, 503 when the key it names cannot be fetched.
    pub async fn user(&self, headers: &HeaderMap) -> Result<String, AppError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| AppError::unauthorized("missing Authorization: Bearer token"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AppError::unauthorized("Authorization is not a Bearer token"))?;
        match self {
            Auth::Dev => valid_user_id(token)
                .then(|| token.to_owned())
                .ok_or_else(|| AppError::unauthorized("dev token is not a valid user id")),
            Auth::Jwt(jwt) => {
                let invalid = |e: jsonwebtoken::errors::Error| {
                    AppError::unauthorized(format!("invalid token: {e}"))
                };
                let key = match &jwt.keys {
                    Keys::Fixed(key) => key.clone(),
                    Keys::Jwks(jwks) => {
                        let kid = decode_header(token).map_err(invalid)?.kid.ok_or_else(|| {
                            AppError::unauthorized("the token names no key (kid)")
                        })?;
                        jwks.key(&kid).await?
                    }
                };
                // The key decides the algorithm: a token cannot choose another.
                let mut validation = jwt.validation.clone();
                validation.algorithms = vec![key.algorithm];
                let data = decode::<Claims>(token, &key.key, &validation).map_err(invalid)?;
                if valid_user_id(&data.claims.sub) {
                    Ok(data.claims.sub)
                } else {
                    Err(AppError::unauthorized(
                        "token subject is not a valid user id",
                    ))
                }
            }
        }
    }
}

/// User ids are bound into read and write rules as text; keep them printable
/// and short so they are safe in logs and storage paths.
fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:|".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs256_token(secret: &[u8], sub: &str, exp: u64) -> String {
        #[derive(serde::Serialize)]
        struct C<'a> {
            sub: &'a str,
            exp: u64,
        }
        encode(
            &Header::new(Algorithm::HS256),
            &C { sub, exp },
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hs256_accepts_a_valid_token_and_refuses_expired_forged_and_missing_ones() {
        let auth = Auth::hs256(b"s3cret-s3cret-s3cret").unwrap();
        let good = hs256_token(b"s3cret-s3cret-s3cret", "alice", now() + 600);
        assert_eq!(auth.user(&bearer(&good)).await.unwrap(), "alice");
        let expired = hs256_token(b"s3cret-s3cret-s3cret", "alice", now() - 600);
        let forged = hs256_token(b"other-other-other-other", "alice", now() + 600);
        for token in [expired, forged, "garbage".into()] {
            let err = auth.user(&bearer(&token)).await.unwrap_err();
            assert_eq!((err.status.as_u16(), err.code), (401, "unauthorized"));
        }
        assert_eq!(auth.user(&HeaderMap::new()).await.unwrap_err().status, 401);
    }

    #[tokio::test]
    async fn dev_auth_takes_the_token_as_the_user_and_refuses_odd_ones() {
        assert_eq!(Auth::Dev.user(&bearer("bob")).await.unwrap(), "bob");
        assert_eq!(
            Auth::Dev.user(&bearer("a b")).await.unwrap_err().status,
            401
        );
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, "Basic Ym9i".parse().unwrap());
        assert_eq!(Auth::Dev.user(&basic).await.unwrap_err().status, 401);
    }
}
