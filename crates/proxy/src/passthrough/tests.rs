use super::*;

fn measured(raw: &[u8]) -> Option<(usize, usize)> {
    match measure(raw) {
        Measure::Complete { head_len, body_len } => Some((head_len, body_len)),
        Measure::Partial => None,
        Measure::Other => Some((usize::MAX, usize::MAX)),
    }
}

const OTHER: Option<(usize, usize)> = Some((usize::MAX, usize::MAX));

#[test]
fn whole_requests_are_measured_with_their_bodies() {
    let get = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(measured(get), Some((get.len(), 0)));
    let post = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab";
    assert_eq!(measured(post), None, "the body is not all there yet");
    let whole = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET";
    assert_eq!(
        measured(whole),
        Some((whole.len() - 6, 3)),
        "pipelined bytes stay"
    );
    assert_eq!(measured(b"GET /a HTTP/1.1\r\nHost: x\r\n"), None);
}

#[test]
fn what_hyper_must_answer_is_handed_over() {
    for raw in [
        &b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n"[..],
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nab",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ] {
        assert_eq!(measured(raw), OTHER, "{}", String::from_utf8_lossy(raw));
    }
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.resize(MAX_HEAD + 1, b'a');
    assert_eq!(
        measured(&huge),
        OTHER,
        "an oversized head goes to hyper's 431"
    );
}

fn upstream_head(raw: &[u8]) -> Option<String> {
    let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut parsed);
    req.parse(raw).unwrap();
    let client = Client {
        ip: "10.0.0.9",
        local_port: 80,
    };
    let mut out = Vec::new();
    write_upstream_head(&req, &client, &mut out)?;
    Some(String::from_utf8(out).unwrap())
}

#[test]
fn the_upstream_gets_the_head_without_hop_by_hop_headers_and_with_forwarding_ones() {
    let head = upstream_head(
        b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Private\r\n\
          X-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-Proto: https\r\n\
          X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nAccept: */*\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        head,
        "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\
         x-forwarded-for: 1.2.3.4, 10.0.0.9\r\nx-forwarded-proto: http\r\n\
         x-forwarded-port: 80\r\n\r\n"
    );
    let head = upstream_head(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For:  \r\n\r\n").unwrap();
    assert!(head.contains("\r\nx-forwarded-for: 10.0.0.9\r\n"), "{head}");
    assert_eq!(
        upstream_head("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: é\r\n\r\n".as_bytes()),
        None,
        "a value hyper's path would not read as text is left to it"
    );
}

#[test]
fn lengths_are_digits_only() {
    assert_eq!(parse_length(b"0"), Some(0));
    assert_eq!(parse_length(b"1024"), Some(1024));
    for bad in [&b""[..], b"-1", b"1 ", b"0x10", b"9999999999999999"] {
        assert_eq!(parse_length(bad), None, "{bad:?}");
    }
}
