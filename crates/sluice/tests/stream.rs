//! `reqMode=tcp` and `reqMode=sni` listeners opened and closed at runtime, against the real
//! binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{Proxy, TempDir};
use crate::tls::{client_config, exchange, tls_backend, tls_connect, TestCert};

/// A free port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny Redis-like server: answers `PING` with `+PONG` and `ECHO x` with `x`, per line.
fn redis_like(addr: &str) -> SocketAddr {
    let listener = TcpListener::bind(addr).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let reply = match line.trim() {
                        "PING" => "+PONG".to_string(),
                        other => match other.strip_prefix("ECHO ") {
                            Some(text) => format!("+{text}"),
                            None => "-ERR unknown command".to_string(),
                        },
                    };
                    if out.write_all(format!("{reply}\r\n").as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn ask(stream: &mut TcpStream, line: &str) -> String {
    stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert!(n > 0, "connection closed");
        reply.push(byte[0]);
    }
    String::from_utf8_lossy(&reply).trim_end().to_string()
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn wait_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while connect(port).is_ok() {
        assert!(Instant::now() < deadline, "port {port} still open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tcp_mode_forwards_to_the_tasks_and_closes_with_the_last_service() {
    // Two tasks of "redis" behind one name; one more address that refuses connections.
    let first = redis_like("127.0.0.2:0");
    redis_like(&format!("127.0.0.3:{}", first.port()));
    let dir = TempDir::new("tcp");
    let hosts = dir.0.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.4 tasks.redis\n127.0.0.2 tasks.redis\n127.0.0.3 tasks.redis\n",
    )
    .unwrap();
    let p = Proxy::builder()
        .env("HOSTS_FILE", hosts.to_str().unwrap())
        .start();
    let src = free_port();
    let r = p.reconfigure(&format!(
        "serviceName=redis&reqMode=tcp&srcPort={src}&port={}&clitcpka=true&timeoutTunnel=30",
        first.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let mut s = connect(src).unwrap();
        assert_eq!(ask(&mut s, "PING"), "+PONG");
        assert_eq!(ask(&mut s, "ECHO hello"), "+hello");
        seen.insert(s.peer_addr().unwrap());
    }
    let config = p.api("config", "");
    assert!(
        config.body.contains(&format!("listen {src} mode=tcp")),
        "{}",
        config.body
    );

    // HTTP keeps working beside it, and a long-lived connection survives a reconfigure.
    let mut open = connect(src).unwrap();
    assert_eq!(ask(&mut open, "PING"), "+PONG");
    let r = p.reconfigure("serviceName=other&servicePath=/x&port=1");
    assert_eq!(r.status, 200);
    assert_eq!(ask(&mut open, "PING"), "+PONG");

    let r = p.api("remove", "serviceName=redis");
    assert_eq!(r.status, 200);
    wait_closed(src);
    assert_eq!(
        ask(&mut open, "PING"),
        "+PONG",
        "open connections are not cut"
    );
}

#[test]
fn port_conflicts_and_bind_failures_change_nothing() {
    let p = Proxy::start();
    let http = p.http_port();
    let r = p.reconfigure(&format!("serviceName=a&reqMode=tcp&srcPort={http}&port=1"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains(&format!("port {http}")), "{}", r.body);

    let src = free_port();
    let r = p.reconfigure(&format!(
        "serviceName=a&reqMode=tcp&srcPort={src}&port=1&outboundHostname=127.0.0.1"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.reconfigure(&format!("serviceName=b&reqMode=sni&srcPort={src}&port=1"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains(&format!("port {src}")), "{}", r.body);
    let r = p.reconfigure(&format!("serviceName=c&reqMode=tcp&srcPort={src}&port=2"));
    assert_eq!(r.status, 400, "{}", r.body);

    // A port held by another process (without SO_REUSEPORT) cannot be bound.
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let r = p.reconfigure(&format!("serviceName=d&reqMode=tcp&srcPort={port}&port=1"));
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains(&format!("port {port}")), "{}", r.body);
    let services = p.api("config", "type=json").json();
    assert!(services.get("a").is_some());
    for name in ["b", "c", "d"] {
        assert!(services.get(name).is_none(), "{name} must not be applied");
    }
}

#[test]
fn sni_mode_passes_tls_through_by_server_name() {
    let db = TestCert::self_signed(&["db.example.com"]);
    let web = TestCert::self_signed(&["web.example.com"]);
    let db_backend = tls_backend(&db, "database");
    let web_backend = tls_backend(&web, "website");
    let p = Proxy::start();
    let src = free_port();
    for (name, sni, backend) in [
        ("db", "db.example.com", db_backend),
        ("web", "web.", web_backend),
    ] {
        let path_type = if name == "web" {
            "&pathType=req_ssl_sni+-i+-m+beg"
        } else {
            ""
        };
        let r = p.reconfigure(&format!(
            "serviceName={name}&reqMode=sni&srcPort={src}&port={}&servicePath={sni}{path_type}&outboundHostname=127.0.0.1",
            backend.port()
        ));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], src));
    // Each client verifies the backend's own certificate: TLS is not terminated by the proxy.
    let mut s = tls_connect(addr, "db.example.com", client_config(&[&db.der], &[], None)).unwrap();
    let (status, _, body) = exchange(&mut s, "db.example.com", "/");
    assert_eq!((status, body.as_str()), (200, "database"));
    let mut s = tls_connect(
        addr,
        "web.example.com",
        client_config(&[&web.der], &[], None),
    )
    .unwrap();
    let (status, _, body) = exchange(&mut s, "web.example.com", "/");
    assert_eq!((status, body.as_str()), (200, "website"));
    // An unknown server name is closed without an answer.
    assert!(tls_connect(
        addr,
        "mail.example.com",
        client_config(&[&db.der], &[], None)
    )
    .is_err());
}

#[test]
fn tcp_domains_route_by_the_client_hello() {
    let tls_cert = TestCert::self_signed(&["secure.example.com"]);
    let tls_up = tls_backend(&tls_cert, "tls-route");
    let plain = redis_like("127.0.0.1:0");
    let p = Proxy::start();
    let src = free_port();
    let r = p.reconfigure(&format!(
        "serviceName=tls-svc&reqMode=tcp&srcPort={src}&port={}&serviceDomain=secure.example.com&outboundHostname=127.0.0.1",
        tls_up.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.reconfigure(&format!(
        "serviceName=plain-svc&reqMode=tcp&srcPort={src}&port={}&outboundHostname=127.0.0.1",
        plain.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let addr = SocketAddr::from(([127, 0, 0, 1], src));
    let mut s = tls_connect(
        addr,
        "secure.example.com",
        client_config(&[&tls_cert.der], &[], None),
    )
    .unwrap();
    assert_eq!(exchange(&mut s, "secure.example.com", "/").2, "tls-route");
    // A client that is not speaking TLS goes to the default route.
    let mut s = connect(src).unwrap();
    assert_eq!(ask(&mut s, "PING"), "+PONG");
}
