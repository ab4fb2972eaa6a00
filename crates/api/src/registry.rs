//! The service registry: the single writer of routing state.
//!
//! Every change (reconfigure, remove, startup load) goes through [`Registry`], which holds the
//! service set, compiles a new [`Snapshot`] and publishes it with one atomic swap. Requests in
//! flight keep the snapshot they started with; nothing on the request path waits for a change.
//! After each change the set is handed to the [`Persister`], which writes it to `DATA_DIR` in
//! the background (coalescing bursts) and is flushed on shutdown.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_core::route::RouteTable;
use sluice_core::service::Service;
use sluice_proxy::auth::{AuthTable, Gate};
use sluice_proxy::snapshot::{Snapshot, SnapshotCell};
use sluice_proxy::stats::{RouteStats, StatsHub};
use tokio::sync::{watch, Mutex};

use crate::metrics::Counters;
use crate::store::Store;
use crate::streams::{StreamError, StreamGate};
use crate::users::UserSource;

/// The service set, keyed by service name: a persistent map, so publishing a version to
/// readers and the persister is O(1) however many services there are.
pub type ServiceMap = imbl::OrdMap<String, Arc<Service>>;

#[derive(Clone)]
struct Version {
    generation: u64,
    services: Arc<ServiceMap>,
}

struct Inner {
    services: ServiceMap,
    digests: HashMap<String, u64>,
    /// XOR of `digests`' values, kept up to date change by change.
    digest: u64,
    /// The routing table of `services`, updated change by change.
    table: RouteTable,
    /// The traffic counters of `services`, updated change by change.
    stats: RouteStats,
    generation: u64,
    /// Where basic-auth users come from, and the gates compiled from it.
    users: UserSource,
    global_gate: Option<Arc<Gate>>,
    gates: BTreeMap<String, Arc<Gate>>,
}

/// The single writer of routing state.
pub struct Registry {
    inner: Mutex<Inner>,
    current: ArcSwap<ServiceMap>,
    snapshot: SnapshotCell,
    persist_tx: watch::Sender<Version>,
    persisted_rx: watch::Receiver<u64>,
    stats: Arc<StatsHub>,
    counters: Counters,
    /// Checks layer-4 ports before publishing and opens/closes their listeners.
    streams: StreamGate,
}

/// How long the persister lets changes accumulate before writing them out together.
const PERSIST_DELAY: Duration = Duration::from_millis(100);

/// Writes the service set to the store whenever it changes.
pub struct Persister {
    store: Option<Store>,
    rx: watch::Receiver<Version>,
    done: watch::Sender<u64>,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The generation published by this change.
    pub generation: u64,
    /// For a reconfigure: a service of that name existed before. For a remove: it existed.
    pub existed: bool,
}

impl Registry {
    /// A registry publishing into `snapshot`, persisting through the returned [`Persister`]
    /// (which the caller runs) when `store` is given.
    pub fn new(snapshot: SnapshotCell, store: Option<Store>) -> (Arc<Registry>, Persister) {
        let first = Version {
            generation: 0,
            services: Arc::new(ServiceMap::new()),
        };
        let (persist_tx, rx) = watch::channel(first);
        let (done, persisted_rx) = watch::channel(0);
        let registry = Arc::new(Registry {
            inner: Mutex::new(Inner {
                services: ServiceMap::new(),
                digests: HashMap::new(),
                digest: 0,
                table: RouteTable::default(),
                stats: RouteStats::default(),
                generation: 0,
                users: UserSource::default(),
                global_gate: None,
                gates: BTreeMap::new(),
            }),
            current: ArcSwap::from_pointee(ServiceMap::new()),
            snapshot,
            persist_tx,
            persisted_rx,
            stats: StatsHub::new(),
            counters: Counters::default(),
            streams: StreamGate::default(),
        });
        (registry, Persister { store, rx, done })
    }

    /// The current service set.
    pub fn services(&self) -> Arc<ServiceMap> {
        self.current.load_full()
    }

    /// The currently published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The traffic counters the published snapshots point into.
    pub fn stats(&self) -> Arc<StatsHub> {
        self.stats.clone()
    }

    /// The control API's own counters (reconfigurations, rejections).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sets where basic-auth users come from (call before the first service is applied).
    /// Every gate is compiled again; the next publication carries them.
    pub async fn set_users(&self, users: UserSource) {
        let mut inner = self.inner.lock().await;
        inner.users = users;
        Self::compile_gates(&mut inner).await;
    }

    async fn compile_gates(inner: &mut Inner) {
        inner.global_gate = inner.users.global_gate();
        let mut gates = BTreeMap::new();
        for (name, service) in &inner.services {
            if let Some(gate) = inner.users.service_gate(service).await {
                gates.insert(name.clone(), gate);
            }
        }
        inner.gates = gates;
    }

    async fn compile_gate(inner: &mut Inner, service: &Service) {
        match inner.users.service_gate(service).await {
            Some(gate) => inner.gates.insert(service.name.clone(), gate),
            None => inner.gates.remove(&service.name),
        };
    }

    /// Connects the registry to the data plane's layer-4 listeners (call before the first
    /// service is applied): from then on tcp/sni ports are checked and bound before a change is
    /// published.
    pub fn attach_stream_listeners(&self, listeners: Arc<sluice_proxy::stream::StreamListeners>) {
        self.streams.attach(listeners);
    }

    /// Adds or replaces a service. A layer-4 port conflict or a port that cannot be bound is
    /// an error and changes nothing.
    pub async fn apply(&self, service: Service) -> Result<Change, StreamError> {
        let mut inner = self.inner.lock().await;
        self.streams.check(&inner.services, &service)?;
        Self::compile_gate(&mut inner, &service).await;
        let service = Arc::new(service);
        let existed = Self::insert(&mut inner, service.clone());
        let generation = self.publish(&mut inner, &[service], &[]);
        Ok(Change {
            generation,
            existed,
        })
    }

    /// Removes a service by name.
    pub async fn remove(&self, name: &str) -> Change {
        let mut inner = self.inner.lock().await;
        if let Some(old) = inner.digests.remove(name) {
            inner.digest ^= old;
        }
        inner.gates.remove(name);
        let existed = inner.services.remove(name).is_some();
        let generation = if existed {
            self.publish(&mut inner, &[], &[name])
        } else {
            inner.generation
        };
        Change {
            generation,
            existed,
        }
    }

    /// Adds or replaces several services with one publication (startup load, listener sync).
    pub async fn apply_all(&self, services: Vec<Service>) -> u64 {
        let mut inner = self.inner.lock().await;
        let mut applied = Vec::with_capacity(services.len());
        for service in services {
            if let Err(error) = self.streams.check(&inner.services, &service) {
                tracing::error!(service = %service.name, %error, "service not applied");
                continue;
            }
            Self::compile_gate(&mut inner, &service).await;
            let service = Arc::new(service);
            Self::insert(&mut inner, service.clone());
            applied.push(service);
        }
        self.publish(&mut inner, &applied, &[])
    }

    /// Puts `service` into the set, keeping the running digest. True when it replaced one.
    fn insert(inner: &mut Inner, service: Arc<Service>) -> bool {
        let digest = service_digest(&service);
        if let Some(old) = inner.digests.insert(service.name.clone(), digest) {
            inner.digest ^= old;
        }
        inner.digest ^= digest;
        inner
            .services
            .insert(service.name.clone(), service)
            .is_some()
    }

    /// Compiles and publishes the current set again (`/reload?recreate=true`).
    pub async fn republish(&self) -> u64 {
        let mut inner = self.inner.lock().await;
        Self::compile_gates(&mut inner).await;
        inner.table = RouteTable::build(inner.services.values());
        inner.stats = self.stats.bind(&inner.table);
        self.publish(&mut inner, &[], &[])
    }

    /// Publishes the set after `upserts` were put in and `removed` taken out of it: the route
    /// table and the counters are updated for those services only.
    fn publish(&self, inner: &mut Inner, upserts: &[Arc<Service>], removed: &[&str]) -> u64 {
        inner.generation += 1;
        if !upserts.is_empty() || !removed.is_empty() {
            inner.table = inner.table.update(upserts, removed);
            let mut stats = inner.stats.clone();
            for service in upserts {
                stats = self.stats.bind_service(&stats, service);
            }
            for name in removed {
                stats = self.stats.unbind_service(&stats, name);
            }
            inner.stats = stats;
        }
        let table = inner.table.clone();
        let auth = AuthTable::new(
            inner.global_gate.clone(),
            inner
                .gates
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let stats = inner.stats.clone();
        let digest = inner.digest;
        let stream = self
            .streams
            .table(&inner.services, &self.snapshot.load().stream);
        self.snapshot.store(Arc::new(Snapshot {
            generation: inner.generation,
            digest: format!("{digest:016x}"),
            table,
            auth,
            stats,
            stream,
        }));
        self.streams.retain(&self.snapshot.load().stream);
        let services = Arc::new(inner.services.clone());
        self.current.store(services.clone());
        let _ = self.persist_tx.send(Version {
            generation: inner.generation,
            services,
        });
        inner.generation
    }

    /// Waits until everything published so far is on disk, for at most `limit`.
    pub async fn flush(&self, limit: Duration) -> bool {
        let target = self.persist_tx.borrow().generation;
        let mut rx = self.persisted_rx.clone();
        tokio::time::timeout(limit, rx.wait_for(|done| *done >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Persister {
    /// Writes each new version until the registry is dropped.
    pub async fn run(mut self) {
        loop {
            let version = self.rx.borrow_and_update().clone();
            if let Some(store) = &self.store {
                let store = store.clone();
                let services = version.services.clone();
                let result = tokio::task::spawn_blocking(move || {
                    store.save(services.iter().map(|(name, svc)| (name, &svc.params)))
                })
                .await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "cannot persist the service set"),
                    Err(error) => tracing::error!(%error, "persistence task failed"),
                }
            }
            let _ = self.done.send(version.generation);
            if self.rx.changed().await.is_err() {
                break;
            }
            // Let a burst of changes settle into one write.
            tokio::time::sleep(PERSIST_DELAY).await;
        }
    }
}

/// A hash of what routes a service: its parameters, except `distribute`, which only says how
/// the request travelled (a replica receives `distribute=false` from the one that got `true`).
fn service_digest(service: &Service) -> u64 {
    let mut h = DefaultHasher::new();
    for (key, value) in service
        .params
        .iter()
        .filter(|(k, _)| k.as_str() != "distribute")
    {
        key.hash(&mut h);
        value.hash(&mut h);
    }
    h.finish()
}
