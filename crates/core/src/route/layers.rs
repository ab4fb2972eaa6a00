//! Layers: the base and delta halves of a [`RouteTable`], each an indexed table of routes and
//! redirect rules in evaluation order.

use std::sync::Arc;

use http::header::HeaderName;

use super::index::{IndexItem, MatchIndex, PathSpec};
use super::redirects::{ForwardedProto, RedirectKind, RedirectRule};
use super::regexes::{LayerRegexes, RegexHits, Subject};
use super::request::Prepared;
use super::routes::Route;
use super::trace::Trace;
use crate::service::{DomainPattern, PathPattern, ReqMode, Service, UserRegex};

/// One service of a [`Layer`], in evaluation order.
#[derive(Debug)]
pub(super) struct LayerService {
    pub(super) service: Arc<Service>,
    /// How many routes and redirect rules the service contributed.
    pub(super) routes: usize,
    pub(super) redirects: usize,
    /// [`Service::regex_size`].
    pub(super) regex_size: usize,
}

/// One indexed set of services: what a full build produces. A table is a base layer plus a
/// delta layer of the services changed since.
#[derive(Debug, Default)]
pub(super) struct Layer {
    /// Added to every route's position to give [`Route::order`].
    pub(super) order_offset: usize,
    /// The services in evaluation order; a route's or rule's `slot` indexes this.
    pub(super) services: Vec<LayerService>,
    /// Slots sorted by service name, to find a service by name.
    pub(super) by_name: Vec<usize>,
    pub(super) routes: Vec<Route>,
    pub(super) index: MatchIndex,
    pub(super) redirects: Vec<RedirectRule>,
    pub(super) redirect_index: MatchIndex,
    /// The regular expressions of the routes and redirect rules, as sets.
    pub(super) regexes: LayerRegexes,
    /// Per default-backend service with routes, in order: the route it contributes.
    pub(super) defaults: Vec<usize>,
}

impl Layer {
    pub(super) fn build<'a>(
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
        layer.regexes = LayerRegexes::build(layer.regex_terms());
        layer
    }

    /// Every regular expression a route or redirect rule of this layer may run.
    fn regex_terms(&self) -> impl Iterator<Item = (Subject, &UserRegex)> + '_ {
        let routes = self.routes.iter().map(Route::destination);
        let redirects = self
            .redirects
            .iter()
            .map(|rule| &rule.service.destinations[rule.dest]);
        routes.chain(redirects).flat_map(|d| {
            let paths = d
                .paths
                .iter()
                .chain(&d.path_excludes)
                .filter_map(|pat| match pat {
                    PathPattern::Regex(r) => Some((Subject::Path, r)),
                    _ => None,
                });
            let hosts =
                d.domains
                    .iter()
                    .chain(&d.redirect_from_domains)
                    .filter_map(|pat| match pat {
                        DomainPattern::Regex(r) => Some((Subject::Host, r)),
                        _ => None,
                    });
            paths.chain(hosts)
        })
    }

    /// The slots of the services called `name` (at most one unless `build` got duplicates).
    pub(super) fn slots_named(&self, name: &str) -> &[usize] {
        let name_of = |slot: usize| self.services[slot].service.name.as_str();
        let start = self.by_name.partition_point(|&slot| name_of(slot) < name);
        let len = self.by_name[start..].partition_point(|&slot| name_of(slot) == name);
        &self.by_name[start..start + len]
    }

    /// Appends the routes and redirect rules of one service (services arrive in order).
    pub(super) fn add_service(&mut self, group: u8, service: &Arc<Service>) {
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
            regex_size: service.regex_size(),
        });
    }

    pub(super) fn push_route(&mut self, spec: RouteSpec<'_>) {
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
    /// accepts (by slot). `trace` hears of every route checked.
    pub(super) fn best_route(
        &self,
        p: &Prepared<'_, '_>,
        hits: &RegexHits<'_>,
        keep: impl Fn(usize) -> bool,
        trace: &mut impl Trace,
    ) -> Option<&Route> {
        if self.routes.is_empty() {
            return None;
        }
        let req = p.req;
        self.index
            .best(p.host.as_deref(), req.path, req.path_and_query, |rank| {
                let route = &self.routes[rank];
                if !keep(route.slot) {
                    return false;
                }
                let outcome = route.check_prepared(p, hits);
                trace.candidate(route, outcome);
                outcome.is_ok()
            })
            .map(|rank| &self.routes[rank])
    }

    /// The first redirect rule in this layer's order that applies and whose service `keep`
    /// accepts (by slot).
    pub(super) fn best_redirect(
        &self,
        p: &Prepared<'_, '_>,
        proto: ForwardedProto,
        hits: &RegexHits<'_>,
        keep: impl Fn(usize) -> bool,
    ) -> Option<&RedirectRule> {
        if self.redirects.is_empty() {
            return None;
        }
        let req = p.req;
        self.redirect_index
            .best(p.host.as_deref(), req.path, req.path_and_query, |rank| {
                let rule = &self.redirects[rank];
                keep(rule.slot) && rule.applies(p, proto, hits)
            })
            .map(|rank| &self.redirects[rank])
    }
}

/// What [`Layer::push_route`] needs for one route.
pub(super) struct RouteSpec<'s> {
    pub(super) service: &'s Arc<Service>,
    pub(super) group: u8,
    pub(super) slot: usize,
    pub(super) dest: usize,
    pub(super) https: bool,
    pub(super) upstream_port: u16,
    pub(super) src_port: Option<u16>,
    pub(super) headers: Vec<(Option<HeaderName>, String)>,
}
