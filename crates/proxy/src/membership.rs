//! Task membership on the data plane: the Swarm tasks the listener reported for each service,
//! compiled for requests ([`TaskMap`]) and published through its own [`ArcSwap`] cell
//! ([`MembershipCell`]).
//!
//! The control API is the one writer: it compiles every `PUT /v1/sluice/tasks` into a new
//! [`TaskMap`] (see [`TaskMap::compile`]) and publishes it. Requests read the cell without a
//! lock:
//! * a route whose service is in the map (and has no `outboundHostname`) is balanced over the
//!   map's *ready* task addresses, without DNS. A service the map does not hold (no listener,
//!   or one that does not push task sets) is resolved through `tasks.<service>` as before;
//! * a task that turns *draining* leaves the ready list at once, so it gets no new request;
//!   requests already sent to it finish. Its upgraded connections (WebSockets, tunnels) are
//!   closed at its drain deadline: the moment this proxy first saw it draining plus the
//!   service's `drainTimeout` ([`Drain`]).
//!
//! Of a task's addresses (one per network it is attached to), the one on a network this host
//! is attached to is used: the address whose subnet contains one of this host's interface
//! addresses, read once per compiled map ([`local_addresses`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_core::membership::{address_on, Membership, Phase, TaskState};
use tokio::sync::watch;
use tokio::time::Instant;

/// One task as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// Docker's task id.
    pub id: String,
    /// The address used to reach it (`None`: it shares no network with this host).
    pub address: Option<IpAddr>,
    /// Ready, draining or out.
    pub phase: Phase,
    /// Its reported state and desired state.
    pub state: TaskState,
    /// The state Swarm wants it in.
    pub desired_state: TaskState,
    /// When this proxy first saw it draining.
    pub draining_since: Option<Instant>,
}

/// One service's tasks.
#[derive(Debug)]
pub struct ServiceTasks {
    /// The addresses of its ready tasks, in task-id order.
    ready: Arc<[IpAddr]>,
    /// Whether any of its tasks has an address this host can reach. When none has (the
    /// service is on no network of this host's, or on none at all), requests fall back to
    /// DNS as if the listener had not reported the service.
    reachable: bool,
    /// Round-robin position, shared by every worker (as [`crate::names`]).
    next: AtomicUsize,
    /// Every reported task, in task-id order.
    pub tasks: Vec<TaskView>,
}

impl ServiceTasks {
    /// The ready addresses.
    pub fn ready(&self) -> &Arc<[IpAddr]> {
        &self.ready
    }

    /// Whether requests use these tasks (some task is on a network of this host's) rather
    /// than DNS.
    pub fn reachable(&self) -> bool {
        self.reachable
    }
}

/// One published membership.
#[derive(Debug, Default)]
pub struct TaskMap {
    /// Increases with every publication.
    pub generation: u64,
    /// `serviceName` -> its tasks.
    pub services: HashMap<String, ServiceTasks>,
    /// The membership as received (for `GET /v1/sluice/tasks` and the next diff).
    pub received: Membership,
}

impl TaskMap {
    /// Compiles `received` into the map that follows `previous`: task addresses are picked
    /// with `local` (this host's addresses; when empty, a task's first address is used) and a
    /// task draining in `previous` keeps the time it started draining.
    pub fn compile(
        previous: &TaskMap,
        received: Membership,
        local: &[IpAddr],
        now: Instant,
    ) -> TaskMap {
        let mut services = HashMap::with_capacity(received.services.len());
        for (name, set) in &received.services {
            let before = previous.services.get(name);
            let mut tasks: Vec<TaskView> = set
                .tasks
                .iter()
                .map(|task| {
                    let phase = task.phase();
                    let address = if local.is_empty() {
                        task.addresses.first().map(|net| net.addr())
                    } else {
                        address_on(task, local)
                    };
                    let draining_since = (phase == Phase::Draining).then(|| {
                        before
                            .and_then(|b| b.tasks.iter().find(|t| t.id == task.id))
                            .and_then(|t| t.draining_since)
                            .unwrap_or(now)
                    });
                    TaskView {
                        id: task.id.clone(),
                        address,
                        phase,
                        state: task.state,
                        desired_state: task.desired_state,
                        draining_since,
                    }
                })
                .collect();
            tasks.sort_by(|a, b| a.id.cmp(&b.id));
            let mut ready: Vec<IpAddr> = tasks
                .iter()
                .filter(|t| t.phase == Phase::Ready)
                .filter_map(|t| t.address)
                .collect();
            ready.dedup();
            let reachable = tasks.iter().any(|t| t.address.is_some());
            services.insert(
                name.clone(),
                ServiceTasks {
                    ready: Arc::from(ready),
                    reachable,
                    next: AtomicUsize::new(0),
                    tasks,
                },
            );
        }
        TaskMap {
            generation: previous.generation + 1,
            services,
            received,
        }
    }

    /// The ready addresses of `service` and the round-robin start for one request; `None`
    /// when the map does not hold the service or none of its tasks is reachable from here.
    pub fn ready(&self, service: &str) -> Option<(Arc<[IpAddr]>, usize)> {
        let tasks = self.services.get(service).filter(|t| t.reachable)?;
        let start = tasks.next.fetch_add(1, Ordering::Relaxed);
        Some((tasks.ready.clone(), start))
    }

    /// When the task of `service` at `address` started draining, if it is draining.
    pub fn draining_since(&self, service: &str, address: IpAddr) -> Option<Instant> {
        self.services
            .get(service)?
            .tasks
            .iter()
            .filter(|t| t.address == Some(address))
            .filter_map(|t| t.draining_since)
            .min()
    }
}

/// Where the current [`TaskMap`] is published, with a signal for tunnels waiting on drains.
#[derive(Debug)]
pub struct MembershipCell {
    current: ArcSwap<TaskMap>,
    changed: watch::Sender<u64>,
}

impl Default for MembershipCell {
    fn default() -> Self {
        MembershipCell {
            current: ArcSwap::from_pointee(TaskMap::default()),
            changed: watch::Sender::new(0),
        }
    }
}

impl MembershipCell {
    /// A cell holding the empty map (every service resolved by DNS).
    pub fn new() -> Arc<MembershipCell> {
        Arc::new(MembershipCell::default())
    }

    /// The current map.
    pub fn load(&self) -> arc_swap::Guard<Arc<TaskMap>> {
        self.current.load()
    }

    /// The current map, owned.
    pub fn load_full(&self) -> Arc<TaskMap> {
        self.current.load_full()
    }

    /// Publishes `map` (by the one writer) and wakes tunnels waiting on drains.
    pub fn publish(&self, map: TaskMap) {
        let generation = map.generation;
        self.current.store(Arc::new(map));
        self.changed.send_replace(generation);
    }

    /// The ready addresses of `service` (see [`TaskMap::ready`]).
    pub fn ready(&self, service: &str) -> Option<(Arc<[IpAddr]>, usize)> {
        self.current.load().ready(service)
    }

    /// A watch on the drain of the task of `service` at `address`, for a tunnel to it.
    pub fn drain(self: &Arc<Self>, service: &str, address: IpAddr, timeout: Duration) -> Drain {
        Drain {
            cell: Arc::clone(self),
            changes: self.changed.subscribe(),
            service: service.to_owned(),
            address,
            timeout,
        }
    }
}

/// The drain deadline of one task, for a tunnel to it.
#[derive(Debug)]
pub struct Drain {
    cell: Arc<MembershipCell>,
    changes: watch::Receiver<u64>,
    service: String,
    address: IpAddr,
    timeout: Duration,
}

impl Drain {
    /// Resolves at the task's drain deadline; pending while the task is not draining.
    pub async fn deadline(mut self) {
        loop {
            self.changes.mark_unchanged();
            let since = self.cell.load().draining_since(&self.service, self.address);
            match since {
                Some(since) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(since + self.timeout) => return,
                        changed = self.changes.changed() => if changed.is_err() {
                            tokio::time::sleep_until(since + self.timeout).await;
                            return;
                        },
                    }
                }
                None => {
                    if self.changes.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        }
    }
}

/// This host's interface addresses (empty when they cannot be read).
pub fn local_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.iter().map(if_addrs::Interface::ip).collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot read this host's interface addresses; using each task's first address");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::membership::{Task, TaskSet};

    use super::*;

    fn task(id: &str, state: TaskState, desired: TaskState, addrs: &[&str]) -> Task {
        Task {
            id: id.to_owned(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            state,
            desired_state: desired,
        }
    }

    fn membership(tasks: Vec<Task>) -> Membership {
        Membership {
            observed_at_ms: 1,
            services: [(
                "web".to_owned(),
                TaskSet {
                    observed_at_ms: 1,
                    version: 1,
                    tasks,
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    use TaskState::{Pending, Running, Shutdown};

    #[tokio::test(start_paused = true)]
    async fn ready_tasks_on_local_networks_are_the_addresses() {
        let local = [ip("10.0.1.2"), ip("172.18.0.3")];
        let received = membership(vec![
            task("b", Running, Running, &["10.0.9.4/24", "10.0.1.4/24"]),
            task("a", Running, Running, &["10.0.1.3/24"]),
            task("c", Pending, Running, &["10.0.1.5/24"]),
            task("d", Running, Shutdown, &["10.0.1.6/24"]),
            task("e", Running, Running, &["192.168.0.9/24"]),
        ]);
        let map = TaskMap::compile(&TaskMap::default(), received, &local, Instant::now());
        let (ready, _) = map.ready("web").unwrap();
        assert_eq!(&*ready, &[ip("10.0.1.3"), ip("10.0.1.4")]);
        assert!(map.ready("other").is_none());
        assert!(map.draining_since("web", ip("10.0.1.6")).is_some());
        assert!(map.draining_since("web", ip("10.0.1.3")).is_none());

        // No task reachable from this host: DNS decides, as without a listener.
        let elsewhere = membership(vec![task("a", Running, Running, &["192.168.0.9/24"])]);
        let map = TaskMap::compile(&map, elsewhere, &local, Instant::now());
        assert!(map.ready("web").is_none());
        // Reachable tasks, none ready yet: no address (and no DNS).
        let starting = membership(vec![task("a", Pending, Running, &["10.0.1.3/24"])]);
        let map = TaskMap::compile(&map, starting, &local, Instant::now());
        assert_eq!(map.ready("web").map(|(r, _)| r.len()), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn draining_keeps_the_time_it_was_first_seen() {
        let first = Instant::now();
        let draining = membership(vec![task("a", Running, Shutdown, &["10.0.1.3/24"])]);
        let map = TaskMap::compile(&TaskMap::default(), draining.clone(), &[], first);
        tokio::time::advance(Duration::from_secs(5)).await;
        let later = TaskMap::compile(&map, draining, &[], Instant::now());
        assert_eq!(later.draining_since("web", ip("10.0.1.3")), Some(first));
        assert_eq!(later.generation, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_resolves_at_its_deadline_not_before() {
        let cell = MembershipCell::new();
        let ready = membership(vec![task("a", Running, Running, &["10.0.1.3/24"])]);
        cell.publish(TaskMap::compile(&cell.load(), ready, &[], Instant::now()));
        let drain = cell.drain("web", ip("10.0.1.3"), Duration::from_secs(10));
        let started = Instant::now();
        let waiter = tokio::spawn(drain.deadline());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiter.is_finished(), "not draining yet");
        let draining = membership(vec![task("a", Running, Shutdown, &["10.0.1.3/24"])]);
        cell.publish(TaskMap::compile(
            &cell.load(),
            draining,
            &[],
            Instant::now(),
        ));
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert!(!waiter.is_finished(), "before the deadline");
        waiter.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(13));
    }
}
