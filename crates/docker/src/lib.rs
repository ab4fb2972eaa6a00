//! Sluice's Docker Swarm listener: the Rust counterpart of Docker Flow Swarm Listener.
//!
//! It watches Swarm services that carry the notify label (`com.df.notify=true` by
//! default), sends the proxy a *create* notification (`reconfigure?…`) when such a service
//! appears or its `com.df.*` labels or replica count change, and a *remove* notification
//! when it disappears or loses the label. It also serves DFSL's small HTTP API, which
//! Docker Flow Proxy pulls at start-up (`get-services`).
//!
//! What this crate does not do: route traffic, talk to the proxy's data plane, or send
//! node notifications (`DF_NOTIFY_*_NODE_URL`, `get-nodes`, `nodeInfo`).
//!
//! # Layout
//! * `settings`: environment variables and secrets ([`ListenerSettings`]);
//! * `watcher`: Docker connection, listing, event stream, resync and reconnect;
//! * `params`: labels -> notification parameters; `desired`: the published state and
//!   the pure diff; `query`: DFSL-compatible URL encoding; `endpoint`: configured URLs;
//! * `notifier`: one delivery task per endpoint (retry, supersession); `delivery`: HTTP;
//! * `api`: `notify-services`, `get-services`, `ping`, `metrics`; `metrics`: counters;
//! * `tasks`: task listing and task sets; `pusher`: `PUT /v1/sluice/tasks` per endpoint;
//! * `backoff`: reconnect delays.
//!
//! # Flow
//! The watcher lists services and publishes a snapshot (service name -> parameters) on a
//! `watch` channel. Each endpoint task diffs the newest snapshot against what it last
//! delivered and sends what is owed, so it is level-triggered: a missed event, a failed
//! delivery or a restart of the proxy is repaired by the next listing instead of being
//! lost.
//!
//! With each listing the watcher also lists the watched services' tasks (again every 250 ms
//! while a service converges) and publishes their task sets; one pusher per endpoint sends
//! them whole to the proxy's `/v1/sluice/tasks` (see `tasks` and `pusher`).

mod api;
mod backoff;
mod delivery;
mod desired;
mod endpoint;
mod metrics;
mod notifier;
mod params;
mod pusher;
mod query;
mod session;
mod settings;
mod tasks;
#[cfg(test)]
mod test_support;
mod watcher;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use backoff::BackoffError;
pub use endpoint::TargetError;
pub use settings::{ListenerSettings, ListenerSettingsError};

use crate::api::ApiState;
use crate::delivery::HttpDelivery;
use crate::desired::Desired;
use crate::metrics::Metrics;
use crate::notifier::EndpointWorker;
use crate::pusher::{HttpPush, TaskPusher};
use crate::settings::DockerHost;
use crate::tasks::TaskSnapshot;
use crate::watcher::{ResendRequest, WatchConfig, Watcher};

/// How long `get-services` waits for the first Docker listing before answering 503.
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(5);

/// Errors from building or running the listener.
#[derive(Debug, Error)]
pub enum DockerError {
    /// `DF_DOCKER_HOST` names a unix socket that does not exist (usually a missing
    /// `--mount type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock`).
    #[error("Docker socket {path} does not exist; mount /var/run/docker.sock into the container or set DF_DOCKER_HOST")]
    SocketNotFound {
        /// The socket path.
        path: String,
    },
    /// The HTTP API server failed.
    #[error("listener API server failed: {source}")]
    Serve {
        /// I/O error from the server.
        #[source]
        source: std::io::Error,
    },
}

/// The Swarm listener: watcher, notifier and HTTP API.
pub struct SwarmListener {
    settings: ListenerSettings,
}

impl std::fmt::Debug for SwarmListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmListener")
            .field("docker_host", &self.settings.docker_host())
            .field("endpoints", &self.settings.endpoints())
            .finish()
    }
}

impl SwarmListener {
    /// Checks what can be checked without connecting: a unix socket must exist. The
    /// connection itself is made (and re-made) by [`SwarmListener::run`].
    pub fn new(settings: ListenerSettings) -> Result<Self, DockerError> {
        if let DockerHost::Unix(path) = &settings.docker_host {
            if !Path::new(path).exists() {
                return Err(DockerError::SocketNotFound { path: path.clone() });
            }
        }
        Ok(Self { settings })
    }

    /// Runs until `shutdown` resolves: watcher + notifier + HTTP API on the already-bound
    /// listener. Docker outages are retried forever (with backoff) and do not end it; it
    /// returns an error only if the API server fails.
    pub async fn run(
        self,
        api: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DockerError> {
        let settings = self.settings;
        let token = CancellationToken::new();
        let trigger = token.clone();
        let shutdown_task = tokio::spawn(async move {
            tokio::select! {
                () = shutdown => trigger.cancel(),
                () = trigger.cancelled() => {}
            }
        });

        tracing::info!(docker = %settings.docker_host, "Starting Docker Flow: Swarm Listener (Sluice)");
        for warning in &settings.unsupported {
            tracing::warn!("Ignoring unsupported setting {warning}");
        }
        if settings.endpoints.is_empty() {
            tracing::warn!("No notification URLs configured (DF_NOTIFY_CREATE_SERVICE_URL / DF_NOTIFY_REMOVE_SERVICE_URL); only the API is served");
        }
        if !settings.use_events {
            tracing::warn!(
                interval_s = settings.resync_interval.as_secs(),
                "DF_USE_DOCKER_SERVICE_EVENTS=false: changes are only seen by periodic listing"
            );
        }

        let metrics = Arc::new(Metrics::default());
        let resend = Arc::new(ResendRequest::default());
        let (desired_tx, desired_rx) = watch::channel(Arc::new(Desired::default()));

        let mut tasks = Vec::new();
        let (tasks_tx, tasks_rx) = watch::channel(Arc::new(TaskSnapshot::default()));
        let push = Arc::new(HttpPush::new(settings.notify_timeout));
        let delivery = Arc::new(HttpDelivery::new(settings.notify_timeout));
        for endpoint in &settings.endpoints {
            tracing::info!(endpoint = %endpoint.describe(), "Notification endpoint");
            let worker = EndpointWorker::new(
                endpoint.clone(),
                settings.retry,
                Arc::clone(&delivery),
                settings.credentials.clone(),
                Arc::clone(&metrics),
            );
            tasks.push(tokio::spawn(worker.run(desired_rx.clone(), token.clone())));
            if let Some(pusher) = TaskPusher::new(
                endpoint,
                settings.retry,
                Arc::clone(&push),
                settings.credentials.clone(),
                Arc::clone(&metrics),
            ) {
                tasks.push(tokio::spawn(pusher.run(tasks_rx.clone(), token.clone())));
            }
        }

        let config = WatchConfig {
            host: settings.docker_host.clone(),
            rules: settings.rules.clone(),
            resync_interval: settings.resync_interval,
            use_events: settings.use_events,
            backoff: settings.backoff.clone(),
        };
        let mut watcher = Watcher::new(
            config,
            Arc::clone(&metrics),
            desired_tx,
            Arc::clone(&resend),
        );
        if !settings.endpoints.is_empty() {
            watcher = watcher.with_tasks(tasks_tx);
        }
        tasks.push(tokio::spawn(watcher.run(token.clone())));

        let app = api::router(ApiState {
            desired_rx,
            resend,
            metrics,
            first_sync_wait: FIRST_SYNC_WAIT,
        });
        if let Ok(addr) = api.local_addr() {
            tracing::info!(%addr, "Listener API listening");
        }
        let served = axum::serve(api, app)
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .await;

        token.cancel();
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "listener task failed");
            }
        }
        if let Err(error) = shutdown_task.await {
            tracing::error!(%error, "shutdown task failed");
        }
        served.map_err(|source| DockerError::Serve { source })
    }
}
