//! What the operating system can refuse a demo backend or client: sockets, runtimes, threads and signal handlers.
//!
//! A leaf: every part of the demo that binds, spawns or waits for signals returns [`SystemError`], and
//! the program's `DemoError` (in `error.rs`) gathers it with the errors of the commands.

use std::net::SocketAddr;

/// A resource the operating system did not give.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SystemError {
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
}
