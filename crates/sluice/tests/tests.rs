//! Hermetic integration tests: the real `sluice` binary on port 0 against in-process backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod access_log;
mod api;
mod auth;
mod compression;
mod docs;
mod fuzz_http;
mod layer4;
mod persistence;
mod reconfigure;
mod replicas;
mod routing;
mod security;
mod stats;
mod support;
mod tls;
mod upstreams;
