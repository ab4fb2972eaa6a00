//! Sluice's control API: Docker Flow Proxy's endpoints on `PORT`, and the registry behind them.
//!
//! Endpoints (any method, as DFP):
//! - `/v1/docker-flow-proxy/reconfigure` — add or replace a service from query parameters.
//! - `/v1/docker-flow-proxy/remove` — remove a service by `serviceName`.
//! - `/v1/docker-flow-proxy/reload` — re-publish the routing table (`recreate=true`).
//! - `/v1/docker-flow-proxy/config` — the live routing table as text, or the services as JSON
//!   (`type=json`); the generation and digest of the routing state are in response headers.
//! - `/v1/docker-flow-proxy/ping` — liveness.
//! - `/v1/docker-flow-proxy/metrics` — statistics as HAProxy CSV (`distribute=true`: all
//!   replicas); `/metrics` — Prometheus text ([`metrics`]).
//!
//! With `API_USER`/`API_PASS` set, every endpoint but the probes and `/metrics` needs them
//! ([`access`]).
//!
//! The API never touches sockets of the data plane; it changes routing only through the
//! [`registry::Registry`]. A rejected request changes nothing.

pub mod access;
pub mod certs;
pub mod metrics;
pub mod peers;
pub mod registry;
pub mod store;
pub mod streams;
pub mod sync;
pub mod users;
pub mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::Value;
use sluice_core::params::{params_from_query, parse_go_bool, parse_service};
use sluice_core::service::Params;
use sluice_core::settings::Settings;

use crate::peers::{Distribution, Distributor, PeerClient};
use crate::registry::Registry;

/// What every handler shares.
pub struct ApiState {
    /// The single writer of routing state.
    pub registry: Arc<Registry>,
    /// The proxy's settings.
    pub settings: Arc<Settings>,
    /// Forwards `distribute=true` changes to the other replicas.
    pub distributor: Distributor,
    /// HTTP client for listeners and peers.
    pub peer_client: PeerClient,
    /// Ready to serve: the initial listener sync is done (or there is no listener).
    pub ready: AtomicBool,
    /// At least one listener sync succeeded (`successfulinitreload`).
    pub synced: AtomicBool,
    /// The certificate store behind `/cert`, `/certs` and `serviceCert` (set once at startup).
    pub certs: std::sync::OnceLock<Arc<sluice_proxy::certs::CertStore>>,
}

impl ApiState {
    /// State for a proxy with these settings, not yet ready.
    pub fn new(
        registry: Arc<Registry>,
        settings: Arc<Settings>,
        authorization: Option<String>,
        hosts_file: Option<std::path::PathBuf>,
    ) -> ApiState {
        let peer_client = PeerClient::new(std::time::Duration::from_secs(5), authorization);
        ApiState {
            distributor: Distributor::new(
                &settings.service_name,
                settings.port,
                peer_client.clone(),
                Some(settings.ip),
                hosts_file,
            ),
            peer_client,
            registry,
            settings,
            ready: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            certs: std::sync::OnceLock::new(),
        }
    }
}

const BASE: &str = "/v1/docker-flow-proxy";

/// The control API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(&format!("{BASE}/reconfigure"), any(reconfigure))
        .route(&format!("{BASE}/remove"), any(remove))
        .route(&format!("{BASE}/reload"), any(reload))
        .route(&format!("{BASE}/config"), any(config))
        .route(&format!("{BASE}/ping"), any(ping))
        .route(&format!("{BASE}/metrics"), any(metrics::dfp_metrics))
        .route("/metrics", any(metrics::prometheus))
        .route(&format!("{BASE}/cert"), any(certs::cert))
        .route(&format!("{BASE}/certs"), any(certs::list))
        .route(
            &format!("{BASE}/successfulinitreload"),
            any(successful_init_reload),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .with_state(state)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn query_params(raw: Option<String>) -> Params {
    params_from_query(raw.as_deref().unwrap_or(""))
}

/// True when the parameter holds one of Go's `ParseBool` truths (as DFP's query decoding).
pub(crate) fn is_true(params: &Params, key: &str) -> bool {
    params
        .get(key)
        .is_some_and(|v| parse_go_bool(v) == Some(true))
}

async fn reconfigure(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Response {
    let params = query_params(raw);
    let name = params.get("serviceName").cloned().unwrap_or_default();
    tracing::info!(service = %name, "Processing reconfigure request");
    let service = match parse_service(&params, &state.settings.parse) {
        Ok(service) => service,
        Err(error) => {
            let status = if error.is_conflict() {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            tracing::warn!(service = %name, %error, "reconfigure rejected");
            return json_response(
                status,
                view::envelope("NOK", &error.to_string(), &name, None),
            );
        }
    };
    let settings = &state.settings;
    if settings.filter_proxy_instance_name {
        let wanted = service.proxy_instance_name.as_deref().unwrap_or("");
        if !wanted.eq_ignore_ascii_case(&settings.proxy_instance_name) {
            let message = format!(
                "ignored: proxyInstanceName {wanted:?} is not this proxy's {:?}",
                settings.proxy_instance_name
            );
            tracing::info!(service = %name, "{message}");
            return json_response(StatusCode::OK, view::envelope("OK", &message, &name, None));
        }
    }
    if !settings.skip_address_validation {
        let host = service
            .destinations
            .first()
            .and_then(|d| d.outbound_hostname.clone())
            .unwrap_or_else(|| service.name.clone());
        let lookup = tokio::net::lookup_host((host.as_str(), 0u16))
            .await
            .map(|_| ());
        if let Err(error) = lookup {
            let message = format!("cannot resolve {host}: {error}");
            tracing::warn!(service = %name, %message, "reconfigure rejected");
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                view::envelope("NOK", &message, &name, Some(&service)),
            );
        }
    }
    if service.replicas == Some(0) {
        let change = state.registry.remove(&service.name).await;
        tracing::info!(service = %name, generation = change.generation, "Removing {name} configuration (replicas=0)");
        return json_response(
            StatusCode::OK,
            view::envelope("OK", "", &name, Some(&service)),
        );
    }
    let distribute = service.distribute;
    let mut messages = service.warnings.clone();
    let mut body = view::envelope("OK", "", &name, Some(&service));
    if let Err(error) = certs::check_service_cert(&service) {
        tracing::warn!(service = %name, %error, "reconfigure rejected");
        return json_response(
            StatusCode::BAD_REQUEST,
            view::envelope("NOK", &error.to_string(), &name, None),
        );
    }
    // The routing table bounds the compiled size of all services' regular expressions.
    if let Err(error) = state.registry.snapshot().table.check_regex_budget(&service) {
        tracing::warn!(service = %name, %error, "reconfigure rejected");
        return json_response(
            StatusCode::BAD_REQUEST,
            view::envelope("NOK", &error.to_string(), &name, None),
        );
    }
    let cert_service = service.service_cert.is_some().then(|| service.clone());
    let change = match state.registry.apply(service).await {
        Ok(change) => change,
        Err(error) => {
            tracing::warn!(service = %name, %error, "reconfigure rejected");
            let status = if error.is_client_error() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            return json_response(
                status,
                view::envelope("NOK", &error.to_string(), &name, None),
            );
        }
    };
    if let Some(service) = cert_service {
        messages.extend(certs::store_service_cert(&state, &service).await);
    }
    tracing::info!(
        service = %name,
        generation = change.generation,
        replaced = change.existed,
        "Reconfigured {name}"
    );
    let mut status = StatusCode::OK;
    if distribute {
        let outcome = state
            .distributor
            .forward(&format!("{BASE}/reconfigure"), &params)
            .await;
        status = distribution_status(&outcome, &mut messages);
    }
    body["Message"] = Value::String(messages.join("; "));
    if status != StatusCode::OK {
        body["Status"] = Value::String("NOK".into());
    }
    json_response(status, body)
}

/// Folds a distribution's outcome into the response: failed peers make it a 500 naming them
/// (DFSL then retries; replicas that already applied it apply it again, which is harmless).
fn distribution_status(outcome: &Distribution, messages: &mut Vec<String>) -> StatusCode {
    if let Some(note) = &outcome.note {
        messages.push(format!("distribute: {note}; applied on this replica only"));
    } else if !outcome.delivered.is_empty() && outcome.failed.is_empty() {
        messages.push(format!(
            "Distributed to all instances ({} peers)",
            outcome.delivered.len()
        ));
    }
    if outcome.failed.is_empty() {
        return StatusCode::OK;
    }
    let failed: Vec<String> = outcome
        .failed
        .iter()
        .map(|(ip, reason)| format!("{ip} ({reason})"))
        .collect();
    tracing::warn!(failed = %failed.join(", "), "distribution failed for some replicas");
    messages.push(format!(
        "Could not send distribute request to the following addresses: {}",
        failed.join(", ")
    ));
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn remove(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Response {
    let params = query_params(raw);
    let Some(name) = params.get("serviceName").filter(|n| !n.is_empty()).cloned() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            view::envelope("NOK", "The serviceName query is mandatory", "", None),
        );
    };
    tracing::info!(service = %name, "Processing remove request");
    let change = state.registry.remove(&name).await;
    if change.existed {
        tracing::info!(service = %name, generation = change.generation, "Removing {name} configuration");
    } else {
        tracing::info!(service = %name, "Remove: {name} was not configured");
    }
    let mut messages = Vec::new();
    let mut status = StatusCode::OK;
    if is_true(&params, "distribute") {
        let outcome = state
            .distributor
            .forward(&format!("{BASE}/remove"), &params)
            .await;
        status = distribution_status(&outcome, &mut messages);
    }
    let verdict = if status == StatusCode::OK {
        "OK"
    } else {
        "NOK"
    };
    json_response(
        status,
        view::envelope(verdict, &messages.join("; "), &name, None),
    )
}

async fn reload(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Response {
    let params = query_params(raw);
    if is_true(&params, "fromListener") {
        return match sync::notify_listeners(&state).await {
            Ok(()) => json_response(StatusCode::OK, view::envelope("OK", "", "", None)),
            Err(message) => {
                tracing::warn!(%message, "reload from the listener failed");
                json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    view::envelope("NOK", &message, "", None),
                )
            }
        };
    }
    let generation = state.registry.republish().await;
    tracing::info!(
        generation,
        recreate = is_true(&params, "recreate"),
        "Reloaded the routing table"
    );
    json_response(StatusCode::OK, view::envelope("OK", "", "", None))
}

async fn config(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Response {
    let params = query_params(raw);
    let snapshot = state.registry.snapshot();
    let mut resp = if params
        .get("type")
        .is_some_and(|t| t.eq_ignore_ascii_case("json"))
    {
        let services = state.registry.services();
        let map: serde_json::Map<String, Value> = services
            .iter()
            .map(|(name, svc)| (name.clone(), view::service_json(svc)))
            .collect();
        json_response(StatusCode::OK, Value::Object(map))
    } else {
        let mut text = format!(
            "# sluice routing table, generation {} digest {}\n{}",
            snapshot.generation,
            snapshot.digest,
            snapshot.table.render()
        );
        if !snapshot.stream.is_empty() {
            text.push_str(&snapshot.stream.render());
        }
        let mut resp = (StatusCode::OK, text).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    };
    let headers = resp.headers_mut();
    headers.insert(
        "x-sluice-generation",
        HeaderValue::from(snapshot.generation),
    );
    if let Ok(digest) = HeaderValue::from_str(&snapshot.digest) {
        headers.insert("x-sluice-digest", digest);
    }
    resp
}

async fn ping(State(state): State<Arc<ApiState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        json_response(StatusCode::OK, view::envelope("OK", "", "", None))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            view::envelope(
                "NOK",
                "waiting for the initial sync from LISTENER_ADDRESS",
                "",
                None,
            ),
        )
    }
}

async fn successful_init_reload(State(state): State<Arc<ApiState>>) -> Response {
    if state.synced.load(Ordering::SeqCst) {
        StatusCode::OK.into_response()
    } else {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    // DFP's router redirects a trailing slash to the path without it.
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let location = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&location) {
            return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, value)]).into_response();
        }
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}
