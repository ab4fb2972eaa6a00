//! Response bodies the data plane sends: either bytes it wrote itself, or an upstream body
//! streamed through with an inactivity timeout, whose connection goes back to the pool once
//! the body has been read to the end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

use crate::upstream::Lease;

/// Error type of [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body.
pub enum ProxyBody {
    /// A complete body (taken on the first poll).
    Full(Option<Bytes>),
    /// A body streamed from an upstream.
    Upstream(UpstreamBody),
    /// Another body whose bytes are counted for a destination ([`crate::stats`]).
    Metered(crate::stats::MeteredBody),
    /// Another body compressed on the way out ([`crate::compress`]).
    Compressed(Box<crate::compress::CompressedBody>),
}

impl ProxyBody {
    /// A body made of these bytes.
    pub fn full(bytes: Bytes) -> Self {
        ProxyBody::Full(Some(bytes))
    }

    /// An empty body.
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }
}

/// An upstream response body.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl UpstreamBody {
    /// Streams `inner`; `lease` (if any) is released to the pool at the end of the body.
    pub(crate) fn new(inner: Incoming, lease: Option<Lease>, idle: Duration) -> Self {
        let mut body = UpstreamBody {
            inner,
            lease,
            idle,
            timer: None,
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

/// The upstream stopped sending body data for longer than the server timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream body idle for more than {0:?}")]
pub struct BodyTimeout(Duration);

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Metered(body) => body.poll_frame(cx),
            ProxyBody::Compressed(body) => Pin::new(body.as_mut()).poll_frame(cx),
            ProxyBody::Upstream(body) => match Pin::new(&mut body.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    body.timer = None;
                    if body.inner.is_end_stream() {
                        body.finish();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    body.lease = None;
                    Poll::Ready(Some(Err(Box::new(e))))
                }
                Poll::Ready(None) => {
                    body.finish();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    let idle = body.idle;
                    let timer = body
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            body.lease = None;
                            Poll::Ready(Some(Err(Box::new(BodyTimeout(idle)))))
                        }
                        Poll::Pending => Poll::Pending,
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Metered(body) => body.is_end_stream(),
            ProxyBody::Compressed(body) => body.is_end_stream(),
            ProxyBody::Upstream(body) => body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Metered(body) => body.size_hint(),
            ProxyBody::Compressed(body) => body.size_hint(),
            ProxyBody::Upstream(body) => body.inner.size_hint(),
        }
    }
}
