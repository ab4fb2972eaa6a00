//! How much heap an idle client connection holds: a connection that has sent nothing yet must
//! cost the data plane a small task, not an HTTP connection's buffers (issue 9: 5,000 idle
//! connections cost HAProxy about 1.1 KB each).
//!
//! A test binary of its own: it counts every allocation of the process through a counting
//! global allocator, so no other test may run beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sluice_core::service::ConnectionMode;
use sluice_core::settings::{PortSpec, Timeouts};
use sluice_proxy::{DataPlane, DataPlaneConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Idle connections opened in the measured window (each is two descriptors of this process:
/// the client side and the data plane's side, well under a default limit of 1,024).
const IDLE: usize = 300;
/// The heap an idle connection may hold (its task, socket registration and timer).
const MAX_BYTES_PER_IDLE_CONNECTION: isize = 768;

fn data_plane() -> DataPlane {
    DataPlane::start(
        DataPlaneConfig {
            ports: vec![PortSpec {
                port: 0,
                ssl: false,
            }],
            tls: None,
            streams: None,
            workers: 1,
            timeouts: Timeouts::default(),
            connection_mode: ConnectionMode::KeepAlive,
            hosts_file: None,
            stats: sluice_proxy::stats_page::StatsConfig::counters_only(
                sluice_proxy::stats::StatsHub::new(),
            ),
            compression: None,
            access_log: None,
            max_connections: 10_000,
        },
        sluice_proxy::snapshot::new_cell(),
    )
    .unwrap()
}

/// One request on a fresh connection, read to the end. Connections are accepted in order, so
/// once it is answered every connection opened before it has been accepted and its task run.
fn probe(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Bytes allocated and not yet freed since `region` began.
fn live(region: &Region<'_, System>) -> isize {
    let change = region.change();
    change.bytes_allocated as isize - change.bytes_deallocated as isize + change.bytes_reallocated
}

#[test]
fn an_idle_client_connection_holds_less_than_a_kilobyte_of_heap() {
    let dataplane = data_plane();
    let addr = SocketAddr::from(([127, 0, 0, 1], dataplane.local_addrs()[0].port()));
    // Warm up: lazily built state (the snapshot handle, timers, the runtime's queues).
    for _ in 0..3 {
        assert!(
            probe(addr).starts_with("HTTP/1.1 503"),
            "no route answers 503"
        );
    }

    let region = Region::new(GLOBAL);
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    assert!(probe(addr).starts_with("HTTP/1.1 503"));
    let held = live(&region);
    let per_connection = held / IDLE as isize;
    eprintln!("{IDLE} idle connections: {held} bytes of heap, {per_connection} per connection");
    assert!(
        per_connection <= MAX_BYTES_PER_IDLE_CONNECTION,
        "{IDLE} idle connections hold {held} bytes of heap: {per_connection} each"
    );
    // The measurement is not vacuous: the idle connections are held by the data plane.
    assert!(held > 0, "the idle connections cost nothing at all: {held}");

    drop(idle);
    dataplane.shutdown(Duration::from_secs(1));
}
