//! The ACME endpoints of the control API: `GET /v1/docker-flow-proxy/acme` (this replica's
//! state, which the other replicas read for their dashboards), and, between replicas,
//! `…/acme/challenge` and `…/acme/account` (see the parent module).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_core::params::params_from_query;

use super::{account, AcmeRequestError, Challenge};
use crate::view::json_response;
use crate::{ApiError, ApiState};

/// The largest challenge or account body accepted.
const MAX_BODY: usize = 64 * 1024;

fn authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), AcmeRequestError> {
    let expected =
        crate::access::peer_authorization(&state.settings).ok_or(AcmeRequestError::Forbidden)?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crate::certs::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AcmeRequestError::Unauthorized)
    }
}

/// `…/acme/challenge`: `PUT` (JSON challenge) publishes, `DELETE ?token=` withdraws.
pub async fn challenge(
    State(state): State<Arc<ApiState>>,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let acme = state.acme.get().ok_or(AcmeRequestError::Method)?;
    match method {
        Method::PUT => {
            if body.len() > MAX_BODY {
                return Err(AcmeRequestError::BadBody("challenge body too large".into()).into());
            }
            let c: Challenge = serde_json::from_slice(&body)
                .map_err(|e| AcmeRequestError::BadBody(format!("not a challenge: {e}")))?;
            acme.add(c).map_err(AcmeRequestError::BadBody)?;
        }
        Method::DELETE => {
            let params = params_from_query(raw.as_deref().unwrap_or(""));
            let token = params
                .get("token")
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    AcmeRequestError::BadBody("query parameter token is mandatory".into())
                })?;
            acme.remove(token);
        }
        _ => return Err(AcmeRequestError::Method.into()),
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"Status": "OK", "Message": ""}),
    ))
}

/// `…/acme/account`: hands the account credentials to a peer (`GET`) or takes them (`PUT`);
/// only with API credentials configured and presented.
pub async fn account_endpoint(
    State(state): State<Arc<ApiState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorized(&state, &headers)?;
    let dir = state.settings.data_dir.clone();
    match method {
        Method::GET => {
            let json = tokio::fs::read(account::account_file(&dir))
                .await
                .map_err(|_| AcmeRequestError::NotFound)?;
            let mut resp = (StatusCode::OK, json).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        Method::PUT => {
            if body.len() > MAX_BODY {
                return Err(AcmeRequestError::BadBody("account body too large".into()).into());
            }
            account::check_credentials(&body, &state.settings.acme.directory)
                .map_err(AcmeRequestError::BadBody)?;
            tokio::task::spawn_blocking(move || account::write_credentials(&dir, &body))
                .await
                .map_err(|e| AcmeRequestError::Store(e.to_string()))?
                .map_err(|e| AcmeRequestError::Store(e.to_string()))?;
            tracing::info!("ACME account received from a replica");
            Ok(json_response(
                StatusCode::OK,
                json!({"Status": "OK", "Message": ""}),
            ))
        }
        _ => Err(AcmeRequestError::Method.into()),
    }
}

/// `GET /v1/docker-flow-proxy/acme`: whether this replica orders, and the state of each
/// certificate it orders ([`Reported`]: last error, failures, renewal and retry times, an
/// order in progress). The other replicas read it for their dashboards.
pub async fn status(State(state): State<Arc<ApiState>>) -> Response {
    let Some(acme) = state.acme.get() else {
        return json_response(
            StatusCode::OK,
            json!({"Status": "OK", "Holder": false, "Certificates": []}),
        );
    };
    let certificates = acme.reported();
    json_response(
        StatusCode::OK,
        json!({
            "Status": "OK",
            "Holder": acme.metrics.holder.load(Ordering::Relaxed),
            "Certificates": certificates,
        }),
    )
}
