//! Sluice's control API: Docker Flow Proxy's endpoints on `PORT`, and the registry behind them.
//!
//! Endpoints (any method, as DFP):
//! - `/v1/docker-flow-proxy/reconfigure` — add or replace a service from query parameters.
//! - `/v1/docker-flow-proxy/remove` — remove a service by `serviceName`.
//! - `dryRun=true` on either: checked and shown, never applied ([`dry_run`]).
//! - `/v1/docker-flow-proxy/reload` — re-publish the routing table (`recreate=true`).
//! - `/v1/docker-flow-proxy/config` — the live routing table as text, or the services as JSON
//!   (`type=json`); the generation and digest of the routing state are in response headers.
//! - `/v1/docker-flow-proxy/ping` — liveness.
//! - `/v1/sluice/explain` — what the data plane would do with a request, and why ([`explain`]).
//! - `/v1/sluice/tasks` — the Swarm task sets the listener pushes ([`membership`]).
//! - `/v1/docker-flow-proxy/acme` (and `…/acme/challenge`, `…/acme/account` between
//!   replicas) — ACME certificates ([`acme`]).
//! - `/v1/docker-flow-proxy/metrics` — statistics as HAProxy CSV (`distribute=true`: all
//!   replicas); `/metrics` — Prometheus text ([`metrics`]).
//!
//! With `API_USER`/`API_PASS` set, every endpoint but the probes and `/metrics` needs them
//! ([`access`]).
//!
//! The API never touches sockets of the data plane; it changes routing only through the
//! [`registry::Registry`], which answers a change only once it is on disk. A rejected request
//! changes nothing. Every failure is an [`ApiError`], turned into DFP's status and envelope in
//! one place.

pub mod access;
pub mod acme;
pub mod admission;
pub mod certs;
pub mod dry_run;
pub mod error;
pub mod explain;
pub mod membership;
pub mod metrics;
pub mod peers;
pub mod recovery;
pub mod registry;
pub mod services;
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
use sluice_core::params::{params_from_query, parse_go_bool};
use sluice_core::service::{Params, Service};
use sluice_core::settings::Settings;

pub use crate::error::ApiError;
use crate::peers::{Distributor, PeerClient};
use crate::registry::{Change, Registry};

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
    /// What explain reads of the running data plane (set once at startup).
    pub plane: std::sync::OnceLock<explain::PlaneView>,
    /// The Swarm task sets behind `/v1/sluice/tasks` ([`membership`]).
    pub tasks: membership::TaskBook,
    /// ACME certificates for `acmeDomain` services (set once at startup).
    pub acme: std::sync::OnceLock<Arc<acme::Acme>>,
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
            plane: std::sync::OnceLock::new(),
            tasks: membership::TaskBook::default(),
            acme: std::sync::OnceLock::new(),
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
        .route(membership::PATH, any(membership::tasks))
        .route(&format!("{BASE}/cert"), any(certs::cert))
        .route(&format!("{BASE}/certs"), any(certs::list))
        .route("/v1/sluice/explain", any(explain::explain))
        .route(&format!("{BASE}/acme"), any(acme::status))
        .route(acme::CHALLENGE_PATH, any(acme::challenge))
        .route(acme::account::ACCOUNT_PATH, any(acme::account_endpoint))
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

fn query_params(raw: Option<String>) -> Params {
    params_from_query(raw.as_deref().unwrap_or(""))
}

/// True when the parameter holds one of Go's `ParseBool` truths (as DFP's query decoding).
pub(crate) fn is_true(params: &Params, key: &str) -> bool {
    params
        .get(key)
        .is_some_and(|v| parse_go_bool(v) == Some(true))
}

/// `reconfigure`: parse → admit → commit (written to `DATA_DIR`, then published) → distribute.
async fn reconfigure(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut params = query_params(raw);
    let name = params.get("serviceName").cloned().unwrap_or_default();
    tracing::info!(service = %name, "Processing reconfigure request");
    let outcome = match dry_run::take(&mut params, &name) {
        Ok(true) if !body.is_empty() => dry_run::batch(&state, &body).await,
        Ok(true) => dry_run::reconfigure(&state, &params, name.clone()).await,
        Ok(false) => reconfigure_service(&state, &params, name.clone()).await,
        Err(error) => Err(error),
    };
    outcome.inspect_err(|error| match error.status() {
        s if s.is_server_error() => {
            tracing::error!(service = %name, %error, "reconfigure rejected")
        }
        _ => tracing::warn!(service = %name, %error, "reconfigure rejected"),
    })
}

async fn reconfigure_service(
    state: &ApiState,
    params: &Params,
    name: String,
) -> Result<Response, ApiError> {
    let service = parse(state, params, name).await?;
    if let Admission::Ignored(message) = admit(state, &service).await? {
        tracing::info!(service = %service.name, "{message}");
        return Ok(view::json_response(
            StatusCode::OK,
            view::envelope("OK", &message, &service.name, None),
        ));
    }
    let name = service.name.clone();
    let mut messages = service.warnings.clone();
    if service.replicas == Some(0) {
        // Like any other reconfigure: removed here, then sent to the other replicas.
        let change = uncommit(state, &name).await?;
        tracing::info!(service = %name, generation = change.generation, "Removing {name} configuration (replicas=0)");
    } else {
        let change = commit(state, service.clone()).await?;
        tracing::info!(
            service = %name,
            generation = change.generation,
            replaced = change.existed,
            "Reconfigured {name}"
        );
    }
    if service.distribute && !forward(state, "reconfigure", params, &mut messages).await {
        return Err(ApiError::Distribution {
            service_name: name,
            service: Some(Box::new(service)),
            message: messages.join("; "),
        });
    }
    Ok(view::json_response(
        StatusCode::OK,
        view::envelope("OK", &messages.join("; "), &name, Some(&service)),
    ))
}

/// Parses and checks the parameters off the event loop (regexes can be costly to compile).
async fn parse(state: &ApiState, params: &Params, name: String) -> Result<Service, ApiError> {
    let settings = state.settings.clone();
    let params = params.clone();
    tokio::task::spawn_blocking(move || admission::admit(&params, &settings.parse))
        .await?
        .map_err(|source| ApiError::Params {
            service: name,
            source,
        })
}

/// Whether a valid service is taken by this proxy.
enum Admission {
    Accepted,
    /// For another proxy instance (`FILTER_PROXY_INSTANCE_NAME`): answered 200 with this message.
    Ignored(String),
}

/// The checks between parsing and committing: the proxy instance filter, address validation
/// and the `serviceCert` bundle (not for `replicas=0`, which only removes).
async fn admit(state: &ApiState, service: &Service) -> Result<Admission, ApiError> {
    let settings = &state.settings;
    if settings.filter_proxy_instance_name {
        let wanted = service.proxy_instance_name.as_deref().unwrap_or("");
        if !wanted.eq_ignore_ascii_case(&settings.proxy_instance_name) {
            return Ok(Admission::Ignored(format!(
                "ignored: proxyInstanceName {wanted:?} is not this proxy's {:?}",
                settings.proxy_instance_name
            )));
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
        if let Err(source) = lookup {
            return Err(ApiError::Unresolvable {
                service: Box::new(service.clone()),
                host,
                source,
            });
        }
    }
    if service.replicas != Some(0) {
        certs::check_service_cert(service).map_err(|source| ApiError::InvalidServiceCert {
            service: service.name.clone(),
            source,
        })?;
    }
    // The routing table bounds the compiled size of all services' regular expressions.
    state
        .registry
        .snapshot()
        .table
        .check_regex_budget(service)
        .map_err(|error| ApiError::Params {
            service: service.name.clone(),
            source: error.into(),
        })?;
    Ok(Admission::Accepted)
}

/// Stores the service's certificate, then commits the service (on disk, then published). When
/// the service is not committed, the certificate file is put back as it was.
/// Removes a service durably (the counterpart of [`commit`]).
async fn uncommit(state: &ApiState, name: &str) -> Result<Change, ApiError> {
    state
        .registry
        .remove(name)
        .await
        .map_err(|source| ApiError::Commit {
            service: name.to_owned(),
            source,
        })
}

async fn commit(state: &ApiState, service: Service) -> Result<Change, ApiError> {
    let name = service.name.clone();
    let stored_cert = certs::store_service_cert(state, &service)
        .await
        .map_err(|source| ApiError::ServiceCertNotStored {
            service: name.clone(),
            source,
        })?;
    match state.registry.apply(service).await {
        Ok(change) => Ok(change),
        Err(source) => {
            if let Some(stored) = stored_cert {
                stored.restore().await;
            }
            Err(ApiError::Commit {
                service: name,
                source,
            })
        }
    }
}

/// Sends the request (with `distribute=false`) to the other replicas and adds the outcome to
/// `messages`. False when some replica did not take it (DFSL then retries; replicas that
/// already applied it apply it again, which is harmless).
async fn forward(
    state: &ApiState,
    endpoint: &str,
    params: &Params,
    messages: &mut Vec<String>,
) -> bool {
    let outcome = state
        .distributor
        .forward(&format!("{BASE}/{endpoint}"), params)
        .await;
    if let Some(note) = &outcome.note {
        messages.push(format!("distribute: {note}; applied on this replica only"));
    } else if !outcome.delivered.is_empty() && outcome.failed.is_empty() {
        messages.push(format!(
            "Distributed to all instances ({} peers)",
            outcome.delivered.len()
        ));
    }
    if outcome.failed.is_empty() {
        return true;
    }
    let failed: Vec<String> = outcome
        .failed
        .iter()
        .map(|(ip, reason)| format!("{ip} ({reason})"))
        .collect();
    messages.push(format!(
        "Could not send distribute request to the following addresses: {}",
        failed.join(", ")
    ));
    false
}

async fn remove(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut params = query_params(raw);
    let name = params.get("serviceName").cloned().unwrap_or_default();
    let outcome = match dry_run::take(&mut params, &name) {
        Ok(true) => dry_run::remove(&state, &name),
        Ok(false) => remove_service(&state, &params, name.clone()).await,
        Err(error) => Err(error),
    };
    outcome.inspect_err(|error| tracing::warn!(service = %name, %error, "remove rejected"))
}

async fn remove_service(
    state: &ApiState,
    params: &Params,
    name: String,
) -> Result<Response, ApiError> {
    if name.is_empty() {
        return Err(ApiError::MissingServiceName);
    }
    tracing::info!(service = %name, "Processing remove request");
    let change = uncommit(state, &name).await?;
    if change.existed {
        tracing::info!(service = %name, generation = change.generation, "Removing {name} configuration");
    } else {
        tracing::info!(service = %name, "Remove: {name} was not configured");
    }
    let mut messages = Vec::new();
    if is_true(params, "distribute") && !forward(state, "remove", params, &mut messages).await {
        return Err(ApiError::Distribution {
            service_name: name,
            service: None,
            message: messages.join("; "),
        });
    }
    Ok(view::json_response(
        StatusCode::OK,
        view::envelope("OK", &messages.join("; "), &name, None),
    ))
}

async fn reload(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = query_params(raw);
    if is_true(&params, "fromListener") {
        sync::notify_listeners(&state)
            .await
            .map_err(|source| ApiError::Listeners { source })
            .inspect_err(|error| tracing::warn!(%error, "reload from the listener failed"))?;
    } else {
        let generation = state.registry.republish().await;
        tracing::info!(
            generation,
            recreate = is_true(&params, "recreate"),
            "Reloaded the routing table"
        );
    }
    Ok(view::json_response(
        StatusCode::OK,
        view::envelope("OK", "", "", None),
    ))
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
        view::json_response(StatusCode::OK, Value::Object(map))
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
        // A value never forges a line: control characters other than the line breaks are
        // escaped (and values with any are refused at admission).
        let text = admission::escape_control_keep_lines(&text);
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

async fn ping(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    if !state.ready.load(Ordering::SeqCst) {
        return Err(ApiError::NotReady);
    }
    Ok(view::json_response(
        StatusCode::OK,
        view::envelope("OK", "", "", None),
    ))
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
