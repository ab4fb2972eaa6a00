//! Sluice's data plane: HTTP listeners, request forwarding, upstream balancing and pooling.
//!
//! It reads routing decisions from the published [`snapshot::Snapshot`] and never writes
//! them; the control API is the one writer. It does not parse parameters or talk to Docker.

pub mod access_log;
pub mod acme_notices;
pub mod auth;
pub mod body;
pub mod certs;
pub mod challenge;
pub mod compress;
mod connection;
mod context;
mod crypto;
pub mod error_page;
mod forward;
pub mod health;
mod limits;
mod listener;
pub mod membership;
pub mod names;
mod passthrough;
pub mod resolve;
pub mod snapshot;
pub mod stats;
pub mod stats_page;
pub mod stream;
pub mod tls;
mod tunnel;
mod upstream;
mod upstream_tls;
mod wire;
mod worker;

pub use connection::MAX_HEADER_SIZE;
pub use worker::{DataPlane, DataPlaneConfig, DataPlaneError};
