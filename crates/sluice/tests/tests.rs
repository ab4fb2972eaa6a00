//! Hermetic integration tests: the real `sluice` binary on port 0 against in-process backends.

mod api;
mod persistence;
mod reconfigure;
mod routing;
mod support;
mod upstreams;
