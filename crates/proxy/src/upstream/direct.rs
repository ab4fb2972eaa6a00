//! The upstream side of the pass-through path ([`crate::passthrough`]): plain HTTP/1.1
//! connections that the client connection's own task drives (no hyper, no task per upstream
//! connection), pooled per address like hyper's. A request is sent as bytes already edited
//! by the caller; what comes back is the connection with the response head (and whatever
//! part of the body came with it) in its buffer.
//!
//! The retry rules are [`super::Upstreams::send`]'s ([`super::retry`]): another task when
//! nothing was sent, after a reset only for a replayable request, never after a timeout or an
//! invalid response. A pooled connection that turns out closed costs one more try on a fresh
//! connection to the same address.

use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::net::TcpStream;

use super::retry::{Attempt, Failed, Outcome};
use super::{not_connected, ConnectError, SendError, Target, Upstreams, MAX_IDLE_PER_ADDR};
use crate::health::Fault;
use crate::wire::{self, Buffers};

/// A plain upstream connection of the pass-through path.
pub(crate) struct DirectConn {
    pub(crate) stream: TcpStream,
    /// What was read from the upstream and not yet passed on.
    pub(crate) buf: Vec<u8>,
    pub(crate) addr: SocketAddr,
}

/// A request as the pass-through path sends it.
pub(crate) struct DirectRequest<'a> {
    /// The request head, edited for the upstream.
    pub(crate) head: &'a [u8],
    /// The whole request body.
    pub(crate) body: &'a [u8],
    /// It may be sent again after its connection broke (an idempotent method, no body).
    pub(crate) replayable: bool,
    pub(crate) target: Target<'a>,
    pub(crate) server_timeout: Duration,
    /// Where a connection's buffer comes from (an idle one holds none).
    pub(crate) buffers: &'a Buffers,
}

/// A pass-through request an upstream answered.
pub(crate) struct DirectExchange {
    /// The connection, its buffer starting with the response head.
    pub(crate) conn: DirectConn,
    /// The length of the response head in `conn.buf`.
    pub(crate) head_len: usize,
    /// Addresses whose connect failed before (for statistics).
    pub(crate) failed: Vec<SocketAddr>,
}

impl Upstreams {
    /// Sends `request` to one of `target`'s tasks on `port` and reads the response head.
    pub(crate) async fn send_direct(
        &self,
        port: u16,
        request: &mut DirectRequest<'_>,
    ) -> Result<DirectExchange, SendError> {
        let target = request.target;
        let answered = self.try_addresses(target, port, None, request).await?;
        let (conn, head_len) = answered.done;
        Ok(DirectExchange {
            conn,
            head_len,
            failed: answered.failed,
        })
    }

    /// Gives a connection whose exchange ended cleanly back to the pool (its buffer to
    /// `buffers`).
    pub(crate) fn put_direct(&self, mut conn: DirectConn, buffers: &Buffers) {
        buffers.give(&mut conn.buf);
        let mut idle = self.direct_idle.borrow_mut();
        let list = idle.entry(conn.addr).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(conn);
        }
    }

    /// An idle connection to `addr` that has not been closed by its peer.
    fn take_direct(&self, addr: SocketAddr) -> Option<DirectConn> {
        let mut idle = self.direct_idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(conn) = list.pop() {
            if still_open(&conn.stream) {
                return Some(conn);
            }
        }
        None
    }
}

/// Whether an idle connection is still open: nothing to read (no end of stream, no stray
/// bytes). Without a system call unless the reactor saw the socket become readable.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

impl Attempt for DirectRequest<'_> {
    type Done = (DirectConn, usize);

    /// A pooled connection when one is idle, else a new one ([`Upstreams::connect_racing`]).
    async fn attempt(
        &mut self,
        upstreams: &Upstreams,
        addr: SocketAddr,
        next: Option<SocketAddr>,
        also_failed: &mut Vec<SocketAddr>,
        connect_time: &mut Duration,
    ) -> Result<(Self::Done, SocketAddr), Failed> {
        if let Some(mut conn) = upstreams.take_direct(addr) {
            match self.exchange(&mut conn).await {
                Ok(head_len) => return Ok(((conn, head_len), addr)),
                // The pooled connection was closed under us: nothing was sent, or it broke
                // before any answer and the request may be sent again. A fresh one follows.
                Err((Outcome::NotSent, _)) => {}
                Err((Outcome::Reset, _)) if self.replayable => {}
                Err((outcome, detail)) => return Err(self.failed(addr, outcome, detail)),
            }
        }
        let connecting = std::time::Instant::now();
        let (addr, stream) = upstreams.connect_racing(addr, next, also_failed).await;
        *connect_time += connecting.elapsed();
        let mut conn = match stream {
            Ok(stream) => DirectConn {
                stream,
                buf: self.buffers.take(),
                addr,
            },
            Err(error) => return Err(not_connected(addr, self.target, &ConnectError::Io(error))),
        };
        match self.exchange(&mut conn).await {
            Ok(head_len) => Ok(((conn, head_len), addr)),
            // A fresh connection that closed before the request went out.
            Err((Outcome::NotSent, detail)) => Err(self.failed(addr, Outcome::Reset, detail)),
            Err((outcome, detail)) => Err(self.failed(addr, outcome, detail)),
        }
    }

    fn replayable(&self) -> bool {
        self.replayable
    }
}

impl DirectRequest<'_> {
    /// Sends the request on `conn` and reads the response head (skipping interim 1xx
    /// responses) within the server timeout: the head's length.
    async fn exchange(&self, conn: &mut DirectConn) -> Result<usize, (Outcome, String)> {
        if let Err((written, error)) =
            wire::write_both(&mut conn.stream, self.head, self.body).await
        {
            let outcome = if written == 0 {
                Outcome::NotSent
            } else {
                Outcome::Reset
            };
            return Err((outcome, error.to_string()));
        }
        conn.buf.clear();
        if conn.buf.capacity() == 0 {
            conn.buf = self.buffers.take();
        }
        match tokio::time::timeout(self.server_timeout, read_head(conn)).await {
            Ok(read) => read,
            Err(_) => Err((Outcome::TimedOut, String::new())),
        }
    }

    fn failed(&self, addr: SocketAddr, outcome: Outcome, detail: String) -> Failed {
        let error = match outcome {
            Outcome::TimedOut => SendError::Timeout { addr },
            _ => SendError::BrokenDirect { addr, detail },
        };
        Failed {
            error,
            addr,
            outcome,
            fault: (outcome == Outcome::Reset).then_some(Fault::Reset),
            back: None,
        }
    }
}

/// Reads until `conn.buf` holds a final response head.
async fn read_head(conn: &mut DirectConn) -> Result<usize, (Outcome, String)> {
    loop {
        if !conn.buf.is_empty() {
            match wire::response_head(&conn.buf) {
                Ok(Some((_, 101))) => {
                    return Err((Outcome::Invalid, "101 to a request without upgrade".into()))
                }
                Ok(Some((len, status))) if (100..200).contains(&status) => {
                    conn.buf.drain(..len);
                    continue;
                }
                Ok(Some((len, _))) => return Ok(len),
                Ok(None) if conn.buf.len() >= wire::MAX_HEAD => {
                    return Err((Outcome::Invalid, "response head too large".into()))
                }
                Ok(None) => {}
                Err(error) => return Err((Outcome::Invalid, format!("invalid response: {error}"))),
            }
        }
        match wire::read_more(&mut conn.stream, &mut conn.buf).await {
            Ok(0) => return Err((Outcome::Reset, "closed before a response".into())),
            Ok(_) => {}
            Err(error) => return Err((Outcome::Reset, error.to_string())),
        }
    }
}
