//! Bytes on the wire for the pass-through path ([`crate::passthrough`]) and its upstream
//! connections: reading into a growing buffer, writing two slices in one system call, and
//! telling where an HTTP/1 response head ends. Parsing is `httparse`'s; nothing here knows
//! about routing.

use std::cell::RefCell;
use std::io::{self, IoSlice};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest HTTP/1 head (request or response) the pass-through path reads; past it the
/// request goes to hyper (which answers 431) or the response is refused (502).
pub(crate) const MAX_HEAD: usize = crate::connection::MAX_HEADER_SIZE;
/// Headers parsed per head (hyper's default limit as well).
pub(crate) const MAX_HEADERS: usize = 100;
/// What a read asks the kernel for at least.
const READ_SIZE: usize = 16 * 1024;
/// The most a read asks for, once reads keep filling the buffer.
const MAX_READ_SIZE: usize = 256 * 1024;

/// Spare buffers most kept per worker.
const MAX_SPARES: usize = 1024;
/// Buffers larger than this are freed instead of kept.
const MAX_SPARE_SIZE: usize = 64 * 1024;

/// One worker's spare buffers: a connection waiting for its next request, and an idle pooled
/// upstream connection, hold none (they cost their task and socket, not buffers).
#[derive(Default)]
pub(crate) struct Buffers(RefCell<Vec<Vec<u8>>>);

impl Buffers {
    /// An empty buffer, with room from an earlier use when there is one.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.0.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps `buf`'s room for a later [`Buffers::take`]; leaves an empty `Vec` in its place.
    pub(crate) fn give(&self, buf: &mut Vec<u8>) {
        let mut buf = std::mem::take(buf);
        if buf.capacity() == 0 || buf.capacity() > MAX_SPARE_SIZE {
            return;
        }
        buf.clear();
        let mut spares = self.0.borrow_mut();
        if spares.len() < MAX_SPARES {
            spares.push(buf);
        }
    }
}

/// Reads what the peer sent into `buf`'s spare room (made at least [`READ_SIZE`]; doubled
/// while reads fill it, up to about [`MAX_READ_SIZE`]). `Ok(0)` is the peer's end of stream.
pub(crate) async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_SIZE {
        buf.reserve(READ_SIZE);
    }
    let room = buf.capacity() - buf.len();
    let n = stream.read_buf(buf).await?;
    if n == room && buf.capacity() < MAX_READ_SIZE {
        // The peer had more: the next read may take twice as much.
        buf.reserve(buf.capacity());
    }
    Ok(n)
}

/// Writes `first` then `second` whole, in one `writev` when the socket takes it all. On
/// failure, also says how many bytes went out before it.
pub(crate) async fn write_both(
    stream: &mut TcpStream,
    first: &[u8],
    second: &[u8],
) -> Result<(), (usize, io::Error)> {
    let total = first.len() + second.len();
    let mut written = 0;
    while written < total {
        let result = if written < first.len() {
            let slices = [IoSlice::new(&first[written..]), IoSlice::new(second)];
            stream.write_vectored(&slices).await
        } else {
            stream.write(&second[written - first.len()..]).await
        };
        match result {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(error) => return Err((written, error)),
        }
    }
    Ok(())
}

/// Where a response head ends in `buf` and its status: `Ok(None)` while incomplete.
pub(crate) fn response_head(buf: &[u8]) -> Result<Option<(usize, u16)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf)? {
        httparse::Status::Complete(len) => Ok(Some((len, response.code.unwrap_or(0)))),
        httparse::Status::Partial => Ok(None),
    }
}

/// Headers that belong to one connection (RFC 9110 §7.6.1), besides those a `Connection`
/// header names and the message framing (`Transfer-Encoding`, `Content-Length`).
pub(crate) const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Whether one of the `Connection` headers among `headers` names `name` (a header that then
/// belongs to this connection only, RFC 9110 §7.6.1).
pub(crate) fn connection_names(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection") && lists(h.value, name))
}

/// Appends the header line `name: value`.
pub(crate) fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a comma-separated header value lists `token` (case-insensitive), as
/// `Connection: close` or `Transfer-Encoding: gzip, chunked` do.
pub(crate) fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_end_where_httparse_says() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(response_head(raw).unwrap(), Some((raw.len() - 2, 200)));
        assert_eq!(response_head(b"HTTP/1.1 200 OK\r\nConte").unwrap(), None);
        assert!(response_head(b"NOT HTTP\r\n\r\n").is_err());
    }

    #[test]
    fn spare_buffers_keep_their_room() {
        let spares = Buffers::default();
        let mut buf = Vec::with_capacity(100);
        buf.extend_from_slice(b"abc");
        spares.give(&mut buf);
        assert_eq!(buf.capacity(), 0, "the holder keeps nothing");
        let again = spares.take();
        assert!(again.is_empty() && again.capacity() >= 100);
        assert_eq!(spares.take().capacity(), 0, "none left");
        let mut huge = Vec::with_capacity(MAX_SPARE_SIZE + 1);
        spares.give(&mut huge);
        assert_eq!(spares.take().capacity(), 0, "too large to keep");
    }

    #[test]
    fn tokens_are_found_in_lists() {
        assert!(lists(b"keep-alive, Close", "close"));
        assert!(lists(b"gzip,chunked", "chunked"));
        assert!(!lists(b"closed", "close"));
    }
}
