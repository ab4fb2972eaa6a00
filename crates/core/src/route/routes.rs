//! Routes: one [`Route`] per destination and port, its full check against a request (the
//! first failed term is a [`Mismatch`]), and the [`Decision`] a table gives a request.

use std::sync::Arc;

use http::header::HeaderName;

use super::regexes::{RegexHits, Subject};
use super::request::{Prepared, RequestFacts};
use crate::service::{Destination, DomainPattern, PathPattern, Service, UserRegex};

/// One HTTP route: a destination reached on its plain port or on its `httpsPort`.
#[derive(Debug)]
pub struct Route {
    /// The service the route belongs to.
    pub service: Arc<Service>,
    /// Index into `service.destinations`.
    pub dest: usize,
    /// The `httpsPort` route (arrives on `srcHttpsPort`, goes to `httpsPort`).
    pub https: bool,
    /// The upstream port: `port`, or `httpsPort` for the https route.
    pub upstream_port: u16,
    /// The local port the request must have arrived on (`srcPort` / `srcHttpsPort`).
    pub src_port: Option<u16>,
    /// A number identifying the route within its table. After [`RouteTable::build`] it is
    /// the route's position in evaluation order; after [`RouteTable::update`] it is still
    /// unique within the table (routes of the shared base keep theirs, routes of changed
    /// services count on from the base's route count) but no longer a position in
    /// [`RouteTable::routes`] and no longer dense.
    ///
    /// [`RouteTable::build`]: crate::route::RouteTable::build
    /// [`RouteTable::update`]: crate::route::RouteTable::update
    /// [`RouteTable::routes`]: crate::route::RouteTable::routes
    pub order: usize,
    /// [`Service::sort_group`] of the service (part of the evaluation order key).
    pub(super) group: u8,
    /// The service's position in its layer.
    pub(super) slot: usize,
    /// `serviceHeader` with parsed names; `None` for a name that is not a valid header name
    /// (such a route can never match). Empty on the https route.
    pub(super) headers: Vec<(Option<HeaderName>, String)>,
    /// `userAgent` substrings, lower-cased.
    pub(super) user_agents: Vec<String>,
}

impl Route {
    /// The destination this route forwards to.
    pub fn destination(&self) -> &Destination {
        &self.service.destinations[self.dest]
    }

    /// The upstream host: `outboundHostname`, or the service name (its Swarm DNS name).
    pub fn upstream_host(&self) -> &str {
        self.destination()
            .outbound_hostname
            .as_deref()
            .unwrap_or(&self.service.name)
    }

    /// The backend name DFP users know from `haproxy.cfg`: `<acl>-be<port>_<idx>`, or
    /// `https-<acl>-be<httpsPort>_<idx>` for the https route.
    pub fn backend_name(&self) -> String {
        format!(
            "{}{}-be{}_{}",
            if self.https { "https-" } else { "" },
            self.service.acl_name,
            self.upstream_port,
            self.destination().index
        )
    }

    /// True when every term of the route matches the request (paths, excludes, domains,
    /// headers, User-Agent, local port). Redirects and the default backend are not involved.
    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        self.check(req).is_ok()
    }

    /// The route's full check outside its table: `Ok` when every term matches, otherwise the
    /// first term that failed (see [`Mismatch`] for the order). The same evaluation as
    /// [`RouteTable::decide`] runs, only without the table's regex sets.
    ///
    /// [`RouteTable::decide`]: crate::route::RouteTable::decide
    pub fn check(&self, req: &RequestFacts<'_>) -> Result<(), Mismatch> {
        let p = Prepared::new(req);
        let hits = RegexHits::direct(req.path, p.host.as_deref());
        self.check_prepared(&p, &hits)
    }

    /// The path the upstream receives: the destination's `reqPathSearchReplace` rewrites
    /// applied in order to `path` (without query), and a leading `/` ensured.
    pub fn rewritten_path(&self, path: &str) -> String {
        let mut path = path.to_string();
        for rewrite in &self.destination().rewrites {
            path = rewrite.apply(&path);
        }
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        path
    }

    /// The route's place in evaluation order, comparable across layers: the service's sort
    /// key, then destination order, then the plain route before the https one.
    pub(super) fn order_key(&self) -> (u8, &str, &str, usize, bool) {
        (
            self.group,
            &self.service.acl_name,
            &self.service.name,
            self.dest,
            self.https,
        )
    }

    /// The full check, the one evaluation behind [`RouteTable::decide`] and explain: `Ok`
    /// when every term matches, else the first that failed. Terms that cost a comparison come
    /// first; the regular expressions of the paths, excludes and domains run last, and through
    /// `hits` (the layer's sets).
    ///
    /// [`RouteTable::decide`]: crate::route::RouteTable::decide
    pub(super) fn check_prepared(
        &self,
        p: &Prepared<'_, '_>,
        hits: &RegexHits<'_>,
    ) -> Result<(), Mismatch> {
        let req = p.req;
        if !port_allows(self.src_port, req.local_port) {
            return Err(Mismatch::Port);
        }
        let d = self.destination();
        let plain_paths = || d.paths.iter().filter(|pat| !is_path_regex(pat));
        let path_needs_regex = if plain_paths().any(|pat| pat.matches(req.path, req.path_and_query))
        {
            false
        } else if d.paths.iter().any(is_path_regex) {
            true
        } else {
            return Err(Mismatch::Path);
        };
        if d.path_excludes
            .iter()
            .filter(|pat| !is_path_regex(pat))
            .any(|pat| pat.matches(req.path, req.path_and_query))
        {
            return Err(Mismatch::PathExcluded);
        }
        let host = p.host.as_deref();
        let domain_needs_regex = if d.domains.is_empty() {
            false
        } else {
            let Some(host) = host else {
                return Err(Mismatch::NoHost);
            };
            let plain = || {
                d.domains
                    .iter()
                    .filter(|pat| !matches!(pat, DomainPattern::Regex(_)))
            };
            if plain().any(|pat| pat.matches(host)) {
                false
            } else if d
                .domains
                .iter()
                .any(|pat| matches!(pat, DomainPattern::Regex(_)))
            {
                true
            } else {
                return Err(Mismatch::Domain);
            }
        };
        for (at, (name, value)) in self.headers.iter().enumerate() {
            let Some(name) = name else {
                return Err(Mismatch::Header(at));
            };
            if !req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == value.as_bytes())
            {
                return Err(Mismatch::Header(at));
            }
        }
        if !self.user_agents.is_empty() {
            let agents = p.user_agents();
            if !self.user_agents.iter().any(|pat| {
                agents
                    .iter()
                    .any(|agent| contains_bytes(agent, pat.as_bytes()))
            }) {
                return Err(Mismatch::UserAgent);
            }
        }
        let terms = RegexTerms {
            paths: &d.paths,
            path_excludes: &d.path_excludes,
            domains: &d.domains,
        };
        regex_terms_match(terms, hits, path_needs_regex, domain_needs_regex)
    }
}

/// True for a pattern that is a regular expression (only `path_reg` in an HTTP route).
pub(super) fn is_path_regex(pattern: &PathPattern) -> bool {
    matches!(pattern, PathPattern::Regex(_))
}

/// The `path_reg` expressions of a pattern list.
fn path_regexes(list: &[PathPattern]) -> impl Iterator<Item = &UserRegex> + '_ {
    list.iter().filter_map(|pat| match pat {
        PathPattern::Regex(r) => Some(r),
        _ => None,
    })
}

/// The pattern lists [`regex_terms_match`] looks at.
#[derive(Clone, Copy)]
pub(super) struct RegexTerms<'d> {
    pub(super) paths: &'d [PathPattern],
    pub(super) path_excludes: &'d [PathPattern],
    pub(super) domains: &'d [DomainPattern],
}

/// The regular-expression terms of a destination whose other terms matched: one of its path
/// regexes must match (when no plain path did), none of its exclude regexes may, and one of
/// its domain regexes must match (when no plain domain did).
pub(super) fn regex_terms_match(
    d: RegexTerms<'_>,
    hits: &RegexHits<'_>,
    path_needs_regex: bool,
    domain_needs_regex: bool,
) -> Result<(), Mismatch> {
    if path_needs_regex && !path_regexes(d.paths).any(|r| hits.is_match(Subject::Path, r)) {
        return Err(Mismatch::Path);
    }
    if path_regexes(d.path_excludes).any(|r| hits.is_match(Subject::Path, r)) {
        return Err(Mismatch::PathExcluded);
    }
    let domain_ok = !domain_needs_regex
        || d.domains.iter().any(|pat| match pat {
            DomainPattern::Regex(r) => hits.is_match(Subject::Host, r),
            _ => false,
        });
    if domain_ok {
        Ok(())
    } else {
        Err(Mismatch::Domain)
    }
}

/// The outcome of [`RouteTable::decide`].
///
/// [`RouteTable::decide`]: crate::route::RouteTable::decide
#[derive(Debug)]
pub enum Decision<'a> {
    /// Hand the request to this route's upstream.
    Forward(&'a Route),
    /// Answer with a redirect.
    Redirect {
        /// The status (301 for `redirectFromDomain`, the destination's `httpsRedirectCode`
        /// for the `X-Forwarded-Proto` redirects).
        status: u16,
        /// The `Location` header value.
        location: String,
    },
    /// Nothing matched and there is no default backend.
    NoRoute,
}

/// The first term of a route a request failed. A route checks its terms in this order:
/// port, plain paths, plain excludes, host presence and plain domains, headers, User-Agent,
/// then the regular expressions (paths, excludes, domains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The request arrived on another port than `srcPort` (`srcHttpsPort` for the https
    /// route).
    Port,
    /// No `servicePath` pattern matches the path.
    Path,
    /// A `servicePathExclude` pattern matches the path.
    PathExcluded,
    /// The route has `serviceDomain`s and the request no Host.
    NoHost,
    /// No `serviceDomain` matches the Host.
    Domain,
    /// The `serviceHeader` at this position is missing or has another value.
    Header(usize),
    /// No `userAgent` fragment is in the User-Agent.
    UserAgent,
}

impl Mismatch {
    /// The service parameter behind the failed term, as DFP users write it.
    pub fn parameter(self, route: &Route) -> &'static str {
        match self {
            Mismatch::Port if route.https => "srcHttpsPort",
            Mismatch::Port => "srcPort",
            Mismatch::Path => "servicePath",
            Mismatch::PathExcluded => "servicePathExclude",
            Mismatch::NoHost | Mismatch::Domain => "serviceDomain",
            Mismatch::Header(_) => "serviceHeader",
            Mismatch::UserAgent => "userAgent",
        }
    }

    /// One sentence saying what failed, naming the request's value and the route's terms.
    pub fn detail(self, route: &Route, req: &RequestFacts<'_>) -> String {
        let d = route.destination();
        let paths = |list: &[crate::service::PathPattern]| {
            list.iter().map(|p| p.text()).collect::<Vec<_>>().join(", ")
        };
        match self {
            Mismatch::Port => format!(
                "the request arrives on port {}, the route needs port {}",
                req.local_port,
                route.src_port.unwrap_or_default()
            ),
            Mismatch::Path => format!(
                "path {} matches none of {} ({})",
                req.path,
                paths(&d.paths),
                d.path_type.as_str()
            ),
            Mismatch::PathExcluded => format!(
                "path {} is excluded by one of {}",
                req.path,
                paths(&d.path_excludes)
            ),
            Mismatch::NoHost => "the request has no Host header".to_string(),
            Mismatch::Domain => format!(
                "host {} matches none of {}",
                req.host.unwrap_or_default(),
                d.domains
                    .iter()
                    .map(|p| p.text())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Mismatch::Header(at) => match d.service_headers.get(at) {
                Some((name, value)) => format!("header {name} is not {value:?}"),
                None => "a header differs".to_string(),
            },
            Mismatch::UserAgent => {
                format!("User-Agent contains none of {}", d.user_agents.join(", "))
            }
        }
    }
}

/// True when no source port is required or the request arrived on it.
pub(super) fn port_allows(required: Option<u16>, local_port: u16) -> bool {
    match required {
        Some(port) => port == local_port,
        None => true,
    }
}

/// Byte substring search (the needle is short: a User-Agent fragment).
pub(super) fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
