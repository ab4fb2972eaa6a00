//! ACME certificates for services with `acmeDomain`, shared by every proxy replica with no
//! key-value store and no shared disk (`docs/acme.md`).
//!
//! # Who orders
//!
//! The replicas are the addresses of `tasks.<SERVICE_NAME>`. While some service has
//! `acmeDomain`, each one probes the others every tick (a third of `ACME_LEASE_TIMEOUT`, between
//! 0.2 and 5 s) and only the lowest live address orders ([`lease`]); the lease starts afresh
//! (every peer presumed alive for one timeout) when the first such service arrives. A holder that stops answering for `ACME_LEASE_TIMEOUT` is replaced by
//! the next lowest, which finds no certificate (or an old one) and orders again; an order the
//! dead holder left half-done is abandoned at the CA. Two replicas can both order only while
//! they cannot see each other (a split network); the CA then issues twice, which is harmless.
//!
//! # What is shared
//!
//! * **Challenges**: before it tells the CA a challenge is ready, the holder publishes it on
//!   every live replica (`PUT /v1/docker-flow-proxy/acme/challenge`, JSON body), so whichever
//!   replica the CA reaches answers HTTP-01 and TLS-ALPN-01 (`sluice_proxy::challenge`).
//!   Afterwards it withdraws them (`DELETE …/acme/challenge?token=`); a replica also drops
//!   challenges older than ten minutes by itself.
//! * **Certificates**: stored as `CERTS_DIR/acme-<first domain>` like any other bundle, then
//!   sent to the live replicas with the existing `PUT /v1/docker-flow-proxy/cert` (so `/certs`,
//!   SNI and the dashboard treat them as any certificate), and copied by a replica that starts
//!   later from its peers before it reports ready (`certs::sync_from_peers`).
//! * **The account** ([`account`]): `DATA_DIR/acme-account.json` (0600), copied between
//!   replicas through `…/acme/account`.
//!
//! Private keys and account credentials travel only with `API_USER`/`API_PASS`: the endpoints
//! that hand them out refuse callers without them, and without them configured at all this
//! replica does not send them (it logs an error at start saying why) and serves its
//! certificates alone.
//!
//! # When
//!
//! A certificate is ordered when none is stored for its name, when the stored one lacks one of
//! the domains, or at its renewal time ([`schedule`]). A failure waits the backoff, is counted
//! in `/metrics` (`sluice_acme_failures_total`, `sluice_acme_certificate_failing`), shown by
//! `GET /v1/docker-flow-proxy/acme`, logged, and shown on the dashboard of every replica
//! ([`notices`]); the old certificate keeps serving.

pub mod account;
mod endpoints;
mod issue;
pub mod lease;
pub mod notices;
pub mod schedule;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::Method;
use sluice_core::params::acme_request;
use sluice_core::prometheus::TextWriter;
use sluice_proxy::acme_notices::{AcmeNoticeCell, AcmeNotices, Orderer};
use sluice_proxy::challenge::{challenges, Challenge};
use tokio::time::Instant;

pub use self::endpoints::{account_endpoint, challenge, status};
use self::lease::{Holder, Lease};
use self::notices::Reported;
pub use crate::error::AcmeRequestError;
use crate::ApiState;

/// The path of the challenge endpoint.
pub const CHALLENGE_PATH: &str = "/v1/docker-flow-proxy/acme/challenge";
/// How long a replica keeps a challenge it was sent.
const CHALLENGE_TTL: Duration = Duration::from_secs(600);

/// An order or its preparation failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME client or the CA refused.
    #[error("ACME: {0}")]
    Client(#[source] instant_acme::Error),
    /// The order did not go as expected.
    #[error("ACME order: {0}")]
    Order(String),
    /// The account could not be loaded, made or stored.
    #[error("ACME account: {0}")]
    Account(String),
    /// The certificate could not be stored or a challenge not published.
    #[error("{0}")]
    Local(String),
}

/// The error with its causes on one line (`a: b: c`), leaving out a cause whose text is
/// already there: "client error (Connect): tcp connect error: Connection refused" rather
/// than "client error (Connect)".
fn describe(error: &AcmeError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl AcmeError {
    fn problem_is(&self, kind: &str) -> bool {
        matches!(self, AcmeError::Client(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref().and_then(|t| t.rsplit(':').next()) == Some(kind))
    }

    fn rate_limited(&self) -> bool {
        self.problem_is("rateLimited")
    }
}

/// The ACME counters shown in `/metrics`.
#[derive(Debug, Default)]
pub struct AcmeMetrics {
    orders: AtomicU64,
    issued: AtomicU64,
    failures: AtomicU64,
    holder: AtomicBool,
}

impl AcmeMetrics {
    fn order_created(&self) {
        self.orders.fetch_add(1, Ordering::Relaxed);
    }
}

/// What this replica knows of one certificate it orders.
#[derive(Debug, Clone, Default)]
struct CertStatus {
    domains: Vec<String>,
    failures: u32,
    last_error: Option<String>,
    retry_at: Option<Instant>,
    renew_at: Option<i64>,
    /// An order is in progress.
    ordering: bool,
}

/// The ACME state of this replica.
#[derive(Debug, Default)]
pub struct Acme {
    /// Token → (challenge, when it expires): the one writer of the data plane's table.
    challenges: Mutex<BTreeMap<String, (Challenge, Instant)>>,
    /// Certificate name → status (kept by the holder).
    status: Mutex<BTreeMap<String, CertStatus>>,
    metrics: AcmeMetrics,
    /// What the dashboard shows ([`notices`]); this task is its one writer.
    notices: Arc<AcmeNoticeCell>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// True when keys and account credentials may be sent to other replicas.
pub fn may_distribute_keys(state: &ApiState) -> bool {
    state.settings.api_auth.is_some()
}

/// `PUT <path>` with `body` on every peer, concurrently; the failures, sorted.
pub async fn send_to_peers(
    state: &ApiState,
    peers: &[IpAddr],
    path_and_query: &str,
    body: Bytes,
) -> Vec<String> {
    state
        .peer_client
        .send_to_all(
            peers,
            state.settings.port,
            Method::PUT,
            path_and_query,
            body,
        )
        .await
}

impl Acme {
    /// A replica's ACME state.
    pub fn new() -> Arc<Acme> {
        Arc::new(Acme::default())
    }

    /// Where this replica publishes what the dashboard shows about its ACME certificates.
    pub fn notices(&self) -> Arc<AcmeNoticeCell> {
        self.notices.clone()
    }

    /// What this replica reports of the certificates it orders (`GET …/acme`).
    fn reported(&self) -> Vec<Reported> {
        let now = Instant::now();
        lock(&self.status)
            .iter()
            .map(|(name, s)| Reported {
                name: name.clone(),
                domains: s.domains.clone(),
                failures: s.failures,
                last_error: s.last_error.clone(),
                renew_at: s.renew_at.map(crate::certs::rfc3339),
                retry_at: s.retry_at.filter(|_| s.last_error.is_some()).map(|at| {
                    let wait = at.saturating_duration_since(now).as_secs() as i64;
                    crate::certs::rfc3339(unix_now() + wait)
                }),
                ordering: s.ordering,
            })
            .collect()
    }

    /// Compiles and publishes the dashboard's notices for `wanted`.
    fn publish_notices(
        &self,
        state: &ApiState,
        wanted: &BTreeMap<String, Vec<String>>,
        orderer: Orderer,
        reported: Option<&[Reported]>,
    ) {
        let stored = state.certs.get().map(|s| s.list()).unwrap_or_default();
        self.notices.publish(notices::compile(
            wanted,
            &stored,
            orderer,
            reported,
            unix_now(),
        ));
    }

    fn set_ordering(&self, name: &str, ordering: bool) {
        lock(&self.status)
            .entry(name.to_string())
            .or_default()
            .ordering = ordering;
    }

    fn publish(&self, table: &BTreeMap<String, (Challenge, Instant)>) -> Result<(), String> {
        let list: Vec<Challenge> = table.values().map(|(c, _)| c.clone()).collect();
        challenges().publish(&list).map_err(|e| e.to_string())
    }

    fn add(&self, challenge: Challenge) -> Result<(), String> {
        let mut table = lock(&self.challenges);
        let expires = Instant::now() + CHALLENGE_TTL;
        table.insert(challenge.token.clone(), (challenge, expires));
        self.publish(&table)
    }

    fn remove(&self, token: &str) {
        let mut table = lock(&self.challenges);
        if table.remove(token).is_some() {
            let _ = self.publish(&table);
        }
    }

    fn expire_challenges(&self) {
        let mut table = lock(&self.challenges);
        let now = Instant::now();
        let before = table.len();
        table.retain(|_, (_, expires)| *expires > now);
        if table.len() != before {
            let _ = self.publish(&table);
        }
    }

    /// Publishes a challenge here and on the peers (a peer that fails is logged: the CA may
    /// not reach it).
    async fn spread(
        &self,
        state: &ApiState,
        peers: &[IpAddr],
        challenge: &Challenge,
    ) -> Result<(), AcmeError> {
        self.add(challenge.clone()).map_err(AcmeError::Local)?;
        let body = serde_json::to_vec(challenge).map_err(|e| AcmeError::Local(e.to_string()))?;
        for failure in send_to_peers(state, peers, CHALLENGE_PATH, body.into()).await {
            tracing::warn!(domain = %challenge.domain, %failure, "ACME challenge not published on a replica");
        }
        Ok(())
    }

    async fn withdraw(&self, state: &ApiState, peers: &[IpAddr], token: &str) {
        self.remove(token);
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        let path = format!("{CHALLENGE_PATH}?{query}");
        let sent = state.peer_client.send_to_all(
            peers,
            state.settings.port,
            Method::DELETE,
            &path,
            Bytes::new(),
        );
        for failure in sent.await {
            tracing::debug!(%failure, "ACME challenge not withdrawn on a replica (it expires)");
        }
    }

    /// Whether the certificate `name` for `domains` needs an order now.
    fn due(&self, state: &ApiState, name: &str, domains: &[String], now: Instant) -> bool {
        let mut status = lock(&self.status);
        let entry = status.entry(name.to_string()).or_default();
        if entry.domains != domains {
            *entry = CertStatus {
                domains: domains.to_vec(),
                ..CertStatus::default()
            };
        }
        let stored = state
            .certs
            .get()
            .and_then(|store| store.list().into_iter().find(|c| c.name == name));
        entry.renew_at = stored
            .as_ref()
            .map(|c| schedule::renew_at(name, c.not_before, c.not_after));
        if entry.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        match stored {
            None => true,
            Some(cert) => {
                !domains.iter().all(|d| cert.dns_names.contains(d))
                    || unix_now() >= entry.renew_at.unwrap_or(0)
            }
        }
    }

    fn failed(&self, name: &str, error: &AcmeError) {
        self.metrics.failures.fetch_add(1, Ordering::Relaxed);
        let mut status = lock(&self.status);
        let entry = status.entry(name.to_string()).or_default();
        entry.failures += 1;
        let wait = schedule::backoff(entry.failures, error.rate_limited());
        entry.retry_at = Some(Instant::now() + wait);
        let error = describe(error);
        tracing::error!(certificate = %name, failures = entry.failures, retry_in = ?wait, %error, "ACME certificate not obtained; the current certificate (if any) keeps serving");
        entry.last_error = Some(error);
    }

    fn succeeded(&self, name: &str) {
        self.metrics.issued.fetch_add(1, Ordering::Relaxed);
        let mut status = lock(&self.status);
        let entry = status.entry(name.to_string()).or_default();
        entry.failures = 0;
        entry.retry_at = None;
        entry.last_error = None;
    }

    /// Appends the `sluice_acme_*` families.
    pub fn write_metrics(&self, f: &mut TextWriter<'_>) {
        let m = &self.metrics;
        f.head(
            "sluice_acme_orders_total",
            "counter",
            "ACME orders this replica created.",
        );
        f.sample(
            "sluice_acme_orders_total",
            &[],
            m.orders.load(Ordering::Relaxed),
        );
        f.head(
            "sluice_acme_certificates_issued_total",
            "counter",
            "ACME certificates this replica obtained and installed.",
        );
        f.sample(
            "sluice_acme_certificates_issued_total",
            &[],
            m.issued.load(Ordering::Relaxed),
        );
        f.head(
            "sluice_acme_failures_total",
            "counter",
            "ACME attempts of this replica that failed.",
        );
        f.sample(
            "sluice_acme_failures_total",
            &[],
            m.failures.load(Ordering::Relaxed),
        );
        f.head(
            "sluice_acme_lease_holder",
            "gauge",
            "1 while this replica is the one that orders ACME certificates.",
        );
        f.sample(
            "sluice_acme_lease_holder",
            &[],
            u8::from(m.holder.load(Ordering::Relaxed)),
        );
        f.head(
            "sluice_acme_challenges_pending",
            "gauge",
            "ACME challenges this replica answers now.",
        );
        f.sample(
            "sluice_acme_challenges_pending",
            &[],
            lock(&self.challenges).len(),
        );
        let status = lock(&self.status).clone();
        f.head(
            "sluice_acme_certificate_failing",
            "gauge",
            "1 while the last attempt to obtain this certificate failed (see the log).",
        );
        for (name, s) in &status {
            f.sample(
                "sluice_acme_certificate_failing",
                &[("certificate", name)],
                u8::from(s.last_error.is_some()),
            );
        }
        f.head(
            "sluice_acme_certificate_renewal_timestamp_seconds",
            "gauge",
            "When this certificate is due for renewal (Unix seconds).",
        );
        for (name, s) in &status {
            if let Some(at) = s.renew_at {
                f.sample(
                    "sluice_acme_certificate_renewal_timestamp_seconds",
                    &[("certificate", name)],
                    at,
                );
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The certificate name of a request: `acme-<first domain>`.
pub fn cert_name(domains: &[String]) -> String {
    format!("acme-{}", domains.first().map_or("", String::as_str))
}

/// The certificates the services ask for: name → domains (the first service naming a
/// certificate wins), and the first `acmeEmail` given.
fn wanted(state: &ApiState) -> (BTreeMap<String, Vec<String>>, Option<String>) {
    let separator = &state.settings.parse.separator;
    let mut out = BTreeMap::new();
    let mut email = None;
    for (_, service) in state.registry.services().iter() {
        if let Ok(Some(request)) = acme_request(&service.params, separator) {
            email = email.or(request.email);
            out.entry(cert_name(&request.domains))
                .or_insert(request.domains);
        }
    }
    (out, email)
}

/// This replica's address among the replicas (when known) and the other replicas.
async fn replicas(state: &ApiState) -> (Option<IpAddr>, Vec<IpAddr>) {
    let peers = state.distributor.peers().await.unwrap_or_default();
    let own = Some(state.settings.ip).filter(|ip| !ip.is_unspecified());
    let own = match own {
        Some(ip) => Some(ip),
        None => state.distributor.own_address().await,
    };
    (own, peers)
}

/// Probes every peer once: any HTTP answer means alive.
async fn probe(state: &ApiState, peers: &[IpAddr]) -> Vec<(IpAddr, bool)> {
    let mut tasks = tokio::task::JoinSet::new();
    for ip in peers {
        let url = format!(
            "http://{}/v1/docker-flow-proxy/ping",
            SocketAddr::new(*ip, state.settings.port)
        );
        let (client, ip) = (state.peer_client.clone(), *ip);
        tasks.spawn(async move {
            let answered = match client.get(&url).await {
                Ok(_) | Err(crate::peers::PeerError::Status { .. }) => true,
                Err(_) => false,
            };
            (ip, answered)
        });
    }
    let mut out = Vec::new();
    while let Some(Ok(probe)) = tasks.join_next().await {
        out.push(probe);
    }
    out
}

/// The ACME task: probes, decides who orders, and orders what is due (see the module
/// documentation).
pub async fn run(state: Arc<ApiState>, acme: Arc<Acme>) {
    let settings = state.settings.clone();
    if !may_distribute_keys(&state) {
        tracing::error!(
            "ACME: API_USER and API_PASS are not set, so this replica never sends ACME \
             certificate keys or the ACME account to other replicas (they would travel \
             unauthenticated); with more than one replica, set both on every replica"
        );
    }
    let timeout = settings.acme.lease_timeout;
    let tick = (timeout / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
    // Only while some service asks for a certificate: no probes or lookups otherwise.
    let mut lease: Option<Lease> = None;
    let mut account = None;
    let mut was_holder = false;
    loop {
        tokio::time::sleep(tick).await;
        acme.expire_challenges();
        let (wanted, email) = wanted(&state);
        if wanted.is_empty() {
            if !acme.notices.load().certificates.is_empty() {
                acme.notices.publish(AcmeNotices::default());
            }
            lease = None;
            acme.metrics.holder.store(false, Ordering::Relaxed);
            was_holder = false;
            continue;
        }
        // A fresh lease presumes every peer alive for one timeout.
        let lease = lease.get_or_insert_with(|| Lease::new(timeout, Instant::now()));
        let (own, peers) = replicas(&state).await;
        let probes = probe(&state, &peers).await;
        let now = Instant::now();
        lease.observe(&probes, now);
        let holder = lease.holder(own, now);
        let is_holder = holder == Holder::Me;
        acme.metrics.holder.store(is_holder, Ordering::Relaxed);
        if is_holder != was_holder {
            tracing::info!(holder = ?holder, "ACME lease: {}", if is_holder { "this replica orders" } else { "another replica orders" });
            was_holder = is_holder;
        }
        let Holder::Peer(holder_ip) = holder else {
            acme.publish_notices(&state, &wanted, Orderer::This, Some(&acme.reported()));
            order_due(
                &state,
                &acme,
                lease,
                &mut account,
                &wanted,
                email.as_deref(),
            )
            .await;
            continue;
        };
        let reported = notices::from_holder(&state, holder_ip).await;
        acme.publish_notices(
            &state,
            &wanted,
            Orderer::Peer(holder_ip.to_string()),
            reported.as_deref(),
        );
    }
}

/// On the holder: orders every certificate of `wanted` that is due, one after the other,
/// publishing the dashboard's notices around each order.
async fn order_due(
    state: &Arc<ApiState>,
    acme: &Arc<Acme>,
    lease: &Lease,
    account: &mut Option<instant_acme::Account>,
    wanted: &BTreeMap<String, Vec<String>>,
    email: Option<&str>,
) {
    let live = lease.live_peers(Instant::now());
    for (name, domains) in wanted {
        if !acme.due(state, name, domains, Instant::now()) {
            continue;
        }
        acme.set_ordering(name, true);
        acme.publish_notices(state, wanted, Orderer::This, Some(&acme.reported()));
        order_one(state, acme, account, &live, name, domains, email).await;
        acme.set_ordering(name, false);
        acme.publish_notices(state, wanted, Orderer::This, Some(&acme.reported()));
    }
}

/// Orders one certificate (with the account, registered or fetched first if needed), installs
/// it here and on the peers, and records the outcome.
async fn order_one(
    state: &Arc<ApiState>,
    acme: &Arc<Acme>,
    account: &mut Option<instant_acme::Account>,
    live: &[IpAddr],
    name: &str,
    domains: &[String],
    email: Option<&str>,
) {
    if account.is_none() {
        match account::account(state, live, email).await {
            Ok(a) => *account = Some(a),
            Err(error) => {
                acme.failed(name, &error);
                return;
            }
        }
    }
    let Some(acc) = account.as_ref() else { return };
    let outcome = match issue::issue(acme, state, acc, live, domains).await {
        Ok(issued) => install(state, live, name, issued).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => acme.succeeded(name),
        Err(error) => {
            if error.problem_is("accountDoesNotExist") {
                *account = None;
                let file = account::account_file(&state.settings.data_dir);
                if let Err(e) = tokio::fs::remove_file(&file).await {
                    tracing::warn!(file = %file.display(), %e, "stale ACME account not removed");
                }
            }
            acme.failed(name, &error);
        }
    }
}

/// Stores the new certificate here and sends it to the peers.
async fn install(
    state: &ApiState,
    peers: &[IpAddr],
    name: &str,
    issued: issue::Issued,
) -> Result<(), AcmeError> {
    let store = state
        .certs
        .get()
        .cloned()
        .ok_or_else(|| AcmeError::Local("certificates are not enabled on this proxy".into()))?;
    let mut pem = issued.chain_pem;
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(&issued.key_pem);
    let stored_name = name.to_string();
    let body = Bytes::from(pem.into_bytes());
    let bundle = body.clone();
    let info = tokio::task::spawn_blocking(move || store.put(&stored_name, &bundle))
        .await
        .map_err(|e| AcmeError::Local(e.to_string()))?
        .map_err(|e| AcmeError::Local(format!("certificate not stored: {e}")))?;
    tracing::info!(certificate = %name, domains = %info.dns_names.join(","), not_after = info.not_after, "ACME certificate installed");
    if peers.is_empty() {
        return Ok(());
    }
    if !may_distribute_keys(state) {
        tracing::error!(certificate = %name, "ACME certificate not sent to the other replicas: API_USER and API_PASS are not set");
        return Ok(());
    }
    let failed = crate::certs::distribute(state, peers, name, body).await;
    for failure in failed {
        tracing::warn!(certificate = %name, %failure, "ACME certificate not sent to a replica (it copies it when it restarts)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Connect(#[source] std::io::Error);

    #[test]
    fn an_error_is_described_with_its_causes_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = AcmeError::Client(instant_acme::Error::Other(Box::new(Connect(refused))));
        assert_eq!(describe(&error), "ACME: client error (Connect): refused");
        assert_eq!(describe(&AcmeError::Local("disk full".into())), "disk full");
    }
}
