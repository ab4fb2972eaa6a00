//! The data plane's security rules against the real binary (issue 8): one canonical path for
//! routing, auth and the upstream; ambiguous requests refused; malformed framing answered as a
//! client error; half-closed clients answered; a port in use refused at start.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::{read_until_closed, Backend, Proxy};

/// Sends `request` on a fresh connection, optionally shuts down the sending side, and returns
/// everything read until the proxy closes (or 5 s of silence).
pub(crate) fn exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    if half_close {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    read_until_closed(&mut stream)
}

/// The status code of a raw response (0 when there is none).
pub(crate) fn status_of(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn get(addr: SocketAddr, target: &str, extra: &str) -> String {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: example.com\r\n{extra}Connection: close\r\n\r\n");
    exchange(addr, request.as_bytes(), false)
}

fn stats_totals(p: &Proxy) -> serde_json::Value {
    let r = p.get("/admin?stats;json", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["totals"].clone()
}

/// `users=u:p` on `/secure` (backend "protected"), an open service on `/` (backend "open").
fn protected_and_open() -> (Proxy, Backend, Backend) {
    let p = Proxy::builder()
        .env("STATS_USER", "none")
        .env("STATS_PASS", "none")
        .start();
    let protected = Backend::start("protected");
    let open = Backend::start("open");
    let r = p.reconfigure(&format!(
        "serviceName=protected&servicePath=/secure&port={}&outboundHostname=127.0.0.1&users=u:p",
        protected.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.reconfigure(&format!(
        "serviceName=open&servicePath=/&port={}&outboundHostname=127.0.0.1",
        open.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    (p, protected, open)
}

#[test]
fn no_spelling_of_a_protected_path_gets_past_its_gate() {
    let (p, protected, open) = protected_and_open();
    let addr = p.http[0];
    for target in [
        "/secure/secret.txt",
        "/%73ecure/secret.txt",
        "/%73%65%63%75%72%65/secret.txt",
        "//secure/secret.txt",
        "/./secure/secret.txt",
        "/x/../secure/secret.txt",
        "/x/%2e%2e/secure/secret.txt",
        "/x/%2E%2E/secure/secret.txt",
        "/%2fsecure/secret.txt",
        "/%2Fsecure/secret.txt",
        "/x%5c..%5csecure/secret.txt",
        "/secure%00/secret.txt",
    ] {
        let response = get(addr, target, "");
        let status = status_of(&response);
        assert!(
            status == 401 || status == 400,
            "{target} answered {status}:\n{response}"
        );
        assert!(!response.contains("\nprotected\n"), "{target}: {response}");
    }
    assert_eq!(protected.hit_count(), 0, "{:?}", protected.hits);
    assert_eq!(open.hit_count(), 0, "{:?}", open.hits);
    // A refused path names its problem.
    let response = get(addr, "/%2fsecure/secret.txt", "");
    assert!(response.contains("encoded slash"), "{response}");
    // With credentials, every spelling reaches the protected backend as the normal path.
    let auth = "Authorization: Basic dTpw\r\n";
    for target in ["/%73ecure/secret.txt", "/x/%2e%2e//secure/./secret.txt"] {
        let response = get(addr, target, auth);
        assert_eq!(status_of(&response), 200, "{target}: {response}");
        assert!(response.contains("\nprotected\n"), "{response}");
    }
    let hits = protected.hits.lock().unwrap().clone();
    assert_eq!(hits, ["GET /secure/secret.txt", "GET /secure/secret.txt"]);
    // The query string is forwarded as it came.
    let response = get(addr, "/a/../b%7e?x=%2e%2e/%2f", "");
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(
        open.hits.lock().unwrap().last().unwrap(),
        "GET /b~?x=%2e%2e/%2f"
    );
    // The statistics page is found by its normal path too.
    let response = get(addr, "/x/../admin?stats;json", "");
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.contains("\"totals\""), "{response}");
    let totals = stats_totals(&p);
    assert!(
        totals["responses"]["4xx"].as_u64().unwrap() >= 13,
        "{totals}"
    );
    assert_eq!(totals["responses"]["5xx"], 0, "{totals}");
}

#[test]
fn excludes_and_path_types_see_the_normal_path() {
    let p = Proxy::start();
    let b = Backend::start("multi");
    let r = p.reconfigure(&format!(
        "serviceName=multi&servicePath=/demo&servicePathExclude=/demo/secret\
         &port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.reconfigure(&format!(
        "serviceName=exact&servicePath=/only&pathType=path&port={}&outboundHostname=127.0.0.1\
         &reqPathSearchReplace=/only,/rewritten",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let addr = p.http[0];
    assert_eq!(status_of(&get(addr, "/demo/%73ecret", "")), 503);
    assert_eq!(status_of(&get(addr, "/demo//secret", "")), 503);
    assert_eq!(status_of(&get(addr, "/demo/x/../secret", "")), 503);
    assert_eq!(status_of(&get(addr, "/x/../%6Fnly", "")), 200);
    assert_eq!(b.hits.lock().unwrap().as_slice(), ["GET /rewritten"]);
}

#[test]
fn two_host_headers_are_refused() {
    let (p, _protected, open) = protected_and_open();
    let response = exchange(
        p.http[0],
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(response.contains("more than one Host header"), "{response}");
    assert_eq!(open.hit_count(), 0);
}

#[test]
fn an_absolute_target_is_routed_by_its_authority_with_one_host() {
    let p = Proxy::start();
    let a = Backend::start("a");
    let b = Backend::start("b");
    for (name, backend) in [("a", &a), ("b", &b)] {
        let r = p.reconfigure(&format!(
            "serviceName={name}&servicePath=/&serviceDomain={name}.example&port={}\
             &outboundHostname=127.0.0.1",
            backend.port()
        ));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let response = exchange(
        p.http[0],
        b"GET http://b.example/x/../y HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.contains("\nb\nGET /y\n"), "{response}");
    let hosts: Vec<&str> = response
        .lines()
        .filter(|l| l.starts_with("host: "))
        .collect();
    assert_eq!(hosts, ["host: b.example"], "{response}");
    assert_eq!(a.hit_count(), 0);
}

#[test]
fn malformed_framing_is_a_client_error() {
    let (p, _protected, open) = protected_and_open();
    let addr = p.http[0];
    let bad_chunk =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n";
    let response = exchange(addr, bad_chunk, false);
    assert_eq!(status_of(&response), 400, "{response}");
    let short = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b";
    let response = exchange(addr, short, true);
    assert_eq!(status_of(&response), 400, "{response}");
    let totals = stats_totals(&p);
    assert_eq!(totals["responses"]["4xx"], 2, "{totals}");
    assert_eq!(totals["responses"]["5xx"], 0, "{totals}");
    assert_eq!(totals["upstream_errors"], 0, "{totals}");
    let logs = p.log_text();
    assert!(!logs.contains("upstream request failed"), "{logs}");
    // The proxy still serves well-formed requests.
    assert_eq!(status_of(&get(addr, "/fine", "")), 200);
    assert!(open.hit_count() >= 1);
}

#[test]
fn half_closed_clients_get_their_answer() {
    let (p, _protected, open) = protected_and_open();
    let response = exchange(
        p.http[0],
        b"GET /half HTTP/1.1\r\nHost: example.com\r\n\r\n",
        true,
    );
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.contains("\nopen\nGET /half\n"), "{response}");
    // A request with a body, then the half-close.
    let response = exchange(
        p.http[0],
        b"POST /half HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
        true,
    );
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(open.hit_count(), 2);
}

#[test]
fn a_second_proxy_on_a_port_in_use_fails_at_start() {
    let first = Proxy::start();
    let port = first.http_port().to_string();
    let second = Proxy::builder().env("DEFAULT_PORTS", &port).try_start();
    let text = match second {
        Ok(_) => panic!("a second proxy started on port {port}"),
        Err(text) => text,
    };
    assert!(text.contains("exited with"), "{text}");
    assert!(!text.contains("exit status: 0"), "{text}");
    assert!(text.contains(&format!("port {port}")), "{text}");
    assert!(text.contains("DEFAULT_PORTS"), "{text}");
    // The first proxy still answers on its port.
    let response = get(first.http[0], "/", "");
    assert_eq!(status_of(&response), 503, "{response}");
}
