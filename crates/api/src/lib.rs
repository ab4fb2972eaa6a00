//! Sluice's control API: Docker Flow Proxy's endpoints on `PORT`, and the registry behind them.
//!
//! Endpoints (any method, as DFP):
//! - `/v1/docker-flow-proxy/reconfigure` — add or replace a service from query parameters.
//! - `/v1/docker-flow-proxy/remove` — remove a service by `serviceName`.
//! - `/v1/docker-flow-proxy/reload` — re-publish the routing table (`recreate=true`).
//! - `/v1/docker-flow-proxy/config` — the live routing table as text, or the services as JSON
//!   (`type=json`); the generation and digest of the routing state are in response headers.
//! - `/v1/docker-flow-proxy/ping` — liveness.
//!
//! The API never touches sockets of the data plane; it changes routing only through the
//! [`registry::Registry`]. A rejected request changes nothing.

pub mod registry;
pub mod store;
pub mod view;

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::Value;
use sluice_core::params::{params_from_query, parse_service};
use sluice_core::service::Params;
use sluice_core::settings::Settings;

use crate::registry::Registry;

/// What every handler shares.
pub struct ApiState {
    /// The single writer of routing state.
    pub registry: Arc<Registry>,
    /// The proxy's settings.
    pub settings: Arc<Settings>,
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
        .fallback(not_found)
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

fn is_true(params: &Params, key: &str) -> bool {
    params
        .get(key)
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
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
    let message = service.warnings.join("; ");
    let body = view::envelope("OK", &message, &name, Some(&service));
    let change = state.registry.apply(service).await;
    tracing::info!(
        service = %name,
        generation = change.generation,
        replaced = change.existed,
        "Reconfigured {name}"
    );
    json_response(StatusCode::OK, body)
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
    json_response(StatusCode::OK, view::envelope("OK", "", &name, None))
}

async fn reload(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Response {
    let params = query_params(raw);
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
        let text = format!(
            "# sluice routing table, generation {} digest {}\n{}",
            snapshot.generation,
            snapshot.digest,
            snapshot.table.render()
        );
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

async fn ping() -> Response {
    json_response(StatusCode::OK, view::envelope("OK", "", "", None))
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
