//! `replicas=0` travels to the other replicas like any other reconfigure.

use crate::support::{replica_set, Backend, Proxy, TempDir};

#[test]
fn replicas_zero_is_distributed() {
    let dir = TempDir::new("zero");
    let ([a, b], _hosts) = replica_set(&dir, "proxy-zero", ["127.0.0.5", "127.0.0.6"]);
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
