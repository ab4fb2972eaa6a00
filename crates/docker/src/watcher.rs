//! The Swarm watcher: connect, list, follow events, resync, reconnect.
//!
//! Owns the Docker Engine connection and publishes the desired state ([`Desired`]) on a
//! `watch` channel; it never sends notifications itself. One session is:
//! 1. check the daemon answers `/_ping` and read its API version, so the client never
//!    claims a newer version than the daemon supports (daemons reject those);
//! 2. subscribe to `/events?filters={"type":["service"]}` with `since` = a few seconds
//!    ago, so nothing between the listing and the subscription is missed (DFSL had no
//!    `since`);
//! 3. list the services carrying the notify label and publish the result;
//! 4. on every service event, list again after a short debounce; list again every resync
//!    period (30 s or `DF_SERVICE_POLLING_INTERVAL`) and on `notify-services`.
//!
//! Any Docker error ends the session; the next one starts after an exponential backoff
//! (reset after a successful listing) that shutdown interrupts. Because every change is
//! applied by re-listing, a lost or reordered event can delay a notification but never
//! make it wrong. Task and node events are not followed: replica counts come from the
//! service spec, which changes through service events.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{EventsOptions, ListServicesOptions};
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::desired::Desired;
use crate::metrics::Metrics;
use crate::params::{listing, ParamRules, Skip};
use crate::settings::DockerHost;

/// Quiet time after a service event before re-listing, so bursts cost one listing.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How far back the event subscription starts, covering the listing race and clock skew.
const EVENTS_LOOKBACK: Duration = Duration::from_secs(5);
/// Timeout for ordinary Docker API calls (not the event stream body).
const DOCKER_TIMEOUT_SECS: u64 = 30;

/// Why a session with the Docker Engine ended.
#[derive(Debug, Error)]
pub(crate) enum SessionError {
    #[error("cannot connect to Docker at {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Docker at {host} did not answer /_ping: {source}")]
    Ping {
        host: String,
        #[source]
        source: hyper::Error,
    },
    #[error("Docker API call {call} failed: {source}")]
    Api {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker event stream ended")]
    StreamEnded,
}

/// A pending `notify-services` request. Requests made while a listing is running are
/// kept (a stored permit) and served by the next one.
#[derive(Debug, Default)]
pub(crate) struct ResendRequest {
    pending: AtomicBool,
    notify: Notify,
}

impl ResendRequest {
    pub(crate) fn request(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub(crate) fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }
}

type EventStream = Pin<
    Box<dyn Stream<Item = Result<bollard::models::EventMessage, bollard::errors::Error>> + Send>,
>;

/// What the watcher watches and how it reconnects.
#[derive(Debug, Clone)]
pub(crate) struct WatchConfig {
    pub(crate) host: DockerHost,
    pub(crate) rules: ParamRules,
    /// Period of full resyncs.
    pub(crate) resync_interval: Duration,
    /// Follow the event stream (`DF_USE_DOCKER_SERVICE_EVENTS`).
    pub(crate) use_events: bool,
    pub(crate) backoff: Backoff,
}

pub(crate) struct Watcher {
    host: DockerHost,
    rules: ParamRules,
    resync_interval: Duration,
    use_events: bool,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    desired_tx: watch::Sender<Arc<Desired>>,
    resend: Arc<ResendRequest>,
    /// Skip reasons already logged, so a steady state is not logged every resync.
    reported: BTreeMap<String, Skip>,
}

impl Watcher {
    pub(crate) fn new(
        config: WatchConfig,
        metrics: Arc<Metrics>,
        desired_tx: watch::Sender<Arc<Desired>>,
        resend: Arc<ResendRequest>,
    ) -> Self {
        Self {
            host: config.host,
            rules: config.rules,
            resync_interval: config.resync_interval,
            use_events: config.use_events,
            backoff: config.backoff,
            metrics,
            desired_tx,
            resend,
            reported: BTreeMap::new(),
        }
    }

    /// Runs sessions until `shutdown` is cancelled.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let error = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.session() => match result {
                    Ok(never) => match never {},
                    Err(error) => error,
                },
            };
            self.metrics.reconnect();
            let delay = self.backoff.next_delay();
            tracing::warn!(
                error = %error,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "{error}, Restarting docker event stream"
            );
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(&mut self) -> Result<std::convert::Infallible, SessionError> {
        let docker = connect(&self.host).await?;
        let mut events: Option<EventStream> = self.use_events.then(|| subscribe(&docker));
        self.resync(&docker, true).await?;
        self.backoff.reset();
        if self.use_events {
            tracing::info!("Listening to Docker Service Events");
        }

        let mut periodic =
            tokio::time::interval_at(Instant::now() + self.resync_interval, self.resync_interval);
        periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty_at: Option<Instant> = None;
        let resend = Arc::clone(&self.resend);
        loop {
            tokio::select! {
                event = next_event(&mut events) => match event {
                    Some(Ok(message)) => {
                        let actor = message.actor.as_ref();
                        tracing::debug!(
                            action = message.action.as_deref().unwrap_or(""),
                            id = actor.and_then(|a| a.id.as_deref()).unwrap_or(""),
                            name = actor
                                .and_then(|a| a.attributes.as_ref())
                                .and_then(|a| a.get("name"))
                                .map_or("", String::as_str),
                            "Docker service event"
                        );
                        dirty_at.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                    }
                    Some(Err(source)) => return Err(SessionError::Api { call: "events", source }),
                    None => return Err(SessionError::StreamEnded),
                },
                () = sleep_until_opt(dirty_at) => {
                    dirty_at = None;
                    self.resync(&docker, false).await?;
                }
                _ = periodic.tick() => {
                    self.resync(&docker, true).await?;
                }
                () = resend.notify.notified() => {
                    self.resync(&docker, false).await?;
                }
            }
        }
    }

    /// Lists the watched services and publishes the result. `periodic` marks a full resync
    /// (endpoints then retry notifications whose retries ran out).
    async fn resync(&mut self, docker: &Docker, periodic: bool) -> Result<(), SessionError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![self.rules.notify_label.key.clone()],
        )]);
        let services = docker
            .list_services(Some(ListServicesOptions {
                filters: Some(filters),
                status: None,
            }))
            .await
            .map_err(|source| SessionError::Api {
                call: "list services",
                source,
            })?;
        let listing = listing(&services, &self.rules);
        self.report_skipped(&listing.skipped);
        let force = self.resend.take();
        let now = SystemTime::now();
        self.metrics.resynced(listing.services.len(), now);
        let count = listing.services.len();
        self.desired_tx.send_if_modified(|current| {
            let first = current.synced_at.is_none();
            if !(first || periodic || force || current.services != listing.services) {
                return false;
            }
            *current = Arc::new(Desired {
                services: listing.services,
                synced_at: Some(now),
                resync_generation: current.resync_generation + u64::from(periodic),
                force_generation: current.force_generation + u64::from(force),
            });
            true
        });
        if force {
            tracing::info!(
                services = count,
                "Re-sending create notifications for all services"
            );
        }
        Ok(())
    }

    fn report_skipped(&mut self, skipped: &BTreeMap<String, Skip>) {
        for (name, skip) in skipped {
            if self.reported.get(name) == Some(skip) {
                continue;
            }
            let key = &self.rules.notify_label.key;
            match skip {
                Skip::NotEnabled { value } => tracing::info!(
                    service = %name,
                    "Service {name} has {key}={value:?}, which does not enable notifications (use true)"
                ),
                Skip::DuplicateName { service_name, kept } => tracing::warn!(
                    service = %name,
                    "Service {name} maps to serviceName {service_name}, already used by {kept}; ignoring it"
                ),
                Skip::Malformed => {
                    tracing::warn!(service = %name, "Docker returned a service without a name; ignoring it")
                }
                Skip::NoLabel => {
                    tracing::debug!(service = %name, "Service {name} has no {key} label")
                }
            }
        }
        self.reported = skipped.clone();
    }
}

/// Asks the daemon for its API version and builds a client that speaks it (or bollard's
/// newest, if older).
pub(crate) async fn connect(host: &DockerHost) -> Result<Docker, SessionError> {
    let server = match host {
        DockerHost::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|source| SessionError::Connect {
                    host: host.to_string(),
                    source,
                })?;
            ping(stream, host).await?
        }
        DockerHost::Tcp(addr) => {
            let hostport = addr.trim_start_matches("tcp://");
            let stream = tokio::net::TcpStream::connect(hostport)
                .await
                .map_err(|source| SessionError::Connect {
                    host: host.to_string(),
                    source,
                })?;
            ping(stream, host).await?
        }
    };
    let version = match server {
        Some(server) if server < *API_DEFAULT_VERSION => server,
        _ => *API_DEFAULT_VERSION,
    };
    let docker = match host {
        DockerHost::Unix(path) => Docker::connect_with_unix(path, DOCKER_TIMEOUT_SECS, &version),
        DockerHost::Tcp(addr) => Docker::connect_with_http(addr, DOCKER_TIMEOUT_SECS, &version),
    }
    .map_err(|source| SessionError::Api {
        call: "connect",
        source,
    })?;
    tracing::info!(docker = %host, "Using Docker Client API version: {version}");
    Ok(docker)
}

/// `GET /_ping` on a fresh connection; returns the `Api-Version` header, if any.
async fn ping<S>(stream: S, host: &DockerHost) -> Result<Option<ClientVersion>, SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ping_error = |source| SessionError::Ping {
        host: host.to_string(),
        source,
    };
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ping_error)?;
        let driver = tokio::spawn(connection);
        let request = Request::get("/_ping")
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new());
        let result = match request {
            Ok(request) => sender.send_request(request).await.map_err(ping_error),
            Err(e) => {
                driver.abort();
                return Err(SessionError::Connect {
                    host: host.to_string(),
                    source: std::io::Error::other(e),
                });
            }
        };
        driver.abort();
        let response = result?;
        Ok(response
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_api_version))
    };
    match tokio::time::timeout(Duration::from_secs(DOCKER_TIMEOUT_SECS), exchange).await {
        Ok(result) => result,
        Err(_) => Err(SessionError::Connect {
            host: host.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to /_ping"),
        }),
    }
}

/// Parses `1.41` into a version.
pub(crate) fn parse_api_version(text: &str) -> Option<ClientVersion> {
    let (major, minor) = text.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// Docker's `since` format: seconds with a fractional part.
pub(crate) fn since_param(now: SystemTime, lookback: Duration) -> String {
    let at = now.checked_sub(lookback).unwrap_or(UNIX_EPOCH);
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
}

fn subscribe(docker: &Docker) -> EventStream {
    let options = EventsOptions {
        since: Some(since_param(SystemTime::now(), EVENTS_LOOKBACK)),
        until: None,
        filters: Some(HashMap::from([(
            "type".to_owned(),
            vec!["service".to_owned()],
        )])),
    };
    Box::pin(docker.events(Some(options)))
}

async fn next_event(
    events: &mut Option<EventStream>,
) -> Option<Result<bollard::models::EventMessage, bollard::errors::Error>> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
