//! The service: [`parse_service`] and the service-level values (connection mode,
//! compression).

use super::context::{ParseContext, Shared};
use super::destination::parse_destination;
use super::headers::push_header_ops;
use super::known::{ParamHandling, KNOWN_PARAMS};
use super::rewrites::parse_legacy_rewrite;
use super::users::{parse_users, parse_users_secret};
use super::value::{Source, Val};
use super::ParamError;
use crate::env::{parse_decimal, parse_go_bool};
use crate::service::{
    Compression, CompressionAlgo, ConnectionMode, Destination, DomainAlgo, DomainPattern, Params,
    PathPattern, Service, SniPattern,
};

/// The most regular expressions one service may carry (`path_reg` paths and excludes,
/// `hdr_reg(host)` domains, SNI `-m reg` names and rewrites, counted over every destination;
/// the deprecated `reqPathSearch` counts once). Each one is also bounded by
/// [`REGEX_SIZE_LIMIT`](crate::service::REGEX_SIZE_LIMIT).
pub const MAX_REGEXES_PER_SERVICE: usize = 32;

/// Builds a [`Service`] from canonical parameters. See the module documentation for every rule.
/// [`Service::params`] holds exactly `params`, so the result can be replayed.
pub fn parse_service(params: &Params, ctx: &ParseContext) -> Result<Service, ParamError> {
    let src = Source { params };
    let sep = ctx.sep();

    let name_val = src
        .service("serviceName")
        .ok_or(ParamError::MissingServiceName)?;
    let name = validate_service_name(&name_val)?;

    for param in KNOWN_PARAMS
        .iter()
        .filter(|p| p.handling == ParamHandling::Unsupported)
    {
        if src.service(param.name).is_some() {
            return Err(ParamError::Unsupported {
                param: param.name.to_string(),
                reason: unsupported_reason(param.name).to_string(),
            });
        }
    }

    let acl_name = src
        .service("aclName")
        .map(|v| v.value.to_string())
        .unwrap_or_else(|| name.clone());
    let replicas = src
        .service("replicas")
        .map(|v| {
            parse_decimal::<u32>(v.value.trim())
                .ok_or_else(|| v.invalid("not a non-negative whole number"))
        })
        .transpose()?;
    let flag = |key: &str| src.service(key).map(|v| v.boolean()).transpose();
    let distribute = flag("distribute")?.unwrap_or(false);
    let is_default_backend = flag("isDefaultBackend")?.unwrap_or(false);
    let redirect_when_http_proto = flag("redirectWhenHttpProto")?.unwrap_or(false);
    let redirect_unless_https_proto = flag("redirectUnlessHttpsProto")?.unwrap_or(false);
    let users_pass_encrypted = flag("usersPassEncrypted")?.unwrap_or(false);
    let proxy_instance_name = src
        .service("proxyInstanceName")
        .map(|v| v.value.trim().to_string())
        .filter(|v| !v.is_empty());

    let mut request_headers = Vec::new();
    let add_req = src
        .service("addReqHeader")
        .or_else(|| src.service("addHeader"));
    let set_req = src
        .service("setReqHeader")
        .or_else(|| src.service("setHeader"));
    push_header_ops(
        &mut request_headers,
        add_req,
        set_req,
        src.service("delReqHeader"),
        sep,
    )?;
    let mut response_headers = Vec::new();
    push_header_ops(
        &mut response_headers,
        src.service("addResHeader"),
        src.service("setResHeader"),
        src.service("delResHeader"),
        sep,
    )?;

    let connection_mode = src
        .service("connectionMode")
        .map(|v| parse_connection_mode(&v))
        .transpose()?;
    let compression = parse_compression(
        src.service("compressionAlgo"),
        src.service("compressionType"),
        sep,
    )?;
    let sticky = match src.service("sessionType") {
        None => false,
        Some(v) if v.value.trim().eq_ignore_ascii_case("sticky-server") => true,
        Some(v) => return Err(v.invalid("unsupported sessionType (only sticky-server)")),
    };
    if let Some(v) = src.service("drainTimeout") {
        crate::membership::check_drain_timeout(v.value).map_err(|reason| v.invalid(reason))?;
    }
    if let Some(v) = src.service("discoveryType") {
        let kind = v.value.trim();
        if !kind.eq_ignore_ascii_case("dns") && !kind.eq_ignore_ascii_case("overlay") {
            return Err(v.invalid("unsupported discoveryType (DNS or Overlay)"));
        }
    }

    let users = src.service("users").map(|v| parse_users(&v)).transpose()?;
    let users = users.unwrap_or_default();
    let users_secret = src
        .service("usersSecret")
        .map(|v| parse_users_secret(&v))
        .transpose()?;
    super::acme::acme_request(params, sep)?;
    let service_cert = src
        .service("serviceCert")
        .map(|v| v.value.replace("\\n", "\n"));

    let match_all = flag("serviceDomainMatchAll")?.unwrap_or(false);
    let domain_algo = if match_all {
        DomainAlgo::Dom
    } else {
        match src.service("serviceDomainAlgo") {
            None => ctx.default_domain_algo,
            Some(v) => DomainAlgo::parse(v.value).ok_or_else(|| {
                v.invalid(
                    "unsupported serviceDomainAlgo (hdr(host), hdr_beg(host), hdr_end(host), \
                     hdr_dom(host), hdr_reg(host), req.ssl_sni)",
                )
            })?,
        }
    };
    let legacy_rewrite = parse_legacy_rewrite(&src)?;

    let mut warnings = Vec::new();
    if let Some(v) = src.service("checkResolvers") {
        if parse_go_bool(v.value.trim()) != Some(false) {
            warnings.push(
                "checkResolvers is ignored: Sluice resolves service names whenever it connects"
                    .to_string(),
            );
        }
    }

    let shared = Shared {
        domain_algo,
        legacy_rewrite,
    };
    let indexes: Vec<u8> = match src.indexed_count() {
        0 => vec![0],
        count => (1..=count).collect(),
    };
    let destinations = indexes
        .into_iter()
        .map(|index| parse_destination(&src, index, &shared, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    check_regex_count(&src, shared.legacy_rewrite.is_some(), &destinations)?;

    Ok(Service {
        name,
        acl_name,
        params: params.clone(),
        replicas,
        distribute,
        is_default_backend,
        redirect_when_http_proto,
        redirect_unless_https_proto,
        proxy_instance_name,
        request_headers,
        response_headers,
        connection_mode,
        compression,
        sticky,
        users,
        users_secret,
        users_pass_encrypted,
        service_cert,
        destinations,
        warnings,
    })
}

/// Refuses a service with more than [`MAX_REGEXES_PER_SERVICE`] regular expressions, naming
/// the parameter whose expressions cross the limit.
fn check_regex_count(
    src: &Source<'_>,
    legacy_rewrite: bool,
    destinations: &[Destination],
) -> Result<(), ParamError> {
    let paths = |list: &[PathPattern]| {
        list.iter()
            .filter(|p| {
                matches!(
                    p,
                    PathPattern::Regex(_) | PathPattern::Sni(SniPattern::Regex(_))
                )
            })
            .count()
    };
    let domains = |list: &[DomainPattern]| {
        list.iter()
            .filter(|d| matches!(d, DomainPattern::Regex(_)))
            .count()
    };
    let mut count = usize::from(legacy_rewrite);
    for d in destinations {
        let own_rewrites = d.rewrites.len() - usize::from(legacy_rewrite);
        let groups = [
            ("servicePath", paths(&d.paths)),
            ("servicePathExclude", paths(&d.path_excludes)),
            ("serviceDomain", domains(&d.domains)),
            ("redirectFromDomain", domains(&d.redirect_from_domains)),
            ("reqPathSearchReplace", own_rewrites),
        ];
        for (name, n) in groups {
            count += n;
            if count > MAX_REGEXES_PER_SERVICE {
                let reason = format!(
                    "the service has more than {MAX_REGEXES_PER_SERVICE} regular expressions \
                     (the limit per service)"
                );
                return Err(match src.dest(name, d.index) {
                    Some(v) => v.invalid(reason),
                    None => ParamError::Invalid {
                        param: name.to_string(),
                        value: String::new(),
                        reason,
                    },
                });
            }
        }
    }
    Ok(())
}

pub(super) fn unsupported_reason(param: &str) -> &'static str {
    match param {
        "backendExtra" => "raw HAProxy backend configuration cannot be applied by Sluice",
        _ => "custom HAProxy templates cannot be applied by Sluice",
    }
}

pub(super) fn validate_service_name(v: &Val<'_>) -> Result<String, ParamError> {
    let name = v.value;
    if name.len() > 255 {
        return Err(v.invalid("longer than 255 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(v.invalid("only letters, digits, '_', '.' and '-' are allowed"));
    }
    Ok(name.to_string())
}

pub(super) fn parse_connection_mode(v: &Val<'_>) -> Result<ConnectionMode, ParamError> {
    ConnectionMode::parse(v.value).ok_or_else(|| {
        if v.value.trim().eq_ignore_ascii_case("http-tunnel") {
            v.invalid("http-tunnel is not supported (use http-keep-alive, http-server-close or httpclose)")
        } else {
            v.invalid(
                "unsupported connectionMode (http-keep-alive, http-server-close, httpclose or forceclose)",
            )
        }
    })
}

pub(super) fn parse_compression(
    algo: Option<Val<'_>>,
    types: Option<Val<'_>>,
    sep: &str,
) -> Result<Option<Compression>, ParamError> {
    let Some(algo) = algo else {
        return Ok(None);
    };
    let words = |text: &'_ str| -> Vec<String> {
        text.split(sep)
            .flat_map(str::split_whitespace)
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let mut algos = Vec::new();
    for word in words(algo.value) {
        let parsed =
            match word.as_str() {
                "identity" => CompressionAlgo::Identity,
                "gzip" => CompressionAlgo::Gzip,
                "deflate" | "raw-deflate" => CompressionAlgo::Deflate,
                _ => return Err(algo.invalid_item(
                    &word,
                    "unsupported compression algorithm (identity, gzip, deflate or raw-deflate)",
                )),
            };
        if !algos.contains(&parsed) {
            algos.push(parsed);
        }
    }
    if algos.is_empty() {
        return Ok(None);
    }
    let types = types.map(|t| words(t.value)).unwrap_or_default();
    Ok(Some(Compression { algos, types }))
}

/// The `compressionAlgo` / `compressionType` rules applied to values from elsewhere (the
/// `COMPRESSION_ALGO` / `COMPRESSION_TYPE` defaults). Each value comes with the name an error
/// reports it under.
pub(crate) fn parse_compression_values(
    algo: Option<(&str, &str)>,
    types: Option<(&str, &str)>,
    sep: &str,
) -> Result<Option<Compression>, ParamError> {
    fn val<'a>((key, value): (&str, &'a str)) -> Val<'a> {
        Val {
            key: key.to_string(),
            value,
        }
    }
    parse_compression(algo.map(val), types.map(val), sep)
}
