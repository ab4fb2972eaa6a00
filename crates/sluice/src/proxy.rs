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
use sluice_proxy::certs::{CertSources, CertStore};
use sluice_proxy::stream::StreamListeners;
use sluice_proxy::{DataPlane, DataPlaneConfig};

use crate::vars::ProcessVars;

pub(crate) fn run() -> anyhow::Result<()> {
    raise_open_files_limit();
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
    let registry = Registry::new(snapshot.clone(), Some(store.clone()));
    registry
        .set_users(sluice_api::users::UserSource::from_settings(&settings))
        .await;
    // The Swarm tasks the listener pushes: written by the API, read by the data plane.
    let membership = sluice_proxy::membership::MembershipCell::new();
    // ACME certificates: ordered by the API, shown by the statistics page.
    let acme = sluice_api::acme::Acme::new();
    let stats_page = settings.stats.as_ref().map(|s| {
        Arc::new(
            sluice_proxy::stats_page::StatsPage::new(s)
                .with_membership(membership.clone())
                .with_acme(acme.notices()),
        )
    });
    // Certificates decide the default listener ports; layer-4 ports are checked against those.
    let certs = CertStore::load(CertSources {
        certs_dir: settings.certs_dir.clone(),
        secrets_dir: settings.secrets_dir.clone(),
        preferred: settings.preferred_certificates.clone(),
    });
    // State first, then DFP_SERVICE_* services: nothing is served before both are live.
    let mut initial =
        sluice_api::recovery::saved_services(&store, &settings.parse, registry.counters())?;
    let from_state = initial.len();
    for params in services_from_env(&vars) {
        let name = params.get("serviceName").cloned().unwrap_or_default();
        let service = parse_service(&params, &settings.parse)
            .map_err(|e| anyhow!("DFP_SERVICE variables for service {name:?}: {e}"))?;
        initial.push(service);
    }
    let from_env = initial.len() - from_state;
    // A service asking for an ACME certificate opens the default TLS port like a certificate.
    let wants_acme = initial.iter().any(|s| {
        sluice_core::params::acme_request(&s.params, &settings.parse.separator)
            .is_ok_and(|r| r.is_some())
    });
    let listener_ports = settings.listener_ports(!certs.is_empty() || wants_acme);
    let http_ports: Vec<u16> = listener_ports.iter().map(|p| p.port).collect();
    let streams = StreamListeners::new(settings.worker_threads, &http_ports);
    registry.attach_stream_listeners(streams.clone());

    if !initial.is_empty() {
        registry.apply_all(initial).await;
    }
    tracing::info!(from_state, from_env, "loaded services");

    let hosts_file = vars.var("HOSTS_FILE").map(std::path::PathBuf::from);
    let tls = if listener_ports.iter().any(|p| p.ssl) {
        Some(sluice_proxy::tls::server_config(
            &certs,
            settings.enable_h2,
            settings.ca_file.as_deref(),
        )?)
    } else {
        None
    };
    let dataplane = DataPlane::start(
        DataPlaneConfig {
            ports: listener_ports,
            tls,
            streams: Some(streams),
            workers: settings.worker_threads,
            timeouts: settings.timeouts,
            connection_mode: settings.connection_mode,
            hosts_file: hosts_file.clone(),
            stats: sluice_proxy::stats_page::StatsConfig {
                hub: registry.stats(),
                page: stats_page.clone(),
            },
            compression: settings.compression.clone(),
            access_log: sluice_proxy::access_log::AccessLog::new(&settings.access_log),
            max_connections: settings.max_connections,
            membership: membership.clone(),
        },
        snapshot.clone(),
    )
    .map_err(|e| match e {
        sluice_proxy::DataPlaneError::Bind { port, .. } => {
            let variable = if settings.bind_ports.iter().any(|p| p.port == port) {
                "BIND_PORTS"
            } else {
                "DEFAULT_PORTS"
            };
            anyhow!("{e} (set by {variable}); is another proxy already running?")
        }
        other => other.into(),
    })?;
    for addr in dataplane.local_addrs() {
        let tls = dataplane.tls_addrs().contains(addr);
        tracing::info!(%addr, tls, "http listener bound");
    }
    tokio::spawn(certs.clone().watch(Duration::from_secs(5)));

    let api_listener = tokio::net::TcpListener::bind((settings.ip, settings.port))
        .await
        .with_context(|| format!("cannot listen on IP={} PORT={}", settings.ip, settings.port))?;
    tracing::info!(addr = %api_listener.local_addr()?, "api listener bound");
    let mut state = ApiState::new(
        registry.clone(),
        settings.clone(),
        sluice_api::access::peer_authorization(&settings),
        hosts_file,
    );
    state.tasks = sluice_api::membership::TaskBook::new(membership);
    let state = Arc::new(state);
    let _ = state.certs.set(certs);
    let _ = state.plane.set(sluice_api::explain::PlaneView {
        names: dataplane.names(),
        https_port: dataplane.tls_addrs().first().map(|a| a.port()),
    });
    let _ = state.acme.set(acme.clone());
    sluice_api::certs::sync_from_peers(&state).await;
    tokio::spawn(sluice_api::acme::run(state.clone(), acme));
    tokio::spawn(sluice_api::sync::run(state.clone()));
    let app = sluice_api::router(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let (Some(page), Some(port)) = (&stats_page, settings.stats.as_ref().and_then(|s| s.port)) {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port))
            .await
            .with_context(|| format!("cannot listen on STATS_PORT={port}"))?;
        tracing::info!(addr = %listener.local_addr()?, "stats listener bound");
        tokio::spawn(sluice_proxy::stats_page::serve_listener(
            listener,
            page.clone(),
            registry.stats(),
            snapshot.clone(),
            stop_rx.clone(),
        ));
    }
    let api = tokio::spawn(async move {
        let mut stop_rx = stop_rx;
        axum::serve(api_listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });

    crate::signal::wait().await?;
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

/// Raises the soft limit on open files to the hard limit, so that many client connections do
/// not starve certificate reloads, upstream connections and the API of descriptors.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
}
