//! The HTTP data plane's matching, ordering, rewriting, redirects and errors over real HTTP.

use std::time::Duration;

use crate::support::{closed_port, echoed_headers, raw_backend, raw_request, Backend, Proxy};

fn add(p: &Proxy, query: &str) {
    let r = p.reconfigure(query);
    assert_eq!(r.status, 200, "{query}: {}", r.body);
}

#[test]
fn seed_walkthrough_path_routing() {
    let p = Proxy::start();
    let b = Backend::start("go-demo");
    assert_eq!(p.get("/demo/hello", &[]).status, 503);
    add(
        &p,
        &format!(
            "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1",
            b.port()
        ),
    );
    let r = p.get("/demo/hello", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-backend"), Some("go-demo"));
    assert!(r.body.contains("GET /demo/hello"));
    // path_beg has no segment boundary, as DFP.
    assert_eq!(p.get("/demonstration", &[]).status, 200);
    assert_eq!(p.get("/other", &[]).status, 503);
}

#[test]
fn comma_separated_paths_and_excludes_and_exact_path_type() {
    let p = Proxy::start();
    let b = Backend::start("b");
    add(&p, &format!("serviceName=multi&servicePath=/demo/hello,/demo/person&servicePathExclude=/demo/person/secret&port={}&outboundHostname=127.0.0.1", b.port()));
    assert_eq!(p.get("/demo/hello", &[]).status, 200);
    assert_eq!(p.get("/demo/person/1", &[]).status, 200);
    assert_eq!(p.get("/demo/person/secret", &[]).status, 503);
    assert_eq!(p.get("/demo/other", &[]).status, 503);
    add(
        &p,
        &format!(
            "serviceName=exact&servicePath=/only&pathType=path&port={}&outboundHostname=127.0.0.1",
            b.port()
        ),
    );
    assert_eq!(p.get("/only", &[]).status, 200);
    assert_eq!(p.get("/only/more", &[]).status, 503);
}

#[test]
fn service_domains_exact_wildcard_and_no_prefix_bug() {
    let p = Proxy::start();
    let a = Backend::start("a");
    let w = Backend::start("w");
    add(&p, &format!("serviceName=a&servicePath=/&serviceDomain=my-domain.com,other.com&port={}&outboundHostname=127.0.0.1", a.port()));
    add(
        &p,
        &format!(
            "serviceName=w&serviceDomain=*wild.com&port={}&outboundHostname=127.0.0.1",
            w.port()
        ),
    );
    let host = |h: &str| p.get("/x", &[("host", h)]);
    assert_eq!(host("my-domain.com").header("x-backend"), Some("a"));
    assert_eq!(host("MY-DOMAIN.com:8080").header("x-backend"), Some("a"));
    assert_eq!(host("other.com").header("x-backend"), Some("a"));
    assert_eq!(host("my-domain.com.evil.net").status, 503);
    assert_eq!(host("api.wild.com").header("x-backend"), Some("w"));
    assert_eq!(host("my-wild.com").header("x-backend"), Some("w"));
    assert_eq!(host("wild.com.evil.net").status, 503);
}

#[test]
fn indexed_destinations_route_to_their_ports() {
    let p = Proxy::start();
    let one = Backend::start("one");
    let two = Backend::start("two");
    add(&p, &format!(
        "serviceName=svc&outboundHostname=127.0.0.1&servicePath.1=/one&port.1={}&servicePath.2=/two&port.2={}",
        one.port(), two.port()
    ));
    assert_eq!(p.get("/one/x", &[]).header("x-backend"), Some("one"));
    assert_eq!(p.get("/two/x", &[]).header("x-backend"), Some("two"));
}

#[test]
fn user_agent_and_service_header_matching() {
    let p = Proxy::start();
    let mobile = Backend::start("mobile");
    let rest = Backend::start("rest");
    let hdr = Backend::start("hdr");
    add(&p, &format!(
        "serviceName=ua&outboundHostname=127.0.0.1&servicePath.1=/app&port.1={}&userAgent.1=android,iphone&servicePath.2=/app&port.2={}",
        mobile.port(), rest.port()
    ));
    assert_eq!(
        p.get("/app", &[("user-agent", "Mozilla (iPhone)")])
            .header("x-backend"),
        Some("mobile")
    );
    assert_eq!(
        p.get("/app", &[("user-agent", "curl")]).header("x-backend"),
        Some("rest")
    );
    add(&p, &format!("serviceName=aa-hdr&servicePath=/app&serviceHeader=X-Version:2&port={}&outboundHostname=127.0.0.1", hdr.port()));
    assert_eq!(
        p.get("/app", &[("x-version", "2"), ("user-agent", "curl")])
            .header("x-backend"),
        Some("hdr")
    );
    assert_eq!(
        p.get("/app", &[("x-version", "3"), ("user-agent", "curl")])
            .header("x-backend"),
        Some("rest")
    );
}

#[test]
fn src_port_restricts_to_one_listener_and_default_backend_catches_the_rest() {
    let p = Proxy::builder().env("BIND_PORTS", "0").start();
    assert_eq!(p.http.len(), 2);
    let b = Backend::start("b");
    let d = Backend::start("default");
    let second = p.http[1];
    add(
        &p,
        &format!(
            "serviceName=svc&servicePath=/p&srcPort={}&port={}&outboundHostname=127.0.0.1",
            second.port(),
            b.port()
        ),
    );
    assert_eq!(p.get_on(second, "/p", &[]).header("x-backend"), Some("b"));
    assert_eq!(p.get_on(p.http[0], "/p", &[]).status, 503);
    add(&p, &format!("serviceName=dflt&servicePath=/zzz&isDefaultBackend=true&port={}&outboundHostname=127.0.0.1", d.port()));
    assert_eq!(
        p.get_on(p.http[0], "/anything", &[]).header("x-backend"),
        Some("default")
    );
}

#[test]
fn path_rewrites_deprecated_and_regsub() {
    let p = Proxy::start();
    let b = Backend::start("b");
    add(&p, &format!(
        "serviceName=old&servicePath=/something&reqPathSearch=/something/&reqPathReplace=/demo/&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    let r = p.get("/something/hello?x=1", &[]);
    assert!(r.body.contains("GET /demo/hello?x=1"), "{}", r.body);
    add(&p, &format!(
        "serviceName=new&servicePath=/api&reqPathSearchReplace=/api/v(%5B0-9%5D)/,/v%5C1/:/v1/,/legacy/&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    let r = p.get("/api/v1/users", &[]);
    assert!(r.body.contains("GET /legacy/users"), "{}", r.body);
}

#[test]
fn redirects_https_only_from_domain_and_proto() {
    let p = Proxy::start();
    let b = Backend::start("b");
    add(&p, &format!("serviceName=secure&servicePath=/secure&httpsOnly=true&port={}&outboundHostname=127.0.0.1", b.port()));
    let r = p.get("/secure/x?y=1", &[("host", "example.com:8080")]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://example.com/secure/x?y=1")
    );
    add(&p, &format!("serviceName=moved&servicePath=/&serviceDomain=new.com&redirectFromDomain=old.com&port={}&outboundHostname=127.0.0.1", b.port()));
    let r = p.get("/page?q=2", &[("host", "old.com")]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://new.com/page?q=2"));
    add(&p, &format!("serviceName=proto&servicePath=/proto&redirectWhenHttpProto=true&httpsRedirectCode=308&port={}&outboundHostname=127.0.0.1", b.port()));
    let r = p.get(
        "/proto",
        &[("host", "a.com"), ("x-forwarded-proto", "http")],
    );
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://a.com/proto"));
    assert_eq!(
        p.get(
            "/proto",
            &[("host", "a.com"), ("x-forwarded-proto", "https")]
        )
        .status,
        200
    );
}

#[test]
fn method_and_plain_http_denials_are_403() {
    let p = Proxy::start();
    let b = Backend::start("b");
    add(&p, &format!("serviceName=allow&servicePath=/allow&allowedMethods=DELETE&port={}&outboundHostname=127.0.0.1", b.port()));
    add(&p, &format!("serviceName=deny&servicePath=/deny&deniedMethods=GET&port={}&outboundHostname=127.0.0.1", b.port()));
    add(
        &p,
        &format!(
            "serviceName=tls&servicePath=/tls&denyHttp=true&port={}&outboundHostname=127.0.0.1",
            b.port()
        ),
    );
    assert_eq!(p.get("/allow", &[]).status, 403);
    assert_eq!(p.request_on("DELETE", p.http[0], "/allow", &[]).status, 200);
    assert_eq!(p.get("/deny", &[]).status, 403);
    assert_eq!(p.request_on("POST", p.http[0], "/deny", &[]).status, 200);
    assert_eq!(p.get("/tls", &[]).status, 403);
    assert_eq!(b.hit_count(), 2);
}

#[test]
fn header_rules_and_forwarding_headers() {
    let p = Proxy::start();
    let b = Backend::start("b");
    add(&p, &format!(
        "serviceName=h&servicePath=/h&port={}&outboundHostname=127.0.0.1&addReqHeader=X-Added%20one,X-Client%20%25%5Bsrc%5D&setReqHeader=X-Set%20%22quoted%20value%22&delReqHeader=X-Secret&addResHeader=X-Res%20yes&delResHeader=X-Remove-Me",
        b.port()
    ));
    let r = p.get(
        "/h",
        &[
            ("x-secret", "1"),
            ("x-set", "old"),
            ("x-forwarded-for", "10.9.9.9"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let h = echoed_headers(&r.body);
    assert_eq!(h.get("x-added").map(String::as_str), Some("one"));
    assert_eq!(h.get("x-client").map(String::as_str), Some("127.0.0.1"));
    assert_eq!(h.get("x-set").map(String::as_str), Some("quoted value"));
    assert!(!h.contains_key("x-secret"));
    assert_eq!(
        h.get("x-forwarded-for").map(String::as_str),
        Some("10.9.9.9, 127.0.0.1")
    );
    assert_eq!(h.get("x-forwarded-proto").map(String::as_str), Some("http"));
    assert_eq!(h.get("x-forwarded-port"), Some(&p.http_port().to_string()));
    assert_eq!(r.header("x-res"), Some("yes"));
    assert_eq!(r.header("x-remove-me"), None);
}

#[test]
fn websocket_upgrade_passes_through() {
    let p = Proxy::start();
    let b = Backend::start("b");
    add(
        &p,
        &format!(
            "serviceName=ws&servicePath=/ws&port={}&outboundHostname=127.0.0.1",
            b.port()
        ),
    );
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(p.http[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A reconfigure while the tunnel is open must not disturb it.
    add(&p, "serviceName=other&servicePath=/o&port=1");
    s.write_all(b"hello tunnel").unwrap();
    let mut got = [0u8; 12];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello tunnel");
}

#[test]
fn upstream_failures_map_to_503_504_502() {
    let p = Proxy::start();
    add(
        &p,
        &format!(
            "serviceName=down&servicePath=/down&port={}&outboundHostname=127.0.0.1",
            closed_port()
        ),
    );
    assert_eq!(p.get("/down", &[]).status, 503);
    let b = Backend::start("slow");
    add(
        &p,
        &format!(
            "serviceName=slow&servicePath=/slow&timeoutServer=1&port={}&outboundHostname=127.0.0.1",
            b.port()
        ),
    );
    assert_eq!(p.get("/slow", &[]).status, 504);
    let broken = raw_backend(b"this is not http\r\n\r\n");
    add(
        &p,
        &format!(
            "serviceName=broken&servicePath=/broken&port={}&outboundHostname=127.0.0.1",
            broken.port()
        ),
    );
    assert_eq!(p.get("/broken", &[]).status, 502);
    // An unresolvable service is a 503 for itself only.
    add(
        &p,
        "serviceName=no-such-service-anywhere&servicePath=/ghost&port=80",
    );
    assert_eq!(p.get("/ghost", &[]).status, 503);
    let ok = Backend::start("ok");
    add(
        &p,
        &format!(
            "serviceName=ok&servicePath=/ok&port={}&outboundHostname=127.0.0.1",
            ok.port()
        ),
    );
    assert_eq!(p.get("/ok", &[]).status, 200);
    let raw = raw_request(p.http[0], "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
}
