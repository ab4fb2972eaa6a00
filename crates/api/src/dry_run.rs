//! `dryRun=true` on `reconfigure` and `remove`: the request is checked exactly as a real one
//! (parsing, the proxy instance filter, address validation, `serviceCert`, layer-4 port
//! conflicts) and the change it would make is shown, but nothing is applied, saved or
//! distributed. The answer is DFP's envelope plus a `DryRun` object holding the service's
//! routes as `/config` renders them, before and after.
//!
//! The batch form ([`batch`]): `reconfigure?dryRun=true` with the JSON document that
//! `/config?type=json` returns as the body (the whole wanted service set) checks every service
//! and shows the difference to the live set.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use sluice_core::params::{parse_go_bool, ParamError, ParamScope, KNOWN_PARAMS};
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
        (Some(b), Some(a)) => !crate::services::same_routing(&b.params, &a.params),
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

/// The fields of `/config?type=json` that are not parameters (or are handled on their own).
const NOT_PARAMS: [&str; 7] = [
    "ServiceName",
    "IsGlobal",
    "Warnings",
    "Replicas",
    "ServiceCert",
    "ServiceDest",
    "Distribute",
];

/// The parameters of one service of a `/config?type=json` document. `current` is the live
/// service of that name: its `serviceCert` (shown as `<set>`) and, when the user names are
/// the same, its users' passwords (never shown) are kept.
pub fn params_from_config(
    name: &str,
    value: &Value,
    current: Option<&Service>,
) -> Result<Params, String> {
    let Value::Object(fields) = value else {
        return Err("not a JSON object".into());
    };
    let mut params = Params::new();
    params.insert("serviceName".into(), name.to_string());
    if let Some(given) = fields.get("ServiceName").and_then(Value::as_str) {
        if !given.is_empty() && given != name {
            return Err(format!("ServiceName {given:?} differs from its key"));
        }
    }
    for (key, value) in fields {
        if NOT_PARAMS.contains(&key.as_str()) {
            continue;
        }
        add_param(&mut params, key, value, "", ParamScope::Service)?;
    }
    if fields.get("IsGlobal") == Some(&Value::Bool(false)) {
        if let Some(replicas) = fields.get("Replicas").and_then(Value::as_u64) {
            params.insert("replicas".into(), replicas.to_string());
        }
    }
    // The document shows user names only: the live passwords stay when the names are the same.
    if let (Some(names), Some(current)) = (params.get("users"), current) {
        let live: Vec<&str> = current.users.iter().map(|u| u.name.as_str()).collect();
        if *names == live.join(",") {
            if let Some(users) = current.params.get("users") {
                params.insert("users".into(), users.clone());
            }
        }
    }
    if fields.get("ServiceCert").and_then(Value::as_str) == Some("<set>") {
        if let Some(cert) = current.and_then(|s| s.params.get("serviceCert")) {
            params.insert("serviceCert".into(), cert.clone());
        }
    }
    let dests = match fields.get("ServiceDest") {
        None => &Vec::new(),
        Some(Value::Array(dests)) => dests,
        Some(_) => return Err("ServiceDest is not a list".into()),
    };
    for dest in dests {
        let Value::Object(dest) = dest else {
            return Err("a ServiceDest entry is not an object".into());
        };
        let suffix = match dest.get("Index").and_then(Value::as_u64) {
            None | Some(0) => String::new(),
            Some(i) => format!(".{i}"),
        };
        for (key, value) in dest {
            if key != "Index" {
                add_param(&mut params, key, value, &suffix, ParamScope::Destination)?;
            }
        }
    }
    Ok(params)
}

/// Adds the parameter behind one field (`ServicePath` → `servicePath`); empty, `false` and
/// `0` values are the defaults and are left out.
fn add_param(
    params: &mut Params,
    key: &str,
    value: &Value,
    suffix: &str,
    scope: ParamScope,
) -> Result<(), String> {
    let known = KNOWN_PARAMS
        .iter()
        .find(|k| k.scope == scope && k.name.eq_ignore_ascii_case(key))
        .ok_or_else(|| format!("unknown field {key}"))?;
    let text = match value {
        Value::Null => return Ok(()),
        Value::Bool(b) => b.then(|| "true".to_string()),
        Value::Number(n) => (n.as_u64() != Some(0)).then(|| n.to_string()),
        Value::String(s) => (!s.is_empty()).then(|| s.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Object(user) => user
                        .get("Username")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| format!("{key}: an entry has no Username")),
                    other => Ok(other.to_string()),
                })
                .collect::<Result<_, _>>()?;
            (!parts.is_empty()).then(|| parts.join(","))
        }
        Value::Object(map) => match map.get("Value") {
            // `UserAgent: {"Value": [...]}`.
            Some(Value::Array(items)) => {
                let parts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                (!parts.is_empty()).then(|| parts.join(","))
            }
            // `ServiceHeader: {"Name": "value"}`.
            _ => {
                let parts: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                    .collect();
                (!parts.is_empty()).then(|| parts.join(","))
            }
        },
    };
    if let Some(text) = text {
        params.insert(format!("{}{suffix}", known.name), text);
    }
    Ok(())
}

/// A service as the diff compares it: its `/config?type=json` form without warnings and
/// `distribute` (which is no change of the routing).
fn comparable(service: &Service) -> Value {
    let mut json = view::service_json(service);
    if let Value::Object(map) = &mut json {
        map.remove("Warnings");
        map.remove("Distribute");
    }
    json
}

/// The batch form: `dryRun=true` with a `/config?type=json` document as the body. Every
/// service is checked as a `reconfigure` would check it; the answer lists what would be
/// added, changed and removed (a live service missing from the document), with each service's
/// routes before and after, and every service's errors by name. Nothing is applied.
pub async fn batch(state: &ApiState, body: &[u8]) -> Result<Response, ApiError> {
    let document: Value = serde_json::from_slice(body).map_err(|e| ApiError::Params {
        service: String::new(),
        source: ParamError::Invalid {
            param: "body".into(),
            value: String::new(),
            reason: format!("not the JSON of /config?type=json: {e}"),
        },
    })?;
    let Value::Object(document) = document else {
        return Err(ApiError::Params {
            service: String::new(),
            source: ParamError::Invalid {
                param: "body".into(),
                value: String::new(),
                reason: "expected an object of services keyed by name".into(),
            },
        });
    };
    let live = state.registry.services();
    let render = |s: &Service| {
        admission::escape_control_keep_lines(&RouteTable::build([&Arc::new(s.clone())]).render())
    };
    let (mut added, mut changed, mut removed, mut unchanged) = (vec![], vec![], vec![], 0);
    let mut services = serde_json::Map::new();
    let mut errors = serde_json::Map::new();
    for (name, value) in &document {
        let before = live.get(name);
        let checked = match params_from_config(name, value, before.map(|s| s.as_ref())) {
            Ok(params) => check(state, &params, name).await,
            Err(message) => Err(message),
        };
        let after = match checked {
            Ok(service) => service,
            Err(message) => {
                errors.insert(name.clone(), json!(message));
                continue;
            }
        };
        let change = match before {
            None => "added",
            Some(b) if comparable(b) != comparable(&after) => "changed",
            Some(_) => "unchanged",
        };
        match change {
            "added" => added.push(name.clone()),
            "changed" => changed.push(name.clone()),
            _ => unchanged += 1,
        }
        if change != "unchanged" {
            services.insert(
                name.clone(),
                json!({
                    "Change": change,
                    "Before": before.map(|b| render(b)).unwrap_or_default(),
                    "After": render(&after),
                    "Warnings": after.warnings,
                }),
            );
        }
    }
    for (name, service) in live.iter() {
        if !document.contains_key(name) {
            removed.push(name.clone());
            services.insert(
                name.clone(),
                json!({"Change": "removed", "Before": render(service), "After": ""}),
            );
        }
    }
    let ok = errors.is_empty();
    tracing::info!(
        added = added.len(),
        changed = changed.len(),
        removed = removed.len(),
        errors = errors.len(),
        "batch dry run: nothing applied"
    );
    let message = if ok {
        String::new()
    } else {
        let names: Vec<&str> = errors.keys().map(String::as_str).collect();
        format!("invalid services: {}", names.join(", "))
    };
    let mut body = view::envelope(if ok { "OK" } else { "NOK" }, &message, "", None);
    if let Value::Object(map) = &mut body {
        map.insert(
            "DryRun".into(),
            json!({
                "Applied": false,
                "Added": added,
                "Changed": changed,
                "Removed": removed,
                "Unchanged": unchanged,
                "Services": services,
                "Errors": errors,
            }),
        );
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(view::json_response(status, body))
}

/// One service of a batch, checked as `reconfigure` checks it; the error as its message.
async fn check(state: &ApiState, params: &Params, name: &str) -> Result<Service, String> {
    let service = crate::parse(state, params, name.to_string())
        .await
        .map_err(|e| e.to_string())?;
    if let Admission::Ignored(message) = crate::admit(state, &service)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(message);
    }
    state
        .registry
        .check_ports(&service)
        .map_err(|e| e.to_string())?;
    Ok(service)
}
