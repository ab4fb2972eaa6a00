//! The service registry: the single writer of routing state.
//!
//! Every change (reconfigure, remove, startup load, listener sync) goes through [`Registry`],
//! which holds the service set, compiles a new [`Snapshot`] and publishes it with one atomic
//! swap. Requests in flight keep the snapshot they started with; nothing on the request path
//! waits for a change.
//!
//! # Acknowledged means durable
//!
//! A change requested through the API ([`Registry::apply`], [`Registry::remove`]) is written to
//! `DATA_DIR` **before** it is published, and its caller is answered only after that write
//! (write-ahead). Concurrent changes are committed together (group commit): each request queues
//! its change and the first task to take the registry's lock checks every queued change against
//! the set, writes the resulting set once (temporary file, fsync, rename, fsync of the
//! directory), publishes it once and answers every waiter. Changes that arrive during a write
//! wait for the next one. When the write fails, every change of that batch is rejected with
//! the cause and nothing of it is published or kept: the in-memory state always equals the
//! file, so a rejected request changes nothing and an acknowledged one is never lost.
//!
//! Services from the startup load and the listener's sync ([`Registry::apply_all`]) answer no
//! one: they are published even when the write fails (logged), and the next successful write
//! stores them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest as _, Sha256};
use sluice_core::route::RouteTable;
use sluice_core::service::Service;
use sluice_proxy::auth::{AuthTable, Gate};
use sluice_proxy::snapshot::{Snapshot, SnapshotCell};
use sluice_proxy::stats::{RouteStats, StatsHub};
use tokio::sync::{oneshot, Mutex};

use crate::metrics::Counters;
use crate::services::ServiceMap;
use crate::store::{Store, StoreError};
use crate::streams::{StreamError, StreamGate};
use crate::users::UserSource;

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
    /// `services` holds changes that are not in the state file (a failed write of a sync).
    dirty: bool,
}

/// A requested change, waiting for the next commit.
enum Op {
    Upsert(Box<Service>),
    Remove(String),
}

struct Pending {
    op: Op,
    /// For a correction ([`Registry::correct`]): the service as the correction was computed
    /// against (`None`: absent). The op is dropped when the set holds something else by then.
    expected: Option<Option<Arc<Service>>>,
    reply: oneshot::Sender<Result<Change, CommitError>>,
}

/// A change the listener's resync asks for, computed against one version of the set.
#[derive(Debug, Clone)]
pub struct Correction {
    /// The service's name.
    pub name: String,
    /// The service to apply; `None` removes it.
    pub service: Option<Service>,
    /// The service as the correction was computed against (`None`: absent); the correction
    /// is dropped when the set holds anything else at commit time.
    pub expected: Option<Arc<Service>>,
}

/// The single writer of routing state.
pub struct Registry {
    inner: Mutex<Inner>,
    /// Changes queued for the next commit.
    pending: std::sync::Mutex<Vec<Pending>>,
    store: Option<Store>,
    current: ArcSwap<ServiceMap>,
    snapshot: SnapshotCell,
    stats: Arc<StatsHub>,
    counters: Counters,
    /// Checks layer-4 ports before publishing and opens/closes their listeners.
    streams: StreamGate,
}

/// A change that was not committed (and so changed nothing).
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The change cannot be served on layer 4 (port conflict or bind failure).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The state file could not be written; the batch this change was in was rejected.
    #[error("the change was not applied because it could not be saved: {0}")]
    Store(#[source] Arc<StoreError>),
    /// The commit task ended before answering (the process is stopping).
    #[error("the change was not committed: the registry is shutting down")]
    Abandoned,
    /// A correction was dropped: the service changed after the correction was computed (a
    /// newer change wins; the next resync looks again).
    #[error("the correction was dropped: the service changed meanwhile")]
    Superseded,
}

impl CommitError {
    /// True for a request that can never succeed as given; false for a failure of this proxy.
    pub fn is_client_error(&self) -> bool {
        match self {
            CommitError::Stream(e) => e.is_client_error(),
            CommitError::Store(_) | CommitError::Abandoned | CommitError::Superseded => false,
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The generation published by (or, for a change that changed nothing, current at) this
    /// change.
    pub generation: u64,
    /// For a reconfigure: a service of that name existed before. For a remove: it existed.
    pub existed: bool,
}

impl Registry {
    /// A registry publishing into `snapshot` and writing every change to `store` (when given)
    /// before publishing it.
    pub fn new(snapshot: SnapshotCell, store: Option<Store>) -> Arc<Registry> {
        Arc::new(Registry {
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
                dirty: false,
            }),
            pending: std::sync::Mutex::new(Vec::new()),
            store,
            current: ArcSwap::from_pointee(ServiceMap::new()),
            snapshot,
            stats: StatsHub::new(),
            counters: Counters::default(),
            streams: StreamGate::default(),
        })
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

    /// Checks, without binding or changing anything, that `service` has no layer-4 port
    /// conflict with the current set (a dry run).
    pub fn check_ports(&self, service: &Service) -> Result<(), CommitError> {
        Ok(self.streams.conflicts(&self.current.load(), service)?)
    }

    /// Adds or replaces a service; returns once the change is on disk and published. A layer-4
    /// port conflict, a port that cannot be bound or a failed write is an error and changes
    /// nothing.
    pub async fn apply(self: &Arc<Self>, service: Service) -> Result<Change, CommitError> {
        self.commit(Op::Upsert(Box::new(service))).await
    }

    /// Removes a service by name; returns once the removal is on disk and published. A failed
    /// write is an error and changes nothing.
    pub async fn remove(self: &Arc<Self>, name: &str) -> Result<Change, CommitError> {
        self.commit(Op::Remove(name.to_string())).await
    }

    /// Queues `op` for the next group commit and waits for its outcome. The commit runs in its
    /// own task, so a caller that goes away (a client hanging up) never leaves a batch half
    /// done.
    async fn commit(self: &Arc<Self>, op: Op) -> Result<Change, CommitError> {
        let (reply, outcome) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Pending {
                op,
                expected: None,
                reply,
            });
        let registry = Arc::clone(self);
        tokio::spawn(async move { registry.commit_pending().await });
        outcome.await.unwrap_or(Err(CommitError::Abandoned))
    }

    /// Applies `corrections` (the listener's resync) in one commit: written to the store before
    /// they are published, like any API change, and nothing written when none is left. Each
    /// correction names the service it was computed against; one whose service has changed
    /// since (a newer reconfigure or remove) is dropped with [`CommitError::Superseded`].
    /// Answers one outcome per correction, in order.
    pub async fn correct(
        self: &Arc<Self>,
        corrections: Vec<Correction>,
    ) -> Vec<Result<Change, CommitError>> {
        let mut outcomes = Vec::with_capacity(corrections.len());
        {
            // Queued under one lock: the same commit takes them all.
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for correction in corrections {
                let (reply, outcome) = oneshot::channel();
                let op = match correction.service {
                    Some(service) => Op::Upsert(Box::new(service)),
                    None => Op::Remove(correction.name),
                };
                pending.push(Pending {
                    op,
                    expected: Some(correction.expected),
                    reply,
                });
                outcomes.push(outcome);
            }
        }
        if outcomes.is_empty() {
            return Vec::new();
        }
        let registry = Arc::clone(self);
        tokio::spawn(async move { registry.commit_pending().await });
        let mut results = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            results.push(outcome.await.unwrap_or(Err(CommitError::Abandoned)));
        }
        results
    }

    /// Takes every queued change, checks each against the set as the batch has made it so far,
    /// writes the resulting set, and only then publishes it and answers the waiters. A batch
    /// whose write fails is answered with the error and leaves everything as it was.
    async fn commit_pending(&self) {
        let mut inner = self.inner.lock().await;
        let batch = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if batch.is_empty() {
            // An earlier task committed this one's change with its own batch.
            return;
        }
        let mut candidate = inner.services.clone();
        let mut touched = BTreeSet::new();
        let mut accepted = Vec::with_capacity(batch.len());
        for Pending {
            op,
            expected,
            reply,
        } in batch
        {
            if let Some(expected) = expected {
                let name = match &op {
                    Op::Upsert(service) => service.name.as_str(),
                    Op::Remove(name) => name.as_str(),
                };
                let unchanged = match (candidate.get(name), &expected) {
                    (Some(now), Some(then)) => Arc::ptr_eq(now, then),
                    (None, None) => true,
                    _ => false,
                };
                if !unchanged {
                    let _ = reply.send(Err(CommitError::Superseded));
                    continue;
                }
            }
            match op {
                Op::Upsert(service) => {
                    if let Err(error) = self.streams.check(&candidate, &service) {
                        let _ = reply.send(Err(error.into()));
                        continue;
                    }
                    let name = service.name.clone();
                    let existed = candidate.insert(name.clone(), Arc::from(service)).is_some();
                    touched.insert(name);
                    accepted.push((reply, existed));
                }
                Op::Remove(name) => {
                    let existed = candidate.remove(&name).is_some();
                    if existed {
                        touched.insert(name);
                    }
                    accepted.push((reply, existed));
                }
            }
        }
        if (!touched.is_empty() || inner.dirty) && !accepted.is_empty() {
            if let Err(error) = self.save(&candidate).await {
                let error = Arc::new(error);
                tracing::error!(%error, changes = accepted.len(), "changes rejected: the service set could not be saved");
                for (reply, _) in accepted {
                    let _ = reply.send(Err(CommitError::Store(error.clone())));
                }
                // Close layer-4 ports the rejected changes opened.
                self.streams.retain(&self.snapshot.load().stream);
                return;
            }
            inner.dirty = false;
        }
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        for name in touched {
            match candidate.get(&name) {
                Some(service) => {
                    Self::compile_gate(&mut inner, service).await;
                    Self::insert(&mut inner, service.clone());
                    upserts.push(service.clone());
                }
                None => {
                    if Self::take_out(&mut inner, &name) {
                        removed.push(name);
                    }
                }
            }
        }
        let generation = if upserts.is_empty() && removed.is_empty() {
            inner.generation
        } else {
            let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
            self.publish(&mut inner, &upserts, &removed)
        };
        for (reply, existed) in accepted {
            let _ = reply.send(Ok(Change {
                generation,
                existed,
            }));
        }
    }

    /// Writes `services` to the store (nothing without one).
    async fn save(&self, services: &ServiceMap) -> Result<(), StoreError> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let services = services.clone();
        let path = store.path();
        tokio::task::spawn_blocking(move || {
            store.save(services.iter().map(|(name, svc)| (name, &svc.params)))
        })
        .await
        .unwrap_or_else(|error| {
            Err(StoreError::Write {
                path,
                source: std::io::Error::other(error),
            })
        })
    }

    /// Adds or replaces several services with one publication and one write (startup load,
    /// listener sync). They are published even when the write fails (the error is logged and
    /// the next write stores them): no caller was promised durability. Returns the generation.
    pub async fn apply_all(&self, services: Vec<Service>) -> u64 {
        let mut inner = self.inner.lock().await;
        let mut applied = Vec::with_capacity(services.len());
        let mut changed = false;
        for service in services {
            if let Err(error) = self.streams.check(&inner.services, &service) {
                tracing::error!(service = %service.name, %error, "service not applied");
                continue;
            }
            changed |=
                inner.services.get(&service.name).map(|old| &old.params) != Some(&service.params);
            Self::compile_gate(&mut inner, &service).await;
            let service = Arc::new(service);
            Self::insert(&mut inner, service.clone());
            applied.push(service);
        }
        let generation = self.publish(&mut inner, &applied, &[]);
        if !changed && !inner.dirty {
            // A repeated sync that brought nothing new: the file already says this.
            return generation;
        }
        let services = inner.services.clone();
        match self.save(&services).await {
            Ok(()) => inner.dirty = false,
            Err(error) => {
                inner.dirty = true;
                tracing::error!(%error, "cannot save the service set; the next change retries");
            }
        }
        generation
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

    /// Takes `name` out of the set, keeping the running digest. True when it was there.
    fn take_out(inner: &mut Inner, name: &str) -> bool {
        if let Some(old) = inner.digests.remove(name) {
            inner.digest ^= old;
        }
        inner.gates.remove(name);
        inner.services.remove(name).is_some()
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
        self.current.store(Arc::new(inner.services.clone()));
        inner.generation
    }

    /// Waits (for at most `limit`) until no commit is running, then writes the set if a
    /// listener sync left it unsaved. True when everything published is on disk.
    pub async fn flush(&self, limit: Duration) -> bool {
        let work = async {
            let mut inner = self.inner.lock().await;
            if !inner.dirty {
                return true;
            }
            let services = inner.services.clone();
            match self.save(&services).await {
                Ok(()) => {
                    inner.dirty = false;
                    true
                }
                Err(error) => {
                    tracing::error!(%error, "cannot save the service set");
                    false
                }
            }
        };
        tokio::time::timeout(limit, work).await.unwrap_or(false)
    }
}

/// A hash of what routes a service: its parameters, except `distribute`, which only says how
/// the request travelled (a replica receives `distribute=false` from the one that got `true`).
/// SHA-256 over length-prefixed names and values, so every build of Sluice (whatever its Rust
/// release) gives the same digest for the same service and mixed versions agree.
fn service_digest(service: &Service) -> u64 {
    let mut h = Sha256::new();
    for (key, value) in service
        .params
        .iter()
        .filter(|(k, _)| k.as_str() != "distribute")
    {
        for part in [key, value] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use sluice_core::params::{params_from_query, parse_service, ParseContext};

    use super::*;

    fn svc(name: &str) -> Service {
        parse_service(
            &params_from_query(&format!("serviceName={name}&servicePath=/{name}&port=1")),
            &ParseContext::default(),
        )
        .unwrap()
    }

    fn store(tag: &str) -> (Store, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("sluice-registry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Store::open(&dir).unwrap(), dir)
    }

    #[tokio::test]
    async fn concurrent_changes_are_committed_together_and_written_before_the_answer() {
        let (store, dir) = store("group");
        let registry = Registry::new(sluice_proxy::snapshot::new_cell(), Some(store.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let registry = registry.clone();
            tasks.spawn(async move { registry.apply(svc(&format!("s{i}"))).await });
        }
        let mut generations = BTreeSet::new();
        while let Some(done) = tasks.join_next().await {
            generations.insert(done.unwrap().unwrap().generation);
        }
        // One batch, one write, one publication for the fifty changes.
        assert_eq!(generations.into_iter().collect::<Vec<_>>(), [1]);
        assert_eq!(store.recover().unwrap().services.len(), 50);
        let change = registry.remove("s7").await.unwrap();
        assert!(change.existed);
        assert!(!store.recover().unwrap().services.contains_key("s7"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_rejects_the_change_and_keeps_the_state() {
        let (store, dir) = store("fail");
        let registry = Registry::new(sluice_proxy::snapshot::new_cell(), Some(store.clone()));
        registry.apply(svc("kept")).await.unwrap();
        std::fs::create_dir(dir.join("services.json.tmp")).unwrap();
        let error = registry.apply(svc("refused")).await.unwrap_err();
        assert!(matches!(error, CommitError::Store(_)), "{error}");
        assert!(error.to_string().contains("services.json.tmp"), "{error}");
        let error = registry.remove("kept").await.unwrap_err();
        assert!(!error.is_client_error());
        let names: Vec<String> = registry.services().keys().cloned().collect();
        assert_eq!(names, ["kept"]);
        assert_eq!(registry.snapshot().generation, 1);
        std::fs::remove_dir(dir.join("services.json.tmp")).unwrap();
        registry.remove("kept").await.unwrap();
        assert!(store.recover().unwrap().services.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn corrections_are_one_commit_and_a_newer_change_wins() {
        let (store, dir) = store("correct");
        let registry = Registry::new(sluice_proxy::snapshot::new_cell(), Some(store.clone()));
        registry.apply(svc("a")).await.unwrap();
        registry.apply(svc("b")).await.unwrap();
        let before = registry.services();
        // A change lands after the corrections were computed against `before`.
        registry.apply(svc("b")).await.unwrap();
        let generation = registry.snapshot().generation;
        let mut moved = svc("a");
        moved.params.insert("port".into(), "2".into());
        let outcomes = registry
            .correct(vec![
                Correction {
                    name: "a".into(),
                    service: Some(moved),
                    expected: before.get("a").cloned(),
                },
                Correction {
                    name: "b".into(),
                    service: None,
                    expected: before.get("b").cloned(),
                },
                Correction {
                    name: "c".into(),
                    service: Some(svc("c")),
                    expected: None,
                },
            ])
            .await;
        assert_eq!(outcomes[0].as_ref().unwrap().generation, generation + 1);
        assert!(matches!(outcomes[1], Err(CommitError::Superseded)));
        assert_eq!(outcomes[2].as_ref().unwrap().generation, generation + 1);
        let saved = store.recover().unwrap().services;
        assert_eq!(saved.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(saved["a"]["port"], "2");
        // Only superseded corrections: nothing written, nothing published.
        std::fs::remove_file(store.path()).unwrap();
        let outcomes = registry
            .correct(vec![Correction {
                name: "c".into(),
                service: None,
                expected: None,
            }])
            .await;
        assert!(matches!(outcomes[0], Err(CommitError::Superseded)));
        assert!(!store.path().exists());
        assert_eq!(registry.snapshot().generation, generation + 1);
        assert!(registry.correct(Vec::new()).await.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The digest is SHA-256 based: the same on every build, so replicas of different versions
    /// (a rolling upgrade) agree. Pinned here so a change of hash shows up as a failing test.
    #[tokio::test]
    async fn the_digest_of_a_known_state_is_fixed() {
        let registry = Registry::new(sluice_proxy::snapshot::new_cell(), None);
        registry.apply(svc("go-demo")).await.unwrap();
        assert_eq!(registry.snapshot().digest, "d03a3b6664077650");
        let mut distributed = svc("go-demo");
        distributed
            .params
            .insert("distribute".into(), "false".into());
        registry.apply(distributed).await.unwrap();
        assert_eq!(
            registry.snapshot().digest,
            "d03a3b6664077650",
            "distribute does not count"
        );
        registry.apply(svc("other")).await.unwrap();
        registry.remove("other").await.unwrap();
        assert_eq!(registry.snapshot().digest, "d03a3b6664077650");
    }
}
