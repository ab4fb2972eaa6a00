use super::*;
use crate::snapshot::Snapshot;
use sluice_core::params::{params_from_query, parse_service};
use sluice_core::settings::Settings;

fn service(name: &str, query: &str) -> Arc<sluice_core::service::Service> {
    Arc::new(
        parse_service(
            &params_from_query(&format!("serviceName={name}&{query}")),
            &Settings::default().parse,
        )
        .unwrap(),
    )
}

fn snapshot(hub: &StatsHub, services: &[Arc<sluice_core::service::Service>]) -> Snapshot {
    let table = RouteTable::build(services.iter());
    let stats = hub.bind(&table);
    Snapshot {
        generation: 1,
        digest: "d".into(),
        table,
        stats,
        ..Snapshot::empty()
    }
}

#[test]
fn classes_cover_every_status() {
    assert_eq!(class(101), 0);
    assert_eq!(class(204), 1);
    assert_eq!(class(302), 2);
    assert_eq!(class(401), 3);
    assert_eq!(class(503), 4);
    assert_eq!(class(99), 5);
    assert_eq!(class(600), 5);
}

#[test]
fn histogram_buckets_and_percentiles() {
    let h = Histogram::default();
    for _ in 0..90 {
        h.observe(Duration::from_micros(800));
    }
    for _ in 0..10 {
        h.observe(Duration::from_millis(200));
    }
    let r = h.report();
    assert_eq!(r.count, 100);
    assert_eq!(r.cumulative[0], 90);
    assert_eq!(*r.cumulative.last().unwrap(), 100);
    assert!((r.sum_seconds - (0.072 + 2.0)).abs() < 1e-9);
    let p50 = r.p50_ms.unwrap();
    assert!(p50 > 0.0 && p50 <= 1.0, "{p50}");
    let p99 = r.p99_ms.unwrap();
    assert!((100.0..=250.0).contains(&p99), "{p99}");
    assert_eq!(Histogram::default().report().p50_ms, None);
    let slow = Histogram::default();
    slow.observe(Duration::from_secs(60));
    assert_eq!(slow.report().p99_ms, Some(30_000.0));
}

#[test]
fn counters_survive_reconfiguring_other_services() {
    let hub = StatsHub::new();
    let a = service("a", "servicePath=/a&port=1");
    let b = service("b", "servicePath=/b&port=2");
    let first = snapshot(&hub, &[a.clone(), b.clone()]);
    let route_a = first.table.routes().next().unwrap();
    let stats_a = first.stats.of(route_a).unwrap().clone();
    drop(stats_a.begin());
    stats_a.finish(200, Duration::from_millis(3));
    // Reconfigure b and add c: a keeps its counters.
    let b2 = service("b", "servicePath=/b2&port=3");
    let c = service("c", "servicePath=/c&port=4");
    let second = snapshot(&hub, &[a.clone(), b2, c]);
    let again = second
        .stats
        .of(second.table.routes().next().unwrap())
        .unwrap();
    assert!(Arc::ptr_eq(&stats_a, again));
    let report = hub.report(&second);
    assert_eq!(report.destinations.len(), 3);
    let ra = &report.destinations[0];
    assert_eq!((ra.service.as_str(), ra.requests), ("a", 1));
    assert_eq!(ra.responses.xx2, 1);
    assert_eq!(ra.backend, "a-be1_0");
    assert_eq!(ra.paths, ["/a"]);
    // Removing a drops its counters.
    let third = snapshot(&hub, &[c_only()]);
    assert_eq!(hub.report(&third).destinations.len(), 1);
}

fn c_only() -> Arc<sluice_core::service::Service> {
    service("c", "servicePath=/c&port=4")
}

#[test]
fn in_flight_requests_are_counted_until_dropped() {
    let d = Arc::new(DestStats::default());
    let one = d.begin();
    let two = d.begin();
    assert_eq!(d.current.load(Ordering::Relaxed), 2);
    drop(one);
    drop(two);
    let _three = d.begin();
    assert_eq!(d.current.load(Ordering::Relaxed), 1);
    assert_eq!(d.peak.load(Ordering::Relaxed), 2);
    assert_eq!(get(&d.requests), 3);
}

#[test]
fn upstream_outcomes_set_health() {
    let d = DestStats::default();
    let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
    d.upstream_answered(a, &[b]);
    d.upstream_failed(&SendError::Timeout { addr: a });
    d.upstream_failed(&SendError::Unreachable {
        host: "x".into(),
        tried: 1,
        failed: vec![b],
    });
    d.upstream_failed(&SendError::Resolve {
        host: "x".into(),
        reason: "nx".into(),
    });
    let list = d.upstreams.list.load();
    let sa = &list.iter().find(|(x, _)| *x == a).unwrap().1;
    let sb = &list.iter().find(|(x, _)| *x == b).unwrap().1;
    assert_eq!((get(&sa.requests), get(&sa.failures)), (2, 1));
    assert_eq!(sa.health.load(Ordering::Relaxed), UP);
    assert_eq!((get(&sb.requests), get(&sb.failures)), (2, 2));
    assert_eq!(sb.health.load(Ordering::Relaxed), DOWN);
    assert_eq!(get(&d.connect_errors), 2);
    assert_eq!(get(&d.timeouts), 1);
    assert_eq!(get(&d.unavailable), 2);
}

#[test]
fn address_table_is_bounded() {
    let t = AddrTable::default();
    for i in 0..(MAX_ADDRESSES as u16 + 10) {
        t.get(SocketAddr::from(([10, 0, 0, 1], i)));
    }
    assert_eq!(t.list.load().len(), MAX_ADDRESSES);
}
