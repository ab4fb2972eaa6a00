use std::sync::Arc;

use http::header::HeaderName;
use http::HeaderMap;

use super::request::*;
use super::routes::*;
use super::table::*;
use crate::service::*;
use proptest::prelude::*;

// ----- builders -------------------------------------------------------------------------

fn beg(p: &str) -> PathPattern {
    PathPattern::Prefix(p.to_string())
}

fn host(h: &str) -> DomainPattern {
    DomainPattern::Exact(h.to_string())
}

fn dest(paths: Vec<PathPattern>) -> Destination {
    Destination {
        index: 0,
        req_mode: ReqMode::Http,
        path_type: PathType::Beg,
        paths,
        path_excludes: Vec::new(),
        port: Some(8080),
        src_port: None,
        https_port: None,
        src_https_port: None,
        domains: Vec::new(),
        redirect_from_domains: Vec::new(),
        service_headers: Vec::new(),
        user_agents: Vec::new(),
        rewrites: Vec::new(),
        outbound_hostname: None,
        ssl_verify_none: false,
        https_only: false,
        https_redirect_code: RedirectCode::default(),
        allowed_methods: Vec::new(),
        denied_methods: Vec::new(),
        deny_http: false,
        verify_client_ssl: false,
        ignore_authorization: false,
        timeout_server: None,
        max_conn: None,
        timeout_tunnel: None,
        timeout_client: None,
        check_tcp: false,
        clitcpka: false,
        service_group: None,
        balance_group: None,
    }
}

fn service(name: &str, destinations: Vec<Destination>) -> Service {
    Service {
        name: name.to_string(),
        acl_name: name.to_string(),
        params: Params::new(),
        replicas: None,
        distribute: false,
        is_default_backend: false,
        redirect_when_http_proto: false,
        redirect_unless_https_proto: false,
        proxy_instance_name: None,
        request_headers: Vec::new(),
        response_headers: Vec::new(),
        connection_mode: None,
        compression: None,
        sticky: false,
        users: Vec::new(),
        users_secret: None,
        users_pass_encrypted: false,
        service_cert: None,
        destinations,
        warnings: Vec::new(),
    }
}

/// A service with one destination on `paths`.
fn simple(name: &str, paths: &[&str]) -> Service {
    service(name, vec![dest(paths.iter().map(|p| beg(p)).collect())])
}

fn table(services: Vec<Service>) -> (Vec<Arc<Service>>, RouteTable) {
    let services: Vec<Arc<Service>> = services.into_iter().map(Arc::new).collect();
    let table = RouteTable::build(&services);
    (services, table)
}

#[derive(Debug, Clone)]
struct Req {
    host: Option<String>,
    path_and_query: String,
    port: u16,
    headers: HeaderMap,
}

impl Req {
    fn new(host: Option<&str>, path_and_query: &str) -> Req {
        Req {
            host: host.map(str::to_string),
            path_and_query: path_and_query.to_string(),
            port: 80,
            headers: HeaderMap::new(),
        }
    }

    fn at(host: &str, path_and_query: &str) -> Req {
        Req::new(Some(host), path_and_query)
    }

    fn port(mut self, port: u16) -> Req {
        self.port = port;
        self
    }

    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    fn facts(&self) -> RequestFacts<'_> {
        let path = self
            .path_and_query
            .split('?')
            .next()
            .unwrap_or(&self.path_and_query);
        RequestFacts {
            host: self.host.as_deref(),
            path,
            path_and_query: &self.path_and_query,
            local_port: self.port,
            headers: &self.headers,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Forward { order: usize, backend: String },
    Redirect(u16, String),
    NoRoute,
}

fn forward(route: &Route) -> Outcome {
    Outcome::Forward {
        order: route.order,
        backend: route.backend_name(),
    }
}

fn outcome(table: &RouteTable, req: &Req) -> Outcome {
    match table.decide(&req.facts()) {
        Decision::Forward(route) => forward(route),
        Decision::Redirect { status, location } => Outcome::Redirect(status, location),
        Decision::NoRoute => Outcome::NoRoute,
    }
}

/// The service name the request is forwarded to (`None` for a redirect or no route).
fn routed(table: &RouteTable, req: &Req) -> Option<String> {
    match table.decide(&req.facts()) {
        Decision::Forward(route) => Some(route.service.name.clone()),
        _ => None,
    }
}

fn backend(table: &RouteTable, req: &Req) -> Option<String> {
    match table.decide(&req.facts()) {
        Decision::Forward(route) => Some(route.backend_name()),
        _ => None,
    }
}

fn order_names(table: &RouteTable) -> Vec<&str> {
    table.routes().map(|r| r.service.name.as_str()).collect()
}

// ----- ordering ---------------------------------------------------------------------------

#[test]
fn well_known_first_root_last_and_domain_only_counts_as_root() {
    let mut by_host = simple("byhost", &["/"]);
    by_host.destinations[0].domains = vec![host("b.com")];
    let (_s, t) = table(vec![
        simple("root", &["/"]),
        by_host,
        simple("zz-acme", &["/.well-known/acme-challenge"]),
        simple("api", &["/api"]),
    ]);
    assert_eq!(order_names(&t), ["zz-acme", "api", "byhost", "root"]);
    // DFP's gotcha: the path-only service wins over the domain-only one on its path.
    assert_eq!(
        routed(&t, &Req::at("b.com", "/api/x")).as_deref(),
        Some("api")
    );
    assert_eq!(
        routed(&t, &Req::at("b.com", "/other")).as_deref(),
        Some("byhost")
    );
    assert_eq!(
        routed(&t, &Req::at("b.com", "/.well-known/acme-challenge/t")).as_deref(),
        Some("zz-acme")
    );
    assert_eq!(routed(&t, &Req::new(None, "/x")).as_deref(), Some("root"));
}

#[test]
fn acl_names_order_byte_wise_then_service_names() {
    let mut second = simple("second", &["/shop"]);
    second.acl_name = "10-shop".into();
    let mut first = simple("first", &["/shop"]);
    first.acl_name = "05-shop".into();
    let mut lower = simple("lower", &["/u"]);
    lower.acl_name = "a".into();
    let mut upper = simple("upper", &["/u"]);
    upper.acl_name = "Z".into();
    let mut n2 = simple("n2", &["/n"]);
    n2.acl_name = "same".into();
    let mut n1 = simple("n1", &["/n"]);
    n1.acl_name = "same".into();
    let (_s, t) = table(vec![second, first, lower, upper, n2, n1]);
    assert_eq!(
        order_names(&t),
        ["first", "second", "upper", "lower", "n1", "n2"]
    );
    assert_eq!(
        routed(&t, &Req::at("x", "/shop/1")).as_deref(),
        Some("first")
    );
    assert_eq!(routed(&t, &Req::at("x", "/u")).as_deref(), Some("upper"));
    assert_eq!(routed(&t, &Req::at("x", "/n")).as_deref(), Some("n1"));
}

// ----- paths and hosts ----------------------------------------------------------------------

#[test]
fn path_beg_has_no_segment_boundary_and_ignores_the_query() {
    let (_s, t) = table(vec![simple("demo", &["/demo"])]);
    for path in ["/demo", "/demo/x", "/demonstration", "/demo?x=1"] {
        assert_eq!(
            routed(&t, &Req::at("h", path)).as_deref(),
            Some("demo"),
            "{path}"
        );
    }
    for path in ["/dem", "/Demo", "/x?y=/demo", "demo"] {
        assert_eq!(routed(&t, &Req::at("h", path)), None, "{path}");
    }
}

#[test]
fn exact_hosts_match_whole_hosts_case_insensitively_with_ports() {
    let mut s = simple("site", &["/"]);
    s.destinations[0].domains = vec![host("example.com")];
    let (_s, t) = table(vec![s]);
    for h in [
        "example.com",
        "EXAMPLE.Com:8080",
        "example.com.",
        "Example.com:443",
    ] {
        assert_eq!(routed(&t, &Req::at(h, "/")).as_deref(), Some("site"), "{h}");
    }
    for h in [
        "example.com.evil.net",
        "example.community",
        "www.example.com",
        "",
    ] {
        assert_eq!(routed(&t, &Req::at(h, "/")), None, "{h}");
    }
    assert_eq!(routed(&t, &Req::new(None, "/")), None);
}

#[test]
fn wildcard_and_domain_patterns() {
    let mut wild = simple("a-wild", &["/"]);
    wild.destinations[0].domains = vec![DomainPattern::Suffix("example.com".into())];
    let mut exact = simple("b-exact", &["/"]);
    exact.destinations[0].domains = vec![host("api.example.com"), host("other.net")];
    let mut dom = simple("c-dom", &["/"]);
    dom.destinations[0].domains = vec![DomainPattern::Domain("example.org".into())];
    let mut reg = simple("d-reg", &["/"]);
    reg.destinations[0].domains = vec![DomainPattern::Regex(
        UserRegex::new("^shop\\d+\\.", true).unwrap(),
    )];
    let (_s, t) = table(vec![exact, wild, dom, reg]);
    let cases = [
        ("api.example.com", Some("a-wild")), // earlier acl wins across buckets
        ("myexample.com", Some("a-wild")),   // *x is a plain string suffix, as DFP documents
        ("example.com", Some("a-wild")),
        ("example.com.evil.net", None),
        ("other.net:81", Some("b-exact")),
        ("a.b.example.org", Some("c-dom")),
        ("example.org", Some("c-dom")),
        ("badexample.org", None),
        ("Shop12.anything", Some("d-reg")),
        ("shop.anything", None),
    ];
    for (h, want) in cases {
        assert_eq!(routed(&t, &Req::at(h, "/x")).as_deref(), want, "{h}");
    }
}

#[test]
fn excludes_remove_paths_from_a_route() {
    let mut s = simple("app", &["/"]);
    s.destinations[0].path_excludes = vec![beg("/admin"), PathPattern::Exact("/metrics".into())];
    let (_s, t) = table(vec![s, simple("zz-admin", &["/admin"])]);
    assert_eq!(routed(&t, &Req::at("h", "/x")).as_deref(), Some("app"));
    assert_eq!(
        routed(&t, &Req::at("h", "/admin/x")).as_deref(),
        Some("zz-admin")
    );
    assert_eq!(routed(&t, &Req::at("h", "/metrics")), None);
    assert_eq!(
        routed(&t, &Req::at("h", "/metrics/x")).as_deref(),
        Some("app")
    );
}

// ----- other terms ----------------------------------------------------------------------------

#[test]
fn service_header_needs_every_header_with_the_exact_value() {
    let mut v3 = simple("a-v3", &["/api"]);
    v3.destinations[0].service_headers = vec![
        ("X-Version".into(), "Beta".into()),
        ("X-Team".into(), "a".into()),
    ];
    v3.destinations[0].https_port = Some(8443);
    v3.destinations[0].src_https_port = Some(443);
    let (_s, t) = table(vec![v3, simple("b-fallback", &["/api"])]);
    let req = Req::at("h", "/api")
        .header("x-version", "Beta")
        .header("X-TEAM", "a");
    assert_eq!(routed(&t, &req).as_deref(), Some("a-v3"));
    let wrong_case = Req::at("h", "/api")
        .header("X-Version", "beta")
        .header("X-Team", "a");
    assert_eq!(routed(&t, &wrong_case).as_deref(), Some("b-fallback"));
    let one_missing = Req::at("h", "/api").header("X-Version", "Beta");
    assert_eq!(routed(&t, &one_missing).as_deref(), Some("b-fallback"));
    assert_eq!(
        routed(&t, &Req::at("h", "/api")).as_deref(),
        Some("b-fallback")
    );
    // The httpsPort route does not check serviceHeader (as DFP).
    assert_eq!(
        backend(&t, &Req::at("h", "/api").port(443)).as_deref(),
        Some("https-a-v3-be8443_0")
    );
}

#[test]
fn user_agent_destinations_with_a_catch_all_last() {
    let mut android = dest(vec![beg("/")]);
    android.index = 1;
    android.port = Some(1111);
    android.user_agents = vec!["android".into()];
    let mut apple = dest(vec![beg("/")]);
    apple.index = 2;
    apple.port = Some(2222);
    apple.user_agents = vec!["iphone".into(), "iPad".into()];
    let mut rest = dest(vec![beg("/")]);
    rest.index = 3;
    rest.port = Some(3333);
    let (_s, t) = table(vec![service("ua", vec![android, apple, rest])]);
    let with_ua = |ua: &str| backend(&t, &Req::at("h", "/").header("User-Agent", ua));
    assert_eq!(
        with_ua("Mozilla/5.0 (Linux; ANDROID 10)").as_deref(),
        Some("ua-be1111_1")
    );
    assert_eq!(
        with_ua("Mozilla/5.0 (iPad; CPU OS)").as_deref(),
        Some("ua-be2222_2")
    );
    assert_eq!(with_ua("curl/8.0").as_deref(), Some("ua-be3333_3"));
    assert_eq!(
        backend(&t, &Req::at("h", "/")).as_deref(),
        Some("ua-be3333_3")
    );
}

#[test]
fn src_port_restricts_the_local_port() {
    let mut internal = simple("a-internal", &["/"]);
    internal.destinations[0].src_port = Some(8081);
    let (_s, t) = table(vec![internal, simple("b-public", &["/"])]);
    assert_eq!(
        routed(&t, &Req::at("h", "/").port(8081)).as_deref(),
        Some("a-internal")
    );
    assert_eq!(
        routed(&t, &Req::at("h", "/").port(80)).as_deref(),
        Some("b-public")
    );
}

#[test]
fn https_port_gives_a_second_route_on_the_https_source_port() {
    let mut both = dest(vec![beg("/both")]);
    both.src_port = Some(80);
    both.https_port = Some(8443);
    both.src_https_port = Some(443);
    both.outbound_hostname = Some("backend.internal".into());
    let mut only = dest(vec![beg("/only")]);
    only.index = 1;
    only.port = None;
    only.https_port = Some(9443);
    only.src_https_port = Some(443);
    let (_s, t) = table(vec![service("svc", vec![both, only])]);
    let shape: Vec<(String, bool, u16, Option<u16>)> = t
        .routes()
        .map(|r| (r.backend_name(), r.https, r.upstream_port, r.src_port))
        .collect();
    assert_eq!(
        shape,
        [
            ("svc-be8080_0".to_string(), false, 8080, Some(80)),
            ("https-svc-be8443_0".to_string(), true, 8443, Some(443)),
            ("https-svc-be9443_1".to_string(), true, 9443, Some(443)),
        ]
    );
    let Decision::Forward(route) = t.decide(&Req::at("h", "/both").port(443).facts()) else {
        panic!("expected a route");
    };
    assert!(route.https);
    assert_eq!(
        (route.upstream_host(), route.upstream_port),
        ("backend.internal", 8443)
    );
    assert_eq!(
        backend(&t, &Req::at("h", "/both")).as_deref(),
        Some("svc-be8080_0")
    );
    assert_eq!(backend(&t, &Req::at("h", "/only")), None);
    assert_eq!(
        backend(&t, &Req::at("h", "/only").port(443)).as_deref(),
        Some("https-svc-be9443_1")
    );
}

#[test]
fn tcp_and_sni_destinations_give_no_http_routes() {
    let mut tcp = dest(vec![beg("/")]);
    tcp.req_mode = ReqMode::Tcp;
    tcp.src_port = Some(5432);
    let mut sni = dest(vec![beg("/")]);
    sni.req_mode = ReqMode::Sni;
    let (_s, t) = table(vec![service("db", vec![tcp, sni])]);
    assert!(t.is_empty());
    assert!(matches!(
        t.decide(&Req::at("h", "/").facts()),
        Decision::NoRoute
    ));
}

#[test]
fn default_backend_takes_the_last_declared_in_order() {
    let mut d2 = simple("d2", &["/d2"]);
    d2.is_default_backend = true;
    d2.destinations[0].https_port = Some(8443);
    let mut d1 = simple("d1", &["/d1"]);
    d1.is_default_backend = true;
    let (_s, t) = table(vec![d2, d1, simple("other", &["/other"])]);
    // d2 sorts after d1, and its plain route is used.
    assert_eq!(
        backend(&t, &Req::at("h", "/nothing")).as_deref(),
        Some("d2-be8080_0")
    );
    assert_eq!(
        backend(&t, &Req::at("h", "/d1")).as_deref(),
        Some("d1-be8080_0")
    );
    assert_eq!(
        t.default_route().map(Route::backend_name).as_deref(),
        Some("d2-be8080_0")
    );

    let (_s, t) = table(vec![simple("other", &["/other"])]);
    assert!(matches!(
        t.decide(&Req::at("h", "/nothing").facts()),
        Decision::NoRoute
    ));
    assert!(t.default_route().is_none());
}

// ----- redirects ------------------------------------------------------------------------------

#[test]
fn redirect_from_domain_sends_301_to_the_first_service_domain_on_any_path() {
    let mut s = simple("new", &["/app"]);
    s.destinations[0].domains = vec![host("new.com"), host("alt.com")];
    s.destinations[0].redirect_from_domains =
        vec![host("old.com"), DomainPattern::Suffix(".old.org".into())];
    let (_s, t) = table(vec![s]);
    assert_eq!(
        outcome(&t, &Req::at("OLD.com:80", "/any/path?q=1")),
        Outcome::Redirect(301, "http://new.com/any/path?q=1".into())
    );
    assert_eq!(
        outcome(&t, &Req::at("www.old.org", "/")),
        Outcome::Redirect(301, "http://new.com/".into())
    );
    assert_eq!(
        routed(&t, &Req::at("new.com", "/app")).as_deref(),
        Some("new")
    );
    assert_eq!(
        outcome(&t, &Req::at("old.com.evil.net", "/app")),
        Outcome::NoRoute
    );

    let mut wild = simple("wild", &["/"]);
    wild.destinations[0].domains = vec![DomainPattern::Suffix(".example.net".into())];
    wild.destinations[0].redirect_from_domains = vec![host("old.net")];
    let (_s, t) = table(vec![wild]);
    assert_eq!(
        outcome(&t, &Req::at("old.net", "/p")),
        Outcome::Redirect(301, "http://example.net/p".into())
    );
}

#[test]
fn redirect_from_domain_never_redirects_a_host_to_itself() {
    let mut s = simple("site", &["/"]);
    s.destinations[0].domains = vec![DomainPattern::Suffix("www.example.com".into())];
    s.destinations[0].redirect_from_domains = vec![DomainPattern::Suffix("example.com".into())];
    let (_s, t) = table(vec![s]);
    assert_eq!(
        outcome(&t, &Req::at("example.com", "/x")),
        Outcome::Redirect(301, "http://www.example.com/x".into())
    );
    assert_eq!(
        routed(&t, &Req::at("www.example.com", "/x")).as_deref(),
        Some("site")
    );
}

#[test]
fn redirect_when_http_proto_needs_x_forwarded_proto_http() {
    let mut s = simple("secure", &["/secure"]);
    s.redirect_when_http_proto = true;
    s.destinations[0].https_redirect_code = RedirectCode::new(308).unwrap();
    let (_s, t) = table(vec![s]);
    let req = Req::at("Example.com:8080", "/secure/x?y=1");
    assert_eq!(
        outcome(&t, &req.clone().header("X-Forwarded-Proto", "http")),
        Outcome::Redirect(308, "https://Example.com:8080/secure/x?y=1".into())
    );
    assert_eq!(routed(&t, &req).as_deref(), Some("secure"));
    let https = req.clone().header("X-Forwarded-Proto", "https");
    assert_eq!(routed(&t, &https).as_deref(), Some("secure"));
    // Other paths are not this service's, so they are not redirected.
    let other = Req::at("h", "/other").header("X-Forwarded-Proto", "http");
    assert_eq!(outcome(&t, &other), Outcome::NoRoute);
}

#[test]
fn redirect_unless_https_proto_redirects_everything_but_https() {
    let mut s = simple("secure", &["/"]);
    s.redirect_unless_https_proto = true;
    s.destinations[0].src_port = Some(80);
    let (_s, t) = table(vec![s]);
    let redirect = Outcome::Redirect(302, "https://h/a".into());
    assert_eq!(outcome(&t, &Req::at("h", "/a")), redirect);
    assert_eq!(
        outcome(&t, &Req::at("h", "/a").header("x-forwarded-proto", "http")),
        redirect
    );
    let https = Req::at("h", "/a").header("X-Forwarded-Proto", "https");
    assert_eq!(routed(&t, &https).as_deref(), Some("secure"));
    // The srcPort term is part of the redirect condition.
    assert_eq!(
        outcome(&t, &Req::at("h", "/a").port(8080)),
        Outcome::NoRoute
    );
    // Without a Host there is nothing to redirect to: the request is routed.
    assert_eq!(routed(&t, &Req::new(None, "/a")).as_deref(), Some("secure"));
}

#[test]
fn redirects_beat_forwarding_and_the_first_redirect_in_order_wins() {
    // A later service's redirect beats an earlier service's route.
    let mut b = simple("b", &["/shop"]);
    b.redirect_unless_https_proto = true;
    let (_s, t) = table(vec![simple("a", &["/shop"]), b.clone()]);
    assert_eq!(
        outcome(&t, &Req::at("h", "/shop")),
        Outcome::Redirect(302, "https://h/shop".into())
    );

    // Between services, service order decides.
    let mut from_a = simple("a", &["/a"]);
    from_a.destinations[0].domains = vec![host("a.com")];
    from_a.destinations[0].redirect_from_domains = vec![host("x.com")];
    let mut from_b = simple("b", &["/b"]);
    from_b.destinations[0].domains = vec![host("b.com")];
    from_b.destinations[0].redirect_from_domains = vec![host("x.com")];
    let (_s, t) = table(vec![from_b, from_a]);
    assert_eq!(
        outcome(&t, &Req::at("x.com", "/b")),
        Outcome::Redirect(301, "http://a.com/b".into())
    );

    // A proto redirect of an earlier service beats a domain redirect of a later one.
    let mut proto = simple("a", &["/"]);
    proto.redirect_unless_https_proto = true;
    let mut moved = simple("b", &["/"]);
    moved.destinations[0].domains = vec![host("new.com")];
    moved.destinations[0].redirect_from_domains = vec![host("old.com")];
    let (_s, t) = table(vec![moved.clone(), proto]);
    assert_eq!(
        outcome(&t, &Req::at("old.com", "/")),
        Outcome::Redirect(302, "https://old.com/".into())
    );

    // Inside one service the domain redirect comes first (DFP declares it first).
    moved.redirect_unless_https_proto = true;
    let (_s, t) = table(vec![moved]);
    assert_eq!(
        outcome(&t, &Req::at("old.com", "/")),
        Outcome::Redirect(301, "http://new.com/".into())
    );
}

// ----- rendering and types --------------------------------------------------------------------

#[test]
fn render_lists_redirects_routes_and_the_default_backend() {
    let mut s = simple("go-demo", &["/demo"]);
    s.is_default_backend = true;
    s.redirect_when_http_proto = true;
    s.destinations[0].domains = vec![DomainPattern::Suffix(".example.com".into())];
    s.destinations[0].https_only = true;
    let (_s, t) = table(vec![s, simple("other", &["/other"])]);
    let text = t.render();
    let lines: Vec<&str> = text.lines().collect();
    let route_line = lines
        .iter()
        .find(|l| l.contains("go-demo-be8080_0") && l.starts_with("route"))
        .unwrap();
    for part in [
        "service=go-demo",
        "mode=http",
        "srcPort=any",
        "domains=*.example.com",
        "paths=path_beg:/demo",
        "upstream=go-demo:8080",
        "httpsOnly",
        "default",
    ] {
        assert!(route_line.contains(part), "{part} missing in {route_line}");
    }
    assert!(lines
        .iter()
        .any(|l| l.starts_with("redirect") && l.contains("redirectWhenHttpProto")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("route") && l.contains("other-be8080_0")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("default_backend go-demo-be8080_0")));
    assert!(RouteTable::default()
        .render()
        .contains("default_backend none"));
}

#[test]
fn table_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RouteTable>();
    assert_send_sync::<Route>();
}

// ----- scale -----------------------------------------------------------------------------------

/// One of four shapes per service, so every index bucket is exercised.
fn scale_service(i: usize) -> Service {
    let name = format!("s{i:05}");
    let mut d = dest(Vec::new());
    match i % 4 {
        0 => d.paths = vec![beg(&format!("/p{i}/"))],
        1 => {
            d.paths = vec![beg("/")];
            d.domains = vec![host(&format!("h{i}.example.com"))];
        }
        2 => {
            d.paths = vec![beg("/")];
            d.domains = vec![DomainPattern::Suffix(format!(".w{i}.example.net"))];
        }
        _ => {
            d.paths = vec![PathPattern::Exact(format!("/exact{i}"))];
            d.domains = vec![DomainPattern::Domain(format!("d{i}.example.org"))];
        }
    }
    let mut s = service(&name, vec![d]);
    s.is_default_backend = i == 7;
    s
}

#[test]
fn ten_thousand_services_route_correctly() {
    let services: Vec<Arc<Service>> = (0..10_000).map(|i| Arc::new(scale_service(i))).collect();
    let t = RouteTable::build(&services);
    assert_eq!(t.routes().count(), 10_000);
    let expect = |req: Req, want: &str| {
        assert_eq!(routed(&t, &req).as_deref(), Some(want), "{req:?}");
    };
    expect(Req::at("h", "/p4000/x"), "s04000");
    expect(Req::at("H4001.example.com:80", "/anything"), "s04001");
    expect(Req::at("a.b.w4002.example.net", "/"), "s04002");
    expect(Req::at("x.d4003.example.org", "/exact4003"), "s04003");
    expect(Req::at("d4003.example.org", "/exact4003/no"), "s00007"); // default backend
    expect(Req::at("h4001.example.com.evil.net", "/"), "s00007");
    for i in (0..10_000).step_by(37) {
        let reqs = [
            Req::at(&format!("h{i}.example.com"), &format!("/p{i}/q")),
            Req::at(&format!("www.w{i}.example.net"), "/"),
            Req::at(&format!("d{i}.example.org"), &format!("/exact{i}")),
            Req::at("nowhere", &format!("/p{i}")),
        ];
        for req in reqs {
            let facts = req.facts();
            let naive = t
                .routes()
                .find(|r| r.matches(&facts))
                .or(t.default_route())
                .map(forward)
                .unwrap_or(Outcome::NoRoute);
            assert_eq!(outcome(&t, &req), naive, "{req:?}");
        }
    }
}

// ----- property: the index keeps first-match order ----------------------------------------------

const PATHS: usize = 16;
const DOMAINS: usize = 10;

fn path_pattern(i: usize) -> PathPattern {
    match i {
        0 => beg("/"),
        1 => beg("/a"),
        2 => beg("/ab"),
        3 => beg("/abc"),
        4 => beg("/b"),
        5 => PathPattern::Exact("/a".into()),
        6 => PathPattern::Exact("/ab".into()),
        7 => PathPattern::Suffix("c".into()),
        8 => PathPattern::Substring("b".into()),
        9 => PathPattern::Dir("/a".into()),
        10 => PathPattern::Regex(UserRegex::new("^/a.c", false).unwrap()),
        11 => PathPattern::UrlPrefix("/a?x".into()),
        12 => PathPattern::UrlPrefix("/ab".into()),
        13 => beg("/.well-known"),
        14 => PathPattern::Exact("/".into()),
        _ => beg(""),
    }
}

fn domain_pattern(i: usize) -> DomainPattern {
    match i {
        0 => host("a.com"),
        1 => host("b.a.com"),
        2 => DomainPattern::Suffix("a.com".into()),
        3 => DomainPattern::Suffix(".a.com".into()),
        4 => DomainPattern::Suffix(String::new()),
        5 => DomainPattern::Domain("a.com".into()),
        6 => DomainPattern::Regex(UserRegex::new("^b\\.", true).unwrap()),
        7 => host("c.org"),
        8 => DomainPattern::Domain("b.a.com".into()),
        _ => DomainPattern::Suffix("com".into()),
    }
}

#[derive(Debug, Clone)]
struct DestSpec {
    paths: Vec<usize>,
    excludes: Vec<usize>,
    domains: Vec<usize>,
    redirect_from: Option<usize>,
    port: bool,
    https: bool,
    src_port: usize,
    src_https: bool,
    header: usize,
    agent: usize,
    code: bool,
}

#[derive(Debug, Clone)]
struct SvcSpec {
    acl: usize,
    dests: Vec<DestSpec>,
    default: bool,
    when_http: bool,
    unless_https: bool,
}

fn dest_spec() -> impl Strategy<Value = DestSpec> {
    use proptest::collection::vec;
    (
        vec(0..PATHS, 0..3),
        vec(0..PATHS, 0..2),
        vec(0..DOMAINS, 0..3),
        proptest::option::weighted(0.15, 0..DOMAINS),
        proptest::bool::weighted(0.8),
        proptest::bool::weighted(0.3),
        0..3usize,
        any::<bool>(),
        0..3usize,
        0..3usize,
        any::<bool>(),
    )
        .prop_map(
            |(
                paths,
                excludes,
                domains,
                redirect_from,
                port,
                https,
                src_port,
                src_https,
                header,
                agent,
                code,
            )| {
                DestSpec {
                    paths,
                    excludes,
                    domains,
                    redirect_from,
                    port,
                    https,
                    src_port,
                    src_https,
                    header,
                    agent,
                    code,
                }
            },
        )
}

fn svc_spec() -> impl Strategy<Value = SvcSpec> {
    (
        0..4usize,
        proptest::collection::vec(dest_spec(), 1..4),
        proptest::bool::weighted(0.3),
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(acl, dests, default, when_http, unless_https)| SvcSpec {
            acl,
            dests,
            default,
            when_http,
            unless_https,
        })
}

fn to_service(i: usize, spec: &SvcSpec) -> Service {
    let dests = spec
        .dests
        .iter()
        .enumerate()
        .map(|(n, ds)| {
            let mut d = dest(ds.paths.iter().map(|&p| path_pattern(p)).collect());
            d.index = u8::try_from(n).unwrap();
            d.path_excludes = ds.excludes.iter().map(|&p| path_pattern(p)).collect();
            d.domains = ds.domains.iter().map(|&p| domain_pattern(p)).collect();
            d.redirect_from_domains = ds.redirect_from.map(domain_pattern).into_iter().collect();
            d.port = ds.port.then_some(8000 + u16::try_from(n).unwrap());
            d.https_port = ds.https.then_some(9000 + u16::try_from(n).unwrap());
            d.src_port = [None, Some(80), Some(8080)][ds.src_port];
            d.src_https_port = ds.src_https.then_some(443);
            d.service_headers = match ds.header {
                0 => Vec::new(),
                1 => vec![("X-V".into(), "1".into())],
                _ => vec![("x-v".into(), "2".into())],
            };
            d.user_agents = match ds.agent {
                0 => Vec::new(),
                1 => vec!["curl".into()],
                _ => vec!["moz".into(), "wget".into()],
            };
            if ds.code {
                d.https_redirect_code = RedirectCode::new(307).unwrap();
            }
            d
        })
        .collect();
    let mut s = service(&format!("s{i}"), dests);
    s.acl_name = ["a", "B", "b", "svc"][spec.acl].to_string();
    s.is_default_backend = spec.default;
    s.redirect_when_http_proto = spec.when_http;
    s.redirect_unless_https_proto = spec.unless_https;
    s
}

fn req_spec() -> impl Strategy<Value = Req> {
    const HOSTS: [Option<&str>; 11] = [
        None,
        Some("a.com"),
        Some("A.COM:8080"),
        Some("b.a.com"),
        Some("x.b.a.com"),
        Some("ba.com"),
        Some("c.org"),
        Some("a.com.evil.net"),
        Some("[::1]:80"),
        Some(""),
        Some("b.c.org."),
    ];
    const PATHS: [&str; 11] = [
        "/",
        "/a",
        "/ab",
        "/abc",
        "/abc/d",
        "/b",
        "/a/c",
        "/.well-known/x",
        "/x",
        "",
        "/a?x=1",
    ];
    (
        0..HOSTS.len(),
        0..PATHS.len(),
        any::<bool>(),
        0..3usize,
        0..3usize,
        0..4usize,
        0..4usize,
    )
        .prop_map(|(h, p, query, port, header, agent, proto)| {
            let mut path = PATHS[p].to_string();
            if query {
                path.push_str("?q=/b");
            }
            let mut req = Req::new(HOSTS[h], &path).port([80, 443, 8080][port]);
            match header {
                1 => req = req.header("x-v", "1"),
                2 => req = req.header("X-V", "2"),
                _ => {}
            }
            match agent {
                1 => req = req.header("user-agent", "CURL/8"),
                2 => req = req.header("user-agent", "Mozilla/5"),
                3 => req = req.header("user-agent", "lynx"),
                _ => {}
            }
            match proto {
                1 => req = req.header("x-forwarded-proto", "http"),
                2 => req = req.header("x-forwarded-proto", "https"),
                3 => req = req.header("x-forwarded-proto", "ftp"),
                _ => {}
            }
            req
        })
}

/// The reference: DFP's rules applied literally, by linear scans.
fn naive(services: &[Arc<Service>], t: &RouteTable, req: &Req) -> Outcome {
    let facts = req.facts();
    let norm = facts.host.map(normalize_host);
    let mut sorted: Vec<&Arc<Service>> = services.iter().collect();
    sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let protos: Vec<&str> = req
        .headers
        .get_all("x-forwarded-proto")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(str::trim)
        .collect();
    let uri = if facts.path_and_query.is_empty() {
        "/"
    } else {
        facts.path_and_query
    };
    for s in &sorted {
        for d in s
            .destinations
            .iter()
            .filter(|d| d.req_mode == ReqMode::Http)
        {
            let target = match d.domains.first() {
                Some(DomainPattern::Exact(x) | DomainPattern::Domain(x)) => x.clone(),
                Some(DomainPattern::Suffix(x)) => x.trim_start_matches(['*', '.']).to_string(),
                _ => continue,
            };
            if let Some(h) = &norm {
                if !target.is_empty()
                    && *h != target
                    && d.redirect_from_domains.iter().any(|rd| rd.matches(h))
                {
                    return Outcome::Redirect(301, format!("http://{target}{uri}"));
                }
            }
        }
        let wanted = (s.redirect_when_http_proto && protos.contains(&"http"))
            || (s.redirect_unless_https_proto && !protos.contains(&"https"));
        let raw = facts.host.map(str::trim).unwrap_or_default();
        if !wanted || raw.is_empty() {
            continue;
        }
        let Some(h) = &norm else { continue };
        for r in t
            .routes()
            .filter(|r| Arc::ptr_eq(&r.service, s) && !r.https)
        {
            let d = r.destination();
            if r.src_port.unwrap_or(facts.local_port) == facts.local_port
                && d.paths
                    .iter()
                    .any(|p| p.matches(facts.path, facts.path_and_query))
                && (d.domains.is_empty() || d.domains.iter().any(|x| x.matches(h)))
            {
                return Outcome::Redirect(
                    d.https_redirect_code.get(),
                    format!("https://{raw}{uri}"),
                );
            }
        }
    }
    if let Some(r) = t.routes().find(|r| r.matches(&facts)) {
        return forward(r);
    }
    let last_default = t.routes().filter(|r| r.service.is_default_backend).last();
    match last_default {
        Some(last) => {
            let own: Vec<&Route> = t
                .routes()
                .filter(|r| Arc::ptr_eq(&r.service, &last.service))
                .collect();
            let chosen = own.iter().rev().find(|r| !r.https).unwrap_or(&last);
            forward(chosen)
        }
        None => Outcome::NoRoute,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn index_agrees_with_a_linear_scan(
        specs in proptest::collection::vec(svc_spec(), 1..7),
        reqs in proptest::collection::vec(req_spec(), 1..24),
    ) {
        let services: Vec<Arc<Service>> =
            specs.iter().enumerate().map(|(i, s)| Arc::new(to_service(i, s))).collect();
        let t = RouteTable::build(&services);

        // Route order: sorted services, destination order, plain before https.
        let mut sorted: Vec<&Arc<Service>> = services.iter().collect();
        sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let mut expected = Vec::new();
        for s in sorted {
            for (n, d) in s.destinations.iter().enumerate() {
                if d.port.is_some() {
                    expected.push((s.name.clone(), n, false));
                }
                if d.https_port.is_some() {
                    expected.push((s.name.clone(), n, true));
                }
            }
        }
        let actual: Vec<(String, usize, bool)> =
            t.routes().map(|r| (r.service.name.clone(), r.dest, r.https)).collect();
        prop_assert_eq!(actual, expected);

        for req in &reqs {
            prop_assert_eq!(outcome(&t, req), naive(&services, &t, req), "request {:?}", req);
        }
    }
}

// ----- incremental updates -------------------------------------------------------------------

/// A decision identified independently of `Route::order`: forward target by service name,
/// destination and https, or the redirect, or no route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Forward(String, usize, bool),
    Redirect(u16, String),
    NoRoute,
}

fn identity(table: &RouteTable, req: &Req) -> Identity {
    match table.decide(&req.facts()) {
        Decision::Forward(r) => Identity::Forward(r.service.name.clone(), r.dest, r.https),
        Decision::Redirect { status, location } => Identity::Redirect(status, location),
        Decision::NoRoute => Identity::NoRoute,
    }
}

fn route_ids(table: &RouteTable) -> Vec<(String, usize, bool)> {
    table
        .routes()
        .map(|r| (r.service.name.clone(), r.dest, r.https))
        .collect()
}

fn with_acl(mut s: Service, acl: &str) -> Service {
    s.acl_name = acl.to_string();
    s
}

#[test]
fn a_removed_base_service_no_longer_matches() {
    let (_s, t) = table(vec![
        with_acl(simple("first", &["/x"]), "a"),
        with_acl(simple("second", &["/x"]), "b"),
        simple("other", &["/o"]),
    ]);
    assert_eq!(routed(&t, &Req::at("h", "/x")).as_deref(), Some("first"));
    let u = t.update(&[], &["first"]);
    assert!(Arc::ptr_eq(&t.base, &u.base), "the base is shared");
    assert_eq!(u.changed_services(), 1);
    assert_eq!(routed(&u, &Req::at("h", "/x")).as_deref(), Some("second"));
    assert_eq!(order_names(&u), ["second", "other"]);
    let u = u.update(&[], &["second"]);
    assert_eq!(outcome(&u, &Req::at("h", "/x")), Outcome::NoRoute);
    assert_eq!(routed(&u, &Req::at("h", "/o")).as_deref(), Some("other"));
    // The original table is untouched.
    assert_eq!(routed(&t, &Req::at("h", "/x")).as_deref(), Some("first"));
    // Removing an unknown name changes nothing.
    let same = u.update(&[], &["ghost"]);
    assert_eq!(order_names(&same), ["other"]);
    let u = u.update(&[], &["other"]);
    assert!(u.is_empty());
    assert!(u.render().contains("0 route(s)"));
}

#[test]
fn a_replaced_service_answers_with_its_new_paths() {
    let (_s, t) = table(vec![simple("api", &["/old"]), simple("zz", &["/z"])]);
    let u = t.update(&[Arc::new(simple("api", &["/new"]))], &[]);
    assert_eq!(routed(&u, &Req::at("h", "/new/1")).as_deref(), Some("api"));
    assert_eq!(outcome(&u, &Req::at("h", "/old")), Outcome::NoRoute);
    assert_eq!(order_names(&u), ["api", "zz"]);
    // Replacing it again replaces the delta version, not the base one.
    let u = u.update(&[Arc::new(simple("api", &["/newer"]))], &[]);
    assert_eq!(outcome(&u, &Req::at("h", "/new")), Outcome::NoRoute);
    assert_eq!(routed(&u, &Req::at("h", "/newer")).as_deref(), Some("api"));
    assert_eq!(u.routes().count(), 2);
    assert_eq!(u.changed_services(), 1);
}

#[test]
fn layers_are_ordered_by_group_acl_name_then_service_name() {
    let (_s, t) = table(vec![
        with_acl(simple("m", &["/x"]), "m"),
        simple("root", &["/"]),
    ]);
    let u = t.update(
        &[
            Arc::new(with_acl(simple("early", &["/x"]), "a")),
            Arc::new(with_acl(simple("late", &["/x"]), "z")),
            Arc::new(with_acl(simple("acme", &["/.well-known/a"]), "zz")),
        ],
        &[],
    );
    assert_eq!(order_names(&u), ["acme", "early", "m", "late", "root"]);
    assert_eq!(routed(&u, &Req::at("h", "/x")).as_deref(), Some("early"));
    assert_eq!(
        routed(&u, &Req::at("h", "/.well-known/a")).as_deref(),
        Some("acme")
    );
    let u = u.update(&[], &["early"]);
    assert_eq!(routed(&u, &Req::at("h", "/x")).as_deref(), Some("m"));
    let u = u.update(&[], &["m"]);
    assert_eq!(routed(&u, &Req::at("h", "/x")).as_deref(), Some("late"));
    // The same aclName orders by service name, across layers too.
    let (_s, t) = table(vec![with_acl(simple("n2", &["/n"]), "same")]);
    let u = t.update(&[Arc::new(with_acl(simple("n1", &["/n"]), "same"))], &[]);
    assert_eq!(routed(&u, &Req::at("h", "/n")).as_deref(), Some("n1"));
    let u = t.update(&[Arc::new(with_acl(simple("n3", &["/n"]), "same"))], &[]);
    assert_eq!(routed(&u, &Req::at("h", "/n")).as_deref(), Some("n2"));
}

#[test]
fn the_default_backend_is_the_last_default_across_layers() {
    let default = |name: &str| {
        let mut s = simple(name, &[&format!("/{name}")]);
        s.is_default_backend = true;
        s
    };
    let (_s, t) = table(vec![default("d1"), default("d3")]);
    let unmatched = Req::at("h", "/nothing");
    assert_eq!(routed(&t, &unmatched).as_deref(), Some("d3"));
    let u = t.update(&[Arc::new(default("d2"))], &[]);
    assert_eq!(routed(&u, &unmatched).as_deref(), Some("d3"));
    let u = u.update(&[], &["d3"]);
    assert_eq!(routed(&u, &unmatched).as_deref(), Some("d2"));
    let u = u.update(&[], &["d2"]);
    assert_eq!(routed(&u, &unmatched).as_deref(), Some("d1"));
    let u = u.update(&[Arc::new(simple("d1", &["/d1"]))], &[]);
    assert_eq!(outcome(&u, &unmatched), Outcome::NoRoute);
    assert!(u.default_route().is_none());
    let u = u.update(&[Arc::new(default("d4"))], &[]);
    assert_eq!(
        u.default_route().map(Route::backend_name).as_deref(),
        Some("d4-be8080_0")
    );
    assert!(u
        .render()
        .lines()
        .any(|l| l.starts_with("route") && l.contains("d4-be8080_0") && l.contains("default")));
}

#[test]
fn redirects_follow_rule_order_across_layers() {
    let moved = |name: &str, acl: &str, to: &str| {
        let mut s = with_acl(simple(name, &["/"]), acl);
        s.destinations[0].domains = vec![host(to)];
        s.destinations[0].redirect_from_domains = vec![host("old.com")];
        Arc::new(s)
    };
    let t = RouteTable::build([&moved("b", "b", "b.com")]);
    let old = Req::at("old.com", "/p");
    let to = |host: &str| Outcome::Redirect(301, format!("http://{host}/p"));
    assert_eq!(outcome(&t, &old), to("b.com"));
    let u = t.update(&[moved("a", "a", "a.com"), moved("c", "c", "c.com")], &[]);
    assert_eq!(outcome(&u, &old), to("a.com"));
    let u = u.update(&[], &["a"]);
    assert_eq!(outcome(&u, &old), to("b.com"));
    let u = u.update(&[], &["b"]);
    assert_eq!(outcome(&u, &old), to("c.com"));
    // A proto redirect of an earlier base service beats a later delta service's rule.
    let mut proto = with_acl(simple("p", &["/"]), "0");
    proto.redirect_unless_https_proto = true;
    let u = u.update(&[Arc::new(proto)], &[]);
    assert_eq!(
        outcome(&u, &old),
        Outcome::Redirect(302, "https://old.com/p".into())
    );
    let lines: Vec<String> = u
        .render()
        .lines()
        .filter(|l| l.starts_with("redirect"))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("service=p") && lines[1].contains("service=c"));
}

#[test]
fn upserts_apply_before_removals_and_the_last_upsert_wins() {
    let (_s, t) = table(vec![simple("a", &["/a"])]);
    let u = t.update(&[Arc::new(simple("a", &["/b"]))], &["a"]);
    assert!(u.is_empty());
    let u = t.update(
        &[
            Arc::new(simple("n", &["/first"])),
            Arc::new(simple("n", &["/second"])),
        ],
        &[],
    );
    assert_eq!(outcome(&u, &Req::at("h", "/first")), Outcome::NoRoute);
    assert_eq!(routed(&u, &Req::at("h", "/second")).as_deref(), Some("n"));
    assert_eq!(order_names(&u), ["a", "n"]);
}

#[test]
fn updates_compact_past_the_bound() {
    let services: Vec<Arc<Service>> = (0..4)
        .map(|i| Arc::new(simple(&format!("s{i}"), &[&format!("/{i}")])))
        .collect();
    let t = RouteTable::build(&services);
    let same = t.update(&[], &[]);
    assert!(Arc::ptr_eq(&t.base, &same.base) && Arc::ptr_eq(&t.delta, &same.delta));
    let mut u = t.clone();
    for (i, name) in ["s0", "s1", "new"].into_iter().enumerate() {
        u = u.update(&[Arc::new(simple(name, &["/moved"]))], &[]);
        assert_eq!(u.changed_services(), i + 1);
        assert!(Arc::ptr_eq(&t.base, &u.base));
    }
    // The same name again does not count twice.
    u = u.update(&[Arc::new(simple("s1", &["/again"]))], &[]);
    assert_eq!(u.changed_services(), 3);
    // A fourth distinct change passes the bound (3 for 4 or 5 services in tests): one base
    // again.
    u = u.update(&[], &["s2"]);
    assert_eq!(u.changed_services(), 0);
    assert!(!Arc::ptr_eq(&t.base, &u.base));
    assert!(u.delta.services.is_empty() && u.shadow.is_empty());
    assert_eq!(order_names(&u), ["new", "s0", "s1", "s3"]);
    assert_eq!(routed(&u, &Req::at("h", "/again")).as_deref(), Some("s1"));
    assert_eq!(routed(&u, &Req::at("h", "/moved")).as_deref(), Some("new"));
    assert_eq!(compaction_bound(10), 4);
    assert_eq!(compaction_bound(0), MIN_DELTA);
    assert_eq!(compaction_bound(1_000_000), 1_414);
}

#[test]
fn route_numbers_stay_unique_after_updates() {
    let (_s, t) = table(vec![simple("a", &["/a"]), simple("b", &["/b"])]);
    let mut extra = simple("c", &["/c"]);
    extra.destinations[0].https_port = Some(8443);
    let u = t.update(&[Arc::new(extra)], &["a"]);
    let mut orders: Vec<usize> = u.routes().map(|r| r.order).collect();
    orders.sort_unstable();
    orders.dedup();
    assert_eq!(orders.len(), 3);
}

#[derive(Debug, Clone)]
struct Step {
    upserts: Vec<(usize, SvcSpec)>,
    removed: Vec<usize>,
}

fn step_spec() -> impl Strategy<Value = Step> {
    use proptest::collection::vec;
    (vec((0..10usize, svc_spec()), 0..3), vec(0..10usize, 0..3))
        .prop_map(|(upserts, removed)| Step { upserts, removed })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn updates_agree_with_a_full_build(
        initial in proptest::collection::vec(svc_spec(), 0..7),
        steps in proptest::collection::vec(step_spec(), 1..8),
        reqs in proptest::collection::vec(req_spec(), 1..16),
    ) {
        let mut live: std::collections::BTreeMap<String, Arc<Service>> = initial
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("s{i}"), Arc::new(to_service(i, s))))
            .collect();
        let mut t = RouteTable::build(live.values());
        for step in &steps {
            let upserts: Vec<Arc<Service>> = step
                .upserts
                .iter()
                .map(|(i, s)| Arc::new(to_service(*i, s)))
                .collect();
            let names: Vec<String> = step.removed.iter().map(|i| format!("s{i}")).collect();
            let removed: Vec<&str> = names.iter().map(String::as_str).collect();
            t = t.update(&upserts, &removed);
            for s in &upserts {
                live.insert(s.name.clone(), Arc::clone(s));
            }
            for name in &names {
                live.remove(name);
            }
            prop_assert!(t.changed_services() <= compaction_bound(live.len()));

            let built = RouteTable::build(live.values());
            prop_assert_eq!(route_ids(&t), route_ids(&built));
            prop_assert_eq!(t.is_empty(), built.is_empty());
            prop_assert_eq!(
                t.default_route().map(Route::backend_name),
                built.default_route().map(Route::backend_name)
            );
            prop_assert_eq!(t.render(), built.render());
            for req in &reqs {
                prop_assert_eq!(identity(&t, req), identity(&built, req), "request {:?}", req);
            }
        }
    }
}

mod explain;
