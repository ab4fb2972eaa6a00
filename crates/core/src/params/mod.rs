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
//! | `drainTimeout` | service | Whole seconds, 0 to 86400: how long a draining task keeps its WebSockets/tunnels (default 30) |
//! | `distribute`, `isDefaultBackend`, `redirectWhenHttpProto`, `redirectUnlessHttpsProto` | service | Booleans |
//! | `proxyInstanceName` | service | Text |
//! | `replicas` | service | Unsigned integer; absent = global service. `0` is valid (the API then removes the service) |
//! | `reqPathSearch` / `reqPathReplace` | service | Deprecated; one rewrite put first in every destination |
//! | `acmeDomain`, `acmeEmail` | service | DNS names of an ACME certificate and a contact address (Sluice; see [`acme_request`] and `docs/acme.md`) |
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
//! | `maxConn` | destination | Positive integer (Sluice) |
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
//! # Regular expressions
//!
//! Every user-supplied expression (`path_reg`, `hdr_reg(host)`, SNI `-m reg`, rewrites) is a
//! [`UserRegex`]: compiled under [`REGEX_SIZE_LIMIT`] (256 KiB) with a bounded matching cache,
//! and at most [`MAX_REGEXES_PER_SERVICE`] (32) per service, counted over every destination;
//! the error names the parameter whose expressions cross the limit. The route table bounds the
//! total of all services ([`RouteTable::check_regex_budget`]).
//!
//! [`UserRegex`]: crate::service::UserRegex
//! [`REGEX_SIZE_LIMIT`]: crate::service::REGEX_SIZE_LIMIT
//! [`RouteTable::check_regex_budget`]: crate::route::RouteTable::check_regex_budget
//!
//! # Environment-defined services
//!
//! Unlike DFP, `DFP_SERVICE[_N]_*` variables support **every** parameter of the table (users,
//! user agents, headers, groups, indexed `HTTPS_PORT_i`, …), indexed destinations keep their
//! real index (DFP gave them all index 0), lists use `SEPARATOR` like every other source, and
//! the deprecated `REQ_PATH_SEARCH`/`REQ_PATH_REPLACE` are honoured.
//!
//! [`Service`]: crate::service::Service
//! [`Service::warnings`]: crate::service::Service::warnings

mod acme;
mod context;
mod destination;
mod domains;
mod error;
mod headers;
mod known;
mod paths;
mod rewrites;
mod service;
mod sources;
mod users;
mod value;

pub use crate::env::parse_go_bool;
pub use crate::service::Params;
pub use acme::{acme_request, AcmeRequest};
pub use context::ParseContext;
pub use error::ParamError;
pub use known::{
    env_to_param_key, known_param, param_key_to_env, KnownParam, ParamHandling, ParamScope,
    KNOWN_PARAMS, MAX_INDEX,
};
pub(crate) use service::parse_compression_values;
pub use service::{parse_service, MAX_REGEXES_PER_SERVICE};
pub use sources::{
    params_from_labels, params_from_query, services_from_env, ENV_SERVICE_PREFIX, LABEL_PREFIX,
};

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
