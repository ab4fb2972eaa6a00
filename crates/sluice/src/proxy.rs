//! `sluice proxy`: loads settings and state, starts the data plane and the control API, and
//! shuts both down gracefully on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use sluice_api::registry::Registry;
use sluice_api::store::Store;
use sluice_api::ApiState;
use sluice_core::params::{parse_service, services_from_env};
use sluice_core::settings::{Settings, Vars};
use sluice_proxy::{DataPlane, DataPlaneConfig};

use crate::vars::ProcessVars;

pub(crate) fn run() -> anyhow::Result<()> {
    let vars = ProcessVars::from_env();
    let settings = Arc::new(Settings::from_vars(&vars)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-control")
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;
    runtime.block_on(serve(settings, vars))
}

async fn serve(settings: Arc<Settings>, vars: ProcessVars) -> anyhow::Result<()> {
    let store = Store::open(&settings.data_dir)?;
    let snapshot = sluice_proxy::snapshot::new_cell();
    let (registry, persister) = Registry::new(snapshot.clone(), Some(store.clone()));

    // State first, then DFP_SERVICE_* services: nothing is served before both are live.
    let mut initial = Vec::new();
    for (name, params) in store.load()? {
        let service = parse_service(&params, &settings.parse).map_err(|e| {
            anyhow!(
                "{} holds service {name:?} that no longer parses: {e}",
                store.path().display()
            )
        })?;
        initial.push(service);
    }
    let from_state = initial.len();
    for params in services_from_env(&vars) {
        let name = params.get("serviceName").cloned().unwrap_or_default();
        let service = parse_service(&params, &settings.parse)
            .map_err(|e| anyhow!("DFP_SERVICE variables for service {name:?}: {e}"))?;
        initial.push(service);
    }
    let from_env = initial.len() - from_state;
    if !initial.is_empty() {
        registry.apply_all(initial).await;
    }
    tracing::info!(from_state, from_env, "loaded services");
    tokio::spawn(persister.run());

    let ports: Vec<u16> = settings
        .default_ports
        .iter()
        .chain(settings.bind_ports.iter())
        .map(|p| p.port)
        .collect();
    let dataplane = DataPlane::start(
        DataPlaneConfig {
            ports,
            workers: settings.worker_threads,
            timeouts: settings.timeouts,
            connection_mode: settings.connection_mode,
            hosts_file: vars.var("HOSTS_FILE").map(std::path::PathBuf::from),
        },
        snapshot,
    )?;
    for addr in dataplane.local_addrs() {
        tracing::info!(%addr, "http listener bound");
    }

    let api_listener = tokio::net::TcpListener::bind((settings.ip, settings.port))
        .await
        .with_context(|| format!("cannot listen on IP={} PORT={}", settings.ip, settings.port))?;
    tracing::info!(addr = %api_listener.local_addr()?, "api listener bound");
    let state = Arc::new(ApiState {
        registry: registry.clone(),
        settings: settings.clone(),
    });
    let app = sluice_api::router(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = tokio::spawn(async move {
        let mut stop_rx = stop_rx;
        axum::serve(api_listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });

    wait_for_signal().await?;
    tracing::info!(grace = ?settings.shutdown_grace, "shutting down");
    let _ = stop_tx.send(true);
    let grace = settings.shutdown_grace;
    let drained = tokio::task::spawn_blocking(move || dataplane.shutdown(grace));
    let _ = drained.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), api).await;
    if !registry.flush(Duration::from_secs(5)).await {
        tracing::warn!("the last change may not have reached DATA_DIR");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
