//! Measures [`RouteTable::update`] against full rebuilds at 10,000 services, and the cost of
//! `decide` on a freshly built table versus a layered (updated) one with the same services.
//!
//! Run with `cargo run --release --example route_update_bench -p sluice-core`. It is a
//! measurement, not a test: it prints numbers and asserts nothing about them.

use std::collections::BTreeMap;
use std::error::Error;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use sluice_core::params::{params_from_query, parse_service, ParseContext};
use sluice_core::route::{Decision, RequestFacts, RouteTable};
use sluice_core::service::Service;

const SERVICES: usize = 10_000;
const UPDATES: usize = 1_000;
const LONG_STREAM: usize = 10_000;
const DECIDE_ROUNDS: usize = 20;

/// One of four shapes per service (path prefix, exact host, wildcard host, domain + path);
/// `version` changes the paths so that an upsert really changes the service.
fn service(ctx: &ParseContext, i: usize, version: usize) -> Result<Arc<Service>, Box<dyn Error>> {
    let query = match i % 4 {
        0 => format!("servicePath=/p{i}/v{version}"),
        1 => format!("servicePath=/&serviceDomain=h{i}.example.com"),
        2 => format!("servicePath=/&serviceDomain=*.w{i}.example.net"),
        _ => format!(
            "servicePath=/api{i}/v{version}&serviceDomain=d{i}.example.org\
             &serviceDomainAlgo=hdr_dom(host)"
        ),
    };
    let default = if i == 7 { "&isDefaultBackend=true" } else { "" };
    let params = params_from_query(&format!("serviceName=s{i:05}&port=8080&{query}{default}"));
    Ok(Arc::new(parse_service(&params, ctx)?))
}

/// One change: services to upsert and names to remove.
type Change = (Vec<Arc<Service>>, Vec<String>);

/// The `i`-th change of a stream: mostly replacements, some additions and removals.
fn change(
    ctx: &ParseContext,
    live: &BTreeMap<String, Arc<Service>>,
    step: usize,
) -> Result<Change, Box<dyn Error>> {
    let i = (step * 7919) % (SERVICES + SERVICES / 10);
    let name = format!("s{i:05}");
    if step % 10 == 9 && live.contains_key(&name) {
        Ok((Vec::new(), vec![name]))
    } else {
        Ok((vec![service(ctx, i, step)?], Vec::new()))
    }
}

struct StreamResult {
    times: Vec<Duration>,
    compactions: usize,
    table: RouteTable,
    live: BTreeMap<String, Arc<Service>>,
}

/// Applies `steps` single-service changes one after the other, timing each `update`.
fn stream(
    ctx: &ParseContext,
    start: &RouteTable,
    live: &BTreeMap<String, Arc<Service>>,
    steps: usize,
) -> Result<StreamResult, Box<dyn Error>> {
    let mut live = live.clone();
    let mut table = start.clone();
    let mut times = Vec::with_capacity(steps);
    let mut compactions = 0;
    for step in 0..steps {
        let (upserts, removed) = change(ctx, &live, step)?;
        let removed_refs: Vec<&str> = removed.iter().map(String::as_str).collect();
        let before = table.changed_services();
        let started = Instant::now();
        let next = table.update(&upserts, &removed_refs);
        times.push(started.elapsed());
        if next.changed_services() < before {
            compactions += 1;
        }
        table = next;
        for s in upserts {
            live.insert(s.name.clone(), s);
        }
        for name in &removed {
            live.remove(name);
        }
    }
    Ok(StreamResult {
        times,
        compactions,
        table,
        live,
    })
}

fn percentiles(label: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let at = |q: usize| sorted[(sorted.len() * q / 100).min(sorted.len() - 1)];
    let mean = sorted.iter().sum::<Duration>() / u32::try_from(sorted.len()).unwrap_or(1);
    println!(
        "{label}: n={} p50={:?} p99={:?} max={:?} mean={:?}",
        sorted.len(),
        at(50),
        at(99),
        sorted[sorted.len() - 1],
        mean
    );
}

/// Requests over every shape, hits and misses, including services changed by the stream.
fn requests() -> Vec<(Option<String>, String)> {
    let mut reqs = Vec::new();
    for i in (0..SERVICES + SERVICES / 10).step_by(53) {
        reqs.push((Some("x.example".into()), format!("/p{i}/v0/x")));
        reqs.push((Some(format!("h{i}.example.com")), "/a".into()));
        reqs.push((Some(format!("a.w{i}.example.net:8080")), "/".into()));
        reqs.push((Some(format!("d{i}.example.org")), format!("/api{i}/v0")));
        reqs.push((None, "/nowhere".into()));
    }
    reqs
}

/// Nanoseconds per `decide` over `reqs`, best of a few rounds.
fn decide_ns(table: &RouteTable, reqs: &[(Option<String>, String)]) -> f64 {
    let headers = HeaderMap::new();
    let mut best = f64::MAX;
    for _ in 0..DECIDE_ROUNDS {
        let started = Instant::now();
        for (host, path) in reqs {
            let facts = RequestFacts {
                host: host.as_deref(),
                path,
                path_and_query: path,
                local_port: 80,
                headers: &headers,
            };
            let forwarded = matches!(table.decide(&facts), Decision::Forward(_));
            black_box(forwarded);
        }
        let per = started.elapsed().as_nanos() as f64 / reqs.len() as f64;
        best = best.min(per);
    }
    best
}

fn main() -> Result<(), Box<dyn Error>> {
    let ctx = ParseContext::default();
    let services: Vec<Arc<Service>> = (0..SERVICES)
        .map(|i| service(&ctx, i, 0))
        .collect::<Result<_, _>>()?;
    let live: BTreeMap<String, Arc<Service>> = services
        .iter()
        .map(|s| (s.name.clone(), Arc::clone(s)))
        .collect();

    let builds: Vec<Duration> = (0..11)
        .map(|_| {
            let started = Instant::now();
            black_box(RouteTable::build(&services));
            started.elapsed()
        })
        .collect();
    percentiles("full build, 10000 services", &builds);
    let base = RouteTable::build(&services);

    let short = stream(&ctx, &base, &live, UPDATES)?;
    percentiles(
        &format!(
            "update x{UPDATES} (single service each, chained; {} compaction(s))",
            short.compactions
        ),
        &short.times,
    );
    println!(
        "  changed services carried after the stream: {}",
        short.table.changed_services()
    );

    let long = stream(&ctx, &base, &live, LONG_STREAM)?;
    percentiles(
        &format!(
            "update x{LONG_STREAM} (single service each, chained; {} compaction(s))",
            long.compactions
        ),
        &long.times,
    );

    let reqs = requests();
    let layered = &short.table;
    let rebuilt = RouteTable::build(short.live.values());
    let same = reqs.iter().all(|(host, path)| {
        let headers = HeaderMap::new();
        let facts = RequestFacts {
            host: host.as_deref(),
            path,
            path_and_query: path,
            local_port: 80,
            headers: &headers,
        };
        let name = |d: Decision<'_>| match d {
            Decision::Forward(r) => Some((r.service.name.clone(), r.dest, r.https)),
            _ => None,
        };
        name(layered.decide(&facts)) == name(rebuilt.decide(&facts))
    });
    println!(
        "decide over {} requests (layered table answers like a rebuild: {same})",
        reqs.len()
    );
    println!(
        "  built (base only):                         {:.0} ns/op",
        decide_ns(&rebuilt, &reqs)
    );
    println!(
        "  layered ({} changed services in the delta): {:.0} ns/op",
        layered.changed_services(),
        decide_ns(layered, &reqs)
    );
    Ok(())
}
