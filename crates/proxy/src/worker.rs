//! The data plane's threads: one worker per core, each with its own current-thread runtime,
//! its own `SO_REUSEPORT` listener on every HTTP port, and its own upstream pools. Workers
//! share nothing but the published routing snapshot, the TLS configuration of `:ssl` ports
//! and the layer-4 listener set ([`crate::stream`]).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sluice_core::service::ConnectionMode;
use sluice_core::settings::{PortSpec, Timeouts};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::connection::{http1_builder, idle_limit, serve_until_stopped, Prefixed};
use crate::context::Worker;
use crate::forward::{self, ConnInfo};
use crate::limits::Limits;
use crate::listener::bind_reuseport;
use crate::names::{Lookup, Names, SystemLookup};
use crate::passthrough::{self, Served};
use crate::snapshot::SnapshotCell;
use crate::stream::StreamListeners;
use crate::upstream::{SharedUpstreams, Upstreams};

/// What the data plane needs to start.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// HTTP ports to listen on (`0` picks a free port, shared by all workers); `:ssl` ports
    /// terminate TLS with [`DataPlaneConfig::tls`].
    pub ports: Vec<PortSpec>,
    /// The TLS configuration of `:ssl` ports (see [`crate::tls::server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The layer-4 (tcp/sni) listener set the workers serve.
    pub streams: Option<Arc<StreamListeners>>,
    /// Worker threads (at least one).
    pub workers: usize,
    /// DFP's `TIMEOUT_*` values.
    pub timeouts: Timeouts,
    /// `CONNECTION_MODE`.
    pub connection_mode: ConnectionMode,
    /// `HOSTS_FILE`: extra name-to-address entries consulted before the system resolver.
    pub hosts_file: Option<std::path::PathBuf>,
    /// Traffic counters and the statistics page ([`crate::stats_page`]).
    pub stats: crate::stats_page::StatsConfig,
    /// `COMPRESSION_ALGO` / `COMPRESSION_TYPE`: compression for services without their own
    /// `compressionAlgo` ([`crate::compress`]).
    pub compression: Option<sluice_core::service::Compression>,
    /// `DEBUG`: the request log ([`crate::access_log`]), `None` when off.
    pub access_log: Option<crate::access_log::AccessLog>,
    /// `MAX_CONNECTIONS`: client connections served at once, all HTTP ports and workers
    /// together. Past it, new connections wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// The Swarm tasks the listener reports ([`crate::membership`]), published by the API.
    pub membership: Arc<crate::membership::MembershipCell>,
}

/// A data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// A port could not be bound.
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread or its runtime could not start.
    #[error("cannot start worker thread: {0}")]
    Thread(#[source] std::io::Error),
    /// An `:ssl` port was asked for without a TLS configuration.
    #[error("port {port} is an :ssl port but no TLS configuration was given")]
    NoTls {
        /// The port.
        port: u16,
    },
}

/// The running data plane.
pub struct DataPlane {
    /// The upstream name cache (read by explain).
    names: Arc<Names>,
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    stop: watch::Sender<Option<Duration>>,
}

impl DataPlane {
    /// Binds every port and starts the workers. Returns once all listeners are bound.
    pub fn start(
        config: DataPlaneConfig,
        snapshot: SnapshotCell,
    ) -> Result<DataPlane, DataPlaneError> {
        let lookup = Arc::new(SystemLookup::new(config.hosts_file.clone()));
        DataPlane::start_with_lookup(config, snapshot, lookup)
    }

    /// [`DataPlane::start`] with upstream names looked up by `lookup` instead of the system
    /// resolver (tests use a slow stub).
    pub fn start_with_lookup(
        config: DataPlaneConfig,
        snapshot: SnapshotCell,
        lookup: Arc<dyn Lookup>,
    ) -> Result<DataPlane, DataPlaneError> {
        let names = Names::start(lookup).map_err(DataPlaneError::Thread)?;
        let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let limits = Arc::new(Limits::default());
        let workers = config.workers.max(1);
        // Claim each port exclusively (port 0 resolves to one concrete port), then give every
        // worker its own SO_REUSEPORT socket on it.
        let mut per_worker: Vec<Vec<(StdListener, bool)>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        let mut tls_addrs = Vec::new();
        for &PortSpec { port, ssl } in &config.ports {
            if ssl && config.tls.is_none() {
                return Err(DataPlaneError::NoTls { port });
            }
            let sockets = bind_reuseport(port, workers)
                .map_err(|source| DataPlaneError::Bind { port, source })?;
            let actual = sockets[0]
                .local_addr()
                .map_err(|source| DataPlaneError::Bind { port, source })?;
            addrs.push(actual);
            if ssl {
                tls_addrs.push(actual);
            }
            for (listeners, socket) in per_worker.iter_mut().zip(sockets) {
                listeners.push((socket, ssl));
            }
        }
        if let Some(streams) = &config.streams {
            let bound: Vec<u16> = addrs.iter().map(SocketAddr::port).collect();
            streams.set_http_ports(&bound);
        }
        let https_port = tls_addrs.first().map(SocketAddr::port);
        let (stop, stop_rx) = watch::channel(None);
        let mut threads = Vec::with_capacity(workers);
        for (index, listeners) in per_worker.into_iter().enumerate() {
            let snapshot = snapshot.clone();
            let config = config.clone();
            let stop_rx = stop_rx.clone();
            let names = names.clone();
            let connections = connections.clone();
            let limits = limits.clone();
            let handle = std::thread::Builder::new()
                .name(format!("sluice-worker-{index}"))
                .spawn(move || {
                    let shared = Shared {
                        snapshot,
                        names,
                        limits,
                        connections,
                        https_port,
                    };
                    run_worker(index, listeners, shared, config, stop_rx)
                })
                .map_err(DataPlaneError::Thread)?;
            threads.push(handle);
        }
        Ok(DataPlane {
            names,
            addrs,
            tls_addrs,
            threads,
            stop,
        })
    }

    /// The bound HTTP addresses, in the order of the configured ports.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound TLS (`:ssl`) addresses, in the order of the configured ports.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The upstream name cache the workers share (explain reads it, never adds to it).
    pub fn names(&self) -> Arc<Names> {
        self.names.clone()
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then closes the rest.
    pub fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// What every worker shares with the others.
struct Shared {
    snapshot: SnapshotCell,
    names: Arc<Names>,
    /// `maxConn` slots.
    limits: Arc<Limits>,
    /// One permit per client connection being served (`MAX_CONNECTIONS`).
    connections: Arc<Semaphore>,
    https_port: Option<u16>,
}

fn run_worker(
    index: usize,
    listeners: Vec<(StdListener, bool)>,
    shared: Shared,
    config: DataPlaneConfig,
    stop: watch::Receiver<Option<Duration>>,
) {
    let Shared {
        snapshot,
        names,
        limits,
        connections,
        https_port,
    } = shared;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(worker = index, %error, "cannot start worker runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let worker = Rc::new(Worker {
            current: std::cell::RefCell::new(Rc::new(snapshot.load_full())),
            snapshot,
            upstreams: Upstreams::new(
                config.timeouts.connect,
                SharedUpstreams {
                    names,
                    membership: config.membership.clone(),
                    limits,
                    health: config.stats.hub.health().clone(),
                    queue_timeout: config.timeouts.queue,
                },
            ),
            idle_limit: idle_limit(&config.timeouts),
            timeouts: config.timeouts,
            connection_mode: config.connection_mode,
            https_port,
            stats: config.stats.clone(),
            compression: config.compression.clone(),
            access_log: config.access_log.clone().map(Rc::new),
            membership: config.membership.clone(),
            buffers: crate::wire::Buffers::default(),
        });
        // Every connection task holds a sender; when all are gone, the worker has drained.
        let (drain_tx, mut drain_rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut accept_loops = Vec::new();
        let acceptor = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        for (std_listener, ssl) in listeners {
            let listener = match TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(error) => {
                    tracing::error!(worker = index, %error, "cannot register listener");
                    continue;
                }
            };
            accept_loops.push(tokio::task::spawn_local(accept_loop(
                listener,
                worker.clone(),
                Guards {
                    drain: drain_tx.clone(),
                    connections: connections.clone(),
                },
                stop.clone(),
                if ssl { acceptor.clone() } else { None },
            )));
        }
        if let Some(streams) = config.streams.clone() {
            accept_loops.push(tokio::task::spawn_local(crate::stream::supervise(
                index,
                worker.clone(),
                streams,
                drain_tx.clone(),
                stop.clone(),
            )));
        }
        let mut stop = stop;
        let grace = loop {
            if let Some(grace) = *stop.borrow_and_update() {
                break grace;
            }
            if stop.changed().await.is_err() {
                break Duration::ZERO;
            }
        };
        for task in accept_loops {
            let _ = task.await;
        }
        drop(drain_tx);
        if tokio::time::timeout(grace, drain_rx.recv()).await.is_err() {
            tracing::warn!(
                worker = index,
                ?grace,
                "connections still open after the grace period; closing them"
            );
        }
    });
}

/// What an accept loop hands each connection task, dropped when the connection ends.
struct Guards {
    /// The worker drains once every clone is gone.
    drain: tokio::sync::mpsc::Sender<()>,
    /// Where connection permits come from.
    connections: Arc<Semaphore>,
}

async fn accept_loop(
    listener: TcpListener,
    worker: Rc<Worker>,
    guards: Guards,
    mut stop: watch::Receiver<Option<Duration>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let Guards { drain, connections } = guards;
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let builder = Rc::new(http1_builder(&worker.timeouts));
    loop {
        // At MAX_CONNECTIONS, wait for a connection to end before accepting another: the
        // kernel's listen backlog holds the rest.
        let permit = tokio::select! {
            biased;
            _ = stop.changed() => break,
            permit = connections.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Some(acceptor) = &tls {
            let serve = crate::tls::serve(
                worker.clone(),
                acceptor.clone(),
                stream,
                client,
                local_port,
                stop.clone(),
            );
            let drain = drain.clone();
            tokio::task::spawn_local(async move {
                serve.await;
                drop((drain, permit));
            });
            continue;
        }
        // The task of an idle connection holds only what it needs to wait for its first
        // bytes (the client's address is asked for later): see `first_bytes`. It does not
        // hold the drain either: a connection that has sent nothing has nothing to finish,
        // so a stopping worker does not wait for it (its task is dropped with the worker).
        let drain = drain.downgrade();
        let stop = stop.clone();
        let worker = worker.clone();
        let builder = builder.clone();
        tokio::task::spawn_local(async move {
            if !first_bytes(&stream, worker.idle_limit).await || stop.borrow().is_some() {
                return;
            }
            let Some(drain) = drain.upgrade() else { return };
            // Boxed: the (large) connection state is allocated only now, so the task of an
            // idle connection stays small.
            Box::pin(serve_plain(worker, &builder, stream, local_port, stop)).await;
            drop((drain, permit));
        });
    }
}

/// Waits for a new connection's first bytes, allocating nothing for it: false when it closes
/// or stays silent for `limit`. Until then a connection costs its task (about 500 bytes) and
/// its socket registration (256), not hyper's buffers (about 24 KB).
///
/// A peek, not `TcpStream::readable()`: readiness may be reported before any byte is there
/// (a fresh socket is ready at once), and a poll function, so the wait keeps no waiter state
/// in the task.
async fn first_bytes(stream: &tokio::net::TcpStream, limit: Duration) -> bool {
    let peek = std::future::poll_fn(|cx| {
        let mut byte = [0u8; 1];
        stream.poll_peek(cx, &mut tokio::io::ReadBuf::new(&mut byte))
    });
    matches!(tokio::time::timeout(limit, peek).await, Ok(Ok(n)) if n > 0)
}

/// Serves one plain HTTP/1 client connection until it ends or the data plane stops: on the
/// pass-through path ([`crate::passthrough`]) while its requests are for it, then with hyper.
async fn serve_plain(
    worker: Rc<Worker>,
    builder: &http1::Builder,
    mut stream: tokio::net::TcpStream,
    local_port: u16,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    // A connection whose peer is already gone has nothing to serve.
    let Ok(client) = stream.peer_addr() else {
        return;
    };
    let conn = Rc::new(ConnInfo::new(client, local_port, false, false));
    let mut read = Vec::new();
    // The request log traces requests through hyper's path only.
    if worker.access_log.is_none() {
        let me = passthrough::Client {
            ip: conn.client_ip(),
            local_port,
        };
        match passthrough::serve(&worker, &mut stream, &me, &mut stop).await {
            Served::Closed => return,
            Served::Handoff(bytes) => read = bytes,
        }
    }
    let service = service_fn(move |req| {
        let worker = worker.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(forward::handle(worker, conn, req).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(Prefixed::new(read, stream)), service)
        .with_upgrades();
    if let Err(error) = serve_until_stopped(connection, stop).await {
        tracing::debug!(%client, %error, "client connection ended with an error");
    }
}
