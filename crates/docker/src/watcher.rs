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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::desired::Desired;
use crate::metrics::Metrics;
use crate::params::{listing, ParamRules, Skip};
use crate::session::SessionError;
use crate::settings::DockerHost;
use crate::tasks::{self, converging, Observed, ServiceFacts, TaskSnapshot};

/// Quiet time after a service event before re-listing, so bursts cost one listing.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How far back the event subscription starts, covering the listing race and clock skew.
const EVENTS_LOOKBACK: Duration = Duration::from_secs(5);
/// Timeout for ordinary Docker API calls (not the event stream body).
const DOCKER_TIMEOUT_SECS: u64 = 30;

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
    /// Where task sets are published ([`crate::tasks`]); `None`: tasks are not listed.
    tasks_tx: Option<watch::Sender<Arc<TaskSnapshot>>>,
    /// When each service's task set was first observed.
    observed: Observed,
    /// Since when some service has been converging.
    converging_since: Option<Instant>,
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
            tasks_tx: None,
            observed: Observed::default(),
            converging_since: None,
        }
    }

    /// Also lists the watched services' tasks and publishes them on `tx`.
    pub(crate) fn with_tasks(mut self, tx: watch::Sender<Arc<TaskSnapshot>>) -> Self {
        self.tasks_tx = Some(tx);
        self
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
        let mut poll_at = self.resync(&docker, true, None).await?;
        self.backoff.reset();
        if self.use_events {
            tracing::info!("Listening to Docker Service Events");
        }

        let mut periodic =
            tokio::time::interval_at(Instant::now() + self.resync_interval, self.resync_interval);
        periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty_at: Option<Instant> = None;
        // The earliest event time (ms since the epoch) not yet followed by a listing.
        let mut event_ms: Option<u64> = None;
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
                        if let Some(at) = message.time_nano.and_then(|n| u64::try_from(n / 1_000_000).ok()) {
                            event_ms = Some(event_ms.map_or(at, |e| e.min(at)));
                        }
                    }
                    Some(Err(source)) => return Err(SessionError::Api { call: "events", source }),
                    None => return Err(SessionError::StreamEnded),
                },
                () = sleep_until_opt(dirty_at) => {
                    dirty_at = None;
                    poll_at = self.resync(&docker, false, event_ms.take()).await?;
                }
                () = sleep_until_opt(poll_at) => {
                    poll_at = self.resync(&docker, false, None).await?;
                }
                _ = periodic.tick() => {
                    poll_at = self.resync(&docker, true, None).await?;
                }
                () = resend.notify.notified() => {
                    poll_at = self.resync(&docker, false, None).await?;
                }
            }
        }
    }

    /// Lists the watched services (and their tasks) and publishes the result. `periodic`
    /// marks a full resync (endpoints then retry notifications whose retries ran out);
    /// `event_ms` is the time of the event that led here. Returns when to list again because
    /// a service is converging.
    async fn resync(
        &mut self,
        docker: &Docker,
        periodic: bool,
        event_ms: Option<u64>,
    ) -> Result<Option<Instant>, SessionError> {
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
        let poll_at = self
            .publish_tasks(docker, &services, &listing.ids, periodic, event_ms)
            .await;
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
        Ok(poll_at)
    }

    /// Lists the tasks of the watched services (`ids`: `serviceName` -> Docker id) and
    /// publishes their sets; returns when to list again while some service converges. A
    /// failed task listing is logged and left to the next listing: it does not hold up the
    /// notifications.
    async fn publish_tasks(
        &mut self,
        docker: &Docker,
        services: &[bollard::models::Service],
        ids: &BTreeMap<String, String>,
        periodic: bool,
        event_ms: Option<u64>,
    ) -> Option<Instant> {
        let tx = self.tasks_tx.as_ref()?;
        let listed_at = SystemTime::now();
        let id_list: Vec<&str> = ids.values().map(String::as_str).collect();
        let listed = if id_list.is_empty() {
            Vec::new()
        } else {
            match tasks::fetch(&self.host, docker.client_version(), &id_list).await {
                Ok(listed) => listed,
                Err(error) => {
                    tracing::warn!(%error, "cannot list the tasks of the watched services; trying again at the next listing");
                    return None;
                }
            }
        };
        let mut by_id: HashMap<&str, Vec<sluice_core::membership::Task>> = HashMap::new();
        for task in &listed {
            if let (Some(service), Some(task)) = (task.service_id.as_deref(), tasks::to_task(task))
            {
                by_id.entry(service).or_default().push(task);
            }
        }
        let mut fresh = BTreeMap::new();
        let mut any_converging = false;
        for (name, id) in ids {
            let facts = services
                .iter()
                .find(|s| s.id.as_deref() == Some(id.as_str()))
                .map(ServiceFacts::of);
            let Some(facts) = facts else { continue };
            let service_tasks = by_id.remove(id.as_str()).unwrap_or_default();
            any_converging |= converging(&facts, &service_tasks);
            fresh.insert(name.clone(), (facts.version, service_tasks));
        }
        let listed_ms = crate::tasks::unix_ms(listed_at);
        let at_ms = event_ms.map_or(listed_ms, |e| e.min(listed_ms));
        let membership = self.observed.update(fresh, at_ms);
        tx.send_if_modified(|current| {
            if current.synced && !periodic && current.membership == membership {
                return false;
            }
            *current = Arc::new(TaskSnapshot {
                membership,
                synced: true,
                resync_generation: current.resync_generation + u64::from(periodic),
            });
            true
        });
        let now = Instant::now();
        if !any_converging {
            self.converging_since = None;
            return None;
        }
        let since = *self.converging_since.get_or_insert(now);
        let period = if now.duration_since(since) < tasks::FAST_POLL_FOR {
            tasks::CONVERGE_POLL
        } else {
            tasks::SLOW_POLL
        };
        Some(now + period)
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
