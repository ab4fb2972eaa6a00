//! Upstreams: finding a service's task addresses, balancing across them, and keeping idle
//! keep-alive connections to them.
//!
//! Everything here is per worker thread (`Rc`, `RefCell`): each worker resolves, balances and
//! pools on its own, so the request path never takes a lock. Pools are keyed by socket
//! address, not by routing generation, so they survive reconfiguration.
//!
//! Addresses of a service are the A/AAAA records of `tasks.<service>` (one per Swarm task),
//! falling back to `<service>` itself, or `outboundHostname` when it is set, looked up
//! through the system resolver (`/etc/hosts`, then DNS). Answers are cached for a short TTL
//! and refreshed in the background; a failed connect marks the name for refresh and the
//! request is retried on another address.
//!
//! Destinations with `sslVerifyNone` are reached over TLS without certificate verification;
//! their idle connections are pooled apart from plain ones (the pool key includes TLS).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use http::Request;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Response;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

mod direct;
mod retry;

pub(crate) use direct::{DirectConn, DirectExchange, DirectRequest};
use retry::{exchange, Attempt, Failed, Outcome, Replay};
pub(crate) use retry::{idempotent, Outgoing};

use crate::body::{Release, RequestBody as ReqBody};
use crate::health::{Admit, Fault, Health, ServiceHealth};
use crate::limits::Limits;
use crate::names::Names;

/// How long one connect attempt waits for the SYN-ACK before a fresh SYN is sent, within the
/// connect timeout. The kernel would resend after 1 s, then 3 s; but a Swarm task's address is
/// in DNS before its container is attached, so the first SYN to a starting task is dropped.
const SYN_RETRY: Duration = Duration::from_millis(200);
/// How many distinct addresses one request tries.
const MAX_ATTEMPTS: usize = 3;
/// How long bytes sent upstream may stay unacknowledged before the kernel gives up on the
/// connection (`TCP_USER_TIMEOUT`). A task whose node died answers nothing, not even a reset:
/// without this, a request sent on a pooled connection to it waits for the server timeout.
/// With it, the request fails after this long and an idempotent one is retried elsewhere.
/// A live upstream acknowledges within a round trip, however long it takes to answer.
const UNACKED_LIMIT: Duration = Duration::from_secs(3);
/// How long a new connection may take before a second one is raced to the next address.
const RACE_AFTER: Duration = Duration::from_millis(200);
/// How often a request waiting for a ready address looks again.
pub(crate) const READY_POLL: Duration = Duration::from_millis(50);
/// Hosts remembered as being (or not being) IP addresses, per worker.
const MAX_KNOWN_HOSTS: usize = 4096;
/// Idle connections kept per upstream address.
const MAX_IDLE_PER_ADDR: usize = 512;

/// What to resolve for a route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The service name or `outboundHostname`.
    pub(crate) host: &'a str,
    /// Look up `tasks.<host>` first (Swarm task records).
    pub(crate) tasks_first: bool,
    /// Speak TLS to the upstream without verifying it (`sslVerifyNone`).
    pub(crate) tls: bool,
    /// `(service, destination index, maxConn)` when the destination bounds its requests.
    pub(crate) max_conn: Option<(&'a str, usize, u32)>,
}

/// A host's address when the host is an IP address (`None` when it is a name).
type Literal = Option<Arc<[IpAddr]>>;

/// Idle connections are pooled per address and transport (plain or TLS).
type PoolKey = (SocketAddr, bool);

/// Which addresses a request tries, and which ejected ones are due for a probe.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    tries: Vec<SocketAddr>,
    probes: Vec<SocketAddr>,
}

/// The token a sticky-session cookie names a task by: a short hash of its address, the same
/// in every proxy replica, that does not show the address.
pub(crate) fn sticky_token(ip: IpAddr) -> String {
    let mut hash = Sha256::new();
    hash.update(b"sluice-sticky\0");
    match ip {
        IpAddr::V4(v4) => hash.update(v4.octets()),
        IpAddr::V6(v6) => hash.update(v6.octets()),
    }
    hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The per-worker upstream state.
pub(crate) struct Upstreams {
    me: Weak<Upstreams>,
    /// The addresses of upstream names, shared by every worker.
    names: Arc<Names>,
    /// The Swarm tasks the listener reported, shared by every worker ([`crate::membership`]).
    membership: Arc<crate::membership::MembershipCell>,
    /// `maxConn` slots, shared by every worker.
    limits: Arc<Limits>,
    /// Passive health and retry budgets, shared by every worker.
    health: Arc<Health>,
    /// `TIMEOUT_QUEUE`: how long a request waits for a `maxConn` slot.
    queue_timeout: Duration,
    /// Hosts given as IP addresses: never looked up.
    literals: RefCell<HashMap<Box<str>, Literal>>,
    idle: RefCell<HashMap<PoolKey, Vec<SendRequest<Outgoing>>>>,
    /// Idle connections of the pass-through path ([`direct`]), plain only.
    direct_idle: RefCell<HashMap<SocketAddr, Vec<DirectConn>>>,
    tls_connector: std::cell::OnceCell<Option<tokio_rustls::TlsConnector>>,
    connect_timeout: Duration,
}

/// What every worker's [`Upstreams`] shares.
pub(crate) struct SharedUpstreams {
    pub(crate) names: Arc<Names>,
    pub(crate) membership: Arc<crate::membership::MembershipCell>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) health: Arc<Health>,
    /// `TIMEOUT_QUEUE`.
    pub(crate) queue_timeout: Duration,
}

/// A pooled connection lent to one response; [`Lease::release`] gives it back.
pub(crate) struct Lease {
    sender: SendRequest<Outgoing>,
    key: PoolKey,
    pool: Weak<Upstreams>,
    /// The request's `maxConn` slot, given back with the connection.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Release for Lease {
    /// Returns the connection to the idle pool (once the response body is complete).
    fn release(self: Box<Self>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put_idle(self.key, self.sender);
        }
    }
}

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The name resolved to nothing.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name looked up.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// Every address tried refused or timed out on connect.
    #[error("no reachable address for {host} (tried {tried})")]
    Unreachable {
        /// The name looked up.
        host: String,
        /// How many addresses were tried.
        tried: usize,
        /// The addresses whose connect failed (for statistics).
        failed: Vec<SocketAddr>,
    },
    /// The upstream did not answer within the server timeout.
    #[error("upstream {addr} timed out")]
    Timeout {
        /// The address that timed out.
        addr: SocketAddr,
    },
    /// Every `maxConn` slot of the destination stayed taken for `TIMEOUT_QUEUE`.
    #[error("no free maxConn slot of {host} within {waited:?}")]
    Queue {
        /// The name looked up.
        host: String,
        /// How long the request waited.
        waited: Duration,
    },
    /// The upstream broke a pass-through exchange ([`direct`]): reset, truncated or invalid.
    #[error("upstream {addr} failed: {detail}")]
    BrokenDirect {
        /// The address that failed.
        addr: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// The upstream broke the exchange (invalid or truncated response).
    #[error("upstream {addr} failed: {source}")]
    Broken {
        /// The address that failed.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

/// A successful exchange.
pub(crate) struct Exchange {
    pub(crate) response: Response<Incoming>,
    /// Addresses whose connect failed before this exchange (for statistics).
    pub(crate) failed: Vec<SocketAddr>,
    pub(crate) lease: Option<Lease>,
    pub(crate) addr: SocketAddr,
    /// Time spent opening connections for it (zero when a pooled one was reused).
    pub(crate) connect: Duration,
}

impl Upstreams {
    pub(crate) fn new(connect_timeout: Duration, shared: SharedUpstreams) -> Rc<Upstreams> {
        Rc::new_cyclic(|me| Upstreams {
            me: me.clone(),
            names: shared.names,
            membership: shared.membership,
            limits: shared.limits,
            health: shared.health,
            queue_timeout: shared.queue_timeout,
            literals: RefCell::new(HashMap::new()),
            idle: RefCell::new(HashMap::new()),
            direct_idle: RefCell::new(HashMap::new()),
            tls_connector: std::cell::OnceCell::new(),
            connect_timeout,
        })
    }

    fn put_idle(&self, key: PoolKey, sender: SendRequest<Outgoing>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(sender);
        }
    }

    fn take_idle(&self, key: PoolKey) -> Option<SendRequest<Outgoing>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&key)?;
        while let Some(sender) = list.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// The addresses of `target` from the name cache (see [`crate::names`]), and the
    /// round-robin starting position for this request.
    pub(crate) async fn addresses(
        &self,
        target: Target<'_>,
    ) -> Result<(Arc<[IpAddr]>, usize), SendError> {
        if let Some(addrs) = self.literal(target.host) {
            return Ok((addrs, 0));
        }
        // A Swarm service whose tasks the listener reports: its ready tasks, no DNS.
        if target.tasks_first {
            if let Some(ready) = self.membership.ready(target.host) {
                return Ok(ready);
            }
        }
        self.names
            .resolve(target.host, target.tasks_first)
            .await
            .map_err(|reason| SendError::Resolve {
                host: target.host.to_string(),
                reason: reason.to_string(),
            })
    }

    /// The address of a host given as an IP address.
    fn literal(&self, host: &str) -> Option<Arc<[IpAddr]>> {
        if let Some(known) = self.literals.borrow().get(host) {
            return known.clone();
        }
        let parsed: Option<Arc<[IpAddr]>> = host.parse::<IpAddr>().ok().map(|ip| Arc::from([ip]));
        let mut literals = self.literals.borrow_mut();
        if literals.len() >= MAX_KNOWN_HOSTS {
            literals.clear();
        }
        literals.insert(Box::from(host), parsed.clone());
        parsed
    }

    /// Sends `req` to one of `target`'s addresses on `port`, choosing among the addresses
    /// that are not ejected ([`crate::health`]); `sticky` names a preferred task
    /// ([`sticky_token`]).
    ///
    /// A failed attempt is retried on another address when that is safe ([`may_retry`]) and
    /// the service's retry budget allows it, on at most [`MAX_ATTEMPTS`] addresses. While a
    /// service that had addresses has none (no ready task), the request waits up to
    /// `TIMEOUT_QUEUE` for one to appear, looking again every [`READY_POLL`].
    pub(crate) async fn send(
        &self,
        target: Target<'_>,
        port: u16,
        req: Request<ReqBody>,
        upgrade: bool,
        server_timeout: Duration,
        sticky: Option<&str>,
    ) -> Result<Exchange, SendError> {
        let mut slot = self.slot(target).await?;
        let mut request = Pooled {
            replay: Replay::of(&req),
            req: Some(req.map(Outgoing::Client)),
            upgrade,
            target,
            server_timeout,
        };
        let sent = self
            .try_addresses(target, port, sticky, &mut request)
            .await?;
        let (response, sender) = sent.done;
        Ok(Exchange {
            response,
            lease: (!upgrade).then(|| self.lease(sender, (sent.addr, target.tls), slot.take())),
            addr: sent.addr,
            failed: sent.failed,
            connect: sent.connect,
        })
    }

    /// The addresses of `target`. While a service that had addresses has none, waits up to
    /// `TIMEOUT_QUEUE` for some; a name that never resolved fails at once.
    async fn ready_addresses(
        &self,
        target: Target<'_>,
        service: &ServiceHealth,
    ) -> Result<(Arc<[IpAddr]>, usize), SendError> {
        let deadline = Instant::now() + self.queue_timeout;
        loop {
            let error = match self.addresses(target).await {
                Ok((addrs, start)) if !addrs.is_empty() => {
                    service.mark_known();
                    return Ok((addrs, start));
                }
                Ok(_) => SendError::Resolve {
                    host: target.host.to_string(),
                    reason: "no addresses".into(),
                },
                Err(error) => error,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !service.known() {
                return Err(error);
            }
            tokio::time::sleep(READY_POLL.min(left)).await;
        }
    }

    /// The addresses a request tries, in order: the sticky task, then the others in
    /// round-robin order from `start`, skipping ejected ones; at most [`MAX_ATTEMPTS`]. When
    /// every address is ejected, the ejected ones, longest ejected first. Ejected addresses
    /// whose backoff is over come back in `probes`, to be probed ([`Upstreams::probe`]).
    fn plan(&self, addrs: &[IpAddr], start: usize, port: u16, sticky: Option<&str>) -> Plan {
        let mut plan = Plan {
            tries: Vec::with_capacity(MAX_ATTEMPTS.min(addrs.len())),
            probes: Vec::new(),
        };
        let mut ejected: Vec<(u64, SocketAddr)> = Vec::new();
        let preferred = sticky.and_then(|token| {
            addrs
                .iter()
                .position(|ip| sticky_token(*ip).as_str() == token)
        });
        let order = preferred
            .into_iter()
            .chain((0..addrs.len()).map(|i| (start + i) % addrs.len()))
            .enumerate()
            .filter(|(n, i)| *n == 0 || Some(*i) != preferred);
        for (_, i) in order {
            if plan.tries.len() >= MAX_ATTEMPTS {
                break;
            }
            let addr = SocketAddr::new(addrs[i], port);
            match self.health.admit(addr) {
                Admit::Yes => plan.tries.push(addr),
                Admit::Probe => {
                    plan.probes.push(addr);
                    ejected.push((0, addr));
                }
                Admit::No { since } => ejected.push((since, addr)),
            }
        }
        if plan.tries.is_empty() {
            ejected.sort_unstable();
            plan.tries
                .extend(ejected.into_iter().take(MAX_ATTEMPTS).map(|(_, a)| a));
        }
        plan
    }

    /// Probes an ejected address in the background: a TCP connect within the connect
    /// timeout re-admits it, a failure doubles its ejection.
    fn probe(&self, addr: SocketAddr) {
        let health = self.health.clone();
        let timeout = self.connect_timeout;
        tokio::spawn(async move {
            match connect_tcp(addr, timeout).await {
                Ok(_) => health.succeeded(addr),
                Err(error) => {
                    tracing::debug!(%addr, %error, "probe of an ejected upstream failed");
                    health.failed(addr, io_fault(&error));
                }
            }
        });
    }

    /// A TCP connection to `addr`, or, when `addr` has not connected within [`RACE_AFTER`],
    /// to whichever of `addr` and `next` connects
    /// first (so a dead address costs [`RACE_AFTER`], not the connect timeout). Returns the
    /// address connected to (or `addr` with its error). The other address's outcome is
    /// reported to passive health here: at once when it failed first, else in the background
    /// when it ends (a late connection is closed). `addr` goes to `also_failed` when it failed
    /// or was outraced.
    async fn connect_racing(
        &self,
        addr: SocketAddr,
        next: Option<SocketAddr>,
        also_failed: &mut Vec<SocketAddr>,
    ) -> (SocketAddr, std::io::Result<TcpStream>) {
        let timeout = self.connect_timeout;
        let mut first = Box::pin(connect_tcp(addr, timeout));
        let Some(next) = next else {
            return (addr, first.await);
        };
        tokio::select! {
            result = &mut first => return (addr, result),
            () = tokio::time::sleep(RACE_AFTER) => {}
        }
        // A raced connect sends nothing, so it is not a retry the budget bounds: under a node
        // loss, when every other request meets a dead address, the budget would otherwise be
        // spent at once and requests would wait the whole connect timeout.
        tracing::debug!(%addr, %next, "upstream slow to connect: racing the next address");
        let mut second = Box::pin(connect_tcp(next, timeout));
        let lost = |addr: SocketAddr, error: &std::io::Error, also_failed: &mut Vec<SocketAddr>| {
            self.health.failed(addr, io_fault(error));
            also_failed.push(addr);
        };
        tokio::select! {
            result = &mut first => match result {
                Ok(stream) => {
                    self.settle_later(next, second);
                    (addr, Ok(stream))
                }
                Err(error) => match second.await {
                    Ok(stream) => {
                        lost(addr, &error, also_failed);
                        (next, Ok(stream))
                    }
                    Err(other) => {
                        lost(next, &other, also_failed);
                        (addr, Err(error))
                    }
                },
            },
            result = &mut second => match result {
                Ok(stream) => {
                    // Given up for this request: counted as failed in its statistics.
                    also_failed.push(addr);
                    self.settle_later(addr, first);
                    (next, Ok(stream))
                }
                Err(error) => {
                    lost(next, &error, also_failed);
                    (addr, first.await)
                }
            },
        }
    }

    /// Reports the outcome of a connect that lost a race when it ends.
    fn settle_later(
        &self,
        addr: SocketAddr,
        connect: Pin<Box<impl Future<Output = std::io::Result<TcpStream>> + Send + 'static>>,
    ) {
        let health = self.health.clone();
        tokio::spawn(async move {
            match connect.await {
                Ok(_closed) => health.succeeded(addr),
                Err(error) => {
                    health.failed(addr, io_fault(&error));
                }
            }
        });
    }

    fn lease(
        &self,
        sender: SendRequest<Outgoing>,
        key: PoolKey,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Lease {
        Lease {
            sender,
            key,
            pool: self.me.clone(),
            _slot: slot,
        }
    }

    /// Waits (up to `TIMEOUT_QUEUE`) for one of the destination's `maxConn` slots.
    async fn slot(&self, target: Target<'_>) -> Result<Option<OwnedSemaphorePermit>, SendError> {
        let Some((service, dest, max)) = target.max_conn else {
            return Ok(None);
        };
        let slots = self.limits.slots(service, dest, max);
        match tokio::time::timeout(self.queue_timeout, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(SendError::Queue {
                host: target.host.to_string(),
                waited: self.queue_timeout,
            }),
        }
    }

    /// Opens a TCP connection to `addr` within the connect timeout (no protocol on top).
    pub(crate) async fn connect_tcp(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        connect_tcp(addr, self.connect_timeout).await
    }

    fn tls_connector(&self) -> Option<tokio_rustls::TlsConnector> {
        self.tls_connector
            .get_or_init(|| match crate::upstream_tls::insecure_client_config() {
                Ok(config) => Some(tokio_rustls::TlsConnector::from(config)),
                Err(error) => {
                    tracing::error!(%error, "cannot build the upstream TLS configuration");
                    None
                }
            })
            .clone()
    }

    /// HTTP/1.1 (over TLS with `sslVerifyNone`) on a connected stream.
    async fn handshake(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
        upgrade: bool,
        target: Target<'_>,
    ) -> Result<SendRequest<Outgoing>, ConnectError> {
        let (sender, conn) = if target.tls {
            let connector = self.tls_connector().ok_or(ConnectError::TlsUnavailable)?;
            let name = crate::upstream_tls::upstream_name(target.host, addr);
            let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name, stream))
                .await
                .map_err(|_| ConnectError::Timeout(self.connect_timeout))?
                .map_err(ConnectError::Tls)?;
            let (sender, conn) = http1::Builder::new()
                .handshake(TokioIo::new(tls))
                .await
                .map_err(ConnectError::Handshake)?;
            spawn_connection(addr, upgrade, conn);
            return Ok(sender);
        } else {
            http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await
                .map_err(ConnectError::Handshake)?
        };
        spawn_connection(addr, upgrade, conn);
        Ok(sender)
    }
}

/// A request on its way through hyper's pooled connections ([`Upstreams::send`]).
pub(crate) struct Pooled<'a> {
    /// The request, until it is sent (given back when a connection closed before it went).
    req: Option<Request<Outgoing>>,
    /// What is kept to send it again after a reset.
    replay: Option<Replay>,
    upgrade: bool,
    target: Target<'a>,
    server_timeout: Duration,
}

impl Attempt for Pooled<'_> {
    type Done = (Response<Incoming>, SendRequest<Outgoing>);

    /// A pooled connection when one is idle, else a new one ([`Upstreams::connect_racing`]).
    async fn attempt(
        &mut self,
        upstreams: &Upstreams,
        addr: SocketAddr,
        next: Option<SocketAddr>,
        also_failed: &mut Vec<SocketAddr>,
        connect_time: &mut Duration,
    ) -> Result<(Self::Done, SocketAddr), Failed> {
        let target = self.target;
        let Some(mut req) = self
            .req
            .take()
            .or_else(|| self.replay.as_ref().map(Replay::rebuild))
        else {
            return Err(Failed {
                error: SendError::Unreachable {
                    host: target.host.to_string(),
                    tried: 0,
                    failed: Vec::new(),
                },
                addr,
                outcome: Outcome::Invalid,
                fault: None,
                back: None,
            });
        };
        if !self.upgrade {
            while let Some(sender) = upstreams.take_idle((addr, target.tls)) {
                match exchange(addr, sender, req, self.server_timeout).await {
                    // The idle connection was closed before the request went out.
                    Err(Failed {
                        outcome: Outcome::NotSent,
                        back: Some(back),
                        ..
                    }) => req = back,
                    other => {
                        return other.map(|done| (done, addr)).map_err(|mut failed| {
                            self.keep(&mut failed);
                            failed
                        })
                    }
                }
            }
        }
        let connecting = std::time::Instant::now();
        let (addr, stream) = upstreams.connect_racing(addr, next, also_failed).await;
        let connected = match stream {
            Ok(stream) => {
                upstreams
                    .handshake(stream, addr, self.upgrade, target)
                    .await
            }
            Err(error) => Err(ConnectError::Io(error)),
        };
        *connect_time += connecting.elapsed();
        let sender = match connected {
            Ok(sender) => sender,
            Err(error) => {
                self.req = Some(req);
                return Err(not_connected(addr, target, &error));
            }
        };
        let sent = exchange(addr, sender, req, self.server_timeout)
            .await
            .map(|done| (done, addr))
            .map_err(|mut failed| {
                if failed.outcome == Outcome::NotSent {
                    // A fresh connection closed before the request went out.
                    failed.fault = Some(Fault::Reset);
                }
                self.keep(&mut failed);
                failed
            });
        sent
    }

    fn replayable(&self) -> bool {
        self.replay.is_some()
    }
}

impl Pooled<'_> {
    /// Keeps the request a failed attempt gave back, for the next attempt.
    fn keep(&mut self, failed: &mut Failed) {
        self.req = failed.back.take();
    }
}

/// The failure of an attempt whose connection could not be made.
fn not_connected(addr: SocketAddr, target: Target<'_>, error: &ConnectError) -> Failed {
    tracing::warn!(%addr, host = target.host, %error, "upstream connect failed");
    Failed {
        fault: Some(error.fault()),
        outcome: Outcome::NotConnected,
        back: None,
        error: SendError::Unreachable {
            host: target.host.to_string(),
            tried: 1,
            failed: vec![addr],
        },
        addr,
    }
}

/// Opens a TCP connection to `addr` within `timeout`, sending a fresh SYN every
/// [`SYN_RETRY`] (see there).
async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let stream = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            ));
        }
        if let Ok(result) =
            tokio::time::timeout(left.min(SYN_RETRY), TcpStream::connect(addr)).await
        {
            break result?;
        }
    };
    // Small messages must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    if let Err(error) = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(UNACKED_LIMIT)) {
        tracing::debug!(%addr, %error, "cannot set TCP_USER_TIMEOUT");
    }
    Ok(stream)
}

/// Drives an upstream connection on the worker until it closes.
fn spawn_connection<T>(addr: SocketAddr, upgrade: bool, conn: http1::Connection<T, Outgoing>)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if upgrade {
        tokio::task::spawn_local(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%addr, %error, "upstream connection ended");
            }
        });
    } else {
        tokio::task::spawn_local(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%addr, %error, "upstream connection ended");
            }
        });
    }
}

impl ConnectError {
    /// What the failure says about the address.
    fn fault(&self) -> Fault {
        match self {
            ConnectError::Timeout(_) => Fault::ConnectTimeout,
            ConnectError::Io(e) => io_fault(e),
            _ => Fault::Refused,
        }
    }
}

/// What a failed TCP connect says about the address.
fn io_fault(error: &std::io::Error) -> Fault {
    if error.kind() == std::io::ErrorKind::TimedOut {
        Fault::ConnectTimeout
    } else {
        Fault::Refused
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("handshake failed: {0}")]
    Handshake(hyper::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("upstream TLS is not available")]
    TlsUnavailable,
}

#[cfg(test)]
mod tests;
