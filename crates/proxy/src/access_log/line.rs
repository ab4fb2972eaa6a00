//! One line of the request log: its fields in order, written as `key=value` text or as a JSON object.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::ser::{SerializeMap, Serializer};

use super::{redact_query, Kind, Trace};

/// A trace being rendered.
pub(super) struct Entry<'a> {
    pub(super) trace: &'a Trace,
    pub(super) total: Duration,
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
    /// Every field, in [`FIELDS`](super::FIELDS) order, then the captured headers.
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
    pub(super) fn text(&self, out: &mut String) {
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
    pub(super) fn json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
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
pub(super) fn push_u64(out: &mut String, mut n: u64) {
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
pub(super) fn push_millis(out: &mut String, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    out.push('.');
    push_padded(out, micros % 1000, 3);
}

/// Appends an address (`10.0.0.7:51234`, `[::1]:5000`).
pub(super) fn push_addr(out: &mut String, addr: SocketAddr) {
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
pub(super) fn push_time(out: &mut String, time: SystemTime) {
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

pub(super) fn quote(out: &mut String, value: &str) {
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
