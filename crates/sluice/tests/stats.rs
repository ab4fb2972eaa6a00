//! The statistics page (seed "Proxy Statistics"), its CSV and JSON forms, `/metrics` parsed
//! by a Prometheus text parser, DFP's metrics endpoint, and the dashboard in headless Chromium.

use std::collections::HashMap;
use std::process::Command;

use crate::support::{basic_auth as basic, closed_port, go_demo, Backend, Proxy, Reply, TempDir};

fn json_report(p: &Proxy, auth: &[(&str, &str)]) -> serde_json::Value {
    let r = p.get("/admin?stats;json", auth);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn destination<'a>(report: &'a serde_json::Value, service: &str) -> &'a serde_json::Value {
    report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["service"] == service)
        .unwrap_or_else(|| panic!("no {service} in {report}"))
}

#[test]
fn statistics_are_off_by_default() {
    let p = Proxy::start();
    assert_eq!(p.get("/admin?stats", &[]).status, 503);
}

#[test]
fn seed_walkthrough_with_stats_user_and_pass() {
    let p = Proxy::builder()
        .env("STATS_USER", "my-user")
        .env("STATS_PASS", "my-pass")
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b);
    for _ in 0..3 {
        assert_eq!(p.get("/demo/hello", &[]).status, 200);
    }
    let r = p.get("/admin?stats", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Strictly Private\"")
    );
    let wrong = basic("my-user", "other");
    assert_eq!(
        p.get("/admin?stats", &[("authorization", &wrong)]).status,
        401
    );
    let auth = basic("my-user", "my-pass");
    let r = p.get("/admin?stats", &[("authorization", &auth)]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("Sluice statistics"));
    assert!(r.body.contains("/admin?stats;json"));

    let report = json_report(&p, &[("authorization", &auth)]);
    let d = destination(&report, "go-demo");
    assert_eq!(d["requests"], 3);
    assert_eq!(d["responses"]["2xx"], 3);
    assert_eq!(d["backend"], format!("go-demo-be{}_0", b.port()));
    assert_eq!(d["upstreams"][0]["health"], "up");
    assert_eq!(d["upstreams"][0]["address"], b.addr.to_string());
    assert!(d["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(d["current"], 0);
    assert!(d["latency"]["p50_ms"].as_f64().is_some());
    assert_eq!(report["generation"], 1);
    assert_eq!(
        report["totals"]["requests"], 3,
        "statistics requests are not counted"
    );

    let csv = p.get("/admin?stats;csv", &[("authorization", &auth)]);
    assert_eq!(csv.status, 200);
    let mut lines = csv.body.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("# pxname,svname,qcur,qmax,scur,smax,"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0][..2], ["services", "FRONTEND"]);
    let backend = rows
        .iter()
        .find(|r| r[1] == "BACKEND")
        .expect("a BACKEND row");
    assert_eq!(backend[0], format!("go-demo-be{}_0", b.port()));
    assert_eq!(backend[7], "3", "stot");
    assert_eq!(backend[40], "3", "hrsp_2xx");
    assert!(rows
        .iter()
        .any(|r| r[1] == b.addr.to_string() && r[17] == "UP"));
}

#[test]
fn stats_secrets_override_the_environment() {
    let secrets = TempDir::new("secrets");
    std::fs::write(secrets.0.join("dfp_stats_user"), "secret-user\n").unwrap();
    std::fs::write(secrets.0.join("dfp_stats_pass"), "secret-pass\n").unwrap();
    let p = Proxy::builder()
        .env("SECRETS_DIR", secrets.0.to_str().unwrap())
        .env("STATS_USER", "my-user")
        .env("STATS_PASS", "my-pass")
        .start();
    let old = basic("my-user", "my-pass");
    assert_eq!(
        p.get("/admin?stats", &[("authorization", &old)]).status,
        401
    );
    let new = basic("secret-user", "secret-pass");
    assert_eq!(
        p.get("/admin?stats", &[("authorization", &new)]).status,
        200
    );
}

#[test]
fn none_none_opens_the_page_and_one_none_does_not() {
    let p = Proxy::builder()
        .env("STATS_USER", "none")
        .env("STATS_PASS", "none")
        .start();
    assert_eq!(p.get("/admin?stats", &[]).status, 200);
    assert_eq!(p.get("/admin?stats;csv", &[]).status, 200);
    let p = Proxy::builder()
        .env("STATS_USER", "none")
        .env("STATS_PASS", "secret")
        .start();
    assert_eq!(p.get("/admin?stats", &[]).status, 401);
}

#[test]
fn indirection_custom_uri_and_stats_port() {
    let port = closed_port();
    let p = Proxy::builder()
        .env("STATS_USER_ENV", "MY_STATS_USER")
        .env("STATS_PASS_ENV", "MY_STATS_PASS")
        .env("MY_STATS_USER", "u")
        .env("MY_STATS_PASS", "p")
        .env("STATS_URI", "/haproxy/stats")
        .env("STATS_PORT", &port.to_string())
        .start();
    let auth = basic("u", "p");
    assert_eq!(
        p.get("/admin?stats", &[("authorization", &auth)]).status,
        503
    );
    assert_eq!(
        p.get("/haproxy/stats", &[("authorization", &auth)]).status,
        200
    );
    assert_eq!(p.get("/haproxy/stats", &[]).status, 401);
    let stats_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = p.get_on(
        stats_addr,
        "/haproxy/stats;json",
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["destinations"].is_array());
    assert_eq!(p.get_on(stats_addr, "/haproxy/stats", &[]).status, 401);
    assert_eq!(
        p.get_on(stats_addr, "/demo", &[("authorization", &auth)])
            .status,
        503
    );
}

#[test]
fn counters_survive_reconfiguring_other_services() {
    let p = Proxy::builder()
        .env("STATS_USER", "none")
        .env("STATS_PASS", "none")
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b);
    for _ in 0..4 {
        p.get("/demo/x", &[]);
    }
    let r = p.reconfigure(&format!(
        "serviceName=other&servicePath=/other&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200);
    p.get("/other", &[]);
    let report = json_report(&p, &[]);
    assert_eq!(destination(&report, "go-demo")["requests"], 4);
    assert_eq!(destination(&report, "other")["requests"], 1);
    assert_eq!(report["generation"], 2);
}

#[test]
fn upstream_failures_are_counted_and_health_goes_down() {
    let p = Proxy::builder()
        .env("STATS_USER", "none")
        .env("STATS_PASS", "none")
        .start();
    let dead = closed_port();
    let r = p.reconfigure(&format!(
        "serviceName=dead&servicePath=/dead&port={dead}&outboundHostname=127.0.0.1"
    ));
    assert_eq!(r.status, 200);
    assert_eq!(p.get("/dead", &[]).status, 503);
    assert_eq!(p.get("/nowhere", &[]).status, 503);
    let report = json_report(&p, &[]);
    let d = destination(&report, "dead");
    assert_eq!(d["errors"]["connect"], 1);
    assert_eq!(d["errors"]["unavailable"], 1);
    assert_eq!(d["responses"]["5xx"], 1);
    assert_eq!(d["upstreams"][0]["health"], "down");
    assert_eq!(report["totals"]["unrouted"], 1);
}

fn scrape(p: &Proxy) -> prometheus_parse::Scrape {
    let text = crate::support::client()
        .get(format!("http://{}/metrics", p.api))
        .send()
        .unwrap()
        .text()
        .unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
    match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{metric} is {other:?}"),
    }
}

#[test]
fn prometheus_metrics_parse_and_count() {
    let p = Proxy::start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b);
    assert_eq!(p.reconfigure("serviceName=bad&port=abc").status, 400);
    for _ in 0..5 {
        assert_eq!(p.get("/demo/hello", &[]).status, 200);
    }
    let s = scrape(&p);
    let svc = [("service", "go-demo"), ("destination", "0")];
    assert_eq!(
        value(
            &s,
            "sluice_http_requests_total",
            &[svc[0], svc[1], ("code", "2xx")]
        ),
        5.0
    );
    assert_eq!(
        value(&s, "sluice_http_requests_total", &[svc[0], ("code", "5xx")]),
        0.0
    );
    let hist = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "sluice_http_request_duration_seconds"
                && x.labels.get("service") == Some("go-demo")
        })
        .expect("latency histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().unwrap().count, 5.0);
            assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert!(value(&s, "sluice_http_response_bytes_total", &svc) > 0.0);
    assert_eq!(value(&s, "sluice_http_active_requests", &svc), 0.0);
    assert_eq!(
        value(
            &s,
            "sluice_upstream_failures_total",
            &[svc[0], ("kind", "connect")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "sluice_upstream_up",
            &[svc[0], ("address", &b.addr.to_string())]
        ),
        1.0
    );
    assert_eq!(value(&s, "sluice_reconfigurations_total", &[]), 1.0);
    assert_eq!(
        value(&s, "sluice_reconfigurations_rejected_total", &[]),
        1.0
    );
    assert_eq!(value(&s, "sluice_config_generation", &[]), 1.0);
    let config = p.api("config", "");
    let digest = config.header("x-sluice-digest").unwrap().to_string();
    assert_eq!(value(&s, "sluice_config_info", &[("digest", &digest)]), 1.0);
    assert!(s.docs.contains_key("sluice_http_requests_total"));
}

#[test]
fn dfp_metrics_endpoint_returns_csv() {
    let p = Proxy::builder()
        .env("SERVICE_NAME", "no-such-proxy-service.invalid")
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b);
    p.get("/demo/hello", &[]);
    let r: Reply = p.api("metrics", "");
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("# pxname,svname,"));
    assert!(r.body.contains("services,FRONTEND,"));
    assert!(r
        .body
        .contains(&format!("go-demo-be{}_0,BACKEND,", b.port())));
    // No replica can be found: as DFP, the distributed form is a 500.
    let r = p.api("metrics", "distribute=true");
    assert_eq!(r.status, 500);
    assert_eq!(p.api("metrics", "distribute=false").status, 200);
}

/// The dashboard's first paint is on the server: `curl -u user:pass '/admin?stats'` (no
/// JavaScript) already gets one table row per configured destination, values escaped.
#[test]
fn dashboard_html_lists_every_service_without_a_browser() {
    let p = Proxy::builder()
        .env("STATS_USER", "my-user")
        .env("STATS_PASS", "my-pass")
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b);
    let r = p.reconfigure(&format!(
        "serviceName=api-svc&servicePath=/api&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..4 {
        assert_eq!(p.get("/demo/hello", &[]).status, 200);
    }
    let auth = basic("my-user", "my-pass");
    let r = p.get("/admin?stats", &[("authorization", &auth)]);
    assert_eq!(r.status, 200);
    let rows = rendered_rows(&r.body);
    assert_eq!(rows.len(), 2, "{rows:?}\n{}", r.body);
    assert_eq!(
        rows.get("go-demo").map(String::as_str),
        Some("4"),
        "{rows:?}"
    );
    assert_eq!(
        rows.get("api-svc").map(String::as_str),
        Some("0"),
        "{rows:?}"
    );
    assert!(r.body.contains(&format!("go-demo-be{}_0", b.port())));
    assert!(r.body.contains("2 of 2 destinations"));
    assert!(r.body.contains(&b.addr.to_string()), "the upstream address");
}

/// The dashboard's JavaScript renders the table from the JSON form in a real browser.
#[test]
fn dashboard_renders_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        // On CI (where `CI` is set, as every CI service and `scripts/test.sh` do) a missing
        // browser is a failure; on a developer machine the test says it was skipped.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no chromium is installed (apt-get install chromium; scripts/test.sh does it)"
        );
        println!("SKIP dashboard_renders_in_headless_chromium: no chromium installed (apt-get install chromium)");
        return;
    };
    let p = Proxy::builder()
        .env("STATS_USER", "none")
        .env("STATS_PASS", "none")
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b);
    let r = p.reconfigure(&format!(
        "serviceName=api-svc&servicePath=/api&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200);
    for _ in 0..7 {
        p.get("/demo/hello", &[]);
    }
    let profile = TempDir::new("chromium");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg("--dump-dom")
        .arg(format!("http://{}/admin?stats", p.http[0]))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-service=\"go-demo\"") && dom.contains("data-service=\"api-svc\""),
        "rows not rendered:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rendered_rows(&dom);
    assert_eq!(
        rows.get("go-demo").map(String::as_str),
        Some("7"),
        "{rows:?}"
    );
    assert_eq!(
        rows.get("api-svc").map(String::as_str),
        Some("0"),
        "{rows:?}"
    );
    assert!(
        dom.contains("live · updated"),
        "the status shows a successful refresh"
    );
    assert!(dom.contains("2 of 2 destinations"));
}

/// `service -> requests cell` of every rendered row.
fn rendered_rows(dom: &str) -> HashMap<String, String> {
    let mut rows = HashMap::new();
    for part in dom.split("<tr class=\"dest\"").skip(1) {
        let service = part
            .split("data-service=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_string();
        let requests = part
            .split("<td class=\"num requests\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
            .to_string();
        rows.insert(service, requests);
    }
    rows
}
