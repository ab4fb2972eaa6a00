//! Traffic statistics kept by the data plane: counters per service destination and per
//! upstream address, and the [`Report`] that the statistics page, the CSV and the Prometheus
//! exposition are rendered from.
//!
//! The request path never takes a lock here: every figure is an atomic, each request reaches
//! its destination's counters through the published snapshot ([`RouteStats`], indexed by the
//! route's position), and the per-address table is read through an [`ArcSwap`] (a lock is
//! taken only the first time an address is seen). The [`StatsHub`] owns the counters by
//! service name and destination index, so reconfiguring one service keeps every other
//! service's figures (and its own, as long as the destination still exists).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::Response;
use serde::Serialize;
use sluice_core::route::{Route, RouteTable};

pub(crate) use crate::body::RequestBody;
use crate::body::{Meter, MeteredBody, ProxyBody};
use crate::upstream::SendError;

/// Upper bounds (seconds) of the latency histogram's buckets; a last `+Inf` bucket follows.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upstream addresses remembered per destination; the least recently used one goes first.
const MAX_ADDRESSES: usize = 256;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The response class of a status: 0 for 1xx … 4 for 5xx, 5 for anything else.
fn class(status: u16) -> usize {
    match status / 100 {
        c @ 1..=5 => usize::from(c - 1),
        _ => 5,
    }
}

/// Responses by class.
#[derive(Default)]
struct Classes([AtomicU64; 6]);

impl Classes {
    fn record(&self, status: u16) {
        add(&self.0[class(status)], 1);
    }

    fn report(&self) -> ClassReport {
        ClassReport {
            xx1: get(&self.0[0]),
            xx2: get(&self.0[1]),
            xx3: get(&self.0[2]),
            xx4: get(&self.0[3]),
            xx5: get(&self.0[4]),
            other: get(&self.0[5]),
        }
    }
}

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS`]).
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let at = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        add(&self.buckets[at], 1);
        add(
            &self.sum_micros,
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        );
    }

    fn report(&self) -> LatencyReport {
        let counts: Vec<u64> = self.buckets.iter().map(get).collect();
        LatencyReport::from_counts(&counts, get(&self.sum_micros))
    }
}

/// Health of an upstream address as last observed.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Counters of one upstream address of one destination.
pub(crate) struct AddrStats {
    requests: AtomicU64,
    failures: AtomicU64,
    health: AtomicU8,
    changed_ms: AtomicU64,
    last_used_ms: AtomicU64,
}

impl AddrStats {
    fn new() -> AddrStats {
        AddrStats {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            health: AtomicU8::new(UNKNOWN),
            changed_ms: AtomicU64::new(now_ms()),
            last_used_ms: AtomicU64::new(now_ms()),
        }
    }

    fn set_health(&self, health: u8) {
        if self.health.swap(health, Ordering::Relaxed) != health {
            self.changed_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    fn attempt(&self, ok: bool, connected: bool) {
        add(&self.requests, 1);
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
        if !ok {
            add(&self.failures, 1);
        }
        self.set_health(if connected { UP } else { DOWN });
    }
}

/// The addresses a destination has sent requests to.
#[derive(Default)]
struct AddrTable {
    list: ArcSwap<Vec<(SocketAddr, Arc<AddrStats>)>>,
    write: Mutex<()>,
}

impl AddrTable {
    fn get(&self, addr: SocketAddr) -> Arc<AddrStats> {
        if let Some((_, stats)) = self.list.load().iter().find(|(a, _)| *a == addr) {
            return stats.clone();
        }
        let _write = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.list.load_full();
        if let Some((_, stats)) = current.iter().find(|(a, _)| *a == addr) {
            return stats.clone();
        }
        let mut next: Vec<(SocketAddr, Arc<AddrStats>)> = current.as_ref().clone();
        if next.len() >= MAX_ADDRESSES {
            if let Some(oldest) = next
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, s))| get(&s.last_used_ms))
                .map(|(i, _)| i)
            {
                next.remove(oldest);
            }
        }
        let stats = Arc::new(AddrStats::new());
        next.push((addr, stats.clone()));
        next.sort_by_key(|(a, _)| *a);
        self.list.store(Arc::new(next));
        stats
    }
}

/// Counters of one service destination.
#[derive(Default)]
pub struct DestStats {
    requests: AtomicU64,
    responses: Classes,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    current: AtomicI64,
    peak: AtomicI64,
    connect_errors: AtomicU64,
    timeouts: AtomicU64,
    bad_gateway: AtomicU64,
    unavailable: AtomicU64,
    denied: AtomicU64,
    unauthorized: AtomicU64,
    latency: Histogram,
    upstreams: AddrTable,
}

impl DestStats {
    /// Counts a request that starts now; the returned guard counts it finished when dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        add(&self.requests, 1);
        let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// A deny rule answered 403.
    pub(crate) fn denied(&self) {
        add(&self.denied, 1);
    }

    /// Authentication answered 401.
    pub(crate) fn unauthorized(&self) {
        add(&self.unauthorized, 1);
    }

    /// An upstream answered; `failed` are addresses whose connect failed before it.
    pub(crate) fn upstream_answered(&self, addr: SocketAddr, failed: &[SocketAddr]) {
        self.connect_failed(failed);
        self.upstreams.get(addr).attempt(true, true);
    }

    fn connect_failed(&self, failed: &[SocketAddr]) {
        for addr in failed {
            add(&self.connect_errors, 1);
            self.upstreams.get(*addr).attempt(false, false);
        }
    }

    /// The upstream phase failed with `error`.
    pub(crate) fn upstream_failed(&self, error: &SendError) {
        match error {
            SendError::Resolve { .. } | SendError::Queue { .. } => add(&self.unavailable, 1),
            SendError::Unreachable { failed, .. } => {
                add(&self.unavailable, 1);
                self.connect_failed(failed);
            }
            SendError::Timeout { addr } => {
                add(&self.timeouts, 1);
                self.upstreams.get(*addr).attempt(false, true);
            }
            SendError::Broken { addr, .. } | SendError::BrokenDirect { addr, .. } => {
                add(&self.bad_gateway, 1);
                self.upstreams.get(*addr).attempt(false, true);
            }
        }
    }

    fn finish(&self, status: u16, elapsed: Duration) {
        self.responses.record(status);
        self.latency.observe(elapsed);
    }
}

/// A request counted as in progress until this is dropped.
pub(crate) struct InFlight(Arc<DestStats>);

impl InFlight {
    /// The response head is ready: its status and the time since the request arrived.
    pub(crate) fn answered(&self, status: u16, elapsed: Duration) {
        self.0.finish(status, elapsed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests that reached no destination.
#[derive(Default)]
struct FrontendStats {
    requests: AtomicU64,
    responses: Classes,
    unrouted: AtomicU64,
}

/// The destinations' counters by service name, published with each routing snapshot. A
/// persistent map: the writer updates one service in O(log n) and unchanged services share
/// structure with the previous snapshot.
#[derive(Default, Clone)]
pub struct RouteStats(imbl::HashMap<String, Arc<Vec<Arc<DestStats>>>>);

impl RouteStats {
    /// The counters of `route`'s destination.
    pub(crate) fn of(&self, route: &Route) -> Option<&Arc<DestStats>> {
        self.0.get(route.service.name.as_str())?.get(route.dest)
    }
}

/// Removes `service`'s counters of destinations `from` and up.
fn drop_range(dests: &mut BTreeMap<(String, usize), Arc<DestStats>>, service: &str, from: usize) {
    let gone: Vec<(String, usize)> = dests
        .range((service.to_string(), from)..=(service.to_string(), usize::MAX))
        .map(|(k, _)| k.clone())
        .collect();
    for key in gone {
        dests.remove(&key);
    }
}

/// Owner of every counter; one per process.
pub struct StatsHub {
    started: Instant,
    frontend: FrontendStats,
    dests: Mutex<BTreeMap<(String, usize), Arc<DestStats>>>,
    /// Passive health of upstream addresses (shown as `ejected` in the report).
    health: Arc<crate::health::Health>,
}

impl std::fmt::Debug for StatsHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsHub").finish_non_exhaustive()
    }
}

impl StatsHub {
    /// Empty counters.
    pub fn new() -> Arc<StatsHub> {
        Arc::new(StatsHub {
            started: Instant::now(),
            frontend: FrontendStats::default(),
            dests: Mutex::new(BTreeMap::new()),
            health: Arc::default(),
        })
    }

    /// Passive health of upstream addresses, shared by every worker.
    pub fn health(&self) -> &Arc<crate::health::Health> {
        &self.health
    }

    /// The counters for every service of `table`, reusing those of destinations that already
    /// existed and dropping those of services that are gone (a full rebind).
    pub fn bind(&self, table: &RouteTable) -> RouteStats {
        let mut services: Vec<&Arc<sluice_core::service::Service>> = Vec::new();
        for route in table.routes() {
            if services.last().is_none_or(|s| s.name != route.service.name) {
                services.push(&route.service);
            }
        }
        let live: std::collections::HashSet<&str> =
            services.iter().map(|s| s.name.as_str()).collect();
        self.dests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(name, _), _| live.contains(name.as_str()));
        services
            .into_iter()
            .fold(RouteStats::default(), |stats, service| {
                self.bind_service(&stats, service)
            })
    }

    /// `stats` with `service`'s counters added or updated: destinations that existed keep
    /// their counters, destinations the service no longer has are dropped. O(log n).
    pub fn bind_service(
        &self,
        stats: &RouteStats,
        service: &sluice_core::service::Service,
    ) -> RouteStats {
        let mut dests = self.dests.lock().unwrap_or_else(PoisonError::into_inner);
        let count = service.destinations.len();
        let list: Vec<Arc<DestStats>> = (0..count)
            .map(|dest| {
                dests
                    .entry((service.name.clone(), dest))
                    .or_default()
                    .clone()
            })
            .collect();
        drop_range(&mut dests, &service.name, count);
        RouteStats(stats.0.update(service.name.clone(), Arc::new(list)))
    }

    /// `stats` without `name`'s counters. O(log n).
    pub fn unbind_service(&self, stats: &RouteStats, name: &str) -> RouteStats {
        let mut dests = self.dests.lock().unwrap_or_else(PoisonError::into_inner);
        drop_range(&mut dests, name, 0);
        RouteStats(stats.0.without(name))
    }

    pub(crate) fn request_arrived(&self) {
        add(&self.frontend.requests, 1);
    }

    pub(crate) fn unrouted(&self) {
        add(&self.frontend.unrouted, 1);
    }

    pub(crate) fn responded(&self, status: u16) {
        self.frontend.responses.record(status);
    }

    /// A consistent-enough reading of every counter, labelled from the routes of `table`
    /// (published as `generation`, with `digest`). See also `StatsHub::report`.
    pub fn report_for(&self, table: &RouteTable, generation: u64, digest: &str) -> Report {
        let dests: Vec<((String, usize), Arc<DestStats>)> = self
            .dests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut routes: HashMap<(&str, usize), &Route> = HashMap::new();
        for route in table.routes() {
            let key = (route.service.name.as_str(), route.dest);
            if !route.https || !routes.contains_key(&key) {
                routes.entry(key).or_insert(route);
            }
        }
        let destinations: Vec<DestReport> = dests
            .iter()
            .map(|((service, dest), stats)| {
                dest_report(
                    &self.health,
                    service,
                    *dest,
                    stats,
                    routes.get(&(service.as_str(), *dest)),
                )
            })
            .collect();
        let mut totals = Totals {
            requests: get(&self.frontend.requests),
            responses: self.frontend.responses.report(),
            unrouted: get(&self.frontend.unrouted),
            ..Totals::default()
        };
        for d in &destinations {
            totals.bytes_in += d.bytes_in;
            totals.bytes_out += d.bytes_out;
            totals.current += d.current;
            totals.upstream_errors += d.errors.total();
            totals.denied += d.denied;
            totals.unauthorized += d.unauthorized;
        }
        Report {
            generation,
            digest: digest.to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
            now_ms: now_ms(),
            totals,
            destinations,
        }
    }
}

fn dest_report(
    health: &crate::health::Health,
    service: &str,
    dest: usize,
    s: &DestStats,
    route: Option<&&Route>,
) -> DestReport {
    let (backend, index, port, paths, domains) = match route {
        Some(route) => {
            let d = route.destination();
            (
                route.backend_name(),
                d.index,
                route.upstream_port,
                d.paths.iter().map(|p| p.text().to_string()).collect(),
                d.domains.iter().map(|p| p.text()).collect(),
            )
        }
        None => (format!("{service}-{dest}"), 0, 0, Vec::new(), Vec::new()),
    };
    let upstreams = s
        .upstreams
        .list
        .load()
        .iter()
        .map(|(addr, a)| {
            let passive = health.report(*addr);
            UpstreamReport {
                address: addr.to_string(),
                requests: get(&a.requests),
                failures: get(&a.failures),
                health: match a.health.load(Ordering::Relaxed) {
                    _ if passive.ejected => "ejected",
                    UP => "up",
                    DOWN => "down",
                    _ => "unknown",
                },
                changed_ms: get(&a.changed_ms),
                ejections: passive.ejections,
            }
        })
        .collect();
    DestReport {
        service: service.to_string(),
        destination: dest,
        index,
        backend,
        port,
        paths,
        domains,
        requests: get(&s.requests),
        responses: s.responses.report(),
        bytes_in: get(&s.bytes_in),
        bytes_out: get(&s.bytes_out),
        current: u64::try_from(s.current.load(Ordering::Relaxed)).unwrap_or(0),
        peak: u64::try_from(s.peak.load(Ordering::Relaxed)).unwrap_or(0),
        errors: ErrorReport {
            connect: get(&s.connect_errors),
            timeout: get(&s.timeouts),
            bad_gateway: get(&s.bad_gateway),
            unavailable: get(&s.unavailable),
        },
        denied: get(&s.denied),
        unauthorized: get(&s.unauthorized),
        latency: s.latency.report(),
        upstreams,
    }
}

/// Finishes a forwarded request's accounting once its response head is known: the response
/// class and latency are recorded now, the body bytes as they are sent, and the request stays
/// counted as in progress until the body is done.
pub(crate) fn finish(
    resp: Response<ProxyBody>,
    in_flight: InFlight,
    started: Instant,
) -> Response<ProxyBody> {
    in_flight.answered(resp.status().as_u16(), started.elapsed());
    resp.map(|body| ProxyBody::Metered(MeteredBody::new(body, in_flight)))
}

/// As a request body's meter, a destination counts bytes in.
impl Meter for DestStats {
    fn count(&self, bytes: u64) {
        add(&self.bytes_in, bytes);
    }
}

/// As a response body's meter, a request in progress counts bytes out (and stops being in
/// progress when the body is dropped).
impl Meter for InFlight {
    fn count(&self, bytes: u64) {
        add(&self.0.bytes_out, bytes);
    }
}

/// Responses by class in a report.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ClassReport {
    /// 1xx.
    #[serde(rename = "1xx")]
    pub xx1: u64,
    /// 2xx.
    #[serde(rename = "2xx")]
    pub xx2: u64,
    /// 3xx.
    #[serde(rename = "3xx")]
    pub xx3: u64,
    /// 4xx.
    #[serde(rename = "4xx")]
    pub xx4: u64,
    /// 5xx.
    #[serde(rename = "5xx")]
    pub xx5: u64,
    /// Any other status.
    pub other: u64,
}

impl ClassReport {
    /// `(label, count)` pairs in class order (`1xx` … `5xx`, `other`).
    pub fn pairs(&self) -> [(&'static str, u64); 6] {
        [
            ("1xx", self.xx1),
            ("2xx", self.xx2),
            ("3xx", self.xx3),
            ("4xx", self.xx4),
            ("5xx", self.xx5),
            ("other", self.other),
        ]
    }
}

/// Upstream failures of a destination.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ErrorReport {
    /// Connections that could not be established (each address tried counts).
    pub connect: u64,
    /// Upstreams that did not answer within the server timeout (504).
    pub timeout: u64,
    /// Invalid or truncated upstream responses (502).
    pub bad_gateway: u64,
    /// Requests with no reachable or resolvable upstream (503).
    pub unavailable: u64,
}

impl ErrorReport {
    /// Requests that failed upstream (connect failures that were retried successfully are
    /// not counted twice: they are in `connect` only).
    pub fn total(&self) -> u64 {
        self.timeout + self.bad_gateway + self.unavailable
    }
}

/// The latency histogram of a destination.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyReport {
    /// Responses measured.
    pub count: u64,
    /// Their summed latency, seconds.
    pub sum_seconds: f64,
    /// Cumulative counts per [`LATENCY_BUCKETS`] bound, then `+Inf` (equal to `count`).
    pub cumulative: Vec<u64>,
    /// Estimated median, milliseconds (`None` without data).
    pub p50_ms: Option<f64>,
    /// Estimated 90th percentile, milliseconds.
    pub p90_ms: Option<f64>,
    /// Estimated 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
}

impl LatencyReport {
    fn from_counts(counts: &[u64], sum_micros: u64) -> LatencyReport {
        let mut cumulative = Vec::with_capacity(counts.len());
        let mut running = 0u64;
        for c in counts {
            running += c;
            cumulative.push(running);
        }
        let count = running;
        LatencyReport {
            count,
            sum_seconds: sum_micros as f64 / 1e6,
            p50_ms: quantile(&cumulative, 0.50),
            p90_ms: quantile(&cumulative, 0.90),
            p99_ms: quantile(&cumulative, 0.99),
            cumulative,
        }
    }
}

/// Estimates a quantile from cumulative bucket counts by linear interpolation inside the
/// bucket that holds it (the open `+Inf` bucket reports its lower bound).
fn quantile(cumulative: &[u64], q: f64) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &upto) in cumulative.iter().enumerate() {
        if upto as f64 >= rank && upto > below {
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                return Some(lower * 1000.0);
            };
            let inside = (rank - below as f64) / (upto - below) as f64;
            return Some((lower + (upper - lower) * inside.clamp(0.0, 1.0)) * 1000.0);
        }
        below = upto;
    }
    None
}

/// One upstream address of a destination.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UpstreamReport {
    /// `ip:port`.
    pub address: String,
    /// Attempts sent to it (connects and exchanges).
    pub requests: u64,
    /// Attempts that failed (connect, timeout, broken response).
    pub failures: u64,
    /// `up` (last connect worked), `down` (last connect failed), `ejected` (skipped by
    /// passive health, see [`crate::health`]) or `unknown`.
    pub health: &'static str,
    /// When the health last changed (or the address was first seen), Unix milliseconds.
    pub changed_ms: u64,
    /// How many times passive health ejected the address.
    pub ejections: u64,
}

/// One service destination.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DestReport {
    /// The service name.
    pub service: String,
    /// Position in the service's destinations.
    pub destination: usize,
    /// The index suffix it was given with (`0` = un-indexed).
    pub index: u8,
    /// DFP's backend name (`<acl>-be<port>_<index>`).
    pub backend: String,
    /// The upstream port.
    pub port: u16,
    /// `servicePath` patterns.
    pub paths: Vec<String>,
    /// `serviceDomain` patterns.
    pub domains: Vec<String>,
    /// Requests routed here.
    pub requests: u64,
    /// Responses by class (including the proxy's own 401/403/5xx answers).
    pub responses: ClassReport,
    /// Request body bytes received from clients.
    pub bytes_in: u64,
    /// Response body bytes sent to clients.
    pub bytes_out: u64,
    /// Requests in progress.
    pub current: u64,
    /// Most requests in progress at once.
    pub peak: u64,
    /// Upstream failures.
    pub errors: ErrorReport,
    /// 403 answers of deny rules.
    pub denied: u64,
    /// 401 answers of authentication.
    pub unauthorized: u64,
    /// Latency to the response head.
    pub latency: LatencyReport,
    /// Upstream addresses, sorted.
    pub upstreams: Vec<UpstreamReport>,
}

/// Figures over everything.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Every request on the HTTP ports (statistics page requests excluded).
    pub requests: u64,
    /// Every response by class.
    pub responses: ClassReport,
    /// Requests no route matched (503).
    pub unrouted: u64,
    /// Request body bytes to destinations.
    pub bytes_in: u64,
    /// Response body bytes from destinations.
    pub bytes_out: u64,
    /// Requests in progress.
    pub current: u64,
    /// Requests that failed upstream.
    pub upstream_errors: u64,
    /// 403 answers.
    pub denied: u64,
    /// 401 answers.
    pub unauthorized: u64,
}

/// A reading of all statistics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The routing generation the labels come from.
    pub generation: u64,
    /// The routing digest.
    pub digest: String,
    /// Seconds since the process started counting.
    pub uptime_seconds: u64,
    /// When the reading was taken, Unix milliseconds.
    pub now_ms: u64,
    /// Figures over everything.
    pub totals: Totals,
    /// Per destination, sorted by service name and destination.
    pub destinations: Vec<DestReport>,
}

#[cfg(test)]
mod tests;
