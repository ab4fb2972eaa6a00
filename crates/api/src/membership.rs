//! `/v1/sluice/tasks`: the Swarm task sets the listener pushes, and the propagation metric.
//!
//! `PUT` takes every watched service's task set (JSON, [`sluice_core::membership::Membership`])
//! and replaces what this proxy holds; `GET` shows what it holds. The API is the single writer
//! of the data plane's membership: it compiles each accepted body into a
//! [`TaskMap`](sluice_proxy::membership::TaskMap) and publishes it through the membership's
//! own `ArcSwap` cell ([`MembershipCell`]), apart from the routing snapshot, so that a task
//! change never rebuilds the route table. Writers are serialized by a mutex held only while
//! compiling; requests read the cell without a lock.
//!
//! The membership is not persisted: after a restart the proxy resolves `tasks.<service>`
//! through DNS until the listener's next push (the listener re-sends the full set on every
//! resync). `distribute=true` forwards the body to the other replicas as DFP's endpoints do.
//!
//! Every service whose set changed is timed from when the listener observed it
//! (`observedAtMs`) to when it was published here: the histogram
//! `sluice_propagation_seconds{kind}` ([`Propagation`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;
use sluice_core::membership::{diff, ChangeKind, Membership};
use sluice_proxy::membership::{local_addresses, MembershipCell, TaskMap};

use crate::{is_true, query_params, ApiError, ApiState};

/// The route.
pub const PATH: &str = "/v1/sluice/tasks";

/// The largest body accepted (about 100,000 tasks).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Upper bounds of the propagation histogram, in seconds.
pub const PROPAGATION_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

const KINDS: [ChangeKind; 4] = [
    ChangeKind::Create,
    ChangeKind::Update,
    ChangeKind::Remove,
    ChangeKind::Task,
];

/// The propagation histogram: one series per change kind.
#[derive(Debug, Default)]
pub struct Propagation {
    series: [Series; 4],
}

#[derive(Debug, Default)]
struct Series {
    /// Cumulative counts per bucket, the last one being `+Inf`.
    buckets: [AtomicU64; PROPAGATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// One series as read for the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesReading {
    /// `create`, `update`, `remove` or `task`.
    pub kind: &'static str,
    /// Cumulative counts, one per bucket of [`PROPAGATION_BUCKETS`], then `+Inf`.
    pub cumulative: Vec<u64>,
    /// The sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl Propagation {
    /// Records one change of `kind` that took `took` to arrive.
    pub fn observe(&self, kind: ChangeKind, took: Duration) {
        let series = &self.series[kind_index(kind)];
        let seconds = took.as_secs_f64();
        for (bucket, bound) in series.buckets.iter().zip(
            PROPAGATION_BUCKETS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY)),
        ) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        series.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Every series, in kind order.
    pub fn read(&self) -> Vec<SeriesReading> {
        KINDS
            .iter()
            .map(|kind| {
                let series = &self.series[kind_index(*kind)];
                SeriesReading {
                    kind: kind.as_str(),
                    cumulative: series
                        .buckets
                        .iter()
                        .map(|b| b.load(Ordering::Relaxed))
                        .collect(),
                    sum_seconds: series.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
                }
            })
            .collect()
    }
}

fn kind_index(kind: ChangeKind) -> usize {
    match kind {
        ChangeKind::Create => 0,
        ChangeKind::Update => 1,
        ChangeKind::Remove => 2,
        ChangeKind::Task => 3,
    }
}

/// The membership this proxy holds, its one writer and its metric.
#[derive(Debug)]
pub struct TaskBook {
    cell: Arc<MembershipCell>,
    write: tokio::sync::Mutex<()>,
    propagation: Propagation,
}

impl Default for TaskBook {
    fn default() -> Self {
        TaskBook::new(MembershipCell::new())
    }
}

impl TaskBook {
    /// A book publishing into `cell` (the data plane's).
    pub fn new(cell: Arc<MembershipCell>) -> TaskBook {
        TaskBook {
            cell,
            write: tokio::sync::Mutex::new(()),
            propagation: Propagation::default(),
        }
    }

    /// The cell the data plane reads.
    pub fn cell(&self) -> Arc<MembershipCell> {
        Arc::clone(&self.cell)
    }

    /// The propagation histogram.
    pub fn propagation(&self) -> &Propagation {
        &self.propagation
    }

    /// Replaces the membership with `received`, records the propagation of what changed and
    /// returns how many services changed.
    pub async fn replace(&self, received: Membership) -> usize {
        let _writer = self.write.lock().await;
        let previous = self.cell.load_full();
        let changes = diff(&previous.received, &received);
        let local = local_addresses();
        let map = TaskMap::compile(&previous, received, &local, tokio::time::Instant::now());
        self.cell.publish(map);
        let now_ms = unix_ms(SystemTime::now());
        for change in &changes {
            if change.observed_at_ms == 0 {
                continue;
            }
            let took = Duration::from_millis(now_ms.saturating_sub(change.observed_at_ms));
            self.propagation.observe(change.kind, took);
            tracing::info!(
                service = %change.service,
                kind = change.kind.as_str(),
                joined = ?change.joined,
                draining = ?change.draining,
                left = ?change.left,
                propagation_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                "task membership changed"
            );
        }
        changes.len()
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses a body; the error names the field (`services.web.tasks[0].addresses[1]`).
pub fn parse(body: &[u8]) -> Result<Membership, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::Tasks {
            field: "body".into(),
            reason: format!("larger than {MAX_BODY} bytes"),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Membership =
        serde_path_to_error::deserialize(&mut de).map_err(|error| ApiError::Tasks {
            field: match error.path().to_string() {
                path if path == "." => "body".to_owned(),
                path => path,
            },
            reason: error.inner().to_string(),
        })?;
    de.end().map_err(|error| ApiError::Tasks {
        field: "body".into(),
        reason: error.to_string(),
    })?;
    Ok(parsed)
}

/// `PUT` (replace) or `GET` (show) the task sets.
pub async fn tasks(
    State(state): State<Arc<ApiState>>,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    if method == Method::GET {
        let map = state.tasks.cell.load_full();
        let shown = serde_json::to_value(&map.received).unwrap_or_default();
        return Ok(crate::view::json_response(
            StatusCode::OK,
            json!({"generation": map.generation, "membership": shown}),
        ));
    }
    if method != Method::PUT {
        return Err(ApiError::Tasks {
            field: "method".into(),
            reason: format!("{method} is not allowed; use PUT to replace or GET to show"),
        });
    }
    // One byte over the limit is enough to refuse.
    let bytes = axum::body::to_bytes(body, MAX_BODY + 1)
        .await
        .map_err(|error| ApiError::Tasks {
            field: "body".into(),
            reason: match error.to_string() {
                text if text.contains("length limit") => format!("larger than {MAX_BODY} bytes"),
                text => text,
            },
        })?;
    let received = parse(&bytes)?;
    let services = received.services.len();
    let changed = state.tasks.replace(received).await;
    let params = query_params(raw);
    let mut message = format!("{services} services, {changed} changed");
    if is_true(&params, "distribute") {
        message.push_str("; ");
        message.push_str(&distribute(&state, bytes).await?);
    }
    Ok(crate::view::json_response(
        StatusCode::OK,
        json!({"Status": "OK", "Message": message}),
    ))
}

/// Sends the body to the other replicas with `distribute=false`.
async fn distribute(state: &ApiState, body: Bytes) -> Result<String, ApiError> {
    let peers = match state.distributor.peers().await {
        Ok(peers) if peers.is_empty() => return Ok("no other replica found".into()),
        Ok(peers) => peers,
        Err(note) => return Ok(format!("{note}; applied on this replica only")),
    };
    let mut calls = tokio::task::JoinSet::new();
    for ip in peers {
        let url = format!(
            "http://{}{PATH}?distribute=false",
            std::net::SocketAddr::new(ip, state.settings.port)
        );
        let client = state.peer_client.clone();
        let body = body.clone();
        calls.spawn(async move { (ip, client.send(Method::PUT, &url, body).await) });
    }
    let (mut delivered, mut failed) = (0usize, Vec::new());
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((_, Ok(_))) => delivered += 1,
            Ok((ip, Err(error))) => failed.push(format!("{ip} ({error})")),
            Err(error) => failed.push(error.to_string()),
        }
    }
    if failed.is_empty() {
        Ok(format!("Distributed to all instances ({delivered} peers)"))
    } else {
        failed.sort();
        Err(ApiError::Distribution {
            service_name: String::new(),
            service: None,
            message: format!(
                "Could not send distribute request to the following addresses: {}",
                failed.join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let body = br#"{"services":{"web":{"observedAtMs":1,"tasks":[{"id":"a","addresses":["10.0.0.1/24","x"],"state":"running","desiredState":"running"}]}}}"#;
        match parse(body) {
            Err(ApiError::Tasks { field, .. }) => {
                assert_eq!(field, "services.web.tasks[0].addresses[1]")
            }
            other => panic!("{other:?}"),
        }
        match parse(br#"{"services":{"web":{"tasks":[]}}}"#) {
            Err(ApiError::Tasks { field, reason }) => {
                assert_eq!(field, "services.web");
                assert!(reason.contains("observedAtMs"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match parse(b"{} trailing") {
            Err(ApiError::Tasks { field, .. }) => assert_eq!(field, "body"),
            other => panic!("{other:?}"),
        }
        assert!(parse(br#"{"services":{}}"#).is_ok());
    }

    #[test]
    fn the_histogram_is_cumulative_per_kind() {
        let p = Propagation::default();
        p.observe(ChangeKind::Task, Duration::from_millis(80));
        p.observe(ChangeKind::Task, Duration::from_secs(60));
        p.observe(ChangeKind::Create, Duration::from_millis(10));
        let read = p.read();
        let task = read.iter().find(|s| s.kind == "task").unwrap();
        assert_eq!(task.cumulative[0], 0, "80 ms is over 50 ms");
        assert_eq!(task.cumulative[1], 1, "80 ms is within 100 ms");
        assert_eq!(*task.cumulative.last().unwrap(), 2);
        assert!((task.sum_seconds - 60.08).abs() < 1e-6);
        let create = read.iter().find(|s| s.kind == "create").unwrap();
        assert_eq!(create.cumulative[0], 1);
        let update = read.iter().find(|s| s.kind == "update").unwrap();
        assert_eq!(*update.cumulative.last().unwrap(), 0);
    }
}
