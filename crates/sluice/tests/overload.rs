//! Overload: bounded header sections, a bound on client connections, and per-service
//! `maxConn` with a queue bounded by `TIMEOUT_QUEUE`.

use crate::support::{raw_request, Backend, Proxy};

fn routed(p: &Proxy, backend: &Backend) {
    let r = p.reconfigure(&format!(
        "serviceName=big&servicePath=/big&port={}&outboundHostname=127.0.0.1",
        backend.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
}

fn request_with_header(p: &Proxy, size: usize) -> String {
    let filler = "a".repeat(size);
    raw_request(
        p.http[0],
        &format!("GET /big HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn header_sections_past_the_bound_get_431() {
    let backend = Backend::start("big");
    let p = Proxy::start();
    routed(&p, &backend);
    let fits = request_with_header(&p, 60 * 1024);
    assert!(
        fits.starts_with("HTTP/1.1 200"),
        "{}",
        &fits[..fits.len().min(200)]
    );
    let too_big = request_with_header(&p, sluice_proxy::MAX_HEADER_SIZE + 1024);
    assert!(
        too_big.starts_with("HTTP/1.1 431"),
        "{}",
        &too_big[..too_big.len().min(200)]
    );
    assert_eq!(
        backend.hit_count(),
        1,
        "the oversized request never reached the backend"
    );
}

/// Connections that each send an unfinished 60 KiB header section, opened all at once.
async fn flood(addr: std::net::SocketAddr, count: usize) -> usize {
    use tokio::io::AsyncWriteExt;
    let mut tasks = Vec::new();
    for _ in 0..count {
        tasks.push(tokio::spawn(async move {
            let connect = tokio::net::TcpStream::connect(addr);
            let Ok(Ok(mut stream)) =
                tokio::time::timeout(std::time::Duration::from_secs(5), connect).await
            else {
                return None;
            };
            let head = format!(
                "GET /big HTTP/1.1\r\nHost: x\r\nX-Filler: {}",
                "a".repeat(60 * 1024)
            );
            let write = stream.write_all(head.as_bytes());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), write).await;
            Some(stream)
        }));
    }
    let mut open = Vec::new();
    for task in tasks {
        if let Some(stream) = task.await.unwrap() {
            open.push(stream);
        }
    }
    // Hold them until the proxy gives up on them.
    let held = open.len();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(20)).await;
        drop(open);
    });
    held
}

#[test]
fn a_connection_flood_leaves_memory_bounded_and_the_proxy_answering() {
    let backend = Backend::start("big");
    let p = Proxy::builder()
        .env("MAX_CONNECTIONS", "200")
        .env("TIMEOUT_HTTP_REQUEST", "1")
        .env("TIMEOUT_HTTP_KEEP_ALIVE", "1")
        .env("WORKER_THREADS", "1")
        .start();
    routed(&p, &backend);
    let before = p.rss_kib();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let held = runtime.block_on(flood(p.http[0], 3000));
    assert!(held > 1000, "only {held} connections opened");
    // While the flood is held: the API answers at once, memory stays bounded.
    let started = std::time::Instant::now();
    assert_eq!(p.api("ping", "").status, 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(p.rss_kib());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // 200 connections with at most 64 KiB of header each (buffers grow by doubling), plus
    // task state and allocator slack under a loaded machine: well under 120 MiB. 3000
    // unbounded ones would hold at least their 176 MiB of headers.
    assert!(
        peak < before + 120 * 1024,
        "RSS grew from {before} KiB to {peak} KiB"
    );
    // A routed request gets through once flood connections time out and free their slots.
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let reply = client
        .get(format!("http://{}/big", p.http[0]))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200);
    drop(runtime);
}

#[test]
fn max_conn_queues_requests_up_to_the_queue_timeout_then_503() {
    use std::time::{Duration, Instant};
    let backend = Backend::start("limited");
    let p = Proxy::builder().env("TIMEOUT_QUEUE", "3").start();
    let r = p.reconfigure(&format!(
        "serviceName=limited&servicePath=/lim&port={}&outboundHostname=127.0.0.1&maxConn=1",
        backend.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let addr = p.http[0];
    let get = move |path: &'static str| {
        std::thread::spawn(move || {
            let started = Instant::now();
            let status = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap()
                .get(format!("http://{addr}{path}"))
                .send()
                .unwrap()
                .status()
                .as_u16();
            (status, started.elapsed())
        })
    };
    // The backend holds /slow for 4 s: the one slot stays taken that long.
    let slow = get("/lim/slow");
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.hit_count() == 0 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hit = Instant::now();
    // Asked at once: waits its 3 s of queue, the slot is still taken, 503.
    let refused = get("/lim/refused");
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(hit.elapsed()));
    // Asked 2.5 s in: the slot frees at 4 s, within this one's 3 s of queue.
    let queued = get("/lim/queued");
    let (status, _) = slow.join().unwrap();
    assert_eq!(status, 200);
    let (status, waited) = refused.join().unwrap();
    assert_eq!(status, 503, "after {waited:?}");
    assert!(
        waited >= Duration::from_millis(2900),
        "refused after {waited:?}"
    );
    let (status, waited) = queued.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        waited >= Duration::from_millis(1000),
        "answered after {waited:?} without queueing"
    );
    assert_eq!(
        backend.hit_count(),
        2,
        "the refused request never reached the backend"
    );
}
