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
//! Regular expressions (`path_reg` paths and excludes, `hdr_reg(host)` domains) are checked
//! last in a candidate, after its port, plain paths and hosts, headers and User-Agent, and not
//! one by one: each layer compiles its distinct expressions into one `RegexSet` per subject
//! (path, host) and case sensitivity, which a request runs at most once, on first need (see
//! `regexes.rs`). A path expression anchored with a literal prefix (`^/api/v[0-9]`) is filed
//! in the index under that prefix (`/api/v`), so only requests under it reach it at all.
//! [`regex_runs`] counts those executions. The compiled size of all services'
//! expressions is bounded by [`MAX_TABLE_REGEX_SIZE`]; [`RouteTable::check_regex_budget`]
//! refuses a service that would exceed it.
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
//!
//! # Explain
//!
//! [`RouteTable::decide_traced`] is `decide` with a [`Trace`] that hears every candidate
//! route's check ([`Mismatch`]: the first term that failed) and the redirect rule that fired;
//! `decide` passes [`NoTrace`], whose calls compile away. [`RouteTable::explain`] records that
//! trace and checks the routes the index ruled out with the same [`Route::check`], giving one
//! [`Verdict`] per route. The deny phase after routing (`httpsOnly`, `verifyClientSsl`,
//! `allowedMethods`, `deniedMethods`, `denyHttp`) is [`refusal`], shared likewise.
//!
//! [`Service::sort_key`]: crate::service::Service::sort_key
//! [`DomainPattern`]: crate::service::DomainPattern

mod budget;
mod explain;
mod index;
mod layers;
mod redirects;
mod refusal;
mod regexes;
mod rendering;
mod request;
mod routes;
mod table;
mod trace;

pub use budget::{RegexBudgetError, MAX_TABLE_REGEX_SIZE};
pub use explain::{Explanation, Verdict};
pub use refusal::{https_location, refusal, Arrival, Refusal};
pub use regexes::regex_runs;
pub use request::RequestFacts;
pub use routes::{Decision, Mismatch, Route};
pub use table::RouteTable;
pub use trace::{NoTrace, RedirectFired, Trace};

#[cfg(test)]
mod tests;
