//! Start-up synchronisation with the Swarm listener (`LISTENER_ADDRESS`): the proxy asks each
//! listener for every service it knows (`get-services`), applies them in one publication, and
//! only then reports ready. `/reload?fromListener=true` asks the listeners to re-send their
//! notifications instead (`notify-services`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sluice_core::redact::redact_url;

use crate::peers::{listener_base, parse_services, PeerError};
use crate::ApiState;

const GET_SERVICES: &str = "/v1/docker-flow-swarm-listener/get-services";
const NOTIFY_SERVICES: &str = "/v1/docker-flow-swarm-listener/notify-services";

/// Fetches services from the listeners until one answers, applies them and marks the proxy
/// ready. With `REPEAT_RELOAD=true` it keeps fetching every `RELOAD_INTERVAL` (adding and
/// updating services, never removing them, as DFP).
pub async fn run(state: Arc<ApiState>) {
    let settings = state.settings.clone();
    if settings.listener_addresses.is_empty() {
        state.ready.store(true, Ordering::SeqCst);
        return;
    }
    loop {
        for address in &settings.listener_addresses {
            match fetch_and_apply(&state, address).await {
                Ok(count) => {
                    let first = !state.ready.swap(true, Ordering::SeqCst);
                    state.synced.store(true, Ordering::SeqCst);
                    if first {
                        tracing::info!(listener = %redact_url(address), services = count, "initial sync from the listener done; ready");
                    }
                    if !settings.repeat_reload {
                        return;
                    }
                    break;
                }
                Err(error) => {
                    tracing::warn!(listener = %redact_url(address), %error, "cannot fetch services from the listener")
                }
            }
        }
        tokio::time::sleep(settings.reload_interval).await;
    }
}

async fn fetch_and_apply(state: &ApiState, address: &str) -> Result<usize, PeerError> {
    let url = format!("{}{GET_SERVICES}", listener_base(address));
    let body = state.peer_client.get(&url).await?;
    let list = parse_services(&body).map_err(|e| PeerError::Transport {
        url: url.clone(),
        reason: format!("not a JSON array of objects: {e}"),
    })?;
    // Parsing compiles regexes: off the event loop.
    let settings = state.settings.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let mut services = Vec::new();
        for params in list {
            match crate::admission::admit(&params, &settings.parse) {
                Ok(service) if service.replicas == Some(0) => {}
                Ok(service) => services.push(service),
                Err(error) => {
                    let name = params.get("serviceName").cloned().unwrap_or_default();
                    tracing::warn!(service = %name, %error, "skipping an invalid service from the listener");
                }
            }
        }
        services
    })
    .await;
    let services = parsed.map_err(|e| PeerError::Transport {
        url: url.clone(),
        reason: format!("parsing the services failed: {e}"),
    })?;
    let count = services.len();
    if count > 0 {
        let generation = state.registry.apply_all(services).await;
        tracing::info!(
            services = count,
            generation,
            "applied services from the listener"
        );
    }
    Ok(count)
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
