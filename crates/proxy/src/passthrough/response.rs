//! The response side of the pass-through path: the upstream's head, edited, goes to the
//! client, then the body as it came, its end found from its framing (`Content-Length`,
//! chunked, or the upstream closing). The upstream connection goes back to the pool only when
//! its response ended exactly where its framing said.

use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::net::TcpStream;

use crate::body::{Meter, ProxyBody};
use crate::stats::{InFlight, StatsHub};
use crate::upstream::{DirectConn, DirectExchange, Upstreams};
use crate::wire::{self, Buffers, MAX_HEADERS};

/// A body up to this size is read whole before the head is passed on.
const SMALL_BODY: u64 = 16 * 1024;
/// The most bytes of a chunk-size or trailer line kept while waiting for its end.
const MAX_LINE: usize = 4096;

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (`HEAD`, 204, 304).
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding, passed through as it came.
    Chunked,
    /// Until the upstream closes: the client connection closes after it.
    UntilClose,
}

/// What relaying a response needs besides the exchange.
pub(super) struct Relay<'a> {
    pub(super) upstreams: &'a Upstreams,
    pub(super) buffers: &'a Buffers,
    pub(super) hub: &'a StatsHub,
    pub(super) in_flight: Option<&'a InFlight>,
    pub(super) started: Instant,
    pub(super) head_request: bool,
    pub(super) client_close: bool,
    pub(super) server_timeout: Duration,
}

/// The response head as the client gets it.
struct Head {
    status: u16,
    framing: Framing,
    /// The upstream connection may carry another request once the body is read.
    reusable: bool,
    /// The client connection closes after this response.
    close: bool,
}

impl Relay<'_> {
    /// Relays the answer in `exchange` to the client: whether the client connection may carry
    /// another request.
    pub(super) async fn run(
        &self,
        client: &mut TcpStream,
        exchange: DirectExchange,
        out: &mut Vec<u8>,
    ) -> bool {
        let DirectExchange {
            mut conn, head_len, ..
        } = exchange;
        let Some(head) = edit_head(
            &conn.buf[..head_len],
            self.head_request,
            self.client_close,
            out,
        ) else {
            // Not a response hyper's path would have passed on either.
            let page = crate::error_page::page(crate::error_page::Failure::BadGateway);
            let status = page.status().as_u16();
            self.answered(status);
            return write_page(client, page, self.client_close, out).await;
        };
        self.answered(head.status);
        let relayed = match head.framing {
            Framing::Empty => self.empty(client, &conn, head_len, out).await,
            Framing::Length(len) => self.sized(client, &mut conn, head_len, len, out).await,
            Framing::Chunked => self.chunked(client, &mut conn, head_len, out).await,
            Framing::UntilClose => self.until_close(client, &mut conn, head_len, out).await,
        };
        match relayed {
            Ok(clean) => {
                if clean && head.reusable {
                    self.upstreams.put_direct(conn, self.buffers);
                } else {
                    self.buffers.give(&mut conn.buf);
                }
                !head.close
            }
            Err(()) => false,
        }
    }

    fn answered(&self, status: u16) {
        if let Some(in_flight) = self.in_flight {
            in_flight.answered(status, self.started.elapsed());
        }
        self.hub.responded(status);
    }

    /// Writes `first` and `body` to the client; `body.len()` bytes of body are counted.
    async fn pass(&self, client: &mut TcpStream, first: &[u8], body: &[u8]) -> Result<(), ()> {
        wire::write_both(client, first, body).await.map_err(drop)?;
        self.sent(body.len());
        Ok(())
    }

    fn sent(&self, bytes: usize) {
        if let Some(in_flight) = self.in_flight {
            in_flight.count(bytes as u64);
        }
    }

    /// The head alone. `Ok(true)` when nothing followed it upstream.
    async fn empty(
        &self,
        client: &mut TcpStream,
        conn: &DirectConn,
        head_len: usize,
        out: &[u8],
    ) -> Result<bool, ()> {
        wire::write_both(client, out, &[]).await.map_err(drop)?;
        Ok(conn.buf.len() == head_len)
    }

    /// A body of `len` bytes. `Ok(true)` when the upstream sent exactly that.
    async fn sized(
        &self,
        client: &mut TcpStream,
        conn: &mut DirectConn,
        head_len: usize,
        len: u64,
        out: &[u8],
    ) -> Result<bool, ()> {
        // A small body the upstream sent apart from its head (a server writing them separately)
        // goes out with the head: one write and one segment to the client instead of two, and the
        // client has nothing to do with the head before the body anyway.
        while ((conn.buf.len() - head_len) as u64) < len && len <= SMALL_BODY {
            self.read(conn).await?;
        }
        let have = (conn.buf.len() - head_len) as u64;
        let first = have.min(len) as usize;
        self.pass(client, out, &conn.buf[head_len..head_len + first])
            .await?;
        let mut extra = have > len;
        let mut left = len - first as u64;
        while left > 0 {
            conn.buf.clear();
            let n = self.read(conn).await?;
            let take = (n as u64).min(left) as usize;
            extra |= n > take;
            self.pass(client, &[], &conn.buf[..take]).await?;
            left -= take as u64;
        }
        Ok(!extra)
    }

    /// A chunked body, passed through with its framing. `Ok(true)` when nothing followed its
    /// last chunk and trailers.
    async fn chunked(
        &self,
        client: &mut TcpStream,
        conn: &mut DirectConn,
        head_len: usize,
        out: &[u8],
    ) -> Result<bool, ()> {
        let mut chunks = Chunks::default();
        let used = chunks.advance(&conn.buf[head_len..])?;
        self.pass(client, out, &conn.buf[head_len..head_len + used])
            .await?;
        let mut end = head_len + used;
        while !chunks.done() {
            conn.buf.drain(..end);
            if conn.buf.len() > MAX_LINE {
                return Err(());
            }
            self.read(conn).await?;
            let used = chunks.advance(&conn.buf)?;
            self.pass(client, &[], &conn.buf[..used]).await?;
            end = used;
        }
        Ok(end == conn.buf.len())
    }

    /// A body that ends when the upstream closes.
    async fn until_close(
        &self,
        client: &mut TcpStream,
        conn: &mut DirectConn,
        head_len: usize,
        out: &[u8],
    ) -> Result<bool, ()> {
        self.pass(client, out, &conn.buf[head_len..]).await?;
        loop {
            conn.buf.clear();
            match tokio::time::timeout(
                self.server_timeout,
                wire::read_more(&mut conn.stream, &mut conn.buf),
            )
            .await
            {
                Ok(Ok(0)) => return Ok(false),
                Ok(Ok(n)) => self.pass(client, &[], &conn.buf[..n]).await?,
                _ => return Err(()),
            }
        }
    }

    /// Reads more of the body within the server timeout; the upstream closing early is an
    /// error (the client connection is closed so the client sees the body is cut).
    async fn read(&self, conn: &mut DirectConn) -> Result<usize, ()> {
        match tokio::time::timeout(
            self.server_timeout,
            wire::read_more(&mut conn.stream, &mut conn.buf),
        )
        .await
        {
            Ok(Ok(n)) if n > 0 => Ok(n),
            _ => {
                tracing::debug!(addr = %conn.addr, "upstream response body cut short");
                Err(())
            }
        }
    }
}

/// Writes the response head the client gets into `out`: the status line, the upstream's
/// headers without hop-by-hop ones (and those its `Connection` names), and
/// `Connection: close` when the client connection closes after it. `None` for a response
/// whose body length is ambiguous (conflicting `Content-Length`s).
fn edit_head(
    raw: &[u8],
    head_request: bool,
    client_close: bool,
    out: &mut Vec<u8>,
) -> Option<Head> {
    let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut parsed);
    resp.parse(raw).ok()?;
    let status = resp.code?;
    let mut upstream_close = resp.version != Some(1);
    let mut chunked = false;
    let mut coded = false;
    let mut length: Option<u64> = None;
    for header in resp.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            upstream_close |= wire::lists(header.value, "close");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            chunked = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let len = super::parse_length(header.value)? as u64;
            if length.replace(len).is_some_and(|prior| prior != len) {
                return None;
            }
        }
    }
    let bodiless = head_request || status == 204 || status == 304 || status < 200;
    let framing = if bodiless {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if coded {
        Framing::UntilClose
    } else if let Some(len) = length {
        Framing::Length(len)
    } else {
        Framing::UntilClose
    };
    let close = client_close || framing == Framing::UntilClose;
    out.clear();
    let _ = write!(out, "HTTP/1.1 {status} ");
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .or(resp.reason)
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut wrote_length = false;
    for header in resp.headers.iter() {
        let name = header.name;
        // `Transfer-Encoding` stays when the body is passed through chunked.
        if wire::HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            || wire::connection_names(resp.headers, name)
        {
            continue;
        }
        let is_coding = name.eq_ignore_ascii_case("transfer-encoding");
        let is_length = name.eq_ignore_ascii_case("content-length");
        if (is_coding && framing != Framing::Chunked) || (is_length && (coded || wrote_length)) {
            continue;
        }
        wrote_length |= is_length;
        wire::put_header(out, name.as_bytes(), header.value);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(Head {
        status,
        framing,
        reusable: !upstream_close && framing != Framing::UntilClose,
        close,
    })
}

/// Writes one of the data plane's own pages (a complete body) to the client: whether the
/// connection may carry another request.
pub(super) async fn write_page(
    client: &mut TcpStream,
    page: Response<ProxyBody>,
    client_close: bool,
    out: &mut Vec<u8>,
) -> bool {
    let (parts, body) = page.into_parts();
    let body: Bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let close = client_close
        || parts
            .headers
            .get(http::header::CONNECTION)
            .is_some_and(|v| wire::lists(v.as_bytes(), "close"));
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == http::header::CONNECTION || name == http::header::CONTENT_LENGTH {
            continue;
        }
        wire::put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    wire::write_both(client, out, &body).await.is_ok() && !close
}

/// Where a chunked body is, as its bytes pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk: this many data bytes left.
    Data(u64),
    /// After a chunk's data: this many bytes of its CRLF left.
    DataEnd(u8),
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    /// The body is complete.
    Done,
}

impl Chunks {
    fn done(self) -> bool {
        self == Chunks::Done
    }

    /// Goes over `bytes` (what follows what was already passed): how many of them belong to
    /// the body as far as it is known to be complete. A line cut short stays unconsumed until
    /// more bytes come. `Err` when the framing is broken.
    fn advance(&mut self, bytes: &[u8]) -> Result<usize, ()> {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            match *self {
                Chunks::Done => return Ok(at),
                Chunks::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        at += used;
                        *self = Chunks::Trailer;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        at += used;
                        *self = Chunks::Data(size);
                    }
                    Ok(httparse::Status::Partial) => return Ok(at),
                    Err(_) => return Err(()),
                },
                Chunks::Data(left) => {
                    let take = left.min(rest.len() as u64);
                    at += take as usize;
                    if take < left {
                        *self = Chunks::Data(left - take);
                        return Ok(at);
                    }
                    *self = Chunks::DataEnd(2);
                }
                Chunks::DataEnd(left) => {
                    let Some(&byte) = rest.first() else {
                        return Ok(at);
                    };
                    let expected = if left == 2 { b'\r' } else { b'\n' };
                    if byte != expected {
                        return Err(());
                    }
                    at += 1;
                    *self = if left == 2 {
                        Chunks::DataEnd(1)
                    } else {
                        Chunks::Size
                    };
                }
                Chunks::Trailer => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        return Ok(at);
                    };
                    at += end + 2;
                    if end == 0 {
                        *self = Chunks::Done;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
