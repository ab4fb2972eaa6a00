//! Layer-4 routes: the ports the `reqMode=tcp` and `reqMode=sni` destinations of the service set
//! ask the data plane to listen on, and where a connection on such a port goes.
//!
//! [`StreamTable::build`] groups destinations by `srcPort` in DFP's service order (see
//! [`Service::sort_key`], then destination order) and checks the result:
//!
//! * a port carries one mode only: tcp and sni destinations on one port are a
//!   [`PortConflict::Modes`] (HAProxy split such connections randomly);
//! * a port that is an HTTP listener port is a [`PortConflict::Http`];
//! * a port has at most one route without a server-name condition: a second one is a
//!   [`PortConflict::Ambiguous`] (DFP let the last one win silently).
//!
//! On a **tcp** port a destination with `serviceDomain` is a rule matched against the TLS server
//! name (SNI) of the connection's ClientHello; one without is the port's default route.
//! Destinations sharing a `serviceGroup` on a port form one route that balances over all their
//! upstreams (`balanceGroup`, timeouts and checks come from the group's first member, as DFP);
//! the group matches the union of its members' domains, or is the default when none has any.
//! On an **sni** port every destination is a rule matched by its `servicePath` server-name
//! patterns (`pathType=req_ssl_sni …`) or its `serviceDomain` patterns; a destination with
//! neither matches every connection (Sluice's addition: DFP rendered an ACL that never matched).
//! Rules are tried in order and the first match wins; otherwise the default route, otherwise the
//! connection is closed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::service::{Balance, DomainPattern, PathPattern, ReqMode, Service};

/// Why a service set cannot be served on layer 4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortConflict {
    /// A port has both tcp and sni destinations.
    #[error(
        "port {port} cannot serve reqMode={first_mode} (service {first}) and reqMode={second_mode} \
         (service {second}) at once"
    )]
    Modes {
        /// The `srcPort`.
        port: u16,
        /// The service already on the port.
        first: String,
        /// Its mode.
        first_mode: &'static str,
        /// The service with the other mode.
        second: String,
        /// Its mode.
        second_mode: &'static str,
    },
    /// A tcp or sni `srcPort` is one of the HTTP listener ports.
    #[error("port {port} of service {service} (reqMode={mode}) is an HTTP listener port")]
    Http {
        /// The `srcPort`.
        port: u16,
        /// The service asking for it.
        service: String,
        /// Its mode.
        mode: &'static str,
    },
    /// Two routes on one port would both take every connection.
    #[error(
        "port {port} already sends every connection to service {first}; service {second} needs a \
         serviceDomain (tcp) or servicePath server names (sni) to share it"
    )]
    Ambiguous {
        /// The `srcPort`.
        port: u16,
        /// The service holding the catch-all route.
        first: String,
        /// The second catch-all service.
        second: String,
    },
}

impl PortConflict {
    /// The port in conflict.
    pub fn port(&self) -> u16 {
        match self {
            PortConflict::Modes { port, .. }
            | PortConflict::Http { port, .. }
            | PortConflict::Ambiguous { port, .. } => *port,
        }
    }

    /// The services involved.
    pub fn services(&self) -> [&str; 2] {
        match self {
            PortConflict::Modes { first, second, .. }
            | PortConflict::Ambiguous { first, second, .. } => [first, second],
            PortConflict::Http { service, .. } => [service, service],
        }
    }
}

/// Where a route sends connections: one upstream host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The service name or `outboundHostname`.
    pub host: String,
    /// The upstream `port`.
    pub port: u16,
    /// Look up `tasks.<host>` first (no `outboundHostname`).
    pub tasks_first: bool,
    /// The service the target came from.
    pub service: String,
}

/// The server-name condition of a route.
#[derive(Debug, Clone, Default)]
pub struct NameMatch {
    /// `servicePath` server-name patterns (sni mode).
    pub sni: Vec<crate::service::SniPattern>,
    /// `serviceDomain` patterns.
    pub domains: Vec<DomainPattern>,
}

impl NameMatch {
    /// True when there is no condition.
    pub fn is_empty(&self) -> bool {
        self.sni.is_empty() && self.domains.is_empty()
    }

    /// True when the (lower-case) server name satisfies the condition.
    pub fn matches(&self, name: &str) -> bool {
        self.sni.iter().any(|p| p.matches(name)) || self.domains.iter().any(|d| d.matches(name))
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .sni
            .iter()
            .map(|p| PathPattern::Sni(p.clone()).text().to_string())
            .collect();
        parts.extend(self.domains.iter().map(DomainPattern::text));
        if parts.is_empty() {
            "*".to_string()
        } else {
            parts.join(",")
        }
    }
}

/// One layer-4 route.
#[derive(Debug, Clone)]
pub struct StreamRoute {
    /// The name DFP users know: `<aclName>-be<port>_<index>`, or `tcpListen_<group>_<srcPort>`.
    pub name: String,
    /// The service (the first member for a group).
    pub service: String,
    /// The server-name condition (empty = any connection).
    pub names: NameMatch,
    /// The upstreams; a group has one per member.
    pub targets: Vec<StreamTarget>,
    /// How connections are spread over the upstream addresses.
    pub balance: Balance,
    /// `timeoutTunnel` in seconds: idle time allowed once connected.
    pub timeout_tunnel: Option<u32>,
    /// `checkTcp`: the upstream addresses are checked with periodic TCP connects.
    pub check_tcp: bool,
}

/// The routes of one layer-4 port.
#[derive(Debug, Clone)]
pub struct StreamPort {
    /// The listening port (`srcPort`).
    pub port: u16,
    /// [`ReqMode::Tcp`] or [`ReqMode::Sni`].
    pub mode: ReqMode,
    /// Routes with a server-name condition, in evaluation order.
    pub rules: Vec<StreamRoute>,
    /// The route taking connections no rule matched.
    pub default: Option<StreamRoute>,
    /// `timeoutClient` of the port's first destination, in seconds.
    pub timeout_client: Option<u32>,
    /// `clitcpka` of the port's first destination.
    pub clitcpka: bool,
}

impl StreamPort {
    /// True when connections must be inspected for a TLS server name before routing.
    pub fn needs_server_name(&self) -> bool {
        self.mode == ReqMode::Sni || !self.rules.is_empty()
    }

    /// The route for a connection with this server name (`None` = no SNI or not TLS).
    pub fn pick(&self, server_name: Option<&str>) -> Option<&StreamRoute> {
        server_name
            .and_then(|name| self.rules.iter().find(|r| r.names.matches(name)))
            .or(self.default.as_ref())
    }

    fn routes(&self) -> impl Iterator<Item = &StreamRoute> {
        self.rules.iter().chain(self.default.iter())
    }
}

/// The compiled layer-4 routes of a service set, keyed by port.
#[derive(Debug, Clone, Default)]
pub struct StreamTable {
    ports: BTreeMap<u16, StreamPort>,
}

/// A destination on its way into a port, before groups are merged.
struct Entry<'a> {
    service: &'a Arc<Service>,
    dest: usize,
}

impl StreamTable {
    /// Compiles the tcp and sni destinations of `services`; `http_ports` are the HTTP listener
    /// ports (a `0` in it is ignored).
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Arc<Service>>,
        http_ports: &[u16],
    ) -> Result<StreamTable, PortConflict> {
        // Only services with a tcp/sni destination matter here; most services are HTTP-only,
        // so filter before sorting to keep this cheap for large service sets.
        let mut sorted: Vec<&'a Arc<Service>> = services
            .into_iter()
            .filter(|s| s.destinations.iter().any(|d| d.req_mode != ReqMode::Http))
            .collect();
        sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));

        let mut by_port: BTreeMap<u16, (ReqMode, Vec<Entry<'a>>)> = BTreeMap::new();
        for service in sorted {
            for (dest, d) in service.destinations.iter().enumerate() {
                if d.req_mode == ReqMode::Http {
                    continue;
                }
                let Some(port) = d.src_port.filter(|p| *p != 0) else {
                    continue;
                };
                if http_ports.contains(&port) {
                    return Err(PortConflict::Http {
                        port,
                        service: service.name.clone(),
                        mode: d.req_mode.as_str(),
                    });
                }
                let slot = by_port
                    .entry(port)
                    .or_insert_with(|| (d.req_mode, Vec::new()));
                if slot.0 != d.req_mode {
                    let first = &slot.1[0];
                    return Err(PortConflict::Modes {
                        port,
                        first: first.service.name.clone(),
                        first_mode: slot.0.as_str(),
                        second: service.name.clone(),
                        second_mode: d.req_mode.as_str(),
                    });
                }
                slot.1.push(Entry { service, dest });
            }
        }

        let mut ports = BTreeMap::new();
        for (port, (mode, entries)) in by_port {
            ports.insert(port, compile_port(port, mode, &entries)?);
        }
        Ok(StreamTable { ports })
    }

    /// The layer-4 ports, ascending.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.keys().copied().collect()
    }

    /// The routes of one port.
    pub fn port(&self, port: u16) -> Option<&StreamPort> {
        self.ports.get(&port)
    }

    /// True when no tcp or sni destination exists.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Every upstream whose addresses are health-checked (`checkTcp`), without duplicates.
    pub fn checked_targets(&self) -> Vec<&StreamTarget> {
        let mut out: Vec<&StreamTarget> = Vec::new();
        for port in self.ports.values() {
            for route in port.routes().filter(|r| r.check_tcp) {
                for t in &route.targets {
                    if !out.iter().any(|o| o.host == t.host && o.port == t.port) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }

    /// A readable rendering: one block per port, rules in evaluation order, then the default.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Sluice layer-4 (tcp/sni) listeners: {} port(s).",
            self.ports.len()
        );
        for p in self.ports.values() {
            let _ = writeln!(
                out,
                "listen {} mode={} timeoutClient={} clitcpka={}",
                p.port,
                p.mode.as_str(),
                p.timeout_client
                    .map_or_else(|| "-".to_string(), |s| format!("{s}s")),
                p.clitcpka
            );
            for (kind, r) in p
                .rules
                .iter()
                .map(|r| ("rule   ", r))
                .chain(p.default.iter().map(|r| ("default", r)))
            {
                let targets: Vec<String> = r
                    .targets
                    .iter()
                    .map(|t| format!("{}:{}", t.host, t.port))
                    .collect();
                let _ = writeln!(
                    out,
                    "  {kind} {} service={} names={} -> {} balance={:?} timeoutTunnel={} checkTcp={}",
                    r.name,
                    r.service,
                    r.names.describe(),
                    targets.join(","),
                    r.balance,
                    r.timeout_tunnel
                        .map_or_else(|| "-".to_string(), |s| format!("{s}s")),
                    r.check_tcp
                );
            }
        }
        out
    }
}

fn compile_port(
    port: u16,
    mode: ReqMode,
    entries: &[Entry<'_>],
) -> Result<StreamPort, PortConflict> {
    let first = &entries[0];
    let first_dest = &first.service.destinations[first.dest];
    let mut rules: Vec<StreamRoute> = Vec::new();
    let mut default: Option<StreamRoute> = None;
    // Group routes under construction: (group name, route, members have a catch-all).
    let mut groups: Vec<(String, StreamRoute, bool)> = Vec::new();

    for entry in entries {
        let service = entry.service;
        let d = &service.destinations[entry.dest];
        let Some(upstream_port) = d.port else {
            continue;
        };
        let target = StreamTarget {
            host: d
                .outbound_hostname
                .clone()
                .unwrap_or_else(|| service.name.clone()),
            port: upstream_port,
            tasks_first: d.outbound_hostname.is_none(),
            service: service.name.clone(),
        };
        let names = NameMatch {
            sni: d
                .paths
                .iter()
                .filter_map(|p| match p {
                    PathPattern::Sni(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            domains: d.domains.clone(),
        };
        if mode == ReqMode::Tcp {
            if let Some(group) = &d.service_group {
                if let Some((_, route, catch_all)) = groups.iter_mut().find(|(g, ..)| g == group) {
                    route.targets.push(target);
                    route.names.domains.extend(d.domains.iter().cloned());
                    *catch_all |= d.domains.is_empty();
                } else {
                    let route = StreamRoute {
                        name: format!("tcpListen_{group}_{port}"),
                        service: service.name.clone(),
                        names: NameMatch {
                            sni: Vec::new(),
                            domains: d.domains.clone(),
                        },
                        targets: vec![target],
                        balance: d.balance_group.unwrap_or(Balance::RoundRobin),
                        timeout_tunnel: d.timeout_tunnel,
                        check_tcp: d.check_tcp,
                    };
                    groups.push((group.clone(), route, d.domains.is_empty()));
                }
                continue;
            }
        }
        let route = StreamRoute {
            name: format!("{}-be{}_{}", service.acl_name, upstream_port, d.index),
            service: service.name.clone(),
            names,
            targets: vec![target],
            balance: d.balance_group.unwrap_or(Balance::RoundRobin),
            timeout_tunnel: d.timeout_tunnel,
            check_tcp: d.check_tcp,
        };
        place(port, route, &mut rules, &mut default)?;
    }
    for (_, mut route, catch_all) in groups {
        if catch_all {
            route.names = NameMatch::default();
        }
        place(port, route, &mut rules, &mut default)?;
    }
    Ok(StreamPort {
        port,
        mode,
        rules,
        default,
        timeout_client: first_dest.timeout_client,
        clitcpka: first_dest.clitcpka,
    })
}

fn place(
    port: u16,
    route: StreamRoute,
    rules: &mut Vec<StreamRoute>,
    default: &mut Option<StreamRoute>,
) -> Result<(), PortConflict> {
    if !route.names.is_empty() {
        rules.push(route);
        return Ok(());
    }
    if let Some(existing) = default {
        return Err(PortConflict::Ambiguous {
            port,
            first: existing.service.clone(),
            second: route.service,
        });
    }
    *default = Some(route);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{params_from_query, parse_service, ParseContext};

    fn svc(query: &str) -> Arc<Service> {
        Arc::new(parse_service(&params_from_query(query), &ParseContext::default()).unwrap())
    }

    fn build(services: &[Arc<Service>]) -> Result<StreamTable, PortConflict> {
        StreamTable::build(services.iter(), &[80, 443])
    }

    #[test]
    fn tcp_service_gets_a_default_route() {
        let t = build(&[svc(
            "serviceName=redis&reqMode=tcp&srcPort=6379&port=6379&timeoutClient=7&clitcpka=true&timeoutTunnel=9",
        )])
        .unwrap();
        assert_eq!(t.ports(), [6379]);
        let p = t.port(6379).unwrap();
        assert_eq!(p.mode, ReqMode::Tcp);
        assert!(!p.needs_server_name());
        assert_eq!(p.timeout_client, Some(7));
        assert!(p.clitcpka);
        let r = p.pick(None).unwrap();
        assert_eq!(r.name, "redis-be6379_0");
        assert_eq!(r.timeout_tunnel, Some(9));
        assert_eq!(
            r.targets,
            [StreamTarget {
                host: "redis".into(),
                port: 6379,
                tasks_first: true,
                service: "redis".into()
            }]
        );
        assert!(t.render().contains("listen 6379 mode=tcp"));
    }

    #[test]
    fn http_services_are_not_layer_4() {
        let t = build(&[svc("serviceName=web&servicePath=/&port=80")]).unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn tcp_domains_route_by_server_name() {
        let t = build(&[
            svc("serviceName=a&reqMode=tcp&srcPort=9000&port=1&serviceDomain=a.example.com"),
            svc("serviceName=b&reqMode=tcp&srcPort=9000&port=2"),
        ])
        .unwrap();
        let p = t.port(9000).unwrap();
        assert!(p.needs_server_name());
        assert_eq!(p.pick(Some("a.example.com")).unwrap().service, "a");
        assert_eq!(p.pick(Some("other.example.com")).unwrap().service, "b");
        assert_eq!(p.pick(None).unwrap().service, "b");
    }

    #[test]
    fn sni_patterns_route_and_unmatched_names_are_dropped() {
        let t = build(&[
            svc("serviceName=api&reqMode=sni&srcPort=8443&port=443&servicePath=api.&pathType=req_ssl_sni+-i+-m+beg"),
            svc("serviceName=web&reqMode=sni&srcPort=8443&port=443&serviceDomain=www.example.com"),
        ])
        .unwrap();
        let p = t.port(8443).unwrap();
        assert!(p.needs_server_name());
        assert_eq!(p.pick(Some("api.example.com")).unwrap().service, "api");
        assert_eq!(p.pick(Some("www.example.com")).unwrap().service, "web");
        assert!(p.pick(Some("mail.example.com")).is_none());
        assert!(p.pick(None).is_none());
    }

    #[test]
    fn sni_destination_without_names_takes_everything() {
        let t = build(&[svc("serviceName=tls&reqMode=sni&srcPort=8443&port=443")]).unwrap();
        let p = t.port(8443).unwrap();
        assert_eq!(p.pick(Some("x.example")).unwrap().service, "tls");
        assert_eq!(p.pick(None).unwrap().service, "tls");
    }

    #[test]
    fn rules_follow_service_order() {
        // aclName decides the order, not the name.
        let t = build(&[
            svc("serviceName=a&aclName=2&reqMode=sni&srcPort=8443&port=1&servicePath=x.example"),
            svc("serviceName=b&aclName=1&reqMode=sni&srcPort=8443&port=2&servicePath=x.&pathType=req_ssl_sni+-m+beg"),
        ])
        .unwrap();
        assert_eq!(
            t.port(8443)
                .unwrap()
                .pick(Some("x.example"))
                .unwrap()
                .service,
            "b"
        );
    }

    #[test]
    fn groups_merge_members() {
        let t = build(&[
            svc("serviceName=db1&reqMode=tcp&srcPort=5432&port=5432&serviceGroup=pg&balanceGroup=leastconn&checkTcp=true"),
            svc("serviceName=db2&reqMode=tcp&srcPort=5432&port=5433&serviceGroup=pg&balanceGroup=source"),
        ])
        .unwrap();
        let p = t.port(5432).unwrap();
        let r = p.pick(None).unwrap();
        assert_eq!(r.name, "tcpListen_pg_5432");
        assert_eq!(r.balance, Balance::LeastConn, "the first member decides");
        assert!(r.check_tcp);
        let hosts: Vec<_> = r
            .targets
            .iter()
            .map(|t| (t.host.as_str(), t.port))
            .collect();
        assert_eq!(hosts, [("db1", 5432), ("db2", 5433)]);
        assert_eq!(t.checked_targets().len(), 2);
    }

    #[test]
    fn conflicts_name_the_port() {
        let e = build(&[
            svc("serviceName=a&reqMode=tcp&srcPort=7000&port=1"),
            svc("serviceName=b&reqMode=sni&srcPort=7000&port=2"),
        ])
        .unwrap_err();
        assert!(matches!(e, PortConflict::Modes { port: 7000, .. }), "{e}");
        assert!(e.to_string().contains("port 7000"), "{e}");

        let e = build(&[svc("serviceName=a&reqMode=sni&srcPort=443&port=1")]).unwrap_err();
        assert_eq!(e.port(), 443);
        assert!(matches!(e, PortConflict::Http { .. }));

        let e = build(&[
            svc("serviceName=a&reqMode=tcp&srcPort=7000&port=1"),
            svc("serviceName=b&reqMode=tcp&srcPort=7000&port=2"),
        ])
        .unwrap_err();
        assert!(
            matches!(e, PortConflict::Ambiguous { port: 7000, .. }),
            "{e}"
        );
        assert_eq!(e.services(), ["a", "b"]);
    }

    #[test]
    fn outbound_hostname_is_the_target() {
        let t = build(&[svc(
            "serviceName=x&reqMode=tcp&srcPort=7001&port=5&outboundHostname=db.internal",
        )])
        .unwrap();
        let target = &t.port(7001).unwrap().pick(None).unwrap().targets[0];
        assert_eq!(target.host, "db.internal");
        assert!(!target.tasks_first);
    }
}
