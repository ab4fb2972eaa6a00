//! Layer-4 listeners (`reqMode=tcp` and `reqMode=sni`): the sockets of their ports, opened and
//! closed at runtime, and the forwarding of each accepted connection.
//!
//! [`StreamListeners`] is the shared, thread-safe set of layer-4 sockets. The registry calls
//! [`StreamListeners::open`] with the ports of a candidate service set **before** it publishes
//! it (so a port that cannot be bound is an error and nothing changes), then
//! [`StreamListeners::retain`] after publishing (closing ports no service uses any more and
//! telling the workers). Every port has one `SO_REUSEPORT` socket per worker; each worker
//! accepts on its own socket. HTTP listeners are never touched.
//!
//! A connection is routed with the snapshot current when it is accepted:
//! 1. when the port routes by server name, the first bytes are read (up to 5 s, or
//!    `timeoutClient` when shorter) until a complete TLS ClientHello shows its SNI; a client that
//!    is not speaking TLS goes to the default route;
//! 2. the route's upstream addresses are ordered by its balance (`roundrobin`, `leastconn`,
//!    `source`), addresses failing `checkTcp` are skipped, and up to three are tried (each within
//!    `TIMEOUT_CONNECT`);
//! 3. the bytes already read are replayed, then bytes are copied both ways until both sides
//!    close or nothing moves for `timeoutTunnel` (default `TIMEOUT_TUNNEL`).
//!
//! `clitcpka` turns on `SO_KEEPALIVE` for the client socket. Balancing state (round-robin
//! position, open-connection counts for `leastconn`) and check results are per worker.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::client_hello::{self, Peek};
use sluice_core::service::Balance;
use sluice_core::stream::{StreamRoute, StreamTable};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::context::Worker;
use crate::upstream::Target;

/// The longest wait for a ClientHello (HAProxy's `tcp-request inspect-delay 5s` in DFP).
const INSPECT_LIMIT: Duration = Duration::from_secs(5);
/// Upstream addresses tried per connection.
const MAX_ATTEMPTS: usize = 3;
/// `checkTcp` interval, and the failures/successes that mark an address down/up (HAProxy's
/// `inter 2s fall 3 rise 2`).
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
const CHECK_FALL: u32 = 3;
const CHECK_RISE: u32 = 2;

/// A layer-4 port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StreamListenError {
    /// Binding the port failed.
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
}

impl StreamListenError {
    /// The port that failed.
    pub fn port(&self) -> u16 {
        match self {
            StreamListenError::Bind { port, .. } => *port,
        }
    }
}

/// The layer-4 sockets, one per worker and port. See the module documentation.
pub struct StreamListeners {
    workers: usize,
    http_ports: Mutex<Vec<u16>>,
    open: Mutex<BTreeMap<u16, Arc<Vec<StdListener>>>>,
    version: watch::Sender<u64>,
}

impl std::fmt::Debug for StreamListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamListeners")
            .field("workers", &self.workers)
            .field("ports", &self.ports())
            .finish()
    }
}

impl StreamListeners {
    /// An empty set for a data plane with `workers` workers; `http_ports` are the HTTP listener
    /// ports layer-4 services must not use (updated with the bound ports by the data plane).
    pub fn new(workers: usize, http_ports: &[u16]) -> Arc<StreamListeners> {
        Arc::new(StreamListeners {
            workers: workers.max(1),
            http_ports: Mutex::new(http_ports.iter().copied().filter(|p| *p != 0).collect()),
            open: Mutex::new(BTreeMap::new()),
            version: watch::channel(0).0,
        })
    }

    /// The HTTP listener ports (a layer-4 `srcPort` must not be one of them).
    pub fn http_ports(&self) -> Vec<u16> {
        lock(&self.http_ports).clone()
    }

    /// Records the HTTP ports actually bound.
    pub fn set_http_ports(&self, ports: &[u16]) {
        let mut current = lock(&self.http_ports);
        for &p in ports {
            if p != 0 && !current.contains(&p) {
                current.push(p);
            }
        }
    }

    /// The open layer-4 ports.
    pub fn ports(&self) -> Vec<u16> {
        lock(&self.open).keys().copied().collect()
    }

    /// Binds every port of `ports` that is not open yet. On failure the ports bound by this
    /// call are closed again and the error names the port.
    pub fn open(&self, ports: &[u16]) -> Result<(), StreamListenError> {
        let mut open = lock(&self.open);
        let mut fresh: Vec<(u16, Vec<StdListener>)> = Vec::new();
        for &port in ports {
            if open.contains_key(&port) || fresh.iter().any(|(p, _)| *p == port) {
                continue;
            }
            let sockets = crate::listener::bind_reuseport(port, self.workers)
                .map_err(|source| StreamListenError::Bind { port, source })?;
            fresh.push((port, sockets));
        }
        for (port, sockets) in fresh {
            tracing::info!(port, "layer-4 listener bound");
            open.insert(port, Arc::new(sockets));
        }
        Ok(())
    }

    /// Closes every open port not in `ports` and tells the workers about the current set.
    pub fn retain(&self, ports: &[u16]) {
        {
            let mut open = lock(&self.open);
            let closing: Vec<u16> = open
                .keys()
                .copied()
                .filter(|p| !ports.contains(p))
                .collect();
            for port in closing {
                open.remove(&port);
                tracing::info!(port, "layer-4 listener closed");
            }
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// This worker's socket of every open port (duplicated file descriptors).
    fn for_worker(&self, index: usize) -> Vec<(u16, std::io::Result<StdListener>)> {
        lock(&self.open)
            .iter()
            .map(|(port, sockets)| (*port, sockets[index % sockets.len()].try_clone()))
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Per-worker balancing and health state.
#[derive(Default)]
struct Balancer {
    next: RefCell<HashMap<String, usize>>,
    active: RefCell<HashMap<SocketAddr, usize>>,
    health: RefCell<HashMap<SocketAddr, Health>>,
}

#[derive(Clone, Copy)]
struct Health {
    up: bool,
    fails: u32,
    oks: u32,
}

impl Balancer {
    fn is_down(&self, addr: SocketAddr) -> bool {
        self.health.borrow().get(&addr).is_some_and(|h| !h.up)
    }

    fn record_check(&self, addr: SocketAddr, ok: bool) {
        let mut health = self.health.borrow_mut();
        let h = health.entry(addr).or_insert(Health {
            up: true,
            fails: 0,
            oks: 0,
        });
        if ok {
            h.fails = 0;
            h.oks += 1;
            if !h.up && h.oks >= CHECK_RISE {
                h.up = true;
                tracing::info!(%addr, "tcp check: address is up");
            }
        } else {
            h.oks = 0;
            h.fails += 1;
            if h.up && h.fails >= CHECK_FALL {
                h.up = false;
                tracing::warn!(%addr, "tcp check: address is down");
            }
        }
    }

    /// Orders candidate addresses for one connection.
    fn order(
        &self,
        route: &StreamRoute,
        mut candidates: Vec<SocketAddr>,
        client: IpAddr,
    ) -> Vec<SocketAddr> {
        if candidates.is_empty() {
            return candidates;
        }
        let n = candidates.len();
        let start = match route.balance {
            Balance::Source => {
                let mut h = DefaultHasher::new();
                client.hash(&mut h);
                (h.finish() % n as u64) as usize
            }
            Balance::RoundRobin | Balance::LeastConn => {
                let mut next = self.next.borrow_mut();
                let slot = next.entry(route.name.clone()).or_insert(0);
                let start = *slot % n;
                *slot = slot.wrapping_add(1);
                start
            }
        };
        candidates.rotate_left(start);
        if route.balance == Balance::LeastConn {
            let active = self.active.borrow();
            candidates.sort_by_key(|a| active.get(a).copied().unwrap_or(0));
        }
        candidates
    }
}

/// Counts an open upstream connection for `leastconn` while it lives.
struct ActiveGuard {
    balancer: Rc<Balancer>,
    addr: SocketAddr,
}

impl ActiveGuard {
    fn new(balancer: Rc<Balancer>, addr: SocketAddr) -> ActiveGuard {
        *balancer.active.borrow_mut().entry(addr).or_insert(0) += 1;
        ActiveGuard { balancer, addr }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut active = self.balancer.active.borrow_mut();
        if let Some(n) = active.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                active.remove(&self.addr);
            }
        }
    }
}

/// Runs on every worker: keeps one accept loop per open layer-4 port and the `checkTcp`
/// checks, until the data plane stops.
pub(crate) async fn supervise(
    index: usize,
    worker: Rc<Worker>,
    listeners: Arc<StreamListeners>,
    drain: tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let balancer = Rc::new(Balancer::default());
    let checks = tokio::task::spawn_local(run_checks(worker.clone(), balancer.clone()));
    let mut version = listeners.version.subscribe();
    let mut running: HashMap<u16, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        version.borrow_and_update();
        let wanted = listeners.for_worker(index);
        let ports: Vec<u16> = wanted.iter().map(|(p, _)| *p).collect();
        running.retain(|port, task| {
            let keep = ports.contains(port);
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, socket) in wanted {
            if running.contains_key(&port) {
                continue;
            }
            let listener = socket.and_then(TcpListener::from_std);
            match listener {
                Ok(listener) => {
                    running.insert(
                        port,
                        tokio::task::spawn_local(accept_loop(
                            port,
                            listener,
                            worker.clone(),
                            balancer.clone(),
                            drain.clone(),
                        )),
                    );
                }
                Err(error) => {
                    tracing::error!(worker = index, port, %error, "cannot use layer-4 listener")
                }
            }
        }
        tokio::select! {
            changed = version.changed() => if changed.is_err() { break },
            _ = stop.wait_for(Option::is_some) => break,
        }
    }
    for (_, task) in running {
        task.abort();
    }
    checks.abort();
}

async fn accept_loop(
    port: u16,
    listener: TcpListener,
    worker: Rc<Worker>,
    balancer: Rc<Balancer>,
    drain: tokio::sync::mpsc::Sender<()>,
) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(port, %error, "layer-4 accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let worker = worker.clone();
        let balancer = balancer.clone();
        let drain = drain.clone();
        tokio::task::spawn_local(async move {
            handle(worker, balancer, port, stream, client).await;
            drop(drain);
        });
    }
}

async fn handle(
    worker: Rc<Worker>,
    balancer: Rc<Balancer>,
    port: u16,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    // The request log's trace of this connection, written when it is dropped.
    let mut trace = worker.access_log.as_ref().map(|log| log.tcp(peer, port));
    let snapshot = worker.snapshot.load_full();
    let Some(listen) = snapshot.stream.port(port) else {
        tracing::debug!(port, %peer, "no layer-4 route on this port; closing");
        if let Some(trace) = &mut trace {
            trace.end("no_route");
        }
        return;
    };
    let _ = client.set_nodelay(true);
    if listen.clitcpka {
        let _ = SockRef::from(&client).set_keepalive(true);
    }
    let client_timeout = listen
        .timeout_client
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(worker.timeouts.client);
    let mut buffered = Vec::new();
    let mut server_name = None;
    if listen.needs_server_name() {
        match read_hello(&mut client, INSPECT_LIMIT.min(client_timeout)).await {
            Some((bytes, name)) => {
                buffered = bytes;
                server_name = name;
            }
            None => return,
        }
    }
    let Some(route) = listen.pick(server_name.as_deref()) else {
        tracing::debug!(port, %peer, server_name = server_name.as_deref().unwrap_or("-"), "no layer-4 route matched; closing");
        if let Some(trace) = &mut trace {
            trace.end("no_route");
        }
        return;
    };
    let connecting = trace.as_mut().map(|trace| {
        trace.routed(&route.service);
        Instant::now()
    });
    let Some((upstream, addr, tries)) = connect(&worker, &balancer, route, peer.ip()).await else {
        if let Some(trace) = &mut trace {
            trace.end("upstream_unreachable");
        }
        return;
    };
    if let (Some(trace), Some(connecting)) = (&mut trace, connecting) {
        trace.connected(addr, tries, connecting);
    }
    let _active = ActiveGuard::new(balancer, addr);
    let mut upstream = upstream;
    if !buffered.is_empty() && upstream.write_all(&buffered).await.is_err() {
        if let Some(trace) = &mut trace {
            trace.end("upstream_broken");
        }
        return;
    }
    let idle = route
        .timeout_tunnel
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(worker.timeouts.tunnel);
    tracing::debug!(port, %peer, upstream = %addr, route = %route.name, "layer-4 connection established");
    match &mut trace {
        None => crate::tunnel::splice(client, upstream, idle).await,
        Some(trace) => {
            let client = trace.count(client, buffered.len());
            crate::tunnel::splice(client, upstream, idle).await;
            trace.end("closed");
        }
    }
}

/// Reads until the bytes hold a complete ClientHello, are clearly not TLS, or `limit` passes.
/// Returns the bytes read and the server name; `None` when the client went away.
async fn read_hello(client: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Option<String>)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(deadline, client.read(&mut chunk)).await;
        match read {
            Err(_) => return Some((buf, None)),
            Ok(Err(_)) | Ok(Ok(0)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        match client_hello::peek(&buf) {
            Peek::Incomplete if buf.len() < client_hello::MAX_HELLO + 4096 => continue,
            Peek::Incomplete | Peek::NotTls => return Some((buf, None)),
            Peek::Hello(name) => return Some((buf, name)),
        }
    }
}

/// Connects to one of the route's upstream addresses, trying up to three.
async fn connect(
    worker: &Worker,
    balancer: &Rc<Balancer>,
    route: &StreamRoute,
    client: IpAddr,
) -> Option<(TcpStream, SocketAddr, usize)> {
    let mut candidates = Vec::new();
    for target in &route.targets {
        let resolved = worker
            .upstreams
            .addresses(Target {
                host: &target.host,
                tasks_first: target.tasks_first,
                tls: false,
                max_conn: None,
            })
            .await;
        match resolved {
            Ok((addrs, _)) => {
                candidates.extend(addrs.iter().map(|ip| SocketAddr::new(*ip, target.port)))
            }
            Err(error) => {
                tracing::warn!(route = %route.name, %error, "layer-4 upstream lookup failed")
            }
        }
    }
    if route.check_tcp {
        candidates.retain(|a| !balancer.is_down(*a));
    }
    let ordered = balancer.order(route, candidates, client);
    if ordered.is_empty() {
        tracing::warn!(route = %route.name, "no layer-4 upstream address available; closing");
        return None;
    }
    for (tried, addr) in ordered.iter().take(MAX_ATTEMPTS).enumerate() {
        match worker.upstreams.connect_tcp(*addr).await {
            Ok(stream) => return Some((stream, *addr, tried + 1)),
            Err(error) => {
                tracing::warn!(route = %route.name, %addr, %error, "layer-4 upstream connect failed")
            }
        }
    }
    None
}

/// `checkTcp`: connects to every checked address every [`CHECK_INTERVAL`].
async fn run_checks(worker: Rc<Worker>, balancer: Rc<Balancer>) {
    loop {
        tokio::time::sleep(CHECK_INTERVAL).await;
        let snapshot = worker.snapshot.load_full();
        let table: &StreamTable = &snapshot.stream;
        for target in table.checked_targets() {
            let resolved = worker
                .upstreams
                .addresses(Target {
                    host: &target.host,
                    tasks_first: target.tasks_first,
                    tls: false,
                    max_conn: None,
                })
                .await;
            let Ok((addrs, _)) = resolved else { continue };
            for ip in addrs.iter() {
                let addr = SocketAddr::new(*ip, target.port);
                let ok = tokio::time::timeout(
                    worker.timeouts.connect.min(CHECK_INTERVAL),
                    TcpStream::connect(addr),
                )
                .await
                .is_ok_and(|r| r.is_ok());
                balancer.record_check(addr, ok);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::stream::{NameMatch, StreamTarget};

    fn route(balance: Balance) -> StreamRoute {
        StreamRoute {
            name: "r".into(),
            service: "s".into(),
            names: NameMatch::default(),
            targets: vec![StreamTarget {
                host: "s".into(),
                port: 1,
                tasks_first: true,
                service: "s".into(),
            }],
            balance,
            timeout_tunnel: None,
            check_tcp: false,
        }
    }

    fn addrs() -> Vec<SocketAddr> {
        (1..=3)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect()
    }

    #[test]
    fn round_robin_rotates() {
        let b = Balancer::default();
        let r = route(Balance::RoundRobin);
        let client = IpAddr::from([1, 2, 3, 4]);
        let firsts: Vec<SocketAddr> = (0..3).map(|_| b.order(&r, addrs(), client)[0]).collect();
        assert_eq!(firsts, addrs());
    }

    #[test]
    fn source_is_stable_per_client() {
        let b = Balancer::default();
        let r = route(Balance::Source);
        let client = IpAddr::from([1, 2, 3, 4]);
        let first = b.order(&r, addrs(), client)[0];
        for _ in 0..5 {
            assert_eq!(b.order(&r, addrs(), client)[0], first);
        }
    }

    #[test]
    fn least_conn_prefers_idle_addresses() {
        let b = Rc::new(Balancer::default());
        let r = route(Balance::LeastConn);
        let client = IpAddr::from([1, 2, 3, 4]);
        let a = addrs();
        let _g1 = ActiveGuard::new(b.clone(), a[0]);
        let _g2 = ActiveGuard::new(b.clone(), a[1]);
        for _ in 0..3 {
            assert_eq!(b.order(&r, addrs(), client)[0], a[2]);
        }
        drop(_g1);
        assert!(!b.active.borrow().contains_key(&a[0]));
    }

    #[test]
    fn checks_mark_down_after_three_failures_and_up_after_two_successes() {
        let b = Balancer::default();
        let a = addrs()[0];
        assert!(!b.is_down(a));
        b.record_check(a, false);
        b.record_check(a, false);
        assert!(!b.is_down(a));
        b.record_check(a, false);
        assert!(b.is_down(a));
        b.record_check(a, true);
        assert!(b.is_down(a));
        b.record_check(a, true);
        assert!(!b.is_down(a));
    }

    #[test]
    fn ports_open_and_close() {
        let l = StreamListeners::new(2, &[80]);
        let free = {
            let s = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            s.local_addr().unwrap().port()
        };
        l.open(&[free]).unwrap();
        assert_eq!(l.ports(), [free]);
        assert_eq!(l.for_worker(1).len(), 1);
        l.retain(&[]);
        assert!(l.ports().is_empty());
    }

    #[test]
    fn a_busy_port_is_an_error_naming_it() {
        // A socket without SO_REUSEPORT blocks the port.
        let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let l = StreamListeners::new(1, &[]);
        let free = {
            let s = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let e = l.open(&[free, port]).unwrap_err();
        assert_eq!(e.port(), port);
        assert!(e.to_string().contains(&port.to_string()));
        assert!(l.ports().is_empty(), "nothing stays open after a failure");
    }
}
