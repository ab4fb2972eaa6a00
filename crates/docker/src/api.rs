//! The listener's own HTTP API (on DFSL's paths), served on the socket the
//! binary binds.
//!
//! Endpoints (any method, exact paths, no authentication, like DFSL):
//! * `/v1/docker-flow-swarm-listener/notify-services`: asks every endpoint to re-send the
//!   create notification of every current service; answers `{"Status":"OK"}` at once;
//! * `/v1/docker-flow-swarm-listener/get-services`: JSON array of the create parameter
//!   maps (string -> string, keys sorted), ordered by `serviceName`. It is answered from
//!   the last listing, without calling Docker and without side effects (DFSL ran three
//!   Docker calls per service and queued notifications). Before the first listing
//!   it waits up to a few seconds and then answers `503` with `[]`, so a starting proxy
//!   (which treats any non-200 as "try again") never mistakes "not listed yet" for "no
//!   services";
//! * `/v1/docker-flow-swarm-listener/ping`: `{"Status":"OK"}` (liveness only);
//! * `/metrics`: Prometheus text (see [`crate::metrics`]).
//!
//! `get-nodes` is not implemented (404): Sluice has no node notifications and DFP does
//! not call it. Unlike Go, the JSON does not escape `<`, `>` and `&` as `\u003c` etc.;
//! both decode to the same strings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tokio::sync::watch;

use crate::desired::Desired;
use crate::metrics::Metrics;
use crate::watcher::ResendRequest;

/// Path prefix shared with DFSL.
const PREFIX: &str = "/v1/docker-flow-swarm-listener";

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) desired_rx: watch::Receiver<Arc<Desired>>,
    pub(crate) resend: Arc<ResendRequest>,
    pub(crate) metrics: Arc<Metrics>,
    /// How long `get-services` waits for the first listing.
    pub(crate) first_sync_wait: Duration,
}

pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/notify-services"), any(notify_services))
        .route(&format!("{PREFIX}/get-services"), any(get_services))
        .route(&format!("{PREFIX}/ping"), any(ping))
        .route("/metrics", any(metrics))
        .with_state(state)
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn status_ok() -> Response {
    json(StatusCode::OK, r#"{"Status":"OK"}"#.to_owned())
}

async fn notify_services(State(state): State<ApiState>) -> Response {
    tracing::info!("notify-services requested: re-sending create notifications");
    state.resend.request();
    status_ok()
}

async fn ping() -> Response {
    status_ok()
}

async fn get_services(State(mut state): State<ApiState>) -> Response {
    let waited = tokio::time::timeout(
        state.first_sync_wait,
        state.desired_rx.wait_for(|d| d.synced_at.is_some()),
    )
    .await;
    let desired = match waited {
        Ok(Ok(desired)) => Arc::clone(&desired),
        _ => return json(StatusCode::SERVICE_UNAVAILABLE, "[]".to_owned()),
    };
    let maps: Vec<&BTreeMap<String, String>> =
        desired.services.values().map(|p| &p.create).collect();
    match serde_json::to_string(&maps) {
        Ok(body) => json(StatusCode::OK, body),
        Err(error) => {
            tracing::error!(%error, "cannot encode get-services");
            json(StatusCode::INTERNAL_SERVER_ERROR, "[]".to_owned())
        }
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::SystemTime;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::params::Mode;
    use crate::test_support::demo_params;

    fn state(desired: Desired) -> (ApiState, watch::Sender<Arc<Desired>>) {
        let (tx, rx) = watch::channel(Arc::new(desired));
        (
            ApiState {
                desired_rx: rx,
                resend: Arc::new(ResendRequest::default()),
                metrics: Arc::new(Metrics::default()),
                first_sync_wait: Duration::from_millis(100),
            },
            tx,
        )
    }

    async fn call(state: &ApiState, method: &str, path: &str) -> (StatusCode, String, String) {
        let response = router(state.clone())
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn synced(names: &[(&str, Mode)]) -> Desired {
        let labels = [("com.df.servicePath", "/demo"), ("com.df.port", "8080")];
        Desired {
            services: names
                .iter()
                .map(|(n, mode)| ((*n).to_owned(), demo_params(n, &labels, *mode)))
                .collect(),
            synced_at: Some(SystemTime::now()),
            resync_generation: 1,
            force_generation: 0,
        }
    }

    #[tokio::test]
    async fn ping_and_notify_services_answer_status_ok_for_any_method() {
        let (state, _tx) = state(Desired::default());
        for method in ["GET", "POST", "PUT"] {
            let (status, ct, body) =
                call(&state, method, "/v1/docker-flow-swarm-listener/ping").await;
            assert_eq!(
                (status, ct.as_str(), body.as_str()),
                (StatusCode::OK, "application/json", r#"{"Status":"OK"}"#)
            );
        }
        let (status, _, body) = call(
            &state,
            "GET",
            "/v1/docker-flow-swarm-listener/notify-services",
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"Status":"OK"}"#)
        );
        assert!(
            state.resend.take(),
            "notify-services records a resend request"
        );
    }

    #[tokio::test]
    async fn get_services_returns_sorted_parameter_maps() {
        let (state, _tx) = state(synced(&[
            ("go-demo", Mode::Replicated(1)),
            ("a-global", Mode::Global),
        ]));
        let (status, ct, body) =
            call(&state, "GET", "/v1/docker-flow-swarm-listener/get-services").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct, "application/json");
        assert_eq!(
            body,
            r#"[{"distribute":"true","port":"8080","serviceName":"a-global","servicePath":"/demo"},{"distribute":"true","port":"8080","replicas":"1","serviceName":"go-demo","servicePath":"/demo"}]"#
        );
        let decoded: Vec<HashMap<String, String>> = serde_json::from_str(&body).unwrap();
        assert_eq!(decoded.len(), 2);
    }

    #[tokio::test]
    async fn get_services_before_the_first_listing_is_503_then_waits_for_it() {
        let (state, tx) = state(Desired::default());
        let (status, _, body) =
            call(&state, "GET", "/v1/docker-flow-swarm-listener/get-services").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "[]")
        );

        let mut slow = state.clone();
        slow.first_sync_wait = Duration::from_secs(5);
        let pending = tokio::spawn(async move {
            call(&slow, "GET", "/v1/docker-flow-swarm-listener/get-services").await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(Arc::new(Desired {
            synced_at: Some(SystemTime::now()),
            ..Desired::default()
        }));
        let (status, _, body) = pending.await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    }

    #[tokio::test]
    async fn metrics_and_unknown_paths() {
        let (state, _tx) = state(Desired::default());
        let (status, ct, body) = call(&state, "GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/plain; version=0.0.4"));
        assert!(body.contains("sluice_listener_services 0"));
        let (status, _, _) = call(&state, "GET", "/v1/docker-flow-swarm-listener/get-nodes").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(&state, "GET", "/v1/docker-flow-swarm-listener/ping/").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "paths are exact");
    }
}
