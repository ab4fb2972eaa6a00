//! The benchmark backend: the cheapest HTTP/1.1 server we can write, answering every request with the same small body.
//!
//! It parses request heads with `httparse`, discards `Content-Length` bodies, answers pipelined requests in one write and
//! keeps connections alive (HTTP/1.1 by default, HTTP/1.0 only with `Connection: keep-alive`). Every request gets
//! `200` with the 13-byte body [`BODY`] (`HEAD` gets the headers only). Chunked request bodies are not decoded: such a
//! request gets `501` and the connection is closed, as do malformed heads (`400`) and heads over [`MAX_HEAD`] (`431`).
//!
//! Threading is thread-per-core: each worker thread owns a current-thread tokio runtime and its own SO_REUSEPORT listener
//! on the shared port, so connections never migrate between threads. With one thread everything, signal handling
//! included, runs on the main thread. On SIGTERM/SIGINT the listeners close and the process exits without waiting for
//! open keep-alive connections (a benchmark backend has no requests worth draining).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::listener;
use crate::shutdown::{ShutdownSignal, ShutdownTrigger, TerminationSignals};
use crate::system::SystemError;

/// The fixed response body.
pub(crate) const BODY: &[u8] = b"Hello, World!";
/// Largest accepted request head, in bytes.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Most header fields accepted in one request.
const MAX_HEADERS: usize = 64;
/// Longest time spent draining a connection we are closing.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_millis(500);
/// Most bytes drained from a connection we are closing.
const LINGER_BYTES: usize = 256 * 1024;
/// Spare capacity kept in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const HEAD_TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const NOT_IMPLEMENTED: &[u8] =
    b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What the head at the start of a buffer turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// A complete, acceptable request head.
    Request(RequestHead),
    /// More bytes are needed.
    Partial,
    /// A malformed head (answered with 400).
    Invalid,
    /// Too many header fields (answered with 431).
    TooLarge,
    /// A `Transfer-Encoding` body, which this server does not decode (answered with 501).
    Unsupported,
}

/// The framing facts of one parsed request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RequestHead {
    /// Bytes taken by the head, blank line included.
    pub(crate) len: usize,
    /// Body bytes that follow the head and must be skipped.
    pub(crate) body_len: u64,
    /// Whether the connection stays open after the response.
    pub(crate) keep_alive: bool,
    /// Whether the request was HTTP/1.0 (a kept-alive 1.0 connection needs an explicit header).
    pub(crate) http10: bool,
    /// Whether the method was HEAD (no body in the response).
    pub(crate) is_head: bool,
}

/// Parses the request head at the start of `buf`.
pub(crate) fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => return Head::TooLarge,
        Err(_) => return Head::Invalid,
    };
    let http10 = req.version == Some(0);
    let mut body_len: Option<u64> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(header.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (parsed, body_len) {
                (None, _) => return Head::Invalid,
                (Some(new), Some(old)) if new != old => return Head::Invalid,
                (Some(new), _) => body_len = Some(new),
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Head::Unsupported;
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let keep_alive = !close && (!http10 || keep_alive_token);
    Head::Request(RequestHead {
        len,
        body_len: body_len.unwrap_or(0),
        keep_alive,
        http10,
        is_head: req.method == Some("HEAD"),
    })
}

/// The response head shared by all 200s, re-rendered when the second (and so the `Date` header) changes.
#[derive(Debug)]
pub(crate) struct ResponseTemplate {
    second: u64,
    head: Vec<u8>,
}

impl ResponseTemplate {
    /// Renders the template for the current time.
    pub(crate) fn new() -> Self {
        let mut template = Self {
            second: u64::MAX,
            head: Vec::with_capacity(128),
        };
        template.refresh();
        template
    }

    /// Re-renders the `Date` header if the wall-clock second changed.
    pub(crate) fn refresh(&mut self) {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second == self.second {
            return;
        }
        self.second = second;
        self.head.clear();
        self.head
            .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ");
        self.head
            .extend_from_slice(BODY.len().to_string().as_bytes());
        self.head.extend_from_slice(b"\r\nDate: ");
        self.head
            .extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
        self.head.extend_from_slice(b"\r\n");
    }

    /// Appends the response to `request` to `out`.
    pub(crate) fn write(&self, request: &RequestHead, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        if !request.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if request.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !request.is_head {
            out.extend_from_slice(BODY);
        }
    }
}

/// Serves one connection until the peer closes it, asks to close it, or sends something unacceptable.
pub(crate) async fn serve_connection(mut stream: TcpStream) -> std::io::Result<()> {
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut output: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut template = ResponseTemplate::new();
    // Body bytes of the current request still to be discarded.
    let mut skip: u64 = 0;
    loop {
        if input.capacity() - input.len() < READ_CHUNK {
            input.reserve(READ_CHUNK);
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        template.refresh();
        let mut pos = 0;
        let mut close = false;
        while pos < input.len() {
            if skip > 0 {
                let available = (input.len() - pos) as u64;
                let taken = skip.min(available);
                // `taken` is at most `available`, which came from a usize.
                pos += usize::try_from(taken).unwrap_or(usize::MAX);
                skip -= taken;
                continue;
            }
            match parse_head(&input[pos..]) {
                Head::Request(request) => {
                    pos += request.len;
                    skip = request.body_len;
                    template.write(&request, &mut output);
                    if !request.keep_alive {
                        close = true;
                        break;
                    }
                }
                Head::Partial => {
                    if input.len() - pos >= MAX_HEAD {
                        output.extend_from_slice(HEAD_TOO_LARGE);
                        close = true;
                    }
                    break;
                }
                Head::TooLarge => {
                    output.extend_from_slice(HEAD_TOO_LARGE);
                    close = true;
                    break;
                }
                Head::Invalid => {
                    output.extend_from_slice(BAD_REQUEST);
                    close = true;
                    break;
                }
                Head::Unsupported => {
                    output.extend_from_slice(NOT_IMPLEMENTED);
                    close = true;
                    break;
                }
            }
        }
        input.drain(..pos.min(input.len()));
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if close {
            stream.shutdown().await?;
            linger(&mut stream).await;
            return Ok(());
        }
    }
}

/// After our FIN, reads and drops what the peer still sends (bounded in bytes and time), so closing with unread input
/// does not turn into a RST that could destroy the response before the peer reads it.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` fires.
pub(crate) async fn serve(listener: TcpListener, mut shutdown: ShutdownSignal) {
    loop {
        tokio::select! {
            () = shutdown.requested() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%error, "cannot set TCP_NODELAY");
                    }
                    tokio::spawn(async move {
                        if let Err(error) = serve_connection(stream).await {
                            debug!(%error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
}

/// Number of worker threads to run: `requested`, or one per available core when 0.
pub(crate) fn worker_count(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism()
        .map(NonZeroUsize::get)
        .unwrap_or(1)
}

/// Binds one SO_REUSEPORT listener per worker on the same address (the first one fixes the port when 0 is asked).
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    workers: usize,
) -> Result<Vec<std::net::TcpListener>, SystemError> {
    let first = listener::bind(addr, true)?;
    let shared = listener::local_addr(&first, addr)?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(listener::bind(shared, true)?);
    }
    Ok(listeners)
}

/// Builds the current-thread runtime of one worker.
fn worker_runtime(role: &'static str) -> Result<tokio::runtime::Runtime, SystemError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| SystemError::Runtime { role, source })
}

/// Runs one worker: its own runtime serving its own listener until `shutdown`.
fn run_worker(
    listener: std::net::TcpListener,
    addr: SocketAddr,
    shutdown: ShutdownSignal,
) -> Result<(), SystemError> {
    let runtime = worker_runtime("a bench worker")?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)
            .map_err(|source| SystemError::Listen { addr, source })?;
        serve(listener, shutdown).await;
        Ok(())
    })
}

/// Runs the benchmark backend on `addr` with `threads` workers (0 = one per core) until SIGTERM/SIGINT.
pub(crate) fn run(addr: SocketAddr, threads: usize) -> Result<(), SystemError> {
    let workers = worker_count(threads);
    let mut listeners = bind_listeners(addr, workers)?.into_iter();
    let Some(first) = listeners.next() else {
        return Ok(());
    };
    let local = listener::local_addr(&first, addr)?;
    let (trigger, signal) = ShutdownTrigger::new();
    let mut handles = Vec::with_capacity(workers.saturating_sub(1));
    for (offset, extra) in listeners.enumerate() {
        let index = offset + 1;
        let shutdown = signal.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-worker-{index}"))
            .spawn(move || run_worker(extra, local, shutdown))
            .map_err(|source| SystemError::Thread { index, source })?;
        handles.push((index, handle));
    }
    let runtime = worker_runtime("the main bench worker")?;
    let result = runtime.block_on(async move {
        let listener = TcpListener::from_std(first).map_err(|source| SystemError::Listen {
            addr: local,
            source,
        })?;
        let mut signals = TerminationSignals::install()?;
        listener::announce(local);
        info!(%local, workers, "bench backend ready");
        tokio::select! {
            name = signals.recv() => info!(signal = name, "stopping"),
            () = serve(listener, signal) => {}
        }
        Ok(())
    });
    trigger.fire();
    for (index, handle) in handles {
        match handle.join() {
            Ok(worker_result) => worker_result?,
            Err(_) => return Err(SystemError::ThreadPanicked { index }),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::*;

    fn request(head: &Head) -> &RequestHead {
        match head {
            Head::Request(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn parses_keep_alive_rules() {
        let h = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = request(&h);
        assert_eq!(
            (r.len, r.body_len, r.keep_alive, r.http10, r.is_head),
            (27, 0, true, false, false)
        );
        assert!(!request(&parse_head(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")).keep_alive);
        assert!(!request(&parse_head(b"GET / HTTP/1.0\r\n\r\n")).keep_alive);
        let r10 = parse_head(b"HEAD / HTTP/1.0\r\nConnection: te, Keep-Alive\r\n\r\n");
        assert!(request(&r10).keep_alive && request(&r10).http10 && request(&r10).is_head);
    }

    #[test]
    fn parses_bodies_and_rejects_bad_framing() {
        assert_eq!(
            request(&parse_head(
                b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\nxx"
            ))
            .body_len,
            12
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost"), Head::Partial);
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: -3\r\n\r\n"),
            Head::Invalid
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Head::Invalid
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Head::Unsupported
        );
        assert_eq!(parse_head(b"\x01\x02 garbage\r\n\r\n"), Head::Invalid);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Head::TooLarge);
    }

    #[test]
    fn template_renders_fixed_response() {
        let template = ResponseTemplate::new();
        let mut out = Vec::new();
        let req = RequestHead {
            len: 0,
            body_len: 0,
            keep_alive: true,
            http10: false,
            is_head: false,
        };
        template.write(&req, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 13\r\n"), "{text}");
        assert!(text.contains("\r\nDate: "), "{text}");
        assert!(text.ends_with("\r\n\r\nHello, World!"), "{text}");
        assert!(!text.contains("Connection:"), "{text}");

        let mut out = Vec::new();
        let head_close = RequestHead {
            len: 0,
            body_len: 0,
            keep_alive: false,
            http10: false,
            is_head: true,
        };
        template.write(&head_close, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
    }

    /// Starts `serve` on an ephemeral port; returns the address and the trigger keeping it alive.
    async fn start() -> (SocketAddr, ShutdownTrigger) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, signal) = ShutdownTrigger::new();
        tokio::spawn(serve(listener, signal));
        (addr, trigger)
    }

    /// Reads until `count` complete fixed responses arrived (or the peer closed), returning the raw bytes.
    fn read_responses(stream: &mut std::net::TcpStream, count: usize) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.windows(BODY.len()).filter(|w| *w == BODY).count() < count {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_pipelining_and_split_bodies() {
        let (addr, _trigger) = start().await;
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // Three pipelined requests, one with a body, in one write.
            s.write_all(b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /c HTTP/1.1\r\n\r\n")
                .unwrap();
            let text = read_responses(&mut s, 3);
            assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
            // A head and its body split across writes.
            s.write_all(b"POST /d HTTP/1.1\r\nContent-").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            s.write_all(b"Length: 6\r\n\r\nabc").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            s.write_all(b"defGET /e HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
            let text = read_responses(&mut s, 2);
            assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
            assert!(text.contains("Connection: close"), "{text}");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "connection should be closed after Connection: close");
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_close_the_connection() {
        let (addr, _trigger) = start().await;
        tokio::task::spawn_blocking(move || {
            for (input, status) in [
                (
                    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                    "501",
                ),
                (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), "400"),
                (
                    [b"GET / HTTP/1.1\r\nX: ".to_vec(), vec![b'a'; MAX_HEAD]].concat(),
                    "431",
                ),
            ] {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(&input).unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                let text = String::from_utf8(got).unwrap();
                assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            }
        })
        .await
        .unwrap();
    }

    #[test]
    fn worker_count_defaults_to_cores() {
        assert_eq!(worker_count(3), 3);
        assert!(worker_count(0) >= 1);
    }

    #[test]
    fn workers_share_one_port() {
        let listeners = bind_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
        // Each worker serves its listener; many connections all get answers whichever listener the kernel picks.
        let addr = listeners[0].local_addr().unwrap();
        let (trigger, signal) = ShutdownTrigger::new();
        let handles: Vec<_> = listeners
            .into_iter()
            .map(|l| {
                let signal = signal.clone();
                std::thread::spawn(move || run_worker(l, addr, signal))
            })
            .collect();
        for _ in 0..20 {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            assert!(read_responses(&mut s, 1).ends_with("Hello, World!"));
        }
        trigger.fire();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
    }
}
