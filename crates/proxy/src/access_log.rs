//! The request log (`DEBUG=true`): one line per HTTP request and one per layer-4 connection.
//!
//! A [`Trace`] is started when a request (or connection) arrives, filled in as it goes
//! through the phases of [`crate::forward`] (or [`crate::stream`]), and written when it is
//! dropped — so a request whose client goes away before the answer is still logged, as
//! `client_aborted`. With `DEBUG` off there is no [`AccessLog`] and no trace: the request path
//! only tests an `Option`.
//!
//! Lines are `key=value` text or, with `LOG_FORMAT=json`, one JSON object per line; both carry
//! the same fields ([`FIELDS`]). Each worker thread appends its lines to its own buffer; a
//! flusher thread writes the buffers to standard output every [`FLUSH_EVERY`] (whole lines,
//! under the lock the other log lines take too), a worker writes its buffer itself when it
//! passes [`FLUSH_AT`] bytes, and a worker thread's buffer is written when the thread ends (so
//! a clean shutdown loses nothing). One `write` per line cost about 15% more CPU per request. The request id (`X-Request-Id`) is the
//! client's when it sent a sane one, otherwise a per-worker random prefix and a counter; it is
//! passed upstream.
//!
//! An HTTP line is written when the response body has been sent (or dropped): the trace rides
//! in the response body ([`Trace::into_body`]), so `bytes_out` counts the body bytes actually
//! sent and `bytes_in` the request body bytes actually passed upstream (0 for a request that
//! was not forwarded); a response body that ends short of its `Content-Length` is logged as
//! `body_incomplete`. `t_wait_ms` runs from the connection's start (its first byte on plain
//! HTTP, the end of the TLS handshake on TLS), or from the end of the previous response on a
//! kept-alive connection, to the
//! moment the request head was read; `t_connect_ms` is the time spent opening upstream
//! connections (0 when a pooled one was reused). A layer-4 line counts the bytes copied.

use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Body;
use sluice_core::access_log::{AccessLogSettings, LogFormat};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{Meter, MeteredBody, ProxyBody};
use crate::upstream::SendError;

mod buffer;
mod line;

use buffer::Buffer;
pub use buffer::{FLUSH_AT, FLUSH_EVERY};
use line::Entry;

/// The request-id header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The fields of every line, in order (captured headers follow as `header.<name>`).
pub const FIELDS: [&str; 18] = [
    "time",
    "kind",
    "client",
    "port",
    "service",
    "upstream",
    "method",
    "path",
    "status",
    "bytes_in",
    "bytes_out",
    "t_wait_ms",
    "t_connect_ms",
    "t_response_ms",
    "t_total_ms",
    "retries",
    "termination",
    "request_id",
];

/// The longest client-sent request id that is kept.
const MAX_REQUEST_ID: usize = 128;

/// What the request log writes and how; one per data plane, shared by its workers.
#[derive(Debug, Clone)]
pub struct AccessLog {
    errors_only: bool,
    capture: Vec<(HeaderName, usize)>,
    format: LogFormat,
}

impl AccessLog {
    /// The log `settings` ask for, or `None` when `DEBUG` is off.
    pub fn new(settings: &AccessLogSettings) -> Option<AccessLog> {
        if !settings.enabled {
            return None;
        }
        let capture = settings
            .capture
            .iter()
            .filter_map(|h| {
                HeaderName::from_bytes(h.name.as_bytes())
                    .ok()
                    .map(|name| (name, h.max_len))
            })
            .collect();
        Some(AccessLog {
            errors_only: settings.errors_only,
            capture,
            format: settings.format,
        })
    }

    /// Starts the trace of an HTTP request: notes what the client sent, and makes sure the
    /// request carries an `X-Request-Id`.
    pub(crate) fn http<B: Body>(
        self: &Rc<Self>,
        client: SocketAddr,
        port: u16,
        idle_since: &Rc<Cell<Instant>>,
        req: &mut Request<B>,
    ) -> Trace {
        let request_id = match req.headers().get(&X_REQUEST_ID) {
            Some(id) if sane_request_id(id.as_bytes()) => id.clone(),
            _ => {
                let id = new_request_id();
                req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let uri = req.uri().clone();
        let captured = self
            .capture
            .iter()
            .map(|(name, max)| {
                req.headers()
                    .get(name)
                    .map(|v| cut(&String::from_utf8_lossy(v.as_bytes()), *max).to_string())
            })
            .collect();
        let mut trace = Trace::new(self.clone(), Kind::Http, client, port);
        trace.method = Some(req.method().clone());
        trace.uri = Some(uri);
        trace.request_id = Some(request_id);
        trace.captured = captured;
        trace.bytes_in = Some(0);
        trace.wait = Some(trace.started.saturating_duration_since(idle_since.get()));
        trace.idle_since = Some(idle_since.clone());
        trace.termination = "client_aborted";
        trace
    }

    /// Starts the trace of a layer-4 connection.
    pub(crate) fn tcp(self: &Rc<Self>, client: SocketAddr, port: u16) -> Trace {
        let mut trace = Trace::new(self.clone(), Kind::Tcp, client, port);
        trace.bytes_in = Some(0);
        trace.bytes_out = Some(0);
        trace.termination = "client_aborted";
        trace
    }
}

/// Words that mark a query parameter of a web request as a credential (`access_token`,
/// `api_key`, `X-Amz-Signature`, `session_id`, …), on top of Sluice's own secret parameters.
const CREDENTIAL_WORDS: &[&str] = &["token", "secret", "key", "signature", "session", "auth"];

/// `query` with the values of secret parameters ([`sluice_core::redact::is_secret_param`]) and of
/// credential-looking ones ([`CREDENTIAL_WORDS`], and OAuth's `code`) replaced.
fn redact_query(query: &str) -> std::borrow::Cow<'_, str> {
    sluice_core::redact::redact_query_with(query, |name| {
        let lower = name.to_ascii_lowercase();
        sluice_core::redact::is_secret_param(name)
            || lower == "code"
            || CREDENTIAL_WORDS.iter().any(|w| lower.contains(w))
    })
}

/// Client ids are kept when they are short and made of URL-safe characters (UUIDs, ULIDs, hex,
/// base64): nothing that could break a log line or a header.
fn sane_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

thread_local! {
    /// This thread's request-id prefix (random, drawn once) and counter.
    static REQUEST_IDS: Cell<(u64, u64)> = Cell::new((
        std::collections::hash_map::RandomState::new().build_hasher().finish(),
        0,
    ));
}

/// A new request id: this worker's random prefix and the next value of its counter.
fn new_request_id() -> HeaderValue {
    let (prefix, n) = REQUEST_IDS.with(|ids| {
        let (prefix, n) = ids.get();
        ids.set((prefix, n.wrapping_add(1)));
        (prefix, n)
    });
    // `{prefix:016x}-{n:x}` written by hand into a stack buffer: one allocation (the value).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 33];
    for (i, byte) in text[..16].iter_mut().enumerate() {
        *byte = HEX[((prefix >> (60 - 4 * i)) & 0xf) as usize];
    }
    text[16] = b'-';
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        text[17 + i] = HEX[((n >> (4 * (digits - 1 - i))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&text[..17 + digits]).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Tcp,
}

/// One request or connection on its way through the proxy; written when dropped.
pub(crate) struct Trace {
    log: Rc<AccessLog>,
    kind: Kind,
    time: SystemTime,
    started: Instant,
    client: SocketAddr,
    port: u16,
    service: Option<String>,
    upstream: Option<SocketAddr>,
    method: Option<http::Method>,
    /// The request target as received (a cheap clone: it shares the request's bytes).
    uri: Option<http::Uri>,
    status: Option<u16>,
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    wait: Option<Duration>,
    connect: Option<Duration>,
    response: Option<Duration>,
    retries: usize,
    termination: &'static str,
    request_id: Option<HeaderValue>,
    captured: Vec<Option<String>>,
    counters: Option<Counters>,
    /// The request body bytes passed upstream ([`Trace::request_meter`]).
    sent_upstream: Option<Arc<RequestMeter>>,
    /// The response body's declared length.
    declared_out: Option<u64>,
    /// The connection's "waiting since": set to the end of this response when written.
    idle_since: Option<Rc<Cell<Instant>>>,
}

impl Trace {
    fn new(log: Rc<AccessLog>, kind: Kind, client: SocketAddr, port: u16) -> Trace {
        Trace {
            log,
            kind,
            time: SystemTime::now(),
            started: Instant::now(),
            client,
            port,
            service: None,
            upstream: None,
            method: None,
            uri: None,
            status: None,
            bytes_in: None,
            bytes_out: None,
            wait: None,
            connect: None,
            response: None,
            retries: 0,
            termination: "",
            request_id: None,
            captured: Vec::new(),
            counters: None,
            sent_upstream: None,
            declared_out: None,
            idle_since: None,
        }
    }

    /// The request (connection) was routed to `service`.
    pub(crate) fn routed(&mut self, service: &str) {
        self.service = Some(service.to_string());
    }

    /// Sets how the request (connection) ended.
    pub(crate) fn end(&mut self, termination: &'static str) {
        self.termination = termination;
    }

    /// An upstream answered the request sent at `sent`, after `retries` failed connects;
    /// opening connections took `connect`.
    pub(crate) fn answered(
        &mut self,
        addr: SocketAddr,
        retries: usize,
        sent: Option<Instant>,
        connect: Duration,
    ) {
        self.upstream = Some(addr);
        self.retries = retries;
        self.connect = Some(connect);
        self.response = sent.map(|s| s.elapsed().saturating_sub(connect));
    }

    /// The meter of the request body on its way upstream: counts for this line and, when
    /// given, for the destination's statistics.
    pub(crate) fn request_meter(
        &mut self,
        stats: Option<&Arc<crate::stats::DestStats>>,
    ) -> Arc<RequestMeter> {
        let meter = Arc::new(RequestMeter {
            stats: stats.cloned(),
            bytes: AtomicU64::new(0),
        });
        self.sent_upstream = Some(meter.clone());
        meter
    }

    /// `body` carrying this trace: the bytes it sends are counted, and the line is written
    /// when it is dropped (sent to the end, or abandoned).
    pub(crate) fn into_body(self, body: ProxyBody) -> ProxyBody {
        ProxyBody::Metered(MeteredBody::new(
            body,
            ResponseMeter {
                trace: self,
                sent: Cell::new(0),
            },
        ))
    }

    /// The upstream phase failed.
    pub(crate) fn upstream_failed(&mut self, error: &SendError, sent: Option<Instant>) {
        self.response = sent.map(|s| s.elapsed());
        self.termination = match error {
            SendError::Resolve { .. } => "upstream_unresolved",
            SendError::Queue { .. } => "queue_timeout",
            SendError::Unreachable { failed, .. } => {
                self.retries = failed.len().saturating_sub(1);
                self.upstream = failed.last().copied();
                "upstream_unreachable"
            }
            SendError::Timeout { addr } => {
                self.upstream = Some(*addr);
                "upstream_timeout"
            }
            SendError::Broken { addr, .. } | SendError::BrokenDirect { addr, .. } => {
                self.upstream = Some(*addr);
                "upstream_broken"
            }
        };
    }

    /// The response head is ready: the status and declared length are noted; a request that
    /// got here without an explicit ending gets one from its status.
    pub(crate) fn responded<B: Body>(&mut self, resp: &Response<B>) {
        let status = resp.status().as_u16();
        self.status = Some(status);
        self.declared_out = resp.body().size_hint().exact();
        if self.termination == "client_aborted" {
            self.termination = match status {
                _ if self.response.is_some() => "ok",
                400 => "bad_request",
                401 => "unauthorized",
                403 => "denied",
                300..=399 => "redirect",
                _ => "local",
            };
        }
    }

    /// A layer-4 connection to `addr` was established after `tries` connect attempts begun
    /// at `connecting` (the time before it was spent reading the client's ClientHello).
    pub(crate) fn connected(&mut self, addr: SocketAddr, tries: usize, connecting: Instant) {
        self.upstream = Some(addr);
        self.retries = tries.saturating_sub(1);
        self.wait = Some(connecting.saturating_duration_since(self.started));
        self.connect = Some(connecting.elapsed());
    }

    /// `stream` wrapped so that the bytes it reads (from the client) and writes (to it) are
    /// counted into this trace; `already` bytes were read before.
    pub(crate) fn count<S>(&mut self, stream: S, already: usize) -> Counted<S> {
        let counters = Counters::default();
        counters.read.set(already as u64);
        self.counters = Some(counters.clone());
        Counted {
            inner: stream,
            counters,
        }
    }

    /// A failure for `DEBUG_ERRORS_ONLY`: an HTTP request answered 500 or more or not at all,
    /// a layer-4 connection that did not end normally.
    fn failed(&self) -> bool {
        match self.kind {
            Kind::Http => {
                self.status.is_none_or(|s| s >= 500) || self.termination == "body_incomplete"
            }
            Kind::Tcp => self.termination != "closed",
        }
    }

    fn write(&mut self) {
        if let Some(counters) = &self.counters {
            self.bytes_in = Some(counters.read.get());
            self.bytes_out = Some(counters.written.get());
        }
        if let Some(meter) = &self.sent_upstream {
            self.bytes_in = Some(meter.bytes.load(Ordering::Relaxed));
        }
        if let Some(idle_since) = &self.idle_since {
            idle_since.set(Instant::now());
        }
        if self.log.errors_only && !self.failed() {
            return;
        }
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            let entry = Entry {
                trace: self,
                total: self.started.elapsed(),
            };
            match self.log.format {
                LogFormat::Text => entry.text(&mut line),
                LogFormat::Json => {
                    let mut out = std::mem::take(&mut *line).into_bytes();
                    let _ = entry.json(&mut out);
                    *line = String::from_utf8(out).unwrap_or_default();
                }
            }
            line.push('\n');
            let _ = BUFFER.try_with(|buffer| buffer.append(line.as_bytes()));
        });
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        self.write();
    }
}

thread_local! {
    /// This thread's line, reused for every line.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
    /// This thread's lines not yet written.
    static BUFFER: Buffer = Buffer::register();
}

/// Byte counts of a layer-4 client connection.
#[derive(Clone, Default)]
struct Counters {
    read: Rc<Cell<u64>>,
    written: Rc<Cell<u64>>,
}

/// Counts a request body's bytes for the line (and the destination's statistics).
pub(crate) struct RequestMeter {
    stats: Option<Arc<crate::stats::DestStats>>,
    bytes: AtomicU64,
}

impl Meter for RequestMeter {
    fn count(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(stats) = &self.stats {
            stats.count(bytes);
        }
    }
}

/// Rides in a response body: counts what it sends, then lets the trace write its line.
struct ResponseMeter {
    trace: Trace,
    sent: Cell<u64>,
}

impl Meter for ResponseMeter {
    fn count(&self, bytes: u64) {
        bump(&self.sent, bytes as usize);
    }
}

impl Drop for ResponseMeter {
    fn drop(&mut self) {
        let sent = self.sent.get();
        self.trace.bytes_out = Some(sent);
        if self
            .trace
            .declared_out
            .is_some_and(|declared| sent < declared)
        {
            self.trace.termination = "body_incomplete";
        }
        // The trace drops next and writes the line.
    }
}

/// A stream whose bytes read and written are counted ([`Trace::count`]).
pub(crate) struct Counted<S> {
    inner: S,
    counters: Counters,
}

fn bump(counter: &Cell<u64>, n: usize) {
    counter.set(counter.get().saturating_add(n as u64));
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        bump(&this.counters.read, buf.filled().len() - before);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            bump(&this.counters.written, n);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
