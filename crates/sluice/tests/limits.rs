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

#[test]
fn the_regexes_of_all_services_share_a_32_mib_budget() {
    let p = Proxy::start();
    let b = Backend::start("budget");
    // 32 Unicode-class expressions of about 88 KiB each: about 2.8 MiB per service.
    let service = |i: usize| {
        let paths: Vec<String> = (0..32).map(|j| format!("^/b{i}x{j}/%5Cw%7B5%7D")).collect();
        format!(
            "serviceName=big{i}&pathType=path_reg&port={}&outboundHostname=127.0.0.1\
             &servicePath={}",
            b.port(),
            paths.join(",")
        )
    };
    let mut refused = None;
    for i in 0..16 {
        let r = p.reconfigure(&service(i));
        if r.status != 200 {
            refused = Some((i, r));
            break;
        }
    }
    let (i, r) = refused.expect("the budget never ran out");
    assert!(i >= 8, "refused already at service {i}");
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["Message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(&format!("\"big{i}\"")), "{message}");
    assert!(message.contains("serviceName"), "{message}");
    assert!(message.contains("32 MiB limit"), "{message}");
    // Not routed; the accepted ones are.
    assert_eq!(p.get(&format!("/b{i}x0/abcde"), &[]).status, 503);
    assert_eq!(p.get("/b0x0/abcde", &[]).status, 200);
    // Replacing an accepted service by itself stays within the budget.
    assert_eq!(p.reconfigure(&service(0)).status, 200);
}
