//! The control API: status codes, bodies and what a rejected request leaves untouched.

use crate::support::{Backend, Proxy};

fn demo(p: &Proxy, backend: &Backend) {
    let r = p.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1",
        backend.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn ping_answers_ok_json() {
    let p = Proxy::start();
    let r = p.api("ping", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["Status"], "OK");
}

#[test]
fn reconfigure_without_service_name_is_400() {
    let p = Proxy::start();
    let r = p.reconfigure("servicePath=/demo&port=8080");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["Status"], "NOK");
    assert_eq!(r.json()["Message"], "serviceName parameter is mandatory.");
}

#[test]
fn http_destination_without_path_or_domain_is_409() {
    let p = Proxy::start();
    let r = p.reconfigure("serviceName=x&port=8080");
    assert_eq!(r.status, 409, "{}", r.body);
}

#[test]
fn bad_values_are_400_naming_parameter_and_value_and_change_nothing() {
    let p = Proxy::start();
    let b = Backend::start("one");
    demo(&p, &b);
    let r = p.reconfigure("serviceName=go-demo&servicePath=/other&port=abc");
    assert_eq!(r.status, 400);
    let msg = r.json()["Message"].as_str().unwrap().to_string();
    assert!(msg.contains("port") && msg.contains("abc"), "{msg}");
    // The live service is untouched by the rejected request.
    assert_eq!(p.get("/demo/hello", &[]).status, 200);
    assert_eq!(p.get("/other", &[]).status, 503);
    let r = p.reconfigure("serviceName=go-demo&servicePath=/x&port=1&backendExtra=option%20foo");
    assert_eq!(r.status, 400);
    assert!(r.json()["Message"]
        .as_str()
        .unwrap()
        .contains("backendExtra"));
    let r = p.reconfigure("serviceName=go-demo&servicePath=/x&port=1&pathType=hdr_sub");
    assert_eq!(r.status, 400);
    assert_eq!(p.get("/demo/hello", &[]).status, 200);
}

#[test]
fn success_returns_the_parsed_service() {
    let p = Proxy::start();
    let r = p.reconfigure("serviceName=go-demo&servicePath=/demo&port=8080");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["Status"], "OK");
    assert_eq!(j["ServiceName"], "go-demo");
    assert_eq!(j["ServiceDest"][0]["Port"], "8080");
    assert_eq!(j["ServiceDest"][0]["ServicePath"][0], "/demo");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn replicas_zero_removes_the_service() {
    let p = Proxy::start();
    let b = Backend::start("one");
    demo(&p, &b);
    assert_eq!(p.get("/demo/x", &[]).status, 200);
    let r = p.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/demo&port={}&replicas=0",
        b.port()
    ));
    assert_eq!(r.status, 200);
    assert_eq!(p.get("/demo/x", &[]).status, 503);
}

#[test]
fn remove_needs_a_name_and_removes_and_logs() {
    let p = Proxy::start();
    let b = Backend::start("one");
    demo(&p, &b);
    let r = p.api("remove", "");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["Message"], "The serviceName query is mandatory");
    let r = p.api("remove", "serviceName=go-demo");
    assert_eq!(r.status, 200);
    let page = p.get("/demo/hello", &[]);
    assert_eq!(page.status, 503);
    assert!(page.body.contains("<html"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        p.log_text().contains("Removing go-demo configuration"),
        "{}",
        p.log_text()
    );
    // Unknown services are still a 200, as DFP.
    assert_eq!(p.api("remove", "serviceName=nothing").status, 200);
}

#[test]
fn config_renders_text_and_json_without_passwords() {
    let p = Proxy::start();
    let r =
        p.reconfigure("serviceName=go-demo&servicePath=/demo&port=8080&users=admin:s3cr3t-pass");
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("s3cr3t-pass"));
    let text = p.api("config", "");
    assert_eq!(text.status, 200);
    assert!(text.body.contains("go-demo"), "{}", text.body);
    assert!(text.body.contains("/demo"));
    assert!(!text.body.contains("s3cr3t-pass"));
    let gen: u64 = text.header("x-sluice-generation").unwrap().parse().unwrap();
    assert!(gen >= 1);
    let json = p.api("config", "type=json");
    assert_eq!(json.status, 200);
    let j = json.json();
    assert_eq!(j["go-demo"]["ServiceName"], "go-demo");
    assert!(!json.body.contains("s3cr3t-pass"));
}

#[test]
fn unknown_paths_404_and_trailing_slash_redirects() {
    let p = Proxy::start();
    let url = format!("http://{}/v1/docker-flow-proxy/ping/", p.api);
    let r = crate::support::client().get(url).send().unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "/v1/docker-flow-proxy/ping");
    let url = format!("http://{}/nothing", p.api);
    assert_eq!(
        crate::support::client().get(url).send().unwrap().status(),
        404
    );
}
