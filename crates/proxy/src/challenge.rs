//! ACME challenge answers served by the data plane itself (see `docs/acme.md`).
//!
//! * **HTTP-01**: a request for `/.well-known/acme-challenge/<token>` on any HTTP port is
//!   answered with the key authorization of that token before routing (the hook at the top of
//!   `forward::respond`). A token this proxy does not know falls through to routing, so a
//!   service that answers its own challenges keeps working.
//! * **TLS-ALPN-01**: a TLS client offering only the `acme-tls/1` protocol gets the challenge
//!   certificate of its server name (the `acmeIdentifier` extension holds the SHA-256 of the
//!   key authorization, RFC 8737); the connection ends after the handshake.
//!
//! The answers are one process-wide table published through `ArcSwap`: its only writer is the
//! control API's ACME module ([`Challenges::publish`]), which replaces the whole table; requests
//! and handshakes only load it, never take a lock and never wait. Challenge certificates are
//! built when the table is published, not during handshakes.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::body::ProxyBody;

/// The path prefix of HTTP-01 challenges.
pub const HTTP_PREFIX: &str = "/.well-known/acme-challenge/";

/// The ALPN protocol of TLS-ALPN-01 challenges.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// One pending challenge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Challenge {
    /// The DNS name being validated.
    pub domain: String,
    /// The challenge token (the last path segment of HTTP-01).
    pub token: String,
    /// The key authorization (`token.thumbprint`).
    pub key_authorization: String,
}

/// A challenge certificate could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS-ALPN-01 certificate for {domain}: {reason}")]
pub struct ChallengeError {
    domain: String,
    reason: String,
}

#[derive(Default)]
struct Table {
    /// Token → key authorization.
    http: HashMap<String, Bytes>,
    /// Domain → challenge certificate.
    tls: HashMap<String, Arc<CertifiedKey>>,
}

/// The published challenge answers. See the module documentation.
pub struct Challenges {
    table: ArcSwap<Table>,
}

static CHALLENGES: LazyLock<Challenges> = LazyLock::new(|| Challenges {
    table: ArcSwap::from_pointee(Table::default()),
});

/// The process's challenge table.
pub fn challenges() -> &'static Challenges {
    &CHALLENGES
}

impl Challenges {
    /// Replaces every answer with `list` (an empty list withdraws them all).
    pub fn publish(&self, list: &[Challenge]) -> Result<(), ChallengeError> {
        let mut table = Table::default();
        for c in list {
            table.http.insert(
                c.token.clone(),
                Bytes::from(c.key_authorization.clone().into_bytes()),
            );
            table.tls.insert(
                c.domain.to_ascii_lowercase(),
                Arc::new(alpn_certificate(c)?),
            );
        }
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// The key authorization answering `path`, when it is a known HTTP-01 token.
    pub fn http_answer(&self, path: &str) -> Option<Bytes> {
        let token = path.strip_prefix(HTTP_PREFIX)?;
        self.table.load().http.get(token).cloned()
    }

    fn tls_certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.table
            .load()
            .tls
            .get(&server_name.to_ascii_lowercase())
            .cloned()
    }
}

/// The HTTP-01 answer for this request, if it is one (the hook before routing).
pub(crate) fn respond<B>(req: &http::Request<B>) -> Option<Response<ProxyBody>> {
    let path = req.uri().path();
    if !path.starts_with(HTTP_PREFIX) {
        return None;
    }
    let body = challenges().http_answer(path)?;
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(resp)
}

/// True when the client asks for TLS-ALPN-01 (it offers `acme-tls/1` and nothing else).
fn is_acme_hello(hello: &ClientHello<'_>) -> bool {
    let mut offered = match hello.alpn() {
        Some(offered) => offered.peekable(),
        None => return false,
    };
    offered.peek().is_some() && offered.all(|p| p == ACME_TLS_ALPN)
}

/// Wraps the certificate store's resolver: `acme-tls/1` handshakes get the challenge
/// certificate, every other handshake goes to `inner`.
pub(crate) fn resolver(inner: Arc<dyn ResolvesServerCert>) -> Arc<dyn ResolvesServerCert> {
    Arc::new(AcmeResolver { inner })
}

#[derive(Debug)]
struct AcmeResolver {
    inner: Arc<dyn ResolvesServerCert>,
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if is_acme_hello(&hello) {
            return challenges().tls_certificate(hello.server_name()?);
        }
        self.inner.resolve(hello)
    }
}

/// The self-signed TLS-ALPN-01 certificate of one challenge (RFC 8737 section 3).
fn alpn_certificate(c: &Challenge) -> Result<CertifiedKey, ChallengeError> {
    let error = |reason: String| ChallengeError {
        domain: c.domain.clone(),
        reason,
    };
    let digest = Sha256::digest(c.key_authorization.as_bytes());
    let mut params =
        rcgen::CertificateParams::new(vec![c.domain.clone()]).map_err(|e| error(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| error(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| error(e.to_string()))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| error(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_tokens_answer_and_others_fall_through() {
        let table = Challenges {
            table: ArcSwap::from_pointee(Table::default()),
        };
        let c = Challenge {
            domain: "A.example.com".into(),
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
        };
        table.publish(std::slice::from_ref(&c)).unwrap();
        assert_eq!(
            table
                .http_answer("/.well-known/acme-challenge/tok")
                .as_deref(),
            Some(&b"tok.thumb"[..])
        );
        assert_eq!(table.http_answer("/.well-known/acme-challenge/other"), None);
        assert_eq!(table.http_answer("/tok"), None);
        let cert = table.tls_certificate("a.example.com").unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.cert[0]).unwrap();
        // id-pe-acmeIdentifier, critical, holding the digest of the key authorization.
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        assert!(ext.value.ends_with(&Sha256::digest(b"tok.thumb")[..]));
        table.publish(&[]).unwrap();
        assert_eq!(table.http_answer("/.well-known/acme-challenge/tok"), None);
        assert!(table.tls_certificate("a.example.com").is_none());
    }
}
