//! The HTTP request path, as named phases run in this order for every request:
//!
//! 1. **route** — the snapshot's table picks a route, a redirect, or nothing (503).
//! 2. **redirect** — `httpsOnly` sends plain-HTTP requests to https.
//! 3. **deny** — `verifyClientSsl`, `allowedMethods`, `deniedMethods`, `denyHttp` answer 403
//!    (before authentication, as DFP does). Then **auth**: the destination's basic-auth gate
//!    answers 401 ([`crate::auth`]), and the checked `Authorization` header is not forwarded.
//! 4. **rewrite** — path rewrites, forwarding headers and the service's request header rules.
//! 5. **upstream** — the request goes to one of the service's task addresses (503 when none
//!    answers, 504 on the server timeout, 502 on a broken response).
//! 6. **response** — hop-by-hop headers go, the service's response header rules apply, an
//!    upgrade (WebSocket) becomes a tunnel, and the body may be compressed ([`crate::compress`]).
//!
//! Before anything looks at it, the request is made **canonical** ([`canonical_request`]): its
//! path is normalised ([`sluice_core::uri_path`]), an absolute-form target's authority becomes
//! the one `Host` header, and what cannot be made unambiguous (an unsafe path, two `Host`
//! headers) is answered 400. Routing, excludes, rewrites, method rules, auth and the statistics
//! page all see the canonical request, and the upstream receives it.
//!
//! Then a request for `STATS_URI` gets the statistics page ([`crate::stats_page`]); every other
//! request is counted ([`crate::stats`]).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{
    HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, SET_COOKIE, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use sluice_core::route::{self, Arrival, Decision, Refusal, RequestFacts, Route};
use sluice_core::service::{ConnectionMode, HeaderOp, ReqMode};
use sluice_core::uri_path::{self, PathError};

use crate::access_log::Trace;
use crate::body::{ProxyBody, UpstreamBody};
use crate::context::Worker;
use crate::error_page::{self, Failure};
use crate::snapshot::Snapshot;
use crate::stats::{DestStats, RequestBody};
use crate::upstream::{sticky_token, SendError, Target};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What the data plane knows about the client connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) local_port: u16,
    pub(crate) tls: bool,
    /// The client presented a certificate that verified against `CA_FILE`.
    pub(crate) client_cert_verified: bool,
    /// The client's address and port.
    pub(crate) client: SocketAddr,
    /// The client's IP address as text, rendered once per connection.
    client_ip: String,
    /// `local_port` as a header value, rendered once per connection.
    port_header: HeaderValue,
    /// Since when the connection waits for a request: its start, then the end of the last
    /// response (the request log's `t_wait`).
    pub(crate) idle_since: Rc<std::cell::Cell<Instant>>,
}

impl ConnInfo {
    pub(crate) fn new(
        client: SocketAddr,
        local_port: u16,
        tls: bool,
        client_cert_verified: bool,
    ) -> ConnInfo {
        ConnInfo {
            local_port,
            tls,
            client_cert_verified,
            client,
            client_ip: client.ip().to_string(),
            port_header: HeaderValue::from(local_port),
            idle_since: Rc::new(std::cell::Cell::new(Instant::now())),
        }
    }

    /// The client's IP address as text.
    pub(crate) fn client_ip(&self) -> &str {
        &self.client_ip
    }
}

/// Handles one request end to end. Never fails: every problem becomes a response. With the
/// request log on, the request is traced ([`crate::access_log`]).
pub(crate) async fn handle(
    worker: Rc<Worker>,
    conn: Rc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(log) = &worker.access_log else {
        return respond(worker, conn, req, None).await;
    };
    let mut trace = log.http(conn.client, conn.local_port, &conn.idle_since, &mut req);
    let resp = respond(worker, conn, req, Some(&mut trace)).await;
    trace.responded(&resp);
    // The line is written once the body is sent.
    resp.map(|body| trace.into_body(body))
}

async fn respond(
    worker: Rc<Worker>,
    conn: Rc<ConnInfo>,
    mut req: Request<Incoming>,
    mut trace: Option<&mut Trace>,
) -> Response<ProxyBody> {
    if let Err(problem) = canonical_request(&mut req) {
        tracing::debug!(%problem, "refused an ambiguous request");
        worker.stats.hub.request_arrived();
        worker.stats.hub.responded(StatusCode::BAD_REQUEST.as_u16());
        return error_page::bad_request(&problem.to_string());
    }
    if let Some(answer) = crate::challenge::respond(&req) {
        return answer;
    }
    let snapshot = worker.current_snapshot();
    if let Some(page) = &worker.stats.page {
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if let Some(format) = page.format(pq) {
            return page.respond(format, req.headers(), &worker.stats.hub, &snapshot);
        }
    }
    worker.stats.hub.request_arrived();
    let host = request_host(&req).map(str::to_owned);
    let decision = {
        let path = req.uri().path();
        let facts = RequestFacts {
            host: host.as_deref(),
            path,
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or(path),
            local_port: conn.local_port,
            headers: req.headers(),
        };
        snapshot.table.decide(&facts)
    };
    let resp = match decision {
        Decision::NoRoute => {
            if let Some(trace) = trace {
                trace.end("no_route");
            }
            worker.stats.hub.unrouted();
            error_page::page(Failure::NoRoute)
        }
        Decision::Redirect { status, location } => error_page::redirect(status, &location),
        Decision::Forward(route) => {
            if let Some(trace) = trace.as_deref_mut() {
                trace.routed(&route.service.name);
            }
            let started = Instant::now();
            let stats = snapshot.stats.of(route);
            let in_flight = stats.map(DestStats::begin);
            let resp = forward(
                &worker,
                &conn,
                &snapshot,
                route,
                stats,
                host.as_deref(),
                req,
                trace,
            )
            .await;
            match in_flight {
                Some(in_flight) => crate::stats::finish(resp, in_flight, started),
                None => resp,
            }
        }
    };
    worker.stats.hub.responded(resp.status().as_u16());
    resp
}

/// Why a request was refused before routing.
#[derive(Debug, thiserror::Error)]
enum Ambiguous {
    #[error("{0}")]
    Path(#[from] PathError),
    #[error("the request has more than one Host header")]
    TwoHosts,
    #[error("the * request target is only allowed with OPTIONS")]
    Asterisk,
    #[error("an authority-form (CONNECT) target is not served: this is not a forward proxy")]
    AuthorityForm,
    #[error("the request target cannot be rebuilt")]
    Target,
}

/// Makes `req` canonical in place: one `Host` (an absolute-form target's authority wins over
/// the header, RFC 9112 §3.2.2), an origin-form target, and the normal form of the path. The
/// query string is kept as it came.
fn canonical_request<B>(req: &mut Request<B>) -> Result<(), Ambiguous> {
    let mut hosts = req.headers().get_all(HOST).iter();
    if hosts.next().is_some() && hosts.next().is_some() {
        return Err(Ambiguous::TwoHosts);
    }
    if req.uri().path() == "*" && req.method() != Method::OPTIONS {
        return Err(Ambiguous::Asterisk);
    }
    let uri = req.uri();
    if uri.path().is_empty() {
        return Err(Ambiguous::AuthorityForm);
    }
    let authority = match uri.authority() {
        Some(a) => {
            let host_port = a.as_str().rsplit('@').next().unwrap_or_default();
            Some(HeaderValue::from_str(host_port).map_err(|_| Ambiguous::Target)?)
        }
        None => None,
    };
    let path = uri_path::normalize(uri.path())?;
    if matches!(path, Cow::Borrowed(_)) && authority.is_none() {
        return Ok(());
    }
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    let target = Uri::try_from(target).map_err(|_| Ambiguous::Target)?;
    *req.uri_mut() = target;
    if let Some(authority) = authority {
        req.headers_mut().insert(HOST, authority);
    }
    Ok(())
}

fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// True when a failed exchange failed because the *client's* request body broke (a bad chunk
/// size, a body shorter than its `Content-Length`): hyper reports the body stream's own error
/// as the cause of the upstream send error.
fn client_body_failed(error: &SendError) -> bool {
    let SendError::Broken { source, .. } = error else {
        return false;
    };
    let mut cause = std::error::Error::source(source);
    while let Some(error) = cause {
        if error.downcast_ref::<hyper::Error>().is_some() {
            return source.is_user();
        }
        cause = error.source();
    }
    false
}

// The phases need the request's whole context; the request log's trace is the eighth.
#[allow(clippy::too_many_arguments)]
async fn forward(
    worker: &Worker,
    conn: &ConnInfo,
    snapshot: &Snapshot,
    route: &Route,
    stats: Option<&Arc<DestStats>>,
    host: Option<&str>,
    mut req: Request<Incoming>,
    mut trace: Option<&mut Trace>,
) -> Response<ProxyBody> {
    let dest = route.destination();
    let service = &route.service;
    debug_assert_eq!(dest.req_mode, ReqMode::Http);

    // Phases: redirect and deny (one rule set, shared with explain).
    let arrival = Arrival {
        method: req.method().as_str(),
        tls: conn.tls,
        client_cert_verified: conn.client_cert_verified,
    };
    match route::refusal(dest, arrival) {
        None => {}
        Some(Refusal::HttpsOnly { status }) => {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let location = route::https_location(host, pq, worker.https_port);
            return error_page::redirect(status, &location);
        }
        Some(_) => {
            if let Some(stats) = stats {
                stats.denied();
            }
            return error_page::page(Failure::Forbidden);
        }
    }

    // Phase: auth.
    if let Some(gate) = snapshot.auth.gate(&service.name, dest.ignore_authorization) {
        if !gate.admits(req.headers()).await {
            if let Some(stats) = stats {
                stats.unauthorized();
            }
            return crate::auth::challenge(gate.realm());
        }
        req.headers_mut().remove(http::header::AUTHORIZATION);
    }

    // Phase: rewrite.
    if !dest.rewrites.is_empty() {
        match rewrite_uri(req.uri(), route) {
            Some(uri) => *req.uri_mut() = uri,
            None => return error_page::page(Failure::BadRequest),
        }
    }
    let upgrade = is_upgrade(req.headers());
    let client_ip = conn.client_ip.as_str();
    {
        let headers = req.headers_mut();
        strip_hop_by_hop(headers, upgrade);
        append_forwarded_for(headers, client_ip);
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
        headers.insert(X_FORWARDED_PORT.clone(), conn.port_header.clone());
        apply_header_ops(headers, &service.request_headers, conn, client_ip);
    }
    to_http1(&mut req);
    *req.version_mut() = http::Version::HTTP_11;
    let sticky = if service.sticky {
        sticky_choice(req.headers(), &service.name)
    } else {
        None
    };
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let compression = crate::compress::offer(
        service.compression.as_ref().or(worker.compression.as_ref()),
        req.method(),
        req.headers(),
    );

    // Phase: upstream.
    let target = Target {
        host: route.upstream_host(),
        tasks_first: dest.outbound_hostname.is_none(),
        tls: dest.ssl_verify_none,
        max_conn: dest
            .max_conn
            .map(|max| (service.name.as_str(), route.dest, max)),
    };
    let server_timeout = dest
        .timeout_server
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(worker.timeouts.server);
    let req = match trace.as_deref_mut() {
        Some(trace) => {
            let meter = trace.request_meter(stats);
            req.map(|body| RequestBody::new(body, Some(meter)))
        }
        None => req.map(|body| RequestBody::new(body, stats.cloned())),
    };
    let sent = trace.is_some().then(Instant::now);
    let exchange = match worker
        .upstreams
        .send(
            target,
            route.upstream_port,
            req,
            upgrade,
            server_timeout,
            sticky.as_deref(),
        )
        .await
    {
        Ok(exchange) => {
            if let Some(stats) = stats {
                stats.upstream_answered(exchange.addr, &exchange.failed);
            }
            if let Some(trace) = trace {
                trace.answered(exchange.addr, exchange.failed.len(), sent, exchange.connect);
            }
            exchange
        }
        Err(error) if client_body_failed(&error) => {
            if let Some(trace) = trace {
                trace.end("client_body_broken");
            }
            tracing::debug!(service = %service.name, %error, "client sent a malformed request body");
            return error_page::bad_request("The request body is malformed or incomplete.");
        }
        Err(error) => {
            if let Some(stats) = stats {
                stats.upstream_failed(&error);
            }
            if let Some(trace) = trace {
                trace.upstream_failed(&error, sent);
            }
            let failure = match &error {
                SendError::Resolve { .. }
                | SendError::Unreachable { .. }
                | SendError::Queue { .. } => Failure::Unavailable,
                SendError::Timeout { .. } => Failure::Timeout,
                SendError::Broken { .. } | SendError::BrokenDirect { .. } => Failure::BadGateway,
            };
            tracing::warn!(service = %service.name, backend = %route.backend_name(), %error, "upstream request failed");
            return match failure {
                Failure::Unavailable => error_page::unavailable(),
                other => error_page::page(other),
            };
        }
    };

    // Phase: response.
    let mut response = exchange.response;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upstream_upgrade = switching.then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    apply_header_ops(
        &mut parts.headers,
        &service.response_headers,
        conn,
        client_ip,
    );
    if service.sticky {
        // A new client, or one whose task is gone or ejected, is (re)assigned to the task
        // that answered.
        let token = sticky_token(exchange.addr.ip());
        if sticky.as_deref() != Some(token.as_str()) {
            let cookie = format!("{0}={0}_{1}; path=/", service.name, token);
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                parts.headers.append(SET_COOKIE, value);
                parts.headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("private"),
                );
            }
        }
    }
    let mode = service.connection_mode.unwrap_or(worker.connection_mode);
    let lease = match mode {
        ConnectionMode::KeepAlive => exchange.lease,
        ConnectionMode::ServerClose | ConnectionMode::Close => None,
    };
    if mode == ConnectionMode::Close {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if let (Some(client_upgrade), Some(upstream_upgrade)) = (client_upgrade, upstream_upgrade) {
        {
            let tunnel_idle = dest
                .timeout_tunnel
                .map(|s| Duration::from_secs(u64::from(s)))
                .unwrap_or(worker.timeouts.tunnel);
            drop(body);
            tokio::task::spawn_local(crate::tunnel::run(
                client_upgrade,
                upstream_upgrade,
                tunnel_idle,
                worker.drain_of(service, target, exchange.addr),
            ));
            return Response::from_parts(parts, ProxyBody::empty());
        }
    }
    let body = ProxyBody::Upstream(UpstreamBody::new(body, lease, server_timeout));
    let body = crate::compress::apply(compression, &mut parts, body);
    Response::from_parts(parts, body)
}

/// Applies the destination's rewrites to the path, keeping the query.
fn rewrite_uri(uri: &Uri, route: &Route) -> Option<Uri> {
    let path = route.rewritten_path(uri.path());
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    Uri::builder().path_and_query(pq).build().ok()
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes headers that belong to one connection only (RFC 9110 §7.6.1). For an upgrade the
/// `Connection: upgrade` / `Upgrade` pair is kept so the upstream can switch protocols.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if !(keep_upgrade && name == UPGRADE) {
            headers.remove(name);
        }
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    headers.remove(CONNECTION);
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &str) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {client_ip}"),
        _ => client_ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
}

fn apply_header_ops(headers: &mut HeaderMap, ops: &[HeaderOp], conn: &ConnInfo, client_ip: &str) {
    for op in ops {
        match op {
            HeaderOp::Add { name, value, when } | HeaderOp::Set { name, value, when } => {
                if !when.holds(conn.tls) {
                    continue;
                }
                let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                    continue;
                };
                let rendered = value.render(client_ip, conn.local_port, conn.tls);
                let Ok(value) = HeaderValue::from_str(&rendered) else {
                    continue;
                };
                if matches!(op, HeaderOp::Set { .. }) {
                    headers.insert(name, value);
                } else {
                    headers.append(name, value);
                }
            }
            HeaderOp::Del { name } => {
                headers.remove(name.as_str());
            }
        }
    }
}

/// The task a sticky-session cookie (`<service>=<service>_<token>`) asks for: its token
/// ([`sticky_token`], a short hash of the task's address, so the cookie keeps naming the same
/// task whatever the order of the address list, and never shows the address).
fn sticky_choice(headers: &HeaderMap, service: &str) -> Option<String> {
    let prefix = format!("{service}_");
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == service)
        .and_then(|(_, value)| value.strip_prefix(prefix.as_str()))
        .filter(|token| !token.is_empty() && token.len() <= 64)
        .map(str::to_owned)
}

/// Turns an HTTP/2 request into one an HTTP/1.1 upstream understands: the target becomes
/// origin-form (`/path?query`) and the `:authority` becomes the `Host` header.
fn to_http1<B>(req: &mut Request<B>) {
    if req.version() != http::Version::HTTP_2 {
        return;
    }
    if !req.headers().contains_key(http::header::HOST) {
        if let Some(value) = req
            .uri()
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(http::header::HOST, value);
        }
    }
    let pq = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string());
    if let Ok(uri) = pq.parse() {
        *req.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_requests_become_origin_form() {
        let mut req = Request::builder()
            .version(http::Version::HTTP_2)
            .uri("https://example.com:8443/a/b?c=1")
            .body(())
            .unwrap();
        to_http1(&mut req);
        assert_eq!(req.uri().to_string(), "/a/b?c=1");
        assert_eq!(req.headers()[http::header::HOST], "example.com:8443");

        let mut plain = Request::builder().uri("http://x/abs").body(()).unwrap();
        to_http1(&mut plain);
        assert_eq!(plain.uri().to_string(), "http://x/abs", "HTTP/1 untouched");
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-private").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(CONNECTION).is_none());
        assert_eq!(h["x-kept"], "1");
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "upgrade");
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "10.0.0.1");
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        append_forwarded_for(&mut h, "10.0.0.2");
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2");
    }

    fn canonical(target: &str, hosts: &[&str]) -> Result<(String, Option<String>), String> {
        let mut builder = Request::builder().uri(target);
        for h in hosts {
            builder = builder.header(HOST, *h);
        }
        let mut req = builder.body(()).unwrap();
        canonical_request(&mut req).map_err(|e| e.to_string())?;
        let host = req
            .headers()
            .get(HOST)
            .map(|h| h.to_str().unwrap().to_owned());
        Ok((req.uri().to_string(), host))
    }

    #[test]
    fn requests_are_made_canonical() {
        assert_eq!(
            canonical("/x/%2e%2e/%73ecure//a?q=%2e%2e/x", &["h"]).unwrap(),
            ("/secure/a?q=%2e%2e/x".to_string(), Some("h".to_string()))
        );
        assert_eq!(
            canonical("http://user@other:81/a/./b", &["h"]).unwrap(),
            ("/a/b".to_string(), Some("other:81".to_string()))
        );
        let err = canonical("/%2fsecure/x", &["h"]).unwrap_err();
        assert!(err.contains("encoded slash"), "{err}");
        let err = canonical("/a", &["h", "h2"]).unwrap_err();
        assert!(err.contains("more than one Host"), "{err}");
        let mut connect = Request::connect("example.com:443").body(()).unwrap();
        let err = canonical_request(&mut connect).unwrap_err().to_string();
        assert!(err.contains("not a forward proxy"), "{err}");
        let err = canonical("*", &["h"]).unwrap_err();
        assert!(err.contains("only allowed with OPTIONS"), "{err}");
    }

    #[test]
    fn sticky_cookie_is_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=b; go-demo=go-demo_0a1b2c3d4e5f"),
        );
        assert_eq!(
            sticky_choice(&h, "go-demo").as_deref(),
            Some("0a1b2c3d4e5f")
        );
        assert_eq!(sticky_choice(&h, "other"), None);
        h.insert(COOKIE, HeaderValue::from_static("go-demo=go-demo_"));
        assert_eq!(sticky_choice(&h, "go-demo"), None);
    }
}
