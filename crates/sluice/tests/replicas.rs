//! Replica state: the initial sync from the Swarm listener, readiness, `fromListener`, and
//! `distribute` to the other replicas.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{json_server, replica_set, Backend, Proxy, TempDir};

/// A fake Swarm listener answering `get-services` with `services` once `delay` has passed
/// (503 before), and counting `notify-services` calls.
struct FakeListener {
    addr: SocketAddr,
    notified: Arc<AtomicUsize>,
}

fn fake_listener(services: String, delay: Duration) -> FakeListener {
    let notified = Arc::new(AtomicUsize::new(0));
    let counter = notified.clone();
    let started = Instant::now();
    let addr = json_server(move |head| {
        if head.contains("/notify-services") {
            counter.fetch_add(1, Ordering::SeqCst);
            ("200 OK", "{\"Status\":\"OK\"}".to_string())
        } else if head.contains("/get-services") && started.elapsed() >= delay {
            ("200 OK", services.clone())
        } else {
            ("503 Service Unavailable", "[]".to_string())
        }
    });
    FakeListener { addr, notified }
}

#[test]
fn initial_sync_from_the_listener_gates_readiness() {
    let b = Backend::start("synced");
    let services = format!(
        r#"[{{"serviceName":"go-demo","servicePath":"/demo","port":"{}","outboundHostname":"127.0.0.1","replicas":"3","distribute":"true"}},{{"serviceName":"broken","port":"x"}}]"#,
        b.port()
    );
    let listener = fake_listener(services, Duration::from_millis(1500));
    let p = Proxy::builder()
        .env("LISTENER_ADDRESS", &listener.addr.to_string())
        .env("RELOAD_INTERVAL", "200")
        .start();
    assert_eq!(
        p.api("ping", "").status,
        503,
        "not ready before the listener answered"
    );
    assert_eq!(p.api("successfulinitreload", "").status, 500);
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.api("ping", "").status != 200 {
        assert!(
            Instant::now() < deadline,
            "never became ready:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(p.api("successfulinitreload", "").status, 200);
    assert_eq!(
        p.get("/demo/hello", &[]).header("x-backend"),
        Some("synced")
    );
    // The invalid entry was skipped without affecting the valid one.
    assert!(p.api("config", "type=json").json().get("broken").is_none());
    assert_eq!(p.api("reload", "fromListener=true").status, 200);
    assert_eq!(listener.notified.load(Ordering::SeqCst), 1);
}

#[test]
fn reload_from_listener_without_listener_is_500() {
    let p = Proxy::start();
    let r = p.api("reload", "fromListener=true");
    assert_eq!(r.status, 500);
    assert!(r.body.contains("LISTENER_ADDRESS"));
}

/// Two replicas on 127.0.0.2 and 127.0.0.3 sharing one API port, found through
/// `tasks.<SERVICE_NAME>` in a hosts file, plus a dead one on 127.0.0.4.
#[test]
fn distribute_reaches_every_replica_and_names_failures() {
    let dir = TempDir::new("peers");
    let ([a, b], hosts) = replica_set(&dir, "proxy-peers", ["127.0.0.2", "127.0.0.3"]);
    let backend = Backend::start("shared");
    let query = format!(
        "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1&distribute=true",
        backend.port()
    );
    let r = a.reconfigure(&query);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["Message"]
            .as_str()
            .unwrap()
            .contains("Distributed"),
        "{}",
        r.body
    );
    assert_eq!(b.get("/demo/x", &[]).header("x-backend"), Some("shared"));
    assert_eq!(a.get("/demo/x", &[]).header("x-backend"), Some("shared"));
    // Both replicas report the same routing digest.
    let digest = |p: &Proxy| {
        p.api("config", "")
            .header("x-sluice-digest")
            .unwrap()
            .to_string()
    };
    assert_eq!(digest(&a), digest(&b));
    let r = b.api("remove", "serviceName=go-demo&distribute=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(a.get("/demo/x", &[]).status, 503);
    // A dead replica makes the answer a 500 naming it; the live ones still applied it.
    std::fs::write(
        &hosts,
        "127.0.0.2 tasks.proxy-peers\n127.0.0.3 tasks.proxy-peers\n127.0.0.4 tasks.proxy-peers\n",
    )
    .unwrap();
    let r = a.reconfigure(&query);
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.json()["Message"].as_str().unwrap().contains("127.0.0.4"),
        "{}",
        r.body
    );
    assert_eq!(b.get("/demo/x", &[]).status, 200);
}
