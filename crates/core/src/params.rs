//! Service parameters: the one parser behind `/reconfigure` query strings, `com.df.*` labels,
//! DFSL `get-services` maps and `DFP_SERVICE_*` environment variables.
//!
//! Every source is first turned into [`Params`] in canonical query form (`servicePath.1` → `/api`)
//! by [`params_from_query`], [`params_from_labels`] or [`services_from_env`]. Then
//! [`parse_service`] turns those into a typed [`Service`]. Values are parsed and checked once,
//! and a bad value is reported with the parameter (including its index suffix) and the value.
//!
//! # Parameters and how Sluice treats them
//!
//! | Parameter | Level | Sluice |
//! |---|---|---|
//! | `serviceName` | service | Required. 1–255 characters from `A-Z a-z 0-9 _ . -` (it is used as a DNS name) |
//! | `aclName` | service | Sort key; defaults to `serviceName` |
//! | `addReqHeader`, `setReqHeader`, `addResHeader`, `setResHeader` | service | `Name value` items; see *Header operations* below |
//! | `delReqHeader`, `delResHeader` | service | Header names |
//! | `addHeader`, `setHeader` | service | Deprecated aliases, used only when `addReqHeader` / `setReqHeader` are absent |
//! | `compressionAlgo` | service | `identity`, `gzip`, `deflate`, `raw-deflate` (= deflate), space- or separator-separated. Scoped to the service (DFP leaked it to every service) |
//! | `compressionType` | service | MIME types, space- or separator-separated, lower-cased. No effect without `compressionAlgo` |
//! | `connectionMode` | service | `http-keep-alive`, `http-server-close`, `httpclose`/`forceclose`. `http-tunnel` is rejected |
//! | `discoveryType` | service | `DNS` or `Overlay` (any case) are accepted without effect: Sluice always balances over the task addresses. Anything else is rejected |
//! | `distribute`, `isDefaultBackend`, `redirectWhenHttpProto`, `redirectUnlessHttpsProto` | service | Booleans |
//! | `proxyInstanceName` | service | Text |
//! | `replicas` | service | Unsigned integer; absent = global service. `0` is valid (the API then removes the service) |
//! | `reqPathSearch` / `reqPathReplace` | service | Deprecated; one rewrite put first in every destination |
//! | `serviceCert` | service | PEM text; literal `\n` sequences become newlines (label-friendly, as DFP) |
//! | `serviceDomainAlgo` | service | `hdr(host)`, `hdr_beg(host)`, `hdr_end(host)`, `hdr_dom(host)`, `hdr_reg(host)`, `req.ssl_sni`/`req_ssl_sni` |
//! | `serviceDomainMatchAll` | service | Deprecated boolean; `true` means `serviceDomainAlgo=hdr_dom(host)` |
//! | `sessionType` | service | `sticky-server`; anything else is rejected |
//! | `users` | service | `user:password` entries separated by `,` (or newlines). See *Users* below |
//! | `usersSecret` | service | A plain name (`[A-Za-z0-9._-]+`) |
//! | `usersPassEncrypted` | service | Boolean |
//! | `backendExtra`, `templateFePath`, `templateBePath` | service | **Rejected** ([`ParamError::Unsupported`], HTTP 400): they carry raw HAProxy configuration |
//! | `checkResolvers` | service | Ignored with a warning in [`Service::warnings`] when true: Sluice resolves names when it connects |
//! | `servicePath`, `servicePathExclude` | destination | Patterns compiled per `pathType` |
//! | `pathType` | destination | Closed set: `path_beg` (default), `path`, `path_end`, `path_sub`, `path_dir`, `path_reg`, `url_beg`; with `reqMode=sni` only `req_ssl_sni [-i] [-m str\|beg\|end\|sub\|reg\|dom]` (default `req_ssl_sni -i`) |
//! | `port`, `srcPort`, `httpsPort`, `srcHttpsPort` | destination | Ports 1–65535 |
//! | `serviceDomain`, `redirectFromDomain` | destination | See *Domains* below. `redirectFromDomain` requires `serviceDomain` |
//! | `serviceHeader` | destination | `Name:value` items (the value is everything after the first `:`, so it may contain `:`; DFP dropped such items) |
//! | `userAgent` | destination | Substrings, lower-cased |
//! | `reqMode` | destination | `http` (default), `tcp`, `sni`, any case |
//! | `reqPathSearchReplace` | destination | `search,replace[,flags]` pairs separated by `:`; see *Rewrites* |
//! | `outboundHostname` | destination | Host name or IP address |
//! | `sslVerifyNone`, `httpsOnly`, `denyHttp`, `verifyClientSsl`, `ignoreAuthorization`, `checkTcp`, `clitcpka` | destination | Booleans |
//! | `httpsRedirectCode` | destination | 301, 302, 303, 307 or 308 |
//! | `allowedMethods`, `deniedMethods` | destination | HTTP method tokens (case-sensitive) |
//! | `timeoutServer`, `timeoutTunnel`, `timeoutClient` | destination | Non-negative integer seconds (`10s` is rejected; DFP would have written `10ss`) |
//! | `serviceGroup` | destination | Text |
//! | `balanceGroup` | destination | `roundrobin`, `leastconn`, `source` |
//! | `userDef` | destination | Ignored (only DFP's custom templates could read it) |
//! | `aclCondition`, `tasks`, `isGlobal`, `useGlobalUsers`, `debug`, `debugFormat`, `servicePort`, `lookupRetry`, `lookupRetryInterval`, `nodeInfo`, `notify`, `shortName`, unknown keys | — | Ignored silently; they never change behaviour |
//!
//! # General rules
//!
//! * An empty value is the same as an absent parameter (as Go's `Query().Get`).
//! * **Booleans** accept Go's `strconv.ParseBool` set (`1 t T TRUE true True 0 f F FALSE false False`).
//!   Anything else is an error; DFP silently treated it as `false`.
//! * **Lists** are split on `SEPARATOR` (default `,`); items are trimmed and empty items dropped.
//! * **Destinations**: index `i` exists when `servicePath.i`, `port.i`, `serviceDomain.i` or
//!   `httpsPort.i` is present. Indexes must be contiguous from 1; the first missing index ends the
//!   scan. Sluice allows up to [`MAX_INDEX`] (99) instead of DFP's 10. Every destination
//!   parameter falls back to its un-indexed value; the un-indexed destination itself exists only
//!   when there is no indexed one.
//! * **Validation** covers every destination (DFP checked only the first).
//! * **Defaults**: a destination with `serviceDomain` but no `servicePath` gets the path `/` (http
//!   only; in sni mode `servicePath` holds server names). `HTTPS_ONLY` makes every destination
//!   `httpsOnly`. When `httpsPort` is set, `srcPort` defaults to 80 and `srcHttpsPort` to 443.
//!
//! # Domains
//!
//! Items are trimmed and lower-cased. `*suffix` is a suffix match for that pattern only (DFP
//! switched the whole service to `hdr_end` and later lost the wildcard). Otherwise the algorithm
//! decides: `hdr(host)` and `hdr_beg(host)` both match the **whole** host, so `example.com` never
//! matches `example.com.evil.net` (a deliberate fix of DFP's default prefix match);
//! `hdr_end(host)` is a suffix, `hdr_dom(host)` the domain or a sub-domain, `hdr_reg(host)` a
//! case-insensitive regex (not lower-cased, so escapes like `\D` keep their meaning), and
//! `req.ssl_sni` an exact server name. The Host is compared without its port, so a domain with a
//! port or a `*` anywhere but at the start is rejected instead of silently never matching.
//!
//! # Header operations
//!
//! Items are `Name value[ condition]`. Items are split on the separator except inside a quoted
//! value, so `Cache-Control "no-cache, no-store"` stays one item. The value may be quoted with
//! `"` (with `\"` and `\\` escapes) or `'`. Placeholders: `%[src]` (client IP), `%[dst_port]`
//! (local port), `%[ssl_fc]` (`1` over TLS), and `%%` for a literal `%`; any other `%[...]`,
//! including `%[env(NAME)]`, is rejected. Conditions: `if { ssl_fc }`, `unless { ssl_fc }`,
//! `if !{ ssl_fc }` (and `unless !{ ssl_fc }`); any other condition is rejected. Names must be
//! HTTP tokens and are lower-cased. Operations run adds, then sets, then deletes.
//!
//! # Users
//!
//! `users` entries are separated by `,` or newlines (never by `SEPARATOR`) and trimmed. The
//! password is everything after the **first** `:`; an entry without `:` (or with an empty
//! password) has no password and takes it from `usersSecret` or the global users later. A list
//! that yields no user at all is rejected (DFP failed closed with an unusable random user).
//!
//! # Rewrites
//!
//! `reqPathSearchReplace` pairs are `search,replace[,flags]` separated by `:`. `search` is a
//! `regex`-crate expression (look-around and back-references are rejected with the regex
//! error). In `replace`, HAProxy's `\0`–`\9` become `${0}`–`${9}`, `\\` is a backslash, `\xHH`
//! an ASCII byte, and `$` is literal. Flags: `g` (every match) and `i` (ignore case).
//!
//! # Environment-defined services
//!
//! Unlike DFP, `DFP_SERVICE[_N]_*` variables support **every** parameter of the table (users,
//! user agents, headers, groups, indexed `HTTPS_PORT_i`, …), indexed destinations keep their
//! real index (DFP gave them all index 0), lists use `SEPARATOR` like every other source, and
//! the deprecated `REQ_PATH_SEARCH`/`REQ_PATH_REPLACE` are honoured.

use http::header::{HeaderName, HeaderValue as HttpHeaderValue};
use http::Method;
use percent_encoding::percent_decode_str;
use regex::{Regex, RegexBuilder};

pub use crate::service::Params;
use crate::service::{
    Balance, Compression, CompressionAlgo, ConnectionMode, Destination, DomainAlgo, DomainPattern,
    HeaderCondition, HeaderOp, HeaderValue, PathPattern, PathRewrite, PathType, RedirectCode,
    ReqMode, Service, SniMatch, SniPattern, User, ValuePart,
};
use crate::settings::Vars;

/// The highest destination index Sluice reads (`servicePath.99`). DFP stopped at 10.
pub const MAX_INDEX: u8 = 99;

/// The prefix of environment-defined services (`DFP_SERVICE_*`, `DFP_SERVICE_1_*`, …).
pub const ENV_SERVICE_PREFIX: &str = "DFP_SERVICE";

/// The label prefix whose labels carry service parameters.
pub const LABEL_PREFIX: &str = "com.df.";

/// The parameters whose indexed presence creates a destination index.
const INDEX_PARAMS: [&str; 4] = ["servicePath", "port", "serviceDomain", "httpsPort"];

/// Why a set of parameters does not describe a valid service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// No `serviceName`.
    #[error("serviceName parameter is mandatory.")]
    MissingServiceName,
    /// An http destination has neither `servicePath` nor `serviceDomain` (the API answers 409,
    /// which DFSL does not retry).
    #[error("When using reqMode http, servicePath or serviceDomain are mandatory")]
    HttpWithoutPathOrDomain,
    /// A tcp or sni destination lacks `srcPort` or `port`.
    #[error("When NOT using reqMode http (e.g. tcp), srcPort and port parameters are mandatory.")]
    NonHttpWithoutPorts,
    /// A destination has neither `port` nor `httpsPort`.
    #[error("When MODE is set to \"service\" or \"swarm\", the port query is mandatory")]
    MissingPort,
    /// A value that cannot be used. `param` includes the index suffix the value was read with.
    #[error("invalid value {value:?} for parameter {param}: {reason}")]
    Invalid {
        /// The parameter as given, e.g. `port.1`.
        param: String,
        /// The offending value (or list item). Passwords are redacted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A parameter Sluice deliberately does not implement (raw HAProxy configuration).
    #[error("parameter {param} is not supported: {reason}")]
    Unsupported {
        /// The parameter name.
        param: String,
        /// Why it is not supported.
        reason: String,
    },
}

impl ParamError {
    /// True for the error DFP answered with 409 Conflict (DFSL treats it as final).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ParamError::HttpWithoutPathOrDomain)
    }

    /// The parameter the error is about, when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            ParamError::MissingServiceName => Some("serviceName"),
            ParamError::Invalid { param, .. } | ParamError::Unsupported { param, .. } => {
                Some(param)
            }
            ParamError::HttpWithoutPathOrDomain
            | ParamError::NonHttpWithoutPorts
            | ParamError::MissingPort => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The table of known parameters
// ---------------------------------------------------------------------------------------------

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
    /// Parsed into the [`Service`].
    Parsed,
    /// A deprecated spelling that is still parsed.
    Deprecated,
    /// Rejected with [`ParamError::Unsupported`].
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
    known("isDefaultBackend", Svc, Parsed, None),
    known("proxyInstanceName", Svc, Parsed, None),
    known("redirectWhenHttpProto", Svc, Parsed, None),
    known("redirectUnlessHttpsProto", Svc, Parsed, None),
    known("replicas", Svc, Parsed, None),
    known("serviceCert", Svc, Parsed, None),
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
fn upper_snake(camel: &str) -> String {
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
fn split_index(key: &str) -> (&str, Option<u8>) {
    if let Some((name, suffix)) = key.rsplit_once('.') {
        if let Some(index) = parse_index(suffix) {
            return (name, Some(index));
        }
    }
    (key, None)
}

fn parse_index(text: &str) -> Option<u8> {
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

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/// Parses a URL query string (with or without the leading `?`). Keys and values are
/// percent-decoded with `+` as a space (invalid escapes are kept literally, invalid UTF-8 is
/// replaced). When a key repeats, the first value wins, as Go's `Query().Get`.
pub fn params_from_query(query: &str) -> Params {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut params = Params::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_query_component(key);
        if key.is_empty() {
            continue;
        }
        params
            .entry(key)
            .or_insert_with(|| decode_query_component(value));
    }
    params
}

fn decode_query_component(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Keeps the `com.df.*` labels with the prefix removed (`com.df.servicePath.1` →
/// `servicePath.1`). Other labels are dropped; for a repeated key the first value wins.
pub fn params_from_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
    let mut params = Params::new();
    for (key, value) in labels {
        if let Some(name) = key.strip_prefix(LABEL_PREFIX) {
            if !name.is_empty() {
                params
                    .entry(name.to_string())
                    .or_insert_with(|| value.to_string());
            }
        }
    }
    params
}

/// The services defined by `DFP_SERVICE_*` variables: `DFP_SERVICE` first (skipped when it has
/// no `DFP_SERVICE_SERVICE_NAME`), then `DFP_SERVICE_1`, `DFP_SERVICE_2`, … up to the first
/// prefix without `<prefix>_SERVICE_NAME`.
///
/// `<prefix>_<UPPER_SNAKE>` becomes the canonical parameter (`SERVICE_PATH` → `servicePath`,
/// and DFP's run-together `DISCOVERYTYPE` / `SERVICEDOMAINALGO` too), and
/// `<prefix>_<UPPER_SNAKE>_<i>` becomes `name.i` for destination parameters. Indexes are read
/// while `SERVICE_PATH_i`, `PORT_i`, `SERVICE_DOMAIN_i` or `HTTPS_PORT_i` exists, exactly the
/// rule [`parse_service`] applies. Every parameter of [`KNOWN_PARAMS`] is supported (DFP
/// supported a subset and gave indexed destinations index 0).
pub fn services_from_env(vars: &dyn Vars) -> Vec<Params> {
    let mut services = Vec::new();
    if let Some(params) = service_from_env(vars, ENV_SERVICE_PREFIX) {
        services.push(params);
    }
    services.extend(
        (1u32..).map_while(|n| service_from_env(vars, &format!("{ENV_SERVICE_PREFIX}_{n}"))),
    );
    services
}

fn service_from_env(vars: &dyn Vars, prefix: &str) -> Option<Params> {
    vars.var(&format!("{prefix}_SERVICE_NAME"))?;
    let readable = || {
        KNOWN_PARAMS
            .iter()
            .filter(|p| p.handling != ParamHandling::Internal)
    };
    let mut params = Params::new();
    for param in readable() {
        let value = vars
            .var(&format!("{prefix}_{}", param.env_name()))
            .or_else(|| {
                param
                    .legacy_env
                    .and_then(|legacy| vars.var(&format!("{prefix}_{legacy}")))
            });
        if let Some(value) = value {
            params.insert(param.name.to_string(), value);
        }
    }
    for index in 1..=MAX_INDEX {
        let exists = INDEX_PARAMS.iter().any(|name| {
            vars.var(&format!("{prefix}_{}_{index}", upper_snake(name)))
                .is_some()
        });
        if !exists {
            break;
        }
        for param in readable().filter(|p| p.scope == ParamScope::Destination) {
            if let Some(value) = vars.var(&format!("{prefix}_{}_{index}", param.env_name())) {
                params.insert(format!("{}.{index}", param.name), value);
            }
        }
    }
    Some(params)
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Proxy-wide settings the parser needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseContext {
    /// `SEPARATOR`: the list separator (default `,`; an empty one is treated as `,`).
    pub separator: String,
    /// `SERVICE_DOMAIN_ALGO`: the algorithm of services without `serviceDomainAlgo`
    /// (default `hdr_beg(host)`, which Sluice matches exactly).
    pub default_domain_algo: DomainAlgo,
    /// `HTTPS_ONLY`: every destination redirects plain HTTP to https.
    pub https_only: bool,
}

impl Default for ParseContext {
    fn default() -> Self {
        ParseContext {
            separator: ",".to_string(),
            default_domain_algo: DomainAlgo::Beg,
            https_only: false,
        }
    }
}

impl ParseContext {
    fn sep(&self) -> &str {
        if self.separator.is_empty() {
            ","
        } else {
            &self.separator
        }
    }
}

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A decimal number made of ASCII digits only (no sign, no spaces inside).
pub(crate) fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A parameter value together with the key it was read under (`port.1` or the fallback `port`).
struct Val<'a> {
    key: String,
    value: &'a str,
}

impl Val<'_> {
    fn invalid(&self, reason: impl Into<String>) -> ParamError {
        self.invalid_item(self.value, reason)
    }

    fn invalid_item(&self, item: &str, reason: impl Into<String>) -> ParamError {
        ParamError::Invalid {
            param: self.key.clone(),
            value: item.to_string(),
            reason: reason.into(),
        }
    }

    fn boolean(&self) -> Result<bool, ParamError> {
        parse_go_bool(self.value.trim()).ok_or_else(|| {
            self.invalid("not a boolean (use true/false, 1/0, t/f, TRUE/FALSE, True/False)")
        })
    }

    fn port(&self) -> Result<u16, ParamError> {
        parse_decimal::<u16>(self.value.trim())
            .filter(|p| *p != 0)
            .ok_or_else(|| self.invalid("not a port number (1-65535)"))
    }

    fn seconds(&self) -> Result<u32, ParamError> {
        parse_decimal::<u32>(self.value.trim())
            .ok_or_else(|| self.invalid("not a whole number of seconds"))
    }

    /// Separator-split, trimmed, non-empty items.
    fn items<'s>(&'s self, sep: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.value
            .split(sep)
            .map(str::trim)
            .filter(|item| !item.is_empty())
    }
}

/// Reads parameters with the empty-means-absent and index-fallback rules.
struct Source<'a> {
    params: &'a Params,
}

impl<'a> Source<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn service(&self, name: &str) -> Option<Val<'a>> {
        self.get(name).map(|value| Val {
            key: name.to_string(),
            value,
        })
    }

    /// `name.index`, falling back to the un-indexed `name`.
    fn dest(&self, name: &str, index: u8) -> Option<Val<'a>> {
        if index > 0 {
            let key = format!("{name}.{index}");
            if let Some(value) = self.get(&key) {
                return Some(Val { key, value });
            }
        }
        self.service(name)
    }

    /// The number of contiguous indexed destinations (0 = use the un-indexed one).
    fn indexed_count(&self) -> u8 {
        let mut count = 0;
        for index in 1..=MAX_INDEX {
            let exists = INDEX_PARAMS
                .iter()
                .any(|name| self.get(&format!("{name}.{index}")).is_some());
            if !exists {
                break;
            }
            count = index;
        }
        count
    }
}

/// Service-level values every destination needs.
struct Shared {
    domain_algo: DomainAlgo,
    legacy_rewrite: Option<PathRewrite>,
}

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

fn unsupported_reason(param: &str) -> &'static str {
    match param {
        "backendExtra" => "raw HAProxy backend configuration cannot be applied by Sluice",
        _ => "custom HAProxy templates cannot be applied by Sluice",
    }
}

fn validate_service_name(v: &Val<'_>) -> Result<String, ParamError> {
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

fn parse_destination(
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
        check_tcp: flag("checkTcp")?.unwrap_or(false),
        clitcpka: flag("clitcpka")?.unwrap_or(false),
        service_group,
        balance_group,
    })
}

// --- paths -----------------------------------------------------------------------------------

const PATH_TYPES_HELP: &str = "unsupported pathType (use path_beg, path, path_end, path_sub, \
     path_dir, path_reg or url_beg; with reqMode=sni use req_ssl_sni [-i] \
     [-m str|beg|end|sub|reg|dom])";

fn parse_path_type(v: Option<Val<'_>>, req_mode: ReqMode) -> Result<PathType, ParamError> {
    let Some(v) = v else {
        return Ok(match req_mode {
            ReqMode::Sni => PathType::Sni(SniMatch::Exact),
            ReqMode::Http | ReqMode::Tcp => PathType::Beg,
        });
    };
    let lowered = v.value.trim().to_ascii_lowercase();
    let mut tokens = lowered.split_whitespace();
    let first = tokens.next().unwrap_or_default();
    let simple = match first {
        "path_beg" => Some(PathType::Beg),
        "path" => Some(PathType::Exact),
        "path_end" => Some(PathType::End),
        "path_sub" => Some(PathType::Sub),
        "path_dir" => Some(PathType::Dir),
        "path_reg" => Some(PathType::Reg),
        "url_beg" => Some(PathType::UrlBeg),
        "req_ssl_sni" | "req.ssl_sni" => None,
        _ => return Err(v.invalid(PATH_TYPES_HELP)),
    };
    let path_type = match simple {
        Some(t) => {
            if tokens.next().is_some() {
                return Err(v.invalid(PATH_TYPES_HELP));
            }
            t
        }
        None => {
            let mut method = None;
            while let Some(token) = tokens.next() {
                match token {
                    "-i" => {}
                    "-m" if method.is_none() => {
                        method = Some(match tokens.next() {
                            Some("str") => SniMatch::Exact,
                            Some("beg") => SniMatch::Prefix,
                            Some("end") => SniMatch::Suffix,
                            Some("sub") => SniMatch::Substring,
                            Some("reg") => SniMatch::Regex,
                            Some("dom") => SniMatch::Domain,
                            _ => return Err(v.invalid(PATH_TYPES_HELP)),
                        });
                    }
                    _ => return Err(v.invalid(PATH_TYPES_HELP)),
                }
            }
            PathType::Sni(method.unwrap_or(SniMatch::Exact))
        }
    };
    match (req_mode, path_type) {
        (ReqMode::Sni, PathType::Sni(_)) => Ok(path_type),
        (ReqMode::Sni, _) => Err(
            v.invalid("reqMode=sni needs pathType req_ssl_sni [-i] [-m str|beg|end|sub|reg|dom]")
        ),
        (_, PathType::Sni(_)) => Err(v.invalid("req_ssl_sni applies only to reqMode=sni")),
        _ => Ok(path_type),
    }
}

fn compile_paths(
    v: Option<Val<'_>>,
    path_type: PathType,
    sep: &str,
) -> Result<Vec<PathPattern>, ParamError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    v.items(sep)
        .map(|item| compile_path(item, path_type).map_err(|reason| v.invalid_item(item, reason)))
        .collect()
}

fn compile_path(text: &str, path_type: PathType) -> Result<PathPattern, String> {
    let owned = || text.to_string();
    Ok(match path_type {
        PathType::Beg => PathPattern::Prefix(owned()),
        PathType::Exact => PathPattern::Exact(owned()),
        PathType::End => PathPattern::Suffix(owned()),
        PathType::Sub => PathPattern::Substring(owned()),
        PathType::Dir => PathPattern::Dir(owned()),
        PathType::Reg => PathPattern::Regex(compile_regex(text, false)?),
        PathType::UrlBeg => PathPattern::UrlPrefix(owned()),
        PathType::Sni(method) => {
            let lower = text.to_ascii_lowercase();
            PathPattern::Sni(match method {
                SniMatch::Exact => SniPattern::Exact(lower),
                SniMatch::Prefix => SniPattern::Prefix(lower),
                SniMatch::Suffix => SniPattern::Suffix(lower),
                SniMatch::Substring => SniPattern::Substring(lower),
                SniMatch::Domain => SniPattern::Domain(lower),
                SniMatch::Regex => SniPattern::Regex(compile_regex(text, true)?),
            })
        }
    })
}

fn compile_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .build()
        .map_err(|e| regex_reason(&e))
}

/// One line out of the `regex` crate's multi-line diagnostics.
fn regex_reason(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => {
            let detail = text
                .lines()
                .rev()
                .find_map(|line| line.trim().strip_prefix("error: "))
                .unwrap_or("syntax error");
            format!("not a supported regular expression: {detail}")
        }
        regex::Error::CompiledTooBig(_) => "the regular expression is too large".to_string(),
        _ => "not a supported regular expression".to_string(),
    }
}

// --- domains ---------------------------------------------------------------------------------

fn parse_domains(
    v: &Val<'_>,
    algo: DomainAlgo,
    sep: &str,
) -> Result<Vec<DomainPattern>, ParamError> {
    v.items(sep)
        .map(|item| parse_domain(item, algo).map_err(|reason| v.invalid_item(item, reason)))
        .collect()
}

fn parse_domain(item: &str, algo: DomainAlgo) -> Result<DomainPattern, String> {
    if let Some(rest) = item.strip_prefix('*') {
        let suffix = plain_domain(rest.trim_start_matches('*'))?;
        return Ok(DomainPattern::Suffix(suffix));
    }
    if algo == DomainAlgo::Reg {
        return compile_regex(item, true).map(DomainPattern::Regex);
    }
    let domain = plain_domain(item)?;
    Ok(match algo {
        DomainAlgo::Exact | DomainAlgo::Beg | DomainAlgo::Sni => DomainPattern::Exact(domain),
        DomainAlgo::End => DomainPattern::Suffix(domain),
        DomainAlgo::Dom | DomainAlgo::Reg => DomainPattern::Domain(domain),
    })
}

/// Lower-cases a non-regex domain and rejects text that could never match a port-less host.
fn plain_domain(text: &str) -> Result<String, String> {
    if text.contains('*') {
        return Err("a wildcard '*' is only allowed at the start of a domain".to_string());
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err("a domain cannot contain whitespace or '/'".to_string());
    }
    if !text.starts_with('[') && text.contains(':') {
        return Err("hosts are matched without their port; remove the ':port'".to_string());
    }
    Ok(text.trim_end_matches('.').to_ascii_lowercase())
}

// --- headers ---------------------------------------------------------------------------------

fn push_header_ops(
    ops: &mut Vec<HeaderOp>,
    add: Option<Val<'_>>,
    set: Option<Val<'_>>,
    del: Option<Val<'_>>,
    sep: &str,
) -> Result<(), ParamError> {
    if let Some(v) = add {
        for item in split_outside_quotes(v.value, sep) {
            let (name, value, when) =
                parse_header_item(item).map_err(|reason| v.invalid_item(item, reason))?;
            ops.push(HeaderOp::Add { name, value, when });
        }
    }
    if let Some(v) = set {
        for item in split_outside_quotes(v.value, sep) {
            let (name, value, when) =
                parse_header_item(item).map_err(|reason| v.invalid_item(item, reason))?;
            ops.push(HeaderOp::Set { name, value, when });
        }
    }
    if let Some(v) = del {
        for item in v.items(sep) {
            let name = header_name(item).map_err(|reason| v.invalid_item(item, reason))?;
            ops.push(HeaderOp::Del { name });
        }
    }
    Ok(())
}

/// Splits on `sep` except inside a quoted value (a quote opens only after whitespace).
/// Items are trimmed; empty items are dropped.
fn split_outside_quotes<'s>(value: &'s str, sep: &str) -> Vec<&'s str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut prev_is_space = false;
    let mut at = 0;
    while at < value.len() {
        let rest = &value[at..];
        if quote.is_none() && rest.starts_with(sep) {
            items.push(&value[start..at]);
            at += sep.len();
            start = at;
            prev_is_space = false;
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if q == '"' && c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if prev_is_space && (c == '"' || c == '\'') => quote = Some(c),
            None => {}
        }
        prev_is_space = c.is_whitespace();
        at += c.len_utf8();
    }
    items.push(&value[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

fn header_name(text: &str) -> Result<String, String> {
    HeaderName::from_bytes(text.as_bytes())
        .map(|name| name.as_str().to_string())
        .map_err(|_| "not a valid HTTP header name".to_string())
}

/// `Name value[ condition]` → its parts.
fn parse_header_item(item: &str) -> Result<(String, HeaderValue, HeaderCondition), String> {
    let item = item.trim();
    let (name, rest) = match item.find(char::is_whitespace) {
        Some(at) => (&item[..at], item[at..].trim_start()),
        None => (item, ""),
    };
    let name = header_name(name)?;
    let (text, condition) = if rest.starts_with('"') || rest.starts_with('\'') {
        let (text, after) = take_quoted(rest)?;
        if !after.is_empty() && !after.starts_with(char::is_whitespace) {
            return Err("unexpected text after the closing quote".to_string());
        }
        (text, after.trim())
    } else {
        let at = condition_start(rest).unwrap_or(rest.len());
        let text = rest[..at].trim_end();
        if text.is_empty() {
            return Err("missing header value".to_string());
        }
        (text.to_string(), rest[at..].trim())
    };
    let when = parse_condition(condition)?;
    let value = parse_value_parts(&text)?;
    Ok((name, value, when))
}

/// Reads a quoted value at the start of `text`; returns it unquoted and the text after it.
fn take_quoted(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let Some((_, quote)) = chars.next() else {
        return Err("missing header value".to_string());
    };
    let mut out = String::new();
    while let Some((at, c)) = chars.next() {
        if quote == '"' && c == '\\' {
            match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => break,
            }
        } else if c == quote {
            return Ok((out, &text[at + c.len_utf8()..]));
        } else {
            out.push(c);
        }
    }
    Err("unterminated quoted value".to_string())
}

/// The byte offset of the first whitespace-separated `if` / `unless` token.
fn condition_start(text: &str) -> Option<usize> {
    let mut token_start = None;
    for (at, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if c.is_whitespace() {
            if let Some(start) = token_start.take() {
                if matches!(&text[start..at], "if" | "unless") {
                    return Some(start);
                }
            }
        } else if token_start.is_none() {
            token_start = Some(at);
        }
    }
    None
}

fn parse_condition(text: &str) -> Result<HeaderCondition, String> {
    if text.is_empty() {
        return Ok(HeaderCondition::Always);
    }
    let mut tokens = text.split_whitespace();
    let keyword = tokens.next().unwrap_or_default();
    let body: String = tokens.collect();
    let when = match (keyword, body.as_str()) {
        ("if", "{ssl_fc}") | ("unless", "!{ssl_fc}") => HeaderCondition::IfTls,
        ("unless", "{ssl_fc}") | ("if", "!{ssl_fc}") => HeaderCondition::UnlessTls,
        _ => {
            return Err(
                "unsupported condition (only `if { ssl_fc }`, `unless { ssl_fc }` and \
                 `if !{ ssl_fc }`)"
                    .to_string(),
            )
        }
    };
    Ok(when)
}

const PLACEHOLDER_HELP: &str =
    "only the placeholders %[src], %[dst_port] and %[ssl_fc] are supported";

/// Literal text with `%[src]`, `%[dst_port]`, `%[ssl_fc]` placeholders and `%%` escapes.
fn parse_value_parts(text: &str) -> Result<HeaderValue, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            literal.push('%');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| "unterminated %[ placeholder".to_string())?;
            let part = match inner[..close].trim() {
                "src" => ValuePart::ClientIp,
                "dst_port" => ValuePart::LocalPort,
                "ssl_fc" => ValuePart::Tls,
                other if other.starts_with("env(") => {
                    return Err(format!("%[{other}] cannot be used: {PLACEHOLDER_HELP}"))
                }
                other => {
                    return Err(format!(
                        "unsupported placeholder %[{other}]: {PLACEHOLDER_HELP}"
                    ))
                }
            };
            if !literal.is_empty() {
                parts.push(ValuePart::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &inner[close + 1..];
        } else {
            literal.push('%');
            rest = after;
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(ValuePart::Text(literal));
    }
    for part in &parts {
        if let ValuePart::Text(t) = part {
            if HttpHeaderValue::from_str(t).is_err() {
                return Err("not a valid HTTP header value (control characters)".to_string());
            }
        }
    }
    Ok(HeaderValue(parts))
}

fn parse_service_headers(v: &Val<'_>, sep: &str) -> Result<Vec<(String, String)>, ParamError> {
    v.items(sep)
        .map(|item| {
            let (name, value) = item
                .split_once(':')
                .ok_or_else(|| v.invalid_item(item, "expected Name:value"))?;
            let name = header_name(name.trim()).map_err(|reason| v.invalid_item(item, reason))?;
            let value = value.trim();
            if HttpHeaderValue::from_str(value).is_err() {
                return Err(v.invalid_item(item, "not a valid HTTP header value"));
            }
            Ok((name, value.to_string()))
        })
        .collect()
}

// --- users -----------------------------------------------------------------------------------

fn parse_users(v: &Val<'_>) -> Result<Vec<User>, ParamError> {
    let redacted = |reason: &str| ParamError::Invalid {
        param: v.key.clone(),
        value: "<redacted>".to_string(),
        reason: reason.to_string(),
    };
    let mut users = Vec::new();
    for entry in v
        .value
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (name, password) = match entry.split_once(':') {
            Some((name, password)) => (name.trim(), Some(password.trim())),
            None => (entry, None),
        };
        if name.is_empty() {
            return Err(redacted("a user entry has no name"));
        }
        users.push(User {
            name: name.to_string(),
            password: password.filter(|p| !p.is_empty()).map(str::to_string),
        });
    }
    if users.is_empty() {
        return Err(redacted("no user in the list"));
    }
    Ok(users)
}

fn parse_users_secret(v: &Val<'_>) -> Result<String, ParamError> {
    let name = v.value.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(v.invalid("a secret name may only contain letters, digits, '.', '_' and '-'"));
    }
    Ok(name.to_string())
}

// --- rewrites --------------------------------------------------------------------------------

fn parse_legacy_rewrite(src: &Source<'_>) -> Result<Option<PathRewrite>, ParamError> {
    let Some(search) = src.service("reqPathSearch") else {
        return Ok(None);
    };
    let replace_val = src.service("reqPathReplace");
    let replace_text = replace_val.as_ref().map_or("", |v| v.value);
    let regex = compile_regex(search.value, false).map_err(|reason| search.invalid(reason))?;
    let replace = translate_replacement(replace_text).map_err(|reason| match &replace_val {
        Some(v) => v.invalid(reason),
        None => search.invalid(reason),
    })?;
    Ok(Some(PathRewrite {
        search: regex,
        replace,
        global: false,
        source: format!("{},{replace_text}", search.value),
    }))
}

/// `search,replace[,flags]` → a rewrite.
fn parse_rewrite_pair(pair: &str) -> Result<PathRewrite, String> {
    let parts: Vec<&str> = pair.split(',').collect();
    let (search, replace, flags) = match parts.as_slice() {
        [search, replace] => (*search, *replace, ""),
        [search, replace, flags] => (*search, *replace, flags.trim()),
        _ => return Err("expected search,replace[,flags]".to_string()),
    };
    if search.is_empty() {
        return Err("the search expression is empty".to_string());
    }
    let mut global = false;
    let mut case_insensitive = false;
    for flag in flags.chars() {
        match flag {
            'g' => global = true,
            'i' => case_insensitive = true,
            other => return Err(format!("unsupported regsub flag '{other}' (only g and i)")),
        }
    }
    Ok(PathRewrite {
        search: compile_regex(search, case_insensitive)?,
        replace: translate_replacement(replace)?,
        global,
        source: pair.to_string(),
    })
}

/// HAProxy `regsub` replacement → `regex` crate replacement: `\N` → `${N}`, `\\` → `\`,
/// `\xHH` → the ASCII character, `$` → `$$`; any other `\c` stays as typed.
fn translate_replacement(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(digit @ '0'..='9') => {
                    out.push_str("${");
                    out.push(digit);
                    out.push('}');
                }
                Some('\\') => out.push('\\'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    let byte = (hex.len() == 2)
                        .then(|| u8::from_str_radix(&hex, 16).ok())
                        .flatten()
                        .filter(u8::is_ascii)
                        .ok_or_else(|| {
                            "\\x must be followed by two hex digits of an ASCII character"
                                .to_string()
                        })?;
                    match char::from(byte) {
                        '$' => out.push_str("$$"),
                        ch => out.push(ch),
                    }
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return Err("the replacement ends with a lone backslash".to_string()),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

// --- other values ----------------------------------------------------------------------------

fn parse_outbound_hostname(v: &Val<'_>) -> Result<String, ParamError> {
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

fn parse_connection_mode(v: &Val<'_>) -> Result<ConnectionMode, ParamError> {
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

fn parse_compression(
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn parse(query: &str) -> Result<Service, ParamError> {
        parse_service(&params_from_query(query), &ParseContext::default())
    }

    fn ok(query: &str) -> Service {
        match parse(query) {
            Ok(service) => service,
            Err(e) => panic!("{query}: {e}"),
        }
    }

    fn err(query: &str) -> ParamError {
        match parse(query) {
            Ok(service) => panic!("{query} parsed: {service:?}"),
            Err(e) => e,
        }
    }

    /// (param, value, reason) of an `Invalid` error.
    fn invalid(query: &str) -> (String, String, String) {
        match err(query) {
            ParamError::Invalid {
                param,
                value,
                reason,
            } => (param, value, reason),
            other => panic!("{query}: expected Invalid, got {other:?}"),
        }
    }

    fn path_texts(d: &Destination) -> Vec<&str> {
        d.paths.iter().map(PathPattern::text).collect()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &str = "serviceName=go-demo&servicePath=/demo&port=8080";

    // --- sources ---------------------------------------------------------------------------

    #[test]
    fn query_is_percent_decoded_with_plus_as_space() {
        let p = params_from_query(
            "?serviceName=go-demo&addReqHeader=X-A+hello%20there&servicePath=%2Fa%2Cb",
        );
        assert_eq!(p["serviceName"], "go-demo");
        assert_eq!(p["addReqHeader"], "X-A hello there");
        assert_eq!(p["servicePath"], "/a,b");
    }

    #[test]
    fn query_first_value_wins_and_odd_pairs_are_tolerated() {
        let p = params_from_query("port=1&port=2&&flag&=x&bad=%zz&u=%C3%A9");
        assert_eq!(p["port"], "1");
        assert_eq!(p["flag"], "");
        assert!(!p.contains_key(""));
        assert_eq!(p["bad"], "%zz");
        assert_eq!(p["u"], "é");
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn query_decoded_key_with_index() {
        let p = params_from_query("servicePath%2E1=/x");
        assert_eq!(p["servicePath.1"], "/x");
    }

    #[test]
    fn labels_keep_only_com_df_and_strip_the_prefix() {
        let labels = [
            ("com.df.servicePath.1", "/api"),
            ("com.df.notify", "true"),
            ("com.docker.stack.namespace", "demo"),
            ("com.df.", "ignored"),
            ("other", "x"),
        ];
        let p = params_from_labels(labels.iter().copied());
        assert_eq!(p.len(), 2);
        assert_eq!(p["servicePath.1"], "/api");
        assert_eq!(p["notify"], "true");
    }

    #[test]
    fn labels_parse_like_queries() {
        let labels = [
            ("com.df.serviceName", "go-demo"),
            ("com.df.servicePath", "/demo"),
            ("com.df.port", "8080"),
            ("com.df.notify", "true"),
            ("com.df.distribute", "true"),
        ];
        let s = parse_service(&params_from_labels(labels), &ParseContext::default()).unwrap();
        assert_eq!(s.name, "go-demo");
        assert!(s.distribute);
        assert_eq!(s.destinations[0].port, Some(8080));
    }

    #[test]
    fn env_services_are_read_in_order_and_stop_at_the_first_gap() {
        let vars = env(&[
            ("DFP_SERVICE_SERVICE_NAME", "zero"),
            ("DFP_SERVICE_PORT", "80"),
            ("DFP_SERVICE_1_SERVICE_NAME", "one"),
            ("DFP_SERVICE_1_SERVICE_PATH", "/one"),
            ("DFP_SERVICE_1_PORT", "8080"),
            ("DFP_SERVICE_2_SERVICE_NAME", "two"),
            ("DFP_SERVICE_4_SERVICE_NAME", "four"),
        ]);
        let services = services_from_env(&vars);
        let names: Vec<&str> = services.iter().map(|p| p["serviceName"].as_str()).collect();
        assert_eq!(names, ["zero", "one", "two"]);
        assert_eq!(services[0]["port"], "80");
        assert_eq!(services[1]["servicePath"], "/one");
        assert_eq!(services[1]["port"], "8080");
        assert_eq!(services[1].len(), 3);
    }

    #[test]
    fn env_without_unindexed_service_still_reads_numbered_ones() {
        let vars = env(&[
            ("DFP_SERVICE_PORT", "80"),
            ("DFP_SERVICE_1_SERVICE_NAME", "one"),
        ]);
        let services = services_from_env(&vars);
        assert_eq!(services.len(), 1);
        assert_eq!(services[0]["serviceName"], "one");
        assert!(!services[0].contains_key("port"));
    }

    #[test]
    fn env_translates_indexed_destinations_with_their_real_index() {
        let vars = env(&[
            ("DFP_SERVICE_1_SERVICE_NAME", "api"),
            ("DFP_SERVICE_1_SERVICE_PATH_1", "/a"),
            ("DFP_SERVICE_1_PORT_1", "81"),
            ("DFP_SERVICE_1_PORT_2", "82"),
            ("DFP_SERVICE_1_HTTPS_PORT_2", "443"),
            ("DFP_SERVICE_1_USER_AGENT_2", "Mobile"),
            ("DFP_SERVICE_1_SERVICE_PATH", "/fallback"),
            ("DFP_SERVICE_1_PORT_4", "84"),
            ("DFP_SERVICE_1_DISCOVERYTYPE", "DNS"),
            ("DFP_SERVICE_1_USERS", "a:b"),
            ("DFP_SERVICE_1_SERVICE_DOMAIN_MATCH_ALL", "true"),
            ("DFP_SERVICE_1_NODE_INFO", "internal"),
            ("DFP_SERVICE_1_NOTIFY", "true"),
        ]);
        let services = services_from_env(&vars);
        let p = &services[0];
        assert_eq!(p["servicePath.1"], "/a");
        assert_eq!(p["port.1"], "81");
        assert_eq!(p["port.2"], "82");
        assert_eq!(p["httpsPort.2"], "443");
        assert_eq!(p["userAgent.2"], "Mobile");
        assert_eq!(p["servicePath"], "/fallback");
        assert_eq!(p["discoveryType"], "DNS");
        assert_eq!(p["users"], "a:b");
        assert_eq!(p["serviceDomainMatchAll"], "true");
        assert!(
            !p.contains_key("port.4"),
            "index 3 is missing, so 4 is not read"
        );
        assert!(!p.contains_key("nodeInfo") && !p.contains_key("notify"));

        let s = parse_service(p, &ParseContext::default()).unwrap();
        let indexes: Vec<u8> = s.destinations.iter().map(|d| d.index).collect();
        assert_eq!(indexes, [1, 2]);
        assert_eq!(path_texts(&s.destinations[1]), ["/fallback"]);
        assert_eq!(s.destinations[1].user_agents, ["mobile"]);
    }

    #[test]
    fn env_snake_name_wins_over_the_legacy_spelling() {
        let vars = env(&[
            ("DFP_SERVICE_SERVICE_NAME", "x"),
            ("DFP_SERVICE_SERVICE_DOMAIN_ALGO", "hdr_dom(host)"),
            ("DFP_SERVICE_SERVICEDOMAINALGO", "hdr(host)"),
        ]);
        assert_eq!(
            services_from_env(&vars)[0]["serviceDomainAlgo"],
            "hdr_dom(host)"
        );
        let vars = env(&[
            ("DFP_SERVICE_SERVICE_NAME", "x"),
            ("DFP_SERVICE_SERVICEDOMAINALGO", "hdr(host)"),
        ]);
        assert_eq!(
            services_from_env(&vars)[0]["serviceDomainAlgo"],
            "hdr(host)"
        );
    }

    #[test]
    fn env_round_trip_of_every_known_parameter() {
        let mut params = Params::new();
        for (n, p) in KNOWN_PARAMS
            .iter()
            .filter(|p| p.handling != ParamHandling::Internal)
            .enumerate()
        {
            params.insert(p.name.to_string(), format!("v{n}"));
            if p.scope == ParamScope::Destination {
                for i in 1..=3 {
                    params.insert(format!("{}.{i}", p.name), format!("v{n}.{i}"));
                }
            }
        }
        let mut vars = HashMap::new();
        for (key, value) in &params {
            let suffix = param_key_to_env(key).unwrap();
            assert_eq!(env_to_param_key(&suffix).as_deref(), Some(key.as_str()));
            vars.insert(format!("DFP_SERVICE_7_{suffix}"), value.clone());
        }
        for n in 1..7 {
            vars.insert(format!("DFP_SERVICE_{n}_SERVICE_NAME"), format!("s{n}"));
        }
        let services = services_from_env(&vars);
        assert_eq!(services.len(), 7);
        assert_eq!(services[6], params);
    }

    #[test]
    fn env_name_translation_both_ways() {
        assert_eq!(
            param_key_to_env("servicePath.2").as_deref(),
            Some("SERVICE_PATH_2")
        );
        assert_eq!(
            param_key_to_env("sslVerifyNone").as_deref(),
            Some("SSL_VERIFY_NONE")
        );
        assert_eq!(param_key_to_env("clitcpka").as_deref(), Some("CLITCPKA"));
        assert_eq!(param_key_to_env("serviceName.1"), None, "service level");
        assert_eq!(param_key_to_env("nodeInfo"), None, "internal");
        assert_eq!(param_key_to_env("bogus"), None);
        assert_eq!(
            env_to_param_key("SERVICE_PATH_2").as_deref(),
            Some("servicePath.2")
        );
        assert_eq!(
            env_to_param_key("HTTPS_PORT_99").as_deref(),
            Some("httpsPort.99")
        );
        assert_eq!(env_to_param_key("HTTPS_PORT_100"), None);
        assert_eq!(env_to_param_key("HTTPS_PORT_0"), None);
        assert_eq!(
            env_to_param_key("DISCOVERYTYPE").as_deref(),
            Some("discoveryType")
        );
        assert_eq!(
            env_to_param_key("USERS_PASS_ENCRYPTED").as_deref(),
            Some("usersPassEncrypted")
        );
        assert_eq!(env_to_param_key("SERVICE_NAME_1"), None);
        assert_eq!(env_to_param_key("NOPE"), None);
    }

    #[test]
    fn known_param_table_has_unique_names_and_env_names() {
        let mut names: Vec<&str> = KNOWN_PARAMS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KNOWN_PARAMS.len());
        let mut envs: Vec<String> = KNOWN_PARAMS.iter().map(KnownParam::env_name).collect();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(envs.len(), KNOWN_PARAMS.len());
        assert_eq!(
            known_param("reqPathSearchReplace").unwrap().env_name(),
            "REQ_PATH_SEARCH_REPLACE"
        );
    }

    // --- basics ----------------------------------------------------------------------------

    #[test]
    fn minimal_service_with_defaults() {
        let s = ok(BASE);
        assert_eq!(s.name, "go-demo");
        assert_eq!(s.acl_name, "go-demo");
        assert_eq!(s.replicas, None);
        assert!(!s.distribute && !s.sticky && !s.is_default_backend);
        assert!(s.warnings.is_empty());
        assert_eq!(s.destinations.len(), 1);
        let d = &s.destinations[0];
        assert_eq!(d.index, 0);
        assert_eq!(d.req_mode, ReqMode::Http);
        assert_eq!(d.path_type, PathType::Beg);
        assert!(matches!(&d.paths[..], [PathPattern::Prefix(p)] if p == "/demo"));
        assert_eq!(d.port, Some(8080));
        assert_eq!(d.src_port, None);
        assert_eq!(d.https_redirect_code.get(), 302);
        assert!(!d.https_only);
        assert!(d.rewrites.is_empty());
    }

    #[test]
    fn params_are_kept_exactly() {
        let p = params_from_query(&format!(
            "{BASE}&nodeInfo=x&users=a:secret&unknown=1&empty="
        ));
        let s = parse_service(&p, &ParseContext::default()).unwrap();
        assert_eq!(s.params, p);
        let replay = parse_service(&s.params, &ParseContext::default()).unwrap();
        assert_eq!(replay.users, s.users);
    }

    #[test]
    fn acl_name_and_replicas() {
        let s = ok(&format!("{BASE}&aclName=01-first&replicas=3"));
        assert_eq!(s.acl_name, "01-first");
        assert_eq!(s.replicas, Some(3));
        assert_eq!(ok(&format!("{BASE}&replicas=0")).replicas, Some(0));
        assert_eq!(ok(&format!("{BASE}&replicas=")).replicas, None);
        let (param, value, _) = invalid(&format!("{BASE}&replicas=-1"));
        assert_eq!((param.as_str(), value.as_str()), ("replicas", "-1"));
        assert_eq!(invalid(&format!("{BASE}&replicas=two")).0, "replicas");
    }

    #[test]
    fn service_level_flags_and_texts() {
        let s = ok(&format!(
            "{BASE}&distribute=true&isDefaultBackend=1&redirectWhenHttpProto=T\
             &redirectUnlessHttpsProto=True&proxyInstanceName=+edge+&serviceCert=A\\nB"
        ));
        assert!(s.distribute && s.is_default_backend);
        assert!(s.redirect_when_http_proto && s.redirect_unless_https_proto);
        assert_eq!(s.proxy_instance_name.as_deref(), Some("edge"));
        assert_eq!(s.service_cert.as_deref(), Some("A\nB"));
    }

    #[test]
    fn go_bool_set_is_accepted_and_nothing_else() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
            assert!(ok(&format!("{BASE}&sslVerifyNone={t}")).destinations[0].ssl_verify_none);
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
            assert!(!ok(&format!("{BASE}&distribute={f}")).distribute);
        }
        for bad in ["yes", "tRUE", "2", "on"] {
            assert_eq!(parse_go_bool(bad), None, "{bad}");
        }
        let e = err(&format!("{BASE}&httpsOnly=yes"));
        assert_eq!(
            e.to_string(),
            "invalid value \"yes\" for parameter httpsOnly: not a boolean (use true/false, 1/0, t/f, TRUE/FALSE, True/False)"
        );
        assert_eq!(e.param(), Some("httpsOnly"));
        assert_eq!(invalid(&format!("{BASE}&distribute=on")).0, "distribute");
    }

    // --- mandatory parameters ----------------------------------------------------------------

    #[test]
    fn missing_service_name() {
        let e = err("servicePath=/demo&port=8080");
        assert_eq!(e, ParamError::MissingServiceName);
        assert_eq!(e.to_string(), "serviceName parameter is mandatory.");
        assert!(!e.is_conflict());
        assert_eq!(
            err("serviceName=&servicePath=/demo&port=8080"),
            ParamError::MissingServiceName
        );
    }

    #[test]
    fn service_name_must_be_a_dns_friendly_name() {
        let (param, value, reason) = invalid("serviceName=go%20demo&servicePath=/&port=80");
        assert_eq!((param.as_str(), value.as_str()), ("serviceName", "go demo"));
        assert!(reason.contains("letters"));
        assert_eq!(
            invalid("serviceName=a/b&servicePath=/&port=80").0,
            "serviceName"
        );
        let long = "a".repeat(256);
        assert!(
            invalid(&format!("serviceName={long}&servicePath=/&port=80"))
                .2
                .contains("255")
        );
        let max = "a".repeat(255);
        assert_eq!(
            ok(&format!("serviceName={max}&servicePath=/&port=80")).name,
            max
        );
        assert_eq!(
            ok("serviceName=my_stack.web-1&servicePath=/&port=80").name,
            "my_stack.web-1"
        );
    }

    #[test]
    fn http_without_path_or_domain_is_a_conflict() {
        let e = err("serviceName=go-demo&port=8080");
        assert_eq!(e, ParamError::HttpWithoutPathOrDomain);
        assert!(e.is_conflict());
        assert_eq!(
            e.to_string(),
            "When using reqMode http, servicePath or serviceDomain are mandatory"
        );
        assert_eq!(
            err("serviceName=go-demo"),
            ParamError::HttpWithoutPathOrDomain
        );
    }

    #[test]
    fn non_http_needs_src_port_and_port() {
        let e = err("serviceName=db&reqMode=tcp&port=5432");
        assert_eq!(e, ParamError::NonHttpWithoutPorts);
        assert_eq!(
            e.to_string(),
            "When NOT using reqMode http (e.g. tcp), srcPort and port parameters are mandatory."
        );
        assert_eq!(
            err("serviceName=db&reqMode=sni&srcPort=443"),
            ParamError::NonHttpWithoutPorts
        );
        assert_eq!(
            err("serviceName=db&reqMode=tcp&srcPort=5432&httpsPort=1"),
            ParamError::NonHttpWithoutPorts,
            "the httpsPort default srcPort must not satisfy the check"
        );
        let s = ok("serviceName=db&reqMode=TCP&srcPort=5432&port=5432&clitcpka=true&checkTcp=1&timeoutClient=7");
        let d = &s.destinations[0];
        assert_eq!(d.req_mode, ReqMode::Tcp);
        assert_eq!((d.src_port, d.port), (Some(5432), Some(5432)));
        assert!(d.clitcpka && d.check_tcp);
        assert_eq!(d.timeout_client, Some(7));
        assert!(d.paths.is_empty(), "no default path outside http");
    }

    #[test]
    fn missing_port() {
        let e = err("serviceName=go-demo&servicePath=/demo");
        assert_eq!(e, ParamError::MissingPort);
        assert_eq!(
            e.to_string(),
            "When MODE is set to \"service\" or \"swarm\", the port query is mandatory"
        );
        let s = ok("serviceName=go-demo&servicePath=/demo&httpsPort=8443");
        let d = &s.destinations[0];
        assert_eq!(d.port, None);
        assert_eq!(d.https_port, Some(8443));
    }

    #[test]
    fn every_destination_is_validated() {
        assert_eq!(
            err("serviceName=x&servicePath.1=/a&port.1=1&servicePath.2=/b"),
            ParamError::MissingPort
        );
        assert_eq!(
            err("serviceName=x&servicePath.1=/a&port.1=1&port.2=2"),
            ParamError::HttpWithoutPathOrDomain
        );
        assert_eq!(
            err("serviceName=x&servicePath.1=/a&port.1=1&port.2=2&reqMode.2=tcp"),
            ParamError::NonHttpWithoutPorts
        );
    }

    // --- typed values --------------------------------------------------------------------------

    #[test]
    fn ports_are_checked_with_the_indexed_name() {
        let e = err("serviceName=x&servicePath.1=/a&port.1=abc");
        assert_eq!(
            e.to_string(),
            "invalid value \"abc\" for parameter port.1: not a port number (1-65535)"
        );
        assert_eq!(e.param(), Some("port.1"));
        assert_eq!(invalid(&format!("{BASE}&srcPort=0")).0, "srcPort");
        assert_eq!(invalid("serviceName=x&servicePath=/&port=65536").1, "65536");
        assert_eq!(invalid("serviceName=x&servicePath=/&port=%2B80").1, "+80");
        assert_eq!(invalid(&format!("{BASE}&httpsPort=-1")).0, "httpsPort");
        assert_eq!(
            invalid(&format!("{BASE}&httpsPort=1&srcHttpsPort=x")).0,
            "srcHttpsPort"
        );
        assert_eq!(
            ok("serviceName=x&servicePath=/&port=65535").destinations[0].port,
            Some(65535)
        );
    }

    #[test]
    fn fallback_value_errors_name_the_unindexed_parameter() {
        let (param, value, _) = invalid("serviceName=x&servicePath.1=/a&port.1=1&timeoutServer=1s");
        assert_eq!((param.as_str(), value.as_str()), ("timeoutServer", "1s"));
    }

    #[test]
    fn timeouts_are_whole_seconds() {
        let s = ok(&format!("{BASE}&timeoutServer=60&timeoutTunnel=0"));
        assert_eq!(s.destinations[0].timeout_server, Some(60));
        assert_eq!(s.destinations[0].timeout_tunnel, Some(0));
        assert_eq!(s.destinations[0].timeout_client, None);
        for bad in ["10s", "-1", "1.5", "abc"] {
            let (param, value, reason) = invalid(&format!("{BASE}&timeoutTunnel={bad}"));
            assert_eq!((param.as_str(), value.as_str()), ("timeoutTunnel", bad));
            assert!(reason.contains("seconds"));
        }
    }

    #[test]
    fn https_redirect_code() {
        assert_eq!(
            ok(&format!("{BASE}&httpsRedirectCode=301")).destinations[0]
                .https_redirect_code
                .get(),
            301
        );
        assert_eq!(
            ok(&format!("{BASE}&httpsRedirectCode=308")).destinations[0]
                .https_redirect_code
                .get(),
            308
        );
        for bad in ["200", "abc", "3011"] {
            let (param, _, reason) = invalid(&format!("{BASE}&httpsRedirectCode={bad}"));
            assert_eq!(param, "httpsRedirectCode");
            assert!(reason.contains("301, 302, 303, 307 or 308"));
        }
    }

    #[test]
    fn destination_flags_methods_and_hosts() {
        let s = ok(&format!(
            "{BASE}&sslVerifyNone=true&denyHttp=true&verifyClientSsl=true&ignoreAuthorization=true\
             &allowedMethods=GET,+POST,&deniedMethods=DELETE&outboundHostname=backend.example.com\
             &serviceGroup=grp&balanceGroup=LeastConn"
        ));
        let d = &s.destinations[0];
        assert!(d.ssl_verify_none && d.deny_http && d.verify_client_ssl && d.ignore_authorization);
        assert_eq!(d.allowed_methods, ["GET", "POST"]);
        assert_eq!(d.denied_methods, ["DELETE"]);
        assert_eq!(d.outbound_hostname.as_deref(), Some("backend.example.com"));
        assert_eq!(d.service_group.as_deref(), Some("grp"));
        assert_eq!(d.balance_group, Some(Balance::LeastConn));
        assert_eq!(
            ok(&format!("{BASE}&balanceGroup=source")).destinations[0].balance_group,
            Some(Balance::Source)
        );
        assert_eq!(
            ok(&format!("{BASE}&balanceGroup=roundrobin")).destinations[0].balance_group,
            Some(Balance::RoundRobin)
        );
        assert_eq!(
            invalid(&format!("{BASE}&balanceGroup=uri")).0,
            "balanceGroup"
        );
        assert_eq!(
            invalid(&format!("{BASE}&allowedMethods=GET,BAD%20M")).1,
            "BAD M"
        );
        assert_eq!(
            invalid(&format!("{BASE}&outboundHostname=a/b")).0,
            "outboundHostname"
        );
        assert_eq!(
            ok(&format!("{BASE}&outboundHostname=10.0.0.1")).destinations[0]
                .outbound_hostname
                .as_deref(),
            Some("10.0.0.1")
        );
    }

    #[test]
    fn req_mode_is_case_insensitive_and_closed() {
        assert_eq!(
            ok(&format!("{BASE}&reqMode=HTTP")).destinations[0].req_mode,
            ReqMode::Http
        );
        let (param, value, reason) = invalid(&format!("{BASE}&reqMode=udp"));
        assert_eq!((param.as_str(), value.as_str()), ("reqMode", "udp"));
        assert!(reason.contains("http, tcp or sni"));
    }

    // --- indexing ----------------------------------------------------------------------------

    #[test]
    fn indexed_destinations_fall_back_to_unindexed_values() {
        let s = ok(
            "serviceName=x&outboundHostname=h&httpsOnly=true&servicePath=/common\
                    &port.1=81&servicePath.1=/one&port.2=82&outboundHostname.2=other&port=99",
        );
        assert_eq!(
            s.destinations.len(),
            2,
            "the un-indexed destination is not created"
        );
        let (d1, d2) = (&s.destinations[0], &s.destinations[1]);
        assert_eq!((d1.index, d2.index), (1, 2));
        assert_eq!(path_texts(d1), ["/one"]);
        assert_eq!(path_texts(d2), ["/common"]);
        assert_eq!((d1.port, d2.port), (Some(81), Some(82)));
        assert_eq!(d1.outbound_hostname.as_deref(), Some("h"));
        assert_eq!(d2.outbound_hostname.as_deref(), Some("other"));
        assert!(d1.https_only && d2.https_only);
    }

    #[test]
    fn indexes_are_created_by_any_of_the_four_parameters() {
        let s = ok("serviceName=x&port=80&serviceDomain=d.com&servicePath.1=/a&serviceDomain.2=b.com&httpsPort.3=443&port.4=84");
        let idx: Vec<u8> = s.destinations.iter().map(|d| d.index).collect();
        assert_eq!(idx, [1, 2, 3, 4]);
        assert_eq!(s.destinations[1].port, Some(80));
        assert_eq!(path_texts(&s.destinations[1]), ["/"]);
        assert_eq!(s.destinations[2].src_port, Some(80));
        assert!(s.destinations[3].domains[0].matches("d.com"));
        assert!(
            s.destinations[0].domains[0].matches("d.com"),
            "the domain falls back too"
        );
    }

    #[test]
    fn indexes_must_be_contiguous() {
        let s = ok("serviceName=x&servicePath.1=/a&port.1=1&servicePath.3=/c&port.3=3");
        assert_eq!(s.destinations.len(), 1);
        let s = ok("serviceName=x&servicePath=/u&port=9&servicePath.2=/b&port.2=2");
        assert_eq!(
            s.destinations.len(),
            1,
            "no index 1: the un-indexed destination is used"
        );
        assert_eq!(s.destinations[0].index, 0);
        let s = ok("serviceName=x&servicePath=/u&port=9&pathType.1=path");
        assert_eq!(
            s.destinations[0].index, 0,
            "pathType.1 alone does not create index 1"
        );
        let s = ok("serviceName=x&servicePath=/u&port=9&servicePath.01=/z&port.0=3");
        assert_eq!(s.destinations[0].index, 0);
    }

    #[test]
    fn up_to_99_indexes() {
        let mut query = String::from("serviceName=x&servicePath=/p");
        for i in 1..=100 {
            query.push_str(&format!("&port.{i}={}", 1000 + i));
        }
        let s = ok(&query);
        assert_eq!(s.destinations.len(), 99);
        assert_eq!(s.destinations[98].index, 99);
        assert_eq!(s.destinations[98].port, Some(1099));
    }

    // --- paths -------------------------------------------------------------------------------

    #[test]
    fn path_types_compile_to_patterns() {
        let get = |pt: &str| {
            ok(&format!("{BASE}&pathType={pt}&servicePathExclude=/demo/x")).destinations[0].clone()
        };
        let d = get("path_beg");
        assert!(matches!(&d.paths[..], [PathPattern::Prefix(_)]));
        assert!(matches!(&d.path_excludes[..], [PathPattern::Prefix(p)] if p == "/demo/x"));
        assert_eq!(get("path").path_type, PathType::Exact);
        assert!(matches!(&get("path").paths[..], [PathPattern::Exact(_)]));
        assert!(matches!(
            &get("path_end").paths[..],
            [PathPattern::Suffix(_)]
        ));
        assert!(matches!(
            &get("path_sub").paths[..],
            [PathPattern::Substring(_)]
        ));
        assert!(matches!(&get("path_dir").paths[..], [PathPattern::Dir(_)]));
        assert!(matches!(
            &get("url_beg").paths[..],
            [PathPattern::UrlPrefix(_)]
        ));
        let reg = get("path_reg");
        assert!(matches!(&reg.paths[..], [PathPattern::Regex(_)]));
        assert!(reg.paths[0].matches("/x/demo", "/x/demo"));
        assert!(
            !reg.paths[0].matches("/DEMO", "/DEMO"),
            "path_reg is case-sensitive"
        );
        assert_eq!(get("PATH_BEG").path_type, PathType::Beg);
    }

    #[test]
    fn path_lists_are_split_and_trimmed() {
        let s = ok("serviceName=x&port=1&servicePath=/a,+/b+,,/c");
        assert_eq!(path_texts(&s.destinations[0]), ["/a", "/b", "/c"]);
        let ctx = ParseContext {
            separator: ";".into(),
            ..ParseContext::default()
        };
        let s = parse_service(
            &params_from_query("serviceName=x&port=1&servicePath=/a,b;/c"),
            &ctx,
        )
        .unwrap();
        assert_eq!(path_texts(&s.destinations[0]), ["/a,b", "/c"]);
    }

    #[test]
    fn unsupported_path_types_are_rejected() {
        for bad in [
            "hdr(host)",
            "path_beg%20-i",
            "path_reg%20-m%20beg",
            "req_ssl_sni",
        ] {
            let (param, _, reason) = invalid(&format!("{BASE}&pathType={bad}"));
            assert_eq!(param, "pathType");
            assert!(
                reason.contains("pathType") || reason.contains("reqMode=sni"),
                "{bad}: {reason}"
            );
        }
        assert!(invalid(&format!("{BASE}&pathType=foo"))
            .2
            .starts_with("unsupported pathType"));
        let (_, value, reason) =
            invalid("serviceName=x&port=1&pathType=path_reg&servicePath=/a(%3F=b)");
        assert_eq!(value, "/a(?=b)");
        assert!(reason.contains("look-around"), "{reason}");
    }

    #[test]
    fn sni_destinations() {
        let base = "serviceName=tls&reqMode=sni&srcPort=443&port=8443";
        let d = ok(&format!("{base}&servicePath=Api.Example.COM")).destinations[0].clone();
        assert_eq!(d.path_type, PathType::Sni(SniMatch::Exact));
        assert!(
            matches!(&d.paths[..], [PathPattern::Sni(SniPattern::Exact(p))] if p == "api.example.com")
        );
        let methods = [
            ("str", SniMatch::Exact),
            ("beg", SniMatch::Prefix),
            ("end", SniMatch::Suffix),
            ("sub", SniMatch::Substring),
            ("reg", SniMatch::Regex),
            ("dom", SniMatch::Domain),
        ];
        for (m, want) in methods {
            let d = ok(&format!(
                "{base}&servicePath=Example&pathType=req_ssl_sni+-i+-m+{m}"
            ))
            .destinations[0]
                .clone();
            assert_eq!(d.path_type, PathType::Sni(want), "{m}");
            let PathPattern::Sni(p) = &d.paths[0] else {
                panic!("not sni")
            };
            assert!(p.matches("example"), "{m}");
        }
        let d = ok(&format!(
            "{base}&servicePath=%5Ea%5Cd&pathType=req_ssl_sni+-m+reg"
        ))
        .destinations[0]
            .clone();
        let PathPattern::Sni(p) = &d.paths[0] else {
            panic!("not sni")
        };
        assert!(
            p.matches("a1") && p.matches("A1") && !p.matches("ab"),
            "regex keeps \\d and is case-insensitive"
        );
        assert_eq!(
            ok(&format!("{base}&pathType=req.ssl_sni+-m+beg+-i")).destinations[0].path_type,
            PathType::Sni(SniMatch::Prefix)
        );
        for bad in [
            "path_beg",
            "req_ssl_sni+-m+foo",
            "req_ssl_sni+-m",
            "req_ssl_sni+-m+beg+-m+end",
            "req_ssl_sni+-x",
        ] {
            assert_eq!(
                invalid(&format!("{base}&pathType={bad}")).0,
                "pathType",
                "{bad}"
            );
        }
    }

    // --- domains -----------------------------------------------------------------------------

    #[test]
    fn default_domain_algo_matches_the_whole_host() {
        let s = ok("serviceName=x&port=80&serviceDomain=Example.com,+www.example.com");
        let d = &s.destinations[0];
        assert_eq!(d.domains.len(), 2);
        assert!(d.domains[0].matches("example.com"));
        assert!(!d.domains[0].matches("example.com.evil.net"));
        assert!(!d.domains[0].matches("example.community"));
        assert!(
            matches!(&d.paths[..], [PathPattern::Prefix(p)] if p == "/"),
            "domain only → path /"
        );
    }

    #[test]
    fn wildcard_applies_to_its_own_pattern_only() {
        let s = ok("serviceName=x&port=80&serviceDomain=*domain.com,exact.org,*.Other.net");
        let d = &s.destinations[0];
        assert!(matches!(&d.domains[0], DomainPattern::Suffix(s) if s == "domain.com"));
        assert!(d.domains[0].matches("my-domain.com"));
        assert!(matches!(&d.domains[1], DomainPattern::Exact(s) if s == "exact.org"));
        assert!(!d.domains[1].matches("sub.exact.org"));
        assert!(matches!(&d.domains[2], DomainPattern::Suffix(s) if s == ".other.net"));
        assert_eq!(d.domains[2].text(), "*.other.net");
    }

    #[test]
    fn domain_algorithms() {
        let dom = |algo: &str, domain: &str| {
            ok(&format!(
                "serviceName=x&port=80&serviceDomain={domain}&serviceDomainAlgo={algo}"
            ))
            .destinations[0]
                .domains[0]
                .clone()
        };
        assert!(matches!(dom("hdr(host)", "a.com"), DomainPattern::Exact(_)));
        assert!(matches!(
            dom("hdr_beg(host)", "a.com"),
            DomainPattern::Exact(_)
        ));
        assert!(matches!(
            dom("hdr_end(host)", "a.com"),
            DomainPattern::Suffix(_)
        ));
        assert!(matches!(
            dom("HDR_DOM(host)", "a.com"),
            DomainPattern::Domain(_)
        ));
        assert!(matches!(
            dom("req.ssl_sni", "a.com"),
            DomainPattern::Exact(_)
        ));
        assert!(matches!(
            dom("req_ssl_sni", "a.com"),
            DomainPattern::Exact(_)
        ));
        let reg = dom("hdr_reg(host)", "%5Eapi%5C.%5Cd%2B%5C.example%5C.com%24");
        assert!(matches!(reg, DomainPattern::Regex(_)));
        assert!(reg.matches("api.1.example.com") && reg.matches("API.2.EXAMPLE.COM"));
        assert!(
            !reg.matches("api.x.example.com"),
            "\\d is not lower-cased into \\D"
        );
        let (param, value, reason) =
            invalid("serviceName=x&port=80&serviceDomain=a.com&serviceDomainAlgo=hdr_sub(host)");
        assert_eq!(
            (param.as_str(), value.as_str()),
            ("serviceDomainAlgo", "hdr_sub(host)")
        );
        assert!(reason.contains("hdr_dom(host)"));
        assert_eq!(
            invalid("serviceName=x&port=80&serviceDomain=(&serviceDomainAlgo=hdr_reg(host)").0,
            "serviceDomain"
        );
    }

    #[test]
    fn domain_match_all_and_context_default() {
        let s = ok("serviceName=x&port=80&serviceDomain=a.com&serviceDomainMatchAll=true&serviceDomainAlgo=hdr(host)");
        assert!(matches!(
            s.destinations[0].domains[0],
            DomainPattern::Domain(_)
        ));
        assert!(s.destinations[0].domains[0].matches("www.a.com"));
        let ctx = ParseContext {
            default_domain_algo: DomainAlgo::End,
            ..ParseContext::default()
        };
        let s = parse_service(
            &params_from_query("serviceName=x&port=80&serviceDomain=a.com"),
            &ctx,
        )
        .unwrap();
        assert!(matches!(
            s.destinations[0].domains[0],
            DomainPattern::Suffix(_)
        ));
        assert_eq!(
            invalid("serviceName=x&port=80&serviceDomain=a.com&serviceDomainMatchAll=maybe").0,
            "serviceDomainMatchAll"
        );
    }

    #[test]
    fn domains_that_could_never_match_are_rejected() {
        let (param, value, reason) =
            invalid("serviceName=x&port=80&serviceDomain=ok.com,example.com:8080");
        assert_eq!(
            (param.as_str(), value.as_str()),
            ("serviceDomain", "example.com:8080")
        );
        assert!(reason.contains("port"));
        assert!(invalid("serviceName=x&port=80&serviceDomain=a.*.com")
            .2
            .contains("wildcard"));
        assert_eq!(
            invalid("serviceName=x&port=80&serviceDomain=a.com/x").1,
            "a.com/x"
        );
        let s = ok("serviceName=x&port=80&serviceDomain=Example.COM.");
        assert!(s.destinations[0].domains[0].matches("example.com"));
    }

    #[test]
    fn redirect_from_domain_requires_service_domain() {
        let s =
            ok("serviceName=x&port=80&serviceDomain=new.com&redirectFromDomain=Old.com,*old.net");
        let d = &s.destinations[0];
        assert!(d.redirect_from_domains[0].matches("old.com"));
        assert!(d.redirect_from_domains[1].matches("x.old.net"));
        let (param, value, reason) = invalid(&format!("{BASE}&redirectFromDomain=old.com"));
        assert_eq!(
            (param.as_str(), value.as_str()),
            ("redirectFromDomain", "old.com")
        );
        assert!(reason.contains("serviceDomain"));
        assert_eq!(
            invalid("serviceName=x&servicePath.1=/a&port.1=1&redirectFromDomain.1=o.com").0,
            "redirectFromDomain.1"
        );
    }

    // --- https -------------------------------------------------------------------------------

    #[test]
    fn https_only_from_context_applies_to_every_destination() {
        let ctx = ParseContext {
            https_only: true,
            ..ParseContext::default()
        };
        let p = params_from_query(
            "serviceName=x&servicePath.1=/a&port.1=1&servicePath.2=/b&port.2=2&httpsOnly.2=false",
        );
        let s = parse_service(&p, &ctx).unwrap();
        assert!(s.destinations.iter().all(|d| d.https_only));
        let s = ok(
            "serviceName=x&servicePath.1=/a&port.1=1&servicePath.2=/b&port.2=2&httpsOnly.2=true",
        );
        assert!(!s.destinations[0].https_only && s.destinations[1].https_only);
    }

    #[test]
    fn https_port_defaults_source_ports() {
        let d = ok(&format!("{BASE}&httpsPort=8443")).destinations[0].clone();
        assert_eq!(
            (d.src_port, d.src_https_port, d.https_port),
            (Some(80), Some(443), Some(8443))
        );
        let d = ok(&format!(
            "{BASE}&httpsPort=8443&srcPort=8080&srcHttpsPort=8443"
        ))
        .destinations[0]
            .clone();
        assert_eq!((d.src_port, d.src_https_port), (Some(8080), Some(8443)));
        let d = ok(BASE).destinations[0].clone();
        assert_eq!((d.src_port, d.src_https_port), (None, None));
    }

    // --- rewrites ----------------------------------------------------------------------------

    #[test]
    fn rewrite_pairs_translate_backreferences() {
        let s = ok(&format!(
            "{BASE}&reqPathSearchReplace=%5E/demo/(.*)$,/api/%5C1/x:/a/,/b/,gi"
        ));
        let r = &s.destinations[0].rewrites;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].replace, "/api/${1}/x");
        assert_eq!(r[0].source, "^/demo/(.*)$,/api/\\1/x");
        assert!(!r[0].global);
        assert_eq!(r[0].apply("/demo/hello"), "/api/hello/x");
        assert!(r[1].global);
        assert_eq!(r[1].apply("/A/x/a/"), "/b/x/b/");
    }

    #[test]
    fn replacement_translation() {
        assert_eq!(translate_replacement(r"\1\9\0").unwrap(), "${1}${9}${0}");
        assert_eq!(translate_replacement(r"\1a").unwrap(), "${1}a");
        assert_eq!(translate_replacement("$1 cost $").unwrap(), "$$1 cost $$");
        assert_eq!(translate_replacement(r"a\\b\q").unwrap(), r"a\b\q");
        assert_eq!(translate_replacement(r"\x41\x24").unwrap(), "A$$");
        assert!(translate_replacement(r"\xZZ").is_err());
        assert!(translate_replacement(r"\x4").is_err());
        assert!(translate_replacement("end\\").is_err());
        let r = parse_rewrite_pair(r"(\w+)-(\w+),\2-\1").unwrap();
        assert_eq!(r.apply("/ab-cd"), "/cd-ab");
        let r = parse_rewrite_pair("/x,$").unwrap();
        assert_eq!(r.apply("/x/y"), "$/y", "a literal dollar");
    }

    #[test]
    fn rewrite_errors() {
        let (param, value, reason) = invalid(&format!("{BASE}&reqPathSearchReplace=/a,/b,x"));
        assert_eq!(
            (param.as_str(), value.as_str()),
            ("reqPathSearchReplace", "/a,/b,x")
        );
        assert!(reason.contains("flag 'x'"));
        assert!(invalid(&format!("{BASE}&reqPathSearchReplace=/a"))
            .2
            .contains("search,replace"));
        assert!(invalid(&format!("{BASE}&reqPathSearchReplace=/a,/b,g,i"))
            .2
            .contains("search,replace"));
        assert!(invalid(&format!("{BASE}&reqPathSearchReplace=,/b"))
            .2
            .contains("empty"));
        let reason = invalid(&format!("{BASE}&reqPathSearchReplace=a(%3F!b),c")).2;
        assert!(reason.contains("look-around"), "{reason}");
        let reason = invalid(&format!("{BASE}&reqPathSearchReplace=(a)%5C1,c")).2;
        assert!(reason.contains("backreferences"), "{reason}");
        assert!(!reason.contains('\n'));
        assert_eq!(
            invalid("serviceName=x&servicePath.1=/a&port.1=1&reqPathSearchReplace.1=/a,/b,z").0,
            "reqPathSearchReplace.1"
        );
    }

    #[test]
    fn deprecated_search_replace_comes_first_in_every_destination() {
        let s = ok("serviceName=x&servicePath.1=/something&port.1=1&servicePath.2=/b&port.2=2\
                    &reqPathSearch=/something/&reqPathReplace=/demo/&reqPathSearchReplace.1=/demo/,/v2/");
        let d1 = &s.destinations[0];
        assert_eq!(d1.rewrites.len(), 2);
        assert_eq!(d1.rewrites[0].source, "/something/,/demo/");
        let path = d1
            .rewrites
            .iter()
            .fold("/something/x".to_string(), |p, r| r.apply(&p));
        assert_eq!(path, "/v2/x");
        assert_eq!(s.destinations[1].rewrites.len(), 1);
        let s = ok(&format!("{BASE}&reqPathSearch=/something"));
        assert_eq!(
            s.destinations[0].rewrites[0].apply("/something/else"),
            "/else"
        );
        assert!(ok(&format!("{BASE}&reqPathReplace=/x")).destinations[0]
            .rewrites
            .is_empty());
        assert_eq!(
            invalid(&format!("{BASE}&reqPathSearch=(")).0,
            "reqPathSearch"
        );
        assert_eq!(
            invalid(&format!("{BASE}&reqPathSearch=a&reqPathReplace=b%5C")).0,
            "reqPathReplace"
        );
    }

    // --- headers -----------------------------------------------------------------------------

    #[test]
    fn header_operations_in_order() {
        let s = ok(&format!(
            "{BASE}&delReqHeader=X-Drop&setReqHeader=X-Set+one&addReqHeader=X-Add+a,X-Add2+b\
             &addResHeader=X-R+1&setResHeader=Strict-Transport-Security+%22max-age=31536000;+includeSubDomains%22\
             &delResHeader=Server"
        ));
        let text = |t: &str| HeaderValue(vec![ValuePart::Text(t.into())]);
        assert_eq!(
            s.request_headers,
            [
                HeaderOp::Add {
                    name: "x-add".into(),
                    value: text("a"),
                    when: HeaderCondition::Always
                },
                HeaderOp::Add {
                    name: "x-add2".into(),
                    value: text("b"),
                    when: HeaderCondition::Always
                },
                HeaderOp::Set {
                    name: "x-set".into(),
                    value: text("one"),
                    when: HeaderCondition::Always
                },
                HeaderOp::Del {
                    name: "x-drop".into()
                },
            ]
        );
        assert_eq!(
            s.response_headers,
            [
                HeaderOp::Add {
                    name: "x-r".into(),
                    value: text("1"),
                    when: HeaderCondition::Always
                },
                HeaderOp::Set {
                    name: "strict-transport-security".into(),
                    value: text("max-age=31536000; includeSubDomains"),
                    when: HeaderCondition::Always
                },
                HeaderOp::Del {
                    name: "server".into()
                },
            ]
        );
    }

    #[test]
    fn deprecated_header_aliases() {
        let s = ok(&format!("{BASE}&addHeader=X-Old+1&setHeader=X-OldSet+2"));
        assert_eq!(s.request_headers.len(), 2);
        let s = ok(&format!("{BASE}&addHeader=X-Old+1&addReqHeader=X-New+2"));
        assert!(matches!(&s.request_headers[..], [HeaderOp::Add { name, .. }] if name == "x-new"));
    }

    #[test]
    fn header_items_quoting_and_separators() {
        let (name, value, when) = parse_header_item(r#"X-A "a \"quoted\" \\ value""#).unwrap();
        assert_eq!(name, "x-a");
        assert_eq!(value.as_literal(), Some(r#"a "quoted" \ value"#));
        assert_eq!(when, HeaderCondition::Always);
        assert_eq!(
            parse_header_item("X-A 'single \" q'")
                .unwrap()
                .1
                .as_literal(),
            Some("single \" q")
        );
        assert_eq!(
            parse_header_item("X-A \"\"").unwrap().1.as_literal(),
            Some("")
        );
        assert_eq!(
            parse_header_item("X-A  two words ").unwrap().1.as_literal(),
            Some("two words")
        );
        assert!(parse_header_item("X-A \"open")
            .unwrap_err()
            .contains("unterminated"));
        assert!(parse_header_item("X-A \"a\"b")
            .unwrap_err()
            .contains("closing quote"));
        assert!(parse_header_item("X-A").unwrap_err().contains("missing"));
        assert!(parse_header_item("X-A if { ssl_fc }")
            .unwrap_err()
            .contains("missing"));
        assert!(parse_header_item("X-A: v")
            .unwrap_err()
            .contains("header name"));

        let items =
            split_outside_quotes(r#"Cache-Control "no-cache, no-store",X-B it's,X-C c"#, ",");
        assert_eq!(
            items,
            [r#"Cache-Control "no-cache, no-store""#, "X-B it's", "X-C c"]
        );
        let s = ok(&format!(
            "{BASE}&addResHeader=Cache-Control+%22no-cache,+no-store%22,X-B+b"
        ));
        assert_eq!(s.response_headers.len(), 2);
        let ctx = ParseContext {
            separator: "|".into(),
            ..ParseContext::default()
        };
        let p = params_from_query(&format!("{BASE}&addReqHeader=X-A+a,b|X-B+c"));
        let s = parse_service(&p, &ctx).unwrap();
        assert_eq!(s.request_headers.len(), 2);
    }

    #[test]
    fn header_placeholders() {
        let (_, value, _) = parse_header_item("X-Forwarded-Port %[dst_port]").unwrap();
        assert_eq!(value.0, [ValuePart::LocalPort]);
        let (_, value, _) = parse_header_item("X-Client ip=%[src];tls=%[ssl_fc];100%%").unwrap();
        assert_eq!(
            value.0,
            [
                ValuePart::Text("ip=".into()),
                ValuePart::ClientIp,
                ValuePart::Text(";tls=".into()),
                ValuePart::Tls,
                ValuePart::Text(";100%".into()),
            ]
        );
        assert_eq!(value.render("10.0.0.1", 80, true), "ip=10.0.0.1;tls=1;100%");
        assert_eq!(
            parse_header_item("X-P 5%").unwrap().1.as_literal(),
            Some("5%")
        );
        let quoted = parse_header_item("X-Q \"port %[dst_port]\"").unwrap().1;
        assert_eq!(quoted.render("", 443, false), "port 443");

        let (param, value, reason) = invalid(&format!(
            "{BASE}&addReqHeader=X-Host+%25%5Benv(HOSTNAME)%5D"
        ));
        assert_eq!(
            (param.as_str(), value.as_str()),
            ("addReqHeader", "X-Host %[env(HOSTNAME)]")
        );
        assert!(
            reason.contains("%[src], %[dst_port] and %[ssl_fc]"),
            "{reason}"
        );
        assert!(parse_header_item("X-A %[req.hdr(host)]")
            .unwrap_err()
            .contains("unsupported placeholder"));
        assert!(parse_header_item("X-A %[src")
            .unwrap_err()
            .contains("unterminated"));
    }

    #[test]
    fn header_conditions() {
        let cond = |item: &str| parse_header_item(item).map(|(_, _, c)| c);
        assert_eq!(cond("X-A 1 if { ssl_fc }"), Ok(HeaderCondition::IfTls));
        assert_eq!(
            cond("X-A 1 unless { ssl_fc }"),
            Ok(HeaderCondition::UnlessTls)
        );
        assert_eq!(cond("X-A 1 if !{ ssl_fc }"), Ok(HeaderCondition::UnlessTls));
        assert_eq!(cond("X-A 1 unless !{ ssl_fc }"), Ok(HeaderCondition::IfTls));
        assert_eq!(
            cond("X-A \"a b\" if { ssl_fc }"),
            Ok(HeaderCondition::IfTls)
        );
        assert_eq!(
            parse_header_item("X-A gift if { ssl_fc }")
                .unwrap()
                .1
                .as_literal(),
            Some("gift")
        );
        assert!(cond("X-A 1 if { src 10.0.0.1 }")
            .unwrap_err()
            .contains("unsupported condition"));
        assert!(cond("X-A \"1\" when { ssl_fc }")
            .unwrap_err()
            .contains("unsupported condition"));
        let (param, _, _) = invalid(&format!("{BASE}&setResHeader=X-A+1+if+%7B+path_beg+/a+%7D"));
        assert_eq!(param, "setResHeader");
    }

    #[test]
    fn header_values_and_names_are_validated() {
        assert_eq!(
            invalid(&format!("{BASE}&delReqHeader=Bad%20Name")).0,
            "delReqHeader"
        );
        assert!(parse_header_item("X-A a\u{1}b")
            .unwrap_err()
            .contains("header value"));
        assert_eq!(
            invalid(&format!("{BASE}&addResHeader=X%28%29+v")).1,
            "X() v"
        );
    }

    #[test]
    fn service_headers_and_user_agents() {
        let s = ok(&format!(
            "{BASE}&serviceHeader=X-Version:+2,X-Url:http://a:1&userAgent=Mobile,+Android"
        ));
        let d = &s.destinations[0];
        assert_eq!(
            d.service_headers,
            [
                ("x-version".to_string(), "2".to_string()),
                ("x-url".to_string(), "http://a:1".to_string())
            ]
        );
        assert_eq!(d.user_agents, ["mobile", "android"]);
        let (param, value, reason) = invalid(&format!("{BASE}&serviceHeader=X-Version"));
        assert_eq!(
            (param.as_str(), value.as_str()),
            ("serviceHeader", "X-Version")
        );
        assert!(reason.contains("Name:value"));
        assert_eq!(
            invalid(&format!("{BASE}&serviceHeader=Bad%20Name:1")).0,
            "serviceHeader"
        );
    }

    // --- users -------------------------------------------------------------------------------

    #[test]
    fn users_split_on_the_first_colon() {
        let s = ok(&format!(
            "{BASE}&users=+admin+:+p%3Aa:ss+,bob,carol:,%0Adave:x&usersPassEncrypted=true"
        ));
        assert_eq!(
            s.users,
            [
                User {
                    name: "admin".into(),
                    password: Some("p:a:ss".into())
                },
                User {
                    name: "bob".into(),
                    password: None
                },
                User {
                    name: "carol".into(),
                    password: None
                },
                User {
                    name: "dave".into(),
                    password: Some("x".into())
                },
            ]
        );
        assert!(s.users_pass_encrypted);
        assert!(
            !format!("{:?}", s.users).contains("p:a:ss"),
            "passwords are redacted in Debug"
        );
    }

    #[test]
    fn user_errors_redact_the_value() {
        let (param, value, reason) = invalid(&format!("{BASE}&users=:secret"));
        assert_eq!((param.as_str(), value.as_str()), ("users", "<redacted>"));
        assert!(reason.contains("no name"));
        assert!(invalid(&format!("{BASE}&users=,+,")).2.contains("no user"));
        assert!(!err(&format!("{BASE}&users=:topsecret"))
            .to_string()
            .contains("topsecret"));
    }

    #[test]
    fn users_secret_is_a_plain_name() {
        assert_eq!(
            ok(&format!("{BASE}&usersSecret=monitoring"))
                .users_secret
                .as_deref(),
            Some("monitoring")
        );
        assert_eq!(
            ok(&format!("{BASE}&usersSecret=a.b_c-1"))
                .users_secret
                .as_deref(),
            Some("a.b_c-1")
        );
        for bad in ["../etc/passwd", "a/b", "a%5Cb", "a+b"] {
            assert_eq!(
                invalid(&format!("{BASE}&usersSecret={bad}")).0,
                "usersSecret",
                "{bad}"
            );
        }
        assert_eq!(
            invalid(&format!("{BASE}&usersPassEncrypted=encrypted")).0,
            "usersPassEncrypted"
        );
    }

    // --- modes and options -------------------------------------------------------------------

    #[test]
    fn connection_modes() {
        let mode = |m: &str| ok(&format!("{BASE}&connectionMode={m}")).connection_mode;
        assert_eq!(mode("http-keep-alive"), Some(ConnectionMode::KeepAlive));
        assert_eq!(mode("http-server-close"), Some(ConnectionMode::ServerClose));
        assert_eq!(mode("httpclose"), Some(ConnectionMode::Close));
        assert_eq!(mode("forceclose"), Some(ConnectionMode::Close));
        assert_eq!(ok(BASE).connection_mode, None);
        let (param, value, reason) = invalid(&format!("{BASE}&connectionMode=http-tunnel"));
        assert_eq!(
            (param.as_str(), value.as_str()),
            ("connectionMode", "http-tunnel")
        );
        assert!(reason.contains("http-tunnel is not supported"));
        assert!(invalid(&format!("{BASE}&connectionMode=close"))
            .2
            .contains("unsupported connectionMode"));
    }

    #[test]
    fn compression() {
        let c = ok(&format!("{BASE}&compressionAlgo=gzip+raw-deflate,identity+gzip&compressionType=text/html+Text/CSS,application/json")).compression.unwrap();
        assert_eq!(
            c.algos,
            [
                CompressionAlgo::Gzip,
                CompressionAlgo::Deflate,
                CompressionAlgo::Identity
            ]
        );
        assert_eq!(c.types, ["text/html", "text/css", "application/json"]);
        assert_eq!(
            ok(&format!("{BASE}&compressionType=text/html")).compression,
            None
        );
        let c = ok(&format!("{BASE}&compressionAlgo=deflate"))
            .compression
            .unwrap();
        assert!(c.types.is_empty());
        let (param, value, _) = invalid(&format!("{BASE}&compressionAlgo=gzip+br"));
        assert_eq!((param.as_str(), value.as_str()), ("compressionAlgo", "br"));
    }

    #[test]
    fn session_and_discovery_types() {
        assert!(ok(&format!("{BASE}&sessionType=sticky-server")).sticky);
        assert_eq!(
            invalid(&format!("{BASE}&sessionType=cookie")).0,
            "sessionType"
        );
        for ok_type in ["DNS", "dns", "Overlay"] {
            assert!(ok(&format!("{BASE}&discoveryType={ok_type}"))
                .warnings
                .is_empty());
        }
        assert_eq!(
            invalid(&format!("{BASE}&discoveryType=consul")).0,
            "discoveryType"
        );
    }

    #[test]
    fn unsupported_parameters() {
        for p in ["backendExtra", "templateFePath", "templateBePath"] {
            let e = err(&format!("{BASE}&{p}=x"));
            assert!(
                matches!(&e, ParamError::Unsupported { param, .. } if param == p),
                "{e:?}"
            );
            assert!(e
                .to_string()
                .starts_with(&format!("parameter {p} is not supported: ")));
            assert!(!e.is_conflict());
            assert_eq!(e.param(), Some(p));
        }
        assert!(
            ok(&format!("{BASE}&backendExtra=")).warnings.is_empty(),
            "empty = absent"
        );
    }

    #[test]
    fn ignored_parameters() {
        let s = ok(&format!(
            "{BASE}&userDef=x&aclCondition=x&tasks=1.2.3.4&isGlobal=true&useGlobalUsers=true&debug=true\
             &debugFormat=x&servicePort=1&lookupRetry=x&lookupRetryInterval=x&nodeInfo=x&notify=true&whatever=1"
        ));
        assert!(s.warnings.is_empty());
        let s = ok(&format!("{BASE}&checkResolvers=true"));
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("checkResolvers"));
        assert!(ok(&format!("{BASE}&checkResolvers=false"))
            .warnings
            .is_empty());
    }

    #[test]
    fn error_param_accessor() {
        assert_eq!(ParamError::MissingServiceName.param(), Some("serviceName"));
        assert_eq!(ParamError::MissingPort.param(), None);
        assert_eq!(ParamError::NonHttpWithoutPorts.param(), None);
    }

    // --- properties ------------------------------------------------------------------------

    fn param_key() -> impl Strategy<Value = String> {
        let names: Vec<&'static str> = KNOWN_PARAMS.iter().map(|p| p.name).collect();
        prop_oneof![
            (
                prop::sample::select(names.clone()),
                prop::option::of(0u8..=101)
            )
                .prop_map(|(n, i)| match i {
                    Some(i) => format!("{n}.{i}"),
                    None => n.to_string(),
                }),
            (prop::sample::select(names), 1u8..=3).prop_map(|(n, i)| format!("{n}.{i}")),
            "[a-zA-Z.]{0,12}",
        ]
    }

    fn param_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[0-9]{1,6}",
            "(true|false|yes|1|0)",
            "[ -~]{0,24}",
            "[/a-z,:*%\\[\\]{}()\\\\ \"'.!^$?+|-]{0,24}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn query_parsing_never_panics(query in any::<String>()) {
            let params = params_from_query(&query);
            prop_assert!(!params.contains_key(""));
        }

        #[test]
        fn service_parsing_never_panics(
            mut params in prop::collection::btree_map(param_key(), param_value(), 0..16),
            named in any::<bool>(),
            sep in prop_oneof![Just(",".to_string()), Just(";".to_string()), Just(String::new()), Just("::".to_string())],
        ) {
            if named {
                params.insert("serviceName".into(), "svc".into());
            }
            let ctx = ParseContext { separator: sep, ..ParseContext::default() };
            if let Ok(service) = parse_service(&params, &ctx) {
                prop_assert_eq!(&service.params, &params);
                prop_assert!(!service.destinations.is_empty());
                for d in &service.destinations {
                    prop_assert!(d.port.is_some() || d.https_port.is_some());
                }
            }
        }

        #[test]
        fn header_items_never_panic(item in any::<String>()) {
            let _ = parse_header_item(&item);
            let _ = split_outside_quotes(&item, ",");
            let _ = translate_replacement(&item);
        }
    }
}
