//! Query-string encoding and notification URL composition, byte-compatible with DFSL.
//!
//! DFSL builds notification URLs with Go's `url.Values.Encode()`: keys sorted by byte
//! order, every key and value passed through `url.QueryEscape` (space becomes `+`, only
//! `A-Z a-z 0-9 - _ . ~` stay literal, everything else is `%XX` in upper-case hex). A query
//! already present in the configured URL is decoded and re-encoded the same way and placed
//! before the notification parameters. This module owns exactly that text transformation;
//! it does no network IO and knows nothing about Docker.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Escapes one query key or value the way Go's `url.QueryEscape` does.
pub(crate) fn query_escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            other => {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

/// Decodes one query component the way Go's `url.QueryUnescape` does (`+` is a space).
/// Returns `None` for a malformed `%` escape or a result that is not UTF-8; Go drops such
/// pairs from `url.Query()`, and so do we.
pub(crate) fn query_unescape(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| char::from(*b).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|b| char::from(*b).to_digit(16))?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a parameter map as `k=v&k=v` with sorted keys (a `BTreeMap` iterates in byte order).
pub(crate) fn encode_params(params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, value) in params {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&query_escape(key));
        out.push('=');
        out.push_str(&query_escape(value));
    }
    out
}

/// Re-encodes a query that was part of a configured URL the way Go's
/// `url.Query().Encode()` does: pairs split on `&`, decoded, grouped by key (keeping the
/// order of repeated values), keys sorted, a bare `x` becoming `x=`. Returns `None` when
/// nothing is left.
pub(crate) fn reencode_query(raw: &str) -> Option<String> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(key), Some(value)) = (query_unescape(key), query_unescape(value)) else {
            continue;
        };
        grouped.entry(key).or_default().push(value);
    }
    let mut out = String::new();
    for (key, values) in &grouped {
        for value in values {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&query_escape(key));
            out.push('=');
            out.push_str(&query_escape(value));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Joins a base URL (scheme, authority and path, no query), the re-encoded configured
/// query (if any) and the notification parameters into the final URL.
pub(crate) fn compose_url(
    base: &str,
    configured_query: Option<&str>,
    params: &BTreeMap<String, String>,
) -> String {
    let encoded = encode_params(params);
    let query = match (configured_query, encoded.is_empty()) {
        (Some(existing), false) => format!("{existing}&{encoded}"),
        (Some(existing), true) => existing.to_owned(),
        (None, _) => encoded,
    };
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn escapes_like_go_query_escape() {
        let cases = [
            ("/demo", "%2Fdemo"),
            ("a b", "a+b"),
            ("a,b", "a%2Cb"),
            ("x:y", "x%3Ay"),
            ("*domain.com", "%2Adomain.com"),
            ("~keep-_.", "~keep-_."),
            ("\"[]", "%22%5B%5D"),
            ("é", "%C3%A9"),
            ("a+b", "a%2Bb"),
            ("100%", "100%25"),
        ];
        for (raw, want) in cases {
            assert_eq!(query_escape(raw), want, "escaping {raw:?}");
        }
    }

    #[test]
    fn unescape_round_trips_and_rejects_bad_escapes() {
        for raw in ["/demo", "a b", "é,*~", "100%"] {
            assert_eq!(query_unescape(&query_escape(raw)).as_deref(), Some(raw));
        }
        assert_eq!(query_unescape("%zz"), None);
        assert_eq!(query_unescape("%4"), None);
        assert_eq!(query_unescape("%ff"), None, "not UTF-8");
    }

    #[test]
    fn params_are_sorted_by_key() {
        let params = map(&[
            ("servicePath", "/demo"),
            ("serviceName", "go-demo"),
            ("port", "8080"),
            ("distribute", "true"),
            ("replicas", "1"),
        ]);
        assert_eq!(
            encode_params(&params),
            "distribute=true&port=8080&replicas=1&serviceName=go-demo&servicePath=%2Fdemo"
        );
    }

    #[test]
    fn configured_query_is_reencoded_and_placed_first() {
        assert_eq!(
            reencode_query("hello=world").as_deref(),
            Some("hello=world")
        );
        assert_eq!(
            reencode_query("dog=cat&bear=fox&x").as_deref(),
            Some("bear=fox&dog=cat&x=")
        );
        assert_eq!(
            reencode_query("b=2&a=1&b=1").as_deref(),
            Some("a=1&b=2&b=1"),
            "repeated keys keep their order"
        );
        assert_eq!(reencode_query("p=%2fx+y").as_deref(), Some("p=%2Fx+y"));
        assert_eq!(reencode_query("bad=%zz&ok=1").as_deref(), Some("ok=1"));
        assert_eq!(reencode_query("&&"), None);

        let url = compose_url(
            "http://proxy:8080/v1/docker-flow-proxy/reconfigure",
            Some("hello=world"),
            &map(&[("serviceName", "hello")]),
        );
        assert_eq!(
            url,
            "http://proxy:8080/v1/docker-flow-proxy/reconfigure?hello=world&serviceName=hello"
        );
    }

    #[test]
    fn compose_without_any_query_has_no_question_mark() {
        assert_eq!(
            compose_url("http://p/x", None, &BTreeMap::new()),
            "http://p/x"
        );
        assert_eq!(
            compose_url("http://p/x", Some("a=1"), &BTreeMap::new()),
            "http://p/x?a=1"
        );
    }
}
