//! Explain: why a request gets the answer it gets.
//!
//! [`RouteTable::explain`] runs the data plane's own evaluation ([`RouteTable::decide_traced`]
//! with a recording [`Trace`]) and then, for every route the index did not offer, the same
//! per-route check ([`Route::check`]), so each route gets a [`Verdict`]: chosen, matching but
//! not first, or the first term that failed. The hot path uses [`NoTrace`], whose calls
//! compile to nothing.

use std::collections::HashMap;
use std::sync::Arc;

use super::regexes::RegexHits;
use super::table::{Decision, Prepared, RequestFacts, Route, RouteTable};
use crate::service::Service;

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

/// A redirect rule that fired.
#[derive(Debug, Clone, Copy)]
pub struct RedirectFired<'t> {
    /// The service that declared it.
    pub service: &'t Arc<Service>,
    /// Its destination (index into `service.destinations`).
    pub dest: usize,
    /// The parameter behind it: `redirectFromDomain`, `redirectWhenHttpProto` or
    /// `redirectUnlessHttpsProto`.
    pub rule: &'static str,
}

/// What [`RouteTable::decide_traced`] reports while it decides.
pub trait Trace {
    /// The index offered `route` and its check gave `outcome`.
    #[inline(always)]
    fn candidate(&mut self, route: &Route, outcome: Result<(), Mismatch>) {
        let _ = (route, outcome);
    }

    /// This redirect rule fired (the routes were not looked at).
    #[inline(always)]
    fn redirect(&mut self, fired: RedirectFired<'_>) {
        let _ = fired;
    }
}

/// The trace of the data plane: hears nothing, costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTrace;

impl Trace for NoTrace {}

/// Remembers what `decide_traced` checked, by route order.
#[derive(Default)]
struct Recorder {
    checked: HashMap<usize, Result<(), Mismatch>>,
    redirect: Option<(String, usize, &'static str)>,
}

impl Trace for Recorder {
    fn candidate(&mut self, route: &Route, outcome: Result<(), Mismatch>) {
        self.checked.insert(route.order, outcome);
    }

    fn redirect(&mut self, fired: RedirectFired<'_>) {
        self.redirect = Some((fired.service.name.clone(), fired.dest, fired.rule));
    }
}

/// One route's part in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request goes to this route.
    Chosen,
    /// Every term matches, but an earlier route won (or a redirect fired first).
    Matches,
    /// This term failed first.
    Fails(Mismatch),
}

/// Why a request gets its [`Decision`] (see [`RouteTable::explain`]).
#[derive(Debug)]
pub struct Explanation<'t> {
    /// The decision, as the data plane takes it.
    pub decision: Decision<'t>,
    /// The redirect rule that fired: service name, destination, parameter.
    pub redirect: Option<(String, usize, &'static str)>,
    /// The request went to the default backend (`isDefaultBackend`): no route matched.
    pub by_default: bool,
    /// Every route in evaluation order with its verdict.
    pub routes: Vec<(&'t Route, Verdict)>,
    /// Routes whose verdict came from the data plane's own candidate checks (the others were
    /// never candidates: the index ruled them out by host or path).
    pub checked: usize,
}

impl RouteTable {
    /// Explains the decision for one request: the decision itself (by
    /// [`decide_traced`](Self::decide_traced), the data plane's code) and a verdict per route.
    pub fn explain<'t>(&'t self, req: &RequestFacts<'_>) -> Explanation<'t> {
        let mut recorder = Recorder::default();
        let decision = self.decide_traced(req, &mut recorder);
        let chosen = match &decision {
            Decision::Forward(route) => Some(route.order),
            _ => None,
        };
        let by_default =
            chosen.is_some() && !recorder.checked.values().any(|outcome| outcome.is_ok());
        let p = Prepared::new(req);
        let hits = RegexHits::direct(req.path, p.host.as_deref());
        let mut checked = 0;
        let routes = self
            .routes()
            .map(|route| {
                let outcome = match recorder.checked.get(&route.order) {
                    Some(outcome) => {
                        checked += 1;
                        *outcome
                    }
                    None => route.check_prepared(&p, &hits),
                };
                let verdict = match outcome {
                    _ if Some(route.order) == chosen => Verdict::Chosen,
                    Ok(()) => Verdict::Matches,
                    Err(mismatch) => Verdict::Fails(mismatch),
                };
                (route, verdict)
            })
            .collect();
        Explanation {
            decision,
            redirect: recorder.redirect,
            by_default,
            routes,
            checked,
        }
    }
}
