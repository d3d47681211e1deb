//! Who is asking: the user id from the request's bearer token. Production
//! servers verify a JWT (HS256 with a shared secret, or RS256 with the
//! identity provider's public key) and take the user from `sub`; the demo's
//! `--dev-auth` takes the token itself as the user id. Tokens are never logged.

use crate::error::AppError;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub enum Auth {
    /// The token is the user id (demo and tests only).
    Dev,
    /// Boxed: a decoding key is large, and `Auth` lives in the server state.
    Jwt(Box<Jwt>),
}

pub struct Jwt {
    key: DecodingKey,
    validation: Validation,
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
        Ok(Auth::Jwt(Box::new(Jwt {
            key,
            validation: Validation::new(Algorithm::HS256),
        })))
    }

    /// RS256 tokens verified with a PEM public key; `exp` is required.
    pub fn rs256(public_key_pem: &[u8]) -> Result<Auth, String> {
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|e| format!("not an RSA public key in PEM form: {e}"))?;
        Ok(Auth::Jwt(Box::new(Jwt {
            key,
            validation: Validation::new(Algorithm::RS256),
        })))
    }

    /// The authenticated user of a request, or 401.
    pub fn user(&self, headers: &HeaderMap) -> Result<String, AppError> {
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
                let data = decode::<Claims>(token, &jwt.key, &jwt.validation)
                    .map_err(|e| AppError::unauthorized(format!("invalid token: {e}")))?;
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

    #[test]
    fn hs256_accepts_a_valid_token_and_refuses_expired_forged_and_missing_ones() {
        let auth = Auth::hs256(b"s3cret-s3cret-s3cret").unwrap();
        let good = hs256_token(b"s3cret-s3cret-s3cret", "alice", now() + 600);
        assert_eq!(auth.user(&bearer(&good)).unwrap(), "alice");
        let expired = hs256_token(b"s3cret-s3cret-s3cret", "alice", now() - 600);
        let forged = hs256_token(b"other-other-other-other", "alice", now() + 600);
        for token in [expired, forged, "garbage".into()] {
            let err = auth.user(&bearer(&token)).unwrap_err();
            assert_eq!((err.status.as_u16(), err.code), (401, "unauthorized"));
        }
        assert_eq!(auth.user(&HeaderMap::new()).unwrap_err().status, 401);
    }

    #[test]
    fn dev_auth_takes_the_token_as_the_user_and_refuses_odd_ones() {
        assert_eq!(Auth::Dev.user(&bearer("bob")).unwrap(), "bob");
        assert_eq!(Auth::Dev.user(&bearer("a b")).unwrap_err().status, 401);
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, "Basic Ym9i".parse().unwrap());
        assert_eq!(Auth::Dev.user(&basic).unwrap_err().status, 401);
    }
}
