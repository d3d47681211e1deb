//! The TLS client settings every outgoing connection uses (Postgres, the
//! JWKS fetch): rustls with ring, certificates verified against Mozilla's
//! roots plus any the caller adds.

use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// Mozilla's roots (`webpki-roots`), to extend with a deployment's own CA.
pub fn mozilla_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// A client that trusts `roots` and presents no certificate.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, rustls::Error> {
    // The provider is named, not taken from the process default, so another
    // crate enabling a second one cannot make this ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
