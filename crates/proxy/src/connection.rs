//! Serving one client connection until it ends or the data plane stops: on stop, the request
//! in flight finishes and the connection closes instead of being kept alive. Plain HTTP/1,
//! HTTP/1 over TLS and HTTP/2 connections all go through [`serve_until_stopped`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::TokioTimer;
use sluice_core::settings::Timeouts;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest request header section (request line and headers) a client may send; a larger
/// one is answered 431. The same bound as HAProxy's default buffer.
pub const MAX_HEADER_SIZE: usize = 64 * 1024;

/// The HTTP/1 server settings every client connection uses, plain or TLS.
pub(crate) fn http1_builder(timeouts: &Timeouts) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // A client that sends its request and then shuts down its sending side still gets
        // the answer (as HAProxy and most servers give it).
        .half_close(true)
        // hyper answers 431 past this, and stops reading the header section there.
        .max_header_size(MAX_HEADER_SIZE)
        // hyper's header timer runs while a connection waits for its next request, so it
        // bounds both the idle keep-alive time and the time to send request headers.
        .header_read_timeout(idle_limit(timeouts));
    builder
}

/// How long a client connection may stay without a complete request header section.
pub(crate) fn idle_limit(timeouts: &Timeouts) -> Duration {
    timeouts.http_keep_alive.max(timeouts.http_request)
}

/// A served connection that can be told to finish its request in flight and close.
pub(crate) trait Graceful: Future {
    /// Starts the graceful shutdown; the connection must still be polled to the end.
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, B, S> Graceful for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, B, S, E> Graceful for http2::Connection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    E: Http2ServerConnExec<S::Future, B>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Drives `connection` to its end; once `stop` carries a grace period, shuts it down
/// gracefully (the data plane bounds the grace itself).
pub(crate) async fn serve_until_stopped<C>(
    connection: C,
    mut stop: watch::Receiver<Option<Duration>>,
) -> C::Output
where
    C: Graceful,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.wait_for(Option::is_some) => {
            connection.as_mut().shut_down();
            connection.await
        }
    }
}

/// A client connection some of whose bytes were already read (by the pass-through path,
/// [`crate::passthrough`]): reads give those bytes first, then the socket's.
pub(crate) struct Prefixed<S> {
    read: Vec<u8>,
    /// How much of `read` was given out.
    at: usize,
    stream: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(read: Vec<u8>, stream: S) -> Prefixed<S> {
        Prefixed {
            read,
            at: 0,
            stream,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn bytes_already_read_come_first() {
        let (mut near, far) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut near, b" world")
            .await
            .unwrap();
        drop(near);
        let mut io = Prefixed::new(b"hello".to_vec(), far);
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
