//! `dryRun=true` on `reconfigure` and `remove`: checked and shown, never applied, saved or
//! distributed.

use crate::support::{replica_set, Backend, Proxy, TempDir};

#[test]
fn a_dry_run_changes_nothing_here_on_disk_or_on_a_peer() {
    let dir = TempDir::new("dry-run-peers");
    let ([a, b], _hosts) = replica_set(&dir, "proxy-dry", ["127.0.0.5", "127.0.0.6"]);
    let one = Backend::start("one");
    let two = Backend::start("two");
    let r = a.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1&distribute=true",
        one.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let state = |p: &Proxy| {
        (
            p.api("config", "").body,
            std::fs::read(p.data_dir.join("services.json")).unwrap(),
        )
    };
    let (a_before, b_before) = (state(&a), state(&b));

    // A changed service, distributed: shown, not applied anywhere.
    let r = a.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/v2&port={}&outboundHostname=127.0.0.1&distribute=true&dryRun=true",
        two.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["Status"], "OK");
    assert_eq!(body["ServiceName"], "go-demo");
    let dry = &body["DryRun"];
    assert_eq!(dry["Applied"], false, "{body}");
    assert_eq!(dry["Changed"], true, "{body}");
    assert!(dry["Before"].as_str().unwrap().contains("/demo"), "{body}");
    assert!(!dry["Before"].as_str().unwrap().contains("/v2"), "{body}");
    assert!(dry["After"].as_str().unwrap().contains("/v2"), "{body}");
    assert_eq!(state(&a), a_before);
    assert_eq!(state(&b), b_before);
    assert_eq!(a.get("/demo/x", &[]).header("x-backend"), Some("one"));
    assert_eq!(b.get("/v2/x", &[]).status, 503);

    // The same service again: no change.
    let r = a.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1&dryRun=true",
        one.port()
    ));
    assert_eq!(r.json()["DryRun"]["Changed"], false, "{}", r.body);

    // A bad parameter is named, with its value; nothing changes.
    let r = a.reconfigure("serviceName=go-demo&servicePath=/demo&port=eighty&dryRun=true");
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["Message"].as_str().unwrap().to_string();
    assert!(
        message.contains("port") && message.contains("eighty"),
        "{message}"
    );
    let r = a.reconfigure("serviceName=go-demo&servicePath=/demo&port=1&dryRun=maybe");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("dryRun") && r.body.contains("maybe"),
        "{}",
        r.body
    );

    // A removal, distributed: shown, not applied anywhere.
    let r = a.api("remove", "serviceName=go-demo&distribute=true&dryRun=true");
    assert_eq!(r.status, 200, "{}", r.body);
    let dry = &r.json()["DryRun"];
    assert_eq!(dry["Changed"], true, "{}", r.body);
    assert_eq!(dry["Exists"], false, "{}", r.body);
    assert_eq!(dry["After"], "", "{}", r.body);
    assert_eq!(state(&a), a_before);
    assert_eq!(state(&b), b_before);
    assert_eq!(b.get("/demo/x", &[]).header("x-backend"), Some("one"));
    assert_eq!(
        a.api("remove", "serviceName=unknown&dryRun=true").json()["DryRun"]["Changed"],
        false
    );
}
