//! Sluice's data plane: HTTP listeners, request forwarding, upstream balancing and pooling.
//!
//! It reads routing decisions from the published [`snapshot::Snapshot`] and never writes
//! them; the control API is the one writer. It does not parse parameters or talk to Docker.

pub mod body;
pub mod error_page;
mod forward;
pub mod snapshot;
mod tunnel;
mod upstream;
mod worker;

pub use worker::{DataPlane, DataPlaneConfig, DataPlaneError};
