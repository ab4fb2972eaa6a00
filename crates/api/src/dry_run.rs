//! `dryRun=true` on `reconfigure` and `remove`: the request is checked exactly as a real one
//! (parsing, the proxy instance filter, address validation, `serviceCert`, layer-4 port
//! conflicts) and the change it would make is shown, but nothing is applied, saved or
//! distributed. The answer is DFP's envelope plus a `DryRun` object holding the service's
//! routes as `/config` renders them, before and after.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use sluice_core::params::{parse_go_bool, ParamError};
use sluice_core::route::RouteTable;
use sluice_core::service::{Params, Service};

use crate::{admission, view, Admission, ApiError, ApiState};

/// The query parameter asking for a dry run.
pub const PARAM: &str = "dryRun";

/// Takes `dryRun` out of `params` (it is never part of a service): true for a dry run. A value
/// that is not one of Go's booleans is a 400 naming it.
pub fn take(params: &mut Params, service: &str) -> Result<bool, ApiError> {
    let Some(value) = params.remove(PARAM) else {
        return Ok(false);
    };
    parse_go_bool(&value).ok_or_else(|| ApiError::Params {
        service: service.to_string(),
        source: ParamError::Invalid {
            param: PARAM.into(),
            value,
            reason: "not a boolean (true or false)".into(),
        },
    })
}

/// What `reconfigure` with these parameters would do.
pub async fn reconfigure(
    state: &ApiState,
    params: &Params,
    name: String,
) -> Result<Response, ApiError> {
    let service = crate::parse(state, params, name).await?;
    if let Admission::Ignored(message) = crate::admit(state, &service).await? {
        return Ok(answer(&service.name, &message, Some(&service), None, None));
    }
    let before = state.registry.services().get(&service.name).cloned();
    if service.replicas == Some(0) {
        return Ok(answer(
            &service.name,
            &service.warnings.join("; "),
            Some(&service),
            before,
            None,
        ));
    }
    state
        .registry
        .check_ports(&service)
        .map_err(|source| ApiError::Commit {
            service: service.name.clone(),
            source,
        })?;
    let after = Arc::new(service.clone());
    Ok(answer(
        &service.name,
        &service.warnings.join("; "),
        Some(&service),
        before,
        Some(after),
    ))
}

/// What `remove` of `name` would do.
pub fn remove(state: &ApiState, name: &str) -> Result<Response, ApiError> {
    if name.is_empty() {
        return Err(ApiError::MissingServiceName);
    }
    let before = state.registry.services().get(name).cloned();
    Ok(answer(name, "", None, before, None))
}

fn answer(
    name: &str,
    message: &str,
    service: Option<&Service>,
    before: Option<Arc<Service>>,
    after: Option<Arc<Service>>,
) -> Response {
    let changed = match (&before, &after) {
        (Some(b), Some(a)) => !crate::sync::same_routing(&b.params, &a.params),
        (None, None) => false,
        _ => true,
    };
    let render = |s: &Option<Arc<Service>>| {
        s.as_ref().map_or_else(String::new, |s| {
            admission::escape_control_keep_lines(&RouteTable::build([s]).render())
        })
    };
    tracing::info!(service = %name, changed, "dry run: nothing applied");
    let mut body = view::envelope("OK", message, name, service);
    if let Value::Object(map) = &mut body {
        map.insert(
            "DryRun".into(),
            json!({
                "Applied": false,
                "Changed": changed,
                "Existed": before.is_some(),
                "Exists": after.is_some(),
                "Before": render(&before),
                "After": render(&after),
            }),
        );
    }
    view::json_response(StatusCode::OK, body)
}
