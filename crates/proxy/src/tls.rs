//! TLS termination on `:ssl` HTTP ports (TLS towards upstreams is [`crate::upstream_tls`]).
//!
//! [`server_config`] builds the one rustls configuration every worker shares: certificates come
//! from the hot [`CertStore`] through its SNI resolver, ALPN offers `h2,http/1.1` (`ENABLE_H2`)
//! or `http/1.1`, and with `CA_FILE` client certificates are requested but optional (HAProxy's
//! `verify optional`): a client without one still connects, and destinations with
//! `verifyClientSsl=true` answer 403. A client certificate that does not verify ends the
//! handshake. Session tickets and a session cache make resumed handshakes cheap.
//!
//! [`serve`] runs on a worker for every accepted TLS connection: the handshake (bounded by
//! `TIMEOUT_HTTP_REQUEST`), then HTTP/1.1 or HTTP/2 (as negotiated) over the TLS stream, with
//! the same request path as plain HTTP and `ConnInfo.tls = true`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::certs::CertStore;
use crate::connection::serve_until_stopped;
use crate::context::Worker;
use crate::crypto::provider;
use crate::forward::{self, ConnInfo};

/// The TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `CA_FILE` is unreadable or holds no usable certificate.
    #[error("CA_FILE {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The shared server configuration of the `:ssl` ports.
pub fn server_config(
    store: &Arc<CertStore>,
    enable_h2: bool,
    ca_file: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config_error = |e: rustls::Error| TlsError::Config(e.to_string());
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca_error = |reason: String| TlsError::CaFile {
                path: path.to_path_buf(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no CERTIFICATE block".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| ca_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(crate::challenge::resolver(store.resolver()));
    config.alpn_protocols = if enable_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // TLS-ALPN-01 (only chosen when the client offers nothing else; see `challenge`).
    config
        .alpn_protocols
        .push(crate::challenge::ACME_TLS_ALPN.to_vec());
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(config_error)?;
    Ok(Arc::new(config))
}

/// Runs futures hyper's HTTP/2 server spawns on the worker's `LocalSet`.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// Handshakes and serves one TLS client connection.
pub(crate) async fn serve(
    worker: Rc<Worker>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    client: SocketAddr,
    local_port: u16,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let limit = worker.timeouts.http_request;
    let handshake = tokio::select! {
        result = tokio::time::timeout(limit, acceptor.accept(stream)) => result,
        _ = stop.wait_for(Option::is_some) => return,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%client, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%client, ?limit, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() == Some(crate::challenge::ACME_TLS_ALPN) {
        return; // A TLS-ALPN-01 validation ends with the handshake (RFC 8737).
    }
    let h2 = session.alpn_protocol() == Some(b"h2");
    let client_cert_verified = session
        .peer_certificates()
        .is_some_and(|chain| !chain.is_empty());
    let conn = Rc::new(ConnInfo::new(
        client,
        local_port,
        true,
        client_cert_verified,
    ));
    let service_worker = worker.clone();
    let service = service_fn(move |req| {
        let worker = service_worker.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(forward::handle(worker, conn, req).await) }
    });
    let io = TokioIo::new(tls);
    let result = if h2 {
        let mut builder = http2::Builder::new(LocalExec);
        builder.timer(TokioTimer::new());
        let connection = builder.serve_connection(io, service);
        serve_until_stopped(connection, stop).await
    } else {
        let builder = crate::connection::http1_builder(&worker.timeouts);
        let connection = builder.serve_connection(io, service).with_upgrades();
        serve_until_stopped(connection, stop).await
    };
    if let Err(error) = result {
        tracing::debug!(%client, %error, "TLS client connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_are_named() {
        let dir = std::env::temp_dir().join(format!("sluice-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "nothing here").unwrap();
        let store = CertStore::load(crate::certs::CertSources {
            certs_dir: dir.join("none"),
            secrets_dir: dir.join("none"),
            preferred: Vec::new(),
        });
        let e = server_config(&store, true, Some(&ca)).unwrap_err();
        assert!(e.to_string().starts_with("CA_FILE "), "{e}");
        let e = server_config(&store, true, Some(&dir.join("missing.pem"))).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        assert!(server_config(&store, false, None).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
