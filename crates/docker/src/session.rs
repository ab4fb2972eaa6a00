//! Why a session with the Docker Engine ended: the error every Docker call of the watcher
//! and the task listing returns.

use thiserror::Error;

/// Why a session with the Docker Engine ended.
#[derive(Debug, Error)]
pub(crate) enum SessionError {
    #[error("cannot connect to Docker at {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Docker at {host} did not answer /_ping: {source}")]
    Ping {
        host: String,
        #[source]
        source: hyper::Error,
    },
    #[error("Docker API call {call} failed: {source}")]
    Api {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker event stream ended")]
    StreamEnded,
    #[error("Docker task listing failed: {reason}")]
    Tasks { reason: String },
}
