//! The pass-through path for plain HTTP/1.1 (`crates/proxy/src/passthrough.rs`): keep-alive on
//! both sides, every body framing, interim responses, stale pooled connections, and the
//! hand-over to hyper in the middle of a connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// A 1 MiB body with a pattern, so a byte out of place shows.
static BIG: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| (0..1 << 20).map(|i: u32| (i % 251) as u8).collect());

/// A backend that speaks raw HTTP/1.1 and answers by path (see `script`). Counts connections.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

/// The bytes the scripted backend answers a request with, and whether it closes after.
fn script(head: &str, body: &[u8]) -> (Vec<u8>, bool) {
    let target = head.split(' ').nth(1).unwrap_or("/");
    let path = target.trim_start_matches("/pt");
    match path {
        "/length" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            false,
        ),
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec(),
            false,
        ),
        "/early" => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
            false,
        ),
        "/eof" => (b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec(), true),
        "/big" => {
            let mut out =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BIG.len()).into_bytes();
            out.extend_from_slice(&BIG);
            (out, false)
        }
        "/garbage" => (b"SOMETHING ELSE\r\n\r\n".to_vec(), true),
        "/slow" => {
            std::thread::sleep(Duration::from_millis(2500));
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate".to_vec(),
                false,
            )
        }
        // Answers, then closes without saying so: the pooled connection goes stale.
        "/then-close" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbye!".to_vec(),
            true,
        ),
        _ => {
            let mut echo = head.as_bytes().to_vec();
            echo.extend_from_slice(body);
            let mut out =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", echo.len()).into_bytes();
            out.extend_from_slice(&echo);
            (out, false)
        }
    }
}

impl Scripted {
    fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve_scripted(stream));
            }
        });
        Scripted { addr, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve_scripted(mut stream: TcpStream) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Some(end) = find(&pending, b"\r\n\r\n") else {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let length = if chunked {
            // Up to the last chunk (the tests send no trailers).
            loop {
                if let Some(at) = find(&pending[end + 4..], b"0\r\n\r\n") {
                    break at + 5;
                }
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
        } else {
            length
        };
        while pending.len() < end + 4 + length {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        let body = pending[end + 4..end + 4 + length].to_vec();
        pending.drain(..end + 4 + length);
        let (answer, close) = script(&head, &body);
        if stream.write_all(&answer).is_err() || close {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response from a keep-alive connection: its head and its body (as sent, chunked
/// framing included).
fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, String) {
    let mut buf = [0u8; 8192];
    let mut fill = |pending: &mut Vec<u8>| {
        let n = stream.read(&mut buf).expect("the proxy answers within 5 s");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(pending));
        pending.extend_from_slice(&buf[..n]);
    };
    let end = loop {
        if let Some(end) = find(pending, b"\r\n\r\n") {
            break end + 4;
        }
        fill(pending);
    };
    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
    let lower = head.to_ascii_lowercase();
    let body_len = if lower.contains("transfer-encoding: chunked") {
        loop {
            if let Some(at) = find(&pending[end..], b"0\r\n") {
                if let Some(close) = find(&pending[end + at..], b"\r\n\r\n") {
                    break at + close + 4;
                }
            }
            fill(pending);
        }
    } else {
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        while pending.len() < end + length {
            fill(pending);
        }
        length
    };
    let body = String::from_utf8_lossy(&pending[end..end + body_len]).into_owned();
    pending.drain(..end + body_len);
    (head, body)
}

fn setup() -> (Proxy, Scripted) {
    let p = Proxy::start();
    let backend = Scripted::start();
    let r = p.reconfigure(&format!(
        "serviceName=pt&servicePath=/pt&port={}&outboundHostname=127.0.0.1",
        backend.addr.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    (p, backend)
}

fn connect(p: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(p.http[0]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

#[test]
fn bodies_of_every_framing_pass_intact_over_one_upstream_connection() {
    let (p, backend) = setup();
    let mut client = connect(&p);
    let mut pending = Vec::new();
    for _ in 0..3 {
        for (path, expected) in [
            ("/pt/length", "hello"),
            (
                "/pt/chunked",
                "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            ),
            ("/pt/early", "ok"),
        ] {
            write!(client, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let (head, body) = read_response(&mut client, &mut pending);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
            assert!(
                !head.contains("103"),
                "interim responses are not passed: {head}"
            );
            assert_eq!(body, expected, "{path}");
        }
    }
    assert_eq!(
        backend.connections(),
        1,
        "one upstream connection carried all nine"
    );
    let stats = p.api("config", "type=json");
    assert_eq!(stats.status, 200);
}

#[test]
fn the_upstream_gets_forwarding_headers_and_no_hop_by_hop_ones() {
    let (p, _backend) = setup();
    let mut client = connect(&p);
    let mut pending = Vec::new();
    client
        .write_all(
            b"POST /pt/echo?q=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Private\r\n\
              X-Private: secret\r\nX-Forwarded-For: 192.0.2.1\r\nContent-Length: 4\r\n\r\nbody",
        )
        .unwrap();
    let (head, body) = read_response(&mut client, &mut pending);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.starts_with("POST /pt/echo?q=1 HTTP/1.1\r\n"), "{body}");
    // Header names keep the client's case on this path (hyper's would lower them).
    assert!(body.contains("\r\nHost: x\r\n"), "{body}");
    let lower = body.to_ascii_lowercase();
    assert!(
        lower.contains("x-forwarded-for: 192.0.2.1, 127.0.0.1\r\n"),
        "{body}"
    );
    assert!(lower.contains("x-forwarded-proto: http\r\n"), "{body}");
    assert!(!lower.contains("x-private"), "{body}");
    assert!(!lower.contains("connection:"), "{body}");
    assert!(body.ends_with("\r\n\r\nbody"), "{body}");
}

#[test]
fn pipelined_requests_and_a_hand_over_to_hyper_on_one_connection() {
    let (p, _backend) = setup();
    let mut client = connect(&p);
    let mut pending = Vec::new();
    // Two requests in one write, then a chunked upload that only hyper's path serves.
    client
        .write_all(
            b"GET /pt/length HTTP/1.1\r\nHost: x\r\n\r\nGET /pt/echo/2 HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    let (_, first) = read_response(&mut client, &mut pending);
    assert_eq!(first, "hello");
    let (_, second) = read_response(&mut client, &mut pending);
    assert!(second.starts_with("GET /pt/echo/2 HTTP/1.1"), "{second}");
    client
        .write_all(
            b"POST /pt/echo/3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\nGET /pt/length HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    let (head, third) = read_response(&mut client, &mut pending);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(third.starts_with("POST /pt/echo/3"), "{third}");
    assert!(third.contains("abc"), "hyper forwarded the body: {third}");
    let (_, fourth) = read_response(&mut client, &mut pending);
    assert_eq!(fourth, "hello", "hyper keeps serving the connection");
}

#[test]
fn a_body_that_ends_with_the_upstream_closes_the_client_connection() {
    let (p, _backend) = setup();
    let mut client = connect(&p);
    client
        .write_all(b"GET /pt/eof HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let all = read_until_closed(&mut client);
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(
        all.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{all}"
    );
    assert!(all.ends_with("\r\n\r\nuntil the end"), "{all}");
}

#[test]
fn a_stale_pooled_connection_costs_no_request() {
    let (p, backend) = setup();
    let mut client = connect(&p);
    let mut pending = Vec::new();
    for round in 0..3 {
        write!(client, "GET /pt/then-close HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut client, &mut pending);
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head}");
        assert_eq!(body, "bye!");
        // A request that may not be sent twice must not meet the closed connection either.
        std::thread::sleep(Duration::from_millis(50));
        client
            .write_all(b"POST /pt/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            .unwrap();
        let (head, body) = read_response(&mut client, &mut pending);
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head}");
        assert!(body.ends_with("hi"), "{body}");
    }
    assert!(
        backend.connections() >= 4,
        "closed connections were replaced"
    );
}

#[test]
fn the_client_asking_to_close_gets_its_answer_then_the_close() {
    let (p, _backend) = setup();
    let mut client = connect(&p);
    client
        .write_all(b"GET /pt/length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let all = read_until_closed(&mut client);
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(
        all.to_ascii_lowercase().contains("connection: close"),
        "{all}"
    );
    assert!(all.ends_with("hello"), "{all}");
}

#[test]
fn an_unreachable_upstream_gets_the_error_page_then_the_close_as_on_hyper_path() {
    let p = Proxy::start();
    let r = p.reconfigure(&format!(
        "serviceName=gone&servicePath=/gone&port={}&outboundHostname=127.0.0.1",
        closed_port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let backend = Scripted::start();
    let r = p.reconfigure(&format!(
        "serviceName=pt&servicePath=/pt&port={}&outboundHostname=127.0.0.1",
        backend.addr.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut client = connect(&p);
    let mut pending = Vec::new();
    client
        .write_all(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut client, &mut pending);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{head}");
    assert!(lower.contains("connection: close"), "{head}");
    assert_eq!(read_until_closed(&mut client), "", "closed after the page");
    let mut client = connect(&p);
    client
        .write_all(b"GET /pt/length HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut client, &mut pending);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "hello");
}

#[test]
fn large_bodies_pass_intact_both_ways() {
    let (p, _backend) = setup();
    let mut client = connect(&p);
    let mut pending = Vec::new();
    client
        .write_all(b"GET /pt/big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let end = loop {
        let mut buf = [0u8; 65536];
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
        pending.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&pending, b"\r\n\r\n") {
            if pending.len() >= end + 4 + BIG.len() {
                break end + 4;
            }
        }
    };
    assert!(pending.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(&pending[end..], &BIG[..], "1 MiB, byte for byte");
    // Bodies up to 64 KiB are buffered by the pass-through path; a larger one goes to hyper.
    for size in [64 * 1024, 64 * 1024 + 1, 300 * 1024] {
        let body = &BIG[..size];
        write!(
            client,
            "POST /pt/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
        )
        .unwrap();
        client.write_all(body).unwrap();
        let mut pending = Vec::new();
        let head = read_echo_head(&mut client, &mut pending, size);
        assert!(head.starts_with("HTTP/1.1 200"), "{size}: {head}");
        assert!(pending.ends_with(body), "{size} bytes arrived intact");
    }
}

/// Reads one echo response of at least `at_least` body bytes: its head (the body stays in
/// `pending`).
fn read_echo_head(stream: &mut TcpStream, pending: &mut Vec<u8>, at_least: usize) -> String {
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = find(pending, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if pending.len() >= end + 4 + length && length >= at_least {
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending.drain(..end + 4);
                return head;
            }
        }
        let n = stream.read(&mut buf).expect("the proxy answers within 5 s");
        assert!(n > 0, "closed early");
        pending.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_garbled_response_is_a_502_and_a_late_one_a_504() {
    let p = Proxy::start();
    let backend = Scripted::start();
    let r = p.reconfigure(&format!(
        "serviceName=pt&servicePath=/pt&port={}&outboundHostname=127.0.0.1&timeoutServer=1",
        backend.addr.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    for (path, status) in [("/pt/garbage", "502"), ("/pt/slow", "504")] {
        let mut client = connect(&p);
        write!(client, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut pending = Vec::new();
        let (head, _) = read_response(&mut client, &mut pending);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {head}"
        );
    }
}
