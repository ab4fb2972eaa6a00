//! `serviceCert` that cannot be stored, and `/config` text that a value cannot forge.

use crate::support::{Proxy, TempDir};
use crate::tls::TestCert;

/// Percent-encodes everything but unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_service_cert_that_cannot_be_stored_is_500_and_applies_nothing() {
    let dir = TempDir::new("cert-unstorable");
    let p = Proxy::builder().data_dir(&dir.0).start();
    // The certificate's file name taken by a non-empty directory: the rename fails.
    let blocker = dir.0.join("certs").join("svc.example.com");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    let cert = TestCert::self_signed(&["svc.example.com"]);
    let r = p.reconfigure(&format!(
        "serviceName=svc&serviceDomain=svc.example.com&port=1&serviceCert={}",
        encode(&cert.bundle())
    ));
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["Status"], "NOK");
    let message = r.json()["Message"].as_str().unwrap().to_string();
    assert!(message.contains("serviceCert not stored"), "{message}");
    assert!(message.contains("svc.example.com"), "{message}");
    assert!(p.api("config", "type=json").json().get("svc").is_none());
    std::fs::remove_dir_all(&blocker).unwrap();
    let r = p.reconfigure(&format!(
        "serviceName=svc&serviceDomain=svc.example.com&port=1&serviceCert={}",
        encode(&cert.bundle())
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(blocker.is_file());
}

#[test]
fn config_text_cannot_be_forged_by_a_value() {
    let p = Proxy::start();
    let r = p.reconfigure("serviceName=a&servicePath=/x%0d%0aroute%20forged&port=1");
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["Message"].as_str().unwrap().to_string();
    assert!(message.contains("servicePath"), "{message}");
    assert!(message.contains("\\r\\n"), "{message}");
    let r =
        p.reconfigure("serviceName=a&servicePath=/x&port=1&serviceDomain=a.example%0d%0aforged");
    assert_eq!(r.status, 400, "{}", r.body);
    let config = p.api("config", "");
    assert_eq!(config.status, 200);
    assert!(!config.body.contains('\r'), "{}", config.body);
    assert!(!config.body.contains("forged"), "{}", config.body);
}
