//! Hermetic integration tests: the real `sluice` binary on port 0 against in-process backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod access_log;
mod acme;
mod api;
mod auth;
mod compression;
mod distribution;
mod docs;
mod dry_run;
mod durability;
mod envelope;
mod explain;
mod fuzz_http;
mod limits;
mod membership;
mod names;
mod overload;
mod passthrough;
mod persistence;
mod reconfigure;
mod replicas;
mod resilience;
mod resync;
mod routing;
mod secrets;
mod security;
mod service_cert;
mod state;
mod stats;
mod stream;
mod support;
mod tls;
mod upstreams;
