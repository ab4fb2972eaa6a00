//! Redirects: the frontend redirect rules (`redirectFromDomain`, `redirectWhenHttpProto`,
//! `redirectUnlessHttpsProto`) and the `X-Forwarded-Proto` they look at.

use std::sync::Arc;

use http::HeaderMap;

use super::regexes::{RegexHits, Subject};
use super::request::{Prepared, RequestFacts};
use super::routes::{is_path_regex, port_allows, regex_terms_match, Decision, RegexTerms};
use super::trace::RedirectFired;
use crate::service::{DomainPattern, Service};

/// The header the `redirectWhenHttpProto` / `redirectUnlessHttpsProto` rules look at.
pub(super) const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// What `X-Forwarded-Proto` says. Each comma-separated element of every occurrence counts
/// (HAProxy's `hdr()` iterates them the same way); the comparison is case-sensitive.
#[derive(Debug, Clone, Copy)]
pub(super) struct ForwardedProto {
    pub(super) http: bool,
    pub(super) https: bool,
}

impl ForwardedProto {
    pub(super) fn of(headers: &HeaderMap) -> Self {
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
pub(super) struct RedirectRule {
    pub(super) service: Arc<Service>,
    /// [`Service::sort_group`] of the service.
    pub(super) group: u8,
    /// The service's position in its layer.
    pub(super) slot: usize,
    pub(super) dest: usize,
    pub(super) kind: RedirectKind,
}

#[derive(Debug)]
pub(super) enum RedirectKind {
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
    pub(super) fn order_key(&self) -> (u8, &str, &str, bool, usize) {
        (
            self.group,
            &self.service.acl_name,
            &self.service.name,
            matches!(self.kind, RedirectKind::Proto { .. }),
            self.dest,
        )
    }

    /// What a trace is told when this rule fires.
    pub(super) fn fired(&self) -> RedirectFired<'_> {
        let rule = match self.kind {
            RedirectKind::FromDomain { .. } => "redirectFromDomain",
            RedirectKind::Proto {
                when_http: true, ..
            } => "redirectWhenHttpProto",
            RedirectKind::Proto { .. } => "redirectUnlessHttpsProto",
        };
        RedirectFired {
            service: &self.service,
            dest: self.dest,
            rule,
        }
    }

    /// The answer this rule gives the request.
    pub(super) fn decision(&self, req: &RequestFacts<'_>) -> Decision<'static> {
        let uri = if req.path_and_query.is_empty() {
            "/"
        } else {
            req.path_and_query
        };
        match &self.kind {
            RedirectKind::FromDomain { target } => Decision::Redirect {
                status: 301,
                location: format!("http://{target}{uri}"),
            },
            RedirectKind::Proto { status, .. } => Decision::Redirect {
                status: *status,
                location: format!("https://{}{uri}", req.host.unwrap_or_default().trim()),
            },
        }
    }

    pub(super) fn applies(
        &self,
        p: &Prepared<'_, '_>,
        proto: ForwardedProto,
        hits: &RegexHits<'_>,
    ) -> bool {
        let d = &self.service.destinations[self.dest];
        let Some(host) = p.host.as_deref() else {
            return false;
        };
        match &self.kind {
            RedirectKind::FromDomain { target } => {
                host != target.as_str()
                    && d.redirect_from_domains.iter().any(|rd| match rd {
                        DomainPattern::Regex(r) => hits.is_match(Subject::Host, r),
                        plain => plain.matches(host),
                    })
            }
            RedirectKind::Proto {
                when_http,
                unless_https,
                src_port,
                ..
            } => {
                let req = p.req;
                let wanted = (*when_http && proto.http) || (*unless_https && !proto.https);
                if !wanted
                    || req.host.is_none_or(|raw| raw.trim().is_empty())
                    || !port_allows(*src_port, req.local_port)
                {
                    return false;
                }
                let plain_path = d
                    .paths
                    .iter()
                    .filter(|pat| !is_path_regex(pat))
                    .any(|pat| pat.matches(req.path, req.path_and_query));
                let plain_domain = d.domains.is_empty()
                    || d.domains
                        .iter()
                        .filter(|pat| !matches!(pat, DomainPattern::Regex(_)))
                        .any(|pat| pat.matches(host));
                let path_needs_regex = !plain_path && d.paths.iter().any(is_path_regex);
                let domain_needs_regex = !plain_domain
                    && d.domains
                        .iter()
                        .any(|pat| matches!(pat, DomainPattern::Regex(_)));
                (plain_path || path_needs_regex)
                    && (plain_domain || domain_needs_regex)
                    && regex_terms_match(
                        // DFP's proto redirects test the paths and domains, not the excludes.
                        RegexTerms {
                            paths: &d.paths,
                            path_excludes: &[],
                            domains: &d.domains,
                        },
                        hits,
                        path_needs_regex,
                        domain_needs_regex,
                    )
                    .is_ok()
            }
        }
    }
}
