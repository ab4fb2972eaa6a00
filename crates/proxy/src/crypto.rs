//! The rustls crypto provider every TLS configuration of the data plane uses, client and server.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider (ring).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
