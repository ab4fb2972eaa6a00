//! Waiting for the signals Swarm and terminals send: SIGTERM and SIGINT.

use anyhow::Context;

/// Resolves on the first SIGTERM or SIGINT.
pub(crate) async fn wait() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
