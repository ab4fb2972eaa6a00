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
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Body;
use serde::ser::{SerializeMap, Serializer};
use sluice_core::access_log::{AccessLogSettings, LogFormat};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{Meter, MeteredBody, ProxyBody};
use crate::upstream::SendError;

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

/// How often the flusher thread writes the workers' lines.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A worker writes its lines itself once they pass this many bytes.
pub const FLUSH_AT: usize = 64 * 1024;

/// Every thread's buffer, for the flusher.
static BUFFERS: Mutex<Vec<Weak<Mutex<Vec<u8>>>>> = Mutex::new(Vec::new());
static FLUSHER: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One thread's lines; written when the thread ends.
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn register() -> Buffer {
        let lines = Arc::new(Mutex::new(Vec::with_capacity(FLUSH_AT)));
        lock(&BUFFERS).push(Arc::downgrade(&lines));
        FLUSHER.call_once(|| {
            let started = std::thread::Builder::new()
                .name("sluice-access-log".into())
                .spawn(flusher);
            if let Err(error) = started {
                tracing::error!(%error, "cannot start the request log's writer; lines are written when a buffer fills");
            }
        });
        Buffer(lines)
    }

    fn append(&self, line: &[u8]) {
        let mut lines = lock(&self.0);
        lines.extend_from_slice(line);
        if lines.len() >= FLUSH_AT {
            write_out(&lines);
            lines.clear();
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut lines = lock(&self.0);
        write_out(&lines);
        lines.clear();
    }
}

fn write_out(lines: &[u8]) {
    if !lines.is_empty() {
        let _ = std::io::stdout().lock().write_all(lines);
    }
}

/// Writes every thread's lines every [`FLUSH_EVERY`], swapping each buffer for a spare one so
/// that no worker waits for standard output.
fn flusher() {
    let mut spare = Vec::with_capacity(FLUSH_AT);
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let buffers: Vec<Arc<Mutex<Vec<u8>>>> = {
            let mut all = lock(&BUFFERS);
            all.retain(|b| b.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        for buffer in buffers {
            std::mem::swap(&mut *lock(&buffer), &mut spare);
            write_out(&spare);
            spare.clear();
        }
    }
}

/// A trace being rendered.
struct Entry<'a> {
    trace: &'a Trace,
    total: Duration,
}

fn text(value: Option<&str>) -> Value<'_> {
    value.map_or(Value::None, Value::Text)
}

/// A field's value.
enum Value<'a> {
    Text(&'a str),
    Number(u64),
    Millis(Duration),
    Addr(SocketAddr),
    Time(SystemTime),
    /// A path with its query, whose secret values are redacted as it is written.
    Path(&'a str, Option<&'a str>),
    None,
}

impl Entry<'_> {
    /// Every field, in [`FIELDS`] order, then the captured headers.
    fn fields(&self, mut each: impl FnMut(&str, Value<'_>)) {
        let t = self.trace;
        let number = |v: Option<u64>| v.map_or(Value::None, Value::Number);
        let millis = |v: Option<Duration>| v.map_or(Value::None, Value::Millis);
        each("time", Value::Time(t.time));
        each(
            "kind",
            Value::Text(match t.kind {
                Kind::Http => "http",
                Kind::Tcp => "tcp",
            }),
        );
        each("client", Value::Addr(t.client));
        each("port", Value::Number(u64::from(t.port)));
        each("service", text(t.service.as_deref()));
        each("upstream", t.upstream.map_or(Value::None, Value::Addr));
        each("method", text(t.method.as_ref().map(http::Method::as_str)));
        each(
            "path",
            match &t.uri {
                Some(uri) => Value::Path(uri.path(), uri.query()),
                None => Value::None,
            },
        );
        each("status", number(t.status.map(u64::from)));
        each("bytes_in", number(t.bytes_in));
        each("bytes_out", number(t.bytes_out));
        each("t_wait_ms", millis(t.wait));
        each("t_connect_ms", millis(t.connect));
        each("t_response_ms", millis(t.response));
        each("t_total_ms", Value::Millis(self.total));
        each("retries", Value::Number(t.retries as u64));
        each("termination", Value::Text(t.termination));
        each(
            "request_id",
            text(t.request_id.as_ref().and_then(|v| v.to_str().ok())),
        );
        if !t.log.capture.is_empty() {
            let mut key = String::with_capacity(32);
            for ((name, _), value) in t.log.capture.iter().zip(&t.captured) {
                key.clear();
                key.push_str("header.");
                key.push_str(name.as_str());
                each(&key, text(value.as_deref()));
            }
        }
    }

    /// `key=value` pairs separated by spaces; values with spaces, quotes, `=` or control
    /// characters are quoted with `\"`, `\\` and `\u{..}` escapes; a missing value is `-`.
    /// Numbers, times and IPv4 addresses are written digit by digit (no formatting machinery).
    fn text(&self, out: &mut String) {
        self.fields(|key, value| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            match value {
                Value::Text(v) => quote(out, v),
                Value::Number(n) => push_u64(out, n),
                Value::Millis(d) => push_millis(out, d),
                Value::Addr(addr) => push_addr(out, addr),
                Value::Time(time) => push_time(out, time),
                Value::Path(path, query) => match query {
                    None => quote(out, path),
                    Some(query) => {
                        let mut full = String::with_capacity(path.len() + query.len() + 1);
                        full.push_str(path);
                        full.push('?');
                        full.push_str(&redact_query(query));
                        quote(out, &full);
                    }
                },
                Value::None => out.push('-'),
            }
        });
    }

    /// One JSON object; a missing value is `null`.
    fn json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let mut serializer = serde_json::Serializer::new(out);
        let mut map = serializer.serialize_map(None)?;
        let mut result = Ok(());
        let mut scratch = String::new();
        self.fields(|key, value| {
            if result.is_err() {
                return;
            }
            result = match value {
                Value::Text(v) => map.serialize_entry(key, v),
                Value::Number(n) => map.serialize_entry(key, &n),
                Value::Millis(d) => {
                    let ms = (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
                    map.serialize_entry(key, &ms)
                }
                Value::Addr(_) | Value::Time(_) | Value::Path(..) => {
                    scratch.clear();
                    match value {
                        Value::Addr(addr) => push_addr(&mut scratch, addr),
                        Value::Time(time) => push_time(&mut scratch, time),
                        Value::Path(path, query) => {
                            scratch.push_str(path);
                            if let Some(query) = query {
                                scratch.push('?');
                                scratch.push_str(&redact_query(query));
                            }
                        }
                        _ => {}
                    }
                    map.serialize_entry(key, scratch.as_str())
                }
                Value::None => map.serialize_entry(key, &()),
            };
        });
        result?;
        map.end()
    }
}

/// Appends `n` in decimal.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// Appends `n` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = 1;
    let mut rest = n / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    for _ in digits..width {
        out.push('0');
    }
    push_u64(out, n);
}

/// Appends a duration as milliseconds with three decimals (`1.391`).
fn push_millis(out: &mut String, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    out.push('.');
    push_padded(out, micros % 1000, 3);
}

/// Appends an address (`10.0.0.7:51234`, `[::1]:5000`).
fn push_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(octet));
            }
            out.push(':');
            push_u64(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

thread_local! {
    /// The last second rendered by [`push_time`] and its text up to the seconds.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `2026-11-28T09:30:00.123Z`; the calendar part is computed once per second per thread.
fn push_time(out: &mut String, time: SystemTime) {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let t = time::OffsetDateTime::from(time);
            let mut text = String::with_capacity(19);
            let _ = write!(
                text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            *cache = (secs, text);
        }
        out.push_str(&cache.1);
    });
    out.push('.');
    push_padded(out, u64::from(since.subsec_millis()), 3);
    out.push('Z');
}

fn quote(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_control() && c != ' ' && c != '"' && c != '=' && c != '\\');
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
mod tests {
    use super::*;

    fn log(format: LogFormat) -> Rc<AccessLog> {
        Rc::new(AccessLog {
            errors_only: false,
            capture: vec![(HeaderName::from_static("host"), 4)],
            format,
        })
    }

    fn rendered(trace: &Trace) -> String {
        let entry = Entry {
            trace,
            total: Duration::from_micros(1500),
        };
        match trace.log.format {
            LogFormat::Text => {
                let mut out = String::new();
                entry.text(&mut out);
                out
            }
            LogFormat::Json => {
                let mut out = Vec::new();
                entry.json(&mut out).unwrap();
                String::from_utf8(out).unwrap()
            }
        }
    }

    fn idle() -> Rc<Cell<Instant>> {
        Rc::new(Cell::new(Instant::now()))
    }

    fn request(uri: &str) -> Request<String> {
        Request::builder()
            .uri(uri)
            .header("host", "example.com")
            .body(String::new())
            .unwrap()
    }

    #[test]
    fn text_lines_have_every_field_and_quote_what_needs_it() {
        let mut req = request("/a%20b?password=hunter2&x=1");
        let mut trace =
            log(LogFormat::Text).http("127.0.0.1:5000".parse().unwrap(), 80, &idle(), &mut req);
        trace.routed("web");
        trace.answered(
            "10.0.0.1:8080".parse().unwrap(),
            1,
            Some(Instant::now()),
            Duration::from_millis(2),
        );
        trace.responded(&Response::new(String::from("hello")));
        let line = rendered(&trace);
        for field in FIELDS {
            assert!(
                line.contains(&format!("{field}=")),
                "{field} missing: {line}"
            );
        }
        assert!(line.contains(" service=web "), "{line}");
        assert!(line.contains(" upstream=10.0.0.1:8080 "), "{line}");
        assert!(
            line.contains(" status=200 bytes_in=0 bytes_out=- "),
            "{line}"
        );
        assert!(line.contains(" retries=1 termination=ok "), "{line}");
        assert!(line.contains(" t_total_ms=1.500 "), "{line}");
        assert!(line.contains(" t_connect_ms=2.000 "), "{line}");
        assert!(!line.contains(" t_wait_ms=- "), "{line}");
        assert!(line.contains(" header.host=exam"), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
        assert!(
            line.contains("path=\"/a%20b?password=") || line.contains("path=/a%20b?password="),
            "{line}"
        );
        std::mem::forget(trace);
    }

    #[test]
    fn json_lines_have_every_field() {
        let mut req = request("/x");
        let mut trace =
            log(LogFormat::Json).http("[::1]:5000".parse().unwrap(), 81, &idle(), &mut req);
        trace.end("no_route");
        trace.responded(&Response::new(String::new()));
        let value: serde_json::Value = serde_json::from_str(&rendered(&trace)).unwrap();
        for field in FIELDS {
            assert!(value.get(field).is_some(), "{field} missing: {value}");
        }
        assert_eq!(value["client"], "[::1]:5000");
        assert_eq!(value["port"], 81);
        assert_eq!(value["service"], serde_json::Value::Null);
        assert_eq!(value["termination"], "no_route");
        assert_eq!(value["t_total_ms"], 1.5);
        assert_eq!(value["header.host"], "exam");
        std::mem::forget(trace);
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_made_otherwise() {
        let log = log(LogFormat::Text);
        let client = "127.0.0.1:1".parse().unwrap();
        let mut req = request("/");
        req.headers_mut()
            .insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        let trace = log.http(client, 80, &idle(), &mut req);
        assert_eq!(req.headers()[&X_REQUEST_ID], "abc-123");
        std::mem::forget(trace);
        let mut ids = Vec::new();
        for sent in ["", "a b", "<script>"] {
            let mut req = request("/");
            if !sent.is_empty() {
                req.headers_mut()
                    .insert(&X_REQUEST_ID, HeaderValue::from_str(sent).unwrap());
            }
            let trace = log.http(client, 80, &idle(), &mut req);
            let id = req.headers()[&X_REQUEST_ID].to_str().unwrap().to_string();
            assert!(sane_request_id(id.as_bytes()) && id != sent, "{id}");
            ids.push(id);
            std::mem::forget(trace);
        }
        ids.dedup();
        assert_eq!(ids.len(), 3, "ids repeat: {ids:?}");
    }

    #[test]
    fn only_failures_count_for_errors_only() {
        let log = log(LogFormat::Text);
        let client = "127.0.0.1:1".parse().unwrap();
        let outcome = |status: Option<u16>| {
            let mut trace = log.http(client, 80, &idle(), &mut request("/"));
            if let Some(status) = status {
                trace.responded(
                    &Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap(),
                );
            }
            let failed = trace.failed();
            std::mem::forget(trace);
            failed
        };
        assert!(!outcome(Some(200)));
        assert!(!outcome(Some(404)));
        assert!(outcome(Some(503)));
        assert!(outcome(None));
        let mut tcp = log.tcp(client, 9000);
        assert!(tcp.failed());
        tcp.end("closed");
        assert!(!tcp.failed());
        std::mem::forget(tcp);
    }

    #[test]
    fn values_are_cut_on_character_boundaries_and_quoted() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 5), "abc");
        let mut out = String::new();
        quote(&mut out, "a \"b\"\n");
        assert_eq!(out, "\"a \\\"b\\\"\\u{a}\"");
        let mut out = String::new();
        quote(&mut out, "");
        assert_eq!(out, "\"\"");
    }

    #[test]
    fn queries_lose_secret_and_credential_values() {
        assert_eq!(redact_query("a=1&b=2"), "a=1&b=2");
        assert_eq!(
            redact_query("password=x&access_token=y&API_KEY=z&code=c&q=keep"),
            "password=REDACTED&access_token=REDACTED&API_KEY=REDACTED&code=REDACTED&q=keep"
        );
        assert_eq!(
            redact_query("users=u:p&tokenless"),
            "users=REDACTED&tokenless"
        );
    }

    #[test]
    fn generated_ids_are_the_prefix_and_the_counter_in_hex() {
        for n in [0u64, 9, 10, 255, 0x1234_5678_9abc, u64::MAX] {
            let prefix = REQUEST_IDS.with(|ids| {
                let (prefix, _) = ids.get();
                ids.set((prefix, n));
                prefix
            });
            assert_eq!(new_request_id(), format!("{prefix:016x}-{n:x}").as_str());
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_322_200_123);
        let mut out = String::new();
        push_time(&mut out, t);
        push_time(&mut out, t + Duration::from_millis(5));
        assert_eq!(out, "2025-11-28T09:30:00.123Z2025-11-28T09:30:00.128Z");
        let mut out = String::new();
        push_millis(&mut out, Duration::from_micros(1_391));
        out.push(' ');
        push_millis(&mut out, Duration::from_micros(7));
        out.push(' ');
        push_addr(&mut out, "10.0.0.7:51234".parse().unwrap());
        out.push(' ');
        push_u64(&mut out, 0);
        assert_eq!(out, "1.391 0.007 10.0.0.7:51234 0");
    }
}
