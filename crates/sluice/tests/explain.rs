//! `GET /v1/sluice/explain`: every DFP matching rule, the chosen route and the first failed
//! condition of a route that did not match, as JSON and as text.

use serde_json::Value;

use crate::support::{client, Backend, Proxy};

fn explain_raw(p: &Proxy, params: &[(&str, &str)], accept: Option<&str>) -> (u16, String) {
    let url =
        reqwest::Url::parse_with_params(&format!("http://{}/v1/sluice/explain", p.api), params)
            .unwrap();
    let mut req = client().get(url);
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

fn explain(p: &Proxy, params: &[(&str, &str)]) -> Value {
    let (status, body) = explain_raw(p, params, None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The verdict of `backend`'s route: `("fails", condition)`, `("chosen", "")`, ….
fn verdict(body: &Value, service: &str) -> (String, String) {
    let route = body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == service)
        .unwrap_or_else(|| panic!("no route of {service} in {body}"));
    (
        route["verdict"].as_str().unwrap().to_string(),
        route["condition"].as_str().unwrap_or("").to_string(),
    )
}

fn chosen(body: &Value) -> &str {
    body["route"]["service"].as_str().unwrap_or("-")
}

fn fails(condition: &str) -> (String, String) {
    ("fails".to_string(), condition.to_string())
}

fn is_chosen() -> (String, String) {
    ("chosen".to_string(), String::new())
}

#[test]
fn explain_names_the_route_and_the_first_failed_condition_for_every_rule() {
    let p = Proxy::start();
    let b = Backend::start("b");
    let port = b.port();
    for extra in [
        "serviceName=exact&servicePath=/exact&pathType=path",
        "serviceName=prefix&servicePath=/pre&reqPathSearchReplace=/pre,/backend",
        "serviceName=regex&servicePath=^/api/v[0-9]%2B/&pathType=path_reg",
        "serviceName=excl&servicePath=/ex&servicePathExclude=/ex/private",
        "serviceName=dom&servicePath=/d&serviceDomain=app.example.com",
        "serviceName=wild&servicePath=/w&serviceDomain=*.wild.example",
        "serviceName=hdr&servicePath=/h&serviceHeader=X-Version:2",
        "serviceName=ua&servicePath=/ua&userAgent=Mobile",
        "serviceName=methods&servicePath=/m&deniedMethods=DELETE",
        "serviceName=sport&servicePath=/sp&srcPort=8181",
        "serviceName=def&servicePath=/fallback&isDefaultBackend=true",
        "serviceName=redir&servicePath=/r&serviceDomain=new.example&redirectFromDomain=old.example",
        "serviceName=secure&servicePath=/secure&httpsOnly=true",
        "serviceName=guarded&servicePath=/auth&users=admin:sup3rs3cret",
    ] {
        let r = p.reconfigure(&format!("{extra}&port={port}&outboundHostname=127.0.0.1"));
        assert_eq!(r.status, 200, "{extra}: {}", r.body);
    }
    let url = |path: &str| format!("http://any.example{path}");

    // Path types: exact, prefix (with the rewrite), regex.
    let body = explain(&p, &[("url", &url("/exact"))]);
    assert_eq!(chosen(&body), "exact", "{body}");
    assert_eq!(body["outcome"], "forward");
    assert_eq!(verdict(&body, "exact"), is_chosen());
    assert_eq!(verdict(&body, "prefix"), fails("servicePath"));
    let body = explain(&p, &[("url", &url("/exact/more"))]);
    assert_eq!(verdict(&body, "exact"), fails("servicePath"), "{body}");
    let body = explain(&p, &[("url", &url("/pre/x?q=1"))]);
    assert_eq!(chosen(&body), "prefix");
    assert_eq!(body["route"]["rewrittenPath"], "/backend/x", "{body}");
    assert_eq!(body["route"]["upstream"]["addresses"][0], "127.0.0.1");
    let body = explain(&p, &[("url", &url("/api/v2/users"))]);
    assert_eq!(chosen(&body), "regex", "{body}");
    let body = explain(&p, &[("url", &url("/api/vX/users"))]);
    assert_eq!(verdict(&body, "regex"), fails("servicePath"), "{body}");

    // Excludes.
    let body = explain(&p, &[("url", &url("/ex/private/1"))]);
    assert_eq!(
        verdict(&body, "excl"),
        fails("servicePathExclude"),
        "{body}"
    );
    assert_eq!(chosen(&body), "def", "{body}");
    assert_eq!(body["route"]["default"], true, "{body}");

    // Domains and wildcards.
    let body = explain(&p, &[("url", "http://app.example.com/d")]);
    assert_eq!(chosen(&body), "dom", "{body}");
    let body = explain(&p, &[("url", "http://other.example.com/d")]);
    assert_eq!(verdict(&body, "dom"), fails("serviceDomain"), "{body}");
    let body = explain(&p, &[("url", "http://a.wild.example/w")]);
    assert_eq!(chosen(&body), "wild", "{body}");
    let body = explain(&p, &[("url", "http://wild.example.org/w")]);
    assert_eq!(verdict(&body, "wild"), fails("serviceDomain"), "{body}");

    // Headers and user agents.
    let body = explain(&p, &[("url", &url("/h")), ("header", "X-Version:2")]);
    assert_eq!(chosen(&body), "hdr", "{body}");
    let body = explain(&p, &[("url", &url("/h")), ("header", "X-Version:1")]);
    assert_eq!(verdict(&body, "hdr"), fails("serviceHeader"), "{body}");
    let body = explain(
        &p,
        &[("url", &url("/ua")), ("header", "User-Agent:x Mobile y")],
    );
    assert_eq!(chosen(&body), "ua", "{body}");
    let body = explain(&p, &[("url", &url("/ua")), ("header", "User-Agent:curl")]);
    assert_eq!(verdict(&body, "ua"), fails("userAgent"), "{body}");

    // Methods: the route is chosen, the deny rule fires.
    let body = explain(&p, &[("url", &url("/m")), ("method", "DELETE")]);
    assert_eq!(chosen(&body), "methods", "{body}");
    assert_eq!(body["outcome"], "deny");
    assert_eq!(body["status"], 403);
    assert_eq!(body["rule"]["rule"], "deniedMethods", "{body}");
    let body = explain(&p, &[("url", &url("/m")), ("method", "GET")]);
    assert_eq!(body["outcome"], "forward", "{body}");

    // srcPort: the port the request arrives on.
    let body = explain(&p, &[("url", &url("/sp")), ("srcPort", "8181")]);
    assert_eq!(chosen(&body), "sport", "{body}");
    let body = explain(&p, &[("url", &url("/sp"))]);
    assert_eq!(verdict(&body, "sport"), fails("srcPort"), "{body}");
    let body = explain(&p, &[("url", "http://any.example:8181/sp")]);
    assert_eq!(chosen(&body), "sport", "{body}");

    // Default backend, and no route at all (without the default it would be 503).
    let body = explain(&p, &[("url", &url("/nothing/here"))]);
    assert_eq!(chosen(&body), "def", "{body}");
    assert_eq!(body["route"]["default"], true);

    // Redirects: redirectFromDomain and httpsOnly.
    let body = explain(&p, &[("url", "http://old.example/r/1")]);
    assert_eq!(body["outcome"], "redirect", "{body}");
    assert_eq!(body["status"], 301);
    assert_eq!(body["location"], "http://new.example/r/1");
    assert_eq!(body["rule"]["rule"], "redirectFromDomain");
    assert_eq!(body["rule"]["service"], "redir");
    let body = explain(&p, &[("url", &url("/secure"))]);
    assert_eq!(body["outcome"], "redirect", "{body}");
    assert_eq!(body["rule"]["rule"], "httpsOnly");
    assert_eq!(body["location"], "https://any.example/secure");
    let body = explain(&p, &[("url", "https://any.example/secure")]);
    assert_eq!(body["outcome"], "forward", "{body}");

    // Auth: the realm and where the users come from, never a password.
    let body = explain(&p, &[("url", &url("/auth"))]);
    assert_eq!(body["route"]["auth"]["realm"], "guardedRealm", "{body}");
    assert_eq!(body["route"]["auth"]["users"], 1);
    assert!(!body.to_string().contains("sup3rs3cret"), "{body}");

    // redirectWhenHttpProto, from the X-Forwarded-Proto header.
    let r = p.reconfigure(&format!(
        "serviceName=proto&servicePath=/proto&serviceDomain=proto.example&redirectWhenHttpProto=true&port={port}&outboundHostname=127.0.0.1"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let body = explain(
        &p,
        &[
            ("url", "http://proto.example/proto"),
            ("header", "X-Forwarded-Proto:http"),
        ],
    );
    assert_eq!(body["outcome"], "redirect", "{body}");
    assert_eq!(body["rule"]["rule"], "redirectWhenHttpProto", "{body}");
    assert_eq!(body["location"], "https://proto.example/proto");
    let body = explain(&p, &[("url", "http://proto.example/proto")]);
    assert_eq!(chosen(&body), "proto", "{body}");

    // The same request agrees with the data plane.
    let r = p.get("/exact", &[("host", "any.example")]);
    assert_eq!(r.status, 200);
    let r = p.request_on("DELETE", p.http[0], "/m", &[]);
    assert_eq!(r.status, 403);
}

#[test]
fn explain_answers_in_text_and_refuses_bad_parameters_by_name() {
    let p = Proxy::start();
    let b = Backend::start("b");
    let r = p.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.reconfigure(&format!(
        "serviceName=other&servicePath=/other&serviceDomain=o.example&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);

    let (status, text) = explain_raw(&p, &[("url", "/demo/x"), ("format", "text")], None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("outcome: forward"), "{text}");
    assert!(text.contains("route: go-demo"), "{text}");
    assert!(
        text.contains("other (") && text.contains("fails servicePath"),
        "{text}"
    );
    let (_, by_accept) = explain_raw(&p, &[("url", "/demo/x")], Some("text/plain"));
    assert_eq!(by_accept, text);

    // No route: 503, every route says why.
    let body = explain(&p, &[("url", "/nowhere")]);
    assert_eq!(body["outcome"], "noRoute", "{body}");
    assert_eq!(body["status"], 503);
    assert_eq!(verdict(&body, "go-demo"), fails("servicePath"));
    assert_eq!(p.get("/nowhere", &[]).status, 503);

    for (params, name) in [
        (vec![("method", "GET")], "url"),
        (vec![("url", "ftp://x/")], "url"),
        (vec![("url", "/demo"), ("method", "G T")], "method"),
        (vec![("url", "/demo"), ("srcPort", "99999")], "srcPort"),
        (vec![("url", "/demo"), ("header", "no-colon")], "header"),
        (vec![("url", "/demo"), ("format", "yaml")], "format"),
    ] {
        let (status, body) = explain_raw(&p, &params, None);
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(body.contains(name), "{params:?}: {body}");
    }
    let (status, body) = explain_raw(
        &p,
        &[("url", "/demo"), ("header", "Authorization:\u{1}hunter2")],
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("hunter2"), "{body}");
}

#[test]
fn explain_reads_upstream_addresses_from_the_name_cache_only() {
    // The names resolve through HOSTS_FILE only (no DNS); nothing listens on 127.0.0.9:8080.
    let dir = crate::support::TempDir::new("explain-names");
    let hosts = dir.0.join("hosts");
    std::fs::write(&hosts, "127.0.0.9 tasks.named-svc\n127.0.0.9 named-svc\n").unwrap();
    let p = Proxy::builder()
        .env("HOSTS_FILE", hosts.to_str().unwrap())
        .start();
    let r = p.reconfigure("serviceName=named-svc&servicePath=/named&port=8080");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = explain(&p, &[("url", "/named")]);
    let upstream = &body["route"]["upstream"];
    assert_eq!(upstream["host"], "named-svc", "{body}");
    assert_eq!(upstream["state"], "not resolved yet", "{body}");
    assert_eq!(upstream["addresses"], serde_json::json!([]));
    // A request makes the data plane look the name up; explain then shows its answer.
    assert_eq!(p.get("/named", &[]).status, 503);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = explain(&p, &[("url", "/named")]);
        let upstream = &body["route"]["upstream"];
        if upstream["state"] == "task addresses" {
            assert_eq!(
                upstream["addresses"],
                serde_json::json!(["127.0.0.9"]),
                "{body}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
