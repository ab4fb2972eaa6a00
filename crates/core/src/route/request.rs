//! The request as the router sees it: [`RequestFacts`] from the data plane, and the
//! per-request values ([`Prepared`]) every candidate check shares.

use std::cell::OnceCell;

use http::header::USER_AGENT;
use http::HeaderMap;

use crate::service::normalize_host;

/// What the router needs to know about one request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The raw `Host` header (or HTTP/2 `:authority`); may carry a port.
    pub host: Option<&'a str>,
    /// The request path without the query string.
    pub path: &'a str,
    /// The path with its query string (`/a?b=c`), as received.
    pub path_and_query: &'a str,
    /// The proxy port the connection arrived on.
    pub local_port: u16,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// Per-request values computed once and shared by every candidate check.
pub(super) struct Prepared<'r, 'a> {
    pub(super) req: &'r RequestFacts<'a>,
    /// The Host lower-cased, without port and trailing dot.
    pub(super) host: Option<String>,
    /// Every User-Agent value lower-cased, computed on first use.
    pub(super) user_agents: OnceCell<Vec<Vec<u8>>>,
}

impl<'r, 'a> Prepared<'r, 'a> {
    pub(super) fn new(req: &'r RequestFacts<'a>) -> Self {
        Prepared {
            req,
            host: req.host.map(normalize_host),
            user_agents: OnceCell::new(),
        }
    }

    pub(super) fn user_agents(&self) -> &[Vec<u8>] {
        self.user_agents.get_or_init(|| {
            self.req
                .headers
                .get_all(USER_AGENT)
                .iter()
                .map(|v| v.as_bytes().to_ascii_lowercase())
                .collect()
        })
    }
}
