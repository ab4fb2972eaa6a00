//! Metrics on the control API port: `/metrics` (Prometheus text exposition of Sluice's own
//! counters) and `/v1/docker-flow-proxy/metrics` (DFP's HAProxy-style CSV, optionally
//! gathered from every replica with `distribute=true`).
//!
//! Metric names are Sluice's (`sluice_*`), not haproxy_exporter's: the figures differ in
//! meaning (Sluice has no queues, sessions or server weights), so reusing the old names would
//! mislead dashboards rather than keep them working. `haproxy_up` is kept (always 1) for
//! alerts that only watch it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_core::prometheus::TextWriter;
use sluice_proxy::stats::{Report, LATENCY_BUCKETS};
use sluice_proxy::stats_page::csv;

use crate::ApiState;

/// The control API's own counters.
#[derive(Debug, Default)]
pub struct Counters {
    reconfigurations: AtomicU64,
    rejected: AtomicU64,
    removals: AtomicU64,
    dropped_entries: AtomicU64,
    damaged_files: AtomicU64,
    resync_changes: AtomicU64,
}

impl Counters {
    /// Accepted `/reconfigure` requests.
    pub fn reconfigurations(&self) -> u64 {
        self.reconfigurations.load(Ordering::Relaxed)
    }

    /// `/reconfigure` requests answered with an error status.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Accepted `/remove` requests.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Relaxed)
    }

    /// Saved services dropped at startup because they no longer validate.
    pub fn dropped_entries(&self) -> u64 {
        self.dropped_entries.load(Ordering::Relaxed)
    }

    /// State files moved aside at startup because they could not be parsed.
    pub fn damaged_files(&self) -> u64 {
        self.damaged_files.load(Ordering::Relaxed)
    }

    /// Services the listener's resync added, updated or removed.
    pub fn resync_changes(&self) -> u64 {
        self.resync_changes.load(Ordering::Relaxed)
    }

    /// Counts one change made by the listener's resync.
    pub fn resync_change(&self) {
        self.resync_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one saved service dropped at startup.
    pub fn dropped_entry(&self) {
        self.dropped_entries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one state file moved aside at startup.
    pub fn damaged_file(&self) {
        self.damaged_files.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answered control request by path and status.
    pub fn observe(&self, path: &str, status: StatusCode) {
        let counter = if path.ends_with("/reconfigure") {
            if status.is_success() {
                &self.reconfigurations
            } else {
                &self.rejected
            }
        } else if path.ends_with("/remove") && status.is_success() {
            &self.removals
        } else {
            return;
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Middleware counting reconfigure/remove outcomes.
pub async fn count(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let dry_run = req.uri().query().is_some_and(|q| {
        sluice_core::params::params_from_query(q)
            .get(crate::dry_run::PARAM)
            .is_some_and(|v| sluice_core::params::parse_go_bool(v) == Some(true))
    });
    let resp = next.run(req).await;
    if dry_run {
        // A dry run changed nothing: not a reconfiguration or removal.
        return resp;
    }
    state.registry.counters().observe(&path, resp.status());
    resp
}

/// `/metrics`: Prometheus text format 0.0.4.
pub async fn prometheus(State(state): State<Arc<ApiState>>) -> Response {
    let snapshot = state.registry.snapshot();
    let report = state.registry.stats().report(&snapshot);
    let mut text = exposition(&report, state.registry.counters());
    propagation(&mut text, &state.tasks.propagation().read());
    if let Some(acme) = state.acme.get() {
        acme.write_metrics(&mut TextWriter::new(&mut text));
    }
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Appends `sluice_propagation_seconds`: from the listener observing a change to this proxy
/// applying it, per kind of change ([`crate::membership::Propagation`]).
pub fn propagation(out: &mut String, series: &[crate::membership::SeriesReading]) {
    const NAME: &str = "sluice_propagation_seconds";
    let mut f = TextWriter::new(out);
    f.head(
        NAME,
        "histogram",
        "Seconds from the listener observing a Swarm change (Docker event or listing) to this proxy applying it, by kind (create, update, remove, task).",
    );
    let bucket = format!("{NAME}_bucket");
    for s in series {
        let bounds = crate::membership::PROPAGATION_BUCKETS
            .iter()
            .map(ToString::to_string)
            .chain(std::iter::once("+Inf".to_owned()));
        for (le, count) in bounds.zip(&s.cumulative) {
            f.sample(&bucket, &[("kind", s.kind), ("le", &le)], count);
        }
        f.sample(&format!("{NAME}_sum"), &[("kind", s.kind)], s.sum_seconds);
        let count = s.cumulative.last().copied().unwrap_or(0);
        f.sample(&format!("{NAME}_count"), &[("kind", s.kind)], count);
    }
}

/// Renders the exposition text.
pub fn exposition(report: &Report, counters: &Counters) -> String {
    let mut out = String::new();
    let mut f = TextWriter::new(&mut out);
    f.head("sluice_up", "gauge", "1 while the proxy serves.");
    f.sample("sluice_up", &[], 1);
    f.head("haproxy_up", "gauge", "Kept for DFP-era alerts: always 1.");
    f.sample("haproxy_up", &[], 1);
    f.head(
        "sluice_build_info",
        "gauge",
        "The running version (value is always 1).",
    );
    f.sample(
        "sluice_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    f.head(
        "sluice_config_generation",
        "gauge",
        "Generation of the published routing state.",
    );
    f.sample("sluice_config_generation", &[], report.generation);
    f.head(
        "sluice_config_info",
        "gauge",
        "The routing state's digest as a label (equal on replicas with the same routes).",
    );
    f.sample(
        "sluice_config_info",
        &[
            ("digest", &report.digest),
            ("generation", &report.generation.to_string()),
        ],
        1,
    );
    f.head(
        "sluice_reconfigurations_total",
        "counter",
        "Accepted reconfigure requests.",
    );
    f.sample(
        "sluice_reconfigurations_total",
        &[],
        counters.reconfigurations(),
    );
    f.head(
        "sluice_reconfigurations_rejected_total",
        "counter",
        "Reconfigure requests answered with an error.",
    );
    f.sample(
        "sluice_reconfigurations_rejected_total",
        &[],
        counters.rejected(),
    );
    f.head(
        "sluice_removals_total",
        "counter",
        "Accepted remove requests.",
    );
    f.sample("sluice_removals_total", &[], counters.removals());
    f.head(
        "sluice_state_dropped_entries_total",
        "counter",
        "Saved services dropped at startup because they no longer validate.",
    );
    f.sample(
        "sluice_state_dropped_entries_total",
        &[],
        counters.dropped_entries(),
    );
    f.head(
        "sluice_listener_resync_changes_total",
        "counter",
        "Services the listener's periodic resync added, updated or removed.",
    );
    f.sample(
        "sluice_listener_resync_changes_total",
        &[],
        counters.resync_changes(),
    );
    f.head(
        "sluice_state_damaged_files_total",
        "counter",
        "State files moved aside at startup because they could not be parsed.",
    );
    f.sample(
        "sluice_state_damaged_files_total",
        &[],
        counters.damaged_files(),
    );
    f.head(
        "sluice_uptime_seconds",
        "gauge",
        "Seconds since the statistics started.",
    );
    f.sample("sluice_uptime_seconds", &[], report.uptime_seconds);
    f.head(
        "sluice_frontend_requests_total",
        "counter",
        "Requests on the HTTP ports (statistics page excluded).",
    );
    f.sample(
        "sluice_frontend_requests_total",
        &[],
        report.totals.requests,
    );
    f.head(
        "sluice_frontend_responses_total",
        "counter",
        "Responses on the HTTP ports by status class.",
    );
    for (code, n) in report.totals.responses.pairs() {
        f.sample("sluice_frontend_responses_total", &[("code", code)], n);
    }
    f.head(
        "sluice_unrouted_requests_total",
        "counter",
        "Requests no route matched (answered 503).",
    );
    f.sample(
        "sluice_unrouted_requests_total",
        &[],
        report.totals.unrouted,
    );

    per_destination(&mut f, report);
    out
}

fn per_destination(f: &mut TextWriter<'_>, report: &Report) {
    let ids: Vec<(String, String, String)> = report
        .destinations
        .iter()
        .map(|d| {
            (
                d.service.clone(),
                d.destination.to_string(),
                d.backend.clone(),
            )
        })
        .collect();
    let base = |i: usize| -> [(&str, &str); 3] {
        [
            ("service", ids[i].0.as_str()),
            ("destination", ids[i].1.as_str()),
            ("backend", ids[i].2.as_str()),
        ]
    };

    f.head(
        "sluice_http_requests_total",
        "counter",
        "Responses per service destination by status class.",
    );
    for (i, d) in report.destinations.iter().enumerate() {
        for (code, n) in d.responses.pairs() {
            let b = base(i);
            f.sample(
                "sluice_http_requests_total",
                &[b[0], b[1], b[2], ("code", code)],
                n,
            );
        }
    }
    f.head(
        "sluice_http_request_duration_seconds",
        "histogram",
        "Time to the upstream's response head (or the proxy's own answer).",
    );
    for (i, d) in report.destinations.iter().enumerate() {
        let b = base(i);
        for (at, le) in LATENCY_BUCKETS.iter().enumerate() {
            let le = le.to_string();
            f.sample(
                "sluice_http_request_duration_seconds_bucket",
                &[b[0], b[1], b[2], ("le", &le)],
                d.latency.cumulative.get(at).copied().unwrap_or(0),
            );
        }
        f.sample(
            "sluice_http_request_duration_seconds_bucket",
            &[b[0], b[1], b[2], ("le", "+Inf")],
            d.latency.count,
        );
        f.sample(
            "sluice_http_request_duration_seconds_sum",
            &b,
            d.latency.sum_seconds,
        );
        f.sample(
            "sluice_http_request_duration_seconds_count",
            &b,
            d.latency.count,
        );
    }
    type Pick = fn(&sluice_proxy::stats::DestReport) -> u64;
    let simple: [(&str, &str, &str, Pick); 6] = [
        (
            "sluice_http_request_bytes_total",
            "counter",
            "Request body bytes received from clients.",
            |d| d.bytes_in,
        ),
        (
            "sluice_http_response_bytes_total",
            "counter",
            "Response body bytes sent to clients.",
            |d| d.bytes_out,
        ),
        (
            "sluice_http_active_requests",
            "gauge",
            "Requests in progress.",
            |d| d.current,
        ),
        (
            "sluice_http_active_requests_peak",
            "gauge",
            "Most requests in progress at once.",
            |d| d.peak,
        ),
        (
            "sluice_http_unauthorized_total",
            "counter",
            "Requests answered 401 by basic authentication.",
            |d| d.unauthorized,
        ),
        (
            "sluice_http_denied_total",
            "counter",
            "Requests answered 403 by deny rules.",
            |d| d.denied,
        ),
    ];
    for (name, kind, help, pick) in simple {
        f.head(name, kind, help);
        for (i, d) in report.destinations.iter().enumerate() {
            f.sample(name, &base(i), pick(d));
        }
    }
    f.head(
        "sluice_upstream_failures_total",
        "counter",
        "Upstream failures by kind (connect: each address that refused or timed out).",
    );
    for (i, d) in report.destinations.iter().enumerate() {
        let b = base(i);
        for (kind, n) in [
            ("connect", d.errors.connect),
            ("timeout", d.errors.timeout),
            ("bad_gateway", d.errors.bad_gateway),
            ("unavailable", d.errors.unavailable),
        ] {
            f.sample(
                "sluice_upstream_failures_total",
                &[b[0], b[1], b[2], ("kind", kind)],
                n,
            );
        }
    }
    f.head(
        "sluice_upstream_up",
        "gauge",
        "1 when the last connect to the address worked, 0 when it failed.",
    );
    for (i, d) in report.destinations.iter().enumerate() {
        let b = base(i);
        for u in d.upstreams.iter().filter(|u| u.health != "unknown") {
            f.sample(
                "sluice_upstream_up",
                &[b[0], b[1], b[2], ("address", &u.address)],
                u8::from(u.health == "up"),
            );
        }
    }
    f.head(
        "sluice_upstream_requests_total",
        "counter",
        "Attempts sent to each upstream address.",
    );
    for (i, d) in report.destinations.iter().enumerate() {
        let b = base(i);
        for u in &d.upstreams {
            f.sample(
                "sluice_upstream_requests_total",
                &[b[0], b[1], b[2], ("address", &u.address)],
                u.requests,
            );
        }
    }
    f.head(
        "sluice_upstream_request_failures_total",
        "counter",
        "Failed attempts per upstream address.",
    );
    for (i, d) in report.destinations.iter().enumerate() {
        let b = base(i);
        for u in &d.upstreams {
            f.sample(
                "sluice_upstream_request_failures_total",
                &[b[0], b[1], b[2], ("address", &u.address)],
                u.failures,
            );
        }
    }
    passive_health(f, report);
}

/// Passive health per service ([`sluice_proxy::health`]): each address once per service,
/// whichever destinations list it.
fn passive_health(f: &mut TextWriter<'_>, report: &Report) {
    let mut services: std::collections::BTreeMap<
        &str,
        std::collections::BTreeMap<&str, (bool, u64)>,
    > = std::collections::BTreeMap::new();
    for d in &report.destinations {
        let addrs = services.entry(d.service.as_str()).or_default();
        for u in &d.upstreams {
            addrs.insert(u.address.as_str(), (u.health == "ejected", u.ejections));
        }
    }
    f.head(
        "sluice_upstream_ejections_total",
        "counter",
        "Times passive health ejected an address of the service (failed in a row).",
    );
    for (service, addrs) in &services {
        let total: u64 = addrs.values().map(|(_, n)| n).sum();
        f.sample(
            "sluice_upstream_ejections_total",
            &[("service", service)],
            total,
        );
    }
    f.head(
        "sluice_upstream_ejected",
        "gauge",
        "1 while passive health skips the address (ejected until its trial succeeds).",
    );
    for (service, addrs) in &services {
        for (address, (ejected, _)) in addrs {
            f.sample(
                "sluice_upstream_ejected",
                &[("service", service), ("address", address)],
                u8::from(*ejected),
            );
        }
    }
}

/// `/v1/docker-flow-proxy/metrics`: this replica's statistics as HAProxy CSV. With
/// `distribute=true` (ASCII case-insensitive, as DFP) the other replicas' CSV
/// (`tasks.<SERVICE_NAME>`, fetched concurrently, each with a timeout) is appended; a replica
/// that cannot be reached makes the answer 500, as in DFP.
pub async fn dfp_metrics(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Response {
    let distribute = raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(k, v)| k == "distribute" && v.eq_ignore_ascii_case("true"));
    let snapshot = state.registry.snapshot();
    let mut body = csv(&state.registry.stats().report(&snapshot));
    if distribute {
        let peers = match state.distributor.peers().await {
            Ok(peers) => peers,
            Err(reason) => {
                tracing::warn!(%reason, "metrics: cannot find the other replicas");
                return text(StatusCode::INTERNAL_SERVER_ERROR, String::new());
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for ip in peers {
            let url = format!(
                "http://{}/v1/docker-flow-proxy/metrics?distribute=false",
                SocketAddr::new(ip, state.settings.port)
            );
            let client = state.peer_client.clone();
            tasks.spawn(async move { (ip, client.get(&url).await) });
        }
        let mut parts = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((ip, Ok(bytes))) => parts.push((ip, bytes)),
                Ok((ip, Err(error))) => {
                    tracing::warn!(%ip, %error, "metrics: a replica did not answer");
                    return text(StatusCode::INTERNAL_SERVER_ERROR, String::new());
                }
                Err(error) => {
                    tracing::error!(%error, "metrics task failed");
                    return text(StatusCode::INTERNAL_SERVER_ERROR, String::new());
                }
            }
        }
        parts.sort_by_key(|(ip, _)| *ip);
        for (_, bytes) in parts {
            append_csv(&mut body, &String::from_utf8_lossy(&bytes));
        }
    }
    text(StatusCode::OK, body)
}

/// Appends another replica's CSV, making sure every part ends with a newline.
fn append_csv(body: &mut String, part: &str) {
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    body.push_str(part);
    if !body.ends_with('\n') {
        body.push('\n');
    }
}

fn text(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proxy::snapshot::Snapshot;
    use sluice_proxy::stats::StatsHub;

    #[test]
    fn counters_follow_paths_and_statuses() {
        let c = Counters::default();
        c.observe("/v1/docker-flow-proxy/reconfigure", StatusCode::OK);
        c.observe("/v1/docker-flow-proxy/reconfigure", StatusCode::BAD_REQUEST);
        c.observe("/v1/docker-flow-proxy/reconfigure", StatusCode::CONFLICT);
        c.observe("/v1/docker-flow-proxy/remove", StatusCode::OK);
        c.observe("/v1/docker-flow-proxy/config", StatusCode::OK);
        assert_eq!(
            (c.reconfigurations(), c.rejected(), c.removals()),
            (1, 2, 1)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut report = StatsHub::new().report(&Snapshot::empty());
        report.digest = "a\"b\nc".to_owned();
        let text = exposition(&report, &Counters::default());
        assert!(text.contains("digest=\"a\\\"b\\nc\""), "{text}");
    }

    #[test]
    fn exposition_has_help_and_type_for_every_family() {
        let report = StatsHub::new().report(&Snapshot::empty());
        let text = exposition(&report, &Counters::default());
        assert!(text.contains("sluice_config_generation 0\n"));
        assert!(text.contains("# TYPE sluice_http_request_duration_seconds histogram\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} "))
                    || text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE line"
            );
        }
    }

    #[test]
    fn csv_parts_are_joined_with_newlines() {
        let mut body = String::from("a");
        append_csv(&mut body, "b");
        append_csv(&mut body, "c\n");
        assert_eq!(body, "a\nb\nc\n");
    }
}
