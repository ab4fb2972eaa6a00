//! Reconfiguration under load: no request may fail while the table changes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{client, Backend, Proxy};

#[test]
fn continuous_reconfiguration_under_concurrent_requests_loses_nothing() {
    let p = Arc::new(Proxy::start());
    let b = Backend::start("b");
    let base = format!(
        "serviceName=live&servicePath=/live&port={}&outboundHostname=127.0.0.1",
        b.port()
    );
    assert_eq!(p.reconfigure(&base).status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (p, stop, ok, failed) = (p.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(std::thread::spawn(move || {
            let c = client();
            let url = format!("http://{}/live/x", p.http[0]);
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send() {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..300 {
        // Other services come and go, and the live one is re-applied.
        let r = p.reconfigure(&format!(
            "serviceName=churn-{}&servicePath=/churn{i}&port=9",
            i % 20
        ));
        assert_eq!(r.status, 200);
        if i % 3 == 0 {
            assert_eq!(
                p.api("remove", &format!("serviceName=churn-{}", (i + 7) % 20))
                    .status,
                200
            );
        }
        if i % 10 == 0 {
            assert_eq!(p.reconfigure(&base).status, 200);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(ok.load(Ordering::Relaxed) > 100, "too few requests ran");
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let p = Proxy::start();
    let b = Backend::start("b");
    let r = p.reconfigure(&format!(
        "serviceName=slow&servicePath=/slow&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200);
    let url = format!("http://{}/slow", p.http[0]);
    let inflight =
        std::thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()));
    std::thread::sleep(Duration::from_millis(500));
    let status = p.terminate();
    assert!(status.success());
    assert_eq!(inflight.join().unwrap().unwrap(), 200);
}
