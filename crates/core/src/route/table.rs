//! The table itself: [`RouteTable`] with its build, incremental update and
//! [`RouteTable::decide`].

use std::collections::HashMap;
use std::iter::Peekable;
use std::sync::Arc;

use super::budget::{RegexBudgetError, TABLE_REGEX_LIMIT};
use super::layers::Layer;
use super::redirects::{ForwardedProto, RedirectRule};
use super::regexes::RegexHits;
use super::request::{Prepared, RequestFacts};
use super::routes::{Decision, Route};
use super::trace::{NoTrace, Trace};
use crate::service::Service;

/// The immutable compiled routing table. See the module documentation.
///
/// Cloning is cheap (the indexed layers are shared), but a clone is rarely needed:
/// [`RouteTable::update`] already shares everything unchanged.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// The indexed services of the last full build, shared by every table updated from it.
    pub(super) base: Arc<Layer>,
    /// One bit per base service slot: set when the service was replaced or removed since the
    /// base was built. Only as long as the highest shadowed slot needs.
    pub(super) shadow: Vec<u64>,
    /// What is still live in the base.
    pub(super) base_live: Tally,
    /// The services added or replaced since the base was built (their current versions).
    pub(super) delta: Arc<Layer>,
    /// Where the default backend's route is.
    pub(super) default_route: Option<At>,
    /// Distinct service names added, replaced or removed since the base was built.
    pub(super) changed: usize,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable::build(std::iter::empty())
    }
}

/// Live services, routes and redirect rules of the base layer.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    pub(super) services: usize,
    pub(super) routes: usize,
    pub(super) redirects: usize,
    pub(super) regex_size: usize,
}

/// The layer an item of a [`RouteTable`] lives in, with its position there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum At {
    Base(usize),
    Delta(usize),
}

/// Changed services tolerated on top of the base before [`RouteTable::update`] compacts
/// (tests use a tiny bound so that short update sequences exercise compaction).
pub(super) const MIN_DELTA: usize = if cfg!(test) { 3 } else { 256 };

/// The most changed services a table with `live` services carries before compacting: the
/// larger of [`MIN_DELTA`] and √(2·live).
///
/// Re-indexing one service costs about the same in the delta as in a full build, so with a
/// bound `b` an update costs on average `b/2` services of delta rebuild plus `live/b` of the
/// next full build; `b = √(2·live)` minimises that sum. The floor keeps compactions below
/// 0.4% of a stream of single-service updates, so they stay out of its p99. (A bound
/// proportional to the table, such as `live/8`, makes every update O(live) again: measured
/// at 10,000 services it gave a p50 of 0.7-0.9 ms against 0.13-0.2 ms for this one.)
pub(super) fn compaction_bound(live: usize) -> usize {
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
                regex_size: base.services.iter().map(|s| s.regex_size).sum(),
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

    /// The compiled size of the regular expressions of every live service (bounded by
    /// [`MAX_TABLE_REGEX_SIZE`] when every change went through
    /// [`check_regex_budget`](Self::check_regex_budget)).
    ///
    /// [`MAX_TABLE_REGEX_SIZE`]: crate::route::MAX_TABLE_REGEX_SIZE
    pub fn regex_size(&self) -> usize {
        self.base_live.regex_size
            + self
                .delta
                .services
                .iter()
                .map(|s| s.regex_size)
                .sum::<usize>()
    }

    /// Refuses `service` when adding it (or replacing the live service of its name with it)
    /// would take [`regex_size`](Self::regex_size) past [`MAX_TABLE_REGEX_SIZE`]. A change
    /// that does not grow the service's expressions is always accepted. Call it before
    /// [`update`](Self::update), which itself never refuses anything.
    ///
    /// [`MAX_TABLE_REGEX_SIZE`]: crate::route::MAX_TABLE_REGEX_SIZE
    pub fn check_regex_budget(&self, service: &Service) -> Result<(), RegexBudgetError> {
        let current = match self.delta.slots_named(&service.name) {
            [slot, ..] => self.delta.services[*slot].regex_size,
            [] => self
                .base
                .slots_named(&service.name)
                .iter()
                .filter(|slot| !self.shadowed(**slot))
                .map(|slot| self.base.services[*slot].regex_size)
                .sum(),
        };
        let size = service.regex_size();
        let others = self.regex_size().saturating_sub(current);
        if size > current && others + size > TABLE_REGEX_LIMIT {
            return Err(RegexBudgetError {
                service: service.name.clone(),
                service_size: size,
                others_size: others,
                limit: TABLE_REGEX_LIMIT,
            });
        }
        Ok(())
    }

    /// Marks a base service as replaced or removed.
    pub(super) fn shadow_slot(&mut self, slot: usize) {
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
        self.base_live.regex_size -= service.regex_size;
    }

    /// True when the base service in `slot` was replaced or removed.
    pub(super) fn shadowed(&self, slot: usize) -> bool {
        self.shadow
            .get(slot / 64)
            .is_some_and(|word| word & (1u64 << (slot % 64)) != 0)
    }

    /// Finds the default backend: the last default service in evaluation order over both
    /// layers, skipping shadowed base services.
    pub(super) fn locate_default(&mut self) {
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
        self.decide_traced(req, &mut NoTrace)
    }

    /// [`decide`](Self::decide), telling `trace` what it looks at: every candidate route the
    /// index offers with the outcome of its check, and the redirect rule that fires. With
    /// [`NoTrace`] this is `decide` itself (the calls compile to nothing).
    pub fn decide_traced<T: Trace>(&self, req: &RequestFacts<'_>, trace: &mut T) -> Decision<'_> {
        let p = Prepared::new(req);
        let host = p.host.as_deref();
        let hits = [
            RegexHits::new(&self.base.regexes, req.path, host),
            RegexHits::new(&self.delta.regexes, req.path, host),
        ];
        if let Some(rule) = self.redirect_rule(&p, &hits) {
            trace.redirect(rule.fired());
            return rule.decision(req);
        }
        let base = self
            .base
            .best_route(&p, &hits[0], |slot| !self.shadowed(slot), trace);
        let delta = self.delta.best_route(&p, &hits[1], |_| true, trace);
        match earlier(base, delta, Route::order_key).or_else(|| self.default_route()) {
            Some(route) => Decision::Forward(route),
            None => Decision::NoRoute,
        }
    }

    /// The redirect rule that fires for the request, if any.
    pub(super) fn redirect_rule(
        &self,
        p: &Prepared<'_, '_>,
        hits: &[RegexHits<'_>; 2],
    ) -> Option<&RedirectRule> {
        if self.base_live.redirects == 0 && self.delta.redirects.is_empty() {
            return None;
        }
        let proto = ForwardedProto::of(p.req.headers);
        let base = self
            .base
            .best_redirect(p, proto, &hits[0], |slot| !self.shadowed(slot));
        let delta = self.delta.best_redirect(p, proto, &hits[1], |_| true);
        earlier(base, delta, RedirectRule::order_key)
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
    pub(super) fn redirects(&self) -> impl Iterator<Item = &RedirectRule> + '_ {
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
}

/// Of two candidates from different layers, the one earlier in evaluation order.
pub(super) fn earlier<'t, T, K: Ord>(
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
pub(super) struct Merge<A: Iterator, B: Iterator, F> {
    pub(super) a: Peekable<A>,
    pub(super) b: Peekable<B>,
    pub(super) a_first: F,
}

impl<A, B, F> Merge<A, B, F>
where
    A: Iterator,
    B: Iterator<Item = A::Item>,
    F: FnMut(&A::Item, &A::Item) -> bool,
{
    pub(super) fn new(a: A, b: B, a_first: F) -> Self {
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
