//! The go-demo stand-in: a small HTTP/1.1 application under `/demo/*` that reports which replica served each request.
//!
//! Routes (any method; the body of a request is read and discarded):
//! - `/demo/hello`: 200 `hello, world!\n` as `text/plain; charset=utf-8` (Content-Length 14, like `vfarcic/go-demo`);
//! - `/demo/person`: 200 with a small JSON array;
//! - `/demo/replica`: 200 with the replica identity and a newline;
//! - `/demo/headers`: 200 with the request headers, one `name: value` line each (names lower-cased by the HTTP stack);
//! - `/demo/slow?ms=N`: sleeps N milliseconds (capped at [`SLOW_CAP_MS`]) then 200; a malformed `ms` is a 400;
//! - `/demo/health`: 200 `ok` once the app is healthy (`--healthy-after`), 503 `starting` before;
//! - `/demo/ws`: a WebSocket echo (see [`crate::websocket`]);
//! - anything else: 404 `404 page not found\n`.
//!
//! Until the app is healthy every route but `/demo/health` answers 503 `starting` (an app still warming up), so a
//! proxy that sends requests to a task before its health check passes shows up as failed requests.
//!
//! Every response carries `X-Served-By: <identity>`, and every request is logged on stdout with method, path and identity.
//!
//! On shutdown ([`serve`]'s signal) the listener closes at once, idle keep-alive connections are closed, and in-flight
//! requests and open WebSockets may finish until the drain deadline.

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::shutdown::ShutdownSignal;
use crate::websocket;

/// Name of the header naming the replica that produced a response.
pub(crate) const SERVED_BY: &str = "x-served-by";
/// Upper bound for `/demo/slow?ms=`.
pub(crate) const SLOW_CAP_MS: u64 = 60_000;
/// Largest request body that is read (and discarded); larger ones get a 413.
const MAX_BODY_BYTES: usize = 1 << 20;
/// How long in-flight requests may run after a shutdown request before the server stops anyway (`--drain-seconds`).
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const PERSON_JSON: &str =
    r#"[{"name":"Ada","surname":"Lovelace"},{"name":"Alan","surname":"Turing"}]"#;

/// What the app answers with: its identity and when it becomes healthy.
#[derive(Debug)]
pub(crate) struct App {
    /// The replica identity (`X-Served-By`).
    pub(crate) identity: String,
    /// From this instant on `/demo/health` answers 200 and the other routes serve.
    pub(crate) healthy_at: Instant,
}

impl App {
    /// An app named `identity` that becomes healthy `healthy_after` from now.
    pub(crate) fn new(identity: String, healthy_after: Duration) -> App {
        App {
            identity,
            healthy_at: Instant::now() + healthy_after,
        }
    }

    fn healthy(&self) -> bool {
        Instant::now() >= self.healthy_at
    }
}

/// Answers requests on `listener` until `shutdown` fires, then drains in-flight requests and open WebSockets for at
/// most `drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: App,
    mut shutdown: ShutdownSignal,
    drain: Duration,
) {
    let app = Arc::new(app);
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.requested() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    let app = Arc::clone(&app);
                    let sockets = tracker.clone();
                    let service = service_fn(move |req| handle(req, Arc::clone(&app), sockets.clone()));
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let mut stop = shutdown.clone();
                    // Once a shutdown is requested the connection finishes its request in flight and closes.
                    tracker.spawn(async move {
                        let mut conn = pin!(conn);
                        let result = tokio::select! {
                            result = conn.as_mut() => result,
                            () = stop.requested() => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(error) = result {
                            debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    tracker.close();
    info!(
        open = tracker.len(),
        "shutting down, draining connections and websockets"
    );
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        warn!(
            timeout_secs = drain.as_secs(),
            "connections still open after the drain timeout, exiting"
        );
    }
}

/// Handles one request: reads and discards its body, routes it, stamps `X-Served-By` and logs it.
async fn handle(
    mut req: Request<Incoming>,
    app: Arc<App>,
    sockets: TaskTracker,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let identity = app.identity.as_str();
    let ws = req.uri().path() == "/demo/ws" && app.healthy();
    let mut ws_response = ws.then(|| websocket::upgrade(&mut req, identity, &sockets));
    let (parts, body) = req.into_parts();
    let body_fits = Limited::new(body, MAX_BODY_BYTES).collect().await.is_ok();
    let mut response = if let Some(response) = ws_response.take() {
        response
    } else if body_fits {
        route(
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
            identity,
            app.healthy(),
        )
        .await
    } else {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n".to_owned(),
        )
    };
    if let Ok(value) = HeaderValue::from_str(identity) {
        response.headers_mut().insert(SERVED_BY, value);
    }
    info!(
        method = %parts.method,
        path = parts.uri.path(),
        identity,
        status = response.status().as_u16(),
        "request"
    );
    Ok(response)
}

/// The routing table; pure except for the sleep of `/demo/slow`. `/demo/ws` is answered before, by [`handle`].
async fn route(
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    identity: &str,
    healthy: bool,
) -> Response<Full<Bytes>> {
    if !healthy {
        return text(StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned());
    }
    match path {
        "/demo/health" => text(StatusCode::OK, "ok\n".to_owned()),
        "/demo/hello" => text(StatusCode::OK, "hello, world!\n".to_owned()),
        "/demo/person" => {
            let mut response = Response::new(Full::new(Bytes::from_static(PERSON_JSON.as_bytes())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        "/demo/replica" => text(StatusCode::OK, format!("{identity}\n")),
        "/demo/headers" => text(StatusCode::OK, header_lines(headers)),
        "/demo/slow" => match slow_millis(query) {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, format!("slept {ms} ms\n"))
            }
            Err(raw) => text(
                StatusCode::BAD_REQUEST,
                format!("invalid ms value {raw:?}: expected an integer\n"),
            ),
        },
        _ => {
            let mut response = text(StatusCode::NOT_FOUND, "404 page not found\n".to_owned());
            response.headers_mut().insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            response
        }
    }
}

/// A `text/plain; charset=utf-8` response.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    response
}

/// Renders headers as `name: value` lines in arrival order; non-UTF-8 bytes are replaced.
fn header_lines(headers: &HeaderMap) -> String {
    let mut out = String::new();
    for (name, value) in headers {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push('\n');
    }
    out
}

/// Extracts `ms` from the query string: absent means 0, values above [`SLOW_CAP_MS`] are capped,
/// anything but a non-negative integer is returned as the error.
fn slow_millis(query: Option<&str>) -> Result<u64, String> {
    let raw = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == "ms")
        .map(|(_, value)| value);
    match raw {
        None => Ok(0),
        Some(value) => value
            .parse::<u64>()
            .map(|ms| ms.min(SLOW_CAP_MS))
            .map_err(|_| value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::*;
    use crate::shutdown::ShutdownTrigger;

    /// Starts the app on an ephemeral loopback port inside the current runtime.
    async fn start(identity: &str) -> (SocketAddr, ShutdownTrigger, tokio::task::JoinHandle<()>) {
        start_with(App::new(identity.to_owned(), Duration::ZERO), DRAIN_TIMEOUT).await
    }

    async fn start_with(
        app: App,
        drain: Duration,
    ) -> (SocketAddr, ShutdownTrigger, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, signal) = ShutdownTrigger::new();
        let task = tokio::spawn(serve(listener, app, signal, drain));
        (addr, trigger, task)
    }

    async fn websocket(
        addr: SocketAddr,
    ) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let request = format!("ws://{addr}/demo/ws")
            .into_client_request()
            .unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_tungstenite::client_async(request, stream)
            .await
            .unwrap()
            .0
    }

    async fn echo_round(
        socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        text: &str,
    ) {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        socket.send(Message::text(text)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::text(text));
    }

    #[tokio::test]
    async fn health_and_routes_answer_503_until_healthy() {
        let (addr, _trigger, _task) = start_with(
            App::new("h".into(), Duration::from_millis(400)),
            DRAIN_TIMEOUT,
        )
        .await;
        let (status, _, body) = get(addr, "/demo/health", "").await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body, b"starting\n");
        let (status, _, _) = get(addr, "/demo/hello", "").await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, _, body) = get(addr, "/demo/health", "").await;
            if status == "HTTP/1.1 200 OK" {
                assert_eq!(body, b"ok\n");
                break;
            }
            assert!(Instant::now() < deadline, "never healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, _, _) = get(addr, "/demo/hello", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn websocket_echoes_and_plain_get_is_a_400() {
        let (addr, _trigger, _task) = start("ws").await;
        let mut socket = websocket(addr).await;
        echo_round(&mut socket, "one").await;
        echo_round(&mut socket, "two").await;
        let (status, _, body) = get(addr, "/demo/ws", "").await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert_eq!(body, b"expected the header Upgrade: websocket\n");
    }

    #[tokio::test]
    async fn draining_keeps_open_websockets_until_the_deadline() {
        let drain = Duration::from_millis(800);
        let (addr, trigger, task) = start_with(App::new("d".into(), Duration::ZERO), drain).await;
        let mut socket = websocket(addr).await;
        echo_round(&mut socket, "before").await;
        let fired = Instant::now();
        trigger.fire();
        // New connections are refused at once, the open WebSocket still echoes.
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::net::TcpStream::connect(addr).is_ok() {
            assert!(Instant::now() < deadline, "listener still open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        echo_round(&mut socket, "during").await;
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(
            fired.elapsed() >= drain,
            "the server ended before the drain deadline"
        );
    }

    /// Sends one raw request with `Connection: close` and returns (status line, lower-cased headers, body).
    async fn get(
        addr: SocketAddr,
        path: &str,
        extra: &str,
    ) -> (String, Vec<(String, String)>, Vec<u8>) {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).unwrap();
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8(raw[..split].to_vec()).unwrap();
            let body = raw[split + 4..].to_vec();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap().to_owned();
            let headers = lines
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.trim().to_ascii_lowercase(), v.trim().to_owned())
                })
                .collect();
            (status, headers, body)
        })
        .await
        .unwrap()
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn hello_matches_go_demo_byte_for_byte() {
        let (addr, _trigger, _task) = start("replica-a").await;
        let (status, headers, body) = get(addr, "/demo/hello", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, b"hello, world!\n");
        assert_eq!(header(&headers, "content-length"), Some("14"));
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(header(&headers, SERVED_BY), Some("replica-a"));
    }

    #[tokio::test]
    async fn replica_person_and_not_found() {
        let (addr, _trigger, _task) = start("replica-b").await;
        let (status, _, body) = get(addr, "/demo/replica", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, b"replica-b\n");

        let (status, headers, body) = get(addr, "/demo/person", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(parsed.as_array().is_some_and(|a| !a.is_empty()));

        for path in ["/", "/demo", "/demo/hello/extra", "/other/hello"] {
            let (status, headers, body) = get(addr, path, "").await;
            assert_eq!(status, "HTTP/1.1 404 Not Found", "{path}");
            assert_eq!(body, b"404 page not found\n");
            assert_eq!(
                header(&headers, SERVED_BY),
                Some("replica-b"),
                "404s are stamped too"
            );
        }
    }

    #[tokio::test]
    async fn headers_are_echoed_as_lines() {
        let (addr, _trigger, _task) = start("r").await;
        let (_, _, body) = get(
            addr,
            "/demo/headers",
            "X-Forwarded-For: 10.1.2.3\r\nX-Custom: Some Value\r\n",
        )
        .await;
        let body = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert!(lines.contains(&"x-forwarded-for: 10.1.2.3"), "{body}");
        assert!(lines.contains(&"x-custom: Some Value"), "{body}");
        assert!(lines.contains(&"host: test"), "{body}");
    }

    #[test]
    fn default_app_is_healthy_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(App::new("x".into(), Duration::ZERO).healthy());
            assert!(!App::new("x".into(), Duration::from_secs(60)).healthy());
        });
    }

    #[tokio::test]
    async fn slow_sleeps_and_rejects_garbage() {
        let (addr, _trigger, _task) = start("r").await;
        let started = Instant::now();
        let (status, _, body) = get(addr, "/demo/slow?x=1&ms=120", "").await;
        assert!(started.elapsed() >= Duration::from_millis(120));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, b"slept 120 ms\n");
        let (status, _, _) = get(addr, "/demo/slow?ms=abc", "").await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
    }

    #[test]
    fn slow_millis_parsing() {
        assert_eq!(slow_millis(None), Ok(0));
        assert_eq!(slow_millis(Some("")), Ok(0));
        assert_eq!(slow_millis(Some("ms=25")), Ok(25));
        assert_eq!(slow_millis(Some("a=b&ms=7&ms=9")), Ok(7));
        assert_eq!(slow_millis(Some("ms=999999999")), Ok(SLOW_CAP_MS));
        assert_eq!(slow_millis(Some("ms=-1")), Err("-1".to_owned()));
        assert_eq!(slow_millis(Some("ms")), Err(String::new()));
        assert_eq!(slow_millis(Some("mss=5")), Ok(0));
    }

    #[tokio::test]
    async fn shutdown_lets_in_flight_requests_finish() {
        let (addr, trigger, task) = start("r").await;
        let slow = tokio::spawn(async move { get(addr, "/demo/slow?ms=300", "").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.fire();
        let (status, _, body) = slow.await.unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, b"slept 300 ms\n");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "listener still open after shutdown"
        );
    }

    #[tokio::test]
    async fn keep_alive_serves_many_requests_with_bodies() {
        let (addr, _trigger, _task) = start("r").await;
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            let req = "POST /demo/hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde";
            for _ in 0..3 {
                stream.write_all(req.as_bytes()).unwrap();
                let mut buf = [0u8; 512];
                let mut got = Vec::new();
                while !got.ends_with(b"hello, world!\n") {
                    let n = stream.read(&mut buf).unwrap();
                    assert!(n > 0, "connection closed early");
                    got.extend_from_slice(&buf[..n]);
                }
                assert!(got.starts_with(b"HTTP/1.1 200 OK"));
            }
        })
        .await
        .unwrap();
    }
}
