//! `GET /v1/sluice/explain`: what the data plane would do with a hypothetical request, and why.
//!
//! Parameters: `url` (absolute `http://…`/`https://…`, or a path with the Host given as a
//! `header`), `method` (default `GET`), `header=Name:Value` (repeatable), `srcPort` (the proxy
//! port the request arrives on; default the URL's port, else 80 or 443), `format=text` (or
//! `Accept: text/plain`) for text instead of JSON.
//!
//! The answer comes from the code the data plane runs: [`RouteTable::explain`] (the routing
//! decision by `decide` itself, plus the first failed term of every other route) and
//! [`route::refusal`] (the `httpsOnly` redirect and the deny rules). Upstream addresses come
//! from the data plane's name cache as it stands; explain never looks a name up itself.
//!
//! [`RouteTable::explain`]: sluice_core::route::RouteTable::explain

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sluice_core::params::ParamError;
use sluice_core::redact::REDACTED;
use sluice_core::route::{self, Arrival, Decision, RequestFacts, Route, Verdict};
use sluice_core::service::Service;
use sluice_core::uri_path;

use crate::{view, ApiError, ApiState};

/// What explain reads of the running data plane.
#[derive(Debug, Clone)]
pub struct PlaneView {
    /// The upstream name cache.
    pub names: Arc<sluice_proxy::names::Names>,
    /// The first TLS port (where `httpsOnly` redirects to).
    pub https_port: Option<u16>,
}

/// The hypothetical request, checked.
#[derive(Debug)]
struct Question {
    method: Method,
    /// The normalised path with the query, as the data plane sees it after making the
    /// request canonical.
    path_and_query: String,
    path_len: usize,
    headers: HeaderMap,
    tls: bool,
    src_port: u16,
    text: bool,
}

impl Question {
    fn path(&self) -> &str {
        &self.path_and_query[..self.path_len]
    }

    fn host(&self) -> Option<&str> {
        self.headers.get(HOST).and_then(|h| h.to_str().ok())
    }

    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            host: self.host(),
            path: self.path(),
            path_and_query: &self.path_and_query,
            local_port: self.src_port,
            headers: &self.headers,
        }
    }
}

fn bad(param: &str, value: &str, reason: impl Into<String>) -> ApiError {
    ApiError::Params {
        service: String::new(),
        source: ParamError::Invalid {
            param: param.into(),
            value: value.into(),
            reason: reason.into(),
        },
    }
}

/// Headers whose value is a credential: never echoed in an error.
fn is_credential(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|c| name.trim().eq_ignore_ascii_case(c))
}

fn parse(raw: Option<&str>, accept: &HeaderMap) -> Result<Question, ApiError> {
    let mut url = None;
    let mut method = None;
    let mut src_port = None;
    let mut format = None;
    let mut headers = HeaderMap::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "url" => url = Some(value.into_owned()),
            "method" => method = Some(value.into_owned()),
            "srcPort" => src_port = Some(value.into_owned()),
            "format" => format = Some(value.into_owned()),
            "header" => {
                let Some((name, val)) = value.split_once(':') else {
                    return Err(bad("header", &value, "expected Name:Value"));
                };
                let shown = if is_credential(name) {
                    format!("{name}:{REDACTED}")
                } else {
                    value.to_string()
                };
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| bad("header", &shown, "not a valid header name"))?;
                let val = HeaderValue::from_str(val.trim())
                    .map_err(|_| bad("header", &shown, "not a valid header value"))?;
                headers.append(name, val);
            }
            _ => {}
        }
    }
    let text = match format.as_deref() {
        None => accept
            .get(ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/plain")),
        Some("text") => true,
        Some("json") => false,
        Some(other) => return Err(bad("format", other, "expected text or json")),
    };
    let method = match method.as_deref() {
        None | Some("") => Method::GET,
        Some(m) => Method::from_bytes(m.as_bytes())
            .ok()
            .filter(|_| m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
            .ok_or_else(|| bad("method", m, "not an HTTP method"))?,
    };
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Err(bad("url", "", "missing: give the request's URL"));
    };
    let uri: Uri = url
        .parse()
        .map_err(|_| bad("url", &url, "not a URL or path"))?;
    let tls = match uri.scheme_str() {
        None => false,
        Some("http") => false,
        Some("https") => true,
        Some(_) => return Err(bad("url", &url, "the scheme must be http or https")),
    };
    if uri.scheme().is_some() != uri.authority().is_some() || uri.path().is_empty() {
        return Err(bad("url", &url, "expected http(s)://host/path or /path"));
    }
    if let Some(authority) = uri.authority() {
        let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
        let value = HeaderValue::from_str(host_port).map_err(|_| bad("url", &url, "bad host"))?;
        headers.insert(HOST, value);
    }
    let path = uri_path::normalize(uri.path()).map_err(|e| bad("url", &url, e.to_string()))?;
    let path_len = path.len();
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    let src_port = match src_port.as_deref() {
        None | Some("") => uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("srcPort", p, "not a port (1-65535)"))?,
    };
    Ok(Question {
        method,
        path_and_query,
        path_len,
        headers,
        tls,
        src_port,
        text,
    })
}

/// The handler.
pub async fn explain(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let question = parse(raw.as_deref(), &headers)?;
    let snapshot = state.registry.snapshot();
    let body = answer(&state, &snapshot, &question);
    if question.text {
        let mut resp = (StatusCode::OK, render_text(&body)).into_response();
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Ok(resp);
    }
    Ok(view::json_response(StatusCode::OK, body))
}

fn answer(state: &ApiState, snapshot: &sluice_proxy::snapshot::Snapshot, q: &Question) -> Value {
    let facts = q.facts();
    let explained = snapshot.table.explain(&facts);
    let mut out = serde_json::Map::new();
    out.insert(
        "request".into(),
        json!({
            "method": q.method.as_str(),
            "host": q.host(),
            "path": q.path(),
            "pathAndQuery": q.path_and_query,
            "srcPort": q.src_port,
            "tls": q.tls,
        }),
    );
    out.insert("generation".into(), json!(snapshot.generation));
    let (outcome, status, location) = match &explained.decision {
        Decision::NoRoute => ("noRoute", Some(503), None),
        Decision::Redirect { status, location } => ("redirect", Some(*status), Some(location)),
        Decision::Forward(_) => ("forward", None, None),
    };
    let mut outcome = outcome;
    let mut status = status;
    let mut location = location.cloned();
    let mut rule = explained.redirect.as_ref().map(
        |(service, dest, rule)| json!({"rule": rule, "service": service, "destination": dest}),
    );
    let mut route_json = Value::Null;
    if let Decision::Forward(chosen) = &explained.decision {
        let arrival = Arrival {
            method: q.method.as_str(),
            tls: q.tls,
            client_cert_verified: false,
        };
        if let Some(refusal) = route::refusal(chosen.destination(), arrival) {
            status = Some(refusal.status());
            outcome = "deny";
            if let route::Refusal::HttpsOnly { .. } = refusal {
                outcome = "redirect";
                let https_port = state.plane.get().and_then(|p| p.https_port);
                location = Some(route::https_location(
                    q.host(),
                    &q.path_and_query,
                    https_port,
                ));
            }
            rule = Some(json!({
                "rule": refusal.parameter(),
                "service": chosen.service.name,
                "destination": chosen.destination().index,
            }));
        }
        route_json = route_json_of(state, snapshot, chosen, q, explained.by_default);
    }
    out.insert("outcome".into(), json!(outcome));
    out.insert("status".into(), json!(status));
    out.insert("location".into(), json!(location));
    out.insert("rule".into(), rule.unwrap_or(Value::Null));
    out.insert("route".into(), route_json);
    let routes: Vec<Value> = explained
        .routes
        .iter()
        .map(|(route, verdict)| {
            let (verdict, condition, detail) = match verdict {
                Verdict::Chosen => ("chosen", None, None),
                Verdict::Matches => (
                    "matches",
                    None,
                    Some("matches, but an earlier rule won".to_string()),
                ),
                Verdict::Fails(m) => (
                    "fails",
                    Some(m.parameter(route)),
                    Some(m.detail(route, &facts)),
                ),
            };
            json!({
                "service": route.service.name,
                "backend": route.backend_name(),
                "destination": route.destination().index,
                "verdict": verdict,
                "condition": condition,
                "detail": detail,
            })
        })
        .collect();
    out.insert("routes".into(), Value::Array(routes));
    Value::Object(out)
}

fn route_json_of(
    state: &ApiState,
    snapshot: &sluice_proxy::snapshot::Snapshot,
    route: &Route,
    q: &Question,
    by_default: bool,
) -> Value {
    let dest = route.destination();
    let rewritten = route.rewritten_path(q.path());
    let auth = match snapshot
        .auth
        .gate(&route.service.name, dest.ignore_authorization)
    {
        Some(gate) => json!({
            "realm": gate.realm(),
            "users": gate.user_count(),
            "source": auth_source(&route.service),
        }),
        None => Value::Null,
    };
    let host = route.upstream_host();
    let tasks_first = dest.outbound_hostname.is_none();
    json!({
        "service": route.service.name,
        "backend": route.backend_name(),
        "destination": dest.index,
        "https": route.https,
        "default": by_default,
        "rewrittenPath": rewritten,
        "auth": auth,
        "upstream": upstream_json(state, host, tasks_first, route.upstream_port),
    })
}

/// Where the users of a gate come from (never a password).
fn auth_source(service: &Service) -> String {
    match (&service.users_secret, service.users.is_empty()) {
        (Some(secret), true) => format!("usersSecret (dfp_users_{secret})"),
        (Some(secret), false) => format!("users, passwords from usersSecret (dfp_users_{secret})"),
        (None, false) => "users".to_string(),
        (None, true) => "USERS (global)".to_string(),
    }
}

/// The upstream addresses the data plane would use: the listener's ready tasks when it
/// reports the service, else the name cache's answer; with the addresses passive health has
/// ejected.
fn upstream_json(state: &ApiState, host: &str, tasks_first: bool, port: u16) -> Value {
    let mut value = upstream_addresses(state, host, tasks_first, port);
    let health = state.registry.stats();
    let ejected: Vec<String> = value["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, port))
        .filter(|addr| health.health().report(*addr).ejected)
        .map(|addr| addr.ip().to_string())
        .collect();
    value["ejected"] = json!(ejected);
    value
}

fn upstream_addresses(state: &ApiState, host: &str, tasks_first: bool, port: u16) -> Value {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return json!({
            "host": host, "port": port, "addresses": [ip.to_string()], "state": "address",
        });
    }
    if tasks_first {
        let map = state.tasks.cell().load_full();
        if let Some(tasks) = map.services.get(host).filter(|t| t.reachable()) {
            return json!({
                "host": host,
                "port": port,
                "lookup": "the listener's task set",
                "addresses": tasks.ready().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "state": "tasks",
            });
        }
    }
    let lookup = if tasks_first {
        format!("tasks.{host}, then {host}")
    } else {
        host.to_string()
    };
    let cached = state
        .plane
        .get()
        .and_then(|plane| plane.names.peek(host, tasks_first));
    match cached {
        Some(peek) => json!({
            "host": host,
            "port": port,
            "lookup": lookup,
            "addresses": peek.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "state": peek.state,
            "error": peek.error,
            "ageMs": peek.age.as_millis() as u64,
        }),
        None => json!({
            "host": host,
            "port": port,
            "lookup": lookup,
            "addresses": [],
            "state": "not resolved yet",
        }),
    }
}

fn render_text(body: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let req = &body["request"];
    let _ = writeln!(
        out,
        "request: {} {}{} on port {}{}",
        s(&req["method"]),
        req["host"]
            .as_str()
            .map(|h| format!("{h} "))
            .unwrap_or_default(),
        s(&req["pathAndQuery"]),
        s(&req["srcPort"]),
        if req["tls"] == true { " (tls)" } else { "" }
    );
    let _ = writeln!(
        out,
        "outcome: {} (status {})",
        s(&body["outcome"]),
        s(&body["status"])
    );
    if let Some(rule) = body["rule"].as_object() {
        let _ = writeln!(
            out,
            "rule: {} of {}",
            s(&rule["rule"]),
            rule.get("service").map(&s).unwrap_or_default()
        );
    }
    if !body["location"].is_null() {
        let _ = writeln!(out, "location: {}", s(&body["location"]));
    }
    if let Some(route) = body["route"].as_object() {
        let _ = writeln!(
            out,
            "route: {} ({}){}",
            s(&route["service"]),
            s(&route["backend"]),
            if route["default"] == true {
                " as default backend"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "rewritten path: {}", s(&route["rewrittenPath"]));
        match route["auth"].as_object() {
            Some(auth) => {
                let _ = writeln!(
                    out,
                    "auth: realm {} ({} users from {})",
                    s(&auth["realm"]),
                    s(&auth["users"]),
                    s(&auth["source"])
                );
            }
            None => {
                let _ = writeln!(out, "auth: none");
            }
        }
        let up = &route["upstream"];
        let addresses: Vec<String> = up["addresses"]
            .as_array()
            .map(|a| a.iter().map(&s).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "upstream: {}:{} [{}] {}{}",
            s(&up["host"]),
            s(&up["port"]),
            addresses.join(", "),
            s(&up["state"]),
            match up["ejected"].as_array() {
                Some(e) if !e.is_empty() => format!(
                    " (ejected by passive health: {})",
                    e.iter().map(&s).collect::<Vec<_>>().join(", ")
                ),
                _ => String::new(),
            }
        );
    }
    let _ = writeln!(out, "routes, in evaluation order:");
    for r in body["routes"].as_array().into_iter().flatten() {
        let _ = match r["verdict"].as_str() {
            Some("fails") => writeln!(
                out,
                "  {} ({}): fails {}: {}",
                s(&r["service"]),
                s(&r["backend"]),
                s(&r["condition"]),
                s(&r["detail"])
            ),
            _ => writeln!(
                out,
                "  {} ({}): {}",
                s(&r["service"]),
                s(&r["backend"]),
                s(&r["verdict"])
            ),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(query: &str) -> Result<Question, String> {
        parse(Some(query), &HeaderMap::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let ok = q(
            "url=http%3A%2F%2Fexample.com%3A8080%2Fa%2F..%2Fb%3Fx%3D1&header=X-A:1&header=X-A:2",
        )
        .unwrap();
        assert_eq!(ok.path(), "/b");
        assert_eq!(ok.path_and_query, "/b?x=1");
        assert_eq!(ok.host(), Some("example.com:8080"));
        assert_eq!(ok.src_port, 8080);
        assert_eq!(ok.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(q("url=https://e.com/").unwrap().src_port, 443);
        for (query, param) in [
            ("url=ftp://e.com/", "url"),
            ("method=GET", "url"),
            ("url=/a&method=G%20T", "method"),
            ("url=/a&srcPort=0", "srcPort"),
            ("url=/a&srcPort=port", "srcPort"),
            ("url=/a&header=NoColon", "header"),
            ("url=/a&header=Bad%20Name:1", "header"),
            ("url=/a&format=xml", "format"),
        ] {
            let error = q(query).unwrap_err();
            assert!(error.contains(param), "{query}: {error}");
        }
        let error = q("url=/a&header=Authorization:%01secret").unwrap_err();
        assert!(!error.contains("secret"), "{error}");
    }
}
