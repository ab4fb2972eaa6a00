use super::*;

fn edited(raw: &str, head_request: bool, client_close: bool) -> Option<(Head, String)> {
    let mut out = Vec::new();
    let head = edit_head(raw.as_bytes(), head_request, client_close, &mut out)?;
    Some((head, String::from_utf8(out).unwrap()))
}

#[test]
fn response_heads_lose_hop_by_hop_headers() {
    let (head, out) = edited(
        "HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nConnection: keep-alive, X-Private\r\n\
         X-Private: 1\r\nKeep-Alive: timeout=5\r\nServer: nginx\r\n\r\n",
        false,
        false,
    )
    .unwrap();
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: nginx\r\n\r\n"
    );
    assert_eq!(head.framing, Framing::Length(2));
    assert!(head.reusable && !head.close);
}

#[test]
fn framing_follows_rfc_9112() {
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
    let (head, out) = edited(chunked, false, false).unwrap();
    assert_eq!(head.framing, Framing::Chunked);
    assert!(
        !out.contains("Content-Length"),
        "chunked wins over a length: {out}"
    );
    assert!(out.contains("Transfer-Encoding: chunked"));

    let (head, out) = edited("HTTP/1.1 200 OK\r\n\r\n", false, false).unwrap();
    assert_eq!(head.framing, Framing::UntilClose);
    assert!(head.close && !head.reusable);
    assert!(out.ends_with("connection: close\r\n\r\n"), "{out}");

    let (head, _) = edited("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, false).unwrap();
    assert_eq!(head.framing, Framing::Empty, "a HEAD response has no body");
    let (head, _) = edited(
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        false,
        false,
    )
    .unwrap();
    assert_eq!(head.framing, Framing::Empty);

    let (head, out) = edited("HTTP/1.1 204 No Content\r\n\r\n", false, true).unwrap();
    assert!(head.close, "the client asked to close");
    assert!(out.contains("connection: close"));

    let (head, _) = edited("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, false).unwrap();
    assert!(!head.reusable, "an HTTP/1.0 upstream closes");
    let (head, _) = edited(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        false,
        false,
    )
    .unwrap();
    assert!(!head.reusable && !head.close);

    assert!(edited(
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        false,
        false
    )
    .is_none());
    let (_, out) = edited(
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        false,
        false,
    )
    .unwrap();
    assert_eq!(out.matches("Content-Length").count(), 1);
}

fn walk(pieces: &[&[u8]]) -> Result<(usize, bool), ()> {
    let mut chunks = Chunks::default();
    let mut pending = Vec::new();
    let mut passed = 0;
    for piece in pieces {
        pending.extend_from_slice(piece);
        let used = chunks.advance(&pending)?;
        passed += used;
        pending.drain(..used);
    }
    Ok((passed, chunks.done()))
}

#[test]
fn chunked_bodies_end_after_the_last_chunk_and_trailers() {
    let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
    assert_eq!(walk(&[body]), Ok((body.len(), true)));
    let pieces: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(walk(&pieces), Ok((body.len(), true)), "one byte at a time");
    let mut followed = body.to_vec();
    followed.extend_from_slice(b"HTTP/1.1");
    assert_eq!(
        walk(&[&followed]),
        Ok((body.len(), true)),
        "what follows is not body"
    );
    assert_eq!(walk(&[b"5\r\nhel"]), Ok((6, false)));
    assert_eq!(walk(&[b"5\r\nhelloXX"]), Err(()), "data without its CRLF");
    assert_eq!(walk(&[b"zz\r\n"]), Err(()));
    assert_eq!(walk(&[b"0\r\n\r\n"]), Ok((5, true)));
}
