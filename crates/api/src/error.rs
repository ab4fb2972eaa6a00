//! Every way a control API request fails, and the one place that turns a failure into DFP's
//! status code and JSON envelope ([`ApiError`]'s [`IntoResponse`]).
//!
//! Service endpoints answer with DFP's envelope (`Status`, `Message`, `ServiceName`, then the
//! service's fields when there is one); certificate endpoints with `Status`, `Message`,
//! `Certs`. Messages never carry a secret value (see [`sluice_core::redact`]).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sluice_core::params::ParamError;
use sluice_core::service::Service;
use sluice_proxy::certs::CertError;

use crate::registry::CommitError;
use crate::sync::NotifyError;
use crate::view;

/// A failed control API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The parameters do not describe a valid service: 400, or 409 for an http destination
    /// with neither path nor domain (as DFP; the listener does not retry it).
    #[error("{source}")]
    Params {
        /// The `serviceName` given (may be empty).
        service: String,
        /// What is wrong.
        #[source]
        source: ParamError,
    },
    /// `remove` without `serviceName`: 400.
    #[error("The serviceName query is mandatory")]
    MissingServiceName,
    /// `SKIP_ADDRESS_VALIDATION=false` and the service's host does not resolve: 500 (as DFP).
    #[error("cannot resolve {host}: {source}")]
    Unresolvable {
        /// The parsed service (shown in the envelope).
        service: Box<Service>,
        /// The host looked up.
        host: String,
        /// The resolver's answer.
        #[source]
        source: std::io::Error,
    },
    /// The `serviceCert` is not a usable bundle: 400.
    #[error("{source}")]
    InvalidServiceCert {
        /// The service.
        service: String,
        /// What is wrong with the bundle.
        #[source]
        source: CertError,
    },
    /// The `serviceCert` could not be stored: 500, nothing applied.
    #[error("{source}")]
    ServiceCertNotStored {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: ServiceCertError,
    },
    /// The change was not committed: 400 for a layer-4 port conflict, else 500 (a port that
    /// cannot be bound, a state file that cannot be written). Nothing applied.
    #[error("{source}")]
    Commit {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: CommitError,
    },
    /// Applied here, but some replicas did not take it: 500 naming them.
    #[error("{message}")]
    Distribution {
        /// The service.
        service_name: String,
        /// The parsed service, for a reconfigure (shown in the envelope).
        service: Option<Box<Service>>,
        /// Warnings, the failed replicas and their reasons.
        message: String,
    },
    /// `reload?fromListener=true` could not reach the listeners: 500.
    #[error("{source}")]
    Listeners {
        /// Why.
        #[source]
        source: NotifyError,
    },
    /// A `/v1/sluice/tasks` body that is not a valid membership: 400 naming the field.
    #[error("invalid task membership: {field}: {reason}")]
    Tasks {
        /// Where in the body (`services.web.tasks[0].state`), or `body` / `method`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `ping` before the initial sync from the listener: 503.
    #[error("waiting for the initial sync from LISTENER_ADDRESS")]
    NotReady,
    /// `API_USER`/`API_PASS` are set and the request lacks them: 401 with a challenge.
    #[error("authentication required")]
    Unauthorized,
    /// A blocking task (parsing a service) failed: 500.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A certificate request failed (certificate envelope).
    #[error(transparent)]
    Cert(#[from] CertRequestError),
    /// An ACME endpoint request failed.
    #[error(transparent)]
    Acme(#[from] AcmeRequestError),
}

/// A failed `/cert` request.
#[derive(Debug, thiserror::Error)]
pub enum CertRequestError {
    /// No `certName`: 400.
    #[error("Query parameter certName is mandatory")]
    MissingName,
    /// This proxy has no certificate store: 503.
    #[error("certificates are not enabled on this proxy")]
    Disabled,
    /// A method other than GET, PUT or POST: 405.
    #[error("use PUT to store a certificate, GET to fetch one")]
    Method,
    /// An empty body: 400.
    #[error("Body is empty")]
    EmptyBody,
    /// A body over the limit: 400.
    #[error("certificate {name}: larger than {limit} bytes")]
    TooLarge {
        /// The certificate.
        name: String,
        /// The limit.
        limit: usize,
    },
    /// The bundle or its name was refused (400), or it could not be written (500).
    #[error(transparent)]
    Store(#[from] CertError),
    /// The blocking store task failed: 500.
    #[error("certificate store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// `GET` of a bundle that does not exist: 404.
    #[error("no certificate {name}")]
    NotFound {
        /// The certificate.
        name: String,
    },
    /// `GET` of a bundle while no API credentials are configured: 403.
    #[error(
        "certificate bundles (private keys) are only served when API credentials are configured"
    )]
    Forbidden,
    /// `GET` of a bundle without the API credentials: 401.
    #[error("API credentials required")]
    Unauthorized,
    /// Stored here, but some replicas did not take it: 500 naming them.
    #[error("Distribution request failed: {message}")]
    Distribution {
        /// The failed replicas and their reasons.
        message: String,
        /// The stored certificate, as the listing shows it.
        cert: Value,
    },
}

impl ApiError {
    /// The status DFP answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Params { source, .. } if source.is_conflict() => StatusCode::CONFLICT,
            ApiError::Params { .. }
            | ApiError::MissingServiceName
            | ApiError::InvalidServiceCert { .. }
            | ApiError::Tasks { .. } => StatusCode::BAD_REQUEST,
            ApiError::Commit { source, .. } if source.is_client_error() => StatusCode::BAD_REQUEST,
            ApiError::Unresolvable { .. }
            | ApiError::ServiceCertNotStored { .. }
            | ApiError::Commit { .. }
            | ApiError::Distribution { .. }
            | ApiError::Listeners { .. }
            | ApiError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Cert(error) => error.status(),
            ApiError::Acme(error) => error.status(),
        }
    }

    /// The envelope's `ServiceName`.
    fn service_name(&self) -> &str {
        match self {
            ApiError::Params { service, .. }
            | ApiError::InvalidServiceCert { service, .. }
            | ApiError::ServiceCertNotStored { service, .. }
            | ApiError::Commit { service, .. } => service,
            ApiError::Unresolvable { service, .. } => &service.name,
            ApiError::Distribution { service_name, .. } => service_name,
            ApiError::MissingServiceName
            | ApiError::Listeners { .. }
            | ApiError::Tasks { .. }
            | ApiError::NotReady
            | ApiError::Unauthorized
            | ApiError::Task(_)
            | ApiError::Cert(_)
            | ApiError::Acme(_) => "",
        }
    }

    /// The service whose fields the envelope shows, when there is one.
    fn service(&self) -> Option<&Service> {
        match self {
            ApiError::Unresolvable { service, .. } => Some(service),
            ApiError::Distribution { service, .. } => service.as_deref(),
            _ => None,
        }
    }
}

impl CertRequestError {
    fn status(&self) -> StatusCode {
        match self {
            CertRequestError::MissingName
            | CertRequestError::EmptyBody
            | CertRequestError::TooLarge { .. } => StatusCode::BAD_REQUEST,
            CertRequestError::Store(CertError::Io { .. })
            | CertRequestError::Task(_)
            | CertRequestError::Distribution { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            CertRequestError::Store(_) => StatusCode::BAD_REQUEST,
            CertRequestError::Disabled => StatusCode::SERVICE_UNAVAILABLE,
            CertRequestError::Method => StatusCode::METHOD_NOT_ALLOWED,
            CertRequestError::NotFound { .. } => StatusCode::NOT_FOUND,
            CertRequestError::Forbidden => StatusCode::FORBIDDEN,
            CertRequestError::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        let body = match &self {
            ApiError::Cert(CertRequestError::Distribution { cert, .. }) => {
                json!({"Status": "NOK", "Message": message, "Certs": [cert]})
            }
            ApiError::Cert(_) => json!({"Status": "NOK", "Message": message, "Certs": Value::Null}),
            _ => view::envelope("NOK", &message, self.service_name(), self.service()),
        };
        let mut resp = view::json_response(status, body);
        let realm = match &self {
            ApiError::Unauthorized => Some("Basic realm=\"Sluice API\""),
            ApiError::Cert(CertRequestError::Unauthorized) => Some("Basic realm=\"sluice\""),
            _ => None,
        };
        if let Some(realm) = realm {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(realm));
        }
        resp
    }
}

/// A `serviceCert` that could not be stored (the service is then not applied).
#[derive(Debug, thiserror::Error)]
pub enum ServiceCertError {
    /// This proxy has no certificate store.
    #[error("serviceCert not stored: certificates are not enabled on this proxy")]
    Disabled,
    /// Writing the file failed.
    #[error("serviceCert not stored: {0}")]
    Store(#[source] CertError),
    /// The blocking write task failed.
    #[error("serviceCert not stored: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// A failed request to the ACME endpoints.
#[derive(Debug, thiserror::Error)]
pub enum AcmeRequestError {
    /// Account credentials asked for or sent while no API credentials are configured: 403.
    #[error("the ACME account is only exchanged when API_USER and API_PASS are configured")]
    Forbidden,
    /// The caller lacks the API credentials: 401.
    #[error("API credentials required")]
    Unauthorized,
    /// A body that is not what the endpoint takes: 400 naming the problem.
    #[error("{0}")]
    BadBody(String),
    /// The endpoint does not take this method: 405.
    #[error("method not allowed here")]
    Method,
    /// Nothing to hand out: 404.
    #[error("no ACME account on this replica")]
    NotFound,
    /// Storing failed: 500.
    #[error("{0}")]
    Store(String),
}

impl AcmeRequestError {
    /// The status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            AcmeRequestError::Forbidden => StatusCode::FORBIDDEN,
            AcmeRequestError::Unauthorized => StatusCode::UNAUTHORIZED,
            AcmeRequestError::BadBody(_) => StatusCode::BAD_REQUEST,
            AcmeRequestError::Method => StatusCode::METHOD_NOT_ALLOWED,
            AcmeRequestError::NotFound => StatusCode::NOT_FOUND,
            AcmeRequestError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(resp: Response) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_envelope_keeps_dfps_key_order() {
        let error = ApiError::Params {
            service: "go-demo".into(),
            source: ParamError::MissingPort,
        };
        let resp = error.into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let text = body(resp).await;
        let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap_or(usize::MAX);
        assert!(
            at("Status") < at("Message") && at("Message") < at("ServiceName"),
            "{text}"
        );
        assert!(text.starts_with(r#"{"Status":"NOK","Message":"#), "{text}");
    }

    #[test]
    fn statuses_follow_dfp() {
        let params = |source| ApiError::Params {
            service: String::new(),
            source,
        };
        assert_eq!(
            params(ParamError::HttpWithoutPathOrDomain).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            params(ParamError::MissingServiceName).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(ApiError::NotReady.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            ApiError::Cert(CertRequestError::Method).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let resp = ApiError::Unauthorized.into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"Sluice API\""
        );
    }
}
