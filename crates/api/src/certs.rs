//! Certificate endpoints and certificate distribution between replicas.
//!
//! * `PUT /v1/docker-flow-proxy/cert?certName=<file>[&distribute=true]` (body: combined PEM)
//!   validates the bundle, stores it as `CERTS_DIR/<file>` and swaps it in without a restart.
//!   A missing `certName`, an empty body, a name that is not a plain file name, or a bundle
//!   that is not usable is a **400** whose message names the problem, and nothing changes.
//!   With `distribute=true` the same PUT (with `distribute=false`) goes to every other replica
//!   (`tasks.<SERVICE_NAME>` on `PORT`) concurrently, each with a timeout; failed peers make the
//!   answer a 500 naming them.
//! * `GET /v1/docker-flow-proxy/certs` lists the loaded certificates — file name, origin,
//!   subject, DNS names, validity and the certificate chain — **never private keys** (DFP's
//!   listing handed out keys to anyone reaching the API).
//! * `GET /v1/docker-flow-proxy/cert?certName=<file>` returns one full `CERTS_DIR` bundle, key
//!   included, and only to a caller presenting the API credentials (`settings.api_auth`); with
//!   no API credentials configured it is refused (403). Replicas use it to copy their peers'
//!   certificates at startup ([`sync_from_peers`]).
//! * `serviceCert` on `/reconfigure` is stored as `CERTS_DIR/<first serviceDomain or
//!   serviceName>` ([`check_service_cert`] before the service is applied, [`store_service_cert`]
//!   after).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sluice_core::params::params_from_query;
use sluice_core::service::{DomainPattern, Service};
use sluice_proxy::certs::{CertError, CertInfo, CertStore};

use crate::error::{CertRequestError, ServiceCertError};
use crate::view::json_response;
use crate::{ApiError, ApiState};

/// The largest bundle accepted.
const MAX_BUNDLE: usize = 1024 * 1024;

pub(crate) fn rfc3339(unix: i64) -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// One certificate as the listing shows it (DFP's fields plus Sluice's; no private key).
pub fn cert_json(c: &CertInfo) -> Value {
    json!({
        "ServicePort": "",
        "ProxyServiceName": c.name,
        "CertsDir": c.dir.display().to_string(),
        "CertContent": c.chain_pem,
        "Origin": c.origin.as_str(),
        "Subject": c.subject,
        "DnsNames": c.dns_names,
        "NotBefore": rfc3339(c.not_before),
        "NotAfter": rfc3339(c.not_after),
        "Default": c.default,
    })
}

fn store(state: &ApiState) -> Option<&Arc<CertStore>> {
    state.certs.get()
}

/// `GET /v1/docker-flow-proxy/certs`.
pub async fn list(State(state): State<Arc<ApiState>>) -> Response {
    let Some(store) = store(&state) else {
        return json_response(
            StatusCode::OK,
            json!({"Status": "OK", "Message": "", "Certs": []}),
        );
    };
    let certs: Vec<Value> = store.list().iter().map(cert_json).collect();
    let problems: Vec<Value> = store
        .problems()
        .iter()
        .map(|p| json!({"Path": p.path.display().to_string(), "Reason": p.reason}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"Status": "OK", "Message": "", "Certs": certs, "Problems": problems}),
    )
}

/// `/v1/docker-flow-proxy/cert`: `PUT` (or `POST`) stores a bundle, `GET` hands one out to
/// authenticated peers.
pub async fn cert(
    State(state): State<Arc<ApiState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params_from_query(raw.as_deref().unwrap_or(""));
    let result = async {
        let name = params
            .get("certName")
            .filter(|n| !n.is_empty())
            .cloned()
            .ok_or(CertRequestError::MissingName)?;
        let store = store(&state).cloned().ok_or(CertRequestError::Disabled)?;
        if method == Method::GET {
            return bundle(&state, &store, &headers, &name);
        }
        if method != Method::PUT && method != Method::POST {
            return Err(CertRequestError::Method);
        }
        put(&state, store, &params, name, body).await
    }
    .await;
    result
        .inspect_err(|error| tracing::warn!(%error, "certificate request rejected"))
        .map_err(ApiError::from)
}

/// Stores a bundle (and sends it to the other replicas with `distribute=true`).
async fn put(
    state: &ApiState,
    store: Arc<CertStore>,
    params: &sluice_core::service::Params,
    name: String,
    body: Bytes,
) -> Result<Response, CertRequestError> {
    if body.is_empty() {
        return Err(CertRequestError::EmptyBody);
    }
    if body.len() > MAX_BUNDLE {
        return Err(CertRequestError::TooLarge {
            name,
            limit: MAX_BUNDLE,
        });
    }
    let info = {
        let name = name.clone();
        let body = body.clone();
        tokio::task::spawn_blocking(move || store.put(&name, &body)).await??
    };
    let mut message = String::new();
    if crate::is_true(params, "distribute") {
        match state.distributor.peers().await {
            Err(note) => message = format!("distribute: {note}; stored on this replica only"),
            Ok(peers) if peers.is_empty() => {
                message = "distribute: no other replica found".to_string()
            }
            Ok(peers) => {
                let failed = distribute(state, &peers, &name, body).await;
                if !failed.is_empty() {
                    return Err(CertRequestError::Distribution {
                        message: failed.join("; "),
                        cert: cert_json(&info),
                    });
                }
                message = format!("Distributed to all instances ({} peers)", peers.len());
            }
        }
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"Status": "OK", "Message": message, "Certs": [cert_json(&info)]}),
    ))
}

fn bundle(
    state: &ApiState,
    store: &CertStore,
    headers: &HeaderMap,
    name: &str,
) -> Result<Response, CertRequestError> {
    let expected =
        crate::access::peer_authorization(&state.settings).ok_or(CertRequestError::Forbidden)?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(CertRequestError::Unauthorized);
    }
    let bytes = store.bundle(name).map_err(|error| match error {
        CertError::Io { .. } => CertRequestError::NotFound {
            name: name.to_string(),
        },
        other => CertRequestError::Store(other),
    })?;
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    Ok(resp)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Sends the bundle to every peer concurrently; returns the failures.
pub(crate) async fn distribute(
    state: &ApiState,
    peers: &[std::net::IpAddr],
    name: &str,
    body: Bytes,
) -> Vec<String> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("certName", name)
        .append_pair("distribute", "false")
        .finish();
    state
        .peer_client
        .send_to_all(
            peers,
            state.settings.port,
            Method::PUT,
            &format!("/v1/docker-flow-proxy/cert?{query}"),
            body,
        )
        .await
}

/// Copies the `CERTS_DIR` certificates this replica lacks from its peers (run at startup,
/// before the proxy reports ready). Needs API credentials: peers only hand out private keys to
/// callers presenting them. Returns how many certificates were copied.
pub async fn sync_from_peers(state: &ApiState) -> usize {
    let Some(store) = store(state).cloned() else {
        return 0;
    };
    if state.settings.api_auth.is_none() {
        return 0;
    }
    let peers = match state.distributor.peers().await {
        Ok(peers) => peers,
        Err(note) => {
            tracing::debug!(%note, "certificate sync: no peers");
            return 0;
        }
    };
    let have: Vec<String> = store.list().into_iter().map(|c| c.name).collect();
    let client = &state.peer_client;
    let mut copied = 0;
    for ip in peers {
        let base = format!("http://{}", SocketAddr::new(ip, state.settings.port));
        let listing = client
            .get(&format!("{base}/v1/docker-flow-proxy/certs"))
            .await;
        let Ok(listing) = listing else { continue };
        let Ok(value) = serde_json::from_slice::<Value>(&listing) else {
            continue;
        };
        let names = value["Certs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["Origin"] == "certs-dir")
            .filter_map(|c| c["ProxyServiceName"].as_str().map(str::to_string));
        for name in names {
            if have.contains(&name) || sluice_proxy::certs::check_name(&name).is_err() {
                continue;
            }
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("certName", &name)
                .finish();
            let url = format!("{base}/v1/docker-flow-proxy/cert?{query}");
            match client.get(&url).await {
                Ok(pem) => {
                    let store = store.clone();
                    let stored_name = name.clone();
                    let put =
                        tokio::task::spawn_blocking(move || store.put(&stored_name, &pem)).await;
                    match put {
                        Ok(Ok(_)) => copied += 1,
                        Ok(Err(error)) => {
                            tracing::warn!(%ip, certificate = %name, %error, "certificate sync: rejected")
                        }
                        Err(error) => tracing::warn!(%error, "certificate sync task failed"),
                    }
                }
                Err(error) => {
                    tracing::warn!(%ip, certificate = %name, %error, "certificate sync: fetch failed")
                }
            }
        }
        if copied > 0 {
            break;
        }
    }
    if copied > 0 {
        tracing::info!(copied, "certificates copied from peers");
    }
    copied
}

/// The file a `serviceCert` is stored as: the first `serviceDomain` (without a leading `*.`),
/// or the service name.
pub fn service_cert_name(service: &Service) -> String {
    service
        .destinations
        .iter()
        .flat_map(|d| d.domains.first())
        .find_map(|d| match d {
            DomainPattern::Exact(s) | DomainPattern::Domain(s) => Some(s.clone()),
            DomainPattern::Suffix(s) => Some(s.trim_start_matches(['*', '.']).to_string()),
            DomainPattern::Regex(_) => None,
        })
        .filter(|n| sluice_proxy::certs::check_name(n).is_ok())
        .unwrap_or_else(|| service.name.clone())
}

/// Validates a service's `serviceCert` (call before applying the service).
pub fn check_service_cert(service: &Service) -> Result<(), CertError> {
    match &service.service_cert {
        Some(pem) => {
            sluice_proxy::certs::validate_bundle(&service_cert_name(service), pem.as_bytes())
        }
        None => Ok(()),
    }
}

/// A stored `serviceCert`, and what to put back should the service not be applied after all.
#[derive(Debug)]
pub struct StoredServiceCert {
    store: Arc<CertStore>,
    name: String,
    /// The bundle the file held before (`None`: there was no file).
    previous: Option<Vec<u8>>,
}

/// Stores a service's `serviceCert` before the service is applied. Returns `None` when the
/// service has none.
pub async fn store_service_cert(
    state: &ApiState,
    service: &Service,
) -> Result<Option<StoredServiceCert>, ServiceCertError> {
    let Some(pem) = service.service_cert.clone() else {
        return Ok(None);
    };
    let store = store(state).cloned().ok_or(ServiceCertError::Disabled)?;
    let name = service_cert_name(service);
    let task = {
        let store = store.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            let previous = store.bundle(&name).ok();
            store.put(&name, pem.as_bytes()).map(|_| previous)
        })
    };
    let previous = task
        .await
        .map_err(ServiceCertError::Task)?
        .map_err(ServiceCertError::Store)?;
    Ok(Some(StoredServiceCert {
        store,
        name,
        previous,
    }))
}

impl StoredServiceCert {
    /// Puts back what the file held before (the service it came with was not applied).
    pub async fn restore(self) {
        let StoredServiceCert {
            store,
            name,
            previous,
        } = self;
        let task = tokio::task::spawn_blocking(move || match previous {
            Some(bundle) => store
                .put(&name, &bundle)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => {
                let removed = std::fs::remove_file(store.certs_dir().join(&name));
                store.reload();
                removed.map_err(|e| format!("cannot remove {name}: {e}"))
            }
        });
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "serviceCert of a rejected change not restored")
            }
            Err(error) => tracing::error!(%error, "serviceCert restore task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::params::{parse_service, ParseContext};

    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn service_cert_names() {
        let svc = |q: &str| parse_service(&params_from_query(q), &ParseContext::default()).unwrap();
        assert_eq!(
            service_cert_name(&svc("serviceName=a&port=1&serviceDomain=Example.com,b.com")),
            "example.com"
        );
        assert_eq!(
            service_cert_name(&svc("serviceName=a&port=1&serviceDomain=*.example.com")),
            "example.com"
        );
        assert_eq!(
            service_cert_name(&svc("serviceName=a&port=1&servicePath=/")),
            "a"
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
