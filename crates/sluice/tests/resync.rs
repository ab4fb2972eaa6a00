//! The periodic resync from the Swarm listener (`LISTENER_RESYNC_INTERVAL`): a proxy that
//! missed a notification converges on the listener's list by itself, and leaves services that
//! only came through the API alone.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{client, json_server, Backend, Proxy};

/// A fake Swarm listener whose `get-services` answer can be changed while it runs.
struct FakeListener {
    addr: SocketAddr,
    services: Arc<Mutex<String>>,
}

impl FakeListener {
    fn start(services: String) -> FakeListener {
        let services = Arc::new(Mutex::new(services));
        let list = services.clone();
        let addr = json_server(move |head| {
            if head.contains("/get-services") {
                ("200 OK", list.lock().unwrap().clone())
            } else {
                ("404 Not Found", "{}".to_string())
            }
        });
        FakeListener { addr, services }
    }

    fn set(&self, services: String) {
        *self.services.lock().unwrap() = services;
    }
}

fn service(name: &str, path: &str, port: u16, extra: &str) -> String {
    format!(
        r#"{{"serviceName":"{name}","servicePath":"{path}","port":"{port}","outboundHostname":"127.0.0.1","distribute":"true"{extra}}}"#
    )
}

fn resync_changes(p: &Proxy) -> u64 {
    let text = client()
        .get(format!("http://{}/metrics", p.api))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sluice_listener_resync_changes_total "))
        .unwrap_or_else(|| panic!("no resync counter in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn wait_for(what: &str, p: &Proxy, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within 15 s\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_proxy_converges_on_the_listeners_list_and_keeps_api_services() {
    let one = Backend::start("one");
    let two = Backend::start("two");
    let listener = FakeListener::start(format!(
        "[{},{}]",
        service("changed", "/changed", one.port(), ""),
        service("removed", "/removed", one.port(), ""),
    ));
    let p = Proxy::builder()
        .env("LISTENER_ADDRESS", &listener.addr.to_string())
        .env("LISTENER_RESYNC_INTERVAL", "1")
        .env("RELOAD_INTERVAL", "100")
        .start();
    wait_for("ready", &p, || p.api("ping", "").status == 200);
    assert_eq!(
        p.get("/changed/x", &[]).header("x-backend"),
        Some("one"),
        "{}",
        p.log_text()
    );

    // A service configured through the API only, and one of the listener's services applied
    // again as a replica receives it (distribute=false): neither is a difference.
    let r = p.reconfigure(&format!(
        "serviceName=manual&servicePath=/manual&port={}&outboundHostname=127.0.0.1",
        two.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.reconfigure(&format!(
        "serviceName=changed&servicePath=/changed&port={}&outboundHostname=127.0.0.1&distribute=false",
        one.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let state_file = p.data_dir.join("services.json");
    let saved = std::fs::read(&state_file).unwrap();
    let generation = p
        .api("config", "")
        .header("x-sluice-generation")
        .map(str::to_string);
    // Three resync periods with an unchanged list: nothing applied, nothing written.
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(resync_changes(&p), 0, "{}", p.log_text());
    assert_eq!(
        p.api("config", "")
            .header("x-sluice-generation")
            .map(str::to_string),
        generation
    );
    assert_eq!(std::fs::read(&state_file).unwrap(), saved);

    // The listener's list moves on without telling the proxy: one service changed (with a
    // secret), one removed, one added.
    listener.set(format!(
        "[{},{}]",
        service(
            "changed",
            "/changed",
            two.port(),
            r#","users":"admin:S3cretValue""#
        ),
        service("added", "/added", two.port(), ""),
    ));
    wait_for("converged", &p, || {
        let services = p.api("config", "type=json").json();
        services.get("removed").is_none()
            && services.get("added").is_some()
            && services["changed"]["Users"].as_array().map(Vec::len) == Some(1)
    });
    assert_eq!(resync_changes(&p), 3, "{}", p.log_text());
    let services = p.api("config", "type=json").json();
    assert!(services.get("manual").is_some(), "{services}");
    assert_eq!(p.get("/added/x", &[]).header("x-backend"), Some("two"));
    assert_eq!(p.get("/removed/x", &[]).status, 503);
    assert_eq!(p.get("/manual/x", &[]).header("x-backend"), Some("two"));
    // Durable: the state file holds the converged set.
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let names: Vec<&String> = saved["services"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["added", "changed", "manual"]);
    assert_eq!(saved["services"]["changed"]["port"], two.port().to_string());
    // Each correction is logged, secrets redacted.
    let log = p.log_text();
    for needle in ["listener resync", "removed", "added", "port"] {
        assert!(log.contains(needle), "no {needle:?} in:\n{log}");
    }
    assert!(!log.contains("S3cretValue"), "{log}");

    // The listener stops listing everything: its services go, the API's stays.
    listener.set("[]".into());
    wait_for("emptied", &p, || {
        let services = p.api("config", "type=json").json();
        services.as_object().unwrap().keys().collect::<Vec<_>>() == ["manual"]
    });
    assert_eq!(resync_changes(&p), 5);
}
