//! Response compression through the real binary: per-service `compressionAlgo` /
//! `compressionType` (scoped to the service), the `COMPRESSION_ALGO` / `COMPRESSION_TYPE`
//! defaults, and streaming.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::support::Proxy;

const TEXT: &str = "Sluice compresses this plain text line because it repeats a lot.\n";
const HTML: &str = "<p>Sluice compresses this html paragraph when html is listed.</p>\n";
const JSON: &str = "{\"sluice\": \"compresses this json document when any type goes\"}\n";

/// The sender of a `/stream` response's remaining body, parked until the test releases it.
type Held = Arc<Mutex<Option<tokio::sync::mpsc::Sender<Bytes>>>>;

/// A backend answering `…/text`, `…/html` and `…/json` with a repetitive body of that type
/// (with `Content-Length`), and `…/stream` with one text chunk whose rest waits in [`Held`].
struct TypedBackend {
    port: u16,
    held: Held,
    _runtime: tokio::runtime::Runtime,
}

/// A body fed through a channel, one frame per message.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn typed(content_type: &str, text: &str) -> Response<BoxBody<Bytes, Infallible>> {
    Response::builder()
        .header("content-type", content_type)
        .header("content-length", text.len() * 50)
        .body(Full::new(Bytes::from(text.repeat(50))).boxed())
        .unwrap()
}

fn answer(
    req: &Request<hyper::body::Incoming>,
    held: &Held,
) -> Response<BoxBody<Bytes, Infallible>> {
    let path = req.uri().path();
    if path.ends_with("/text") {
        typed("text/plain; charset=utf-8", TEXT)
    } else if path.ends_with("/html") {
        typed("text/html", HTML)
    } else if path.ends_with("/json") {
        typed("application/json", JSON)
    } else if path.ends_with("/stream") {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(Bytes::from("first part of the stream\n"))
            .unwrap();
        *held.lock().unwrap() = Some(tx);
        Response::builder()
            .header("content-type", "text/plain")
            .body(ChannelBody(rx).boxed())
            .unwrap()
    } else {
        Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()).boxed())
            .unwrap()
    }
}

impl TypedBackend {
    fn start() -> TypedBackend {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let held: Held = Arc::new(Mutex::new(None));
        let held2 = held.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let held = held2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let resp = answer(&req, &held);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TypedBackend {
            port,
            held,
            _runtime: runtime,
        }
    }
}

/// A response with its raw (undecoded) body bytes.
struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as the client sees it after undoing `Content-Encoding`.
    fn decoded(&self) -> String {
        let mut out = String::new();
        match self.header("content-encoding") {
            Some("gzip") => flate2::read::GzDecoder::new(&self.body[..])
                .read_to_string(&mut out)
                .unwrap(),
            Some("deflate") => flate2::read::ZlibDecoder::new(&self.body[..])
                .read_to_string(&mut out)
                .unwrap(),
            None => {
                out = String::from_utf8(self.body.clone()).unwrap();
                0
            }
            Some(other) => panic!("unexpected content-encoding {other}"),
        };
        out
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

fn fetch(addr: SocketAddr, method: &str, path: &str, accept_encoding: Option<&str>) -> Raw {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(method, format!("http://{addr}{path}"));
    if let Some(value) = accept_encoding {
        req = req.header("accept-encoding", value);
    }
    let resp = req.send().unwrap();
    Raw {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().unwrap().to_vec(),
    }
}

fn add(p: &Proxy, query: &str) {
    let r = p.reconfigure(query);
    assert_eq!(r.status, 200, "{query}: {}", r.body);
}

fn service(name: &str, port: u16, extra: &str) -> String {
    format!("serviceName={name}&servicePath=/{name}&port={port}&outboundHostname=127.0.0.1{extra}")
}

#[test]
fn service_compression_applies_to_its_own_service_only() {
    let p = Proxy::start();
    let b = TypedBackend::start();
    add(
        &p,
        &service(
            "zipped",
            b.port,
            "&compressionAlgo=gzip&compressionType=text/plain",
        ),
    );
    add(&p, &service("plain", b.port, ""));
    let addr = p.http[0];

    let r = fetch(addr, "GET", "/zipped/text", Some("gzip, deflate"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("content-length"), None);
    assert!(r.body.len() < TEXT.len() * 50 / 4, "{} bytes", r.body.len());
    assert_eq!(r.decoded(), TEXT.repeat(50));

    // The service on the same proxy without compression stays uncompressed (DFP leaked
    // compression to every service).
    let r = fetch(addr, "GET", "/plain/text", Some("gzip"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    assert_eq!(r.body, TEXT.repeat(50).as_bytes());

    // Not in the type list.
    let r = fetch(addr, "GET", "/zipped/html", Some("gzip"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.decoded(), HTML.repeat(50));

    // The client refuses gzip, or says nothing: uncompressed, but still marked as varying.
    for accept in [Some("gzip;q=0, identity"), None] {
        let r = fetch(addr, "GET", "/zipped/text", accept);
        assert_eq!(r.header("content-encoding"), None, "{accept:?}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{accept:?}");
        let length = (TEXT.len() * 50).to_string();
        assert_eq!(r.header("content-length"), Some(length.as_str()));
        assert_eq!(r.decoded(), TEXT.repeat(50));
    }

    // HEAD is left alone.
    let r = fetch(addr, "HEAD", "/zipped/text", Some("gzip"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn global_defaults_apply_to_every_service_that_does_not_set_its_own() {
    let p = Proxy::builder()
        .env("COMPRESSION_ALGO", "gzip")
        .env("COMPRESSION_TYPE", "text/plain text/html")
        .start();
    let b = TypedBackend::start();
    add(&p, &service("one", b.port, ""));
    add(&p, &service("two", b.port, ""));
    add(&p, &service("off", b.port, "&compressionAlgo=identity"));
    add(&p, &service("own", b.port, "&compressionAlgo=deflate"));
    let addr = p.http[0];

    for (path, body) in [("/one/text", TEXT), ("/two/html", HTML)] {
        let r = fetch(addr, "GET", path, Some("gzip, deflate"));
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(r.decoded(), body.repeat(50), "{path}");
    }
    let r = fetch(addr, "GET", "/one/json", Some("gzip"));
    assert_eq!(
        r.header("content-encoding"),
        None,
        "not in COMPRESSION_TYPE"
    );

    // A service's own setting wins over the defaults, as a whole.
    let r = fetch(addr, "GET", "/off/text", Some("gzip"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.decoded(), TEXT.repeat(50));
    let r = fetch(addr, "GET", "/own/json", Some("gzip, deflate"));
    assert_eq!(r.header("content-encoding"), Some("deflate"));
    assert_eq!(r.decoded(), JSON.repeat(50));
}

#[test]
fn invalid_global_algorithm_stops_the_proxy() {
    let e = Proxy::builder()
        .env("COMPRESSION_ALGO", "gzip br")
        .try_start()
        .err()
        .expect("the proxy must refuse COMPRESSION_ALGO=br");
    assert!(e.contains("COMPRESSION_ALGO"), "{e}");
    assert!(e.contains("\\\"br\\\"") || e.contains("\"br\""), "{e}");
}

#[test]
fn streamed_responses_stay_streamed() {
    let p = Proxy::builder().env("COMPRESSION_ALGO", "gzip").start();
    let b = TypedBackend::start();
    add(&p, &service("live", b.port, ""));
    let mut resp = client()
        .get(format!("http://{}/live/stream", p.http[0]))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");

    // The first part decodes while the backend still holds the rest back.
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(decoder.get_ref()).contains('\n') {
        let n = resp.read(&mut buf).unwrap();
        assert!(n > 0, "the body ended before the first part");
        decoder.write_all(&buf[..n]).unwrap();
        decoder.flush().unwrap();
    }
    assert_eq!(
        String::from_utf8_lossy(decoder.get_ref()),
        "first part of the stream\n"
    );

    let tx = b
        .held
        .lock()
        .unwrap()
        .take()
        .expect("the backend holds the rest");
    tx.blocking_send(Bytes::from("second part\n")).unwrap();
    drop(tx);
    let mut rest = Vec::new();
    resp.read_to_end(&mut rest).unwrap();
    decoder.write_all(&rest).unwrap();
    let all = decoder.finish().unwrap();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        "first part of the stream\nsecond part\n"
    );
}
