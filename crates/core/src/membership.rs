//! Task-level membership: which Swarm tasks of a service may take requests.
//!
//! The Swarm listener lists each watched service's tasks on the manager and pushes the task
//! sets of all of them to every proxy (`PUT /v1/sluice/tasks`, JSON form [`Membership`]). This
//! module is the pure model both sides share: the wire form, the rules below, and the diff
//! between two task sets (for logs and the propagation metric). It does no IO.
//!
//! # Rules
//! * **ready** = state `running` and desired state `running`. Swarm keeps a task whose image
//!   has a `HEALTHCHECK` in state `starting` until its first healthy probe (swarmkit's
//!   container adapter waits for the health status before it reports the task running), so
//!   `running` already means "healthy" for such a task;
//! * **draining** = state `running` but desired state `shutdown` or `remove`: Swarm has told
//!   the task to stop (an update, a scale-down, a drained node) while its container still
//!   runs. A draining task gets no new request; its open tunnels are closed at its drain
//!   deadline ([`drain_timeout`]);
//! * everything else (starting, stopped, failed, …) takes no traffic and holds nothing open.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::env::parse_decimal;
use crate::service::Service;

/// The drain deadline when a service has no `drainTimeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest `drainTimeout` accepted, in seconds (one day).
pub const MAX_DRAIN_TIMEOUT_SECS: u32 = 86_400;

/// A Swarm task state (Docker's `TaskState`), as far as membership cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Not yet running: `new`, `allocated`, `pending`, `assigned`, `accepted`, `preparing`,
    /// `ready`, `starting` (Docker's names are accepted as they are).
    #[serde(
        alias = "new",
        alias = "allocated",
        alias = "pending",
        alias = "assigned",
        alias = "accepted",
        alias = "preparing",
        alias = "ready",
        alias = "starting"
    )]
    Pending,
    /// The container runs (and, with a `HEALTHCHECK`, has been healthy).
    Running,
    /// Told to stop, or stopped by Swarm.
    Shutdown,
    /// Told to stop and be removed.
    Remove,
    /// Ended: `complete`, `failed`, `rejected`, `orphaned`.
    #[serde(
        alias = "complete",
        alias = "failed",
        alias = "rejected",
        alias = "orphaned"
    )]
    Ended,
}

impl TaskState {
    /// Docker's state name, mapped (`None` for a name Docker does not use).
    pub fn from_docker(name: &str) -> Option<TaskState> {
        Some(match name {
            "new" | "allocated" | "pending" | "assigned" | "accepted" | "preparing" | "ready"
            | "starting" => TaskState::Pending,
            "running" => TaskState::Running,
            "shutdown" => TaskState::Shutdown,
            "remove" => TaskState::Remove,
            "complete" | "failed" | "rejected" | "orphaned" => TaskState::Ended,
            _ => return None,
        })
    }

    /// The lower-case name used on the wire and on the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Shutdown => "shutdown",
            TaskState::Remove => "remove",
            TaskState::Ended => "ended",
        }
    }
}

/// What a task may do with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Takes new requests.
    Ready,
    /// Finishes what it has until its drain deadline; no new request.
    Draining,
    /// Neither (starting, stopped, ended).
    Out,
}

impl Phase {
    /// The lower-case name shown on the dashboard and in `GET /v1/sluice/tasks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ready => "ready",
            Phase::Draining => "draining",
            Phase::Out => "out",
        }
    }
}

/// One Swarm task of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Task {
    /// Docker's task id.
    pub id: String,
    /// The task's addresses, one per attached network, as `ip/prefix` (Docker's form).
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Observed state.
    pub state: TaskState,
    /// The state Swarm wants the task in.
    pub desired_state: TaskState,
}

impl Task {
    /// See the module docs.
    pub fn phase(&self) -> Phase {
        match (self.state, self.desired_state) {
            (TaskState::Running, TaskState::Running) => Phase::Ready,
            (TaskState::Running, TaskState::Shutdown | TaskState::Remove) => Phase::Draining,
            _ => Phase::Out,
        }
    }
}

/// The tasks of one service, as observed at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSet {
    /// When the listener observed this state (the Docker event's time, or the time of the
    /// listing that found it), in milliseconds since the Unix epoch.
    pub observed_at_ms: u64,
    /// Docker's service version (`Version.Index`): changes with every service update, so a
    /// proxy can tell a service update from a task change.
    #[serde(default)]
    pub version: u64,
    /// The tasks, in any order.
    #[serde(default)]
    pub tasks: Vec<Task>,
}

impl TaskSet {
    /// Whether two sets describe the same tasks and service version (times aside; task
    /// order aside).
    pub fn same_content(&self, other: &TaskSet) -> bool {
        self.version == other.version && by_id(&self.tasks) == by_id(&other.tasks)
    }

    /// The addresses of tasks in `phase`, each task once, in task-id order.
    pub fn tasks_in(&self, phase: Phase) -> impl Iterator<Item = &Task> {
        self.tasks.iter().filter(move |t| t.phase() == phase)
    }
}

fn by_id(tasks: &[Task]) -> BTreeMap<&str, &Task> {
    tasks.iter().map(|t| (t.id.as_str(), t)).collect()
}

/// Every watched service's task set: the body of `PUT /v1/sluice/tasks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Membership {
    /// When the listing that produced this membership was observed (as
    /// [`TaskSet::observed_at_ms`]); the time of a service's removal. `0` when unknown.
    #[serde(default)]
    pub observed_at_ms: u64,
    /// `serviceName` -> its tasks.
    pub services: BTreeMap<String, TaskSet>,
}

/// What changed for one service between two memberships (see [`diff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// The service is new.
    Create,
    /// Its service version changed.
    Update,
    /// It is gone.
    Remove,
    /// Only its tasks changed.
    Task,
}

impl ChangeKind {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Remove => "remove",
            ChangeKind::Task => "task",
        }
    }
}

/// One service's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChange {
    /// The `serviceName`.
    pub service: String,
    /// What kind of change.
    pub kind: ChangeKind,
    /// When the new state was observed (for a removal: the new membership's time, `0` when
    /// unknown).
    pub observed_at_ms: u64,
    /// Task ids that became ready.
    pub joined: Vec<String>,
    /// Task ids that were ready and now drain.
    pub draining: Vec<String>,
    /// Task ids that were ready or draining and now are neither (or are gone).
    pub left: Vec<String>,
}

/// The changes from `old` to `new`, in service-name order. Services whose set is the same
/// (see [`TaskSet::same_content`]) are left out, so a re-sent membership yields nothing.
pub fn diff(old: &Membership, new: &Membership) -> Vec<ServiceChange> {
    let mut changes = Vec::new();
    for (name, set) in &new.services {
        let before = old.services.get(name);
        let kind = match before {
            None => ChangeKind::Create,
            Some(b) if b.same_content(set) => continue,
            Some(b) if b.version != set.version => ChangeKind::Update,
            Some(_) => ChangeKind::Task,
        };
        let empty = TaskSet::default();
        changes.push(task_changes(
            name,
            kind,
            set.observed_at_ms,
            before.unwrap_or(&empty),
            set,
        ));
    }
    for (name, set) in &old.services {
        if !new.services.contains_key(name) {
            changes.push(task_changes(
                name,
                ChangeKind::Remove,
                new.observed_at_ms,
                set,
                &TaskSet::default(),
            ));
        }
    }
    changes.sort_by(|a, b| a.service.cmp(&b.service));
    changes
}

fn task_changes(
    name: &str,
    kind: ChangeKind,
    observed_at_ms: u64,
    old: &TaskSet,
    new: &TaskSet,
) -> ServiceChange {
    let before: BTreeMap<&str, Phase> = old
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.phase()))
        .collect();
    let after: BTreeMap<&str, Phase> = new
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.phase()))
        .collect();
    let mut change = ServiceChange {
        service: name.to_owned(),
        kind,
        observed_at_ms,
        joined: Vec::new(),
        draining: Vec::new(),
        left: Vec::new(),
    };
    for (id, phase) in &after {
        let was = before.get(id).copied().unwrap_or(Phase::Out);
        match (was, *phase) {
            (Phase::Ready, Phase::Ready) | (Phase::Draining, Phase::Draining) => {}
            (_, Phase::Ready) => change.joined.push((*id).to_owned()),
            (_, Phase::Draining) => change.draining.push((*id).to_owned()),
            (Phase::Ready | Phase::Draining, Phase::Out) => change.left.push((*id).to_owned()),
            (Phase::Out, Phase::Out) => {}
        }
    }
    for (id, was) in &before {
        if !after.contains_key(id) && *was != Phase::Out {
            change.left.push((*id).to_owned());
        }
    }
    change
}

/// The task's address on a network this host is attached to: the first address whose subnet
/// contains one of `local` (this host's interface addresses). `None` when the task shares no
/// network with this host.
pub fn address_on(task: &Task, local: &[IpAddr]) -> Option<IpAddr> {
    task.addresses
        .iter()
        .find(|a| local.iter().any(|ip| a.contains(ip)))
        .map(IpNet::addr)
}

/// `drainTimeout` of a service (seconds), or [`DEFAULT_DRAIN_TIMEOUT`]. The value was checked
/// by [`check_drain_timeout`] when the service was admitted.
pub fn drain_timeout(service: &Service) -> Duration {
    service
        .params
        .get("drainTimeout")
        .and_then(|v| parse_decimal::<u32>(v.trim()))
        .map_or(DEFAULT_DRAIN_TIMEOUT, |s| Duration::from_secs(u64::from(s)))
}

/// Checks a `drainTimeout` value: whole seconds from 0 to [`MAX_DRAIN_TIMEOUT_SECS`].
pub fn check_drain_timeout(value: &str) -> Result<u32, &'static str> {
    parse_decimal::<u32>(value.trim())
        .filter(|s| *s <= MAX_DRAIN_TIMEOUT_SECS)
        .ok_or("not a whole number of seconds from 0 to 86400")
}

#[cfg(test)]
mod tests;
