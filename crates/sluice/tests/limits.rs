//! Control-plane cost bounds: user-supplied regular expressions are bounded in size and count,
//! and a refused reconfigure changes nothing.

use crate::support::{Backend, Proxy};

/// The reconfigure that once stalled the API for seconds and added 730 MB: 99 `path_reg`
/// destinations of `\w{100}`.
#[test]
fn huge_path_regexes_are_refused_with_400_and_change_nothing() {
    let p = Proxy::start();
    let b = Backend::start("regex");
    let mut query =
        "serviceName=huge&pathType=path_reg&outboundHostname=127.0.0.1&servicePath=^/ok/"
            .to_string();
    for i in 1..=99 {
        query.push_str(&format!(
            "&servicePath.{i}=%5Cw%7B100%7D&port.{i}={}",
            b.port()
        ));
    }
    let r = p.reconfigure(&query);
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["Message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("servicePath.1"), "{message}");
    assert!(message.contains(r"\\w{100}"), "{message}");
    assert!(message.contains("256 KiB compiled-size limit"), "{message}");
    assert_eq!(
        p.get("/ok/x", &[]).status,
        503,
        "a refused service was routed"
    );
    assert_eq!(b.hit_count(), 0);

    // The API still takes a service with sensible expressions, and routes by them.
    let r = p.reconfigure(&format!(
        "serviceName=fine&pathType=path_reg&servicePath=^/r/[0-9]%2B$&port={}\
         &outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(p.get("/r/12", &[]).status, 200);
    assert_eq!(p.get("/r/x", &[]).status, 503);
}

#[test]
fn a_service_with_more_than_32_regexes_is_refused() {
    let p = Proxy::start();
    let mut query = "serviceName=many&pathType=path_reg&outboundHostname=127.0.0.1".to_string();
    for i in 1..=33 {
        query.push_str(&format!("&servicePath.{i}=^/d{i}/&port.{i}=8080"));
    }
    let r = p.reconfigure(&query);
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["Message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("servicePath.33"), "{message}");
    assert!(
        message.contains("more than 32 regular expressions"),
        "{message}"
    );
    assert_eq!(p.get("/d1/x", &[]).status, 503);
}
