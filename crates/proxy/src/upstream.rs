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

use http::Request;
use hyper::body::Incoming;

use crate::body::{Release, RequestBody as ReqBody};
use crate::limits::Limits;
use crate::names::Names;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// How long one connect attempt waits for the SYN-ACK before a fresh SYN is sent, within the
/// connect timeout. The kernel would resend after 1 s, then 3 s; but a Swarm task's address is
/// in DNS before its container is attached, so the first SYN to a starting task is dropped.
const SYN_RETRY: Duration = Duration::from_millis(200);
/// How many distinct addresses one request tries before giving up.
const MAX_ATTEMPTS: usize = 3;
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

/// The per-worker upstream state.
pub(crate) struct Upstreams {
    me: Weak<Upstreams>,
    /// The addresses of upstream names, shared by every worker.
    names: Arc<Names>,
    /// `maxConn` slots, shared by every worker.
    limits: Arc<Limits>,
    /// `TIMEOUT_QUEUE`: how long a request waits for a `maxConn` slot.
    queue_timeout: Duration,
    /// Hosts given as IP addresses: never looked up.
    literals: RefCell<HashMap<Box<str>, Literal>>,
    idle: RefCell<HashMap<PoolKey, Vec<SendRequest<ReqBody>>>>,
    tls_connector: std::cell::OnceCell<Option<tokio_rustls::TlsConnector>>,
    connect_timeout: Duration,
}

/// What every worker's [`Upstreams`] shares.
pub(crate) struct SharedUpstreams {
    pub(crate) names: Arc<Names>,
    pub(crate) limits: Arc<Limits>,
    /// `TIMEOUT_QUEUE`.
    pub(crate) queue_timeout: Duration,
}

/// A pooled connection lent to one response; [`Lease::release`] gives it back.
pub(crate) struct Lease {
    sender: SendRequest<ReqBody>,
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
            limits: shared.limits,
            queue_timeout: shared.queue_timeout,
            literals: RefCell::new(HashMap::new()),
            idle: RefCell::new(HashMap::new()),
            tls_connector: std::cell::OnceCell::new(),
            connect_timeout,
        })
    }

    fn put_idle(&self, key: PoolKey, sender: SendRequest<ReqBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(sender);
        }
    }

    fn take_idle(&self, key: PoolKey) -> Option<SendRequest<ReqBody>> {
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

    /// Marks a name for refresh after its address failed.
    fn invalidate(&self, target: Target<'_>) {
        self.names.invalidate(target.host, target.tasks_first);
    }

    /// Sends `req` to one of `target`'s addresses on `port`, retrying on other addresses when
    /// a connection cannot be established. `preferred` picks an address index (stickiness).
    pub(crate) async fn send(
        &self,
        target: Target<'_>,
        port: u16,
        mut req: Request<ReqBody>,
        upgrade: bool,
        server_timeout: Duration,
        preferred: Option<usize>,
    ) -> Result<Exchange, SendError> {
        let mut slot = self.slot(target).await?;
        let (addrs, start) = self.addresses(target).await?;
        if addrs.is_empty() {
            return Err(SendError::Resolve {
                host: target.host.to_string(),
                reason: "no addresses".into(),
            });
        }
        let start = preferred.filter(|i| *i < addrs.len()).unwrap_or(start);
        let attempts = addrs.len().min(MAX_ATTEMPTS);
        let mut failed = Vec::new();
        let mut connect = Duration::ZERO;
        for attempt in 0..attempts {
            let addr = SocketAddr::new(addrs[(start + attempt) % addrs.len()], port);
            if !upgrade {
                while let Some(mut sender) = self.take_idle((addr, target.tls)) {
                    match tokio::time::timeout(server_timeout, sender.try_send_request(req)).await {
                        Err(_) => return Err(SendError::Timeout { addr }),
                        Ok(Ok(response)) => {
                            return Ok(Exchange {
                                response,
                                lease: Some(self.lease(sender, (addr, target.tls), slot.take())),
                                addr,
                                failed,
                                connect,
                            })
                        }
                        Ok(Err(mut e)) => match e.take_message() {
                            // The idle connection was closed before the request went out.
                            Some(back) => req = back,
                            None => {
                                return Err(SendError::Broken {
                                    addr,
                                    source: e.into_error(),
                                })
                            }
                        },
                    }
                }
            }
            let connecting = std::time::Instant::now();
            let connected = self.connect(addr, upgrade, target).await;
            connect += connecting.elapsed();
            let mut sender = match connected {
                Ok(sender) => sender,
                Err(error) => {
                    tracing::warn!(%addr, host = target.host, %error, "upstream connect failed");
                    self.invalidate(target);
                    failed.push(addr);
                    continue;
                }
            };
            return match tokio::time::timeout(server_timeout, sender.try_send_request(req)).await {
                Err(_) => Err(SendError::Timeout { addr }),
                Ok(Ok(response)) => Ok(Exchange {
                    response,
                    lease: (!upgrade).then(|| self.lease(sender, (addr, target.tls), slot.take())),
                    addr,
                    failed,
                    connect,
                }),
                Ok(Err(e)) => Err(SendError::Broken {
                    addr,
                    source: e.into_error(),
                }),
            };
        }
        Err(SendError::Unreachable {
            host: target.host.to_string(),
            tried: attempts,
            failed,
        })
    }

    fn lease(
        &self,
        sender: SendRequest<ReqBody>,
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
        // A fresh SYN every SYN_RETRY until the connect timeout (see SYN_RETRY).
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let stream = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.connect_timeout),
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
        Ok(stream)
    }

    fn tls_connector(&self) -> Option<tokio_rustls::TlsConnector> {
        self.tls_connector
            .get_or_init(|| match crate::tls::insecure_client_config() {
                Ok(config) => Some(tokio_rustls::TlsConnector::from(config)),
                Err(error) => {
                    tracing::error!(%error, "cannot build the upstream TLS configuration");
                    None
                }
            })
            .clone()
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        upgrade: bool,
        target: Target<'_>,
    ) -> Result<SendRequest<ReqBody>, ConnectError> {
        let stream = self.connect_tcp(addr).await.map_err(ConnectError::Io)?;
        let (sender, conn) = if target.tls {
            let connector = self.tls_connector().ok_or(ConnectError::TlsUnavailable)?;
            let name = crate::tls::upstream_name(target.host, addr);
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

/// Drives an upstream connection on the worker until it closes.
fn spawn_connection<T>(addr: SocketAddr, upgrade: bool, conn: http1::Connection<T, ReqBody>)
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
mod tests {
    use super::*;
    use crate::names::SystemLookup;

    fn upstreams() -> Rc<Upstreams> {
        let names = Names::on(
            Arc::new(SystemLookup::default()),
            tokio::runtime::Handle::current(),
        );
        let shared = SharedUpstreams {
            names,
            limits: Arc::default(),
            queue_timeout: Duration::from_secs(1),
        };
        Upstreams::new(Duration::from_secs(1), shared)
    }

    fn target(host: &str) -> Target<'_> {
        Target {
            host,
            tasks_first: true,
            tls: false,
            max_conn: None,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ip_literals_are_not_looked_up() {
        let up = upstreams();
        let (addrs, _) = up.addresses(target("127.0.0.1")).await.unwrap();
        assert_eq!(&*addrs, &["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(up.names.is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn localhost_resolves_through_the_system_resolver() {
        let up = upstreams();
        let (addrs, _) = up.addresses(target("localhost")).await.unwrap();
        assert!(addrs.iter().any(|a| a.is_loopback()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unknown_names_are_a_resolve_error() {
        let up = upstreams();
        let err = up
            .addresses(target("no-such-service.invalid"))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Resolve { .. }));
    }
}
