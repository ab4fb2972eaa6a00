//! `dryRun=true` on `reconfigure` and `remove`: checked and shown, never applied, saved or
//! distributed.

use crate::support::{replica_set, Backend, Proxy, TempDir};

/// What a rejected or dry-run request must leave unchanged: the served config and the state
/// file's bytes.
fn state(p: &Proxy) -> (String, Vec<u8>) {
    (
        p.api("config", "").body,
        std::fs::read(p.data_dir.join("services.json")).unwrap(),
    )
}

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

fn batch(p: &Proxy, doc: &serde_json::Value) -> (u16, serde_json::Value) {
    let resp = crate::support::client()
        .post(format!(
            "http://{}/v1/docker-flow-proxy/reconfigure?dryRun=true&distribute=true",
            p.api
        ))
        .body(doc.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

#[test]
fn a_batch_dry_run_diffs_the_config_document_and_names_each_error() {
    let dir = TempDir::new("dry-run-batch");
    let ([a, b], _hosts) = replica_set(&dir, "proxy-batch", ["127.0.0.7", "127.0.0.8"]);
    let one = Backend::start("one");
    for (name, path) in [("go-demo", "/demo"), ("other", "/other")] {
        let r = a.reconfigure(&format!(
            "serviceName={name}&servicePath={path}&port={}&outboundHostname=127.0.0.1&serviceHeader=X-V:1&userAgent=curl&reqPathSearchReplace=/x,/y&distribute=true",
            one.port()
        ));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Many parameters, to check that the document reads back as the same service.
    let r = a.reconfigure(&format!(
        "serviceName=rich&servicePath.1=^/api/v[0-9]%2B&pathType.1=path_reg&port.1={0}&servicePathExclude.1=/api/v0&serviceDomain.1=a.example,*.b.example&redirectFromDomain.1=old.example&httpsOnly.1=true&deniedMethods.1=DELETE&srcPort.1=8181&servicePath.2=/two&port.2={0}&allowedMethods.2=GET,POST&ignoreAuthorization.2=true&users=admin:pw&isDefaultBackend=true&redirectWhenHttpProto=true&addReqHeader=X-A a&setResHeader=X-B b&outboundHostname=127.0.0.1&sessionType=sticky-server&timeoutServer=30",
        one.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let (a_before, b_before) = (state(&a), state(&b));
    let doc = a.api("config", "type=json").json();

    // The live document itself: nothing changes.
    let (status, body) = batch(&a, &doc);
    assert_eq!(status, 200, "{body}");
    let dry = &body["DryRun"];
    assert_eq!(dry["Applied"], false);
    assert_eq!(dry["Unchanged"], 3, "{body}");
    assert_eq!(dry["Changed"], serde_json::json!([]), "{body}");
    assert_eq!(dry["Added"], serde_json::json!([]), "{body}");
    assert_eq!(dry["Removed"], serde_json::json!([]), "{body}");

    // One changed, one removed, one added, one invalid.
    let mut wanted = doc.clone();
    let map = wanted.as_object_mut().unwrap();
    map["go-demo"]["ServiceDest"][0]["ServicePath"] = serde_json::json!(["/v2"]);
    map.remove("other");
    let mut fresh = doc["go-demo"].clone();
    fresh["ServiceName"] = "fresh".into();
    fresh["ServiceDest"][0]["ServicePath"] = serde_json::json!(["/fresh"]);
    map.insert("fresh".into(), fresh);
    let mut bad = doc["go-demo"].clone();
    bad["ServiceName"] = "bad".into();
    bad["ServiceDest"][0]["Port"] = "eighty".into();
    map.insert("bad".into(), bad);
    let (status, body) = batch(&a, &wanted);
    assert_eq!(status, 400, "{body}");
    let dry = &body["DryRun"];
    assert_eq!(dry["Changed"], serde_json::json!(["go-demo"]), "{body}");
    assert_eq!(dry["Added"], serde_json::json!(["fresh"]), "{body}");
    assert_eq!(dry["Removed"], serde_json::json!(["other"]), "{body}");
    let change = &dry["Services"]["go-demo"];
    assert!(
        change["Before"].as_str().unwrap().contains("/demo"),
        "{body}"
    );
    assert!(change["After"].as_str().unwrap().contains("/v2"), "{body}");
    let error = dry["Errors"]["bad"].as_str().unwrap();
    assert!(
        error.contains("port") && error.contains("eighty"),
        "{error}"
    );
    assert_eq!(body["Status"], "NOK");

    // Not a document: 400 naming the body.
    let resp = crate::support::client()
        .post(format!(
            "http://{}/v1/docker-flow-proxy/reconfigure?dryRun=true",
            a.api
        ))
        .body("[1,2]")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().unwrap().contains("body"));

    // Nothing was applied here, on disk or on the peer.
    assert_eq!(state(&a), a_before);
    assert_eq!(state(&b), b_before);
    assert_eq!(
        a.get("/demo/x", &[("x-v", "1"), ("user-agent", "curl")])
            .header("x-backend"),
        Some("one")
    );
    assert_eq!(
        b.get("/fresh/x", &[("x-v", "1"), ("user-agent", "curl")])
            .status,
        503
    );
}
