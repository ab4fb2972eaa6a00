//! Watcher tests against an in-process fake Docker Engine (TCP, port 0): initial listing,
//! event-driven relisting, reconnect with resync, backoff and shutdown.

use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::*;
use crate::test_support::{poll_until, rules};

#[test]
fn api_version_header_parses() {
    assert_eq!(
        parse_api_version("1.41"),
        Some(ClientVersion {
            major_version: 1,
            minor_version: 41
        })
    );
    assert_eq!(
        parse_api_version(" 1.53 ").map(|v| v.minor_version),
        Some(53)
    );
    assert_eq!(parse_api_version("141"), None);
    assert_eq!(parse_api_version("1.x"), None);
}

#[test]
fn since_is_seconds_with_nanos_in_the_past() {
    let now = UNIX_EPOCH + Duration::new(1_700_000_010, 123_000_000);
    assert_eq!(
        since_param(now, Duration::from_secs(5)),
        "1700000005.123000000"
    );
    assert_eq!(
        since_param(UNIX_EPOCH, Duration::from_secs(5)),
        "0.000000000"
    );
}

#[derive(Default)]
struct FakeState {
    services: Vec<Value>,
    fail_list: bool,
    list_queries: Vec<String>,
    event_queries: Vec<String>,
    tasks: Vec<Value>,
    task_queries: Vec<String>,
    streams: Vec<mpsc::UnboundedSender<Result<Bytes, std::io::Error>>>,
}

type Shared = Arc<Mutex<FakeState>>;

fn service(id: &str, name: &str, path: &str, replicas: i64) -> Value {
    json!({
        "ID": id,
        "Spec": {
            "Name": name,
            "Labels": {"com.df.notify": "true", "com.df.servicePath": path},
            "Mode": {"Replicated": {"Replicas": replicas}}
        }
    })
}

async fn fake_docker() -> (std::net::SocketAddr, Shared) {
    let state: Shared = Arc::default();
    let list = get(
        |State(s): State<Shared>, RawQuery(q): RawQuery| async move {
            let mut s = s.lock().unwrap();
            s.list_queries.push(q.unwrap_or_default());
            if s.fail_list {
                return (StatusCode::INTERNAL_SERVER_ERROR, "{\"message\":\"boom\"}")
                    .into_response();
            }
            axum::Json(Value::Array(s.services.clone())).into_response()
        },
    );
    let events = get(
        |State(s): State<Shared>, RawQuery(q): RawQuery| async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut s = s.lock().unwrap();
            s.event_queries.push(q.unwrap_or_default());
            s.streams.push(tx);
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Response::new(Body::from_stream(stream))
        },
    );
    let tasks = get(
        |State(s): State<Shared>, RawQuery(q): RawQuery| async move {
            let mut s = s.lock().unwrap();
            s.task_queries.push(q.unwrap_or_default());
            axum::Json(Value::Array(s.tasks.clone())).into_response()
        },
    );
    // bollard 0.21 sends unversioned paths; accept the versioned form too.
    let app = Router::new()
        .route("/tasks", tasks.clone())
        .route("/v1.41/tasks", tasks)
        .route("/services", list.clone())
        .route("/v1.41/services", list)
        .route("/events", events.clone())
        .route("/v1.41/events", events)
        .route(
            "/_ping",
            get(|| async {
                let mut headers = HeaderMap::new();
                headers.insert("api-version", HeaderValue::from_static("1.41"));
                (headers, "OK")
            }),
        )
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

fn push_event(state: &Shared, name: &str) {
    let line = format!(
        "{{\"Type\":\"service\",\"Action\":\"update\",\"Actor\":{{\"ID\":\"id-{name}\",\"Attributes\":{{\"name\":\"{name}\"}}}},\"time\":1,\"timeNano\":1}}\n"
    );
    for tx in &state.lock().unwrap().streams {
        let _ = tx.send(Ok(Bytes::from(line.clone())));
    }
}

fn end_streams(state: &Shared) {
    state.lock().unwrap().streams.clear();
}

struct Running {
    rx: watch::Receiver<Arc<Desired>>,
    metrics: Arc<Metrics>,
    resend: Arc<ResendRequest>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(addr: std::net::SocketAddr, resync: Duration) -> Running {
    let (tx, rx) = watch::channel(Arc::new(Desired::default()));
    let metrics = Arc::new(Metrics::default());
    let resend = Arc::new(ResendRequest::default());
    let shutdown = CancellationToken::new();
    let config = WatchConfig {
        host: DockerHost::Tcp(format!("tcp://{addr}")),
        rules: rules(),
        resync_interval: resync,
        use_events: true,
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(80)).unwrap(),
    };
    let watcher = Watcher::new(config, Arc::clone(&metrics), tx, Arc::clone(&resend));
    let task = tokio::spawn(watcher.run(shutdown.clone()));
    Running {
        rx,
        metrics,
        resend,
        shutdown,
        task,
    }
}

async fn wait_until(
    rx: &mut watch::Receiver<Arc<Desired>>,
    what: &str,
    pred: impl Fn(&Desired) -> bool,
) -> Arc<Desired> {
    let got = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|d| pred(d)))
        .await
        .map(|r| r.map(|d| Arc::clone(&d)));
    match got {
        Ok(Ok(d)) => d,
        _ => panic!("timed out waiting for {what}; last: {:?}", rx.borrow()),
    }
}

fn path_of(d: &Desired, name: &str) -> Option<String> {
    d.services
        .get(name)
        .and_then(|p| p.create.get("servicePath").cloned())
}

#[tokio::test]
async fn lists_then_follows_events_and_resyncs_after_reconnect() {
    let (addr, state) = fake_docker().await;
    state.lock().unwrap().services = vec![service("id-a", "a", "/a", 1)];
    let mut w = start(addr, Duration::from_secs(3600));

    let d = wait_until(&mut w.rx, "first listing", |d| d.synced_at.is_some()).await;
    assert_eq!(path_of(&d, "a").as_deref(), Some("/a"));
    assert_eq!(d.resync_generation, 1);
    {
        let s = state.lock().unwrap();
        assert_eq!(s.list_queries.len(), 1);
        assert!(
            s.list_queries[0].contains("filters=%7B%22label%22%3A%5B%22com.df.notify%22%5D%7D"),
            "{:?}",
            s.list_queries
        );
    }
    // Wait for the event subscription, then change a label and announce it.
    poll_until("the event subscription", || {
        !state.lock().unwrap().streams.is_empty()
    })
    .await;
    {
        let s = state.lock().unwrap();
        assert!(
            s.event_queries[0].contains("since="),
            "{:?}",
            s.event_queries
        );
        assert!(
            s.event_queries[0].contains("service"),
            "{:?}",
            s.event_queries
        );
    }
    state.lock().unwrap().services = vec![service("id-a", "a", "/b", 2)];
    push_event(&state, "a");
    // Within wait_until's bound, far below the hour-long resync: the event did it.
    let d = wait_until(&mut w.rx, "update", |d| {
        path_of(d, "a").as_deref() == Some("/b")
    })
    .await;
    assert_eq!(d.services["a"].create["replicas"], "2");
    assert_eq!(
        d.resync_generation, 1,
        "event-driven listings are not periodic resyncs"
    );

    // The stream breaks and a service is removed meanwhile: the new session relists.
    state.lock().unwrap().services = vec![];
    end_streams(&state);
    let d = wait_until(&mut w.rx, "resync after reconnect", |d| {
        d.services.is_empty()
    })
    .await;
    assert_eq!(d.resync_generation, 2);
    assert!(w
        .metrics
        .render()
        .contains("sluice_listener_docker_reconnects_total 1"));

    w.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), w.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn failing_docker_backs_off_and_shutdown_interrupts() {
    let (addr, state) = fake_docker().await;
    state.lock().unwrap().fail_list = true;
    let started = std::time::Instant::now();
    let mut w = start(addr, Duration::from_secs(3600));
    // Delays 20, 40, 80, 80, ... ms: the fifth listing cannot come before 20+40+80+80 ms.
    poll_until("five failed listings", || {
        state.lock().unwrap().list_queries.len() >= 5
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(220),
        "retried without backing off: {:?}",
        started.elapsed()
    );
    assert!(w.rx.borrow().synced_at.is_none());

    // Recovery resets the backoff and publishes.
    state.lock().unwrap().fail_list = false;
    state.lock().unwrap().services = vec![service("id-a", "a", "/a", 1)];
    wait_until(&mut w.rx, "recovery", |d| d.services.contains_key("a")).await;

    w.shutdown.cancel();
    tokio::time::timeout(Duration::from_millis(500), w.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn periodic_resync_and_resend_requests_publish_generations() {
    let (addr, state) = fake_docker().await;
    state.lock().unwrap().services = vec![service("id-a", "a", "/a", 1)];
    let mut w = start(addr, Duration::from_millis(200));
    wait_until(&mut w.rx, "first", |d| d.resync_generation == 1).await;
    wait_until(&mut w.rx, "periodic", |d| d.resync_generation >= 2).await;
    w.resend.request();
    let d = wait_until(&mut w.rx, "forced", |d| d.force_generation == 1).await;
    assert!(d.services.contains_key("a"));
    w.shutdown.cancel();
}

#[tokio::test]
async fn unreachable_docker_is_retried() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let started = std::time::Instant::now();
    let w = start(addr, Duration::from_secs(3600));
    let reconnects = || -> u64 {
        w.metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("sluice_listener_docker_reconnects_total "))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    poll_until("three reconnects", || reconnects() >= 3).await;
    // The first two waits (20 and 40 ms) separate the three attempts.
    assert!(started.elapsed() >= Duration::from_millis(60));
    w.shutdown.cancel();
    w.task.await.unwrap();
}

fn docker_task(id: &str, service: &str, state: &str, desired: &str, ip: &str) -> Value {
    json!({
        "ID": id,
        "ServiceID": service,
        "Status": {"State": state},
        "DesiredState": desired,
        "NetworksAttachments": [{"Addresses": [format!("{ip}/24")]}]
    })
}

#[tokio::test]
async fn task_sets_are_published_and_polled_only_while_converging() {
    let (addr, state) = fake_docker().await;
    {
        let mut s = state.lock().unwrap();
        s.services = vec![service("id-a", "a", "/a", 2)];
        s.tasks = vec![
            docker_task("t1", "id-a", "running", "running", "10.0.1.3"),
            docker_task("t2", "id-a", "starting", "running", "10.0.1.4"),
            // History: an old task of the slot, stopped.
            docker_task("t0", "id-a", "shutdown", "shutdown", "10.0.1.2"),
        ];
    }
    let (tx, _rx) = watch::channel(Arc::new(Desired::default()));
    let (tasks_tx, mut tasks_rx) = watch::channel(Arc::new(TaskSnapshot::default()));
    let config = WatchConfig {
        host: DockerHost::Tcp(format!("tcp://{addr}")),
        rules: rules(),
        resync_interval: Duration::from_secs(3600),
        use_events: true,
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(80)).unwrap(),
    };
    let watcher = Watcher::new(
        config,
        Arc::new(Metrics::default()),
        tx,
        Arc::new(ResendRequest::default()),
    )
    .with_tasks(tasks_tx);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watcher.run(shutdown.clone()));

    let first = tokio::time::timeout(Duration::from_secs(5), tasks_rx.wait_for(|t| t.synced))
        .await
        .unwrap()
        .unwrap()
        .clone();
    let set = &first.membership.services["a"];
    let ids: Vec<&str> = set.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["t1", "t2"], "history is left out");
    assert_eq!(set.tasks[0].addresses[0].to_string(), "10.0.1.3/24");
    assert!(
        state.lock().unwrap().task_queries[0]
            .contains("filters=%7B%22service%22%3A%5B%22id%2Da%22%5D%7D"),
        "{:?}",
        state.lock().unwrap().task_queries
    );
    // t2 is starting: the service converges and its tasks are listed every 250 ms.
    poll_until("converging polls", || {
        state.lock().unwrap().task_queries.len() >= 4
    })
    .await;
    assert!(
        !tasks_rx.has_changed().unwrap(),
        "listings that find the same tasks publish nothing new"
    );

    state.lock().unwrap().tasks[1] = docker_task("t2", "id-a", "running", "running", "10.0.1.4");
    let converged = tokio::time::timeout(
        Duration::from_secs(5),
        tasks_rx.wait_for(|t| {
            t.membership.services["a"]
                .tasks
                .iter()
                .all(|t| t.phase() == sluice_core::membership::Phase::Ready)
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert!(converged.membership.services["a"].observed_at_ms >= set.observed_at_ms);
    // Converged: no more polling (an hour-long resync, no events).
    let settled = state.lock().unwrap().task_queries.len();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(state.lock().unwrap().task_queries.len(), settled);

    shutdown.cancel();
    task.await.unwrap();
}
