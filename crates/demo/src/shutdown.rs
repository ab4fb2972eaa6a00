//! Shutdown coordination: a trigger/signal pair shared by the servers, and waiting for SIGTERM/SIGINT from the OS.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::system::SystemError;

/// The side that requests a shutdown. Dropping it also counts as a request, so servers never outlive their owner.
#[derive(Debug)]
pub(crate) struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// The side servers wait on; cheap to clone into every connection task.
#[derive(Debug, Clone)]
pub(crate) struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownTrigger {
    /// Creates a connected trigger/signal pair.
    pub(crate) fn new() -> (Self, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (Self { tx }, ShutdownSignal { rx })
    }

    /// Requests the shutdown; idempotent.
    pub(crate) fn fire(&self) {
        self.tx.send_replace(true);
    }
}

impl ShutdownSignal {
    /// Resolves once a shutdown was requested (or the trigger is gone).
    pub(crate) async fn requested(&mut self) {
        // An error means the trigger was dropped, which is treated as a request.
        let _ = self.rx.wait_for(|requested| *requested).await;
    }
}

/// Installed handlers for the termination signals (SIGTERM, SIGINT).
///
/// Install them before announcing readiness: from then on a signal no longer kills the process outright but starts the
/// orderly shutdown.
#[derive(Debug)]
pub(crate) struct TerminationSignals {
    term: Signal,
    int: Signal,
}

impl TerminationSignals {
    /// Installs the handlers. Must run inside a tokio runtime.
    pub(crate) fn install() -> Result<Self, SystemError> {
        let term = signal(SignalKind::terminate()).map_err(|source| SystemError::Signal {
            signal: "SIGTERM",
            source,
        })?;
        let int = signal(SignalKind::interrupt()).map_err(|source| SystemError::Signal {
            signal: "SIGINT",
            source,
        })?;
        Ok(Self { term, int })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn signal_resolves_only_after_fire() {
        let (trigger, mut signal) = ShutdownTrigger::new();
        let early = tokio::time::timeout(Duration::from_millis(50), signal.requested()).await;
        assert!(early.is_err(), "resolved before the trigger fired");
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), signal.requested())
            .await
            .unwrap();
        // Clones taken afterwards see the request too.
        let mut late = signal.clone();
        tokio::time::timeout(Duration::from_secs(1), late.requested())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn dropping_the_trigger_counts_as_a_request() {
        let (trigger, mut signal) = ShutdownTrigger::new();
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(1), signal.requested())
            .await
            .unwrap();
    }
}
