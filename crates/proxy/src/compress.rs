//! HTTP response compression (`compressionAlgo` / `compressionType`, and the
//! `COMPRESSION_ALGO` / `COMPRESSION_TYPE` defaults).
//!
//! It owns the two decisions and the body encoder:
//!
//! * [`offer`], at request time: which coding the client accepts. The configured algorithms
//!   are tried **in configured order** and the first one the `Accept-Encoding` header allows
//!   (q-value above 0, directly or through `*`) wins. `identity` winning means "do not
//!   compress". No `Accept-Encoding` header, or a `HEAD` request, means no compression.
//! * [`apply`], at response time: the response is compressed only when its status is 200, it
//!   has no `Content-Encoding`, no `Cache-Control: no-transform`, is not declared empty
//!   (`Content-Length: 0`), and (when a type list is configured) its `Content-Type` without
//!   parameters is in the list, compared case-insensitively. A compressed response loses
//!   `Content-Length` and `Accept-Ranges`, gets `Content-Encoding: gzip` or `deflate`, and a
//!   strong `ETag` becomes weak (the bytes differ from the uncompressed representation).
//!   Every such response also gets `Vary: Accept-Encoding`, including the uncompressed answer
//!   to a client that did not accept a configured coding, so caches keep the variants apart.
//! * [`CompressedBody`] compresses the body frame by frame: each upstream data frame is
//!   compressed and sync-flushed at once, so a streamed response stays streamed and the whole
//!   body is never held in memory. The stream is finished when the upstream body ends
//!   (trailers, if any, follow the last compressed bytes).
//!
//! It does not decompress, re-compress or transcode responses that are already encoded, does
//! not produce `br`/`zstd`, and does not touch request bodies. `deflate` is the zlib format
//! that HTTP's `deflate` coding names (DFP's `raw-deflate` is parsed as the same thing). The
//! compression level is the fastest one, as HAProxy's default `tune.comp.maxlevel 1`.
//!
//! Unlike DFP, where a service's `compressionAlgo` ended up in the shared frontend and so
//! compressed every service's responses, the setting applies to its own service only; the
//! global defaults apply to services that do not set `compressionAlgo` themselves.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::write::{GzEncoder, ZlibEncoder};
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    ETAG, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use sluice_core::service::{Compression, CompressionAlgo};

use crate::body::{BoxError, ProxyBody};

/// A content coding Sluice produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` (RFC 1952).
    Gzip,
    /// `deflate`: the zlib format (RFC 1950) around a deflate stream.
    Deflate,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// What a request allows, decided before the request goes upstream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offer<'a> {
    config: &'a Compression,
    /// The coding to use; `None` when the client accepts none of the configured ones (or
    /// `identity` came first).
    coding: Option<Coding>,
}

/// The compression a request allows: `config` is the service's setting or the global
/// default. `None` when nothing is configured, only `identity` is, or the method is `HEAD`.
pub(crate) fn offer<'a>(
    config: Option<&'a Compression>,
    method: &Method,
    request: &HeaderMap,
) -> Option<Offer<'a>> {
    let config = config?;
    if method == Method::HEAD || !config.algos.iter().any(|a| coding_of(*a).is_some()) {
        return None;
    }
    let coding = if request.contains_key(ACCEPT_ENCODING) {
        choose(&config.algos, request)
    } else {
        None
    };
    Some(Offer { config, coding })
}

fn coding_of(algo: CompressionAlgo) -> Option<Coding> {
    match algo {
        CompressionAlgo::Identity => None,
        CompressionAlgo::Gzip => Some(Coding::Gzip),
        CompressionAlgo::Deflate => Some(Coding::Deflate),
    }
}

/// The first configured algorithm the client accepts, as a coding (`None` for identity or
/// nothing acceptable).
fn choose(algos: &[CompressionAlgo], request: &HeaderMap) -> Option<Coding> {
    for algo in algos {
        match algo {
            CompressionAlgo::Identity => {
                // Identity is acceptable unless refused explicitly (or through `*;q=0`).
                if !matches!(quality(request, &["identity"]), Some(0)) {
                    return None;
                }
            }
            CompressionAlgo::Gzip => {
                if quality(request, &["gzip", "x-gzip"]).is_some_and(|q| q > 0) {
                    return Some(Coding::Gzip);
                }
            }
            CompressionAlgo::Deflate => {
                if quality(request, &["deflate"]).is_some_and(|q| q > 0) {
                    return Some(Coding::Deflate);
                }
            }
        }
    }
    None
}

/// The q-value (in thousandths) `Accept-Encoding` gives a coding known by any of `names`:
/// its own entry if listed, else the `*` entry, else `None`. An unreadable q-value counts as
/// 0 (not acceptable).
fn quality(request: &HeaderMap, names: &[&str]) -> Option<u16> {
    let mut named = None;
    let mut star = None;
    let entries = request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for entry in entries {
        let mut parts = entry.split(';');
        let token = parts.next().unwrap_or_default().trim();
        if token.is_empty() {
            continue;
        }
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1000), |(_, v)| parse_qvalue(v.trim()))
            .unwrap_or(0);
        if names.iter().any(|n| token.eq_ignore_ascii_case(n)) {
            named.get_or_insert(q);
        } else if token == "*" {
            star.get_or_insert(q);
        }
    }
    named.or(star)
}

/// RFC 9110 `qvalue`: `0[.ddd]` or `1[.000]`, in thousandths.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Applies the offer to an upstream response: rewrites the headers and wraps the body when the
/// response qualifies (see the module documentation); returns the body unchanged otherwise.
pub(crate) fn apply(
    offer: Option<Offer<'_>>,
    parts: &mut http::response::Parts,
    body: ProxyBody,
) -> ProxyBody {
    let Some(offer) = offer else {
        return body;
    };
    if !compressible(offer.config, parts.status, &parts.headers) {
        return body;
    }
    add_vary(&mut parts.headers);
    let Some(coding) = offer.coding else {
        return body;
    };
    let headers = &mut parts.headers;
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    if let Some(etag) = headers.get(ETAG) {
        if etag.as_bytes().starts_with(b"\"") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(ETAG, weak);
            }
        }
    }
    tracing::trace!(coding = coding.token(), "compressing response");
    ProxyBody::Boxed(Box::pin(CompressedBody::new(body, coding)))
}

/// Whether a response may be compressed under `config` (independent of the client).
fn compressible(config: &Compression, status: StatusCode, headers: &HeaderMap) -> bool {
    if status != StatusCode::OK || headers.contains_key(CONTENT_ENCODING) {
        return false;
    }
    if has_token(headers, &CACHE_CONTROL, "no-transform") {
        return false;
    }
    if headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0")
    {
        return false;
    }
    if config.types.is_empty() {
        return true;
    }
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = content_type.split(';').next().unwrap_or_default().trim();
    config.types.iter().any(|t| t.eq_ignore_ascii_case(media))
}

/// A comma-separated header lists `token` (case-insensitive; parameters such as `a=b` are
/// compared by their name).
fn has_token(headers: &HeaderMap, name: &http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split('=').next().unwrap_or_default().trim())
        .any(|t| t.eq_ignore_ascii_case(token))
}

fn add_vary(headers: &mut HeaderMap) {
    if has_token(headers, &VARY, "accept-encoding") || has_token(headers, &VARY, "*") {
        return;
    }
    headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
}

/// A streaming encoder writing into a buffer that is taken after every frame.
enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    Deflate(ZlibEncoder<Vec<u8>>),
}

impl Encoder {
    fn new(coding: Coding) -> Encoder {
        let level = flate2::Compression::fast();
        match coding {
            Coding::Gzip => Encoder::Gzip(GzEncoder::new(Vec::new(), level)),
            Coding::Deflate => Encoder::Deflate(ZlibEncoder::new(Vec::new(), level)),
        }
    }

    /// Compresses `data` and sync-flushes, so everything given so far can be decoded from the
    /// bytes returned so far.
    fn compress(&mut self, data: &[u8]) -> io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
            Encoder::Deflate(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(out)))
    }

    /// The end of the compressed stream (remaining bytes and the checksum trailer).
    fn finish(self) -> io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Deflate(e) => e.finish()?,
        };
        Ok(Bytes::from(out))
    }
}

/// A body compressed frame by frame on its way to the client.
pub struct CompressedBody<B = ProxyBody> {
    inner: B,
    /// `None` once the compressed stream has been finished (or failed).
    encoder: Option<Encoder>,
    /// Trailers of the inner body, sent after the compressed stream's end.
    trailers: Option<HeaderMap>,
}

impl<B> CompressedBody<B> {
    /// Compresses `inner` with `coding`.
    pub fn new(inner: B, coding: Coding) -> Self {
        CompressedBody {
            inner,
            encoder: Some(Encoder::new(coding)),
            trailers: None,
        }
    }
}

impl<B> Body for CompressedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => {
                        let compressed = encoder.compress(&data);
                        if compressed.is_err() {
                            this.fail();
                        }
                        return Poll::Ready(Some(compressed.map(Frame::data).map_err(Into::into)));
                    }
                    Err(frame) => {
                        // Trailers: hold them until the compressed stream has been finished.
                        if let Ok(trailers) = frame.into_trailers() {
                            this.trailers = Some(trailers);
                        }
                    }
                },
                Poll::Ready(Some(Err(error))) => {
                    this.fail();
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    let Some(encoder) = this.encoder.take() else {
                        return Poll::Ready(None);
                    };
                    let tail = encoder.finish();
                    if tail.is_err() {
                        this.fail();
                    }
                    return Poll::Ready(Some(tail.map(Frame::data).map_err(Into::into)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl<B> CompressedBody<B> {
    /// Stops the stream after an error: nothing more is sent, not even held trailers.
    fn fail(&mut self) {
        self.encoder = None;
        self.trailers = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::io::Read;

    use http_body_util::BodyExt;

    use super::*;

    fn config(algos: &[CompressionAlgo], types: &[&str]) -> Compression {
        Compression {
            algos: algos.to_vec(),
            types: types.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn accept(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn chosen(algos: &[CompressionAlgo], accept_encoding: Option<&str>) -> Option<Coding> {
        let c = config(algos, &[]);
        offer(Some(&c), &Method::GET, &accept(accept_encoding)).and_then(|o| o.coding)
    }

    use CompressionAlgo::{Deflate as D, Gzip as G, Identity as I};

    #[test]
    fn accept_encoding_table() {
        let cases: &[(&[CompressionAlgo], Option<&str>, Option<Coding>)] = &[
            (&[G], Some("gzip"), Some(Coding::Gzip)),
            (&[G], Some("GZIP"), Some(Coding::Gzip)),
            (&[G], Some("x-gzip"), Some(Coding::Gzip)),
            (&[G], Some("deflate, gzip;q=0.5"), Some(Coding::Gzip)),
            (&[G], Some("gzip;q=0"), None),
            (&[G], Some("gzip; q=0.000"), None),
            (&[G], Some("gzip;q=0.001"), Some(Coding::Gzip)),
            (&[G], Some("gzip;q=1.0"), Some(Coding::Gzip)),
            (&[G], Some("gzip;q=2"), None),
            (&[G], Some("gzip;q=abc"), None),
            (&[G], Some("deflate"), None),
            (&[G], Some("br"), None),
            (&[G], Some(""), None),
            (&[G], None, None),
            (&[G], Some("*"), Some(Coding::Gzip)),
            (&[G], Some("*;q=0"), None),
            (&[G], Some("gzip;q=0, *"), None),
            (&[G], Some("*, gzip;q=0"), None),
            (&[G, D], Some("deflate, gzip"), Some(Coding::Gzip)),
            (
                &[D, G],
                Some("gzip;q=1, deflate;q=0.1"),
                Some(Coding::Deflate),
            ),
            (&[G, D], Some("gzip;q=0, deflate"), Some(Coding::Deflate)),
            (&[I, G], Some("gzip"), None),
            (&[I, G], Some("gzip, identity;q=0"), Some(Coding::Gzip)),
            (&[I, G], Some("gzip, *;q=0"), Some(Coding::Gzip)),
            (&[G, I], Some("br"), None),
        ];
        for (algos, header, want) in cases {
            assert_eq!(chosen(algos, *header), *want, "{algos:?} / {header:?}");
        }
    }

    #[test]
    fn several_accept_encoding_lines_are_one_list() {
        let c = config(&[D, G], &[]);
        let mut h = HeaderMap::new();
        h.append(ACCEPT_ENCODING, HeaderValue::from_static("br"));
        h.append(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let o = offer(Some(&c), &Method::GET, &h).unwrap();
        assert_eq!(o.coding, Some(Coding::Gzip));
    }

    #[test]
    fn no_offer_without_configuration_for_head_or_identity_only() {
        let gz = accept(Some("gzip"));
        assert!(offer(None, &Method::GET, &gz).is_none());
        let c = config(&[G], &[]);
        assert!(offer(Some(&c), &Method::HEAD, &gz).is_none());
        assert!(offer(Some(&c), &Method::POST, &gz).is_some());
        let identity = config(&[I], &[]);
        assert!(offer(Some(&identity), &Method::GET, &gz).is_none());
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.25"), Some(250));
        assert_eq!(parse_qvalue("0.125"), Some(125));
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
        assert_eq!(parse_qvalue("-0"), None);
        assert_eq!(parse_qvalue(""), None);
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// Runs `apply` for a gzip-accepting GET and returns the parts and whether the body was
    /// wrapped.
    fn applied(c: &Compression, parts: &mut http::response::Parts) -> bool {
        let o = offer(Some(c), &Method::GET, &accept(Some("gzip")));
        let body = apply(o, parts, ProxyBody::full(Bytes::from_static(b"hello")));
        matches!(body, ProxyBody::Boxed(_))
    }

    #[test]
    fn response_conditions_table() {
        let text = config(&[G], &["text/plain", "application/json"]);
        let any = config(&[G], &[]);
        type Case<'a> = (&'a Compression, u16, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case<'_>] = &[
            (&text, 200, &[("content-type", "text/plain")], true),
            (
                &text,
                200,
                &[("content-type", "Text/Plain; charset=utf-8")],
                true,
            ),
            (&text, 200, &[("content-type", "application/json")], true),
            (&text, 200, &[("content-type", "text/html")], false),
            (&text, 200, &[("content-type", "text/plainx")], false),
            (&text, 200, &[], false),
            (&any, 200, &[], true),
            (&any, 200, &[("content-type", "image/png")], true),
            (&any, 201, &[], false),
            (&any, 206, &[], false),
            (&any, 304, &[], false),
            (&any, 404, &[], false),
            (&any, 200, &[("content-encoding", "br")], false),
            (&any, 200, &[("content-encoding", "identity")], false),
            (&any, 200, &[("cache-control", "no-transform")], false),
            (
                &any,
                200,
                &[("cache-control", "public, No-Transform")],
                false,
            ),
            (&any, 200, &[("cache-control", "no-cache, max-age=0")], true),
            (&any, 200, &[("content-length", "0")], false),
            (&any, 200, &[("content-length", "5")], true),
        ];
        for (c, status, headers, want) in cases {
            let mut parts = response(*status, headers);
            assert_eq!(applied(c, &mut parts), *want, "{status} {headers:?}");
            let encoding = parts.headers.get(CONTENT_ENCODING);
            if *want {
                assert_eq!(encoding.unwrap(), "gzip");
            } else if let Some((_, v)) = headers.iter().find(|(k, _)| *k == "content-encoding") {
                assert_eq!(encoding.unwrap(), v, "an existing encoding is kept");
            } else {
                assert!(encoding.is_none());
            }
        }
    }

    #[test]
    fn compressed_headers_are_rewritten() {
        let c = config(&[G], &[]);
        let mut parts = response(
            200,
            &[
                ("content-length", "5"),
                ("accept-ranges", "bytes"),
                ("etag", "\"abc\""),
                ("vary", "Origin"),
            ],
        );
        assert!(applied(&c, &mut parts));
        let h = &parts.headers;
        assert!(h.get(CONTENT_LENGTH).is_none());
        assert!(h.get(ACCEPT_RANGES).is_none());
        assert_eq!(h[CONTENT_ENCODING], "gzip");
        assert_eq!(h[ETAG], "W/\"abc\"");
        let vary: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);

        let mut parts = response(200, &[("etag", "W/\"x\""), ("vary", "accept-encoding")]);
        assert!(applied(&c, &mut parts));
        assert_eq!(parts.headers[ETAG], "W/\"x\"", "weak stays as it is");
        assert_eq!(parts.headers.get_all(VARY).iter().count(), 1);
    }

    #[test]
    fn uncompressed_variant_still_varies_but_other_responses_do_not() {
        let c = config(&[G], &["text/plain"]);
        let mut parts = response(
            200,
            &[("content-type", "text/plain"), ("content-length", "5")],
        );
        let o = offer(Some(&c), &Method::GET, &accept(Some("br")));
        let body = apply(o, &mut parts, ProxyBody::full(Bytes::from_static(b"hello")));
        assert!(matches!(body, ProxyBody::Full(_)));
        assert_eq!(parts.headers[VARY], "Accept-Encoding");
        assert_eq!(parts.headers[CONTENT_LENGTH], "5");

        let mut parts = response(200, &[("content-type", "image/png")]);
        let o = offer(Some(&c), &Method::GET, &accept(Some("gzip")));
        apply(o, &mut parts, ProxyBody::empty());
        assert!(parts.headers.get(VARY).is_none());
    }

    /// A body yielding these frames, one per poll.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(Ok))
        }
    }

    fn frames(chunks: &[&str]) -> Frames {
        Frames(
            chunks
                .iter()
                .map(|c| Frame::data(Bytes::from(c.to_string())))
                .collect(),
        )
    }

    fn gunzip(bytes: &[u8]) -> String {
        let mut out = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[tokio::test]
    async fn gzip_round_trip_through_proxy_body() {
        let text = "the quick brown fox jumps over the lazy dog\n".repeat(200);
        let body = ProxyBody::Boxed(Box::pin(CompressedBody::new(
            ProxyBody::full(Bytes::from(text.clone())),
            Coding::Gzip,
        )));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert!(bytes.len() < text.len() / 4, "{} bytes", bytes.len());
        assert_eq!(gunzip(&bytes), text);
    }

    #[tokio::test]
    async fn deflate_is_zlib_and_round_trips() {
        let body = CompressedBody::new(frames(&["abc", "", "def", "abcdef"]), Coding::Deflate);
        let bytes = body.collect().await.unwrap().to_bytes();
        let mut out = String::new();
        flate2::read::ZlibDecoder::new(&bytes[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "abcdefabcdef");
    }

    #[tokio::test]
    async fn every_frame_is_decodable_as_soon_as_it_is_sent() {
        let chunks = ["first chunk\n", "second chunk\n", "third chunk\n"];
        let mut body = CompressedBody::new(frames(&chunks), Coding::Gzip);
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        let mut expected = String::new();
        for chunk in chunks {
            let frame = body.frame().await.unwrap().unwrap();
            let data = frame.into_data().unwrap();
            decoder.write_all(&data).unwrap();
            decoder.flush().unwrap();
            expected.push_str(chunk);
            assert_eq!(
                String::from_utf8_lossy(decoder.get_ref()),
                expected,
                "frame decodes before the next one is read"
            );
        }
        assert!(!body.is_end_stream());
        let tail = body.frame().await.unwrap().unwrap().into_data().unwrap();
        decoder.write_all(&tail).unwrap();
        let all = decoder.finish().unwrap();
        assert_eq!(String::from_utf8(all).unwrap(), chunks.concat());
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn empty_body_is_a_valid_empty_stream() {
        let body = CompressedBody::new(frames(&[]), Coding::Gzip);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(gunzip(&bytes), "");
    }

    #[tokio::test]
    async fn trailers_follow_the_end_of_the_compressed_stream() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("1"));
        let mut inner = frames(&["payload"]);
        inner.0.push_back(Frame::trailers(trailers.clone()));
        let mut body = CompressedBody::new(inner, Coding::Gzip);
        let mut data = Vec::new();
        let mut got_trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            assert!(got_trailers.is_none(), "nothing after the trailers");
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => got_trailers = f.into_trailers().ok(),
            }
        }
        assert_eq!(gunzip(&data), "payload");
        assert_eq!(got_trailers, Some(trailers));
    }

    #[tokio::test]
    async fn inner_errors_end_the_stream() {
        struct Failing(bool);
        impl Body for Failing {
            type Data = Bytes;
            type Error = BoxError;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                let this = self.get_mut();
                if this.0 {
                    return Poll::Ready(None);
                }
                this.0 = true;
                Poll::Ready(Some(Err("upstream reset".into())))
            }
        }
        let mut body = CompressedBody::new(Failing(false), Coding::Gzip);
        let first = body.frame().await.unwrap();
        assert_eq!(first.unwrap_err().to_string(), "upstream reset");
        assert!(
            body.frame().await.is_none(),
            "no gzip trailer after a failure"
        );
        assert!(body.is_end_stream());
    }
}
