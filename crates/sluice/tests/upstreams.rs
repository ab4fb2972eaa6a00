//! Balancing across a service's task addresses, retries, and name resolution.

use std::collections::HashSet;

use crate::support::{Backend, Proxy, TempDir};

/// Backends on several loopback addresses sharing one port, named in a hosts file.
#[test]
fn balances_over_task_addresses_and_retries_past_a_dead_one() {
    let first = Backend::start_at("task-1", "127.0.0.2:0".parse().unwrap());
    let port = first.port();
    let second = Backend::start_at("task-2", format!("127.0.0.3:{port}").parse().unwrap());
    // 127.0.0.4 has nothing listening on that port: connections there are refused.
    let dir = TempDir::new("hosts");
    let hosts = dir.0.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.2 tasks.go-demo\n127.0.0.3 tasks.go-demo\n127.0.0.4 tasks.go-demo\n",
    )
    .unwrap();
    let p = Proxy::builder()
        .env("HOSTS_FILE", hosts.to_str().unwrap())
        .start();
    let r = p.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/demo&port={port}"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let r = p.get("/demo/hello", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        seen.insert(r.header("x-backend").unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(first.hit_count() > 0 && second.hit_count() > 0);
}

#[test]
fn falls_back_to_the_service_name_without_task_records() {
    let b = Backend::start_at("plain", "127.0.0.5:0".parse().unwrap());
    let dir = TempDir::new("hosts");
    let hosts = dir.0.join("hosts");
    std::fs::write(&hosts, "127.0.0.5 plain-svc\n").unwrap();
    let p = Proxy::builder()
        .env("HOSTS_FILE", hosts.to_str().unwrap())
        .start();
    let r = p.reconfigure(&format!(
        "serviceName=plain-svc&servicePath=/p&port={}",
        b.port()
    ));
    assert_eq!(r.status, 200);
    assert_eq!(p.get("/p", &[]).header("x-backend"), Some("plain"));
}
