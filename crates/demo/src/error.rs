//! The error of the whole `sluice-demo` program: it gathers the errors of each part (the parts never import it back).

use crate::health::Unhealthy;
use crate::load::LoadError;
use crate::system::SystemError;
use crate::traffic::TrafficError;

/// Everything that can stop a demo backend from starting or running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// A socket, runtime, thread or signal handler was refused.
    #[error(transparent)]
    System(#[from] SystemError),
    /// A `sluice-demo load` command failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `sluice-demo load http` or `load ws` cannot run.
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    /// `sluice-demo health` found the app unhealthy.
    #[error("unhealthy: {0}")]
    Unhealthy(#[from] Unhealthy),
    /// A command-line number is out of range.
    #[error("invalid {flag} {value}: expected a number of seconds >= 0")]
    Argument {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
    },
}
