//! Measures tables of `path_reg` routes (anchored `^/r<i>/…` and unanchored `/r<i>/…`): build time, compiled size, and for matched and
//! unmatched requests the regex executions per request (the router runs each layer's
//! expressions as one set) against checking every route one by one, as the router did before.
//!
//! Run with `cargo run --release --example regex_route_bench -p sluice-core [SERVICES]`. It is
//! a measurement, not a test: it prints numbers and asserts nothing about them.

use std::error::Error;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use sluice_core::params::{params_from_query, parse_service, ParseContext};
use sluice_core::route::{regex_runs, Decision, RequestFacts, RouteTable};
use sluice_core::service::Service;

const ROUNDS: u32 = 200;

fn main() -> Result<(), Box<dyn Error>> {
    let services_count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    for anchor in ["^", ""] {
        println!("--- paths {anchor}/r<i>/[a-z]+/\\d+$");
        measure(services_count, anchor)?;
    }
    Ok(())
}

/// One table of `services_count` services on `<anchor>/r<i>/[a-z]+/\d+$`.
fn measure(services_count: usize, anchor: &str) -> Result<(), Box<dyn Error>> {
    let ctx = ParseContext::default();
    let started = Instant::now();
    let services: Vec<Arc<Service>> = (0..services_count)
        .map(|i| {
            let query = format!(
                "serviceName=r{i}&port=80&pathType=path_reg\
                 &servicePath={anchor}/r{i}/[a-z]%2B/\\d%2B$"
            );
            parse_service(&params_from_query(&query), &ctx).map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    println!(
        "parsed {services_count} path_reg services in {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let table = RouteTable::build(&services);
    println!(
        "built the table in {:?}; compiled regex size {} KiB",
        started.elapsed(),
        table.regex_size() / 1024
    );

    let headers = HeaderMap::new();
    let last = services_count.saturating_sub(1);
    for (label, path) in [
        ("unmatched", "/nothing/here".to_string()),
        ("matched (last route)", format!("/r{last}/abc/12")),
    ] {
        let facts = RequestFacts {
            host: Some("example.com"),
            path: &path,
            path_and_query: &path,
            local_port: 80,
            headers: &headers,
        };
        let before = regex_runs();
        let started = Instant::now();
        for _ in 0..ROUNDS {
            black_box(matches!(table.decide(&facts), Decision::Forward(_)));
        }
        let per = started.elapsed() / ROUNDS;
        let runs = (regex_runs() - before) / u64::from(ROUNDS);
        let before = regex_runs();
        let started = Instant::now();
        let matched = table.routes().filter(|r| r.matches(&facts)).count();
        let one_by_one = started.elapsed();
        println!(
            "{label}: decide {per:?}, {runs} regex run(s) per request; \
             every route one by one: {one_by_one:?}, {} regex runs ({matched} matched)",
            regex_runs() - before
        );
    }
    Ok(())
}
