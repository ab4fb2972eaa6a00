//! The table of known parameters ([`KNOWN_PARAMS`]), destination indexes, and the
//! camelCase ↔ `UPPER_SNAKE` names of environment-defined services.

/// The highest destination index Sluice reads (`servicePath.99`). DFP stopped at 10.
pub const MAX_INDEX: u8 = 99;

/// The parameters whose indexed presence creates a destination index.
pub(super) const INDEX_PARAMS: [&str; 4] = ["servicePath", "port", "serviceDomain", "httpsPort"];

/// Whether a parameter belongs to the service or to one destination (and so may be indexed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamScope {
    /// Never indexed.
    Service,
    /// May carry an index suffix (`port.2`, `DFP_SERVICE_PORT_2`).
    Destination,
}

/// What the parser does with a known parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamHandling {
    /// Parsed into the [`Service`](crate::service::Service).
    Parsed,
    /// A deprecated spelling that is still parsed.
    Deprecated,
    /// Rejected with [`ParamError::Unsupported`](super::ParamError::Unsupported).
    Unsupported,
    /// Accepted without effect (documented DFP parameters).
    Ignored,
    /// DFP/DFSL internals: accepted without effect and never read from the environment.
    Internal,
}

/// One entry of [`KNOWN_PARAMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownParam {
    /// The canonical (query) name, e.g. `servicePath`.
    pub name: &'static str,
    /// Service or destination level.
    pub scope: ParamScope,
    /// What the parser does with it.
    pub handling: ParamHandling,
    /// DFP's run-together environment spelling, where it had one (`DISCOVERYTYPE`).
    pub legacy_env: Option<&'static str>,
}

impl KnownParam {
    /// The `UPPER_SNAKE` environment spelling (`servicePath` → `SERVICE_PATH`).
    pub fn env_name(&self) -> String {
        upper_snake(self.name)
    }
}

const fn known(
    name: &'static str,
    scope: ParamScope,
    handling: ParamHandling,
    legacy_env: Option<&'static str>,
) -> KnownParam {
    KnownParam {
        name,
        scope,
        handling,
        legacy_env,
    }
}

use ParamHandling::{Deprecated, Ignored, Internal, Parsed, Unsupported};
use ParamScope::{Destination as Dest, Service as Svc};

/// Every parameter name the parser knows. The single source for the camelCase ↔ `UPPER_SNAKE`
/// translation of environment-defined services.
pub const KNOWN_PARAMS: &[KnownParam] = &[
    known("serviceName", Svc, Parsed, None),
    known("aclName", Svc, Parsed, None),
    known("addReqHeader", Svc, Parsed, None),
    known("setReqHeader", Svc, Parsed, None),
    known("delReqHeader", Svc, Parsed, None),
    known("addResHeader", Svc, Parsed, None),
    known("setResHeader", Svc, Parsed, None),
    known("delResHeader", Svc, Parsed, None),
    known("compressionAlgo", Svc, Parsed, None),
    known("compressionType", Svc, Parsed, None),
    known("connectionMode", Svc, Parsed, None),
    known("discoveryType", Svc, Parsed, Some("DISCOVERYTYPE")),
    known("distribute", Svc, Parsed, None),
    known("drainTimeout", Svc, Parsed, None),
    known("isDefaultBackend", Svc, Parsed, None),
    known("proxyInstanceName", Svc, Parsed, None),
    known("redirectWhenHttpProto", Svc, Parsed, None),
    known("redirectUnlessHttpsProto", Svc, Parsed, None),
    known("replicas", Svc, Parsed, None),
    known("serviceCert", Svc, Parsed, None),
    known("acmeDomain", Svc, Parsed, None),
    known("acmeEmail", Svc, Parsed, None),
    known("serviceDomainAlgo", Svc, Parsed, Some("SERVICEDOMAINALGO")),
    known("sessionType", Svc, Parsed, None),
    known("users", Svc, Parsed, None),
    known("usersSecret", Svc, Parsed, None),
    known("usersPassEncrypted", Svc, Parsed, None),
    known("addHeader", Svc, Deprecated, None),
    known("setHeader", Svc, Deprecated, None),
    known("serviceDomainMatchAll", Svc, Deprecated, None),
    known("reqPathSearch", Svc, Deprecated, None),
    known("reqPathReplace", Svc, Deprecated, None),
    known("backendExtra", Svc, Unsupported, None),
    known("templateFePath", Svc, Unsupported, None),
    known("templateBePath", Svc, Unsupported, None),
    known("checkResolvers", Svc, Ignored, None),
    known("servicePath", Dest, Parsed, None),
    known("pathType", Dest, Parsed, None),
    known("servicePathExclude", Dest, Parsed, None),
    known("port", Dest, Parsed, None),
    known("srcPort", Dest, Parsed, None),
    known("httpsPort", Dest, Parsed, None),
    known("srcHttpsPort", Dest, Parsed, None),
    known("serviceDomain", Dest, Parsed, None),
    known("serviceHeader", Dest, Parsed, None),
    known("userAgent", Dest, Parsed, None),
    known("reqMode", Dest, Parsed, None),
    known("reqPathSearchReplace", Dest, Parsed, None),
    known("outboundHostname", Dest, Parsed, None),
    known("sslVerifyNone", Dest, Parsed, None),
    known("httpsOnly", Dest, Parsed, None),
    known("httpsRedirectCode", Dest, Parsed, None),
    known("redirectFromDomain", Dest, Parsed, None),
    known("allowedMethods", Dest, Parsed, None),
    known("deniedMethods", Dest, Parsed, None),
    known("denyHttp", Dest, Parsed, None),
    known("verifyClientSsl", Dest, Parsed, None),
    known("ignoreAuthorization", Dest, Parsed, None),
    known("timeoutServer", Dest, Parsed, None),
    known("timeoutTunnel", Dest, Parsed, None),
    known("timeoutClient", Dest, Parsed, None),
    known("maxConn", Dest, Parsed, None),
    known("checkTcp", Dest, Parsed, None),
    known("clitcpka", Dest, Parsed, None),
    known("serviceGroup", Dest, Parsed, None),
    known("balanceGroup", Dest, Parsed, None),
    known("userDef", Dest, Ignored, None),
    known("aclCondition", Svc, Internal, None),
    known("tasks", Svc, Internal, None),
    known("isGlobal", Svc, Internal, None),
    known("useGlobalUsers", Svc, Internal, None),
    known("debug", Svc, Internal, None),
    known("debugFormat", Svc, Internal, None),
    known("servicePort", Svc, Internal, None),
    known("lookupRetry", Svc, Internal, None),
    known("lookupRetryInterval", Svc, Internal, None),
    known("nodeInfo", Svc, Internal, None),
    known("notify", Svc, Internal, None),
    known("shortName", Svc, Internal, None),
];

/// The table entry of a canonical parameter name (without index suffix).
pub fn known_param(name: &str) -> Option<&'static KnownParam> {
    KNOWN_PARAMS.iter().find(|p| p.name == name)
}

/// `servicePath` → `SERVICE_PATH`.
pub(super) fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Splits `servicePath.12` into (`servicePath`, `Some(12)`). Only `1..=MAX_INDEX` without
/// leading zeros counts as an index.
pub(super) fn split_index(key: &str) -> (&str, Option<u8>) {
    if let Some((name, suffix)) = key.rsplit_once('.') {
        if let Some(index) = parse_index(suffix) {
            return (name, Some(index));
        }
    }
    (key, None)
}

pub(super) fn parse_index(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 2 || text.starts_with('0') {
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u8>()
        .ok()
        .filter(|i| (1..=MAX_INDEX).contains(i))
}

/// The environment suffix of a canonical parameter key: `servicePath.2` → `SERVICE_PATH_2`,
/// `serviceName` → `SERVICE_NAME`. `None` for unknown or internal names and for an index on a
/// service-level parameter.
pub fn param_key_to_env(key: &str) -> Option<String> {
    let (name, index) = split_index(key);
    let param = known_param(name).filter(|p| p.handling != ParamHandling::Internal)?;
    match index {
        None => Some(param.env_name()),
        Some(i) if param.scope == ParamScope::Destination => {
            Some(format!("{}_{i}", param.env_name()))
        }
        Some(_) => None,
    }
}

/// The canonical parameter key of an environment suffix (the part after `DFP_SERVICE[_N]_`):
/// `SERVICE_PATH_2` → `servicePath.2`, `DISCOVERYTYPE` → `discoveryType`.
pub fn env_to_param_key(suffix: &str) -> Option<String> {
    let whole = |s: &str| {
        KNOWN_PARAMS.iter().find(|p| {
            p.handling != ParamHandling::Internal && (p.env_name() == s || p.legacy_env == Some(s))
        })
    };
    if let Some(param) = whole(suffix) {
        return Some(param.name.to_string());
    }
    let (base, index) = suffix.rsplit_once('_')?;
    let index = parse_index(index)?;
    let param = whole(base).filter(|p| p.scope == ParamScope::Destination)?;
    Some(format!("{}.{index}", param.name))
}
