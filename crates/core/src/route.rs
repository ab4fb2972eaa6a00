//! The compiled HTTP routing table: which HTTP destination (or redirect) a request gets.
//!
//! [`RouteTable::build`] turns the current service set into an immutable table once per
//! reconfigure; the data plane then only reads it (it is `Send + Sync`, share it behind an
//! `Arc` and swap it atomically). [`RouteTable::decide`] answers one request:
//!
//! 1. the frontend redirects of every service (`redirectFromDomain`, `redirectWhenHttpProto`,
//!    `redirectUnlessHttpsProto`), first applicable one in rule order;
//! 2. the routes, first full match in evaluation order;
//! 3. the default backend (`isDefaultBackend`);
//! 4. otherwise [`Decision::NoRoute`] (the data plane answers 503).
//!
//! Evaluation order is Docker Flow Proxy's: services sorted by [`Service::sort_key`]
//! (`/.well-known` services first, root `/` services last, then `aclName` byte-wise, then the
//! name); inside a service, destination order, and per destination the plain route before the
//! `httpsPort` route. Lookup cost does not grow with the number of services: routes are indexed
//! by host (exact names, string suffixes, label-boundary domains) and, inside each host bucket,
//! by path (byte prefixes, exact paths). Every candidate carries its position in evaluation
//! order and the smallest position whose remaining terms match wins, so the index never
//! changes which route wins compared with a linear first-match scan.
//!
//! # Incremental updates
//!
//! [`RouteTable::update`] derives a new table from an old one in O(changed services) instead of
//! rebuilding everything. A table has two *layers*, each an indexed table as described above:
//! the *base* (the last full build, behind an `Arc` and shared by every table derived from
//! it) and the *delta* (the current versions of the services added or replaced since; rebuilt
//! on each update, it only holds those). A bitset marks the base services that were replaced
//! or removed; the base skips them as if they were not indexed. A request is answered by
//! asking both layers for their first candidate and keeping the one earlier in evaluation
//! order, compared by (service sort key, destination, plain before https); redirect rules
//! likewise (service sort key, `redirectFromDomain` before proto rules, destination). Both
//! layers order their items by the same key and a service lives in exactly one of them, so
//! the answer is the one a full build gives, and a lookup costs at most two indexed lookups.
//! The default backend (last default service in order, skipping shadowed ones) is located
//! once per update. When more services have changed since the base than the larger of 256 and
//! √(2n) (n services in the table), `update` compacts: it builds a single new base from every
//! live service, so the delta stays small and the rare full build (at most one in 257
//! single-service updates) is amortised over many cheap ones.
//!
//! Deliberate differences from DFP (its behaviour there is a bug or a hazard):
//! * hosts are matched with [`DomainPattern`] semantics on the Host without its port,
//!   case-insensitively: a plain `serviceDomain` is a whole-host match (DFP's default
//!   `hdr_beg` lets `example.com` match `example.com.evil.net`), `*suffix` is a suffix match
//!   for that pattern only, and a Host carrying a port still matches;
//! * `redirectFromDomain` uses the same pattern matching instead of a Host prefix, is not
//!   applied when the Host already is the redirect target (that would loop), and is skipped
//!   for destinations whose first `serviceDomain` is missing or a regular expression (DFP
//!   renders a broken config there); a wildcard first domain (`*.example.com`) redirects to
//!   `example.com`;
//! * the `X-Forwarded-Proto` redirects need a Host to build the `Location`; requests without
//!   one are routed normally. Like HAProxy's `hdr()`, every comma-separated element of the
//!   header counts, compared case-sensitively. As in DFP, the header comes from the client
//!   unchecked, so these redirects are a convenience, not a security boundary;
//! * with several `isDefaultBackend` services the last one in evaluation order wins, and its
//!   last plain-port route is used (as DFP, which only declares `default_backend` for `port`
//!   routes); a default service with only `httpsPort` routes contributes its last one;
//! * `srcPort`/`srcHttpsPort`/`httpsPort` of `0` count as unset, and a destination without
//!   any path pattern never matches.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::iter::Peekable;
use std::sync::Arc;

use http::header::{HeaderName, USER_AGENT};
use http::HeaderMap;

use crate::service::{normalize_host, Destination, DomainPattern, PathPattern, ReqMode, Service};

/// The header the `redirectWhenHttpProto` / `redirectUnlessHttpsProto` rules look at.
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

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
    pub order: usize,
    /// [`Service::sort_group`] of the service (part of the evaluation order key).
    group: u8,
    /// The service's position in its layer.
    slot: usize,
    /// `serviceHeader` with parsed names; `None` for a name that is not a valid header name
    /// (such a route can never match). Empty on the https route.
    headers: Vec<(Option<HeaderName>, String)>,
    /// `userAgent` substrings, lower-cased.
    user_agents: Vec<String>,
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
        self.matches_prepared(&Prepared::new(req))
    }

    /// The route's place in evaluation order, comparable across layers: the service's sort
    /// key, then destination order, then the plain route before the https one.
    fn order_key(&self) -> (u8, &str, &str, usize, bool) {
        (
            self.group,
            &self.service.acl_name,
            &self.service.name,
            self.dest,
            self.https,
        )
    }

    fn matches_prepared(&self, p: &Prepared<'_, '_>) -> bool {
        let req = p.req;
        if !port_allows(self.src_port, req.local_port) {
            return false;
        }
        let d = self.destination();
        if !d
            .paths
            .iter()
            .any(|pat| pat.matches(req.path, req.path_and_query))
        {
            return false;
        }
        if d.path_excludes
            .iter()
            .any(|pat| pat.matches(req.path, req.path_and_query))
        {
            return false;
        }
        if !domains_match(&d.domains, p.host.as_deref()) {
            return false;
        }
        for (name, value) in &self.headers {
            let Some(name) = name else {
                return false;
            };
            if !req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == value.as_bytes())
            {
                return false;
            }
        }
        if !self.user_agents.is_empty() {
            let agents = p.user_agents();
            if !self.user_agents.iter().any(|pat| {
                agents
                    .iter()
                    .any(|agent| contains_bytes(agent, pat.as_bytes()))
            }) {
                return false;
            }
        }
        true
    }
}

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

/// The outcome of [`RouteTable::decide`].
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

/// The immutable compiled routing table. See the module documentation.
///
/// Cloning is cheap (the indexed layers are shared), but a clone is rarely needed:
/// [`RouteTable::update`] already shares everything unchanged.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// The indexed services of the last full build, shared by every table updated from it.
    base: Arc<Layer>,
    /// One bit per base service slot: set when the service was replaced or removed since the
    /// base was built. Only as long as the highest shadowed slot needs.
    shadow: Vec<u64>,
    /// What is still live in the base.
    base_live: Tally,
    /// The services added or replaced since the base was built (their current versions).
    delta: Arc<Layer>,
    /// Where the default backend's route is.
    default_route: Option<At>,
    /// Distinct service names added, replaced or removed since the base was built.
    changed: usize,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable::build(std::iter::empty())
    }
}

/// Live services, routes and redirect rules of the base layer.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    services: usize,
    routes: usize,
    redirects: usize,
}

/// The layer an item of a [`RouteTable`] lives in, with its position there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Base(usize),
    Delta(usize),
}

/// Changed services tolerated on top of the base before [`RouteTable::update`] compacts
/// (tests use a tiny bound so that short update sequences exercise compaction).
const MIN_DELTA: usize = if cfg!(test) { 3 } else { 256 };

/// The most changed services a table with `live` services carries before compacting: the
/// larger of [`MIN_DELTA`] and √(2·live).
///
/// Re-indexing one service costs about the same in the delta as in a full build, so with a
/// bound `b` an update costs on average `b/2` services of delta rebuild plus `live/b` of the
/// next full build; `b = √(2·live)` minimises that sum. The floor keeps compactions below
/// 0.4% of a stream of single-service updates, so they stay out of its p99. (A bound
/// proportional to the table, such as `live/8`, makes every update O(live) again: measured
/// at 10,000 services it gave a p50 of 0.7-0.9 ms against 0.13-0.2 ms for this one.)
fn compaction_bound(live: usize) -> usize {
    let balance = (2.0 * live as f64).sqrt() as usize;
    MIN_DELTA.max(balance)
}

impl RouteTable {
    /// Compiles the HTTP routes of `services` (the order they are given in does not matter).
    /// Runs in O(total patterns · log) time.
    pub fn build<'a>(services: impl IntoIterator<Item = &'a Arc<Service>>) -> RouteTable {
        let base = Layer::build(services, 0);
        let mut table = RouteTable {
            base_live: Tally {
                services: base.services.len(),
                routes: base.routes.len(),
                redirects: base.redirects.len(),
            },
            base: Arc::new(base),
            shadow: Vec::new(),
            delta: Arc::default(),
            default_route: None,
            changed: 0,
        };
        table.locate_default();
        table
    }

    /// A new table equal, in every decision and in [`routes`](Self::routes) and
    /// [`render`](Self::render), to [`RouteTable::build`] over the current services with
    /// `upserts` added or replaced (by service name) and the `removed` names taken out.
    ///
    /// Upserts are applied first, then removals: a name in both ends up removed; of several
    /// upserts with one name the last wins. Removing an unknown name does nothing.
    ///
    /// The base layer is shared with `self`; only the services changed since the last full
    /// build are re-indexed (plus a name lookup per changed name and a copy of a bitset of one
    /// bit per service), so the cost does not grow with the number of unchanged services.
    /// When the changed services exceed the larger of 256 and √(2·services), the whole table
    /// is rebuilt instead (compaction), which bounds the delta and keeps lookups fast.
    pub fn update(&self, upserts: &[Arc<Service>], removed: &[&str]) -> RouteTable {
        if upserts.is_empty() && removed.is_empty() {
            return self.clone();
        }
        // The current versions of every service changed since the base was built.
        let mut changed: HashMap<&str, &Arc<Service>> = self
            .delta
            .services
            .iter()
            .map(|s| (s.service.name.as_str(), &s.service))
            .collect();
        for service in upserts {
            changed.insert(service.name.as_str(), service);
        }
        for name in removed {
            changed.remove(name);
        }

        let mut next = RouteTable {
            base: Arc::clone(&self.base),
            shadow: self.shadow.clone(),
            base_live: self.base_live,
            delta: Arc::default(),
            default_route: None,
            changed: 0,
        };
        let names = upserts
            .iter()
            .map(|s| s.name.as_str())
            .chain(removed.iter().copied());
        for name in names {
            for &slot in self.base.slots_named(name) {
                next.shadow_slot(slot);
            }
        }
        let fresh = changed
            .keys()
            .filter(|name| self.base.slots_named(name).is_empty())
            .count();
        next.changed = self.base.services.len() - next.base_live.services + fresh;

        if next.changed > compaction_bound(next.base_live.services + changed.len()) {
            let live = self
                .base
                .services
                .iter()
                .enumerate()
                .filter(|(slot, _)| !next.shadowed(*slot))
                .map(|(_, s)| &s.service)
                .chain(changed.into_values());
            return RouteTable::build(live);
        }
        next.delta = Arc::new(Layer::build(changed.into_values(), self.base.routes.len()));
        next.locate_default();
        next
    }

    /// Services added, replaced or removed since the table was last built in full (by
    /// [`RouteTable::build`] or by a compacting [`RouteTable::update`]); 0 right after one.
    pub fn changed_services(&self) -> usize {
        self.changed
    }

    /// Marks a base service as replaced or removed.
    fn shadow_slot(&mut self, slot: usize) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if self.shadow.len() <= word {
            self.shadow.resize(word + 1, 0);
        }
        if self.shadow[word] & bit != 0 {
            return;
        }
        self.shadow[word] |= bit;
        let service = &self.base.services[slot];
        self.base_live.services -= 1;
        self.base_live.routes -= service.routes;
        self.base_live.redirects -= service.redirects;
    }

    /// True when the base service in `slot` was replaced or removed.
    fn shadowed(&self, slot: usize) -> bool {
        self.shadow
            .get(slot / 64)
            .is_some_and(|word| word & (1u64 << (slot % 64)) != 0)
    }

    /// Finds the default backend: the last default service in evaluation order over both
    /// layers, skipping shadowed base services.
    fn locate_default(&mut self) {
        let base = self
            .base
            .defaults
            .iter()
            .rev()
            .copied()
            .find(|&i| !self.shadowed(self.base.routes[i].slot));
        let delta = self.delta.defaults.last().copied();
        self.default_route = match (base, delta) {
            (Some(b), Some(d)) => {
                if self.base.routes[b].order_key() > self.delta.routes[d].order_key() {
                    Some(At::Base(b))
                } else {
                    Some(At::Delta(d))
                }
            }
            (Some(b), None) => Some(At::Base(b)),
            (None, d) => d.map(At::Delta),
        };
    }

    /// Decides what to do with one request: redirect, forward, or nothing.
    pub fn decide(&self, req: &RequestFacts<'_>) -> Decision<'_> {
        let p = Prepared::new(req);
        if let Some(decision) = self.redirect_for(&p) {
            return decision;
        }
        let base = self.base.best_route(&p, |slot| !self.shadowed(slot));
        let delta = self.delta.best_route(&p, |_| true);
        match earlier(base, delta, Route::order_key).or_else(|| self.default_route()) {
            Some(route) => Decision::Forward(route),
            None => Decision::NoRoute,
        }
    }

    fn redirect_for(&self, p: &Prepared<'_, '_>) -> Option<Decision<'static>> {
        if self.base_live.redirects == 0 && self.delta.redirects.is_empty() {
            return None;
        }
        let proto = ForwardedProto::of(p.req.headers);
        let base = self
            .base
            .best_redirect(p, proto, |slot| !self.shadowed(slot));
        let delta = self.delta.best_redirect(p, proto, |_| true);
        let rule = earlier(base, delta, RedirectRule::order_key)?;
        let req = p.req;
        let uri = if req.path_and_query.is_empty() {
            "/"
        } else {
            req.path_and_query
        };
        Some(match &rule.kind {
            RedirectKind::FromDomain { target } => Decision::Redirect {
                status: 301,
                location: format!("http://{target}{uri}"),
            },
            RedirectKind::Proto { status, .. } => Decision::Redirect {
                status: *status,
                location: format!("https://{}{uri}", req.host.unwrap_or_default().trim()),
            },
        })
    }

    /// The routes in evaluation order (both layers merged, replaced and removed services
    /// left out).
    pub fn routes(&self) -> impl Iterator<Item = &Route> + '_ {
        Merge::new(
            self.base
                .routes
                .iter()
                .filter(move |r| !self.shadowed(r.slot)),
            self.delta.routes.iter(),
            |a: &&Route, b: &&Route| a.order_key() < b.order_key(),
        )
    }

    /// The redirect rules in the order they are tried.
    fn redirects(&self) -> impl Iterator<Item = &RedirectRule> + '_ {
        Merge::new(
            self.base
                .redirects
                .iter()
                .filter(move |r| !self.shadowed(r.slot)),
            self.delta.redirects.iter(),
            |a: &&RedirectRule, b: &&RedirectRule| a.order_key() < b.order_key(),
        )
    }

    /// The route unmatched requests go to, if a service is the default backend.
    pub fn default_route(&self) -> Option<&Route> {
        self.default_route.map(|at| match at {
            At::Base(i) => &self.base.routes[i],
            At::Delta(i) => &self.delta.routes[i],
        })
    }

    /// True when there is no HTTP route at all.
    pub fn is_empty(&self) -> bool {
        self.base_live.routes == 0 && self.delta.routes.is_empty()
    }

    /// A readable rendering of the live table: redirect rules in the order they are tried,
    /// one line per route in evaluation order, and the default backend.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Sluice HTTP routing table: {} route(s), {} redirect rule(s).",
            self.base_live.routes + self.delta.routes.len(),
            self.base_live.redirects + self.delta.redirects.len()
        );
        out.push_str(
            "# Redirects are tried first, then routes top to bottom (the first full match wins), \
             then the default backend.\n",
        );
        for (rank, rule) in self.redirects().enumerate() {
            let d = &rule.service.destinations[rule.dest];
            let _ = write!(
                out,
                "redirect {:>4} service={} ",
                rank + 1,
                rule.service.name
            );
            match &rule.kind {
                RedirectKind::FromDomain { target } => {
                    let _ = writeln!(
                        out,
                        "redirectFromDomain hosts={} -> 301 http://{target}<uri>",
                        domain_list(&d.redirect_from_domains)
                    );
                }
                RedirectKind::Proto {
                    when_http,
                    unless_https,
                    src_port,
                    status,
                } => {
                    let condition = match (when_http, unless_https) {
                        (_, true) => "redirectUnlessHttpsProto (X-Forwarded-Proto is not https)",
                        _ => "redirectWhenHttpProto (X-Forwarded-Proto is http)",
                    };
                    let _ = writeln!(
                        out,
                        "{condition} srcPort={} domains={} paths={} -> {status} https://<host><uri>",
                        port_text(*src_port),
                        domain_list(&d.domains),
                        path_list(&d.paths),
                    );
                }
            }
        }
        for (position, route) in self.routes().enumerate() {
            let d = route.destination();
            let headers = if route.headers.is_empty() {
                "-".to_string()
            } else {
                route
                    .headers
                    .iter()
                    .map(|(name, value)| match name {
                        Some(name) => format!("{name}={value}"),
                        None => format!("<invalid name>={value}"),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let agents = if route.user_agents.is_empty() {
                "-".to_string()
            } else {
                route.user_agents.join(",")
            };
            let _ = writeln!(
                out,
                "route {:>4} {} service={} mode={} srcPort={} domains={} paths={} excludes={} \
                 headers={} userAgent={} upstream={}:{} flags={}",
                position + 1,
                route.backend_name(),
                route.service.name,
                if route.https { "https" } else { "http" },
                port_text(route.src_port),
                domain_list(&d.domains),
                path_list(&d.paths),
                path_list(&d.path_excludes),
                headers,
                agents,
                route.upstream_host(),
                route.upstream_port,
                self.flags(route),
            );
        }
        match self.default_route() {
            Some(route) => {
                let _ = writeln!(
                    out,
                    "default_backend {} service={} upstream={}:{}",
                    route.backend_name(),
                    route.service.name,
                    route.upstream_host(),
                    route.upstream_port
                );
            }
            None => out.push_str("default_backend none (unmatched requests get 503)\n"),
        }
        out
    }

    fn flags(&self, route: &Route) -> String {
        let d = route.destination();
        let s = &route.service;
        let mut flags: Vec<String> = Vec::new();
        let mut flag = |on: bool, name: &str| {
            if on {
                flags.push(name.to_string());
            }
        };
        flag(
            self.default_route()
                .is_some_and(|default| std::ptr::eq(default, route)),
            "default",
        );
        flag(d.https_only, "httpsOnly");
        flag(d.deny_http, "denyHttp");
        flag(d.verify_client_ssl, "verifyClientSsl");
        flag(d.ssl_verify_none, "sslVerifyNone");
        flag(d.ignore_authorization, "ignoreAuthorization");
        flag(!s.users.is_empty() || s.users_secret.is_some(), "auth");
        flag(s.sticky, "sticky");
        flag(s.distribute, "distribute");
        if !d.allowed_methods.is_empty() {
            flags.push(format!("allowedMethods={}", d.allowed_methods.join(",")));
        }
        if !d.denied_methods.is_empty() {
            flags.push(format!("deniedMethods={}", d.denied_methods.join(",")));
        }
        if !d.rewrites.is_empty() {
            let rewrites: Vec<&str> = d.rewrites.iter().map(|r| r.source.as_str()).collect();
            flags.push(format!("rewrite={}", rewrites.join(":")));
        }
        if flags.is_empty() {
            "-".to_string()
        } else {
            flags.join(",")
        }
    }
}

/// Of two candidates from different layers, the one earlier in evaluation order.
fn earlier<'t, T, K: Ord>(
    a: Option<&'t T>,
    b: Option<&'t T>,
    key: impl Fn(&'t T) -> K,
) -> Option<&'t T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if key(x) < key(y) { x } else { y }),
        (x, y) => x.or(y),
    }
}

/// Two iterators that are each in evaluation order, merged into one.
struct Merge<A: Iterator, B: Iterator, F> {
    a: Peekable<A>,
    b: Peekable<B>,
    a_first: F,
}

impl<A, B, F> Merge<A, B, F>
where
    A: Iterator,
    B: Iterator<Item = A::Item>,
    F: FnMut(&A::Item, &A::Item) -> bool,
{
    fn new(a: A, b: B, a_first: F) -> Self {
        Merge {
            a: a.peekable(),
            b: b.peekable(),
            a_first,
        }
    }
}

impl<A, B, F> Iterator for Merge<A, B, F>
where
    A: Iterator,
    B: Iterator<Item = A::Item>,
    F: FnMut(&A::Item, &A::Item) -> bool,
{
    type Item = A::Item;

    fn next(&mut self) -> Option<A::Item> {
        let take_a = match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) => (self.a_first)(x, y),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_a {
            self.a.next()
        } else {
            self.b.next()
        }
    }
}

/// One service of a [`Layer`], in evaluation order.
#[derive(Debug)]
struct LayerService {
    service: Arc<Service>,
    /// How many routes and redirect rules the service contributed.
    routes: usize,
    redirects: usize,
}

/// One indexed set of services: what a full build produces. A table is a base layer plus a
/// delta layer of the services changed since.
#[derive(Debug, Default)]
struct Layer {
    /// Added to every route's position to give [`Route::order`].
    order_offset: usize,
    /// The services in evaluation order; a route's or rule's `slot` indexes this.
    services: Vec<LayerService>,
    /// Slots sorted by service name, to find a service by name.
    by_name: Vec<usize>,
    routes: Vec<Route>,
    index: MatchIndex,
    redirects: Vec<RedirectRule>,
    redirect_index: MatchIndex,
    /// Per default-backend service with routes, in order: the route it contributes.
    defaults: Vec<usize>,
}

impl Layer {
    fn build<'a>(
        services: impl IntoIterator<Item = &'a Arc<Service>>,
        order_offset: usize,
    ) -> Layer {
        let mut sorted: Vec<(u8, &'a Arc<Service>)> =
            services.into_iter().map(|s| (s.sort_group(), s)).collect();
        sorted.sort_by(|(ga, a), (gb, b)| {
            (*ga, a.acl_name.as_str(), a.name.as_str()).cmp(&(
                *gb,
                b.acl_name.as_str(),
                b.name.as_str(),
            ))
        });

        let mut layer = Layer {
            order_offset,
            ..Layer::default()
        };
        for (group, service) in sorted {
            layer.add_service(group, service);
        }
        let mut by_name: Vec<usize> = (0..layer.services.len()).collect();
        by_name.sort_by(|&a, &b| {
            layer.services[a]
                .service
                .name
                .cmp(&layer.services[b].service.name)
        });
        layer.by_name = by_name;
        let items: Vec<IndexItem<'_>> = layer
            .routes
            .iter()
            .map(|route| {
                let d = route.destination();
                IndexItem {
                    domains: &d.domains,
                    paths: PathSpec::Patterns(&d.paths),
                }
            })
            .collect();
        layer.index = MatchIndex::build(&items);
        let items: Vec<IndexItem<'_>> = layer
            .redirects
            .iter()
            .map(|rule| {
                let d = &rule.service.destinations[rule.dest];
                match rule.kind {
                    RedirectKind::FromDomain { .. } => IndexItem {
                        domains: &d.redirect_from_domains,
                        paths: PathSpec::Any,
                    },
                    RedirectKind::Proto { .. } => IndexItem {
                        domains: &d.domains,
                        paths: PathSpec::Patterns(&d.paths),
                    },
                }
            })
            .collect();
        layer.redirect_index = MatchIndex::build(&items);
        layer
    }

    /// The slots of the services called `name` (at most one unless `build` got duplicates).
    fn slots_named(&self, name: &str) -> &[usize] {
        let name_of = |slot: usize| self.services[slot].service.name.as_str();
        let start = self.by_name.partition_point(|&slot| name_of(slot) < name);
        let len = self.by_name[start..].partition_point(|&slot| name_of(slot) == name);
        &self.by_name[start..start + len]
    }

    /// Appends the routes and redirect rules of one service (services arrive in order).
    fn add_service(&mut self, group: u8, service: &Arc<Service>) {
        let slot = self.services.len();
        let first_route = self.routes.len();
        let first_redirect = self.redirects.len();
        for (dest, d) in service.destinations.iter().enumerate() {
            if d.req_mode != ReqMode::Http {
                continue;
            }
            if let Some(port) = d.port {
                let headers = d
                    .service_headers
                    .iter()
                    .map(|(name, value)| {
                        (HeaderName::from_bytes(name.as_bytes()).ok(), value.clone())
                    })
                    .collect();
                self.push_route(RouteSpec {
                    service,
                    group,
                    slot,
                    dest,
                    https: false,
                    upstream_port: port,
                    src_port: d.src_port,
                    headers,
                });
            }
            if let Some(port) = d.https_port.filter(|p| *p != 0) {
                self.push_route(RouteSpec {
                    service,
                    group,
                    slot,
                    dest,
                    https: true,
                    upstream_port: port,
                    src_port: d.src_https_port,
                    headers: Vec::new(),
                });
            }
        }

        // DFP declares a service's redirectFromDomain rules before its proto redirects.
        for (dest, d) in service.destinations.iter().enumerate() {
            if d.req_mode != ReqMode::Http || d.redirect_from_domains.is_empty() {
                continue;
            }
            let target = match d.domains.first() {
                Some(DomainPattern::Exact(s) | DomainPattern::Domain(s)) => s.clone(),
                // `*.example.com` redirects to `example.com`.
                Some(DomainPattern::Suffix(s)) => s.trim_start_matches(['*', '.']).to_string(),
                Some(DomainPattern::Regex(_)) | None => continue,
            };
            if target.is_empty() {
                continue;
            }
            self.redirects.push(RedirectRule {
                service: Arc::clone(service),
                group,
                slot,
                dest,
                kind: RedirectKind::FromDomain { target },
            });
        }
        if service.redirect_when_http_proto || service.redirect_unless_https_proto {
            for route in &self.routes[first_route..] {
                if route.https {
                    continue;
                }
                self.redirects.push(RedirectRule {
                    service: Arc::clone(service),
                    group,
                    slot,
                    dest: route.dest,
                    kind: RedirectKind::Proto {
                        when_http: service.redirect_when_http_proto,
                        unless_https: service.redirect_unless_https_proto,
                        src_port: route.src_port,
                        status: route.destination().https_redirect_code.get(),
                    },
                });
            }
        }

        if service.is_default_backend && self.routes.len() > first_route {
            let own = first_route..self.routes.len();
            let plain = own.clone().rev().find(|&i| !self.routes[i].https);
            self.defaults.push(plain.unwrap_or(own.end - 1));
        }
        self.services.push(LayerService {
            service: Arc::clone(service),
            routes: self.routes.len() - first_route,
            redirects: self.redirects.len() - first_redirect,
        });
    }

    fn push_route(&mut self, spec: RouteSpec<'_>) {
        let user_agents = spec.service.destinations[spec.dest]
            .user_agents
            .iter()
            .map(|ua| ua.to_ascii_lowercase())
            .collect();
        self.routes.push(Route {
            service: Arc::clone(spec.service),
            dest: spec.dest,
            https: spec.https,
            upstream_port: spec.upstream_port,
            src_port: spec.src_port.filter(|p| *p != 0),
            order: self.order_offset + self.routes.len(),
            group: spec.group,
            slot: spec.slot,
            headers: spec.headers,
            user_agents,
        });
    }

    /// The first route in this layer's order that fully matches and whose service `keep`
    /// accepts (by slot).
    fn best_route(&self, p: &Prepared<'_, '_>, keep: impl Fn(usize) -> bool) -> Option<&Route> {
        if self.routes.is_empty() {
            return None;
        }
        let req = p.req;
        self.index
            .best(p.host.as_deref(), req.path, req.path_and_query, |rank| {
                let route = &self.routes[rank];
                keep(route.slot) && route.matches_prepared(p)
            })
            .map(|rank| &self.routes[rank])
    }

    /// The first redirect rule in this layer's order that applies and whose service `keep`
    /// accepts (by slot).
    fn best_redirect(
        &self,
        p: &Prepared<'_, '_>,
        proto: ForwardedProto,
        keep: impl Fn(usize) -> bool,
    ) -> Option<&RedirectRule> {
        if self.redirects.is_empty() {
            return None;
        }
        let req = p.req;
        self.redirect_index
            .best(p.host.as_deref(), req.path, req.path_and_query, |rank| {
                let rule = &self.redirects[rank];
                keep(rule.slot) && rule.applies(p, proto)
            })
            .map(|rank| &self.redirects[rank])
    }
}

/// What [`Layer::push_route`] needs for one route.
struct RouteSpec<'s> {
    service: &'s Arc<Service>,
    group: u8,
    slot: usize,
    dest: usize,
    https: bool,
    upstream_port: u16,
    src_port: Option<u16>,
    headers: Vec<(Option<HeaderName>, String)>,
}

fn port_text(port: Option<u16>) -> String {
    port.map_or_else(|| "any".to_string(), |p| p.to_string())
}

fn domain_list(domains: &[DomainPattern]) -> String {
    if domains.is_empty() {
        return "-".to_string();
    }
    domains
        .iter()
        .map(|d| match d {
            DomainPattern::Exact(s) => s.clone(),
            DomainPattern::Suffix(s) => format!("*{s}"),
            DomainPattern::Domain(s) => format!("dom:{s}"),
            DomainPattern::Regex(r) => format!("reg:{}", r.as_str()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn path_list(paths: &[PathPattern]) -> String {
    if paths.is_empty() {
        return "-".to_string();
    }
    paths
        .iter()
        .map(|p| {
            let kind = match p {
                PathPattern::Prefix(_) => "path_beg",
                PathPattern::Exact(_) => "path",
                PathPattern::Suffix(_) => "path_end",
                PathPattern::Substring(_) => "path_sub",
                PathPattern::Dir(_) => "path_dir",
                PathPattern::Regex(_) => "path_reg",
                PathPattern::UrlPrefix(_) => "url_beg",
                PathPattern::Sni(_) => "sni",
            };
            format!("{kind}:{}", p.text())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// True when no source port is required or the request arrived on it.
fn port_allows(required: Option<u16>, local_port: u16) -> bool {
    match required {
        Some(port) => port == local_port,
        None => true,
    }
}

/// True when the destination has no domains, or the (normalised) host matches one.
fn domains_match(domains: &[DomainPattern], host: Option<&str>) -> bool {
    if domains.is_empty() {
        return true;
    }
    match host {
        Some(host) => domains.iter().any(|d| d.matches(host)),
        None => false,
    }
}

/// Byte substring search (the needle is short: a User-Agent fragment).
fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Per-request values computed once and shared by every candidate check.
struct Prepared<'r, 'a> {
    req: &'r RequestFacts<'a>,
    /// The Host lower-cased, without port and trailing dot.
    host: Option<String>,
    /// Every User-Agent value lower-cased, computed on first use.
    user_agents: OnceCell<Vec<Vec<u8>>>,
}

impl<'r, 'a> Prepared<'r, 'a> {
    fn new(req: &'r RequestFacts<'a>) -> Self {
        Prepared {
            req,
            host: req.host.map(normalize_host),
            user_agents: OnceCell::new(),
        }
    }

    fn user_agents(&self) -> &[Vec<u8>] {
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

/// What `X-Forwarded-Proto` says. Each comma-separated element of every occurrence counts
/// (HAProxy's `hdr()` iterates them the same way); the comparison is case-sensitive.
#[derive(Debug, Clone, Copy)]
struct ForwardedProto {
    http: bool,
    https: bool,
}

impl ForwardedProto {
    fn of(headers: &HeaderMap) -> Self {
        let mut proto = ForwardedProto {
            http: false,
            https: false,
        };
        for value in headers.get_all(X_FORWARDED_PROTO) {
            let Ok(text) = value.to_str() else {
                continue;
            };
            for item in text.split(',').map(str::trim) {
                proto.http |= item == "http";
                proto.https |= item == "https";
            }
        }
        proto
    }
}

/// One frontend redirect rule.
#[derive(Debug)]
struct RedirectRule {
    service: Arc<Service>,
    /// [`Service::sort_group`] of the service.
    group: u8,
    /// The service's position in its layer.
    slot: usize,
    dest: usize,
    kind: RedirectKind,
}

#[derive(Debug)]
enum RedirectKind {
    /// `redirectFromDomain`: 301 to `http://<target><uri>` on any path.
    FromDomain {
        /// The first `serviceDomain` of the destination, without `*`.
        target: String,
    },
    /// `redirectWhenHttpProto` / `redirectUnlessHttpsProto` for one plain route.
    Proto {
        when_http: bool,
        unless_https: bool,
        src_port: Option<u16>,
        status: u16,
    },
}

impl RedirectRule {
    /// The rule's place in rule order, comparable across layers: the service's sort key,
    /// then the `redirectFromDomain` rules before the proto ones, each in destination order.
    fn order_key(&self) -> (u8, &str, &str, bool, usize) {
        (
            self.group,
            &self.service.acl_name,
            &self.service.name,
            matches!(self.kind, RedirectKind::Proto { .. }),
            self.dest,
        )
    }

    fn applies(&self, p: &Prepared<'_, '_>, proto: ForwardedProto) -> bool {
        let d = &self.service.destinations[self.dest];
        let Some(host) = p.host.as_deref() else {
            return false;
        };
        match &self.kind {
            RedirectKind::FromDomain { target } => {
                host != target.as_str() && d.redirect_from_domains.iter().any(|rd| rd.matches(host))
            }
            RedirectKind::Proto {
                when_http,
                unless_https,
                src_port,
                ..
            } => {
                let req = p.req;
                let wanted = (*when_http && proto.http) || (*unless_https && !proto.https);
                wanted
                    && req.host.is_some_and(|raw| !raw.trim().is_empty())
                    && port_allows(*src_port, req.local_port)
                    && d.paths
                        .iter()
                        .any(|pat| pat.matches(req.path, req.path_and_query))
                    && domains_match(&d.domains, Some(host))
            }
        }
    }
}

/// The path terms an indexed item is filed under.
#[derive(Clone, Copy)]
enum PathSpec<'a> {
    /// Any path (redirectFromDomain).
    Any,
    /// The path patterns (ORed); none means the item never matches and is not filed.
    Patterns(&'a [PathPattern]),
}

/// What [`MatchIndex::build`] files for one rank.
struct IndexItem<'a> {
    domains: &'a [DomainPattern],
    paths: PathSpec<'a>,
}

/// Buckets with at most this many items are scanned instead of indexed by path (tests use
/// a tiny threshold so that the small random tables exercise both forms).
const SMALL_BUCKET: usize = if cfg!(test) { 2 } else { 8 };

/// Candidate lookup by host, then path. Items are identified by their rank (position in
/// evaluation order); [`MatchIndex::best`] returns the smallest rank the caller's full check
/// accepts, so the index only has to return a superset of the matching items.
#[derive(Debug, Default)]
struct MatchIndex {
    /// `DomainPattern::Exact`, keyed by the host.
    exact: HashMap<Box<str>, PathIndex>,
    /// `DomainPattern::Suffix`, keyed by the suffix.
    suffix: KeyedByLength<PathIndex>,
    /// `DomainPattern::Domain`, keyed by the domain (matched at label boundaries).
    domain: KeyedByLength<PathIndex>,
    /// Items with a regex domain (the regex is checked by the caller).
    regex: PathIndex,
    /// Items without domains.
    any_host: PathIndex,
}

impl MatchIndex {
    /// Files every item by host, then indexes the larger host buckets by path.
    /// Linear in the number of patterns.
    fn build(items: &[IndexItem<'_>]) -> MatchIndex {
        let mut index = MatchIndex::default();
        for (rank, item) in items.iter().enumerate() {
            if let PathSpec::Patterns([]) = item.paths {
                continue;
            }
            if item.domains.is_empty() {
                index.any_host.push(rank);
                continue;
            }
            for domain in item.domains {
                let bucket = match domain {
                    DomainPattern::Exact(s) => index.exact.entry(s.as_str().into()).or_default(),
                    DomainPattern::Suffix(s) => index.suffix.entry(s),
                    DomainPattern::Domain(s) => index.domain.entry(s),
                    DomainPattern::Regex(_) => &mut index.regex,
                };
                bucket.push(rank);
            }
        }
        let buckets = index
            .exact
            .values_mut()
            .chain(index.suffix.map.values_mut())
            .chain(index.domain.map.values_mut())
            .chain([&mut index.regex, &mut index.any_host]);
        for bucket in buckets {
            bucket.finish(items);
        }
        index
    }

    /// The smallest rank among the candidates for this request that `accept` approves.
    /// `host` is the normalised host (`None` when the request has none).
    fn best(
        &self,
        host: Option<&str>,
        path: &str,
        path_and_query: &str,
        mut accept: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut best = None;
        let mut visit =
            |bucket: &PathIndex| bucket.visit(path, path_and_query, &mut best, &mut accept);
        if let Some(host) = host {
            if let Some(bucket) = self.exact.get(host) {
                visit(bucket);
            }
            for len in self.suffix.lengths_up_to(host.len()) {
                if let Some(bucket) = host
                    .get(host.len() - len..)
                    .and_then(|s| self.suffix.get(s))
                {
                    visit(bucket);
                }
            }
            let bytes = host.as_bytes();
            for len in self.domain.lengths_up_to(host.len()) {
                let start = host.len() - len;
                if start > 0 && bytes[start - 1] != b'.' {
                    continue;
                }
                if let Some(bucket) = host.get(start..).and_then(|s| self.domain.get(s)) {
                    visit(bucket);
                }
            }
            visit(&self.regex);
        }
        visit(&self.any_host);
        best
    }
}

/// A map from text to values plus the sorted set of key lengths present, so a lookup of
/// "every key that is a prefix/suffix of X" costs one probe per distinct length.
#[derive(Debug)]
struct KeyedByLength<V> {
    map: HashMap<Box<str>, V>,
    lengths: Vec<usize>,
}

impl<V> Default for KeyedByLength<V> {
    fn default() -> Self {
        KeyedByLength {
            map: HashMap::new(),
            lengths: Vec::new(),
        }
    }
}

impl<V: Default> KeyedByLength<V> {
    fn entry(&mut self, key: &str) -> &mut V {
        if let Err(at) = self.lengths.binary_search(&key.len()) {
            self.lengths.insert(at, key.len());
        }
        self.map.entry(key.into()).or_default()
    }
}

impl<V> KeyedByLength<V> {
    fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    fn lengths_up_to(&self, max: usize) -> impl Iterator<Item = usize> + '_ {
        self.lengths
            .iter()
            .copied()
            .take_while(move |&len| len <= max)
    }
}

/// The candidates of one host bucket: a short list checked one by one, or an index by path.
#[derive(Debug)]
enum PathIndex {
    /// Ascending ranks; also the form every bucket has while the index is being filled.
    Small(Vec<usize>),
    /// More than [`SMALL_BUCKET`] items, indexed by path.
    Tree(Box<PathTree>),
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex::Small(Vec::new())
    }
}

impl PathIndex {
    fn push(&mut self, rank: usize) {
        if let PathIndex::Small(list) = self {
            push_rank(list, rank);
        }
    }

    /// Turns a bucket that grew past [`SMALL_BUCKET`] into a path index.
    fn finish(&mut self, items: &[IndexItem<'_>]) {
        let PathIndex::Small(ranks) = self else {
            return;
        };
        if ranks.len() <= SMALL_BUCKET {
            ranks.shrink_to_fit();
            return;
        }
        let mut tree = PathTree::default();
        for &rank in ranks.iter() {
            tree.insert(rank, items[rank].paths);
        }
        *self = PathIndex::Tree(Box::new(tree));
    }

    fn visit(
        &self,
        path: &str,
        path_and_query: &str,
        best: &mut Option<usize>,
        accept: &mut impl FnMut(usize) -> bool,
    ) {
        match self {
            PathIndex::Small(list) => scan(list, best, accept),
            PathIndex::Tree(tree) => tree.visit(path, path_and_query, best, accept),
        }
    }
}

/// Candidate lists (ascending ranks) by path.
#[derive(Debug, Default)]
struct PathTree {
    /// Items matching any path.
    any: Vec<usize>,
    /// `path_beg`, keyed by the prefix.
    prefix: KeyedByLength<Vec<usize>>,
    /// `url_beg`, keyed by the prefix of path plus query.
    url_prefix: KeyedByLength<Vec<usize>>,
    /// `path`, keyed by the whole path.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Everything else (`path_end`, `path_sub`, `path_dir`, `path_reg`), checked one by one.
    scan: Vec<usize>,
}

impl PathTree {
    fn insert(&mut self, rank: usize, paths: PathSpec<'_>) {
        let patterns = match paths {
            PathSpec::Any => {
                push_rank(&mut self.any, rank);
                return;
            }
            PathSpec::Patterns(p) => p,
        };
        for pattern in patterns {
            let list = match pattern {
                PathPattern::Prefix(s) => self.prefix.entry(s),
                PathPattern::UrlPrefix(s) => self.url_prefix.entry(s),
                PathPattern::Exact(s) => self.exact.entry(s.as_str().into()).or_default(),
                PathPattern::Suffix(_)
                | PathPattern::Substring(_)
                | PathPattern::Dir(_)
                | PathPattern::Regex(_)
                | PathPattern::Sni(_) => &mut self.scan,
            };
            push_rank(list, rank);
        }
    }

    fn visit(
        &self,
        path: &str,
        path_and_query: &str,
        best: &mut Option<usize>,
        accept: &mut impl FnMut(usize) -> bool,
    ) {
        scan(&self.any, best, accept);
        for (keys, text) in [(&self.prefix, path), (&self.url_prefix, path_and_query)] {
            for len in keys.lengths_up_to(text.len()) {
                if let Some(list) = text.get(..len).and_then(|k| keys.get(k)) {
                    scan(list, best, accept);
                }
            }
        }
        if let Some(list) = self.exact.get(path) {
            scan(list, best, accept);
        }
        scan(&self.scan, best, accept);
    }
}

/// Appends a rank, skipping the repeat when one item files several patterns in one list.
fn push_rank(list: &mut Vec<usize>, rank: usize) {
    debug_assert!(list.last().copied().unwrap_or(0) <= rank);
    if list.last() != Some(&rank) {
        list.push(rank);
    }
}

/// Walks an ascending candidate list and lowers `best` to the first accepted rank below it.
fn scan(list: &[usize], best: &mut Option<usize>, accept: &mut impl FnMut(usize) -> bool) {
    for &rank in list {
        if best.is_some_and(|b| rank >= b) {
            return;
        }
        if accept(rank) {
            *best = Some(rank);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Params, PathType, RedirectCode};
    use proptest::prelude::*;
    use regex::Regex;

    // ----- builders -------------------------------------------------------------------------

    fn beg(p: &str) -> PathPattern {
        PathPattern::Prefix(p.to_string())
    }

    fn host(h: &str) -> DomainPattern {
        DomainPattern::Exact(h.to_string())
    }

    fn dest(paths: Vec<PathPattern>) -> Destination {
        Destination {
            index: 0,
            req_mode: ReqMode::Http,
            path_type: PathType::Beg,
            paths,
            path_excludes: Vec::new(),
            port: Some(8080),
            src_port: None,
            https_port: None,
            src_https_port: None,
            domains: Vec::new(),
            redirect_from_domains: Vec::new(),
            service_headers: Vec::new(),
            user_agents: Vec::new(),
            rewrites: Vec::new(),
            outbound_hostname: None,
            ssl_verify_none: false,
            https_only: false,
            https_redirect_code: RedirectCode::default(),
            allowed_methods: Vec::new(),
            denied_methods: Vec::new(),
            deny_http: false,
            verify_client_ssl: false,
            ignore_authorization: false,
            timeout_server: None,
            timeout_tunnel: None,
            timeout_client: None,
            check_tcp: false,
            clitcpka: false,
            service_group: None,
            balance_group: None,
        }
    }

    fn service(name: &str, destinations: Vec<Destination>) -> Service {
        Service {
            name: name.to_string(),
            acl_name: name.to_string(),
            params: Params::new(),
            replicas: None,
            distribute: false,
            is_default_backend: false,
            redirect_when_http_proto: false,
            redirect_unless_https_proto: false,
            proxy_instance_name: None,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            connection_mode: None,
            compression: None,
            sticky: false,
            users: Vec::new(),
            users_secret: None,
            users_pass_encrypted: false,
            service_cert: None,
            destinations,
            warnings: Vec::new(),
        }
    }

    /// A service with one destination on `paths`.
    fn simple(name: &str, paths: &[&str]) -> Service {
        service(name, vec![dest(paths.iter().map(|p| beg(p)).collect())])
    }

    fn table(services: Vec<Service>) -> (Vec<Arc<Service>>, RouteTable) {
        let services: Vec<Arc<Service>> = services.into_iter().map(Arc::new).collect();
        let table = RouteTable::build(&services);
        (services, table)
    }

    #[derive(Debug, Clone)]
    struct Req {
        host: Option<String>,
        path_and_query: String,
        port: u16,
        headers: HeaderMap,
    }

    impl Req {
        fn new(host: Option<&str>, path_and_query: &str) -> Req {
            Req {
                host: host.map(str::to_string),
                path_and_query: path_and_query.to_string(),
                port: 80,
                headers: HeaderMap::new(),
            }
        }

        fn at(host: &str, path_and_query: &str) -> Req {
            Req::new(Some(host), path_and_query)
        }

        fn port(mut self, port: u16) -> Req {
            self.port = port;
            self
        }

        fn header(mut self, name: &str, value: &str) -> Req {
            self.headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
            self
        }

        fn facts(&self) -> RequestFacts<'_> {
            let path = self
                .path_and_query
                .split('?')
                .next()
                .unwrap_or(&self.path_and_query);
            RequestFacts {
                host: self.host.as_deref(),
                path,
                path_and_query: &self.path_and_query,
                local_port: self.port,
                headers: &self.headers,
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Outcome {
        Forward { order: usize, backend: String },
        Redirect(u16, String),
        NoRoute,
    }

    fn forward(route: &Route) -> Outcome {
        Outcome::Forward {
            order: route.order,
            backend: route.backend_name(),
        }
    }

    fn outcome(table: &RouteTable, req: &Req) -> Outcome {
        match table.decide(&req.facts()) {
            Decision::Forward(route) => forward(route),
            Decision::Redirect { status, location } => Outcome::Redirect(status, location),
            Decision::NoRoute => Outcome::NoRoute,
        }
    }

    /// The service name the request is forwarded to (`None` for a redirect or no route).
    fn routed(table: &RouteTable, req: &Req) -> Option<String> {
        match table.decide(&req.facts()) {
            Decision::Forward(route) => Some(route.service.name.clone()),
            _ => None,
        }
    }

    fn backend(table: &RouteTable, req: &Req) -> Option<String> {
        match table.decide(&req.facts()) {
            Decision::Forward(route) => Some(route.backend_name()),
            _ => None,
        }
    }

    fn order_names(table: &RouteTable) -> Vec<&str> {
        table.routes().map(|r| r.service.name.as_str()).collect()
    }

    // ----- ordering ---------------------------------------------------------------------------

    #[test]
    fn well_known_first_root_last_and_domain_only_counts_as_root() {
        let mut by_host = simple("byhost", &["/"]);
        by_host.destinations[0].domains = vec![host("b.com")];
        let (_s, t) = table(vec![
            simple("root", &["/"]),
            by_host,
            simple("zz-acme", &["/.well-known/acme-challenge"]),
            simple("api", &["/api"]),
        ]);
        assert_eq!(order_names(&t), ["zz-acme", "api", "byhost", "root"]);
        // DFP's gotcha: the path-only service wins over the domain-only one on its path.
        assert_eq!(
            routed(&t, &Req::at("b.com", "/api/x")).as_deref(),
            Some("api")
        );
        assert_eq!(
            routed(&t, &Req::at("b.com", "/other")).as_deref(),
            Some("byhost")
        );
        assert_eq!(
            routed(&t, &Req::at("b.com", "/.well-known/acme-challenge/t")).as_deref(),
            Some("zz-acme")
        );
        assert_eq!(routed(&t, &Req::new(None, "/x")).as_deref(), Some("root"));
    }

    #[test]
    fn acl_names_order_byte_wise_then_service_names() {
        let mut second = simple("second", &["/shop"]);
        second.acl_name = "10-shop".into();
        let mut first = simple("first", &["/shop"]);
        first.acl_name = "05-shop".into();
        let mut lower = simple("lower", &["/u"]);
        lower.acl_name = "a".into();
        let mut upper = simple("upper", &["/u"]);
        upper.acl_name = "Z".into();
        let mut n2 = simple("n2", &["/n"]);
        n2.acl_name = "same".into();
        let mut n1 = simple("n1", &["/n"]);
        n1.acl_name = "same".into();
        let (_s, t) = table(vec![second, first, lower, upper, n2, n1]);
        assert_eq!(
            order_names(&t),
            ["first", "second", "upper", "lower", "n1", "n2"]
        );
        assert_eq!(
            routed(&t, &Req::at("x", "/shop/1")).as_deref(),
            Some("first")
        );
        assert_eq!(routed(&t, &Req::at("x", "/u")).as_deref(), Some("upper"));
        assert_eq!(routed(&t, &Req::at("x", "/n")).as_deref(), Some("n1"));
    }

    // ----- paths and hosts ----------------------------------------------------------------------

    #[test]
    fn path_beg_has_no_segment_boundary_and_ignores_the_query() {
        let (_s, t) = table(vec![simple("demo", &["/demo"])]);
        for path in ["/demo", "/demo/x", "/demonstration", "/demo?x=1"] {
            assert_eq!(
                routed(&t, &Req::at("h", path)).as_deref(),
                Some("demo"),
                "{path}"
            );
        }
        for path in ["/dem", "/Demo", "/x?y=/demo", "demo"] {
            assert_eq!(routed(&t, &Req::at("h", path)), None, "{path}");
        }
    }

    #[test]
    fn exact_hosts_match_whole_hosts_case_insensitively_with_ports() {
        let mut s = simple("site", &["/"]);
        s.destinations[0].domains = vec![host("example.com")];
        let (_s, t) = table(vec![s]);
        for h in [
            "example.com",
            "EXAMPLE.Com:8080",
            "example.com.",
            "Example.com:443",
        ] {
            assert_eq!(routed(&t, &Req::at(h, "/")).as_deref(), Some("site"), "{h}");
        }
        for h in [
            "example.com.evil.net",
            "example.community",
            "www.example.com",
            "",
        ] {
            assert_eq!(routed(&t, &Req::at(h, "/")), None, "{h}");
        }
        assert_eq!(routed(&t, &Req::new(None, "/")), None);
    }

    #[test]
    fn wildcard_and_domain_patterns() {
        let mut wild = simple("a-wild", &["/"]);
        wild.destinations[0].domains = vec![DomainPattern::Suffix("example.com".into())];
        let mut exact = simple("b-exact", &["/"]);
        exact.destinations[0].domains = vec![host("api.example.com"), host("other.net")];
        let mut dom = simple("c-dom", &["/"]);
        dom.destinations[0].domains = vec![DomainPattern::Domain("example.org".into())];
        let mut reg = simple("d-reg", &["/"]);
        reg.destinations[0].domains = vec![DomainPattern::Regex(
            Regex::new("(?i)^shop\\d+\\.").unwrap(),
        )];
        let (_s, t) = table(vec![exact, wild, dom, reg]);
        let cases = [
            ("api.example.com", Some("a-wild")), // earlier acl wins across buckets
            ("myexample.com", Some("a-wild")),   // *x is a plain string suffix, as DFP documents
            ("example.com", Some("a-wild")),
            ("example.com.evil.net", None),
            ("other.net:81", Some("b-exact")),
            ("a.b.example.org", Some("c-dom")),
            ("example.org", Some("c-dom")),
            ("badexample.org", None),
            ("Shop12.anything", Some("d-reg")),
            ("shop.anything", None),
        ];
        for (h, want) in cases {
            assert_eq!(routed(&t, &Req::at(h, "/x")).as_deref(), want, "{h}");
        }
    }

    #[test]
    fn excludes_remove_paths_from_a_route() {
        let mut s = simple("app", &["/"]);
        s.destinations[0].path_excludes =
            vec![beg("/admin"), PathPattern::Exact("/metrics".into())];
        let (_s, t) = table(vec![s, simple("zz-admin", &["/admin"])]);
        assert_eq!(routed(&t, &Req::at("h", "/x")).as_deref(), Some("app"));
        assert_eq!(
            routed(&t, &Req::at("h", "/admin/x")).as_deref(),
            Some("zz-admin")
        );
        assert_eq!(routed(&t, &Req::at("h", "/metrics")), None);
        assert_eq!(
            routed(&t, &Req::at("h", "/metrics/x")).as_deref(),
            Some("app")
        );
    }

    // ----- other terms ----------------------------------------------------------------------------

    #[test]
    fn service_header_needs_every_header_with_the_exact_value() {
        let mut v3 = simple("a-v3", &["/api"]);
        v3.destinations[0].service_headers = vec![
            ("X-Version".into(), "Beta".into()),
            ("X-Team".into(), "a".into()),
        ];
        v3.destinations[0].https_port = Some(8443);
        v3.destinations[0].src_https_port = Some(443);
        let (_s, t) = table(vec![v3, simple("b-fallback", &["/api"])]);
        let req = Req::at("h", "/api")
            .header("x-version", "Beta")
            .header("X-TEAM", "a");
        assert_eq!(routed(&t, &req).as_deref(), Some("a-v3"));
        let wrong_case = Req::at("h", "/api")
            .header("X-Version", "beta")
            .header("X-Team", "a");
        assert_eq!(routed(&t, &wrong_case).as_deref(), Some("b-fallback"));
        let one_missing = Req::at("h", "/api").header("X-Version", "Beta");
        assert_eq!(routed(&t, &one_missing).as_deref(), Some("b-fallback"));
        assert_eq!(
            routed(&t, &Req::at("h", "/api")).as_deref(),
            Some("b-fallback")
        );
        // The httpsPort route does not check serviceHeader (as DFP).
        assert_eq!(
            backend(&t, &Req::at("h", "/api").port(443)).as_deref(),
            Some("https-a-v3-be8443_0")
        );
    }

    #[test]
    fn user_agent_destinations_with_a_catch_all_last() {
        let mut android = dest(vec![beg("/")]);
        android.index = 1;
        android.port = Some(1111);
        android.user_agents = vec!["android".into()];
        let mut apple = dest(vec![beg("/")]);
        apple.index = 2;
        apple.port = Some(2222);
        apple.user_agents = vec!["iphone".into(), "iPad".into()];
        let mut rest = dest(vec![beg("/")]);
        rest.index = 3;
        rest.port = Some(3333);
        let (_s, t) = table(vec![service("ua", vec![android, apple, rest])]);
        let with_ua = |ua: &str| backend(&t, &Req::at("h", "/").header("User-Agent", ua));
        assert_eq!(
            with_ua("Mozilla/5.0 (Linux; ANDROID 10)").as_deref(),
            Some("ua-be1111_1")
        );
        assert_eq!(
            with_ua("Mozilla/5.0 (iPad; CPU OS)").as_deref(),
            Some("ua-be2222_2")
        );
        assert_eq!(with_ua("curl/8.0").as_deref(), Some("ua-be3333_3"));
        assert_eq!(
            backend(&t, &Req::at("h", "/")).as_deref(),
            Some("ua-be3333_3")
        );
    }

    #[test]
    fn src_port_restricts_the_local_port() {
        let mut internal = simple("a-internal", &["/"]);
        internal.destinations[0].src_port = Some(8081);
        let (_s, t) = table(vec![internal, simple("b-public", &["/"])]);
        assert_eq!(
            routed(&t, &Req::at("h", "/").port(8081)).as_deref(),
            Some("a-internal")
        );
        assert_eq!(
            routed(&t, &Req::at("h", "/").port(80)).as_deref(),
            Some("b-public")
        );
    }

    #[test]
    fn https_port_gives_a_second_route_on_the_https_source_port() {
        let mut both = dest(vec![beg("/both")]);
        both.src_port = Some(80);
        both.https_port = Some(8443);
        both.src_https_port = Some(443);
        both.outbound_hostname = Some("backend.internal".into());
        let mut only = dest(vec![beg("/only")]);
        only.index = 1;
        only.port = None;
        only.https_port = Some(9443);
        only.src_https_port = Some(443);
        let (_s, t) = table(vec![service("svc", vec![both, only])]);
        let shape: Vec<(String, bool, u16, Option<u16>)> = t
            .routes()
            .map(|r| (r.backend_name(), r.https, r.upstream_port, r.src_port))
            .collect();
        assert_eq!(
            shape,
            [
                ("svc-be8080_0".to_string(), false, 8080, Some(80)),
                ("https-svc-be8443_0".to_string(), true, 8443, Some(443)),
                ("https-svc-be9443_1".to_string(), true, 9443, Some(443)),
            ]
        );
        let Decision::Forward(route) = t.decide(&Req::at("h", "/both").port(443).facts()) else {
            panic!("expected a route");
        };
        assert!(route.https);
        assert_eq!(
            (route.upstream_host(), route.upstream_port),
            ("backend.internal", 8443)
        );
        assert_eq!(
            backend(&t, &Req::at("h", "/both")).as_deref(),
            Some("svc-be8080_0")
        );
        assert_eq!(backend(&t, &Req::at("h", "/only")), None);
        assert_eq!(
            backend(&t, &Req::at("h", "/only").port(443)).as_deref(),
            Some("https-svc-be9443_1")
        );
    }

    #[test]
    fn tcp_and_sni_destinations_give_no_http_routes() {
        let mut tcp = dest(vec![beg("/")]);
        tcp.req_mode = ReqMode::Tcp;
        tcp.src_port = Some(5432);
        let mut sni = dest(vec![beg("/")]);
        sni.req_mode = ReqMode::Sni;
        let (_s, t) = table(vec![service("db", vec![tcp, sni])]);
        assert!(t.is_empty());
        assert!(matches!(
            t.decide(&Req::at("h", "/").facts()),
            Decision::NoRoute
        ));
    }

    #[test]
    fn default_backend_takes_the_last_declared_in_order() {
        let mut d2 = simple("d2", &["/d2"]);
        d2.is_default_backend = true;
        d2.destinations[0].https_port = Some(8443);
        let mut d1 = simple("d1", &["/d1"]);
        d1.is_default_backend = true;
        let (_s, t) = table(vec![d2, d1, simple("other", &["/other"])]);
        // d2 sorts after d1, and its plain route is used.
        assert_eq!(
            backend(&t, &Req::at("h", "/nothing")).as_deref(),
            Some("d2-be8080_0")
        );
        assert_eq!(
            backend(&t, &Req::at("h", "/d1")).as_deref(),
            Some("d1-be8080_0")
        );
        assert_eq!(
            t.default_route().map(Route::backend_name).as_deref(),
            Some("d2-be8080_0")
        );

        let (_s, t) = table(vec![simple("other", &["/other"])]);
        assert!(matches!(
            t.decide(&Req::at("h", "/nothing").facts()),
            Decision::NoRoute
        ));
        assert!(t.default_route().is_none());
    }

    // ----- redirects ------------------------------------------------------------------------------

    #[test]
    fn redirect_from_domain_sends_301_to_the_first_service_domain_on_any_path() {
        let mut s = simple("new", &["/app"]);
        s.destinations[0].domains = vec![host("new.com"), host("alt.com")];
        s.destinations[0].redirect_from_domains =
            vec![host("old.com"), DomainPattern::Suffix(".old.org".into())];
        let (_s, t) = table(vec![s]);
        assert_eq!(
            outcome(&t, &Req::at("OLD.com:80", "/any/path?q=1")),
            Outcome::Redirect(301, "http://new.com/any/path?q=1".into())
        );
        assert_eq!(
            outcome(&t, &Req::at("www.old.org", "/")),
            Outcome::Redirect(301, "http://new.com/".into())
        );
        assert_eq!(
            routed(&t, &Req::at("new.com", "/app")).as_deref(),
            Some("new")
        );
        assert_eq!(
            outcome(&t, &Req::at("old.com.evil.net", "/app")),
            Outcome::NoRoute
        );

        let mut wild = simple("wild", &["/"]);
        wild.destinations[0].domains = vec![DomainPattern::Suffix(".example.net".into())];
        wild.destinations[0].redirect_from_domains = vec![host("old.net")];
        let (_s, t) = table(vec![wild]);
        assert_eq!(
            outcome(&t, &Req::at("old.net", "/p")),
            Outcome::Redirect(301, "http://example.net/p".into())
        );
    }

    #[test]
    fn redirect_from_domain_never_redirects_a_host_to_itself() {
        let mut s = simple("site", &["/"]);
        s.destinations[0].domains = vec![DomainPattern::Suffix("www.example.com".into())];
        s.destinations[0].redirect_from_domains = vec![DomainPattern::Suffix("example.com".into())];
        let (_s, t) = table(vec![s]);
        assert_eq!(
            outcome(&t, &Req::at("example.com", "/x")),
            Outcome::Redirect(301, "http://www.example.com/x".into())
        );
        assert_eq!(
            routed(&t, &Req::at("www.example.com", "/x")).as_deref(),
            Some("site")
        );
    }

    #[test]
    fn redirect_when_http_proto_needs_x_forwarded_proto_http() {
        let mut s = simple("secure", &["/secure"]);
        s.redirect_when_http_proto = true;
        s.destinations[0].https_redirect_code = RedirectCode::new(308).unwrap();
        let (_s, t) = table(vec![s]);
        let req = Req::at("Example.com:8080", "/secure/x?y=1");
        assert_eq!(
            outcome(&t, &req.clone().header("X-Forwarded-Proto", "http")),
            Outcome::Redirect(308, "https://Example.com:8080/secure/x?y=1".into())
        );
        assert_eq!(routed(&t, &req).as_deref(), Some("secure"));
        let https = req.clone().header("X-Forwarded-Proto", "https");
        assert_eq!(routed(&t, &https).as_deref(), Some("secure"));
        // Other paths are not this service's, so they are not redirected.
        let other = Req::at("h", "/other").header("X-Forwarded-Proto", "http");
        assert_eq!(outcome(&t, &other), Outcome::NoRoute);
    }

    #[test]
    fn redirect_unless_https_proto_redirects_everything_but_https() {
        let mut s = simple("secure", &["/"]);
        s.redirect_unless_https_proto = true;
        s.destinations[0].src_port = Some(80);
        let (_s, t) = table(vec![s]);
        let redirect = Outcome::Redirect(302, "https://h/a".into());
        assert_eq!(outcome(&t, &Req::at("h", "/a")), redirect);
        assert_eq!(
            outcome(&t, &Req::at("h", "/a").header("x-forwarded-proto", "http")),
            redirect
        );
        let https = Req::at("h", "/a").header("X-Forwarded-Proto", "https");
        assert_eq!(routed(&t, &https).as_deref(), Some("secure"));
        // The srcPort term is part of the redirect condition.
        assert_eq!(
            outcome(&t, &Req::at("h", "/a").port(8080)),
            Outcome::NoRoute
        );
        // Without a Host there is nothing to redirect to: the request is routed.
        assert_eq!(routed(&t, &Req::new(None, "/a")).as_deref(), Some("secure"));
    }

    #[test]
    fn redirects_beat_forwarding_and_the_first_redirect_in_order_wins() {
        // A later service's redirect beats an earlier service's route.
        let mut b = simple("b", &["/shop"]);
        b.redirect_unless_https_proto = true;
        let (_s, t) = table(vec![simple("a", &["/shop"]), b.clone()]);
        assert_eq!(
            outcome(&t, &Req::at("h", "/shop")),
            Outcome::Redirect(302, "https://h/shop".into())
        );

        // Between services, service order decides.
        let mut from_a = simple("a", &["/a"]);
        from_a.destinations[0].domains = vec![host("a.com")];
        from_a.destinations[0].redirect_from_domains = vec![host("x.com")];
        let mut from_b = simple("b", &["/b"]);
        from_b.destinations[0].domains = vec![host("b.com")];
        from_b.destinations[0].redirect_from_domains = vec![host("x.com")];
        let (_s, t) = table(vec![from_b, from_a]);
        assert_eq!(
            outcome(&t, &Req::at("x.com", "/b")),
            Outcome::Redirect(301, "http://a.com/b".into())
        );

        // A proto redirect of an earlier service beats a domain redirect of a later one.
        let mut proto = simple("a", &["/"]);
        proto.redirect_unless_https_proto = true;
        let mut moved = simple("b", &["/"]);
        moved.destinations[0].domains = vec![host("new.com")];
        moved.destinations[0].redirect_from_domains = vec![host("old.com")];
        let (_s, t) = table(vec![moved.clone(), proto]);
        assert_eq!(
            outcome(&t, &Req::at("old.com", "/")),
            Outcome::Redirect(302, "https://old.com/".into())
        );

        // Inside one service the domain redirect comes first (DFP declares it first).
        moved.redirect_unless_https_proto = true;
        let (_s, t) = table(vec![moved]);
        assert_eq!(
            outcome(&t, &Req::at("old.com", "/")),
            Outcome::Redirect(301, "http://new.com/".into())
        );
    }

    // ----- rendering and types --------------------------------------------------------------------

    #[test]
    fn render_lists_redirects_routes_and_the_default_backend() {
        let mut s = simple("go-demo", &["/demo"]);
        s.is_default_backend = true;
        s.redirect_when_http_proto = true;
        s.destinations[0].domains = vec![DomainPattern::Suffix(".example.com".into())];
        s.destinations[0].https_only = true;
        let (_s, t) = table(vec![s, simple("other", &["/other"])]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        let route_line = lines
            .iter()
            .find(|l| l.contains("go-demo-be8080_0") && l.starts_with("route"))
            .unwrap();
        for part in [
            "service=go-demo",
            "mode=http",
            "srcPort=any",
            "domains=*.example.com",
            "paths=path_beg:/demo",
            "upstream=go-demo:8080",
            "httpsOnly",
            "default",
        ] {
            assert!(route_line.contains(part), "{part} missing in {route_line}");
        }
        assert!(lines
            .iter()
            .any(|l| l.starts_with("redirect") && l.contains("redirectWhenHttpProto")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("route") && l.contains("other-be8080_0")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("default_backend go-demo-be8080_0")));
        assert!(RouteTable::default()
            .render()
            .contains("default_backend none"));
    }

    #[test]
    fn table_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RouteTable>();
        assert_send_sync::<Route>();
    }

    // ----- scale -----------------------------------------------------------------------------------

    /// One of four shapes per service, so every index bucket is exercised.
    fn scale_service(i: usize) -> Service {
        let name = format!("s{i:05}");
        let mut d = dest(Vec::new());
        match i % 4 {
            0 => d.paths = vec![beg(&format!("/p{i}/"))],
            1 => {
                d.paths = vec![beg("/")];
                d.domains = vec![host(&format!("h{i}.example.com"))];
            }
            2 => {
                d.paths = vec![beg("/")];
                d.domains = vec![DomainPattern::Suffix(format!(".w{i}.example.net"))];
            }
            _ => {
                d.paths = vec![PathPattern::Exact(format!("/exact{i}"))];
                d.domains = vec![DomainPattern::Domain(format!("d{i}.example.org"))];
            }
        }
        let mut s = service(&name, vec![d]);
        s.is_default_backend = i == 7;
        s
    }

    #[test]
    fn ten_thousand_services_route_correctly() {
        let services: Vec<Arc<Service>> = (0..10_000).map(|i| Arc::new(scale_service(i))).collect();
        let t = RouteTable::build(&services);
        assert_eq!(t.routes().count(), 10_000);
        let expect = |req: Req, want: &str| {
            assert_eq!(routed(&t, &req).as_deref(), Some(want), "{req:?}");
        };
        expect(Req::at("h", "/p4000/x"), "s04000");
        expect(Req::at("H4001.example.com:80", "/anything"), "s04001");
        expect(Req::at("a.b.w4002.example.net", "/"), "s04002");
        expect(Req::at("x.d4003.example.org", "/exact4003"), "s04003");
        expect(Req::at("d4003.example.org", "/exact4003/no"), "s00007"); // default backend
        expect(Req::at("h4001.example.com.evil.net", "/"), "s00007");
        for i in (0..10_000).step_by(37) {
            let reqs = [
                Req::at(&format!("h{i}.example.com"), &format!("/p{i}/q")),
                Req::at(&format!("www.w{i}.example.net"), "/"),
                Req::at(&format!("d{i}.example.org"), &format!("/exact{i}")),
                Req::at("nowhere", &format!("/p{i}")),
            ];
            for req in reqs {
                let facts = req.facts();
                let naive = t
                    .routes()
                    .find(|r| r.matches(&facts))
                    .or(t.default_route())
                    .map(forward)
                    .unwrap_or(Outcome::NoRoute);
                assert_eq!(outcome(&t, &req), naive, "{req:?}");
            }
        }
    }

    // ----- property: the index keeps first-match order ----------------------------------------------

    const PATHS: usize = 16;
    const DOMAINS: usize = 10;

    fn path_pattern(i: usize) -> PathPattern {
        match i {
            0 => beg("/"),
            1 => beg("/a"),
            2 => beg("/ab"),
            3 => beg("/abc"),
            4 => beg("/b"),
            5 => PathPattern::Exact("/a".into()),
            6 => PathPattern::Exact("/ab".into()),
            7 => PathPattern::Suffix("c".into()),
            8 => PathPattern::Substring("b".into()),
            9 => PathPattern::Dir("/a".into()),
            10 => PathPattern::Regex(Regex::new("^/a.c").unwrap()),
            11 => PathPattern::UrlPrefix("/a?x".into()),
            12 => PathPattern::UrlPrefix("/ab".into()),
            13 => beg("/.well-known"),
            14 => PathPattern::Exact("/".into()),
            _ => beg(""),
        }
    }

    fn domain_pattern(i: usize) -> DomainPattern {
        match i {
            0 => host("a.com"),
            1 => host("b.a.com"),
            2 => DomainPattern::Suffix("a.com".into()),
            3 => DomainPattern::Suffix(".a.com".into()),
            4 => DomainPattern::Suffix(String::new()),
            5 => DomainPattern::Domain("a.com".into()),
            6 => DomainPattern::Regex(Regex::new("(?i)^b\\.").unwrap()),
            7 => host("c.org"),
            8 => DomainPattern::Domain("b.a.com".into()),
            _ => DomainPattern::Suffix("com".into()),
        }
    }

    #[derive(Debug, Clone)]
    struct DestSpec {
        paths: Vec<usize>,
        excludes: Vec<usize>,
        domains: Vec<usize>,
        redirect_from: Option<usize>,
        port: bool,
        https: bool,
        src_port: usize,
        src_https: bool,
        header: usize,
        agent: usize,
        code: bool,
    }

    #[derive(Debug, Clone)]
    struct SvcSpec {
        acl: usize,
        dests: Vec<DestSpec>,
        default: bool,
        when_http: bool,
        unless_https: bool,
    }

    fn dest_spec() -> impl Strategy<Value = DestSpec> {
        use proptest::collection::vec;
        (
            vec(0..PATHS, 0..3),
            vec(0..PATHS, 0..2),
            vec(0..DOMAINS, 0..3),
            proptest::option::weighted(0.15, 0..DOMAINS),
            proptest::bool::weighted(0.8),
            proptest::bool::weighted(0.3),
            0..3usize,
            any::<bool>(),
            0..3usize,
            0..3usize,
            any::<bool>(),
        )
            .prop_map(
                |(
                    paths,
                    excludes,
                    domains,
                    redirect_from,
                    port,
                    https,
                    src_port,
                    src_https,
                    header,
                    agent,
                    code,
                )| {
                    DestSpec {
                        paths,
                        excludes,
                        domains,
                        redirect_from,
                        port,
                        https,
                        src_port,
                        src_https,
                        header,
                        agent,
                        code,
                    }
                },
            )
    }

    fn svc_spec() -> impl Strategy<Value = SvcSpec> {
        (
            0..4usize,
            proptest::collection::vec(dest_spec(), 1..4),
            proptest::bool::weighted(0.3),
            proptest::bool::weighted(0.15),
            proptest::bool::weighted(0.15),
        )
            .prop_map(|(acl, dests, default, when_http, unless_https)| SvcSpec {
                acl,
                dests,
                default,
                when_http,
                unless_https,
            })
    }

    fn to_service(i: usize, spec: &SvcSpec) -> Service {
        let dests = spec
            .dests
            .iter()
            .enumerate()
            .map(|(n, ds)| {
                let mut d = dest(ds.paths.iter().map(|&p| path_pattern(p)).collect());
                d.index = u8::try_from(n).unwrap();
                d.path_excludes = ds.excludes.iter().map(|&p| path_pattern(p)).collect();
                d.domains = ds.domains.iter().map(|&p| domain_pattern(p)).collect();
                d.redirect_from_domains =
                    ds.redirect_from.map(domain_pattern).into_iter().collect();
                d.port = ds.port.then_some(8000 + u16::try_from(n).unwrap());
                d.https_port = ds.https.then_some(9000 + u16::try_from(n).unwrap());
                d.src_port = [None, Some(80), Some(8080)][ds.src_port];
                d.src_https_port = ds.src_https.then_some(443);
                d.service_headers = match ds.header {
                    0 => Vec::new(),
                    1 => vec![("X-V".into(), "1".into())],
                    _ => vec![("x-v".into(), "2".into())],
                };
                d.user_agents = match ds.agent {
                    0 => Vec::new(),
                    1 => vec!["curl".into()],
                    _ => vec!["moz".into(), "wget".into()],
                };
                if ds.code {
                    d.https_redirect_code = RedirectCode::new(307).unwrap();
                }
                d
            })
            .collect();
        let mut s = service(&format!("s{i}"), dests);
        s.acl_name = ["a", "B", "b", "svc"][spec.acl].to_string();
        s.is_default_backend = spec.default;
        s.redirect_when_http_proto = spec.when_http;
        s.redirect_unless_https_proto = spec.unless_https;
        s
    }

    fn req_spec() -> impl Strategy<Value = Req> {
        const HOSTS: [Option<&str>; 11] = [
            None,
            Some("a.com"),
            Some("A.COM:8080"),
            Some("b.a.com"),
            Some("x.b.a.com"),
            Some("ba.com"),
            Some("c.org"),
            Some("a.com.evil.net"),
            Some("[::1]:80"),
            Some(""),
            Some("b.c.org."),
        ];
        const PATHS: [&str; 11] = [
            "/",
            "/a",
            "/ab",
            "/abc",
            "/abc/d",
            "/b",
            "/a/c",
            "/.well-known/x",
            "/x",
            "",
            "/a?x=1",
        ];
        (
            0..HOSTS.len(),
            0..PATHS.len(),
            any::<bool>(),
            0..3usize,
            0..3usize,
            0..4usize,
            0..4usize,
        )
            .prop_map(|(h, p, query, port, header, agent, proto)| {
                let mut path = PATHS[p].to_string();
                if query {
                    path.push_str("?q=/b");
                }
                let mut req = Req::new(HOSTS[h], &path).port([80, 443, 8080][port]);
                match header {
                    1 => req = req.header("x-v", "1"),
                    2 => req = req.header("X-V", "2"),
                    _ => {}
                }
                match agent {
                    1 => req = req.header("user-agent", "CURL/8"),
                    2 => req = req.header("user-agent", "Mozilla/5"),
                    3 => req = req.header("user-agent", "lynx"),
                    _ => {}
                }
                match proto {
                    1 => req = req.header("x-forwarded-proto", "http"),
                    2 => req = req.header("x-forwarded-proto", "https"),
                    3 => req = req.header("x-forwarded-proto", "ftp"),
                    _ => {}
                }
                req
            })
    }

    /// The reference: DFP's rules applied literally, by linear scans.
    fn naive(services: &[Arc<Service>], t: &RouteTable, req: &Req) -> Outcome {
        let facts = req.facts();
        let norm = facts.host.map(normalize_host);
        let mut sorted: Vec<&Arc<Service>> = services.iter().collect();
        sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let protos: Vec<&str> = req
            .headers
            .get_all("x-forwarded-proto")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(str::trim)
            .collect();
        let uri = if facts.path_and_query.is_empty() {
            "/"
        } else {
            facts.path_and_query
        };
        for s in &sorted {
            for d in s
                .destinations
                .iter()
                .filter(|d| d.req_mode == ReqMode::Http)
            {
                let target = match d.domains.first() {
                    Some(DomainPattern::Exact(x) | DomainPattern::Domain(x)) => x.clone(),
                    Some(DomainPattern::Suffix(x)) => x.trim_start_matches(['*', '.']).to_string(),
                    _ => continue,
                };
                if let Some(h) = &norm {
                    if !target.is_empty()
                        && *h != target
                        && d.redirect_from_domains.iter().any(|rd| rd.matches(h))
                    {
                        return Outcome::Redirect(301, format!("http://{target}{uri}"));
                    }
                }
            }
            let wanted = (s.redirect_when_http_proto && protos.contains(&"http"))
                || (s.redirect_unless_https_proto && !protos.contains(&"https"));
            let raw = facts.host.map(str::trim).unwrap_or_default();
            if !wanted || raw.is_empty() {
                continue;
            }
            let Some(h) = &norm else { continue };
            for r in t
                .routes()
                .filter(|r| Arc::ptr_eq(&r.service, s) && !r.https)
            {
                let d = r.destination();
                if r.src_port.unwrap_or(facts.local_port) == facts.local_port
                    && d.paths
                        .iter()
                        .any(|p| p.matches(facts.path, facts.path_and_query))
                    && (d.domains.is_empty() || d.domains.iter().any(|x| x.matches(h)))
                {
                    return Outcome::Redirect(
                        d.https_redirect_code.get(),
                        format!("https://{raw}{uri}"),
                    );
                }
            }
        }
        if let Some(r) = t.routes().find(|r| r.matches(&facts)) {
            return forward(r);
        }
        let last_default = t.routes().filter(|r| r.service.is_default_backend).last();
        match last_default {
            Some(last) => {
                let own: Vec<&Route> = t
                    .routes()
                    .filter(|r| Arc::ptr_eq(&r.service, &last.service))
                    .collect();
                let chosen = own.iter().rev().find(|r| !r.https).unwrap_or(&last);
                forward(chosen)
            }
            None => Outcome::NoRoute,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn index_agrees_with_a_linear_scan(
            specs in proptest::collection::vec(svc_spec(), 1..7),
            reqs in proptest::collection::vec(req_spec(), 1..24),
        ) {
            let services: Vec<Arc<Service>> =
                specs.iter().enumerate().map(|(i, s)| Arc::new(to_service(i, s))).collect();
            let t = RouteTable::build(&services);

            // Route order: sorted services, destination order, plain before https.
            let mut sorted: Vec<&Arc<Service>> = services.iter().collect();
            sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            let mut expected = Vec::new();
            for s in sorted {
                for (n, d) in s.destinations.iter().enumerate() {
                    if d.port.is_some() {
                        expected.push((s.name.clone(), n, false));
                    }
                    if d.https_port.is_some() {
                        expected.push((s.name.clone(), n, true));
                    }
                }
            }
            let actual: Vec<(String, usize, bool)> =
                t.routes().map(|r| (r.service.name.clone(), r.dest, r.https)).collect();
            prop_assert_eq!(actual, expected);

            for req in &reqs {
                prop_assert_eq!(outcome(&t, req), naive(&services, &t, req), "request {:?}", req);
            }
        }
    }

    // ----- incremental updates -------------------------------------------------------------------

    /// A decision identified independently of `Route::order`: forward target by service name,
    /// destination and https, or the redirect, or no route.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Identity {
        Forward(String, usize, bool),
        Redirect(u16, String),
        NoRoute,
    }

    fn identity(table: &RouteTable, req: &Req) -> Identity {
        match table.decide(&req.facts()) {
            Decision::Forward(r) => Identity::Forward(r.service.name.clone(), r.dest, r.https),
            Decision::Redirect { status, location } => Identity::Redirect(status, location),
            Decision::NoRoute => Identity::NoRoute,
        }
    }

    fn route_ids(table: &RouteTable) -> Vec<(String, usize, bool)> {
        table
            .routes()
            .map(|r| (r.service.name.clone(), r.dest, r.https))
            .collect()
    }

    fn with_acl(mut s: Service, acl: &str) -> Service {
        s.acl_name = acl.to_string();
        s
    }

    #[test]
    fn a_removed_base_service_no_longer_matches() {
        let (_s, t) = table(vec![
            with_acl(simple("first", &["/x"]), "a"),
            with_acl(simple("second", &["/x"]), "b"),
            simple("other", &["/o"]),
        ]);
        assert_eq!(routed(&t, &Req::at("h", "/x")).as_deref(), Some("first"));
        let u = t.update(&[], &["first"]);
        assert!(Arc::ptr_eq(&t.base, &u.base), "the base is shared");
        assert_eq!(u.changed_services(), 1);
        assert_eq!(routed(&u, &Req::at("h", "/x")).as_deref(), Some("second"));
        assert_eq!(order_names(&u), ["second", "other"]);
        let u = u.update(&[], &["second"]);
        assert_eq!(outcome(&u, &Req::at("h", "/x")), Outcome::NoRoute);
        assert_eq!(routed(&u, &Req::at("h", "/o")).as_deref(), Some("other"));
        // The original table is untouched.
        assert_eq!(routed(&t, &Req::at("h", "/x")).as_deref(), Some("first"));
        // Removing an unknown name changes nothing.
        let same = u.update(&[], &["ghost"]);
        assert_eq!(order_names(&same), ["other"]);
        let u = u.update(&[], &["other"]);
        assert!(u.is_empty());
        assert!(u.render().contains("0 route(s)"));
    }

    #[test]
    fn a_replaced_service_answers_with_its_new_paths() {
        let (_s, t) = table(vec![simple("api", &["/old"]), simple("zz", &["/z"])]);
        let u = t.update(&[Arc::new(simple("api", &["/new"]))], &[]);
        assert_eq!(routed(&u, &Req::at("h", "/new/1")).as_deref(), Some("api"));
        assert_eq!(outcome(&u, &Req::at("h", "/old")), Outcome::NoRoute);
        assert_eq!(order_names(&u), ["api", "zz"]);
        // Replacing it again replaces the delta version, not the base one.
        let u = u.update(&[Arc::new(simple("api", &["/newer"]))], &[]);
        assert_eq!(outcome(&u, &Req::at("h", "/new")), Outcome::NoRoute);
        assert_eq!(routed(&u, &Req::at("h", "/newer")).as_deref(), Some("api"));
        assert_eq!(u.routes().count(), 2);
        assert_eq!(u.changed_services(), 1);
    }

    #[test]
    fn layers_are_ordered_by_group_acl_name_then_service_name() {
        let (_s, t) = table(vec![
            with_acl(simple("m", &["/x"]), "m"),
            simple("root", &["/"]),
        ]);
        let u = t.update(
            &[
                Arc::new(with_acl(simple("early", &["/x"]), "a")),
                Arc::new(with_acl(simple("late", &["/x"]), "z")),
                Arc::new(with_acl(simple("acme", &["/.well-known/a"]), "zz")),
            ],
            &[],
        );
        assert_eq!(order_names(&u), ["acme", "early", "m", "late", "root"]);
        assert_eq!(routed(&u, &Req::at("h", "/x")).as_deref(), Some("early"));
        assert_eq!(
            routed(&u, &Req::at("h", "/.well-known/a")).as_deref(),
            Some("acme")
        );
        let u = u.update(&[], &["early"]);
        assert_eq!(routed(&u, &Req::at("h", "/x")).as_deref(), Some("m"));
        let u = u.update(&[], &["m"]);
        assert_eq!(routed(&u, &Req::at("h", "/x")).as_deref(), Some("late"));
        // The same aclName orders by service name, across layers too.
        let (_s, t) = table(vec![with_acl(simple("n2", &["/n"]), "same")]);
        let u = t.update(&[Arc::new(with_acl(simple("n1", &["/n"]), "same"))], &[]);
        assert_eq!(routed(&u, &Req::at("h", "/n")).as_deref(), Some("n1"));
        let u = t.update(&[Arc::new(with_acl(simple("n3", &["/n"]), "same"))], &[]);
        assert_eq!(routed(&u, &Req::at("h", "/n")).as_deref(), Some("n2"));
    }

    #[test]
    fn the_default_backend_is_the_last_default_across_layers() {
        let default = |name: &str| {
            let mut s = simple(name, &[&format!("/{name}")]);
            s.is_default_backend = true;
            s
        };
        let (_s, t) = table(vec![default("d1"), default("d3")]);
        let unmatched = Req::at("h", "/nothing");
        assert_eq!(routed(&t, &unmatched).as_deref(), Some("d3"));
        let u = t.update(&[Arc::new(default("d2"))], &[]);
        assert_eq!(routed(&u, &unmatched).as_deref(), Some("d3"));
        let u = u.update(&[], &["d3"]);
        assert_eq!(routed(&u, &unmatched).as_deref(), Some("d2"));
        let u = u.update(&[], &["d2"]);
        assert_eq!(routed(&u, &unmatched).as_deref(), Some("d1"));
        let u = u.update(&[Arc::new(simple("d1", &["/d1"]))], &[]);
        assert_eq!(outcome(&u, &unmatched), Outcome::NoRoute);
        assert!(u.default_route().is_none());
        let u = u.update(&[Arc::new(default("d4"))], &[]);
        assert_eq!(
            u.default_route().map(Route::backend_name).as_deref(),
            Some("d4-be8080_0")
        );
        assert!(u
            .render()
            .lines()
            .any(|l| l.starts_with("route") && l.contains("d4-be8080_0") && l.contains("default")));
    }

    #[test]
    fn redirects_follow_rule_order_across_layers() {
        let moved = |name: &str, acl: &str, to: &str| {
            let mut s = with_acl(simple(name, &["/"]), acl);
            s.destinations[0].domains = vec![host(to)];
            s.destinations[0].redirect_from_domains = vec![host("old.com")];
            Arc::new(s)
        };
        let t = RouteTable::build([&moved("b", "b", "b.com")]);
        let old = Req::at("old.com", "/p");
        let to = |host: &str| Outcome::Redirect(301, format!("http://{host}/p"));
        assert_eq!(outcome(&t, &old), to("b.com"));
        let u = t.update(&[moved("a", "a", "a.com"), moved("c", "c", "c.com")], &[]);
        assert_eq!(outcome(&u, &old), to("a.com"));
        let u = u.update(&[], &["a"]);
        assert_eq!(outcome(&u, &old), to("b.com"));
        let u = u.update(&[], &["b"]);
        assert_eq!(outcome(&u, &old), to("c.com"));
        // A proto redirect of an earlier base service beats a later delta service's rule.
        let mut proto = with_acl(simple("p", &["/"]), "0");
        proto.redirect_unless_https_proto = true;
        let u = u.update(&[Arc::new(proto)], &[]);
        assert_eq!(
            outcome(&u, &old),
            Outcome::Redirect(302, "https://old.com/p".into())
        );
        let lines: Vec<String> = u
            .render()
            .lines()
            .filter(|l| l.starts_with("redirect"))
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("service=p") && lines[1].contains("service=c"));
    }

    #[test]
    fn upserts_apply_before_removals_and_the_last_upsert_wins() {
        let (_s, t) = table(vec![simple("a", &["/a"])]);
        let u = t.update(&[Arc::new(simple("a", &["/b"]))], &["a"]);
        assert!(u.is_empty());
        let u = t.update(
            &[
                Arc::new(simple("n", &["/first"])),
                Arc::new(simple("n", &["/second"])),
            ],
            &[],
        );
        assert_eq!(outcome(&u, &Req::at("h", "/first")), Outcome::NoRoute);
        assert_eq!(routed(&u, &Req::at("h", "/second")).as_deref(), Some("n"));
        assert_eq!(order_names(&u), ["a", "n"]);
    }

    #[test]
    fn updates_compact_past_the_bound() {
        let services: Vec<Arc<Service>> = (0..4)
            .map(|i| Arc::new(simple(&format!("s{i}"), &[&format!("/{i}")])))
            .collect();
        let t = RouteTable::build(&services);
        let same = t.update(&[], &[]);
        assert!(Arc::ptr_eq(&t.base, &same.base) && Arc::ptr_eq(&t.delta, &same.delta));
        let mut u = t.clone();
        for (i, name) in ["s0", "s1", "new"].into_iter().enumerate() {
            u = u.update(&[Arc::new(simple(name, &["/moved"]))], &[]);
            assert_eq!(u.changed_services(), i + 1);
            assert!(Arc::ptr_eq(&t.base, &u.base));
        }
        // The same name again does not count twice.
        u = u.update(&[Arc::new(simple("s1", &["/again"]))], &[]);
        assert_eq!(u.changed_services(), 3);
        // A fourth distinct change passes the bound (3 for 4 or 5 services in tests): one base
        // again.
        u = u.update(&[], &["s2"]);
        assert_eq!(u.changed_services(), 0);
        assert!(!Arc::ptr_eq(&t.base, &u.base));
        assert!(u.delta.services.is_empty() && u.shadow.is_empty());
        assert_eq!(order_names(&u), ["new", "s0", "s1", "s3"]);
        assert_eq!(routed(&u, &Req::at("h", "/again")).as_deref(), Some("s1"));
        assert_eq!(routed(&u, &Req::at("h", "/moved")).as_deref(), Some("new"));
        assert_eq!(compaction_bound(10), 4);
        assert_eq!(compaction_bound(0), MIN_DELTA);
        assert_eq!(compaction_bound(1_000_000), 1_414);
    }

    #[test]
    fn route_numbers_stay_unique_after_updates() {
        let (_s, t) = table(vec![simple("a", &["/a"]), simple("b", &["/b"])]);
        let mut extra = simple("c", &["/c"]);
        extra.destinations[0].https_port = Some(8443);
        let u = t.update(&[Arc::new(extra)], &["a"]);
        let mut orders: Vec<usize> = u.routes().map(|r| r.order).collect();
        orders.sort_unstable();
        orders.dedup();
        assert_eq!(orders.len(), 3);
    }

    #[derive(Debug, Clone)]
    struct Step {
        upserts: Vec<(usize, SvcSpec)>,
        removed: Vec<usize>,
    }

    fn step_spec() -> impl Strategy<Value = Step> {
        use proptest::collection::vec;
        (vec((0..10usize, svc_spec()), 0..3), vec(0..10usize, 0..3))
            .prop_map(|(upserts, removed)| Step { upserts, removed })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn updates_agree_with_a_full_build(
            initial in proptest::collection::vec(svc_spec(), 0..7),
            steps in proptest::collection::vec(step_spec(), 1..8),
            reqs in proptest::collection::vec(req_spec(), 1..16),
        ) {
            let mut live: std::collections::BTreeMap<String, Arc<Service>> = initial
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("s{i}"), Arc::new(to_service(i, s))))
                .collect();
            let mut t = RouteTable::build(live.values());
            for step in &steps {
                let upserts: Vec<Arc<Service>> = step
                    .upserts
                    .iter()
                    .map(|(i, s)| Arc::new(to_service(*i, s)))
                    .collect();
                let names: Vec<String> = step.removed.iter().map(|i| format!("s{i}")).collect();
                let removed: Vec<&str> = names.iter().map(String::as_str).collect();
                t = t.update(&upserts, &removed);
                for s in &upserts {
                    live.insert(s.name.clone(), Arc::clone(s));
                }
                for name in &names {
                    live.remove(name);
                }
                prop_assert!(t.changed_services() <= compaction_bound(live.len()));

                let built = RouteTable::build(live.values());
                prop_assert_eq!(route_ids(&t), route_ids(&built));
                prop_assert_eq!(t.is_empty(), built.is_empty());
                prop_assert_eq!(
                    t.default_route().map(Route::backend_name),
                    built.default_route().map(Route::backend_name)
                );
                prop_assert_eq!(t.render(), built.render());
                for req in &reqs {
                    prop_assert_eq!(identity(&t, req), identity(&built, req), "request {:?}", req);
                }
            }
        }
    }
}
