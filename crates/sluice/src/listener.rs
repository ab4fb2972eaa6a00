//! `sluice listener`: the Swarm listener (Docker Flow Swarm Listener's job), serving its API
//! on `PORT` (default 8080) and notifying the proxies until SIGTERM/SIGINT.

use anyhow::Context;
use sluice_core::settings::Vars;
use sluice_docker::{ListenerSettings, SwarmListener};

use crate::vars::ProcessVars;

pub(crate) fn run() -> anyhow::Result<()> {
    let vars = ProcessVars::from_env();
    let settings = ListenerSettings::from_vars(&vars)?;
    let port: u16 = match vars.var("PORT") {
        Some(p) => p
            .parse()
            .with_context(|| format!("invalid PORT={p:?}: not a port number"))?,
        None => 8080,
    };
    let ip = vars.var("IP").unwrap_or_else(|| "0.0.0.0".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-listener")
        .enable_all()
        .build()
        .context("cannot start the listener runtime")?;
    runtime.block_on(async move {
        tracing::info!(docker = %settings.docker_host(), endpoints = ?settings.endpoints(), "Starting the Swarm listener");
        let listener = SwarmListener::new(settings)?;
        let api = tokio::net::TcpListener::bind((ip.as_str(), port))
            .await
            .with_context(|| format!("cannot listen on IP={ip} PORT={port}"))?;
        tracing::info!(addr = %api.local_addr()?, "api listener bound");
        listener
            .run(api, async {
                let _ = crate::signal::wait().await;
                tracing::info!("shutting down");
            })
            .await?;
        Ok(())
    })
}
