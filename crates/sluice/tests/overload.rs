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
