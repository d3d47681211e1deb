//! TLS to Postgres, with libpq's URL parameters: `sslmode` (`disable`,
//! `prefer` — the default —, `require`) and `sslrootcert=PATH`, a PEM file of
//! CA certificates to trust besides Mozilla's roots (what managed Postgres
//! services hand out). Whenever TLS is used the server's certificate is
//! verified against those roots and its host name: unlike libpq's `prefer`
//! and `require`, an unverified connection is never made. A server that
//! offers no TLS gets a plain connection under `prefer` and a refusal under
//! `require`.

use super::{error, Result, StoreError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::str::FromStr;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connection settings of `url`, and the TLS connector for them.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect)> {
    let (url, root_cert) = take_param(url, "sslrootcert");
    let config = tokio_postgres::Config::from_str(&url).map_err(|e| {
        StoreError::InvalidApp(format!("invalid Postgres URL: {}", error::describe(&e)))
    })?;
    let mut roots = crate::tls::mozilla_roots();
    if let Some(path) = root_cert {
        let certs = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| StoreError::InvalidApp(format!("sslrootcert {path}: {e}")))?;
        if certs.is_empty() {
            return Err(StoreError::InvalidApp(format!(
                "sslrootcert {path}: no PEM certificate in it"
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| StoreError::InvalidApp(format!("sslrootcert {path}: {e}")))?;
        }
    }
    let tls = crate::tls::client_config(roots)
        .map_err(|e| StoreError::Internal(format!("TLS setup: {e}")))?;
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// `url` without the query parameter `name`, and that parameter's value
/// (tokio-postgres refuses parameters it does not know).
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((key, v)) if key == name => {
                value = Some(percent_decode(v));
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, value)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslrootcert_is_taken_out_of_the_url() {
        let url =
            "postgres://u@h:5432/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem&application_name=x";
        assert_eq!(
            take_param(url, "sslrootcert"),
            (
                "postgres://u@h:5432/db?sslmode=require&application_name=x".to_owned(),
                Some("/tmp/ca.pem".to_owned())
            )
        );
        assert_eq!(
            take_param("postgres://u@h/db?sslrootcert=/ca.pem", "sslrootcert"),
            ("postgres://u@h/db".to_owned(), Some("/ca.pem".to_owned()))
        );
        assert_eq!(take_param("postgres://u@h/db", "sslrootcert").1, None);
    }

    #[test]
    fn a_missing_or_empty_root_file_is_a_clear_error() {
        let missing = parse("postgres://u@h/db?sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(
            matches!(&missing, StoreError::InvalidApp(m) if m.contains("/nonexistent/ca.pem")),
            "{missing:?}"
        );
        let empty = std::env::temp_dir().join(format!("ferrydb-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = parse(&format!(
            "postgres://u@h/db?sslrootcert={}",
            empty.display()
        ))
        .err()
        .unwrap();
        std::fs::remove_file(&empty).unwrap();
        assert!(
            matches!(&err, StoreError::InvalidApp(m) if m.contains("no PEM certificate")),
            "{err:?}"
        );
    }
}
