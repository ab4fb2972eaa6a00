//! Rendering: a readable text form of the live table ([`RouteTable::render`]).

use std::fmt::Write as _;

use super::redirects::RedirectKind;
use super::routes::Route;
use super::table::RouteTable;
use crate::service::{DomainPattern, PathPattern};

impl RouteTable {
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

    pub(super) fn flags(&self, route: &Route) -> String {
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

pub(super) fn port_text(port: Option<u16>) -> String {
    port.map_or_else(|| "any".to_string(), |p| p.to_string())
}

pub(super) fn domain_list(domains: &[DomainPattern]) -> String {
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

pub(super) fn path_list(paths: &[PathPattern]) -> String {
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
