//! `sluice-demo load http` and `load ws`: the continuous load of the rolling-update scenarios
//! (`scripts/e2e/rolling.sh`).
//!
//! `load http URL` runs `--concurrency` workers, each on its own keep-alive connection, that together send
//! `--rate` GET requests per second (0: each worker sends its next request as soon as the last one ended). Nothing is
//! retried: a request fails when it gets no 2xx answer within `--timeout` (a broken connection is reopened for the
//! next request). It stops after `--seconds` or at SIGTERM/SIGINT, lets the requests in flight end, and prints
//!
//! ```text
//! load: requests=N failures=F p50_ms=… p99_ms=… max_ms=… rate=R concurrency=C
//! failure: at_ms=… latency_ms=… what=status 502      (the first ten)
//! ```
//!
//! `load ws URL` opens one WebSocket, sends a message every `--interval-ms` and waits for its echo, and prints when
//! it opened and when and why it ended (`ws: opened at_ms=…`, `ws: ended at_ms=… open_ms=… echoes=… why=…`, times
//! in Unix milliseconds so a script can set them against its own clock).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::HOST;
use http::HeaderValue;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::endpoint::{BadUrl, Endpoint};
use crate::shutdown::TerminationSignals;
use crate::system::SystemError;

/// How many failures are printed one by one.
const FAILURES_SHOWN: usize = 10;

/// Why a load could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrafficError {
    /// The URL is unusable.
    #[error(transparent)]
    Url(#[from] BadUrl),
    /// `--host` is not a valid header value.
    #[error("invalid --host {0:?}")]
    Host(String),
    /// `--concurrency 0`.
    #[error("--concurrency must be at least 1")]
    Concurrency,
    /// The WebSocket could not be opened.
    #[error("cannot open the WebSocket {url}: {why}")]
    Handshake {
        /// The URL.
        url: String,
        /// The error.
        why: String,
    },
    /// The runtime or the signal handlers of the load client could not be set up.
    #[error(transparent)]
    System(#[from] SystemError),
}

/// What `load http` does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Where the requests go.
    pub(crate) endpoint: Endpoint,
    /// The `Host` header (default: the URL's authority).
    pub(crate) host: Option<String>,
    /// Requests per second in all (0 = as fast as the workers go).
    pub(crate) rate: f64,
    /// Workers, each with one connection.
    pub(crate) concurrency: usize,
    /// How long to send.
    pub(crate) duration: Duration,
    /// How long one request may take.
    pub(crate) timeout: Duration,
}

/// The results of a load: latencies of every request and the failures.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    latencies_ms: Vec<f64>,
    failures: Vec<Failure>,
}

/// One failed request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// When it started, in ms after the load started.
    pub(crate) at_ms: f64,
    /// How long it took.
    pub(crate) latency_ms: f64,
    /// `status N` or the error.
    pub(crate) what: String,
}

impl Tally {
    /// Records one request that started `at` after the load's start and took `latency`: a 2xx status or the failure.
    pub(crate) fn record(&mut self, at: Duration, latency: Duration, result: Result<u16, String>) {
        let latency_ms = latency.as_secs_f64() * 1000.0;
        self.latencies_ms.push(latency_ms);
        let what = match result {
            Ok(status) if (200..300).contains(&status) => return,
            Ok(status) => format!("status {status}"),
            Err(error) => error,
        };
        self.failures.push(Failure {
            at_ms: at.as_secs_f64() * 1000.0,
            latency_ms,
            what,
        });
    }

    /// Adds another worker's results.
    pub(crate) fn merge(&mut self, other: Tally) {
        self.latencies_ms.extend(other.latencies_ms);
        self.failures.extend(other.failures);
    }

    /// The `p`th percentile of the latencies (nearest rank), 0 when there were none.
    pub(crate) fn percentile_ms(&self, p: usize) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// The printed report: the summary line, then the first failures in the order they started.
    pub(crate) fn report(&mut self, plan: &Plan) -> String {
        self.failures.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        let mut out = format!(
            "load: requests={} failures={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} rate={} concurrency={}\n",
            self.latencies_ms.len(),
            self.failures.len(),
            self.percentile_ms(50),
            self.percentile_ms(99),
            self.percentile_ms(100),
            plan.rate,
            plan.concurrency,
        );
        for f in self.failures.iter().take(FAILURES_SHOWN) {
            out.push_str(&format!(
                "failure: at_ms={:.0} latency_ms={:.1} what={}\n",
                f.at_ms, f.latency_ms, f.what
            ));
        }
        out
    }
}

/// Runs `load http`: prints the report, and returns it for tests.
pub(crate) fn http(plan: &Plan) -> Result<String, TrafficError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| SystemError::Runtime {
            role: "the load client",
            source,
        })?;
    let report = runtime.block_on(async {
        let mut signals = TerminationSignals::install()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let load = tokio::spawn(run(plan.clone(), stop_rx));
        tokio::select! {
            _ = signals.recv() => { stop_tx.send_replace(true); }
            () = tokio::time::sleep(plan.duration) => { stop_tx.send_replace(true); }
        }
        let mut tally = load.await.unwrap_or_default();
        Ok::<_, TrafficError>(tally.report(plan))
    })?;
    print!("{report}");
    Ok(report)
}

/// The workers of a load, until `stop` turns true; their merged results.
pub(crate) async fn run(plan: Plan, stop: watch::Receiver<bool>) -> Tally {
    let plan = Arc::new(plan);
    let started = Instant::now();
    let workers: Vec<_> = (0..plan.concurrency)
        .map(|i| tokio::spawn(worker(Arc::clone(&plan), i, started, stop.clone())))
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        if let Ok(t) = w.await {
            tally.merge(t);
        }
    }
    tally
}

/// One worker: paced requests on one keep-alive connection.
async fn worker(
    plan: Arc<Plan>,
    index: usize,
    started: Instant,
    stop: watch::Receiver<bool>,
) -> Tally {
    let interval = if plan.rate > 0.0 {
        Duration::from_secs_f64(plan.concurrency as f64 / plan.rate)
    } else {
        Duration::ZERO
    };
    let spread = u32::try_from(plan.concurrency).unwrap_or(u32::MAX).max(1);
    let mut next =
        tokio::time::Instant::now() + interval * u32::try_from(index).unwrap_or(0) / spread;
    let host = plan
        .host
        .clone()
        .unwrap_or_else(|| plan.endpoint.authority.clone());
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    let mut tally = Tally::default();
    loop {
        tokio::time::sleep_until(next).await;
        if *stop.borrow() {
            return tally;
        }
        next = (next + interval).max(tokio::time::Instant::now());
        let at = started.elapsed();
        let asked = Instant::now();
        let result =
            match tokio::time::timeout(plan.timeout, request(&mut conn, &plan.endpoint, &host))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(format!("timeout after {:?}", plan.timeout)),
            };
        if result.is_err() {
            conn = None;
        }
        tally.record(at, asked.elapsed(), result);
    }
}

/// One GET on the worker's connection (opened first when there is none).
async fn request(
    conn: &mut Option<SendRequest<Empty<Bytes>>>,
    endpoint: &Endpoint,
    host: &str,
) -> Result<u16, String> {
    if conn.as_ref().is_none_or(SendRequest::is_closed) {
        let stream = TcpStream::connect(&endpoint.authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(driver);
        *conn = Some(sender);
    }
    let sender = conn.as_mut().ok_or_else(|| "no connection".to_owned())?;
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let request = hyper::Request::get(endpoint.target.as_str())
        .header(HOST, host)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Runs `load ws`: one WebSocket held open and probed every `interval` until it ends or `duration` passes.
pub(crate) fn ws(
    url: &str,
    host: Option<&str>,
    interval: Duration,
    duration: Duration,
) -> Result<(), TrafficError> {
    let endpoint = Endpoint::parse(url, "ws").map_err(TrafficError::from)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| SystemError::Runtime {
            role: "the WebSocket client",
            source,
        })?;
    runtime.block_on(async {
        let handshake = |why: String| TrafficError::Handshake {
            url: url.to_owned(),
            why,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| handshake(e.to_string()))?;
        if let Some(host) = host {
            let value =
                HeaderValue::from_str(host).map_err(|_| TrafficError::Host(host.to_owned()))?;
            request.headers_mut().insert(HOST, value);
        }
        let stream = TcpStream::connect(&endpoint.authority)
            .await
            .map_err(|e| handshake(e.to_string()))?;
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| handshake(e.to_string()))?;
        let opened = Instant::now();
        println!("ws: opened at_ms={}", unix_ms());
        let (echoes, why) = probe(socket, interval, duration).await;
        println!(
            "ws: ended at_ms={} open_ms={} echoes={echoes} why={why}",
            unix_ms(),
            opened.elapsed().as_millis()
        );
        Ok::<_, TrafficError>(())
    })?;
    Ok(())
}

/// Sends `n` every `interval` and waits for its echo; returns the echoes received and why it stopped (`deadline`,
/// `closed`, or the error).
async fn probe<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    interval: Duration,
    duration: Duration,
) -> (u64, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let end = Instant::now() + duration;
    let mut echoes = 0u64;
    loop {
        if Instant::now() >= end {
            let _ = socket.close(None).await;
            return (echoes, "deadline".into());
        }
        let text = echoes.to_string();
        if let Err(e) = socket.send(Message::text(text.clone())).await {
            return (echoes, format!("send: {e}"));
        }
        let answer =
            tokio::time::timeout(interval.max(Duration::from_secs(2)), socket.next()).await;
        match answer {
            Ok(Some(Ok(Message::Text(got)))) if got.as_str() == text => echoes += 1,
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return (echoes, "closed".into()),
            Ok(Some(Ok(other))) => return (echoes, format!("unexpected message {other:?}")),
            Ok(Some(Err(e))) => return (echoes, format!("error: {e}")),
            Err(_) => return (echoes, "no echo within 2 s".into()),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_service::{serve, App, DRAIN_TIMEOUT};
    use crate::shutdown::ShutdownTrigger;

    fn plan(addr: &str, path: &str) -> Plan {
        Plan {
            endpoint: Endpoint::parse(&format!("http://{addr}{path}"), "http").unwrap(),
            host: Some("app.test".into()),
            rate: 200.0,
            concurrency: 4,
            duration: Duration::from_millis(300),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_tally_counts_non_2xx_and_errors_as_failures() {
        let mut tally = Tally::default();
        let ms = Duration::from_millis;
        tally.record(ms(0), ms(1), Ok(200));
        tally.record(ms(5), ms(3), Ok(204));
        tally.record(ms(9), ms(2), Ok(502));
        let mut other = Tally::default();
        other.record(ms(7), ms(10), Err("connect: refused".into()));
        tally.merge(other);
        assert_eq!(tally.percentile_ms(50), 2.0);
        assert_eq!(tally.percentile_ms(100), 10.0);
        let report = tally.report(&plan("127.0.0.1:1", "/"));
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[0],
            "load: requests=4 failures=2 p50_ms=2.0 p99_ms=10.0 max_ms=10.0 rate=200 concurrency=4"
        );
        // In the order they started.
        assert_eq!(
            lines[1],
            "failure: at_ms=7 latency_ms=10.0 what=connect: refused"
        );
        assert_eq!(lines[2], "failure: at_ms=9 latency_ms=2.0 what=status 502");
        assert_eq!(lines.len(), 3);
        assert_eq!(Tally::default().percentile_ms(99), 0.0);
    }

    #[tokio::test]
    async fn a_load_against_the_demo_app_has_no_failures() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (_trigger, signal) = ShutdownTrigger::new();
        tokio::spawn(serve(
            listener,
            App::new("a".into(), Duration::ZERO),
            signal,
            DRAIN_TIMEOUT,
        ));
        let (stop_tx, stop_rx) = watch::channel(false);
        let load = tokio::spawn(run(plan(&addr, "/demo/slow?ms=1"), stop_rx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send_replace(true);
        let tally = load.await.unwrap();
        assert!(tally.latencies_ms.len() >= 10, "{tally:?}");
        assert!(tally.failures.is_empty(), "{tally:?}");
    }

    #[tokio::test]
    async fn refused_connections_and_errors_are_failures() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let (stop_tx, stop_rx) = watch::channel(false);
        let load = tokio::spawn(run(plan(&addr, "/"), stop_rx));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send_replace(true);
        let tally = load.await.unwrap();
        assert!(!tally.failures.is_empty());
        assert_eq!(tally.failures.len(), tally.latencies_ms.len());
        assert!(tally.failures[0].what.starts_with("connect:"), "{tally:?}");
    }

    #[tokio::test]
    async fn the_websocket_probe_gets_its_echoes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_trigger, signal) = ShutdownTrigger::new();
        tokio::spawn(serve(
            listener,
            App::new("w".into(), Duration::ZERO),
            signal,
            DRAIN_TIMEOUT,
        ));
        let request = format!("ws://{addr}/demo/ws")
            .into_client_request()
            .unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .unwrap();
        let (echoes, why) = probe(
            socket,
            Duration::from_millis(20),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(why, "deadline");
        assert!(echoes >= 3, "{echoes}");
    }
}
