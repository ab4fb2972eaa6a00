//! Hermetic integration tests: the real `sluice` binary on port 0 against in-process backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod api;
mod persistence;
mod reconfigure;
mod routing;
mod support;
mod upstreams;
