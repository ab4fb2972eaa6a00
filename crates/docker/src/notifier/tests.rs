//! Tests for the endpoint worker: retry policy, supersession and isolation, with a
//! scripted transport under paused time and with real HTTP against a mock proxy.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use hyper::Method;

use super::*;
use crate::delivery::HttpDelivery;
use crate::endpoint::Target;
use crate::params::Mode;
use crate::test_support::{demo_params, poll_until};

fn params(name: &str, path: &str, replicas: i64) -> ServiceParams {
    demo_params(
        name,
        &[("com.df.servicePath", path)],
        Mode::Replicated(replicas),
    )
}

fn snapshot(services: &[(&str, &str)], resync: u64, force: u64) -> Arc<Desired> {
    Arc::new(Desired {
        services: services
            .iter()
            .map(|(n, path)| ((*n).to_owned(), params(n, path, 1)))
            .collect::<BTreeMap<_, _>>(),
        synced_at: Some(SystemTime::now()),
        resync_generation: resync,
        force_generation: force,
    })
}

fn endpoint(base: &str) -> Endpoint {
    Endpoint {
        create: Some(Target::parse(&format!("{base}/reconfigure"), Method::GET).unwrap()),
        remove: Some(Target::parse(&format!("{base}/remove"), Method::GET).unwrap()),
    }
}

/// Maps a request URL to a status (`None`: never answer).
type Responder = dyn Fn(&str) -> Option<u16> + Send + Sync;

/// A transport that records calls (virtual time since creation, URL) and answers from a
/// script: `Some(status)` or `None` to never answer.
struct Scripted {
    start: Instant,
    calls: Mutex<Vec<(Duration, String)>>,
    respond: Box<Responder>,
}

impl Scripted {
    fn new(respond: impl Fn(&str) -> Option<u16> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            calls: Mutex::new(Vec::new()),
            respond: Box::new(respond),
        })
    }

    fn calls(&self) -> Vec<(Duration, String)> {
        self.calls.lock().unwrap().clone()
    }

    fn urls(&self) -> Vec<String> {
        self.calls().into_iter().map(|(_, u)| u).collect()
    }
}

impl Deliver for Scripted {
    async fn deliver(&self, request: &NotificationRequest) -> AttemptResult {
        self.calls
            .lock()
            .unwrap()
            .push((self.start.elapsed(), request.url.clone()));
        match (self.respond)(&request.url) {
            Some(code) => AttemptResult::Status {
                status: StatusCode::from_u16(code).unwrap(),
                body: String::new(),
            },
            None => std::future::pending().await,
        }
    }
}

struct Harness<D> {
    tx: watch::Sender<Arc<Desired>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _d: std::marker::PhantomData<D>,
}

fn start<D: Deliver>(delivery: Arc<D>, base: &str, policy: RetryPolicy) -> Harness<D> {
    let (tx, rx) = watch::channel(Arc::new(Desired::default()));
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let worker = EndpointWorker::new(endpoint(base), policy, delivery, None, Arc::clone(&metrics));
    let task = tokio::spawn(worker.run(rx, shutdown.clone()));
    Harness {
        tx,
        metrics,
        shutdown,
        task,
        _d: std::marker::PhantomData,
    }
}

const DFSL_POLICY: RetryPolicy = RetryPolicy {
    retries: 50,
    interval: Duration::from_secs(5),
};

async fn advance(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[test]
fn status_classification() {
    let cases = [
        (200, Verdict::Delivered),
        (204, Verdict::Delivered),
        (409, Verdict::Rejected),
        (400, Verdict::Rejected),
        (404, Verdict::Rejected),
        (408, Verdict::Retry),
        (429, Verdict::Retry),
        (301, Verdict::Retry),
        (500, Verdict::Retry),
        (503, Verdict::Retry),
    ];
    for (code, want) in cases {
        assert_eq!(
            classify(StatusCode::from_u16(code).unwrap()),
            want,
            "{code}"
        );
    }
}

#[test]
fn retry_policy_counts_retries_after_the_first_attempt() {
    let p = RetryPolicy {
        retries: 2,
        interval: Duration::from_secs(1),
    };
    assert!(p.should_retry(1));
    assert!(p.should_retry(2));
    assert!(!p.should_retry(3));
    let no_interval = RetryPolicy {
        retries: 50,
        interval: Duration::ZERO,
    };
    assert!(!no_interval.should_retry(1), "interval 0 means one attempt");
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_at_the_interval_until_delivered() {
    let count = Arc::new(Mutex::new(0));
    let c = Arc::clone(&count);
    let delivery = Scripted::new(move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        Some(if *n < 3 { 503 } else { 200 })
    });
    let h = start(Arc::clone(&delivery), "http://proxy:8080", DFSL_POLICY);
    h.tx.send_replace(snapshot(&[("a", "/a")], 1, 0));
    advance(60.0).await;
    let calls = delivery.calls();
    let times: Vec<u64> = calls.iter().map(|(t, _)| t.as_secs()).collect();
    assert_eq!(times, vec![0, 5, 10]);
    assert!(calls[0]
        .1
        .ends_with("/reconfigure?distribute=true&replicas=1&serviceName=a&servicePath=%2Fa"));
    let text = h.metrics.render();
    assert!(text.contains("sluice_listener_notifications_sent_total{kind=\"create\"} 1"));
    assert!(text.contains("sluice_listener_notification_retries_total{kind=\"create\"} 2"));
    h.shutdown.cancel();
    h.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_after_df_retry_and_resume_after_a_resync() {
    let delivery = Scripted::new(|_| Some(500));
    let h = start(
        Arc::clone(&delivery),
        "http://proxy:8080",
        RetryPolicy {
            retries: 50,
            interval: Duration::from_secs(5),
        },
    );
    h.tx.send_replace(snapshot(&[("a", "/a")], 1, 0));
    advance(1000.0).await;
    let calls = delivery.calls();
    assert_eq!(calls.len(), 51, "1 attempt + DF_RETRY retries");
    assert_eq!(calls[50].0, Duration::from_secs(250));
    assert!(h
        .metrics
        .render()
        .contains("sluice_listener_notifications_failed_total{kind=\"create\"} 1"));

    // Same state, no new resync: nothing more.
    h.tx.send_replace(snapshot(&[("a", "/a")], 1, 0));
    advance(100.0).await;
    assert_eq!(delivery.calls().len(), 51);

    // A periodic resync gives it a fresh budget.
    h.tx.send_replace(snapshot(&[("a", "/a")], 2, 0));
    advance(1.0).await;
    assert_eq!(delivery.calls().len(), 52);
    h.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn conflict_is_final_until_the_service_changes() {
    let delivery = Scripted::new(|url| Some(if url.contains("%2Fbad") { 409 } else { 200 }));
    let h = start(Arc::clone(&delivery), "http://proxy:8080", DFSL_POLICY);
    h.tx.send_replace(snapshot(&[("a", "/bad")], 1, 0));
    advance(100.0).await;
    assert_eq!(delivery.calls().len(), 1);
    // Periodic resyncs do not re-send a refused state.
    h.tx.send_replace(snapshot(&[("a", "/bad")], 2, 0));
    advance(100.0).await;
    assert_eq!(delivery.calls().len(), 1);
    assert!(h
        .metrics
        .render()
        .contains("sluice_listener_notifications_failed_total{kind=\"create\"} 1"));
    // A fixed label is sent at once.
    h.tx.send_replace(snapshot(&[("a", "/good")], 2, 0));
    advance(1.0).await;
    let urls = delivery.urls();
    assert_eq!(urls.len(), 2);
    assert!(urls[1].contains("servicePath=%2Fgood"));
    h.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_newer_state_cancels_the_request_in_flight() {
    // `/v1` never gets an answer; `/v2` does.
    let delivery = Scripted::new(|url| url.contains("%2Fv2").then_some(200));
    let h = start(Arc::clone(&delivery), "http://proxy:8080", DFSL_POLICY);
    h.tx.send_replace(snapshot(&[("a", "/v1")], 1, 0));
    advance(1.0).await;
    assert_eq!(delivery.calls().len(), 1);
    h.tx.send_replace(snapshot(&[("a", "/v2")], 1, 0));
    advance(1.0).await;
    let urls = delivery.urls();
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(urls[1].contains("servicePath=%2Fv2"));
    advance(100.0).await;
    assert_eq!(delivery.calls().len(), 2, "the old state is never retried");
    h.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_newer_state_replaces_a_queued_retry_immediately() {
    let delivery = Scripted::new(|url| Some(if url.contains("%2Fv1") { 503 } else { 200 }));
    let h = start(Arc::clone(&delivery), "http://proxy:8080", DFSL_POLICY);
    h.tx.send_replace(snapshot(&[("a", "/v1")], 1, 0));
    advance(1.0).await; // first attempt failed, retry due at t=5
    h.tx.send_replace(snapshot(&[("a", "/v2")], 1, 0));
    advance(0.5).await;
    let calls = delivery.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].1.contains("%2Fv2"));
    assert!(
        calls[1].0 < Duration::from_secs(2),
        "sent without waiting for the retry slot"
    );
    advance(100.0).await;
    assert_eq!(delivery.calls().len(), 2);
    h.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_failing_service_does_not_hold_up_others_and_removes_follow() {
    let delivery = Scripted::new(|url| {
        Some(if url.contains("serviceName=bad") {
            500
        } else {
            200
        })
    });
    let h = start(Arc::clone(&delivery), "http://proxy:8080", DFSL_POLICY);
    h.tx.send_replace(snapshot(&[("bad", "/x"), ("good", "/g")], 1, 0));
    advance(1.0).await;
    let urls = delivery.urls();
    assert_eq!(urls.len(), 2);
    assert!(urls[0].contains("serviceName=bad"));
    assert!(urls[1].contains("serviceName=good"));

    // `good` disappears: a remove with its last parameters, no replicas.
    h.tx.send_replace(snapshot(&[("bad", "/x")], 1, 0));
    advance(1.0).await;
    let urls = delivery.urls();
    assert_eq!(
        urls.last().unwrap(),
        "http://proxy:8080/remove?distribute=true&serviceName=good&servicePath=%2Fg"
    );
    // `bad` was never delivered but may have reached the proxy: removing it sends a remove.
    h.tx.send_replace(snapshot(&[], 1, 0));
    advance(1.0).await;
    assert!(delivery
        .urls()
        .last()
        .unwrap()
        .starts_with("http://proxy:8080/remove?distribute=true&serviceName=bad"));
    h.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn notify_services_resends_every_create() {
    let delivery = Scripted::new(|_| Some(200));
    let h = start(Arc::clone(&delivery), "http://proxy:8080", DFSL_POLICY);
    h.tx.send_replace(snapshot(&[("a", "/a"), ("b", "/b")], 1, 0));
    advance(1.0).await;
    assert_eq!(delivery.calls().len(), 2);
    h.tx.send_replace(snapshot(&[("a", "/a"), ("b", "/b")], 2, 0));
    advance(1.0).await;
    assert_eq!(delivery.calls().len(), 2, "a resync alone re-sends nothing");
    h.tx.send_replace(snapshot(&[("a", "/a"), ("b", "/b")], 2, 1));
    advance(1.0).await;
    assert_eq!(delivery.calls().len(), 4);
    h.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn nothing_is_sent_before_the_first_listing() {
    let delivery = Scripted::new(|_| Some(200));
    let h = start(Arc::clone(&delivery), "http://proxy:8080", DFSL_POLICY);
    let mut unsynced = (*snapshot(&[("a", "/a")], 0, 0)).clone();
    unsynced.synced_at = None;
    h.tx.send_replace(Arc::new(unsynced));
    advance(10.0).await;
    assert!(delivery.calls().is_empty());
    h.shutdown.cancel();
    h.task.await.unwrap();
}

// ---- Real HTTP against an in-process mock proxy on port 0 (real time, short intervals).

/// A mock proxy: records `METHOD path?query`, answers from a per-path queue of statuses
/// (default 200); paths containing `hang` never answer.
struct MockProxy {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn mock_proxy(scripts: HashMap<&'static str, Vec<u16>>) -> MockProxy {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let scripts: Arc<Mutex<HashMap<String, VecDeque<u16>>>> = Arc::new(Mutex::new(
        scripts
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().collect()))
            .collect(),
    ));
    let record = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |method: Method, uri: hyper::Uri| {
        let record = Arc::clone(&record);
        let scripts = Arc::clone(&scripts);
        async move {
            record.lock().unwrap().push(format!("{method} {uri}"));
            if uri.path().contains("hang") {
                std::future::pending::<()>().await;
            }
            let code = scripts
                .lock()
                .unwrap()
                .get_mut(uri.path())
                .and_then(VecDeque::pop_front)
                .unwrap_or(200);
            StatusCode::from_u16(code).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    MockProxy { addr, seen }
}

#[tokio::test]
async fn http_5xx_is_retried_and_409_is_final() {
    let proxy = mock_proxy(HashMap::from([
        ("/a/reconfigure", vec![500, 502, 200]),
        ("/b/reconfigure", vec![409]),
    ]))
    .await;
    let policy = RetryPolicy {
        retries: 5,
        interval: Duration::from_millis(50),
    };
    let delivery = Arc::new(HttpDelivery::new(Duration::from_secs(2)));
    let a = start(
        Arc::clone(&delivery),
        &format!("http://{}/a", proxy.addr),
        policy,
    );
    let b = start(
        Arc::clone(&delivery),
        &format!("http://{}/b", proxy.addr),
        policy,
    );
    let desired = snapshot(&[("svc", "/p")], 1, 0);
    a.tx.send_replace(Arc::clone(&desired));
    b.tx.send_replace(desired);
    // Both outcomes are final once counted (that nothing follows them is checked under
    // paused time above); then the requests seen are all there will be.
    let settled = || {
        a.metrics
            .render()
            .contains("sluice_listener_notifications_sent_total{kind=\"create\"} 1")
            && b.metrics
                .render()
                .contains("sluice_listener_notifications_failed_total{kind=\"create\"} 1")
    };
    poll_until("delivery to a and refusal by b", settled).await;
    let seen = proxy.seen.lock().unwrap().clone();
    let to_a = seen.iter().filter(|l| l.starts_with("GET /a/")).count();
    let to_b = seen.iter().filter(|l| l.starts_with("GET /b/")).count();
    assert_eq!((to_a, to_b), (3, 1), "{seen:?}");
    assert!(seen.contains(
        &"GET /a/reconfigure?distribute=true&replicas=1&serviceName=svc&servicePath=%2Fp"
            .to_owned()
    ));
    assert!(a
        .metrics
        .render()
        .contains("sluice_listener_notifications_sent_total{kind=\"create\"} 1"));
    assert!(b
        .metrics
        .render()
        .contains("sluice_listener_notifications_failed_total{kind=\"create\"} 1"));
    a.shutdown.cancel();
    b.shutdown.cancel();
}

#[tokio::test]
async fn a_dead_endpoint_never_blocks_a_live_one() {
    let proxy = mock_proxy(HashMap::new()).await;
    let delivery = Arc::new(HttpDelivery::new(Duration::from_secs(30)));
    let policy = RetryPolicy {
        retries: 3,
        interval: Duration::from_millis(50),
    };
    let dead = start(
        Arc::clone(&delivery),
        &format!("http://{}/hang", proxy.addr),
        policy,
    );
    let live = start(
        Arc::clone(&delivery),
        &format!("http://{}/live", proxy.addr),
        policy,
    );
    let desired = snapshot(&[("a", "/a"), ("b", "/b")], 1, 0);
    dead.tx.send_replace(Arc::clone(&desired));
    // The dead endpoint's first request is hanging before the live one gets any work.
    poll_until("the dead endpoint's request", || {
        !proxy.seen.lock().unwrap().is_empty()
    })
    .await;
    live.tx.send_replace(desired);
    // poll_until gives up after 5 s, well within the 30 s the dead request may hang.
    poll_until("both services delivered to the live endpoint", || {
        proxy
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("GET /live/"))
            .count()
            == 2
    })
    .await;
    let hung = proxy
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("GET /hang/"))
        .count();
    assert_eq!(
        hung, 1,
        "the dead endpoint is still waiting on its first request"
    );
    dead.shutdown.cancel();
    live.shutdown.cancel();
    dead.task.await.unwrap();
}

// ---- Logs never hold a secret (issue 8): the query carries every `com.df.*` value.

const PASSWORD: &str = "S3cretPw";
const KEY_LINE: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";

/// A log sink for a `tracing` subscriber.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Answers like a proxy that quotes what it refused: 503 quoting the users, then 409
/// quoting a line of the key; 200 for every other service.
struct Quoting {
    calls: Mutex<u32>,
}

impl Deliver for Quoting {
    async fn deliver(&self, request: &NotificationRequest) -> AttemptResult {
        if !request.url.contains("serviceName=secure") {
            return AttemptResult::Status {
                status: StatusCode::OK,
                body: String::new(),
            };
        }
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        let (status, body) = if *calls == 1 {
            (503, format!("users admin:{PASSWORD} cannot be checked now"))
        } else {
            (409, format!("serviceCert line {KEY_LINE} is not PEM"))
        };
        AttemptResult::Status {
            status: StatusCode::from_u16(status).unwrap(),
            body,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn logs_name_secret_parameters_but_never_their_values() {
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let cert = format!(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n{KEY_LINE}\n-----END PRIVATE KEY-----\n"
    );
    let labels = [
        ("com.df.servicePath", "/secure"),
        ("com.df.users", "admin:S3cretPw"),
        ("com.df.serviceCert", cert.as_str()),
    ];
    let secure = demo_params("secure", &labels, Mode::Replicated(1));
    let desired = |services: Vec<(&str, ServiceParams)>| {
        Arc::new(Desired {
            services: services
                .into_iter()
                .map(|(n, p)| (n.to_owned(), p))
                .collect(),
            synced_at: Some(SystemTime::now()),
            resync_generation: 1,
            force_generation: 0,
        })
    };

    let delivery = Arc::new(Quoting {
        calls: Mutex::new(0),
    });
    let h = start(Arc::clone(&delivery), "http://proxy:8080", DFSL_POLICY);
    h.tx.send_replace(desired(vec![
        ("secure", secure.clone()),
        ("plain", params("plain", "/plain", 1)),
    ]));
    advance(60.0).await; // 503 (retried), then 409 (final)
    assert_eq!(
        *delivery.calls.lock().unwrap(),
        2,
        "both answers were given"
    );
    h.tx.send_replace(desired(vec![("plain", params("plain", "/plain", 1))]));
    advance(1.0).await; // the remove carries the secrets too
    h.shutdown.cancel();
    h.task.await.unwrap();

    let text = logs.text();
    for line in [
        "Sending service created notification",
        "Retrying service created notification",
        "Proxy refused service created notification",
        "Delivered service created notification",
        "Sending service removed notification",
    ] {
        assert!(text.contains(line), "no {line:?} in the logs:\n{text}");
    }
    for secret in [PASSWORD, KEY_LINE, "PRIVATE", "BEGIN"] {
        assert!(!text.contains(secret), "{secret:?} logged:\n{text}");
    }
    assert!(text.contains("users=REDACTED"), "{text}");
    assert!(text.contains("serviceCert=REDACTED"), "{text}");
}
