//! Listener counters and their Prometheus text rendering (`/metrics`).
//!
//! Owns the counters the watcher and the notifier bump and the exposition format. Besides
//! Sluice's own `sluice_listener_*` series it keeps DFSL's two series
//! (`docker_flow_service_count`, `docker_flow_error{operation=...}`) so existing dashboards
//! keep working. The text is written by [`sluice_core::prometheus`], shared with the proxy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_core::prometheus::TextWriter;

/// The two notification kinds, and the task-set pushes (`PUT /v1/sluice/tasks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Create,
    Remove,
    Tasks,
}

impl Kind {
    /// Label value in metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Remove => "remove",
            Kind::Tasks => "tasks",
        }
    }

    /// Past participle used in DFSL's log lines ("service created notification").
    pub(crate) fn participle(self) -> &'static str {
        match self {
            Kind::Create => "created",
            Kind::Remove => "removed",
            Kind::Tasks => "task sets",
        }
    }

    fn dfsl_operation(self) -> &'static str {
        match self {
            Kind::Create => "notificationSendCreateserviceRequest",
            Kind::Remove => "notificationSendRemoveserviceRequest",
            // DFSL had no task sets; never rendered in its series.
            Kind::Tasks => "notificationSendTasksRequest",
        }
    }
}

#[derive(Debug, Default)]
struct PerKind {
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
}

/// Shared counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    create: PerKind,
    remove: PerKind,
    tasks: PerKind,
    services: AtomicU64,
    reconnects: AtomicU64,
    resyncs: AtomicU64,
    last_resync_millis: AtomicU64,
}

impl Metrics {
    fn kind(&self, kind: Kind) -> &PerKind {
        match kind {
            Kind::Create => &self.create,
            Kind::Remove => &self.remove,
            Kind::Tasks => &self.tasks,
        }
    }

    /// A notification was answered with 2xx.
    pub(crate) fn sent(&self, kind: Kind) {
        self.kind(kind).sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A notification was given up (rejected by the proxy or out of retries).
    pub(crate) fn failed(&self, kind: Kind) {
        self.kind(kind).failed.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt failed and another one is scheduled.
    pub(crate) fn retried(&self, kind: Kind) {
        self.kind(kind).retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The Docker connection or event stream failed and will be re-established.
    pub(crate) fn reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// A Docker listing succeeded with `services` watched services.
    pub(crate) fn resynced(&self, services: usize, at: SystemTime) {
        self.services.store(
            u64::try_from(services).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        let millis = at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.last_resync_millis.store(millis, Ordering::Relaxed);
    }

    /// Prometheus text exposition (version 0.0.4), written by core's shared writer.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut f = TextWriter::new(&mut out);
        let kinds = [Kind::Create, Kind::Remove];
        type Pick = fn(&PerKind) -> &AtomicU64;
        let per_kind: [(&str, &str, Pick); 3] = [
            (
                "sluice_listener_notifications_sent_total",
                "Notifications answered with a 2xx status.",
                |p| &p.sent,
            ),
            (
                "sluice_listener_notifications_failed_total",
                "Notifications given up: rejected by the proxy (4xx) or out of retries.",
                |p| &p.failed,
            ),
            (
                "sluice_listener_notification_retries_total",
                "Failed notification attempts that were scheduled for a retry.",
                |p| &p.retries,
            ),
        ];
        for (name, help, counter) in per_kind {
            f.head(name, "counter", help);
            for kind in kinds.into_iter().chain([Kind::Tasks]) {
                let value = counter(self.kind(kind)).load(Ordering::Relaxed);
                f.sample(name, &[("kind", kind.label())], value);
            }
        }
        let services = self.services.load(Ordering::Relaxed);
        let reconnects = self.reconnects.load(Ordering::Relaxed);
        let plain: [(&str, &str, &str, u64); 3] = [
            (
                "sluice_listener_services",
                "gauge",
                "Swarm services currently watched (carrying an enabled notify label).",
                services,
            ),
            (
                "sluice_listener_docker_reconnects_total",
                "counter",
                "Times the Docker connection or event stream failed and was re-established.",
                reconnects,
            ),
            (
                "sluice_listener_resyncs_total",
                "counter",
                "Successful full listings of Swarm services.",
                self.resyncs.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in plain {
            f.head(name, kind, help);
            f.sample(name, &[], value);
        }
        let millis = self.last_resync_millis.load(Ordering::Relaxed);
        f.head(
            "sluice_listener_last_resync_timestamp_seconds",
            "gauge",
            "Unix time of the last successful listing (0: never).",
        );
        f.sample(
            "sluice_listener_last_resync_timestamp_seconds",
            &[],
            format_args!("{}.{:03}", millis / 1000, millis % 1000),
        );
        // DFSL-compatible series.
        f.head(
            "docker_flow_service_count",
            "gauge",
            "Number of services (DFSL-compatible).",
        );
        f.sample(
            "docker_flow_service_count",
            &[("service", "swarm_listener")],
            services,
        );
        f.head(
            "docker_flow_error",
            "counter",
            "Errors by operation (DFSL-compatible).",
        );
        for kind in kinds {
            f.sample(
                "docker_flow_error",
                &[
                    ("service", "swarm_listener"),
                    ("operation", kind.dfsl_operation()),
                ],
                self.kind(kind).failed.load(Ordering::Relaxed),
            );
        }
        f.sample(
            "docker_flow_error",
            &[
                ("service", "swarm_listener"),
                ("operation", "ListenForServiceEvents"),
            ],
            reconnects,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_counters_per_kind() {
        let m = Metrics::default();
        m.sent(Kind::Create);
        m.sent(Kind::Create);
        m.sent(Kind::Remove);
        m.failed(Kind::Remove);
        m.retried(Kind::Create);
        m.reconnect();
        m.resynced(3, UNIX_EPOCH + Duration::from_millis(1_700_000_000_250));
        let text = m.render();
        for line in [
            "sluice_listener_notifications_sent_total{kind=\"create\"} 2",
            "sluice_listener_notifications_sent_total{kind=\"remove\"} 1",
            "sluice_listener_notifications_failed_total{kind=\"create\"} 0",
            "sluice_listener_notifications_failed_total{kind=\"remove\"} 1",
            "sluice_listener_notification_retries_total{kind=\"create\"} 1",
            "sluice_listener_services 3",
            "sluice_listener_docker_reconnects_total 1",
            "sluice_listener_resyncs_total 1",
            "sluice_listener_last_resync_timestamp_seconds 1700000000.250",
            "docker_flow_service_count{service=\"swarm_listener\"} 3",
            "docker_flow_error{service=\"swarm_listener\",operation=\"notificationSendRemoveserviceRequest\"} 1",
            "docker_flow_error{service=\"swarm_listener\",operation=\"ListenForServiceEvents\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every sample line belongs to a declared family.
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap_or("");
            assert!(declared.contains(&name), "undeclared {name}");
        }
    }
}
