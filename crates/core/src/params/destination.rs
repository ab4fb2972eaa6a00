//! One destination (`servicePath.1`, `port.1`, …) of a service.

use http::Method;

use super::context::{ParseContext, Shared};
use super::domains::parse_domains;
use super::headers::parse_service_headers;
use super::paths::{compile_path, compile_paths, parse_path_type};
use super::rewrites::parse_rewrite_pair;
use super::value::{Source, Val};
use super::ParamError;
use crate::env::parse_decimal;
use crate::service::{Balance, Destination, PathRewrite, RedirectCode, ReqMode};

pub(super) fn parse_destination(
    src: &Source<'_>,
    index: u8,
    shared: &Shared,
    ctx: &ParseContext,
) -> Result<Destination, ParamError> {
    let sep = ctx.sep();
    let dest = |name: &str| src.dest(name, index);
    let flag = |name: &str| dest(name).map(|v| v.boolean()).transpose();
    let port_of = |name: &str| dest(name).map(|v| v.port()).transpose();
    let seconds_of = |name: &str| dest(name).map(|v| v.seconds()).transpose();

    let req_mode = match dest("reqMode") {
        None => ReqMode::Http,
        Some(v) => match v.value.trim().to_ascii_lowercase().as_str() {
            "http" => ReqMode::Http,
            "tcp" => ReqMode::Tcp,
            "sni" => ReqMode::Sni,
            _ => return Err(v.invalid("unsupported reqMode (http, tcp or sni)")),
        },
    };
    let path_type = parse_path_type(dest("pathType"), req_mode)?;
    let mut paths = compile_paths(dest("servicePath"), path_type, sep)?;
    let path_excludes = compile_paths(dest("servicePathExclude"), path_type, sep)?;
    let port = port_of("port")?;
    let mut src_port = port_of("srcPort")?;
    let https_port = port_of("httpsPort")?;
    let mut src_https_port = port_of("srcHttpsPort")?;
    let domains = match dest("serviceDomain") {
        Some(v) => parse_domains(&v, shared.domain_algo, sep)?,
        None => Vec::new(),
    };

    // Shape checks on what the user gave, before any default is applied.
    if req_mode == ReqMode::Http {
        if paths.is_empty() && domains.is_empty() {
            return Err(ParamError::HttpWithoutPathOrDomain);
        }
    } else if src_port.is_none() || port.is_none() {
        return Err(ParamError::NonHttpWithoutPorts);
    }
    if port.is_none() && https_port.is_none() {
        return Err(ParamError::MissingPort);
    }

    if req_mode == ReqMode::Http && paths.is_empty() {
        paths.push(
            compile_path("/", path_type).map_err(|reason| ParamError::Invalid {
                param: "servicePath".to_string(),
                value: "/".to_string(),
                reason,
            })?,
        );
    }
    if https_port.is_some() {
        src_port.get_or_insert(80);
        src_https_port.get_or_insert(443);
    }

    let redirect_from_domains = match dest("redirectFromDomain") {
        None => Vec::new(),
        Some(v) if domains.is_empty() => {
            return Err(v.invalid("redirectFromDomain requires serviceDomain"))
        }
        Some(v) => parse_domains(&v, shared.domain_algo, sep)?,
    };
    let service_headers = match dest("serviceHeader") {
        None => Vec::new(),
        Some(v) => parse_service_headers(&v, sep)?,
    };
    let user_agents = dest("userAgent")
        .map(|v| v.items(sep).map(str::to_ascii_lowercase).collect())
        .unwrap_or_default();

    let mut rewrites: Vec<PathRewrite> = shared.legacy_rewrite.iter().cloned().collect();
    if let Some(v) = dest("reqPathSearchReplace") {
        for pair in v.value.split(':').map(str::trim).filter(|p| !p.is_empty()) {
            rewrites.push(parse_rewrite_pair(pair).map_err(|reason| v.invalid_item(pair, reason))?);
        }
    }

    let outbound_hostname = dest("outboundHostname")
        .map(|v| parse_outbound_hostname(&v))
        .transpose()?;
    let https_redirect_code = match dest("httpsRedirectCode") {
        None => RedirectCode::default(),
        Some(v) => parse_decimal::<u16>(v.value.trim())
            .and_then(RedirectCode::new)
            .ok_or_else(|| v.invalid("not a redirect status (301, 302, 303, 307 or 308)"))?,
    };
    let methods = |name: &str| -> Result<Vec<String>, ParamError> {
        match dest(name) {
            None => Ok(Vec::new()),
            Some(v) => v
                .items(sep)
                .map(|m| match Method::from_bytes(m.as_bytes()) {
                    Ok(_) => Ok(m.to_string()),
                    Err(_) => Err(v.invalid_item(m, "not an HTTP method token")),
                })
                .collect(),
        }
    };
    let allowed_methods = methods("allowedMethods")?;
    let denied_methods = methods("deniedMethods")?;
    let service_group = dest("serviceGroup")
        .map(|v| v.value.trim().to_string())
        .filter(|g| !g.is_empty());
    let balance_group = match dest("balanceGroup") {
        None => None,
        Some(v) => Some(match v.value.trim().to_ascii_lowercase().as_str() {
            "roundrobin" => Balance::RoundRobin,
            "leastconn" => Balance::LeastConn,
            "source" => Balance::Source,
            _ => {
                return Err(v.invalid("unsupported balanceGroup (roundrobin, leastconn or source)"))
            }
        }),
    };

    Ok(Destination {
        index,
        req_mode,
        path_type,
        paths,
        path_excludes,
        port,
        src_port,
        https_port,
        src_https_port,
        domains,
        redirect_from_domains,
        service_headers,
        user_agents,
        rewrites,
        outbound_hostname,
        ssl_verify_none: flag("sslVerifyNone")?.unwrap_or(false),
        https_only: flag("httpsOnly")?.unwrap_or(false) || ctx.https_only,
        https_redirect_code,
        allowed_methods,
        denied_methods,
        deny_http: flag("denyHttp")?.unwrap_or(false),
        verify_client_ssl: flag("verifyClientSsl")?.unwrap_or(false),
        ignore_authorization: flag("ignoreAuthorization")?.unwrap_or(false),
        timeout_server: seconds_of("timeoutServer")?,
        timeout_tunnel: seconds_of("timeoutTunnel")?,
        timeout_client: seconds_of("timeoutClient")?,
        max_conn: match dest("maxConn") {
            None => None,
            Some(v) => match parse_decimal::<u32>(v.value.trim()) {
                Some(n) if n > 0 => Some(n),
                _ => return Err(v.invalid("not a whole number of at least 1")),
            },
        },
        check_tcp: flag("checkTcp")?.unwrap_or(false),
        clitcpka: flag("clitcpka")?.unwrap_or(false),
        service_group,
        balance_group,
    })
}

pub(super) fn parse_outbound_hostname(v: &Val<'_>) -> Result<String, ParamError> {
    let host = v.value.trim();
    if host.is_empty()
        || !host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
    {
        return Err(v.invalid("not a host name or IP address"));
    }
    Ok(host.to_string())
}
