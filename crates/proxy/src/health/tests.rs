use super::*;
use tokio::time::advance;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 80))
}

#[tokio::test(start_paused = true)]
async fn three_failures_in_a_row_eject() {
    let health = Health::new();
    let a = addr(1);
    assert_eq!(health.admit(a), Admit::Yes);
    assert!(!health.failed(a, Fault::Refused));
    assert!(!health.failed(a, Fault::Reset));
    assert_eq!(health.admit(a), Admit::Yes);
    assert!(health.failed(a, Fault::Refused));
    assert!(matches!(health.admit(a), Admit::No { .. }));
    assert_eq!(
        health.report(a),
        AddrReport {
            ejected: true,
            ejections: 1
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_count() {
    let health = Health::new();
    let a = addr(1);
    health.failed(a, Fault::Refused);
    health.failed(a, Fault::Refused);
    health.succeeded(a);
    assert!(!health.failed(a, Fault::Refused));
    assert!(!health.failed(a, Fault::Refused));
    assert_eq!(health.admit(a), Admit::Yes);
}

#[tokio::test(start_paused = true)]
async fn a_second_connect_timeout_ejects_at_once() {
    let health = Health::new();
    let a = addr(1);
    assert!(!health.failed(a, Fault::ConnectTimeout));
    assert!(health.failed(a, Fault::ConnectTimeout));
    let b = addr(2);
    assert!(!health.failed(b, Fault::Refused));
    assert!(health.failed(b, Fault::ConnectTimeout));
}

#[tokio::test(start_paused = true)]
async fn the_backoff_doubles_after_failed_probes_up_to_the_limit() {
    let health = Health::new();
    let a = addr(1);
    for _ in 0..EJECT_AFTER {
        health.failed(a, Fault::Refused);
    }
    let mut backoff = FIRST_BACKOFF;
    for _ in 0..8 {
        advance(backoff - Duration::from_millis(10)).await;
        assert!(matches!(health.admit(a), Admit::No { .. }), "{backoff:?}");
        advance(Duration::from_millis(10)).await;
        assert_eq!(health.admit(a), Admit::Probe, "{backoff:?}");
        // Only one probe at a time.
        assert!(matches!(health.admit(a), Admit::No { .. }));
        health.failed(a, Fault::Refused);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    assert_eq!(backoff, MAX_BACKOFF);
    assert_eq!(health.report(a).ejections, 1);
}

#[tokio::test(start_paused = true)]
async fn a_successful_probe_readmits_and_resets_the_backoff() {
    let health = Health::new();
    let a = addr(1);
    for _ in 0..EJECT_AFTER {
        health.failed(a, Fault::Refused);
    }
    advance(FIRST_BACKOFF).await;
    assert_eq!(health.admit(a), Admit::Probe);
    health.failed(a, Fault::Refused);
    advance(FIRST_BACKOFF * 2).await;
    assert_eq!(health.admit(a), Admit::Probe);
    health.succeeded(a);
    assert_eq!(health.admit(a), Admit::Yes);
    assert!(!health.report(a).ejected);
    // A new ejection starts again from the first backoff.
    for _ in 0..EJECT_AFTER {
        health.failed(a, Fault::Refused);
    }
    advance(FIRST_BACKOFF).await;
    assert_eq!(health.admit(a), Admit::Probe);
    assert_eq!(health.report(a).ejections, 2);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_is_given_up() {
    let health = Health::new();
    let a = addr(1);
    for _ in 0..EJECT_AFTER {
        health.failed(a, Fault::Refused);
    }
    advance(FIRST_BACKOFF).await;
    assert_eq!(health.admit(a), Admit::Probe);
    advance(PROBE_STALE - Duration::from_millis(1)).await;
    assert!(matches!(health.admit(a), Admit::No { .. }));
    advance(Duration::from_millis(1)).await;
    assert_eq!(health.admit(a), Admit::Probe);
}

#[tokio::test(start_paused = true)]
async fn ejections_are_ordered_by_time() {
    let health = Health::new();
    for _ in 0..EJECT_AFTER {
        health.failed(addr(2), Fault::Refused);
    }
    advance(Duration::from_millis(100)).await;
    for _ in 0..EJECT_AFTER {
        health.failed(addr(1), Fault::Refused);
    }
    let (Admit::No { since: two }, Admit::No { since: one }) =
        (health.admit(addr(2)), health.admit(addr(1)))
    else {
        panic!("both are ejected");
    };
    assert!(two < one);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_service_may_retry_up_to_the_floor() {
    let health = Health::new();
    let budget = health.service("svc");
    let floor = RETRY_FLOOR_PER_SEC * BUDGET_WINDOW.as_secs() as u32;
    for i in 0..floor {
        assert!(health.try_retry(&budget), "retry {i}");
    }
    assert!(!health.try_retry(&budget));
    // The window slides: a full window later the floor is there again.
    advance(BUDGET_WINDOW).await;
    assert!(health.try_retry(&budget));
}

#[tokio::test(start_paused = true)]
async fn retries_are_bounded_by_a_share_of_requests() {
    let health = Health::new();
    let budget = health.service("svc");
    let floor = RETRY_FLOOR_PER_SEC * BUDGET_WINDOW.as_secs() as u32;
    for _ in 0..1000 {
        health.request(&budget);
    }
    let mut granted = 0;
    while health.try_retry(&budget) {
        granted += 1;
        assert!(granted <= 1000, "the budget never ran out");
    }
    assert_eq!(granted, 200 + floor);
    // Other services have their own budget.
    assert!(health.try_retry(&health.service("other")));
    // Requests older than the window no longer count.
    advance(BUDGET_WINDOW).await;
    let mut granted = 0;
    while health.try_retry(&budget) {
        granted += 1;
    }
    assert_eq!(granted, floor);
}

#[tokio::test(start_paused = true)]
async fn the_budget_window_slides_by_the_second() {
    let health = Health::new();
    let budget = health.service("svc");
    for _ in 0..500 {
        health.request(&budget);
    }
    advance(Duration::from_secs(5)).await;
    for _ in 0..500 {
        health.request(&budget);
    }
    advance(Duration::from_secs(5)).await;
    // The first 500 are out of the window, the last 500 in: 100 + the floor.
    let mut granted = 0;
    while health.try_retry(&budget) {
        granted += 1;
    }
    assert_eq!(granted, 100 + RETRY_FLOOR_PER_SEC * 10);
}

#[test]
fn health_is_shared_across_threads() {
    let health = Arc::new(Health::new());
    let a = addr(9);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let health = health.clone();
            std::thread::spawn(move || {
                health.failed(a, Fault::Refused);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(health.report(a).ejected);
    assert_eq!(health.report(a).ejections, 1);
}
