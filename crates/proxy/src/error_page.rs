//! The responses the data plane writes itself: error pages and redirects.
//!
//! Pages are small, self-contained HTML (no external stylesheets) and are sent with
//! `Cache-Control: no-cache` and `Connection: close` where DFP/HAProxy closed the connection.

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use http::{HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;

/// Why the data plane answered instead of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No route matched and there is no default backend.
    NoRoute,
    /// No upstream address could be resolved or connected to.
    Unavailable,
    /// The upstream did not send response headers within the server timeout.
    Timeout,
    /// The upstream sent an invalid or truncated response.
    BadGateway,
    /// A deny rule matched (method, plain HTTP, client certificate).
    Forbidden,
    /// The request itself was unusable.
    BadRequest,
}

impl Failure {
    /// The status code sent for this failure.
    pub fn status(self) -> StatusCode {
        match self {
            Failure::NoRoute | Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::BadGateway => StatusCode::BAD_GATEWAY,
            Failure::Forbidden => StatusCode::FORBIDDEN,
            Failure::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Failure::NoRoute => "No service is configured for this address.",
            Failure::Unavailable => "The service has no reachable instance right now.",
            Failure::Timeout => "The service did not answer in time.",
            Failure::BadGateway => "The service sent a response that could not be understood.",
            Failure::Forbidden => "This request is not allowed.",
            Failure::BadRequest => "The request could not be understood.",
        }
    }
}

/// An HTML error page for `failure`.
pub fn page(failure: Failure) -> Response<ProxyBody> {
    page_with(failure, failure.explanation())
}

/// Seconds a client is asked to wait (`Retry-After`) when a service has no ready task.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The 503 page of a service with no ready task (none appeared within `TIMEOUT_QUEUE`, none
/// answered, or every `maxConn` slot stayed taken), with `Retry-After`.
pub fn unavailable() -> Response<ProxyBody> {
    let mut resp = page(Failure::Unavailable);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    resp
}

/// A 400 page naming what is wrong with the request (`detail` is HTML-escaped).
pub fn bad_request(detail: &str) -> Response<ProxyBody> {
    let mut text = String::with_capacity(detail.len());
    for c in detail.chars() {
        match c {
            '<' => text.push_str("&lt;"),
            '>' => text.push_str("&gt;"),
            '&' => text.push_str("&amp;"),
            '"' => text.push_str("&quot;"),
            c => text.push(c),
        }
    }
    page_with(Failure::BadRequest, &text)
}

fn page_with(failure: Failure, text: &str) -> Response<ProxyBody> {
    let status = failure.status();
    let reason = status.canonical_reason().unwrap_or("Error");
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:4em auto;max-width:40em;color:#222}}\
h1{{font-size:1.4em}}p{{color:#555}}</style></head>\n<body><h1>{code} {reason}</h1>\n\
<p>{text}</p>\n<p><small>sluice</small></p></body></html>\n",
        code = status.as_u16(),
    );
    let mut resp = Response::new(ProxyBody::full(Bytes::from(html)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A redirect with an empty body, as HAProxy's `redirect` sends it.
pub fn redirect(status: u16, location: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    let h = resp.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            h.insert(LOCATION, v);
        }
        Err(_) => return page(Failure::BadRequest),
    }
    if status != 301 && status != 308 {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_their_status_and_close() {
        let r = page(Failure::NoRoute);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[CONNECTION], "close");
        assert_eq!(page(Failure::Timeout).status(), 504);
        assert_eq!(page(Failure::BadGateway).status(), 502);
        assert_eq!(page(Failure::Forbidden).status(), 403);
    }

    #[test]
    fn unavailable_pages_ask_to_retry() {
        let r = unavailable();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        assert!(page(Failure::NoRoute).headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn redirects_have_location_and_no_body() {
        let r = redirect(301, "http://example.com/x");
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()[LOCATION], "http://example.com/x");
        assert!(r.headers().get(CACHE_CONTROL).is_none());
        let r = redirect(302, "https://a/b");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-cache");
        assert_eq!(
            page(Failure::BadRequest).status(),
            redirect(302, "bad\nvalue").status()
        );
    }

    #[test]
    fn bad_request_pages_name_the_problem_escaped() {
        let r = bad_request("the path contains a <backslash> & more");
        assert_eq!(r.status(), 400);
        let ProxyBody::Full(Some(body)) = r.into_body() else {
            panic!("not a full body");
        };
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(
            text.contains("the path contains a &lt;backslash&gt; &amp; more"),
            "{text}"
        );
    }
}
