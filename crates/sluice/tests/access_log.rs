//! The request log (`DEBUG=true`) of the real binary: every field in both formats, errors-only
//! filtering, captured headers, request ids, layer-4 connections and refused settings.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{closed_port, echoed_headers, Backend, Proxy};

/// The fields every line carries, whatever the format.
const FIELDS: [&str; 18] = [
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

fn add(p: &Proxy, query: &str) {
    let r = p.reconfigure(query);
    assert_eq!(r.status, 200, "{query}: {}", r.body);
}

/// Waits (up to 10 s) for a log line containing every one of `needles`.
fn wait_line(p: &Proxy, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = p.log_text();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of `key=` in a text line (unquoted values only).
fn text_field<'l>(line: &'l str, key: &str) -> &'l str {
    let at = line
        .find(&format!(" {key}="))
        .map(|i| i + 1)
        .or_else(|| line.starts_with(&format!("{key}=")).then_some(0))
        .unwrap_or_else(|| panic!("{key} missing: {line}"));
    line[at + key.len() + 1..]
        .split(' ')
        .next()
        .unwrap_or_default()
}

fn web(p: &Proxy, b: &Backend) {
    add(
        p,
        &format!(
            "serviceName=web&servicePath=/web&port={}&outboundHostname=127.0.0.1",
            b.port()
        ),
    );
}

#[test]
fn text_lines_carry_every_field_captured_headers_and_a_generated_request_id() {
    let p = Proxy::builder()
        .env("DEBUG", "true")
        .env("CAPTURE_REQUEST_HEADER", "Host:4,X-Forwarded-For:5")
        .start();
    let b = Backend::start("web");
    web(&p, &b);
    let r = p.get(
        "/web/x?password=hunter2&y=1",
        &[("X-Forwarded-For", "10.1.2.3, 10.4.5.6")],
    );
    assert_eq!(r.status, 200);
    let seen_id = echoed_headers(&r.body)
        .get("x-request-id")
        .cloned()
        .expect("the backend got a request id");
    let line = wait_line(&p, &["kind=http", "/web/x"]);
    for field in FIELDS {
        text_field(&line, field);
    }
    assert_eq!(text_field(&line, "request_id"), seen_id);
    assert_eq!(text_field(&line, "service"), "web");
    assert_eq!(
        text_field(&line, "upstream"),
        format!("127.0.0.1:{}", b.port())
    );
    assert_eq!(text_field(&line, "method"), "GET");
    assert_eq!(text_field(&line, "status"), "200");
    assert_eq!(text_field(&line, "port"), p.http_port().to_string());
    assert!(text_field(&line, "client").starts_with("127.0.0.1:"));
    assert_eq!(text_field(&line, "bytes_in"), "0");
    assert_eq!(text_field(&line, "bytes_out"), r.body.len().to_string());
    assert_eq!(text_field(&line, "retries"), "0");
    assert_eq!(text_field(&line, "termination"), "ok");
    // The first request opened the upstream connection.
    let connect: f64 = text_field(&line, "t_connect_ms").parse().unwrap();
    assert!(connect >= 0.0, "{line}");
    let total: f64 = text_field(&line, "t_total_ms").parse().unwrap();
    let response: f64 = text_field(&line, "t_response_ms").parse().unwrap();
    assert!(total >= response && response > 0.0, "{line}");
    assert_eq!(text_field(&line, "header.host"), "127.");
    assert_eq!(text_field(&line, "header.x-forwarded-for"), "10.1.");
    assert!(!line.contains("hunter2"), "a secret was logged: {line}");
    assert!(line.contains("y=1"), "{line}");

    // Each request gets its own id.
    let r2 = p.get("/web/again", &[]);
    let second = echoed_headers(&r2.body)["x-request-id"].clone();
    assert_ne!(second, seen_id);
    wait_line(&p, &["kind=http", &format!("request_id={second}")]);
}

#[test]
fn json_lines_carry_every_field_and_keep_the_clients_request_id() {
    let p = Proxy::builder()
        .env("DEBUG", "true")
        .env("LOG_FORMAT", "json")
        .env("CAPTURE_REQUEST_HEADER", "User-Agent:3")
        .start();
    let b = Backend::start("web");
    web(&p, &b);
    let r = p.get(
        "/web/json",
        &[("X-Request-Id", "req-42"), ("User-Agent", "curl/8")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(echoed_headers(&r.body)["x-request-id"], "req-42");
    let line = wait_line(&p, &["\"kind\":\"http\"", "/web/json"]);
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    for field in FIELDS {
        assert!(value.get(field).is_some(), "{field} missing: {line}");
    }
    assert_eq!(value["request_id"], "req-42");
    assert_eq!(value["status"], 200);
    assert_eq!(value["service"], "web");
    assert_eq!(value["path"], "/web/json");
    assert_eq!(value["header.user-agent"], "cur");
    assert!(value["t_wait_ms"].as_f64().unwrap() >= 0.0, "{line}");
    assert!(value["t_connect_ms"].as_f64().unwrap() >= 0.0, "{line}");
    assert!(value["t_total_ms"].as_f64().unwrap() > 0.0);

    // A request nothing routes is logged too, with its reason.
    assert_eq!(p.get("/nowhere", &[]).status, 503);
    let line = wait_line(&p, &["\"kind\":\"http\"", "/nowhere"]);
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["termination"], "no_route");
    assert_eq!(value["service"], serde_json::Value::Null);
}

#[test]
fn errors_only_logs_failures_and_not_successes() {
    let p = Proxy::builder()
        .env("DEBUG", "true")
        .env("DEBUG_ERRORS_ONLY", "true")
        .start();
    let b = Backend::start("web");
    web(&p, &b);
    add(
        &p,
        &format!(
            "serviceName=down&servicePath=/down&port={}&outboundHostname=127.0.0.1",
            closed_port()
        ),
    );
    assert_eq!(p.get("/web/fine", &[]).status, 200);
    assert_eq!(p.get("/down/x", &[]).status, 503);
    let line = wait_line(&p, &["kind=http", "path=/down/x"]);
    assert_eq!(text_field(&line, "status"), "503");
    assert_eq!(text_field(&line, "termination"), "upstream_unreachable");
    assert_eq!(text_field(&line, "service"), "down");
    // A clean stop writes every line still buffered before "stopped".
    let logs = p.logs.clone();
    p.terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logs.lock().unwrap().iter().any(|l| l.contains("stopped")) {
        assert!(Instant::now() < deadline, "no 'stopped' line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = logs.lock().unwrap().join("\n");
    assert!(text.contains("path=/down/x"), "{text}");
    assert!(!text.contains("path=/web/fine"), "{text}");
}

#[test]
fn logging_is_off_by_default() {
    let p = Proxy::start();
    let b = Backend::start("web");
    web(&p, &b);
    let r = p.get("/web/quiet", &[]);
    assert_eq!(r.status, 200);
    assert!(!echoed_headers(&r.body).contains_key("x-request-id"));
    assert!(!p.log_text().contains("kind=http"), "{}", p.log_text());
}

/// A TCP server echoing what it reads, once per connection.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_tcp_connection_is_logged_with_its_bytes() {
    let p = Proxy::builder().env("DEBUG", "true").start();
    let echo = echo_server();
    let src = closed_port();
    add(
        &p,
        &format!(
            "serviceName=echo&reqMode=tcp&srcPort={src}&port={echo}&outboundHostname=127.0.0.1"
        ),
    );
    let mut s = TcpStream::connect(("127.0.0.1", src)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello\n").unwrap();
    let mut got = [0u8; 6];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello\n");
    drop(s);
    let line = wait_line(&p, &["kind=tcp", &format!("port={src}")]);
    for field in FIELDS {
        text_field(&line, field);
    }
    assert_eq!(text_field(&line, "service"), "echo");
    assert_eq!(text_field(&line, "upstream"), format!("127.0.0.1:{echo}"));
    assert_eq!(text_field(&line, "bytes_in"), "6");
    assert_eq!(text_field(&line, "bytes_out"), "6");
    assert_eq!(text_field(&line, "termination"), "closed");
    assert_eq!(text_field(&line, "method"), "-");
    assert_ne!(text_field(&line, "t_connect_ms"), "-");
}

#[test]
fn bad_values_stop_the_start_naming_the_variable() {
    for (var, value) in [
        ("CAPTURE_REQUEST_HEADER", "Host:abc"),
        ("CAPTURE_REQUEST_HEADER", "Authorization:20"),
        ("LOG_FORMAT", "xml"),
        ("DEBUG", "yes"),
        ("DEBUG_ERRORS_ONLY", "sometimes"),
    ] {
        let Err(text) = Proxy::builder().env(var, value).try_start() else {
            panic!("{var}={value} was accepted");
        };
        assert!(text.contains(var), "{var}={value}: {text}");
    }
}

/// Sends `request` on a new connection after `delay`, reads the answer until close.
fn delayed_request(p: &Proxy, delay: Duration, request: &str) -> String {
    let mut stream = TcpStream::connect(p.http[0]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::sleep(delay);
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn wait_connect_and_bytes_are_measured_not_declared() {
    // One worker: one upstream connection pool, so the second request reuses the first's.
    let p = Proxy::builder()
        .env("DEBUG", "true")
        .env("WORKER_THREADS", "1")
        .start();
    let b = Backend::start("web");
    web(&p, &b);

    // t_wait: the client sent half its request head, then the rest 300 ms later.
    let mut stream = TcpStream::connect(p.http[0]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /web/waited HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(b"Connection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = wait_line(&p, &["kind=http", "path=/web/waited"]);
    let wait: f64 = text_field(&line, "t_wait_ms").parse().unwrap();
    assert!(wait >= 300.0, "{line}");

    // t_connect: 0 once a pooled upstream connection is reused.
    assert_eq!(p.get("/web/pooled", &[]).status, 200);
    let line = wait_line(&p, &["kind=http", "path=/web/pooled"]);
    assert_eq!(text_field(&line, "t_connect_ms"), "0.000", "{line}");

    // bytes_in: the body bytes passed upstream, also for a chunked body without a length.
    let answer = delayed_request(
        &p,
        Duration::ZERO,
        "POST /web/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = wait_line(&p, &["kind=http", "path=/web/chunked"]);
    assert_eq!(text_field(&line, "bytes_in"), "11", "{line}");
    // A request that is not forwarded passed nothing upstream.
    let answer = delayed_request(
        &p,
        Duration::ZERO,
        "POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let line = wait_line(&p, &["kind=http", "path=/nowhere"]);
    assert_eq!(text_field(&line, "bytes_in"), "0", "{line}");

    // bytes_out: a chunked response (no declared length) is counted as sent.
    let chunked = crate::support::raw_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    );
    add(
        &p,
        &format!(
            "serviceName=chunky&servicePath=/chunky&port={}&outboundHostname=127.0.0.1",
            chunked.port()
        ),
    );
    let r = p.get("/chunky/x", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "abcdefg"));
    let line = wait_line(&p, &["kind=http", "path=/chunky/x"]);
    assert_eq!(text_field(&line, "bytes_out"), "7", "{line}");
    assert_eq!(text_field(&line, "termination"), "ok", "{line}");

    // A body cut short of its Content-Length: the bytes sent, and the line says so.
    let short =
        crate::support::raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..");
    add(
        &p,
        &format!(
            "serviceName=short&servicePath=/short&port={}&outboundHostname=127.0.0.1",
            short.port()
        ),
    );
    let answer = delayed_request(
        &p,
        Duration::ZERO,
        "GET /short/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = wait_line(&p, &["kind=http", "path=/short/x"]);
    assert_eq!(text_field(&line, "bytes_out"), "10", "{line}");
    assert_eq!(
        text_field(&line, "termination"),
        "body_incomplete",
        "{line}"
    );
}
