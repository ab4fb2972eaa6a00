//! DFP's JSON envelope keeps its key order on the wire: `Status`, `Message`, `ServiceName`,
//! then the service's fields.

use crate::support::Proxy;

fn assert_order(body: &str, keys: &[&str]) {
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            body.find(&format!("\"{k}\""))
                .unwrap_or_else(|| panic!("no {k} in {body}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{keys:?} out of order in {body}"
    );
}

#[test]
fn envelopes_keep_dfps_key_order() {
    let p = Proxy::start();
    let ok = p.reconfigure("serviceName=go-demo&servicePath=/demo&port=8080");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        ok.body
            .starts_with(r#"{"Status":"OK","Message":"","ServiceName":"go-demo""#),
        "{}",
        ok.body
    );
    assert_order(
        &ok.body,
        &["Status", "Message", "ServiceName", "AclName", "ServiceDest"],
    );
    let bad = p.reconfigure("serviceName=go-demo&servicePath=/demo&port=abc");
    assert_eq!(bad.status, 400);
    assert_order(&bad.body, &["Status", "Message", "ServiceName"]);
    let gone = p.api("remove", "");
    assert_eq!(gone.status, 400);
    assert!(
        gone.body
            .starts_with(r#"{"Status":"NOK","Message":"The serviceName query is mandatory""#),
        "{}",
        gone.body
    );
}
