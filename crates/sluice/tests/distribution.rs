//! `replicas=0` travels to the other replicas like any other reconfigure.

use std::net::TcpListener;

use crate::support::{Backend, Proxy, TempDir};

#[test]
fn replicas_zero_is_distributed() {
    let dir = TempDir::new("zero");
    let port = {
        let l = TcpListener::bind("127.0.0.5:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hosts = dir.0.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.5 tasks.proxy-zero\n127.0.0.6 tasks.proxy-zero\n",
    )
    .unwrap();
    let start = |ip: &str| {
        Proxy::builder()
            .env("IP", ip)
            .env("PORT", &port.to_string())
            .env("SERVICE_NAME", "proxy-zero")
            .env("HOSTS_FILE", hosts.to_str().unwrap())
            .start()
    };
    let a = start("127.0.0.5");
    let b = start("127.0.0.6");
    let backend = Backend::start("zero");
    let query = format!(
        "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1&distribute=true",
        backend.port()
    );
    let r = a.reconfigure(&query);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(b.get("/demo/x", &[]).status, 200);
    let r = a.reconfigure(&format!("{query}&replicas=0"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["Message"]
            .as_str()
            .unwrap()
            .contains("Distributed"),
        "{}",
        r.body
    );
    assert_eq!(a.get("/demo/x", &[]).status, 503);
    assert_eq!(
        b.get("/demo/x", &[]).status,
        503,
        "the other replica removed it too"
    );
    let digest = |p: &Proxy| {
        p.api("config", "")
            .header("x-sluice-digest")
            .unwrap()
            .to_string()
    };
    assert_eq!(digest(&a), digest(&b));
}
