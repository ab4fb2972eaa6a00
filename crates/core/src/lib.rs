//! Sluice's pure core: the service model, parameter parsing (query strings, `com.df.*` labels,
//! `DFP_SERVICE_*` variables), settings from the environment, and the compiled route table.
//!
//! It owns no sockets, no runtime and no files: callers hand it strings and get typed values
//! back. The data plane (`sluice-proxy`), the control API (`sluice-api`) and the Docker
//! watcher (`sluice-docker`) build on it.

pub mod access_log;
pub mod client_hello;
pub mod credentials;
pub mod env;
pub mod membership;
pub mod params;
pub mod prometheus;
pub mod redact;
pub mod route;
pub mod service;
pub mod settings;
pub mod stream;
pub mod uri_path;
