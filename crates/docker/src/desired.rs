//! The desired state published by the watcher and the pure diff that drives notifications.
//!
//! The watcher turns every Docker listing into a [`Desired`] snapshot (service name ->
//! parameters) and publishes it. Each notification endpoint remembers what it last sent
//! ([`Delivered`]) and calls [`diff`] to learn which create and remove notifications are
//! still owed. Because the diff is recomputed from the newest snapshot, an older state of
//! a service that was never sent is simply never asked for again ("latest wins"), and a
//! lost event or failed delivery is repaired by the next resync (level-triggered). This
//! module does no IO.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::params::ServiceParams;

/// One published snapshot of what the proxy should know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    /// `serviceName` -> parameters.
    pub(crate) services: BTreeMap<String, ServiceParams>,
    /// When Docker was last listed successfully; `None` until the first listing.
    pub(crate) synced_at: Option<SystemTime>,
    /// Bumped by every full periodic or post-reconnect resync. Endpoints use it to retry
    /// notifications whose retries ran out.
    pub(crate) resync_generation: u64,
    /// Bumped by `notify-services`. Endpoints re-send every create when it changes.
    pub(crate) force_generation: u64,
}

/// What an endpoint last sent for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// The parameters last sent (or attempted: see `confirmed`).
    pub(crate) params: ServiceParams,
    /// `true` when the proxy answered 2xx to exactly these parameters. `false` when the
    /// outcome is unknown or negative (failure, cancellation, forced re-send); such a
    /// service gets its create again, and a remove when it disappears, because the proxy
    /// may hold it.
    pub(crate) confirmed: bool,
}

/// Why a create notification is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateReason {
    /// Never sent to this endpoint.
    New,
    /// Labels, replicas or name-derived parameters changed.
    Updated,
    /// Sent before, but not confirmed (earlier failure or `notify-services`).
    Resend,
}

/// One notification an endpoint owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Create {
        service: String,
        params: ServiceParams,
        reason: CreateReason,
    },
    Remove {
        service: String,
        params: ServiceParams,
    },
}

impl Change {
    pub(crate) fn service(&self) -> &str {
        match self {
            Change::Create { service, .. } | Change::Remove { service, .. } => service,
        }
    }
}

/// The notifications needed to move an endpoint from `delivered` to `desired`: creates
/// (in service-name order) for new, changed or unconfirmed services, then removes for
/// services that are no longer desired.
pub(crate) fn diff(
    delivered: &BTreeMap<String, Delivered>,
    desired: &BTreeMap<String, ServiceParams>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for (service, want) in desired {
        let reason = match delivered.get(service) {
            None => Some(CreateReason::New),
            Some(d) if d.params != *want => Some(CreateReason::Updated),
            Some(d) if !d.confirmed => Some(CreateReason::Resend),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            changes.push(Change::Create {
                service: service.clone(),
                params: want.clone(),
                reason,
            });
        }
    }
    for (service, d) in delivered {
        if !desired.contains_key(service) {
            changes.push(Change::Remove {
                service: service.clone(),
                params: d.params.clone(),
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Mode;
    use crate::test_support::demo_params;

    fn params(name: &str, labels: &[(&str, &str)], replicas: i64) -> ServiceParams {
        demo_params(name, labels, Mode::Replicated(replicas))
    }

    fn desired(items: &[(&str, ServiceParams)]) -> BTreeMap<String, ServiceParams> {
        items
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.clone()))
            .collect()
    }

    fn delivered(items: &[(&str, ServiceParams, bool)]) -> BTreeMap<String, Delivered> {
        items
            .iter()
            .map(|(n, p, confirmed)| {
                (
                    (*n).to_owned(),
                    Delivered {
                        params: p.clone(),
                        confirmed: *confirmed,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn new_service_is_created() {
        let a = params("a", &[("com.df.port", "80")], 1);
        let changes = diff(&BTreeMap::new(), &desired(&[("a", a.clone())]));
        assert_eq!(
            changes,
            vec![Change::Create {
                service: "a".into(),
                params: a,
                reason: CreateReason::New
            }]
        );
    }

    #[test]
    fn unchanged_confirmed_service_needs_nothing() {
        let a = params("a", &[("com.df.port", "80")], 1);
        let changes = diff(&delivered(&[("a", a.clone(), true)]), &desired(&[("a", a)]));
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn label_change_is_an_update() {
        let old = params("a", &[("com.df.servicePath", "/a")], 1);
        let new = params("a", &[("com.df.servicePath", "/b")], 1);
        let changes = diff(
            &delivered(&[("a", old, true)]),
            &desired(&[("a", new.clone())]),
        );
        assert_eq!(
            changes,
            vec![Change::Create {
                service: "a".into(),
                params: new,
                reason: CreateReason::Updated
            }]
        );
    }

    #[test]
    fn replica_change_is_an_update() {
        let old = params("a", &[], 1);
        let new = params("a", &[], 3);
        let changes = diff(
            &delivered(&[("a", old, true)]),
            &desired(&[("a", new.clone())]),
        );
        assert!(matches!(
            changes.as_slice(),
            [Change::Create { reason: CreateReason::Updated, params, .. }] if *params == new
        ));
    }

    #[test]
    fn removed_or_label_lost_service_is_removed_with_last_sent_params() {
        // A service that lost its notify label is simply absent from the desired state.
        let a = params("a", &[("com.df.aclName", "x")], 2);
        let b = params("b", &[], 1);
        let changes = diff(
            &delivered(&[("a", a.clone(), true), ("b", b.clone(), true)]),
            &desired(&[("b", b)]),
        );
        assert_eq!(
            changes,
            vec![Change::Remove {
                service: "a".into(),
                params: a
            }]
        );
    }

    #[test]
    fn unconfirmed_service_is_resent_and_removed_when_gone() {
        let a = params("a", &[], 1);
        let changes = diff(
            &delivered(&[("a", a.clone(), false)]),
            &desired(&[("a", a.clone())]),
        );
        assert!(matches!(
            changes.as_slice(),
            [Change::Create {
                reason: CreateReason::Resend,
                ..
            }]
        ));
        let changes = diff(&delivered(&[("a", a, false)]), &BTreeMap::new());
        assert!(matches!(changes.as_slice(), [Change::Remove { .. }]));
    }

    #[test]
    fn creates_come_before_removes_in_name_order() {
        let p = params("x", &[], 1);
        let changes = diff(
            &delivered(&[("old", p.clone(), true)]),
            &desired(&[("zeta", p.clone()), ("alpha", p)]),
        );
        let order: Vec<&str> = changes.iter().map(Change::service).collect();
        assert_eq!(order, vec!["alpha", "zeta", "old"]);
    }
}
