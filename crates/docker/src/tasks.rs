//! Task sets: the tasks of every watched service, as the proxies are told them.
//!
//! After each listing of the watched services the watcher lists their tasks on the manager
//! (`GET /tasks?filters={"service":[ids]}`) and publishes every service's task set
//! ([`TaskSnapshot`], the body of `PUT /v1/sluice/tasks`; the model and its rules are in
//! [`sluice_core::membership`]). While any service is converging ([`converging`]: an update
//! or rollback in progress, fewer running tasks than replicas, or a task not yet where Swarm
//! wants it) the watcher lists again every [`CONVERGE_POLL`], so a task's change reaches the
//! proxies within that, although Swarm emits no task events.
//!
//! The listing is read with a small typed request of its own ([`fetch`]) because bollard's
//! `Task` model has no `NetworksAttachments`, which is where Docker puts a task's addresses.
//!
//! Each service's set carries the time its current content was first observed: the time of
//! the Docker event that led to the listing, or the listing's own time ([`Observed`]).

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models::{Service, ServiceUpdateStatusStateEnum};
use bollard::ClientVersion;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sluice_core::membership::{Membership, Phase, Task, TaskSet, TaskState};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::session::SessionError;
use crate::settings::DockerHost;

/// How often a converging service's tasks are listed.
pub(crate) const CONVERGE_POLL: Duration = Duration::from_millis(250);
/// After converging this long (a task that cannot be placed, say), the poll slows down to
/// [`SLOW_POLL`].
pub(crate) const FAST_POLL_FOR: Duration = Duration::from_secs(60);
/// The poll period of a service that has been converging for long.
pub(crate) const SLOW_POLL: Duration = Duration::from_secs(1);
/// The largest task listing read.
const MAX_LISTING: usize = 64 * 1024 * 1024;

/// What the watcher publishes for the task pushers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskSnapshot {
    /// Every watched service's tasks.
    pub(crate) membership: Membership,
    /// `false` until the first successful task listing.
    pub(crate) synced: bool,
    /// Bumped by every periodic resync: pushers then re-send even an unchanged membership
    /// (a proxy that restarted has lost it; it is not persisted).
    pub(crate) resync_generation: u64,
}

/// One task as Docker lists it (only what membership needs).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DockerTask {
    #[serde(rename = "ID")]
    pub(crate) id: Option<String>,
    #[serde(rename = "ServiceID")]
    pub(crate) service_id: Option<String>,
    #[serde(rename = "Status")]
    pub(crate) status: Option<DockerTaskStatus>,
    #[serde(rename = "DesiredState")]
    pub(crate) desired_state: Option<String>,
    #[serde(rename = "NetworksAttachments")]
    pub(crate) networks_attachments: Option<Vec<DockerAttachment>>,
}

/// A task's `Status`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DockerTaskStatus {
    #[serde(rename = "State")]
    pub(crate) state: Option<String>,
}

/// One of a task's network attachments.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DockerAttachment {
    #[serde(rename = "Addresses")]
    pub(crate) addresses: Option<Vec<String>>,
}

/// The task as the proxies get it; `None` for a task that holds nothing any more (stopped,
/// ended or removed: Swarm keeps a few of those as history) or that Docker described
/// incompletely.
pub(crate) fn to_task(task: &DockerTask) -> Option<Task> {
    let id = task.id.clone().filter(|id| !id.is_empty())?;
    let state = TaskState::from_docker(task.status.as_ref()?.state.as_deref()?)?;
    let desired_state = TaskState::from_docker(task.desired_state.as_deref()?)?;
    if matches!(
        state,
        TaskState::Shutdown | TaskState::Remove | TaskState::Ended
    ) {
        return None;
    }
    let addresses = task
        .networks_attachments
        .iter()
        .flatten()
        .flat_map(|a| a.addresses.iter().flatten())
        .filter_map(|a| a.parse().ok())
        .collect();
    Some(Task {
        id,
        addresses,
        state,
        desired_state,
    })
}

/// What convergence needs to know about a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceFacts {
    /// Docker's `Version.Index`.
    pub(crate) version: u64,
    /// An update or rollback is in progress.
    pub(crate) updating: bool,
    /// The replica count (`None` for a global service).
    pub(crate) replicas: Option<i64>,
}

impl ServiceFacts {
    pub(crate) fn of(service: &Service) -> ServiceFacts {
        let updating = service
            .update_status
            .as_ref()
            .and_then(|u| u.state)
            .is_some_and(|state| {
                matches!(
                    state,
                    ServiceUpdateStatusStateEnum::UPDATING
                        | ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
                )
            });
        let replicas = service
            .spec
            .as_ref()
            .and_then(|s| s.mode.as_ref())
            .and_then(|m| m.replicated.as_ref())
            .map(|r| r.replicas.unwrap_or(0));
        ServiceFacts {
            version: service
                .version
                .as_ref()
                .and_then(|v| v.index)
                .unwrap_or_default(),
            updating,
            replicas,
        }
    }
}

/// Whether a service is still converging: an update or rollback runs, the number of ready
/// tasks differs from the replica count, or a (non-historic) task is not ready, i.e. not
/// yet running, or running but told to stop.
pub(crate) fn converging(facts: &ServiceFacts, tasks: &[Task]) -> bool {
    let ready = tasks.iter().filter(|t| t.phase() == Phase::Ready).count();
    facts.updating
        || facts
            .replicas
            .is_some_and(|n| usize::try_from(n).ok() != Some(ready))
        || tasks.iter().any(|t| t.phase() != Phase::Ready)
}

/// The task sets last published, with the time each was first observed.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    sets: BTreeMap<String, TaskSet>,
    /// When the whole set last changed.
    at_ms: u64,
}

impl Observed {
    /// The membership for a fresh listing (`serviceName` -> (version, tasks)) observed at
    /// `at_ms`: a service whose tasks and version are unchanged keeps its earlier time.
    pub(crate) fn update(
        &mut self,
        fresh: BTreeMap<String, (u64, Vec<Task>)>,
        at_ms: u64,
    ) -> Membership {
        let mut sets = BTreeMap::new();
        for (name, (version, mut tasks)) in fresh {
            tasks.sort_by(|a, b| a.id.cmp(&b.id));
            let mut set = TaskSet {
                observed_at_ms: at_ms,
                version,
                tasks,
            };
            if let Some(before) = self.sets.get(&name) {
                if before.same_content(&set) {
                    set.observed_at_ms = before.observed_at_ms;
                }
            }
            sets.insert(name, set);
        }
        // The whole set's time moves only when something in it changed (a removal, say), so
        // an unchanged listing publishes nothing new.
        let unchanged = self.sets.len() == sets.len()
            && sets.iter().all(|(name, set)| {
                self.sets
                    .get(name)
                    .is_some_and(|before| before.same_content(set))
            });
        if !unchanged || self.at_ms == 0 {
            self.at_ms = at_ms;
        }
        self.sets = sets.clone();
        Membership {
            observed_at_ms: self.at_ms,
            services: sets,
        }
    }
}

/// Lists the tasks of the services `ids` (one request for all of them).
pub(crate) async fn fetch(
    host: &DockerHost,
    version: ClientVersion,
    ids: &[&str],
) -> Result<Vec<DockerTask>, SessionError> {
    let filters = serde_json::json!({ "service": ids }).to_string();
    let query: String = url_encode(&filters);
    let path = format!(
        "/v{}.{}/tasks?filters={query}",
        version.major_version, version.minor_version
    );
    let body = match host {
        DockerHost::Unix(socket) => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|source| SessionError::Connect {
                    host: host.to_string(),
                    source,
                })?;
            get(stream, &path).await
        }
        DockerHost::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr.trim_start_matches("tcp://"))
                .await
                .map_err(|source| SessionError::Connect {
                    host: host.to_string(),
                    source,
                })?;
            get(stream, &path).await
        }
    };
    let body = body.map_err(|reason| SessionError::Tasks { reason })?;
    serde_json::from_slice(&body).map_err(|e| SessionError::Tasks {
        reason: format!("unexpected task listing: {e}"),
    })
}

/// `GET path` on a fresh connection; the body of a 200 answer.
async fn get<S>(stream: S, path: &str) -> Result<Bytes, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let request = Request::get(path)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_LISTING)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(512)])
                ))
            }
        }
        .await;
        driver.abort();
        result
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 30 s".into()))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker_task(id: &str, state: &str, desired: &str, addrs: &[&str]) -> DockerTask {
        serde_json::from_value(serde_json::json!({
            "ID": id,
            "ServiceID": "svc",
            "Status": {"State": state, "Message": "started"},
            "DesiredState": desired,
            "NetworksAttachments": [
                {"Network": {"ID": "net"}, "Addresses": addrs}
            ]
        }))
        .unwrap()
    }

    fn facts(replicas: Option<i64>, updating: bool) -> ServiceFacts {
        ServiceFacts {
            version: 1,
            updating,
            replicas,
        }
    }

    #[test]
    fn docker_tasks_map_and_history_is_dropped() {
        let t = to_task(&docker_task("a", "running", "running", &["10.0.1.5/24"])).unwrap();
        assert_eq!(t.state, TaskState::Running);
        assert_eq!(t.addresses[0].to_string(), "10.0.1.5/24");
        let starting = to_task(&docker_task("b", "starting", "running", &[])).unwrap();
        assert_eq!(starting.phase(), Phase::Out);
        for state in ["shutdown", "complete", "failed", "rejected", "orphaned"] {
            assert!(to_task(&docker_task("c", state, "shutdown", &[])).is_none());
        }
        assert!(to_task(&docker_task("d", "bogus", "running", &[])).is_none());
        // A malformed address is left out, not the task.
        let t = to_task(&docker_task(
            "e",
            "running",
            "running",
            &["x", "10.0.0.2/24"],
        ))
        .unwrap();
        assert_eq!(t.addresses.len(), 1);
    }

    #[test]
    fn convergence_follows_updates_counts_and_task_states() {
        let ready = |id| to_task(&docker_task(id, "running", "running", &[])).unwrap();
        let draining = to_task(&docker_task("x", "running", "shutdown", &[])).unwrap();
        let starting = to_task(&docker_task("y", "starting", "running", &[])).unwrap();
        assert!(!converging(
            &facts(Some(2), false),
            &[ready("a"), ready("b")]
        ));
        assert!(converging(
            &facts(Some(3), false),
            &[ready("a"), ready("b")]
        ));
        assert!(converging(&facts(Some(2), true), &[ready("a"), ready("b")]));
        assert!(converging(&facts(None, false), &[ready("a"), draining]));
        assert!(converging(&facts(Some(1), false), &[ready("a"), starting]));
        assert!(!converging(&facts(None, false), &[ready("a")]));
    }

    #[test]
    fn observed_times_stay_while_the_content_does() {
        let mut observed = Observed::default();
        let a = to_task(&docker_task("a", "running", "running", &[])).unwrap();
        let b = to_task(&docker_task("b", "running", "running", &[])).unwrap();
        let first = observed.update(
            [("web".to_owned(), (1, vec![a.clone(), b.clone()]))].into(),
            100,
        );
        assert_eq!(first.services["web"].observed_at_ms, 100);
        let same = observed.update([("web".to_owned(), (1, vec![b, a.clone()]))].into(), 200);
        assert_eq!(same.services["web"].observed_at_ms, 100);
        assert_eq!(same, first, "an unchanged listing is the same membership");
        let changed = observed.update([("web".to_owned(), (1, vec![a]))].into(), 300);
        assert_eq!(changed.services["web"].observed_at_ms, 300);
        assert_eq!(changed.observed_at_ms, 300);
        let removed = observed.update(BTreeMap::new(), 400);
        assert_eq!(removed.observed_at_ms, 400);
    }

    #[test]
    fn service_facts_read_version_mode_and_update_state() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "ID": "svc",
            "Version": {"Index": 42},
            "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": 3}}},
            "UpdateStatus": {"State": "rollback_started"}
        }))
        .unwrap();
        assert_eq!(
            ServiceFacts::of(&service),
            ServiceFacts {
                version: 42,
                updating: true,
                replicas: Some(3)
            }
        );
        let global: Service = serde_json::from_value(serde_json::json!({
            "ID": "g", "Spec": {"Name": "g", "Mode": {"Global": {}}},
            "UpdateStatus": {"State": "completed"}
        }))
        .unwrap();
        assert_eq!(ServiceFacts::of(&global).replicas, None);
        assert!(!ServiceFacts::of(&global).updating);
    }
}
