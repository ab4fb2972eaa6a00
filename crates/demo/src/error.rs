//! The error type shared by every demo backend: binding sockets, building runtimes and waiting for OS signals.

use std::net::SocketAddr;

/// Everything that can stop a demo backend from starting or running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// The listening socket could not be created, configured or bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address that was requested.
        addr: SocketAddr,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The address of a freshly bound socket could not be read back.
    #[error("cannot read the local address of the listener bound for {requested}: {source}")]
    LocalAddr {
        /// The address that was requested.
        requested: SocketAddr,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// A tokio runtime could not be built.
    #[error("cannot build the tokio runtime for {role}: {source}")]
    Runtime {
        /// Which part of the program needed the runtime.
        role: &'static str,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread could not be spawned.
    #[error("cannot spawn worker thread {index}: {source}")]
    Thread {
        /// The index of the worker.
        index: usize,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread panicked.
    #[error("worker thread {index} panicked")]
    ThreadPanicked {
        /// The index of the worker.
        index: usize,
    },
    /// The handler for a termination signal could not be installed.
    #[error("cannot install the handler for {signal}: {source}")]
    Signal {
        /// The signal name (SIGTERM, SIGINT).
        signal: &'static str,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `sluice-demo load` command failed.
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    /// `sluice-demo load http` or `load ws` cannot run.
    #[error(transparent)]
    Traffic(#[from] crate::traffic::TrafficError),
    /// `sluice-demo health` found the app unhealthy.
    #[error("unhealthy: {0}")]
    Unhealthy(#[from] crate::health::Unhealthy),
    /// A command-line number is out of range.
    #[error("invalid {flag} {value}: expected a number of seconds >= 0")]
    Argument {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
    },
}
