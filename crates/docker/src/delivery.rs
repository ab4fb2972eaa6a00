//! Sending one notification request over HTTP/1.1 and reporting what happened.
//!
//! Owns the HTTP client side: building the request (method, URL, optional basic auth,
//! no body, like DFSL), the per-request timeout (DFSL had none), and reading at
//! most a small prefix of the response body for logs. It makes no retry decisions: it
//! returns an [`AttemptResult`] and the endpoint task decides. Redirects are not followed.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::header::{HeaderValue, AUTHORIZATION, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice_core::redact::redact_url;

/// Longest response-body prefix kept for logs.
const BODY_LOG_LIMIT: usize = 1024;

/// One HTTP request to make.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct NotificationRequest {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) auth: Option<HeaderValue>,
}

impl std::fmt::Debug for NotificationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationRequest")
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttemptResult {
    /// The proxy answered.
    Status { status: StatusCode, body: String },
    /// No answer: connect error, I/O error or timeout.
    Transport { error: String },
}

/// Something that can perform a notification request (HTTP in production, scripted in tests).
pub(crate) trait Deliver: Send + Sync + 'static {
    fn deliver(&self, request: &NotificationRequest) -> impl Future<Output = AttemptResult> + Send;
}

/// The production HTTP/1.1 client.
#[derive(Clone)]
pub(crate) struct HttpDelivery {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    user_agent: HeaderValue,
}

impl HttpDelivery {
    pub(crate) fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let user_agent =
            HeaderValue::from_static(concat!("sluice-listener/", env!("CARGO_PKG_VERSION")));
        Self {
            client,
            timeout,
            user_agent,
        }
    }

    async fn attempt(&self, request: &NotificationRequest) -> AttemptResult {
        let uri: Uri = match request.url.parse() {
            Ok(uri) => uri,
            Err(e) => {
                return AttemptResult::Transport {
                    error: format!("invalid URL: {e}"),
                }
            }
        };
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(uri)
            .header(USER_AGENT, self.user_agent.clone());
        if let Some(auth) = &request.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let req = match builder.body(Empty::new()) {
            Ok(req) => req,
            Err(e) => {
                return AttemptResult::Transport {
                    error: format!("cannot build request: {e}"),
                }
            }
        };
        let response = match self.client.request(req).await {
            Ok(response) => response,
            Err(e) => {
                return AttemptResult::Transport {
                    error: error_chain(&e),
                }
            }
        };
        let status = response.status();
        let mut body = response.into_body();
        let mut prefix = Vec::new();
        while prefix.len() < BODY_LOG_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = BODY_LOG_LIMIT - prefix.len();
                        prefix.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // The status is what counts; a broken body after it is only logged.
                Some(Err(_)) | None => break,
            }
        }
        AttemptResult::Status {
            status,
            body: String::from_utf8_lossy(&prefix).into_owned(),
        }
    }
}

impl Deliver for HttpDelivery {
    async fn deliver(&self, request: &NotificationRequest) -> AttemptResult {
        match tokio::time::timeout(self.timeout, self.attempt(request)).await {
            Ok(result) => result,
            Err(_) => AttemptResult::Transport {
                error: format!("no response within {:?}", self.timeout),
            },
        }
    }
}

/// Joins an error and its sources (hyper's top-level message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::HeaderMap;
    use axum::Router;

    use super::*;

    #[tokio::test]
    async fn sends_method_url_and_auth_and_reads_status() {
        type Seen = Vec<(String, String, Option<String>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let record = Arc::clone(&seen);
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let record = Arc::clone(&record);
            async move {
                let auth = headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                record
                    .lock()
                    .unwrap()
                    .push((method.to_string(), uri.to_string(), auth));
                (StatusCode::CONFLICT, "duplicate")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let delivery = HttpDelivery::new(Duration::from_secs(5));
        let result = delivery
            .deliver(&NotificationRequest {
                method: Method::POST,
                url: format!("http://{addr}/reconfigure?serviceName=a"),
                auth: Some(crate::endpoint::basic_auth("u", "p")),
            })
            .await;
        assert_eq!(
            result,
            AttemptResult::Status {
                status: StatusCode::CONFLICT,
                body: "duplicate".into()
            }
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(
                "POST".to_owned(),
                "/reconfigure?serviceName=a".to_owned(),
                Some("Basic dTpw".to_owned())
            )]
        );
    }

    #[tokio::test]
    async fn times_out_on_a_silent_server_and_reports_refused_connections() {
        // Accepts connections but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let delivery = HttpDelivery::new(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let result = delivery
            .deliver(&NotificationRequest {
                method: Method::GET,
                url: format!("http://{addr}/x"),
                auth: None,
            })
            .await;
        assert!(
            matches!(result, AttemptResult::Transport { .. }),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));

        // A port nobody listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let result = delivery
            .deliver(&NotificationRequest {
                method: Method::GET,
                url: format!("http://{closed_addr}/x"),
                auth: None,
            })
            .await;
        assert!(
            matches!(result, AttemptResult::Transport { .. }),
            "{result:?}"
        );
    }
}
