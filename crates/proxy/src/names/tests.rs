//! The name cache under a stub resolver, in paused time: lookups are counted, never timed on
//! a real clock.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;

/// A resolver that answers from a table after `delay`, counting lookups per name.
#[derive(Default)]
struct Stub {
    delay: Mutex<Duration>,
    answers: Mutex<HashMap<String, Vec<IpAddr>>>,
    calls: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Stub {
    fn new(delay: Duration) -> Arc<Stub> {
        let stub = Arc::new(Stub::default());
        *stub.delay.lock().unwrap() = delay;
        stub
    }

    fn answer(&self, name: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        self.answers.lock().unwrap().insert(name.into(), ips);
    }

    fn forget(&self, name: &str) {
        self.answers.lock().unwrap().remove(name);
    }

    fn calls(&self, name: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == name)
            .count()
    }
}

struct Shared(Arc<Stub>);

impl Lookup for Shared {
    fn lookup(&self, name: &str) -> LookupFuture {
        let stub = self.0.clone();
        let name = name.to_owned();
        Box::pin(async move {
            stub.calls.lock().unwrap().push(name.clone());
            let now = stub.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            stub.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let delay = *stub.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            stub.in_flight.fetch_sub(1, Ordering::SeqCst);
            let answers = stub.answers.lock().unwrap();
            answers.get(&name).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{name}: NXDOMAIN"))
            })
        })
    }
}

fn names(stub: &Arc<Stub>) -> Arc<Names> {
    Names::on(Arc::new(Shared(stub.clone())), Handle::current())
}

fn ips(resolved: &Resolved) -> Vec<String> {
    let (addrs, _) = resolved.as_ref().unwrap();
    addrs.iter().map(ToString::to_string).collect()
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_share_one_lookup_per_name() {
    let stub = Stub::new(Duration::from_secs(1));
    stub.answer("tasks.web", &["10.0.0.2", "10.0.0.1"]);
    stub.answer("web", &["10.0.0.9"]);
    let names = names(&stub);
    let started = Instant::now();
    let mut requests = Vec::new();
    for _ in 0..50 {
        let names = names.clone();
        requests.push(tokio::spawn(
            async move { names.resolve("web", true).await },
        ));
    }
    for request in requests {
        let resolved = request.await.unwrap();
        assert_eq!(ips(&resolved), ["10.0.0.1", "10.0.0.2"]);
    }
    assert_eq!(stub.calls("tasks.web"), 1);
    assert_eq!(stub.calls("web"), 1);
    // Both names were asked at the same time: one lookup's delay, not two.
    assert_eq!(stub.max_in_flight.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn answers_are_served_while_a_slow_refresh_runs() {
    let stub = Stub::new(Duration::from_millis(1500));
    stub.answer("tasks.web", &["10.0.0.1"]);
    let names = names(&stub);
    assert!(names.resolve("web", true).await.is_ok());
    let first = stub.calls("tasks.web");
    // Ten seconds of requests every 50 ms, while every refresh takes 1.5 s.
    let mut longest = Duration::ZERO;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        assert_eq!(ips(&names.resolve("web", true).await), ["10.0.0.1"]);
        longest = longest.max(asked.elapsed());
    }
    assert_eq!(longest, Duration::ZERO, "a request waited for a lookup");
    assert!(stub.calls("tasks.web") >= first + 2, "names were refreshed");
}

#[tokio::test(start_paused = true)]
async fn refreshes_pick_up_new_addresses_in_the_background() {
    let stub = Stub::new(Duration::from_millis(10));
    stub.answer("tasks.web", &["10.0.0.1"]);
    let names = names(&stub);
    assert_eq!(ips(&names.resolve("web", true).await), ["10.0.0.1"]);
    stub.answer("tasks.web", &["10.0.0.1", "10.0.0.3"]);
    // Nobody asks meanwhile: the sweep refreshes a name in use on its own.
    tokio::time::sleep(FRESH + Duration::from_millis(500)).await;
    let calls = stub.calls("tasks.web");
    assert_eq!(
        ips(&names.resolve("web", true).await),
        ["10.0.0.1", "10.0.0.3"]
    );
    assert_eq!(
        stub.calls("tasks.web"),
        calls,
        "the request itself looked nothing up"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_are_cached_briefly() {
    let stub = Stub::new(Duration::from_millis(10));
    let names = names(&stub);
    assert!(names.resolve("gone", false).await.is_err());
    assert!(names.resolve("gone", false).await.is_err());
    assert_eq!(stub.calls("gone"), 1);
    stub.answer("gone", &["10.0.0.4"]);
    tokio::time::sleep(FRESH_FAILURE + Duration::from_millis(200)).await;
    assert_eq!(ips(&names.resolve("gone", false).await), ["10.0.0.4"]);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_answer_stands_in_until_tasks_appear() {
    let stub = Stub::new(Duration::from_millis(10));
    stub.answer("web", &["10.0.0.9"]);
    let names = names(&stub);
    assert_eq!(ips(&names.resolve("web", true).await), ["10.0.0.9"]);
    stub.answer("tasks.web", &["10.0.0.1"]);
    tokio::time::sleep(FRESH_FALLBACK * 2).await;
    assert_eq!(ips(&names.resolve("web", true).await), ["10.0.0.1"]);
}

#[tokio::test(start_paused = true)]
async fn task_addresses_outlive_a_failed_refresh_up_to_the_staleness_bound() {
    let stub = Stub::new(Duration::from_millis(10));
    stub.answer("tasks.web", &["10.0.0.1"]);
    stub.answer("web", &["10.0.0.9"]);
    let names = names(&stub);
    assert_eq!(ips(&names.resolve("web", true).await), ["10.0.0.1"]);
    stub.forget("tasks.web");
    stub.forget("web");
    tokio::time::sleep(MAX_STALE / 2).await;
    assert_eq!(ips(&names.resolve("web", true).await), ["10.0.0.1"]);
    tokio::time::sleep(MAX_STALE).await;
    assert!(names.resolve("web", true).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_once_the_answer_is_too_stale() {
    let stub = Stub::new(Duration::from_millis(10));
    stub.answer("web", &["10.0.0.1"]);
    let names = names(&stub);
    assert!(names.resolve("web", false).await.is_ok());
    // Every refresh from now on hangs past the lookup timeout.
    *stub.delay.lock().unwrap() = LOOKUP_TIMEOUT * 2;
    tokio::time::sleep(MAX_STALE - Duration::from_millis(100)).await;
    let asked = Instant::now();
    assert!(names.resolve("web", false).await.is_ok());
    assert_eq!(asked.elapsed(), Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let late = names.resolve("web", false).await;
    assert!(
        asked.elapsed() > Duration::ZERO,
        "served past the staleness bound"
    );
    assert!(late.is_err(), "a timed-out lookup is a failure: {late:?}");
}

#[tokio::test(start_paused = true)]
async fn lookups_run_on_a_bounded_pool() {
    let stub = Stub::new(Duration::from_secs(1));
    let names = names(&stub);
    let mut requests = Vec::new();
    for i in 0..20 {
        let names = names.clone();
        stub.answer(&format!("svc{i}"), &["10.0.0.1"]);
        requests.push(tokio::spawn(async move {
            names.resolve(&format!("svc{i}"), true).await
        }));
    }
    for request in requests {
        assert!(request.await.unwrap().is_ok());
    }
    assert_eq!(stub.max_in_flight.load(Ordering::SeqCst), LOOKUP_SLOTS);
}

#[tokio::test(start_paused = true)]
async fn round_robin_advances_per_request() {
    let stub = Stub::new(Duration::from_millis(10));
    stub.answer("web", &["10.0.0.1", "10.0.0.2"]);
    let names = names(&stub);
    let (_, a) = names.resolve("web", false).await.unwrap();
    let (_, b) = names.resolve("web", false).await.unwrap();
    assert_eq!(b, a + 1);
}

#[tokio::test(start_paused = true)]
async fn unused_names_are_forgotten() {
    let stub = Stub::new(Duration::from_millis(10));
    stub.answer("web", &["10.0.0.1"]);
    let names = names(&stub);
    assert!(names.resolve("web", false).await.is_ok());
    tokio::time::sleep(FORGET_AFTER + Duration::from_secs(1)).await;
    assert!(names.table()[0].is_empty());
    let calls = stub.calls("web");
    tokio::time::sleep(FRESH * 3).await;
    assert_eq!(
        stub.calls("web"),
        calls,
        "a forgotten name is not refreshed"
    );
}
