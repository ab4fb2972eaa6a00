//! Synchronisation with the Swarm listener (`LISTENER_ADDRESS`).
//!
//! At start the proxy asks each listener for every service it knows (`get-services`), applies
//! them in one publication, and only then reports ready. Then, every
//! `LISTENER_RESYNC_INTERVAL`, it asks again and converges on the answer ([`resync`]): a
//! service whose parameters differ from the registry's is applied, and a service that an
//! earlier fetch of this process listed and the listener no longer lists is removed, all in
//! one durable commit (nothing is written when nothing differs). Services that only ever came
//! through the API are left alone. This repairs a notification a proxy missed, e.g. while the
//! overlay was split and `distribute` found no peers. With the resync off (`0`),
//! `REPEAT_RELOAD=true` keeps DFP's behaviour: fetch every `RELOAD_INTERVAL`, add and update,
//! never remove. `/reload?fromListener=true` asks the listeners to re-send their notifications
//! instead (`notify-services`).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::redact::{param_value, redact_url};
use sluice_core::service::{Params, Service};
use sluice_core::settings::Settings;

use crate::peers::{listener_base, parse_services, PeerError};
use crate::registry::{CommitError, Correction};
use crate::services::{same_routing, ServiceMap};
use crate::ApiState;

const GET_SERVICES: &str = "/v1/docker-flow-swarm-listener/get-services";
const NOTIFY_SERVICES: &str = "/v1/docker-flow-swarm-listener/notify-services";

/// What one listener answered, for this proxy instance.
struct Listing {
    /// Every service name listed (valid or not, `replicas=0` included).
    names: BTreeSet<String>,
    /// The valid services to route.
    services: Vec<Service>,
    /// Services listed with `replicas=0`: not to be routed.
    stopped: Vec<String>,
}

/// Fetches services from the listeners until one answers, applies them and marks the proxy
/// ready; then keeps re-checking the listener (see the module's documentation).
pub async fn run(state: Arc<ApiState>) {
    let settings = state.settings.clone();
    if settings.listener_addresses.is_empty() {
        state.ready.store(true, Ordering::SeqCst);
        return;
    }
    // Every name a fetch of this process has listed (and not seen removed since).
    let mut announced = loop {
        if let Some((address, listing)) = fetch_any(&state).await {
            let count = listing.services.len();
            apply_all(&state, listing.services).await;
            state.synced.store(true, Ordering::SeqCst);
            state.ready.store(true, Ordering::SeqCst);
            tracing::info!(listener = %redact_url(&address), services = count, "initial sync from the listener done; ready");
            break listing.names;
        }
        tokio::time::sleep(settings.reload_interval).await;
    };
    let Some(period) = recheck_period(&settings) else {
        return;
    };
    loop {
        tokio::time::sleep(period).await;
        // Read before the fetch: a change that lands while the fetch runs wins over it.
        let before = state.registry.services();
        let Some((_, listing)) = fetch_any(&state).await else {
            continue;
        };
        if settings.listener_resync_interval.is_zero() {
            apply_all(&state, listing.services).await;
        } else {
            resync(&state, &before, &mut announced, listing).await;
        }
    }
}

/// How often the listener is asked again after the initial sync, if at all.
fn recheck_period(settings: &Settings) -> Option<Duration> {
    let resync = Some(settings.listener_resync_interval).filter(|d| !d.is_zero());
    let repeat = Some(settings.reload_interval).filter(|_| settings.repeat_reload);
    match (resync, repeat) {
        (Some(a), Some(b)) => Some(a.min(b).max(Duration::from_millis(100))),
        (a, b) => a.or(b).map(|d| d.max(Duration::from_millis(100))),
    }
}

/// Adds and updates (never removes) the services, as DFP's sync did.
async fn apply_all(state: &ApiState, services: Vec<Service>) {
    let count = services.len();
    if count > 0 {
        let generation = state.registry.apply_all(services).await;
        tracing::info!(
            services = count,
            generation,
            "applied services from the listener"
        );
    }
}

/// Asks the listeners in turn; the first answer wins.
async fn fetch_any(state: &ApiState) -> Option<(String, Listing)> {
    for address in &state.settings.listener_addresses {
        match fetch(state, address).await {
            Ok(listing) => return Some((address.clone(), listing)),
            Err(error) => {
                tracing::warn!(listener = %redact_url(address), %error, "cannot fetch services from the listener")
            }
        }
    }
    None
}

async fn fetch(state: &ApiState, address: &str) -> Result<Listing, PeerError> {
    let url = format!("{}{GET_SERVICES}", listener_base(address));
    let body = state.peer_client.get(&url).await?;
    let list = parse_services(&body).map_err(|e| PeerError::Transport {
        url: url.clone(),
        reason: format!("not a JSON array of objects: {e}"),
    })?;
    // Parsing compiles regexes: off the event loop.
    let settings = state.settings.clone();
    tokio::task::spawn_blocking(move || listing(list, &settings))
        .await
        .map_err(|e| PeerError::Transport {
            url,
            reason: format!("parsing the services failed: {e}"),
        })
}

/// Parses the listed services that are for this proxy instance (`FILTER_PROXY_INSTANCE_NAME`).
fn listing(list: Vec<Params>, settings: &Settings) -> Listing {
    let mut listing = Listing {
        names: BTreeSet::new(),
        services: Vec::new(),
        stopped: Vec::new(),
    };
    for params in list {
        let name = params.get("serviceName").cloned().unwrap_or_default();
        if settings.filter_proxy_instance_name {
            let wanted = params.get("proxyInstanceName").map_or("", String::as_str);
            if !wanted.eq_ignore_ascii_case(&settings.proxy_instance_name) {
                continue;
            }
        }
        if !name.is_empty() {
            listing.names.insert(name.clone());
        }
        match crate::admission::admit(&params, &settings.parse) {
            Ok(service) if service.replicas == Some(0) => listing.stopped.push(service.name),
            Ok(service) => listing.services.push(service),
            Err(error) => {
                tracing::warn!(service = %name, %error, "skipping an invalid service from the listener");
            }
        }
    }
    listing
}

/// Converges the registry on `listing`, computed against `before` (the set as it was before
/// the fetch). `announced` is every name an earlier fetch listed; it becomes this one's.
async fn resync(
    state: &ApiState,
    before: &ServiceMap,
    announced: &mut BTreeSet<String>,
    listing: Listing,
) {
    let mut corrections = Vec::new();
    for service in listing.services {
        let current = before.get(&service.name).cloned();
        if current
            .as_ref()
            .is_some_and(|c| same_routing(&c.params, &service.params))
        {
            continue;
        }
        corrections.push(Correction {
            name: service.name.clone(),
            service: Some(service),
            expected: current,
        });
    }
    let gone = announced.iter().filter(|n| !listing.names.contains(*n));
    for name in listing.stopped.iter().chain(gone) {
        if let Some(current) = before.get(name) {
            corrections.push(Correction {
                name: name.clone(),
                service: None,
                expected: Some(current.clone()),
            });
        }
    }
    let mut next = listing.names;
    if corrections.is_empty() {
        *announced = next;
        return;
    }
    let described: Vec<(String, String)> = corrections
        .iter()
        .map(|c| (c.name.clone(), describe(c)))
        .collect();
    let outcomes = state.registry.correct(corrections).await;
    for ((name, what), outcome) in described.into_iter().zip(outcomes) {
        match outcome {
            Ok(change) => {
                state.registry.counters().resync_change();
                tracing::info!(service = %name, generation = change.generation, "listener resync: {what}");
            }
            Err(CommitError::Superseded) => {
                tracing::info!(service = %name, "listener resync: left alone, the service changed meanwhile");
            }
            Err(error) => {
                tracing::warn!(service = %name, %error, "listener resync: {what} failed; the next resync retries");
                // A removal that failed is tried again next time.
                next.insert(name);
            }
        }
    }
    *announced = next;
}

/// One line on what a correction does, secret values redacted.
fn describe(correction: &Correction) -> String {
    let Some(service) = &correction.service else {
        return "removed: the listener no longer lists it (or lists it with replicas=0)".into();
    };
    let Some(old) = &correction.expected else {
        return "added: the listener lists it and this proxy did not have it".into();
    };
    let (old, new) = (&old.params, &service.params);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| k.as_str() != "distribute" && old.get(*k) != new.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| {
                v.map_or_else(
                    || "(unset)".to_string(),
                    |v| format!("{:?}", param_value(k, v)),
                )
            };
            format!("{k} {} -> {}", show(old.get(k)), show(new.get(k)))
        })
        .collect();
    format!(
        "updated to the listener's parameters: {}",
        changed.join(", ")
    )
}

/// `reload?fromListener=true` could not reach the listeners.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No `LISTENER_ADDRESS`.
    #[error("LISTENER_ADDRESS is not set")]
    NoListener,
    /// Some listeners did not answer.
    #[error("{}", join(.0))]
    Unreachable(Vec<PeerError>),
}

fn join(errors: &[PeerError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asks every listener to re-send its notifications.
pub async fn notify_listeners(state: &ApiState) -> Result<(), NotifyError> {
    if state.settings.listener_addresses.is_empty() {
        return Err(NotifyError::NoListener);
    }
    let mut errors = Vec::new();
    for address in &state.settings.listener_addresses {
        let url = format!("{}{NOTIFY_SERVICES}", listener_base(address));
        if let Err(error) = state.peer_client.get(&url).await {
            errors.push(error);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(NotifyError::Unreachable(errors))
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::params::params_from_query;

    use super::*;

    #[test]
    fn the_recheck_period_follows_both_settings() {
        let mut s = Settings::default();
        assert_eq!(recheck_period(&s), Some(Duration::from_secs(15)));
        s.repeat_reload = true;
        assert_eq!(recheck_period(&s), Some(Duration::from_secs(5)));
        s.listener_resync_interval = Duration::ZERO;
        assert_eq!(recheck_period(&s), Some(Duration::from_secs(5)));
        s.repeat_reload = false;
        assert_eq!(recheck_period(&s), None);
    }

    #[test]
    fn a_described_correction_hides_secrets() {
        let old = Arc::new(
            crate::admission::admit(
                &params_from_query("serviceName=a&servicePath=/a&port=1&users=u:OldSecret"),
                &Default::default(),
            )
            .unwrap(),
        );
        let new = crate::admission::admit(
            &params_from_query("serviceName=a&servicePath=/a&port=2&users=u:NewSecret"),
            &Default::default(),
        )
        .unwrap();
        let text = describe(&Correction {
            name: "a".into(),
            service: Some(new),
            expected: Some(old),
        });
        assert!(text.contains(r#"port "1" -> "2""#), "{text}");
        assert!(text.contains("users"), "{text}");
        assert!(!text.contains("Secret"), "{text}");
    }
}
