//! Explain: why a request gets the answer it gets.
//!
//! [`RouteTable::explain`] runs the data plane's own evaluation ([`RouteTable::decide_traced`]
//! with a recording [`Trace`]) and then, for every route the index did not offer, the same
//! per-route check ([`Route::check`]), so each route gets a [`Verdict`]: chosen, matching but
//! not first, or the first term that failed. The hot path uses [`NoTrace`], whose calls
//! compile to nothing.

use std::collections::HashMap;

use super::regexes::RegexHits;
use super::request::{Prepared, RequestFacts};
use super::routes::{Decision, Mismatch, Route};
use super::table::RouteTable;
use super::trace::{RedirectFired, Trace};

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
