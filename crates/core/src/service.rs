//! The service model: one Docker Flow Proxy service as Sluice understands it after parsing.
//!
//! Every value here is already typed and validated: ports are numbers, regexes are compiled,
//! redirect codes are checked. Nothing in this module performs IO. The parser that builds these
//! values from query strings, labels and environment variables lives in [`crate::params`].

use std::collections::BTreeMap;
use std::fmt;

mod user_regex;

pub use user_regex::{UserRegex, REGEX_DFA_SIZE_LIMIT, REGEX_SIZE_LIMIT};

/// The parameters a service was defined with, in canonical query-string form
/// (`servicePath.1` → `/api`). Kept so a service can be persisted and replayed through the
/// same parser, and so `/config?type=json` can show what the user sent.
pub type Params = BTreeMap<String, String>;

/// One service as given to `/reconfigure`, a set of `com.df.*` labels or `DFP_SERVICE_*` variables.
#[derive(Debug, Clone)]
pub struct Service {
    /// `serviceName`: the Swarm service name and the key of the service set.
    pub name: String,
    /// `aclName`: the sort key for rule ordering (defaults to the service name).
    pub acl_name: String,
    /// The parameters as received (canonical query form), passwords included.
    pub params: Params,
    /// `replicas`: `None` for a global service (DFSL sends it for replicated ones).
    pub replicas: Option<u32>,
    /// `distribute`: fan the request out to every proxy replica.
    pub distribute: bool,
    /// `isDefaultBackend`: catch requests no rule matched.
    pub is_default_backend: bool,
    /// `redirectWhenHttpProto`: redirect to https when `X-Forwarded-Proto: http`.
    pub redirect_when_http_proto: bool,
    /// `redirectUnlessHttpsProto`: redirect to https unless `X-Forwarded-Proto: https`.
    pub redirect_unless_https_proto: bool,
    /// `proxyInstanceName`.
    pub proxy_instance_name: Option<String>,
    /// Request header operations in the order they run: adds, then sets, then deletes.
    pub request_headers: Vec<HeaderOp>,
    /// Response header operations in the order they run: adds, then sets, then deletes.
    pub response_headers: Vec<HeaderOp>,
    /// `connectionMode`: how upstream (and client) connections are kept.
    pub connection_mode: Option<ConnectionMode>,
    /// `compressionAlgo` / `compressionType`.
    pub compression: Option<Compression>,
    /// `sessionType=sticky-server`: cookie-based stickiness to one task.
    pub sticky: bool,
    /// `users`: per-service basic-auth users (a user without a password takes it from
    /// `usersSecret` or the global users).
    pub users: Vec<User>,
    /// `usersSecret`: suffix of the `dfp_users_<suffix>` secret holding users.
    pub users_secret: Option<String>,
    /// `usersPassEncrypted`: the passwords are crypt(3) hashes.
    pub users_pass_encrypted: bool,
    /// `serviceCert`: a PEM bundle (certificate and key) for this service.
    pub service_cert: Option<String>,
    /// The destinations, in the order they are matched (first match wins within a service).
    pub destinations: Vec<Destination>,
    /// Parameters that were accepted but have no effect in Sluice, worded for the API response.
    pub warnings: Vec<String>,
}

impl Service {
    /// The group this service sorts into (DFP's `Services.Less`): `/.well-known` paths first,
    /// then services without a root (`/`) path, then root services.
    pub fn sort_group(&self) -> u8 {
        let paths = || {
            self.destinations
                .iter()
                .flat_map(|d| d.paths.iter().map(PathPattern::text))
        };
        const WELL_KNOWN: &str = "/.well-known";
        let well_known = |p: &str| {
            p.get(..WELL_KNOWN.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(WELL_KNOWN))
        };
        if paths().any(well_known) {
            0
        } else if paths().any(|p| p == "/") {
            2
        } else {
            1
        }
    }

    /// The key services are ordered by: group, then `aclName` byte-wise, then the service name.
    pub fn sort_key(&self) -> (u8, &str, &str) {
        (self.sort_group(), &self.acl_name, &self.name)
    }

    /// The compiled size of every regular expression of the service (paths, excludes,
    /// domains, SNI names, rewrites), in bytes. The route table bounds its sum
    /// ([`MAX_TABLE_REGEX_SIZE`](crate::route::MAX_TABLE_REGEX_SIZE)).
    pub fn regex_size(&self) -> usize {
        self.destinations
            .iter()
            .flat_map(|d| {
                let paths = d
                    .paths
                    .iter()
                    .chain(&d.path_excludes)
                    .filter_map(PathPattern::regex);
                let domains = d
                    .domains
                    .iter()
                    .chain(&d.redirect_from_domains)
                    .filter_map(DomainPattern::regex);
                let rewrites = d.rewrites.iter().map(|r| &r.search);
                paths.chain(domains).chain(rewrites)
            })
            .map(UserRegex::compiled_size)
            .sum()
    }

    /// True when any destination is routed by the HTTP data plane.
    pub fn has_http(&self) -> bool {
        self.destinations
            .iter()
            .any(|d| d.req_mode == ReqMode::Http)
    }
}

/// A basic-auth user as configured (the password may still be missing; see [`Service::users`]).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (compared case-sensitively).
    pub name: String,
    /// The password or crypt(3) hash, if given.
    pub password: Option<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `reqMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReqMode {
    /// HTTP routing by path, host and headers.
    Http,
    /// Plain TCP forwarding from `srcPort` to `port`.
    Tcp,
    /// TLS passthrough routed by the ClientHello's server name.
    Sni,
}

impl ReqMode {
    /// The DFP spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReqMode::Http => "http",
            ReqMode::Tcp => "tcp",
            ReqMode::Sni => "sni",
        }
    }
}

/// One destination of a service (`port`, `servicePath`, … optionally indexed `.1`, `.2`, …).
#[derive(Debug, Clone)]
pub struct Destination {
    /// The index suffix it was given with (`0` = un-indexed).
    pub index: u8,
    /// `reqMode`.
    pub req_mode: ReqMode,
    /// `pathType` as given (normalised), e.g. `path_beg`.
    pub path_type: PathType,
    /// `servicePath` patterns (ORed). In sni mode these are server-name patterns.
    pub paths: Vec<PathPattern>,
    /// `servicePathExclude` patterns (a match excludes the request).
    pub path_excludes: Vec<PathPattern>,
    /// `port`: the upstream port.
    pub port: Option<u16>,
    /// `srcPort`: the proxy port the request must arrive on (or the TCP/SNI listener port).
    pub src_port: Option<u16>,
    /// `httpsPort`: upstream port for requests that arrived on `srcHttpsPort`.
    pub https_port: Option<u16>,
    /// `srcHttpsPort`: the proxy port of the `httpsPort` route.
    pub src_https_port: Option<u16>,
    /// `serviceDomain` patterns (ORed), matched against the Host without its port.
    pub domains: Vec<DomainPattern>,
    /// `redirectFromDomain`: hosts that are 301-redirected to the first `serviceDomain`.
    pub redirect_from_domains: Vec<DomainPattern>,
    /// `serviceHeader`: headers that must all be present with exactly these values.
    pub service_headers: Vec<(String, String)>,
    /// `userAgent`: the User-Agent must contain one of these (lower-cased) substrings.
    pub user_agents: Vec<String>,
    /// Path rewrites in the order they are applied (`reqPathSearch`/`Replace` first, then
    /// `reqPathSearchReplace` pairs).
    pub rewrites: Vec<PathRewrite>,
    /// `outboundHostname`: the upstream host instead of the service name.
    pub outbound_hostname: Option<String>,
    /// `sslVerifyNone`: connect to the upstream over TLS without verifying it.
    pub ssl_verify_none: bool,
    /// `httpsOnly`: redirect plain-HTTP requests to https.
    pub https_only: bool,
    /// `httpsRedirectCode`: the status of every https redirect of this destination.
    pub https_redirect_code: RedirectCode,
    /// `allowedMethods`: only these methods pass (others get 403).
    pub allowed_methods: Vec<String>,
    /// `deniedMethods`: these methods get 403.
    pub denied_methods: Vec<String>,
    /// `denyHttp`: plain-HTTP requests get 403.
    pub deny_http: bool,
    /// `verifyClientSsl`: requests without a verified client certificate get 403.
    pub verify_client_ssl: bool,
    /// `ignoreAuthorization`: skip basic auth for this destination.
    pub ignore_authorization: bool,
    /// `timeoutServer` in seconds.
    pub timeout_server: Option<u32>,
    /// `timeoutTunnel` in seconds.
    pub timeout_tunnel: Option<u32>,
    /// `timeoutClient` in seconds (tcp/sni listeners).
    pub timeout_client: Option<u32>,
    /// `maxConn`: requests forwarded to this destination at once, all proxy threads together
    /// (Sluice); more wait up to `TIMEOUT_QUEUE`, then get 503.
    pub max_conn: Option<u32>,
    /// `checkTcp`: periodic TCP connect checks of the upstream.
    pub check_tcp: bool,
    /// `clitcpka`: TCP keep-alive on client connections.
    pub clitcpka: bool,
    /// `serviceGroup`: TCP group name.
    pub service_group: Option<String>,
    /// `balanceGroup`: the TCP group's balancing algorithm.
    pub balance_group: Option<Balance>,
}

/// `pathType`: how `servicePath` and `servicePathExclude` patterns match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathType {
    /// `path_beg`: byte prefix of the path (no segment boundary, as HAProxy).
    Beg,
    /// `path`: the whole path.
    Exact,
    /// `path_end`: suffix of the path.
    End,
    /// `path_sub`: substring of the path.
    Sub,
    /// `path_dir`: a `/`-delimited run of whole segments of the path.
    Dir,
    /// `path_reg`: a regular expression searched in the path.
    Reg,
    /// `url_beg`: byte prefix of the path with its query string.
    UrlBeg,
    /// `req_ssl_sni` with a match method (sni mode only).
    Sni(SniMatch),
}

/// The `-m` method of an SNI pattern (`req_ssl_sni -i -m beg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SniMatch {
    /// `-m str` (or no method): the whole name.
    Exact,
    /// `-m beg`.
    Prefix,
    /// `-m end`.
    Suffix,
    /// `-m sub`.
    Substring,
    /// `-m reg`.
    Regex,
    /// `-m dom`: the pattern as a run of whole labels.
    Domain,
}

impl PathType {
    /// The HAProxy spelling DFP users know.
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Beg => "path_beg",
            PathType::Exact => "path",
            PathType::End => "path_end",
            PathType::Sub => "path_sub",
            PathType::Dir => "path_dir",
            PathType::Reg => "path_reg",
            PathType::UrlBeg => "url_beg",
            PathType::Sni(SniMatch::Exact) => "req_ssl_sni -i",
            PathType::Sni(SniMatch::Prefix) => "req_ssl_sni -i -m beg",
            PathType::Sni(SniMatch::Suffix) => "req_ssl_sni -i -m end",
            PathType::Sni(SniMatch::Substring) => "req_ssl_sni -i -m sub",
            PathType::Sni(SniMatch::Regex) => "req_ssl_sni -i -m reg",
            PathType::Sni(SniMatch::Domain) => "req_ssl_sni -i -m dom",
        }
    }
}

/// One compiled `servicePath` / `servicePathExclude` pattern.
#[derive(Debug, Clone)]
pub enum PathPattern {
    /// `path_beg`.
    Prefix(String),
    /// `path`.
    Exact(String),
    /// `path_end`.
    Suffix(String),
    /// `path_sub`.
    Substring(String),
    /// `path_dir`: the pattern's segments (without empty ones).
    Dir(String),
    /// `path_reg`.
    Regex(UserRegex),
    /// `url_beg`: prefix of path plus query.
    UrlPrefix(String),
    /// An SNI pattern (lower-cased text, or a case-insensitive regex).
    Sni(SniPattern),
}

/// One compiled SNI pattern.
#[derive(Debug, Clone)]
pub enum SniPattern {
    /// `-m str`.
    Exact(String),
    /// `-m beg`.
    Prefix(String),
    /// `-m end`.
    Suffix(String),
    /// `-m sub`.
    Substring(String),
    /// `-m reg` (compiled case-insensitive).
    Regex(UserRegex),
    /// `-m dom`.
    Domain(String),
}

impl SniPattern {
    /// True when the (lower-cased) server name matches.
    pub fn matches(&self, sni: &str) -> bool {
        match self {
            SniPattern::Exact(p) => sni == p,
            SniPattern::Prefix(p) => sni.starts_with(p.as_str()),
            SniPattern::Suffix(p) => sni.ends_with(p.as_str()),
            SniPattern::Substring(p) => sni.contains(p.as_str()),
            SniPattern::Regex(r) => r.is_match(sni),
            SniPattern::Domain(p) => label_run_matches(sni, p),
        }
    }
}

/// True when `pattern` occurs in `host` as a run of whole dot-separated labels.
fn label_run_matches(host: &str, pattern: &str) -> bool {
    host.match_indices(pattern).any(|(at, _)| {
        let before_ok = at == 0 || host.as_bytes()[at - 1] == b'.';
        let end = at + pattern.len();
        let after_ok = end == host.len() || host.as_bytes()[end] == b'.';
        before_ok && after_ok
    })
}

impl PathPattern {
    /// The pattern as the user wrote it.
    pub fn text(&self) -> &str {
        match self {
            PathPattern::Prefix(s)
            | PathPattern::Exact(s)
            | PathPattern::Suffix(s)
            | PathPattern::Substring(s)
            | PathPattern::Dir(s)
            | PathPattern::UrlPrefix(s) => s,
            PathPattern::Regex(r) => r.as_str(),
            PathPattern::Sni(p) => match p {
                SniPattern::Exact(s)
                | SniPattern::Prefix(s)
                | SniPattern::Suffix(s)
                | SniPattern::Substring(s)
                | SniPattern::Domain(s) => s,
                SniPattern::Regex(r) => r.as_str(),
            },
        }
    }

    /// The regular expression, for `path_reg` and SNI `-m reg` patterns.
    pub fn regex(&self) -> Option<&UserRegex> {
        match self {
            PathPattern::Regex(r) | PathPattern::Sni(SniPattern::Regex(r)) => Some(r),
            _ => None,
        }
    }

    /// True when the request matches. `path` excludes the query; `path_and_query` includes it.
    /// SNI patterns never match an HTTP request.
    pub fn matches(&self, path: &str, path_and_query: &str) -> bool {
        match self {
            PathPattern::Prefix(p) => path.starts_with(p.as_str()),
            PathPattern::Exact(p) => path == p,
            PathPattern::Suffix(p) => path.ends_with(p.as_str()),
            PathPattern::Substring(p) => path.contains(p.as_str()),
            PathPattern::Dir(p) => dir_matches(path, p),
            PathPattern::Regex(r) => r.is_match(path),
            PathPattern::UrlPrefix(p) => path_and_query.starts_with(p.as_str()),
            PathPattern::Sni(_) => false,
        }
    }
}

/// HAProxy `path_dir`: the pattern's `/`-separated segments appear as consecutive whole
/// segments of the path.
fn dir_matches(path: &str, pattern: &str) -> bool {
    let want: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    if want.is_empty() {
        return path.starts_with('/');
    }
    let have: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    have.windows(want.len()).any(|w| w == want.as_slice())
}

/// `serviceDomainAlgo` / `SERVICE_DOMAIN_ALGO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainAlgo {
    /// `hdr(host)`: the whole host (port stripped).
    Exact,
    /// `hdr_beg(host)`: DFP's default. Sluice matches the whole host here too, so
    /// `example.com` never matches `example.com.evil.net` (a deliberate fix).
    Beg,
    /// `hdr_end(host)`: suffix of the host.
    End,
    /// `hdr_dom(host)`: the host equals the domain or is a sub-domain of it.
    Dom,
    /// `hdr_reg(host)`: a regular expression searched in the host.
    Reg,
    /// `req.ssl_sni` / `req_ssl_sni`: the TLS server name (tcp/sni listeners).
    Sni,
}

impl DomainAlgo {
    /// The HAProxy spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainAlgo::Exact => "hdr(host)",
            DomainAlgo::Beg => "hdr_beg(host)",
            DomainAlgo::End => "hdr_end(host)",
            DomainAlgo::Dom => "hdr_dom(host)",
            DomainAlgo::Reg => "hdr_reg(host)",
            DomainAlgo::Sni => "req.ssl_sni",
        }
    }

    /// Parses the HAProxy spelling (`hdr_dom(host)`, `req_ssl_sni`, …), ignoring ASCII case and
    /// surrounding whitespace. `None` for any other algorithm.
    pub fn parse(text: &str) -> Option<DomainAlgo> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hdr(host)" => Some(DomainAlgo::Exact),
            "hdr_beg(host)" => Some(DomainAlgo::Beg),
            "hdr_end(host)" => Some(DomainAlgo::End),
            "hdr_dom(host)" => Some(DomainAlgo::Dom),
            "hdr_reg(host)" => Some(DomainAlgo::Reg),
            "req.ssl_sni" | "req_ssl_sni" => Some(DomainAlgo::Sni),
            _ => None,
        }
    }
}

/// One compiled `serviceDomain` (or `redirectFromDomain`) pattern. Text is lower-case.
#[derive(Debug, Clone)]
pub enum DomainPattern {
    /// The host equals this name.
    Exact(String),
    /// The host ends with this text (`*domain.com`, or `hdr_end`). A plain string suffix:
    /// `*domain.com` matches `my-domain.com`, as DFP documents.
    Suffix(String),
    /// The host equals this name or ends with `.` followed by it.
    Domain(String),
    /// A regular expression searched in the host (compiled case-insensitive).
    Regex(UserRegex),
}

impl DomainPattern {
    /// The pattern as shown to users (`*` restored on suffixes).
    pub fn text(&self) -> String {
        match self {
            DomainPattern::Exact(s) | DomainPattern::Domain(s) => s.clone(),
            DomainPattern::Suffix(s) => format!("*{s}"),
            DomainPattern::Regex(r) => r.as_str().to_string(),
        }
    }

    /// The regular expression, for `hdr_reg(host)` patterns.
    pub fn regex(&self) -> Option<&UserRegex> {
        match self {
            DomainPattern::Regex(r) => Some(r),
            _ => None,
        }
    }

    /// True when `host` (lower-case, port already stripped) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            DomainPattern::Exact(d) => host == d,
            DomainPattern::Suffix(d) => host.ends_with(d.as_str()),
            DomainPattern::Domain(d) => {
                host == d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            }
            DomainPattern::Regex(r) => r.is_match(host),
        }
    }
}

/// Lower-cases a Host header value and strips its port (`Example.COM:8080` → `example.com`,
/// `[::1]:80` → `[::1]`).
pub fn normalize_host(raw: &str) -> String {
    let raw = raw.trim();
    let without_port = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(at) if raw[at + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..at],
            _ => raw,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// One path rewrite (`regsub(search, replace[, flags])`).
#[derive(Debug, Clone)]
pub struct PathRewrite {
    /// The compiled search expression (case-insensitive when flag `i` was given).
    pub search: UserRegex,
    /// The replacement in `regex` crate syntax (`\1` already turned into `${1}`).
    pub replace: String,
    /// Flag `g`: replace every match instead of the first.
    pub global: bool,
    /// The pair as the user wrote it (`search,replace[,flags]`).
    pub source: String,
}

impl PathRewrite {
    /// Applies the rewrite to a path (the query string is not part of it).
    pub fn apply(&self, path: &str) -> String {
        if self.global {
            self.search
                .replace_all(path, self.replace.as_str())
                .into_owned()
        } else {
            self.search
                .replace(path, self.replace.as_str())
                .into_owned()
        }
    }
}

/// An https redirect status: one of 301, 302, 303, 307, 308.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RedirectCode(u16);

impl RedirectCode {
    /// HAProxy's default for `redirect scheme`.
    pub const FOUND: RedirectCode = RedirectCode(302);
    /// Used by `redirectFromDomain`.
    pub const MOVED_PERMANENTLY: RedirectCode = RedirectCode(301);

    /// Accepts only the redirect statuses HAProxy can send.
    pub fn new(code: u16) -> Option<RedirectCode> {
        matches!(code, 301 | 302 | 303 | 307 | 308).then_some(RedirectCode(code))
    }

    /// The status code.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for RedirectCode {
    fn default() -> Self {
        RedirectCode::FOUND
    }
}

/// A header operation from `addReqHeader`, `setResHeader`, `delReqHeader`, ….
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Append a header (keeps existing ones).
    Add {
        /// Header name (lower-case).
        name: String,
        /// The value, possibly with placeholders.
        value: HeaderValue,
        /// When the operation applies.
        when: HeaderCondition,
    },
    /// Replace every header of this name.
    Set {
        /// Header name (lower-case).
        name: String,
        /// The value, possibly with placeholders.
        value: HeaderValue,
        /// When the operation applies.
        when: HeaderCondition,
    },
    /// Remove every header of this name.
    Del {
        /// Header name (lower-case).
        name: String,
    },
}

/// A header value: literal text with the few HAProxy sample fetches Sluice supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderValue(pub Vec<ValuePart>);

/// A piece of a [`HeaderValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePart {
    /// Literal text.
    Text(String),
    /// `%[src]`: the client IP address.
    ClientIp,
    /// `%[dst_port]`: the proxy port the connection arrived on.
    LocalPort,
    /// `%[ssl_fc]`: `1` over TLS, `0` otherwise.
    Tls,
}

impl HeaderValue {
    /// Renders the value for one request.
    pub fn render(&self, client_ip: &str, local_port: u16, tls: bool) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                ValuePart::Text(t) => out.push_str(t),
                ValuePart::ClientIp => out.push_str(client_ip),
                ValuePart::LocalPort => out.push_str(&local_port.to_string()),
                ValuePart::Tls => out.push(if tls { '1' } else { '0' }),
            }
        }
        out
    }

    /// True when the value is plain text without placeholders.
    pub fn as_literal(&self) -> Option<&str> {
        match self.0.as_slice() {
            [] => Some(""),
            [ValuePart::Text(t)] => Some(t),
            _ => None,
        }
    }
}

/// The optional condition of a header operation (`if { ssl_fc }`, `unless { ssl_fc }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderCondition {
    /// Always.
    #[default]
    Always,
    /// Only over TLS.
    IfTls,
    /// Only over plain HTTP.
    UnlessTls,
}

impl HeaderCondition {
    /// True when the operation applies to a request on a connection with this TLS state.
    pub fn holds(self, tls: bool) -> bool {
        match self {
            HeaderCondition::Always => true,
            HeaderCondition::IfTls => tls,
            HeaderCondition::UnlessTls => !tls,
        }
    }
}

/// `connectionMode` / `CONNECTION_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionMode {
    /// `http-keep-alive`: keep both sides open (the default).
    KeepAlive,
    /// `http-server-close`: close the upstream connection after each response.
    ServerClose,
    /// `httpclose` / `forceclose`: close both sides after each response.
    Close,
}

impl ConnectionMode {
    /// The HAProxy spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionMode::KeepAlive => "http-keep-alive",
            ConnectionMode::ServerClose => "http-server-close",
            ConnectionMode::Close => "httpclose",
        }
    }

    /// Parses the HAProxy spelling, ignoring ASCII case and surrounding whitespace:
    /// `http-keep-alive`, `http-server-close`, `httpclose` and `forceclose` (both close).
    /// `None` for anything else, including `http-tunnel`.
    pub fn parse(text: &str) -> Option<ConnectionMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "http-keep-alive" => Some(ConnectionMode::KeepAlive),
            "http-server-close" => Some(ConnectionMode::ServerClose),
            "httpclose" | "forceclose" => Some(ConnectionMode::Close),
            _ => None,
        }
    }
}

/// `compressionAlgo` / `compressionType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// The algorithms offered, in preference order.
    pub algos: Vec<CompressionAlgo>,
    /// MIME types to compress (empty = any).
    pub types: Vec<String>,
}

/// A response compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionAlgo {
    /// `identity`: no compression.
    Identity,
    /// `gzip`.
    Gzip,
    /// `deflate` (and `raw-deflate`, mapped to it).
    Deflate,
}

/// `balanceGroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Round robin over addresses.
    RoundRobin,
    /// The address with the fewest open connections.
    LeastConn,
    /// A hash of the client address.
    Source,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalisation_strips_port_and_case() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("10.0.0.1:80"), "10.0.0.1");
    }

    #[test]
    fn exact_domain_does_not_match_longer_hosts() {
        let d = DomainPattern::Exact("example.com".into());
        assert!(d.matches("example.com"));
        assert!(!d.matches("example.com.evil.net"));
        assert!(!d.matches("example.community"));
    }

    #[test]
    fn suffix_domain_is_a_string_suffix() {
        let d = DomainPattern::Suffix("domain.com".into());
        assert!(d.matches("my-domain.com"));
        assert!(d.matches("domain.com"));
        assert!(!d.matches("domain.com.evil.net"));
    }

    #[test]
    fn dom_domain_needs_a_label_boundary() {
        let d = DomainPattern::Domain("example.com".into());
        assert!(d.matches("www.example.com"));
        assert!(d.matches("example.com"));
        assert!(!d.matches("badexample.com"));
        assert!(!d.matches("example.com.evil.net"));
    }

    #[test]
    fn path_dir_matches_whole_segments() {
        assert!(dir_matches("/a/demo/b", "/demo"));
        assert!(dir_matches("/demo", "/demo"));
        assert!(!dir_matches("/demonstration", "/demo"));
    }

    #[test]
    fn sni_domain_pattern() {
        assert!(SniPattern::Domain("example.com".into()).matches("api.example.com"));
        assert!(!SniPattern::Domain("example.com".into()).matches("myexample.com"));
    }

    #[test]
    fn redirect_codes_are_checked() {
        assert!(RedirectCode::new(301).is_some());
        assert!(RedirectCode::new(200).is_none());
        assert_eq!(RedirectCode::default().get(), 302);
    }
}
