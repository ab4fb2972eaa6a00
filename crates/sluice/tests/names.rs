//! Upstream names are never looked up on a request's path. A data plane whose resolver takes
//! 1.5 s for every answer serves 50 keep-alive clients: concurrent first requests share one
//! lookup per name, and once the name has resolved, no request waits for a refresh.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use sluice_core::params::{parse_service, ParseContext};
use sluice_core::service::{ConnectionMode, Params};
use sluice_core::settings::{PortSpec, Timeouts};
use sluice_proxy::names::{Lookup, LookupFuture};
use sluice_proxy::{DataPlane, DataPlaneConfig};

use crate::support::Backend;

const ANSWER_DELAY: Duration = Duration::from_millis(1500);
const CLIENTS: usize = 50;

/// A resolver that answers `tasks.slow` with 127.0.0.1 (and `slow` with nothing) after
/// [`ANSWER_DELAY`], recording when each lookup started and when the first one finished.
#[derive(Default)]
struct SlowResolver {
    started: Mutex<Vec<(String, Instant)>>,
    first_answer: Mutex<Option<Instant>>,
}

impl SlowResolver {
    /// Lookups of `name` started before `before`.
    fn started(&self, name: &str, before: Instant) -> usize {
        let started = self.started.lock().unwrap();
        started
            .iter()
            .filter(|(n, at)| n == name && *at < before)
            .count()
    }
}

struct Shared(Arc<SlowResolver>);

impl Lookup for Shared {
    fn lookup(&self, name: &str) -> LookupFuture {
        let resolver = self.0.clone();
        let name = name.to_owned();
        resolver
            .started
            .lock()
            .unwrap()
            .push((name.clone(), Instant::now()));
        Box::pin(async move {
            tokio::time::sleep(ANSWER_DELAY).await;
            resolver
                .first_answer
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
            match name.as_str() {
                "tasks.slow" => Ok(vec!["127.0.0.1".parse().unwrap()]),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "NXDOMAIN",
                )),
            }
        })
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// One keep-alive request; returns how long it took.
async fn get(sender: &mut Sender) -> Duration {
    let started = Instant::now();
    sender.ready().await.unwrap();
    let request = hyper::Request::get("/")
        .header("host", "slow.example")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    started.elapsed()
}

#[test]
fn a_slow_resolver_never_stalls_requests_once_a_name_resolved() {
    let backend = Backend::start("slow");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let snapshot = sluice_proxy::snapshot::new_cell();
    let registry = sluice_api::registry::Registry::new(snapshot.clone(), None);
    let params: Params = [
        ("serviceName", "slow".to_string()),
        ("servicePath", "/".to_string()),
        ("port", backend.port().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let service = parse_service(&params, &ParseContext::default()).unwrap();
    runtime.block_on(registry.apply_all(vec![service]));
    let resolver = Arc::new(SlowResolver::default());
    let dataplane = DataPlane::start_with_lookup(
        DataPlaneConfig {
            ports: vec![PortSpec {
                port: 0,
                ssl: false,
            }],
            tls: None,
            streams: None,
            workers: 2,
            timeouts: Timeouts::default(),
            connection_mode: ConnectionMode::KeepAlive,
            hosts_file: None,
            stats: sluice_proxy::stats_page::StatsConfig::counters_only(registry.stats()),
            compression: None,
            access_log: None,
            max_connections: sluice_core::settings::Settings::default().max_connections,
            membership: sluice_proxy::membership::MembershipCell::new(),
        },
        snapshot,
        Arc::new(Shared(resolver.clone())),
    )
    .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], dataplane.local_addrs()[0].port()));

    let longest = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(connect(addr).await);
        }
        // Every client's first request arrives before the name is known.
        let mut first = Vec::new();
        for mut sender in clients {
            first.push(tokio::spawn(async move {
                get(&mut sender).await;
                sender
            }));
        }
        let mut clients = Vec::new();
        for request in first {
            clients.push(request.await.unwrap());
        }
        // Then every client sends requests back to back for a few refresh rounds.
        let until = Instant::now() + Duration::from_secs(6);
        let mut loops = Vec::new();
        for mut sender in clients {
            loops.push(tokio::spawn(async move {
                let mut longest = Duration::ZERO;
                while Instant::now() < until {
                    longest = longest.max(get(&mut sender).await);
                }
                longest
            }));
        }
        let mut longest = Duration::ZERO;
        for task in loops {
            longest = longest.max(task.await.unwrap());
        }
        longest
    });
    dataplane.shutdown(Duration::ZERO);

    let first_answer = resolver.first_answer.lock().unwrap().unwrap();
    assert_eq!(
        resolver.started("tasks.slow", first_answer),
        1,
        "{CLIENTS} concurrent first requests share one lookup"
    );
    assert_eq!(resolver.started("slow", first_answer), 1);
    let far = Instant::now() + Duration::from_secs(60);
    assert!(
        resolver.started("tasks.slow", far) >= 2,
        "the name was refreshed while requests were served"
    );
    assert!(
        longest < Duration::from_secs(1),
        "a request waited {longest:?} while a refresh was pending"
    );
}
