//! Control API protection (beyond DFP, whose API was open to anyone reaching port 8080).
//!
//! With `API_USER`/`API_PASS` set (environment or `dfp_api_user`/`dfp_api_pass` secrets),
//! every request needs those credentials as HTTP basic auth (realm `Sluice API`), except the
//! probes `/v1/docker-flow-proxy/ping` and `/v1/docker-flow-proxy/successfulinitreload` (they
//! reveal one bit each and health checks cannot send credentials) and the Prometheus
//! endpoint `/metrics`. The
//! list is of open paths rather than protected ones, so a path spelled in an unexpected way is
//! protected by default. Without the variables nothing changes. Replicas of one proxy service
//! share the variables, and send them to each other with [`peer_authorization`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_core::settings::Settings;
use sluice_proxy::auth::{basic_header, plain_matches};

use crate::{ApiError, ApiState};

/// The realm of the control API's challenge.
pub const API_REALM: &str = "Sluice API";

/// Paths that never need credentials.
const OPEN_PATHS: [&str; 3] = [
    "/v1/docker-flow-proxy/ping",
    "/v1/docker-flow-proxy/successfulinitreload",
    "/metrics",
];

/// True when `path` needs credentials (when credentials are configured at all).
pub fn is_protected(path: &str) -> bool {
    !OPEN_PATHS.contains(&path)
}

/// The `Authorization` value to send to peers and listeners: this proxy's own API
/// credentials, which its replicas share. `None` when the API is open.
pub fn peer_authorization(settings: &Settings) -> Option<String> {
    settings
        .api_auth
        .as_ref()
        .map(|c| basic_header(&c.user, &c.password))
}

/// Middleware enforcing `API_USER`/`API_PASS`.
pub async fn guard(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if let Some(creds) = &state.settings.api_auth {
        if is_protected(req.uri().path())
            && !plain_matches(req.headers(), &creds.user, &creds.password)
        {
            tracing::info!(path = %req.uri().path(), "control API request without valid credentials");
            return unauthorized();
        }
    }
    next.run(req).await
}

fn unauthorized() -> Response {
    ApiError::Unauthorized.into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::header;
    use sluice_core::credentials::Credentials;

    use super::*;

    #[test]
    fn only_probes_and_metrics_are_open() {
        assert!(!is_protected("/v1/docker-flow-proxy/ping"));
        assert!(!is_protected("/v1/docker-flow-proxy/successfulinitreload"));
        assert!(!is_protected("/metrics"));
        for path in [
            "/v1/docker-flow-proxy/reconfigure",
            "/v1/docker-flow-proxy/config",
            "/v1/docker-flow-proxy/metrics",
            "/v1/docker-flow-proxy/ping/",
            "//v1/docker-flow-proxy/reconfigure",
            "/v1/docker-flow-proxy/%70ing",
            "/",
        ] {
            assert!(is_protected(path), "{path}");
        }
    }

    #[test]
    fn peers_get_the_proxy_credentials() {
        let mut settings = Settings::default();
        assert_eq!(peer_authorization(&settings), None);
        settings.api_auth = Some(Credentials {
            user: "api".into(),
            password: "key".into(),
        });
        assert_eq!(
            peer_authorization(&settings).as_deref(),
            Some("Basic YXBpOmtleQ==")
        );
    }

    #[test]
    fn the_challenge_names_the_realm() {
        let r = unauthorized();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            format!("Basic realm=\"{API_REALM}\"")
        );
    }
}
