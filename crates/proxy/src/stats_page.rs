//! The statistics page: served on the HTTP ports for requests whose path and query start with
//! `STATS_URI` (default `/admin?stats`, compared like HAProxy's `stats uri`, before routing),
//! and on `STATS_PORT` when it is set.
//!
//! Three forms: an HTML dashboard (self-contained, no external resources; its first paint —
//! the header figures and one table row per destination — is rendered here on the server, so
//! curl, text browsers and scrapers see every service, and its JavaScript then refreshes it
//! from the JSON form), `<STATS_URI>;csv` (HAProxy's CSV columns, which DFP's
//! `/v1/docker-flow-proxy/metrics` returned) and `<STATS_URI>;json` ([`Report`] as JSON, plus
//! `acme`: the [`AcmeNotices`] when the page shows them). The dashboard also lists the ACME
//! certificates ([`crate::acme_notices`]) and the Swarm tasks the listener reported.
//! Every form requires `STATS_USER`/`STATS_PASS` (realm `Strictly Private`) unless both are
//! `none`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Response};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sluice_core::settings::{StatsAuth, StatsSettings};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::acme_notices::{AcmeNoticeCell, AcmeNotices};
use crate::auth::{challenge, plain_matches};
use crate::body::ProxyBody;
use crate::error_page::{self, Failure};
use crate::membership::{MembershipCell, TaskMap, TaskView};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::stats::{DestReport, Report, StatsHub};

/// The realm of the statistics page (HAProxy's `stats realm Strictly\ Private`).
pub const STATS_REALM: &str = "Strictly Private";

const DASHBOARD: &str = include_str!("dashboard.html");

/// Everything the data plane needs for statistics: the counters, and the page when enabled.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    /// The counters (shared with the registry, which binds them to each snapshot).
    pub hub: Arc<StatsHub>,
    /// The page, when `STATS_USER`/`STATS_PASS` enable it.
    pub page: Option<Arc<StatsPage>>,
}

impl StatsConfig {
    /// Counters without a page.
    pub fn counters_only(hub: Arc<StatsHub>) -> StatsConfig {
        StatsConfig { hub, page: None }
    }
}

/// Which form of the page a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The dashboard.
    Html,
    /// HAProxy-style CSV.
    Csv,
    /// [`Report`] as JSON.
    Json,
}

/// The statistics page as configured.
#[derive(Debug)]
pub struct StatsPage {
    uri: String,
    auth: StatsAuth,
    /// The Swarm tasks the listener reports, shown under the destinations.
    membership: Option<Arc<MembershipCell>>,
    /// The ACME certificates' state, shown above the tasks.
    acme: Option<Arc<AcmeNoticeCell>>,
}

impl StatsPage {
    /// The page `settings` describe.
    pub fn new(settings: &StatsSettings) -> StatsPage {
        StatsPage {
            uri: settings.uri.clone(),
            auth: settings.auth.clone(),
            membership: None,
            acme: None,
        }
    }

    /// The page showing the task sets of `membership` too.
    pub fn with_membership(mut self, membership: Arc<MembershipCell>) -> StatsPage {
        self.membership = Some(membership);
        self
    }

    /// The page showing the ACME certificates of `acme` too.
    pub fn with_acme(mut self, acme: Arc<AcmeNoticeCell>) -> StatsPage {
        self.acme = Some(acme);
        self
    }

    /// The form asked for when `path_and_query` is a statistics request, else `None`.
    /// Options follow the URI separated by `;` (`/admin?stats;csv`, `;json`).
    pub fn format(&self, path_and_query: &str) -> Option<Format> {
        let rest = path_and_query.strip_prefix(self.uri.as_str())?;
        let options = rest.split(';').skip(1).map(|o| o.trim());
        let mut format = Format::Html;
        for option in options {
            if option.eq_ignore_ascii_case("csv") {
                format = Format::Csv;
            } else if option.eq_ignore_ascii_case("json") {
                format = Format::Json;
            }
        }
        Some(format)
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        match &self.auth {
            StatsAuth::Open => true,
            StatsAuth::Basic(c) => plain_matches(headers, &c.user, &c.password),
        }
    }

    /// Answers a statistics request in `format`.
    pub fn respond(
        &self,
        format: Format,
        headers: &HeaderMap,
        hub: &StatsHub,
        snapshot: &Snapshot,
    ) -> Response<ProxyBody> {
        if !self.admits(headers) {
            return challenge(STATS_REALM);
        }
        let report = hub.report(snapshot);
        let acme = self.acme.as_ref().map(|cell| cell.load());
        let (content_type, body) = match format {
            Format::Html => (
                "text/html; charset=utf-8",
                self.dashboard(&report, acme.as_deref()),
            ),
            Format::Csv => ("text/plain; charset=utf-8", csv(&report)),
            Format::Json => ("application/json", json_with(&report, acme.as_deref())),
        };
        let mut resp = Response::new(ProxyBody::full(Bytes::from(body)));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        if format == Format::Html {
            h.insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                     frame-ancestors 'none'",
                ),
            );
            h.insert("x-frame-options", HeaderValue::from_static("DENY"));
            h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        }
        resp
    }

    /// The dashboard with `report` (and the ACME certificates) already rendered into it
    /// (every value HTML-escaped).
    fn dashboard(&self, report: &Report, acme: Option<&AcmeNotices>) -> String {
        let rows: String = report.destinations.iter().map(dashboard_row).collect();
        let count = report.destinations.len();
        let tasks = self
            .membership
            .as_ref()
            .map(|cell| task_rows(&cell.load(), &ejected_ips(report)))
            .unwrap_or_default();
        let acme_rows = acme
            .map(|n| crate::acme_notices::rows(n, html_escape))
            .unwrap_or_default();
        DASHBOARD
            .replace("{{JSON_URL}}", &html_escape(&format!("{};json", self.uri)))
            .replace("{{CSV_URL}}", &html_escape(&format!("{};csv", self.uri)))
            .replace("{{GENERATION}}", &report.generation.to_string())
            .replace("{{DIGEST}}", &html_escape(&report.digest))
            .replace("{{REQUESTS}}", &report.totals.requests.to_string())
            .replace("{{COUNT}}", &format!("{count} of {count} destinations"))
            .replace("{{EMPTY_HIDDEN}}", if count > 0 { " hidden" } else { "" })
            .replace(
                "{{TASKS_EMPTY_HIDDEN}}",
                if tasks.is_empty() { "" } else { " hidden" },
            )
            .replace("{{TASKS}}", &tasks)
            .replace(
                "{{ACME_HIDDEN}}",
                if acme_rows.is_empty() { " hidden" } else { "" },
            )
            .replace("{{ACME}}", &acme_rows)
            .replace("{{ROWS}}", &rows)
    }
}

/// One destination's table row, in the markup the dashboard's script renders too.
fn dashboard_row(d: &DestReport) -> String {
    let mut out = String::new();
    let hay: Vec<&str> = [d.service.as_str(), d.backend.as_str()]
        .into_iter()
        .chain(d.paths.iter().map(String::as_str))
        .chain(d.domains.iter().map(String::as_str))
        .chain(d.upstreams.iter().map(|u| u.address.as_str()))
        .collect();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "<tr class=\"dest\" data-service=\"{}\" data-backend=\"{}\" data-hay=\"{}\">\
         <td><div class=\"svc\">{}</div><div class=\"backend\">{}</div>",
        html_escape(&d.service),
        html_escape(&d.backend),
        html_escape(&hay.join(" ").to_lowercase()),
        html_escape(&d.service),
        html_escape(&d.backend),
    );
    let route: Vec<&str> = d
        .domains
        .iter()
        .chain(d.paths.iter())
        .map(String::as_str)
        .collect();
    if !route.is_empty() {
        let _ = write!(
            out,
            "<div class=\"route\">{}</div>",
            html_escape(&route.join("  "))
        );
    }
    let _ = write!(
        out,
        "</td><td class=\"num rate\">-</td><td class=\"num requests\">{}</td>\
         <td class=\"responses\"><div class=\"classes\">",
        d.requests
    );
    for (label, count) in d.responses.pairs() {
        if count > 0 || label == "2xx" {
            let _ = write!(out, "{label} <b>{count}</b>  ");
        }
    }
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
    let _ = write!(
        out,
        "</div></td><td class=\"num active\">{} / {}</td>\
         <td class=\"lat\">{} / {} / {}<br><small>{} measured</small></td>\
         <td class=\"num bytes\">{} B / {} B</td>",
        d.current,
        d.peak,
        ms(d.latency.p50_ms),
        ms(d.latency.p90_ms),
        ms(d.latency.p99_ms),
        d.latency.count,
        d.bytes_in,
        d.bytes_out,
    );
    let e = &d.errors;
    if e.connect + e.timeout + e.bad_gateway + e.unavailable > 0 {
        let _ = write!(
            out,
            "<td class=\"errors err\">connect {} · timeout {} · 502 {} · 503 {}</td>",
            e.connect, e.timeout, e.bad_gateway, e.unavailable
        );
    } else {
        out.push_str("<td class=\"errors zero\">none</td>");
    }
    if d.unauthorized + d.denied > 0 {
        let _ = write!(
            out,
            "<td class=\"num denied\">401 {} · 403 {}</td>",
            d.unauthorized, d.denied
        );
    } else {
        out.push_str("<td class=\"num denied zero\">0</td>");
    }
    out.push_str("<td><div class=\"chips\">");
    if d.upstreams.is_empty() {
        out.push_str("<span class=\"zero\">not contacted yet</span>");
    }
    for u in &d.upstreams {
        let health = html_escape(u.health);
        let _ = write!(
            out,
            "<span class=\"chip upstream\" data-health=\"{health}\"><span class=\"dot {health}\"></span>{}<small>{}</small></span>",
            html_escape(&u.address),
            u.requests
        );
    }
    out.push_str("</div></td></tr>\n");
    out
}

/// The IP addresses passive health has ejected ([`crate::health`]), from the report's
/// upstream addresses (`ip:port`) of every service.
fn ejected_ips(report: &Report) -> std::collections::HashSet<std::net::IpAddr> {
    report
        .destinations
        .iter()
        .flat_map(|d| &d.upstreams)
        .filter(|u| u.health == "ejected")
        .filter_map(|u| u.address.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.ip())
        .collect()
}

/// One row per reported task, services in name order. The state cell shows `ready` or
/// `draining` (with how long ago draining started), and `ejected` when passive health skips
/// the task's address ([`task_state_cell`]).
fn task_rows(map: &TaskMap, ejected: &std::collections::HashSet<std::net::IpAddr>) -> String {
    let mut names: Vec<&String> = map.services.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let Some(service) = map.services.get(name) else {
            continue;
        };
        for task in &service.tasks {
            let address = task.address.map_or_else(
                || "not on this host's networks".to_owned(),
                |a| a.to_string(),
            );
            let short: String = task.id.chars().take(12).collect();
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "<tr class=\"task\" data-service=\"{svc}\" data-state=\"{state}\"><td>{svc}</td>\
                 <td title=\"{id}\">{short}</td><td>{address}</td><td>{cell}</td>\
                 <td class=\"zero\">{observed} / {desired}</td></tr>",
                svc = html_escape(name),
                state = task.phase.as_str(),
                id = html_escape(&task.id),
                short = html_escape(&short),
                address = html_escape(&address),
                cell = task_state_cell(task, task.address.is_some_and(|a| ejected.contains(&a))),
                observed = task.state.as_str(),
                desired = task.desired_state.as_str(),
            );
        }
    }
    out
}

/// The state cell of one task: `ready`, `draining (12 s)` or `out`, followed by `ejected`
/// when passive health skips its address.
fn task_state_cell(task: &TaskView, ejected: bool) -> String {
    let phase = task.phase.as_str();
    let cell = task_phase_cell(task, phase);
    if ejected {
        format!("{cell} <span class=\"task-state ejected\">ejected</span>")
    } else {
        cell
    }
}

fn task_phase_cell(task: &TaskView, phase: &str) -> String {
    match task.draining_since {
        Some(since) => format!(
            "<span class=\"task-state {phase}\">{phase}</span> <small>{} s</small>",
            since.elapsed().as_secs()
        ),
        None => format!("<span class=\"task-state {phase}\">{phase}</span>"),
    }
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report as JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string(report).unwrap_or_else(|_| "{}".to_string())
}

/// The report as JSON, with the ACME notices under `acme` when the page shows them.
fn json_with(report: &Report, acme: Option<&AcmeNotices>) -> String {
    let Some(acme) = acme else {
        return json(report);
    };
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let (Some(map), Ok(notices)) = (value.as_object_mut(), serde_json::to_value(acme)) {
        map.insert("acme".to_owned(), notices);
    }
    value.to_string()
}

/// HAProxy 1.8's CSV columns (`show stat`), in order.
const CSV_COLUMNS: [&str; 83] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
];

/// One CSV row being filled by column name.
struct CsvRow([String; 83]);

impl CsvRow {
    fn new(pxname: &str, svname: &str, kind: u8) -> CsvRow {
        let mut row = CsvRow(std::array::from_fn(|_| String::new()));
        row.set("pxname", csv_field(pxname));
        row.set("svname", csv_field(svname));
        row.set("type", kind);
        row.set("pid", 1);
        row.set("mode", "http");
        row
    }

    fn set(&mut self, column: &str, value: impl ToString) {
        if let Some(at) = CSV_COLUMNS.iter().position(|c| *c == column) {
            self.0[at] = value.to_string();
        }
    }

    fn responses(&mut self, r: &crate::stats::ClassReport) {
        for (label, count) in r.pairs() {
            self.set(&format!("hrsp_{label}"), count);
        }
    }

    fn write(&self, out: &mut String) {
        for field in &self.0 {
            out.push_str(field);
            out.push(',');
        }
        out.push('\n');
    }
}

/// Commas and line breaks cannot appear inside HAProxy CSV fields.
fn csv_field(text: &str) -> String {
    text.chars()
        .map(|c| if c == ',' || c.is_control() { '_' } else { c })
        .collect()
}

/// The report in HAProxy's CSV layout: a `services,FRONTEND` row, then per destination one
/// row per upstream address (`svname` = the address) and a `BACKEND` row. Columns Sluice
/// has no figure for are empty.
pub fn csv(report: &Report) -> String {
    let mut out = String::from("# ");
    out.push_str(&CSV_COLUMNS.join(","));
    out.push_str(",\n");
    let t = &report.totals;
    let mut fe = CsvRow::new("services", "FRONTEND", 0);
    fe.set("scur", t.current);
    fe.set("stot", t.requests);
    fe.set("bin", t.bytes_in);
    fe.set("bout", t.bytes_out);
    fe.set("dreq", t.denied + t.unauthorized);
    fe.set("status", "OPEN");
    fe.set("iid", 1);
    fe.set("sid", 0);
    fe.set("req_tot", t.requests);
    fe.responses(&t.responses);
    fe.write(&mut out);
    for (i, d) in report.destinations.iter().enumerate() {
        let iid = i + 2;
        for (sid, u) in d.upstreams.iter().enumerate() {
            let mut sv = CsvRow::new(&d.backend, &u.address, 2);
            sv.set("stot", u.requests);
            sv.set("lbtot", u.requests);
            sv.set("econ", u.failures);
            sv.set(
                "status",
                match u.health {
                    "up" => "UP",
                    "down" | "ejected" => "DOWN",
                    _ => "no check",
                },
            );
            sv.set("weight", 1);
            sv.set("act", 1);
            sv.set("bck", 0);
            sv.set("lastchg", report.now_ms.saturating_sub(u.changed_ms) / 1000);
            sv.set("iid", iid);
            sv.set("sid", sid + 1);
            sv.set("addr", &u.address);
            sv.write(&mut out);
        }
        let mut be = CsvRow::new(&d.backend, "BACKEND", 1);
        be.set("scur", d.current);
        be.set("smax", d.peak);
        be.set("stot", d.requests);
        be.set("lbtot", d.requests);
        be.set("bin", d.bytes_in);
        be.set("bout", d.bytes_out);
        be.set("dreq", d.denied + d.unauthorized);
        be.set("econ", d.errors.connect);
        be.set("eresp", d.errors.bad_gateway + d.errors.timeout);
        let any_down = !d.upstreams.is_empty()
            && d.upstreams
                .iter()
                .all(|u| matches!(u.health, "down" | "ejected"));
        be.set("status", if any_down { "DOWN" } else { "UP" });
        be.set("weight", d.upstreams.len());
        be.set("act", d.upstreams.len());
        be.set("bck", 0);
        be.set("iid", iid);
        be.set("sid", 0);
        be.set("req_tot", d.requests);
        be.responses(&d.responses);
        if d.latency.count > 0 {
            let avg_ms = (d.latency.sum_seconds * 1000.0 / d.latency.count as f64).round() as u64;
            be.set("rtime", avg_ms);
            be.set("ttime", avg_ms);
        }
        be.set("algo", "roundrobin");
        be.write(&mut out);
    }
    out
}

/// Serves only the statistics page on `listener` (`STATS_PORT`) until `stop` turns true.
/// Other URIs get the 503 "no route" page, as HAProxy's stats-only frontend answered.
pub async fn serve_listener(
    listener: TcpListener,
    page: Arc<StatsPage>,
    hub: Arc<StatsHub>,
    snapshot: SnapshotCell,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, client)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let page = page.clone();
        let hub = hub.clone();
        let snapshot = snapshot.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".to_string());
                let resp = match page.format(&pq) {
                    Some(format) => page.respond(format, req.headers(), &hub, &snapshot.load()),
                    None => error_page::page(Failure::NoRoute),
                };
                // The page's bodies are complete bytes; `Full` is `Send` for this runtime.
                let resp = resp.map(|body| match body {
                    ProxyBody::Full(bytes) => Full::new(bytes.unwrap_or_default()),
                    _ => Full::new(Bytes::new()),
                });
                async move { Ok::<_, Infallible>(resp) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%client, %error, "statistics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests;
