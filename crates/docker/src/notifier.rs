//! One delivery task per endpoint: diff, send, retry, supersede.
//!
//! Each [`EndpointWorker`] follows the watcher's published [`Desired`] snapshots and keeps
//! its own record of what the proxy behind it has been told. Its queue is the diff between
//! the two (see [`crate::desired`]), so only the newest state of a service is ever sent:
//! a queued older state disappears from the diff, and a request in flight for a service
//! whose desired state changes is cancelled and replaced. Endpoints never wait for one
//! another, and within one endpoint a failing service waits for its retry time without
//! holding up the others.
//!
//! Retry policy ([`RetryPolicy`]; where it differs from DFSL is said below):
//! * 2xx: delivered;
//! * 409 and every other 4xx except 408 and 429: final. The proxy refused these exact
//!   parameters (DFP answers 409 for an HTTP service without path or domain and 400 for
//!   a missing port); retrying cannot help, so the attempt is logged and counted as failed
//!   and nothing is re-sent until the service's parameters change or `notify-services`
//!   is called. DFSL treated 409 as success and retried 400s 50 times;
//! * anything else (5xx, 3xx, 408, 429, connect error, timeout): retried up to
//!   `DF_RETRY` times, `DF_RETRY_INTERVAL` apart (an interval of 0 means a single
//!   attempt, as in DFSL). When retries run out the failure is logged and counted, and the
//!   next periodic resync tries again with a fresh budget instead of dropping it forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::StatusCode;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery::{AttemptResult, Deliver, NotificationRequest};
use crate::desired::{diff, Change, Delivered, Desired};
use crate::endpoint::Endpoint;
use crate::metrics::{Kind, Metrics};
use crate::params::ServiceParams;
use sluice_core::redact::{is_secret_param, redact_url, REDACTED};

/// How often and how far apart failed notifications are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt (`DF_RETRY`).
    pub(crate) retries: u32,
    /// Pause between attempts (`DF_RETRY_INTERVAL`); zero disables retries.
    pub(crate) interval: Duration,
}

impl RetryPolicy {
    /// Whether another attempt follows after `failures` failed ones.
    pub(crate) fn should_retry(&self, failures: u32) -> bool {
        !self.interval.is_zero() && failures <= self.retries
    }
}

/// How an attempt's result is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    /// Final refusal by the proxy.
    Rejected,
    /// Worth another attempt.
    Retry,
}

/// Classifies a response status (see the module docs).
pub(crate) fn classify(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
    {
        Verdict::Rejected
    } else {
        Verdict::Retry
    }
}

/// `text` with every value of a secret-bearing parameter in `params` replaced, for a
/// proxy answer or an error that may quote what it was sent. Besides whole values it
/// replaces their pieces a message could quote alone: each `name:password` pair of
/// `users`, each password, each line of a certificate (pieces shorter than
/// [`MIN_SECRET_PIECE`] would garble the message and are left alone).
fn scrub_secrets(text: &str, params: &BTreeMap<String, String>) -> String {
    let mut pieces: Vec<&str> = Vec::new();
    for (_, value) in params.iter().filter(|(name, _)| is_secret_param(name)) {
        pieces.push(value);
        for piece in value.split([',', '\n']) {
            let piece = piece.trim();
            pieces.push(piece);
            if let Some((_, password)) = piece.split_once(':') {
                pieces.push(password);
            }
        }
    }
    pieces.retain(|p| p.len() >= MIN_SECRET_PIECE);
    // Longest first, so a whole value is replaced before one of its parts.
    pieces.sort_unstable_by_key(|p| std::cmp::Reverse(p.len()));
    pieces
        .into_iter()
        .fold(text.to_owned(), |text, piece| text.replace(piece, REDACTED))
}

/// Shortest piece of a secret value that [`scrub_secrets`] replaces.
const MIN_SECRET_PIECE: usize = 4;

/// Identity of a notification for retry bookkeeping: kind and parameters (not the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    kind: Kind,
    params: ServiceParams,
}

fn fingerprint(change: &Change) -> Fingerprint {
    match change {
        Change::Create { params, .. } => Fingerprint {
            kind: Kind::Create,
            params: params.clone(),
        },
        Change::Remove { params, .. } => Fingerprint {
            kind: Kind::Remove,
            params: params.clone(),
        },
    }
}

#[derive(Debug)]
struct Attempts {
    of: Fingerprint,
    failures: u32,
    next_at: Instant,
}

#[derive(Debug)]
struct Blocked {
    of: Fingerprint,
    /// `true` for a proxy refusal (kept until the parameters change); `false` when retries
    /// ran out (lifted by the next periodic resync).
    refused: bool,
}

enum Flow {
    Continue,
    Shutdown,
}

/// The delivery task of one endpoint.
pub(crate) struct EndpointWorker<D> {
    endpoint: Endpoint,
    policy: RetryPolicy,
    delivery: Arc<D>,
    /// `DF_PROXY_USER`/`DF_PROXY_PASS`, used when the URL has no credentials of its own.
    credentials: Option<HeaderValue>,
    metrics: Arc<Metrics>,
    delivered: BTreeMap<String, Delivered>,
    attempts: HashMap<String, Attempts>,
    blocked: HashMap<String, Blocked>,
    seen_resync: u64,
    seen_force: u64,
}

impl<D: Deliver> EndpointWorker<D> {
    pub(crate) fn new(
        endpoint: Endpoint,
        policy: RetryPolicy,
        delivery: Arc<D>,
        credentials: Option<HeaderValue>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            endpoint,
            policy,
            delivery,
            credentials,
            metrics,
            delivered: BTreeMap::new(),
            attempts: HashMap::new(),
            blocked: HashMap::new(),
            seen_resync: 0,
            seen_force: 0,
        }
    }

    /// Runs until `shutdown` is cancelled or the watcher goes away.
    pub(crate) async fn run(
        mut self,
        mut desired_rx: watch::Receiver<Arc<Desired>>,
        shutdown: CancellationToken,
    ) {
        loop {
            let desired = Arc::clone(&desired_rx.borrow_and_update());
            let mut wake: Option<Instant> = None;
            if desired.synced_at.is_some() {
                self.apply_generations(&desired);
                let changes = diff(&self.delivered, &desired.services);
                self.forget_stale(&changes);
                let now = Instant::now();
                let mut due = None;
                for change in &changes {
                    let fp = fingerprint(change);
                    if self
                        .blocked
                        .get(change.service())
                        .is_some_and(|b| b.of == fp)
                    {
                        continue;
                    }
                    match self.attempts.get(change.service()) {
                        Some(a) if a.of == fp && a.next_at > now => {
                            wake = Some(wake.map_or(a.next_at, |w| w.min(a.next_at)));
                        }
                        _ => {
                            due = Some(change.clone());
                            break;
                        }
                    }
                }
                if let Some(change) = due {
                    match self.send(change, &mut desired_rx, &shutdown).await {
                        Flow::Continue => continue,
                        Flow::Shutdown => return,
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = desired_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = sleep_until_opt(wake) => {}
            }
        }
    }

    fn apply_generations(&mut self, desired: &Desired) {
        if desired.force_generation != self.seen_force {
            self.seen_force = desired.force_generation;
            for d in self.delivered.values_mut() {
                d.confirmed = false;
            }
            self.blocked.clear();
            self.attempts.clear();
        }
        if desired.resync_generation != self.seen_resync {
            self.seen_resync = desired.resync_generation;
            self.blocked.retain(|_, b| b.refused);
        }
    }

    /// Drops retry and block records that no longer match what is owed.
    fn forget_stale(&mut self, changes: &[Change]) {
        let owed: HashMap<&str, Fingerprint> = changes
            .iter()
            .map(|c| (c.service(), fingerprint(c)))
            .collect();
        self.attempts
            .retain(|s, a| owed.get(s.as_str()).is_some_and(|fp| *fp == a.of));
        self.blocked
            .retain(|s, b| owed.get(s.as_str()).is_some_and(|fp| *fp == b.of));
    }

    async fn send(
        &mut self,
        change: Change,
        desired_rx: &mut watch::Receiver<Arc<Desired>>,
        shutdown: &CancellationToken,
    ) -> Flow {
        let service = change.service().to_owned();
        let fp = fingerprint(&change);
        let (kind, target, params) = match &change {
            Change::Create { params, .. } => (Kind::Create, &self.endpoint.create, &params.create),
            Change::Remove { params, .. } => (Kind::Remove, &self.endpoint.remove, &params.remove),
        };
        let Some(target) = target else {
            // This endpoint has no URL for this kind: nothing to send, but keep the record
            // so a remove-only endpoint still learns which services exist.
            self.record_success(&change);
            return Flow::Continue;
        };
        let url = target.url(params);
        // The query carries every `com.df.*` value, passwords and private keys included:
        // only the redacted form is ever logged.
        let shown = redact_url(&url);
        tracing::info!(
            service = %service,
            method = %target.method,
            "Sending service {} notification to {shown}",
            kind.participle()
        );
        let request = NotificationRequest {
            method: target.method.clone(),
            url: url.clone(),
            auth: target.auth.clone().or_else(|| self.credentials.clone()),
        };
        // What the desired state of this service was when the request started.
        let expected = desired_rx.borrow().services.get(&service).cloned();
        let delivery = Arc::clone(&self.delivery);
        let attempt = delivery.deliver(&request);
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                result = &mut attempt => break Some(result),
                () = shutdown.cancelled() => return Flow::Shutdown,
                changed = desired_rx.changed() => {
                    if changed.is_err() {
                        return Flow::Shutdown;
                    }
                    if desired_rx.borrow().services.get(&service) != expected.as_ref() {
                        break None;
                    }
                }
            }
        };
        let Some(result) = result else {
            tracing::info!(
                service = %service,
                "Superseded service {} notification to {shown}: a newer state will be sent",
                kind.participle()
            );
            self.attempts.remove(&service);
            self.mark_uncertain(&change);
            return Flow::Continue;
        };
        let (verdict, detail) = match &result {
            AttemptResult::Status { status, body } => (
                classify(*status),
                format!("status {status}: {}", body.trim()),
            ),
            AttemptResult::Transport { error } => (Verdict::Retry, error.clone()),
        };
        // The proxy's answer may quote a value it refused.
        let detail = scrub_secrets(&detail, params);
        match verdict {
            Verdict::Delivered => {
                self.metrics.sent(kind);
                tracing::debug!(service = %service, "Delivered service {} notification to {shown}", kind.participle());
                self.attempts.remove(&service);
                self.blocked.remove(&service);
                self.record_success(&change);
            }
            Verdict::Rejected => {
                self.metrics.failed(kind);
                tracing::warn!(
                    service = %service,
                    "Proxy refused service {} notification to {shown} ({detail}); not retrying until the service changes",
                    kind.participle()
                );
                self.attempts.remove(&service);
                match &change {
                    Change::Create { .. } => {
                        self.mark_uncertain(&change);
                        self.blocked.insert(
                            service,
                            Blocked {
                                of: fp,
                                refused: true,
                            },
                        );
                    }
                    Change::Remove { .. } => {
                        // The proxy will not take this remove; there is nothing left to do.
                        self.delivered.remove(&service);
                    }
                }
            }
            Verdict::Retry => {
                let failures = match self.attempts.get(&service) {
                    Some(a) if a.of == fp => a.failures.saturating_add(1),
                    _ => 1,
                };
                self.mark_uncertain(&change);
                if self.policy.should_retry(failures) {
                    self.metrics.retried(kind);
                    tracing::warn!(
                        service = %service,
                        error = %detail,
                        "Retrying service {} notification to {shown} ({failures} try)",
                        kind.participle()
                    );
                    self.attempts.insert(
                        service,
                        Attempts {
                            of: fp,
                            failures,
                            next_at: Instant::now() + self.policy.interval,
                        },
                    );
                } else {
                    self.metrics.failed(kind);
                    tracing::error!(
                        service = %service,
                        attempts = failures,
                        "Failed at retrying request to {shown} ({detail}); will try again after the next resync"
                    );
                    self.attempts.remove(&service);
                    self.blocked.insert(
                        service,
                        Blocked {
                            of: fp,
                            refused: false,
                        },
                    );
                }
            }
        }
        Flow::Continue
    }

    /// Records the create parameters last sent for `service`; `confirmed` when the proxy
    /// accepted them.
    fn remember(&mut self, service: &str, params: &ServiceParams, confirmed: bool) {
        self.delivered.insert(
            service.to_string(),
            Delivered {
                params: params.clone(),
                confirmed,
            },
        );
    }

    fn record_success(&mut self, change: &Change) {
        match change {
            Change::Create {
                service, params, ..
            } => self.remember(service, params, true),
            Change::Remove { service, .. } => {
                self.delivered.remove(service);
            }
        }
    }

    /// The proxy may or may not hold this service now.
    fn mark_uncertain(&mut self, change: &Change) {
        match change {
            Change::Create {
                service, params, ..
            } => self.remember(service, params, false),
            Change::Remove { service, .. } => {
                if let Some(d) = self.delivered.get_mut(service) {
                    d.confirmed = false;
                }
            }
        }
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
