//! The parse context: the proxy-wide settings the parser needs ([`ParseContext`]) and the
//! service-level values every destination is parsed with ([`Shared`]).

use crate::service::{DomainAlgo, PathRewrite};

/// Proxy-wide settings the parser needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseContext {
    /// `SEPARATOR`: the list separator (default `,`; an empty one is treated as `,`).
    pub separator: String,
    /// `SERVICE_DOMAIN_ALGO`: the algorithm of services without `serviceDomainAlgo`
    /// (default `hdr_beg(host)`, which Sluice matches exactly).
    pub default_domain_algo: DomainAlgo,
    /// `HTTPS_ONLY`: every destination redirects plain HTTP to https.
    pub https_only: bool,
}

impl Default for ParseContext {
    fn default() -> Self {
        ParseContext {
            separator: ",".to_string(),
            default_domain_algo: DomainAlgo::Beg,
            https_only: false,
        }
    }
}

impl ParseContext {
    pub(super) fn sep(&self) -> &str {
        if self.separator.is_empty() {
            ","
        } else {
            &self.separator
        }
    }
}

/// Service-level values every destination needs.
pub(super) struct Shared {
    pub(super) domain_algo: DomainAlgo,
    pub(super) legacy_rewrite: Option<PathRewrite>,
}
