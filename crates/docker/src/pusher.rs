//! One task-set pusher per endpoint: `PUT /v1/sluice/tasks` with every watched service's
//! tasks, level-triggered like the notifications.
//!
//! A pusher follows the watcher's [`TaskSnapshot`]s and sends the newest membership whole
//! whenever it differs from what the proxy last confirmed, and again after every periodic
//! resync (the proxy does not persist it). A push in flight is dropped as soon as a newer
//! snapshot is published ("latest wins"). Failures are retried like notifications
//! ([`RetryPolicy`], `DF_RETRY` / `DF_RETRY_INTERVAL`); a refusal (4xx other than 408/429,
//! e.g. a proxy without this endpoint) waits for the next change or periodic resync.
//!
//! The URL is the endpoint's `http://host:port` with the path `/v1/sluice/tasks` and
//! `distribute=true`: like reconfigure notifications it reaches one proxy replica through the
//! service's virtual IP, which forwards it to the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::delivery::AttemptResult;
use crate::endpoint::Endpoint;
use crate::metrics::{Kind, Metrics};
use crate::notifier::{classify, RetryPolicy, Verdict};
use crate::tasks::TaskSnapshot;

/// The proxy's task-set endpoint.
pub(crate) const TASKS_PATH: &str = "/v1/sluice/tasks";

/// Something that can `PUT` a body (HTTP in production, scripted in tests).
pub(crate) trait Push: Send + Sync + 'static {
    fn push(
        &self,
        url: &str,
        auth: Option<&HeaderValue>,
        body: Bytes,
    ) -> impl Future<Output = AttemptResult> + Send;
}

/// The production HTTP/1.1 client.
pub(crate) struct HttpPush {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpPush {
    pub(crate) fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    async fn attempt(&self, url: &str, auth: Option<&HeaderValue>, body: Bytes) -> AttemptResult {
        let mut builder = Request::builder()
            .method(Method::PUT)
            .uri(url)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("sluice-listener/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let request = match builder.body(Full::new(body)) {
            Ok(request) => request,
            Err(e) => {
                return AttemptResult::Transport {
                    error: format!("cannot build request: {e}"),
                }
            }
        };
        match self.client.request(request).await {
            Ok(response) => {
                let status = response.status();
                let body = http_body_util::Limited::new(response.into_body(), 1024)
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                    .unwrap_or_default();
                AttemptResult::Status { status, body }
            }
            Err(e) => AttemptResult::Transport {
                error: e.to_string(),
            },
        }
    }
}

impl Push for HttpPush {
    async fn push(&self, url: &str, auth: Option<&HeaderValue>, body: Bytes) -> AttemptResult {
        match tokio::time::timeout(self.timeout, self.attempt(url, auth, body)).await {
            Ok(result) => result,
            Err(_) => AttemptResult::Transport {
                error: format!("no response within {:?}", self.timeout),
            },
        }
    }
}

/// The task-set pusher of one endpoint.
pub(crate) struct TaskPusher<P> {
    url: String,
    auth: Option<HeaderValue>,
    policy: RetryPolicy,
    push: Arc<P>,
    /// Counted as `kind="tasks"` in the notification counters.
    metrics: Arc<Metrics>,
}

impl<P: Push> TaskPusher<P> {
    /// The pusher for `endpoint` (`None` when it has no URL at all). The URL's own
    /// credentials win over `credentials` (`DF_PROXY_USER` / `DF_PROXY_PASS`).
    pub(crate) fn new(
        endpoint: &Endpoint,
        policy: RetryPolicy,
        push: Arc<P>,
        credentials: Option<HeaderValue>,
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        let target = endpoint.create.as_ref().or(endpoint.remove.as_ref())?;
        Some(Self {
            url: format!("http://{}{TASKS_PATH}?distribute=true", target.authority),
            auth: target.auth.clone().or(credentials),
            policy,
            push,
            metrics,
        })
    }

    /// Runs until `shutdown` is cancelled or the watcher goes away.
    pub(crate) async fn run(
        self,
        mut rx: watch::Receiver<Arc<TaskSnapshot>>,
        shutdown: CancellationToken,
    ) {
        // What the proxy confirmed, and the resync generation it was confirmed in.
        let mut confirmed: Option<(Arc<TaskSnapshot>, u64)> = None;
        // A snapshot not to push again (refused, or retries ran out) until it changes.
        let mut given_up: Option<Arc<TaskSnapshot>> = None;
        let mut failures = 0u32;
        loop {
            let snapshot = Arc::clone(&rx.borrow_and_update());
            let owed = snapshot.synced
                && !confirmed.as_ref().is_some_and(|(c, generation)| {
                    c.membership == snapshot.membership && *generation == snapshot.resync_generation
                })
                && given_up.as_ref() != Some(&snapshot);
            if owed {
                let body = match serde_json::to_vec(&snapshot.membership) {
                    Ok(body) => Bytes::from(body),
                    Err(error) => {
                        tracing::error!(%error, "cannot encode the task sets");
                        given_up = Some(Arc::clone(&snapshot));
                        continue;
                    }
                };
                let attempt = self.push.push(&self.url, self.auth.as_ref(), body);
                let result = tokio::select! {
                    () = shutdown.cancelled() => return,
                    result = attempt => result,
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        tracing::debug!(url = %self.url, "task push superseded by a newer state");
                        failures = 0;
                        continue;
                    }
                };
                let (verdict, detail) = match &result {
                    AttemptResult::Status { status, body } => (
                        classify(*status),
                        format!("status {status}: {}", body.trim()),
                    ),
                    AttemptResult::Transport { error } => (Verdict::Retry, error.clone()),
                };
                match verdict {
                    Verdict::Delivered => {
                        self.metrics.sent(Kind::Tasks);
                        tracing::debug!(url = %self.url, services = snapshot.membership.services.len(), "task sets delivered");
                        confirmed = Some((Arc::clone(&snapshot), snapshot.resync_generation));
                        given_up = None;
                        failures = 0;
                        continue;
                    }
                    Verdict::Rejected => {
                        self.metrics.failed(Kind::Tasks);
                        tracing::warn!(url = %self.url, %detail, "proxy refused the task sets; not retrying until they change or the next resync");
                        given_up = Some(Arc::clone(&snapshot));
                        failures = 0;
                    }
                    Verdict::Retry => {
                        failures = failures.saturating_add(1);
                        if self.policy.should_retry(failures) {
                            self.metrics.retried(Kind::Tasks);
                            tracing::warn!(url = %self.url, error = %detail, "Retrying task sets ({failures} try)");
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                () = tokio::time::sleep(self.policy.interval) => {}
                                changed = rx.changed() => if changed.is_err() { return },
                            }
                            continue;
                        }
                        self.metrics.failed(Kind::Tasks);
                        tracing::error!(url = %self.url, error = %detail, "task sets not delivered; trying again at the next change or resync");
                        given_up = Some(Arc::clone(&snapshot));
                        failures = 0;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hyper::StatusCode;
    use sluice_core::membership::{Membership, TaskSet};

    use super::*;
    use crate::endpoint::{Endpoint, Target};

    /// Answers with the scripted statuses in turn (then 200), recording every body.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<Vec<u16>>,
        seen: Mutex<Vec<(String, Option<String>, String)>>,
    }

    impl Push for Scripted {
        async fn push(&self, url: &str, auth: Option<&HeaderValue>, body: Bytes) -> AttemptResult {
            self.seen.lock().unwrap().push((
                url.to_owned(),
                auth.and_then(|a| a.to_str().ok()).map(str::to_owned),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let next = {
                let mut answers = self.answers.lock().unwrap();
                (!answers.is_empty()).then(|| answers.remove(0))
            };
            AttemptResult::Status {
                status: StatusCode::from_u16(next.unwrap_or(200)).unwrap(),
                body: String::new(),
            }
        }
    }

    fn snapshot(observed: u64, generation: u64) -> Arc<TaskSnapshot> {
        let set = TaskSet {
            observed_at_ms: observed,
            version: 1,
            tasks: Vec::new(),
        };
        Arc::new(TaskSnapshot {
            membership: Membership {
                observed_at_ms: observed,
                services: [("web".to_owned(), set)].into(),
            },
            synced: true,
            resync_generation: generation,
        })
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            create: Some(
                Target::parse(
                    "http://admin:pw@proxy:8080/v1/docker-flow-proxy/reconfigure",
                    Method::GET,
                )
                .unwrap(),
            ),
            remove: None,
        }
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pushes_retries_then_resends_only_on_change_or_resync() {
        let push = Arc::new(Scripted::default());
        let metrics = Arc::new(Metrics::default());
        *push.answers.lock().unwrap() = vec![503, 503];
        let policy = RetryPolicy {
            retries: 5,
            interval: Duration::from_secs(2),
        };
        let pusher = TaskPusher::new(
            &endpoint(),
            policy,
            Arc::clone(&push),
            None,
            Arc::clone(&metrics),
        )
        .unwrap();
        let (tx, rx) = watch::channel(Arc::new(TaskSnapshot::default()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pusher.run(rx, shutdown.clone()));
        settle().await;
        assert!(
            push.seen.lock().unwrap().is_empty(),
            "nothing before the first listing"
        );

        tx.send_replace(snapshot(100, 1));
        settle().await;
        assert_eq!(push.seen.lock().unwrap().len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(
            push.seen.lock().unwrap().len(),
            2,
            "retried after the interval"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        let seen = push.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "delivered on the third try");
        let (url, auth, body) = &seen[2];
        assert_eq!(url, "http://proxy:8080/v1/sluice/tasks?distribute=true");
        assert_eq!(auth.as_deref(), Some("Basic YWRtaW46cHc="));
        let sent: Membership = serde_json::from_str(body).unwrap();
        assert_eq!(sent, snapshot(100, 1).membership);
        let rendered = metrics.render();
        assert!(rendered.contains("sluice_listener_notifications_sent_total{kind=\"tasks\"} 1"));
        assert!(rendered.contains("sluice_listener_notification_retries_total{kind=\"tasks\"} 2"));

        // The same state again: nothing. A periodic resync: sent again. A change: sent.
        tx.send_replace(snapshot(100, 1));
        settle().await;
        assert_eq!(push.seen.lock().unwrap().len(), 3);
        tx.send_replace(snapshot(100, 2));
        settle().await;
        assert_eq!(push.seen.lock().unwrap().len(), 4);
        tx.send_replace(snapshot(200, 2));
        settle().await;
        assert_eq!(push.seen.lock().unwrap().len(), 5);

        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_waits_for_the_next_change() {
        let push = Arc::new(Scripted::default());
        let metrics = Arc::new(Metrics::default());
        *push.answers.lock().unwrap() = vec![404];
        let policy = RetryPolicy {
            retries: 5,
            interval: Duration::from_secs(1),
        };
        let pusher = TaskPusher::new(
            &endpoint(),
            policy,
            Arc::clone(&push),
            None,
            Arc::clone(&metrics),
        )
        .unwrap();
        let (tx, rx) = watch::channel(snapshot(100, 1));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pusher.run(rx, shutdown.clone()));
        settle().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(push.seen.lock().unwrap().len(), 1, "a 404 is not retried");
        tx.send_replace(snapshot(100, 2));
        settle().await;
        assert_eq!(
            push.seen.lock().unwrap().len(),
            2,
            "the next resync tries again"
        );
        shutdown.cancel();
        task.await.unwrap();
    }
}
