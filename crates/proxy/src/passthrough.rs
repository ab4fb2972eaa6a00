//! The pass-through path: plain HTTP/1.1 requests to routes that ask for no edit beyond the
//! forwarding headers are relayed as bytes, parsed with `httparse`, with the upstream
//! connection driven by the client connection's own task ([`crate::upstream::DirectConn`]).
//! It does what [`crate::forward`] does for such a request, without building hyper's
//! request and response objects twice, without a task and a channel per upstream connection.
//!
//! A request is served here when all of these hold, and otherwise the connection — with
//! every byte read so far — is handed to hyper ([`Served::Handoff`]) for the rest of its life:
//! - HTTP/1.1; no `Transfer-Encoding`, `Upgrade` or `Expect`; a body (`Content-Length`) of at
//!   most [`MAX_BODY`]; a canonical origin-form target ([`sluice_core::uri_path`]); one `Host`;
//!   not the statistics page nor an ACME challenge; the request log off;
//! - the route forwards (no redirect, deny or no-route answer), with no authentication,
//!   rewrite, header rule, sticky session, `maxConn`, compression, upstream TLS or connection
//!   mode other than keep-alive.
//!
//! The upstream gets the request line and headers as they came, minus the hop-by-hop headers,
//! plus `X-Forwarded-For`/`-Proto`/`-Port` (as [`crate::forward`] sets them); the client gets
//! the response head minus hop-by-hop headers, and the body with its framing as it came
//! ([`response`]). Statistics, passive health and retries are the same as on hyper's path.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sluice_core::route::{self, Arrival, Decision, RequestFacts, Route};
use sluice_core::service::ConnectionMode;
use sluice_core::uri_path;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::Meter;
use crate::context::Worker;
use crate::error_page::{self, Failure};
use crate::snapshot::Snapshot;
use crate::stats::DestStats;
use crate::upstream::{DirectRequest, SendError, Target};
use crate::wire::{self, MAX_HEAD, MAX_HEADERS};

mod response;

/// The largest request body this path buffers; a larger one goes to hyper, which streams it.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// How serving a connection here ended.
pub(crate) enum Served {
    /// The connection is done (closed by either side, idle too long, or the data plane stops).
    Closed,
    /// The next request is not for this path: hyper serves the connection from here, starting
    /// with these bytes already read from it.
    Handoff(Vec<u8>),
}

/// What the client connection is, as this path needs it.
pub(crate) struct Client<'a> {
    /// The client's IP address as text.
    pub(crate) ip: &'a str,
    pub(crate) local_port: u16,
}

/// Serves requests on `stream` until it closes, the data plane stops, or a request needs
/// hyper.
pub(crate) async fn serve(
    worker: &Worker,
    stream: &mut TcpStream,
    client: &Client<'_>,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Served {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        let (head_len, body_len) = match next_request(worker, stream, &mut buf, stop).await {
            Next::Request { head_len, body_len } => (head_len, body_len),
            Next::Closed => return Served::Closed,
            Next::Other => return Served::Handoff(buf),
        };
        let snapshot = worker.current_snapshot();
        if out.capacity() == 0 {
            out = worker.buffers.take();
        }
        let Some(plan) = plan(worker, client, &snapshot, &buf[..head_len], &mut out) else {
            return Served::Handoff(buf);
        };
        let body = &buf[head_len..head_len + body_len];
        let keep = forward(worker, stream, plan, body, &mut out).await;
        buf.drain(..head_len + body_len);
        let done = !keep || stop.borrow().is_some();
        if done || buf.is_empty() {
            // Closing, or waiting for the next request, costs no buffer.
            worker.buffers.give(&mut buf);
            worker.buffers.give(&mut out);
        }
        if done {
            return Served::Closed;
        }
    }
}

/// What waiting for the next request gave.
enum Next {
    /// `buf` starts with a whole request for this path: its head and body lengths.
    Request { head_len: usize, body_len: usize },
    /// The connection is done.
    Closed,
    /// `buf` starts with something hyper has to answer.
    Other,
}

/// Reads until `buf` holds a whole request, within the idle limit (hyper's header timeout).
/// While no byte of a request has come, a stopping data plane closes the connection.
async fn next_request(
    worker: &Worker,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Next {
    let deadline = Instant::now() + worker.idle_limit;
    loop {
        if !buf.is_empty() {
            match measure(buf) {
                Measure::Complete { head_len, body_len } => {
                    return Next::Request { head_len, body_len }
                }
                Measure::Partial => {}
                Measure::Other => return Next::Other,
            }
        }
        let idle = buf.is_empty();
        if idle {
            // No buffer until the next request's first bytes are there.
            let ready = tokio::select! {
                biased;
                _ = stop.wait_for(Option::is_some) => return Next::Closed,
                ready = tokio::time::timeout_at(deadline, stream.readable()) => ready,
            };
            if !matches!(ready, Ok(Ok(()))) {
                return Next::Closed;
            }
            if buf.capacity() == 0 {
                *buf = worker.buffers.take();
            }
        }
        let read = tokio::time::timeout_at(deadline, wire::read_more(stream, buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            // A client that half-closes mid-request gets hyper's answer to what it sent
            // (a 400 for a body cut short).
            Ok(Ok(_)) if !idle => return Next::Other,
            _ => return Next::Closed,
        }
    }
}

/// How much of a request `buf` holds.
enum Measure {
    Complete {
        head_len: usize,
        body_len: usize,
    },
    Partial,
    /// Not for this path (or not HTTP at all: hyper says why).
    Other,
}

fn measure(buf: &[u8]) -> Measure {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Measure::Partial,
        _ => return Measure::Other,
    };
    if req.version != Some(1) {
        return Measure::Other;
    }
    let mut body_len = None;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(len) = parse_length(header.value) else {
                return Measure::Other;
            };
            if body_len.replace(len).is_some() {
                return Measure::Other;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Measure::Other;
        }
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > MAX_BODY {
        return Measure::Other;
    }
    if buf.len() < head_len + body_len {
        return Measure::Partial;
    }
    Measure::Complete { head_len, body_len }
}

/// A `Content-Length` value: digits only.
pub(crate) fn parse_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A request this path forwards, once its upstream head is written.
struct Plan<'s> {
    route: &'s Route,
    stats: Option<&'s Arc<DestStats>>,
    /// An idempotent method: without a body, it may be sent again after a reset.
    idempotent: bool,
    /// A `HEAD` request (its response has no body, whatever its headers say).
    head: bool,
    /// The client asked to close after this response.
    close: bool,
    server_timeout: Duration,
}

/// Routes the request whose head is `head` and writes the head the upstream gets into `out`:
/// `None` when the request is not for this path.
fn plan<'s>(
    worker: &Worker,
    client: &Client<'_>,
    snapshot: &'s Snapshot,
    head: &[u8],
    out: &mut Vec<u8>,
) -> Option<Plan<'s>> {
    let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut parsed);
    req.parse(head).ok()?;
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let target = req.path?;
    if method == Method::CONNECT
        || !target.starts_with('/')
        || !target.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
        || target.starts_with(crate::challenge::HTTP_PREFIX)
    {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if !matches!(uri_path::normalize(path), Ok(std::borrow::Cow::Borrowed(_))) {
        return None;
    }
    if let Some(page) = &worker.stats.page {
        if page.format(target).is_some() {
            return None;
        }
    }
    // The headers as hyper's path would see them, for the routing rules.
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut close = false;
    for header in req.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        if name == http::header::CONNECTION {
            close |= wire::lists(header.value, "close");
        }
        headers.append(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let host = hosts.next()?.to_str().ok()?;
    if hosts.next().is_some() {
        return None;
    }
    let facts = RequestFacts {
        host: Some(host),
        path,
        path_and_query: target,
        local_port: client.local_port,
        headers: &headers,
    };
    let Decision::Forward(route) = snapshot.table.decide(&facts) else {
        return None;
    };
    let dest = route.destination();
    let service = &route.service;
    let arrival = Arrival {
        method: method.as_str(),
        tls: false,
        client_cert_verified: false,
    };
    let plain = route::refusal(dest, arrival).is_none()
        && snapshot
            .auth
            .gate(&service.name, dest.ignore_authorization)
            .is_none()
        && dest.rewrites.is_empty()
        && service.request_headers.is_empty()
        && service.response_headers.is_empty()
        && !service.sticky
        && service.connection_mode.unwrap_or(worker.connection_mode) == ConnectionMode::KeepAlive
        && !dest.ssl_verify_none
        && dest.max_conn.is_none()
        && crate::compress::offer(
            service.compression.as_ref().or(worker.compression.as_ref()),
            &method,
            &headers,
        )
        .is_none();
    if !plain {
        return None;
    }
    write_upstream_head(&req, client, out)?;
    Some(Plan {
        route,
        stats: snapshot.stats.of(route),
        idempotent: crate::upstream::idempotent(&method),
        head: method == Method::HEAD,
        close,
        server_timeout: dest
            .timeout_server
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(worker.timeouts.server),
    })
}

/// The forwarding headers this path sets itself.
const FORWARDING: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"];

/// Writes the request head the upstream gets: the request line and headers as they came,
/// without hop-by-hop headers (and those `Connection` names), with the forwarding headers.
/// `None` when an `X-Forwarded-For` value is not visible ASCII (hyper's path drops it; this
/// one leaves such requests to it).
fn write_upstream_head(
    req: &httparse::Request<'_, '_>,
    client: &Client<'_>,
    out: &mut Vec<u8>,
) -> Option<()> {
    out.clear();
    out.extend_from_slice(req.method?.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path?.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut prior: Option<&[u8]> = None;
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("x-forwarded-for") && prior.is_none() {
            prior = Some(header.value);
        }
        if wire::HOP_BY_HOP
            .iter()
            .chain(&FORWARDING)
            .any(|d| header.name.eq_ignore_ascii_case(d))
            || wire::connection_names(req.headers, header.name)
        {
            continue;
        }
        wire::put_header(out, header.name.as_bytes(), header.value);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prior) = prior {
        // What `HeaderValue::to_str` accepts: visible ASCII, spaces and tabs.
        if !prior
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return None;
        }
        if !prior.trim_ascii().is_empty() {
            out.extend_from_slice(prior);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(client.ip.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-port: ");
    let _ = write!(out, "{}", client.local_port);
    out.extend_from_slice(b"\r\n\r\n");
    Some(())
}

/// Forwards one planned request and relays the answer: whether the client connection may
/// carry another request.
async fn forward(
    worker: &Worker,
    stream: &mut TcpStream,
    plan: Plan<'_>,
    body: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let hub = &worker.stats.hub;
    hub.request_arrived();
    let started = std::time::Instant::now();
    let in_flight = plan.stats.map(DestStats::begin);
    if let Some(stats) = plan.stats {
        stats.count(body.len() as u64);
    }
    let route = plan.route;
    let head = std::mem::take(out);
    let mut request = DirectRequest {
        head: &head,
        body,
        replayable: plan.idempotent && body.is_empty(),
        target: Target {
            host: route.upstream_host(),
            tasks_first: route.destination().outbound_hostname.is_none(),
            tls: false,
            max_conn: None,
        },
        server_timeout: plan.server_timeout,
        buffers: &worker.buffers,
    };
    let sent = worker
        .upstreams
        .send_direct(route.upstream_port, &mut request)
        .await;
    *out = head;
    let exchange = match sent {
        Ok(exchange) => exchange,
        Err(error) => {
            if let Some(stats) = plan.stats {
                stats.upstream_failed(&error);
            }
            tracing::warn!(service = %route.service.name, backend = %route.backend_name(), %error, "upstream request failed");
            let page = match error {
                SendError::Timeout { .. } => error_page::page(Failure::Timeout),
                SendError::Broken { .. } | SendError::BrokenDirect { .. } => {
                    error_page::page(Failure::BadGateway)
                }
                _ => error_page::unavailable(),
            };
            let status = page.status().as_u16();
            if let Some(in_flight) = &in_flight {
                in_flight.answered(status, started.elapsed());
            }
            hub.responded(status);
            return response::write_page(stream, page, plan.close, out).await;
        }
    };
    if let Some(stats) = plan.stats {
        stats.upstream_answered(exchange.conn.addr, &exchange.failed);
    }
    let relay = response::Relay {
        upstreams: &worker.upstreams,
        buffers: &worker.buffers,
        hub,
        in_flight: in_flight.as_ref(),
        started,
        head_request: plan.head,
        client_close: plan.close,
        server_timeout: plan.server_timeout,
    };
    relay.run(stream, exchange, out).await
}

#[cfg(test)]
mod tests;
