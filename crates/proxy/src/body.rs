//! The bodies the data plane passes on: responses (bytes it wrote itself, or an upstream body
//! streamed through with an inactivity timeout, whose connection goes back to the pool once
//! the body has been read to the end), and client request bodies on their way upstream.
//!
//! This module depends on nothing else of the crate: what happens at a body's end comes in
//! through [`Release`] (a pooled connection going back) and [`Meter`] (bytes counted).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// Error type of [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Something to give back once an upstream body has been read to the end (the pooled
/// connection it came on). Dropped instead when the body fails.
pub trait Release {
    /// The body is complete.
    fn release(self: Box<Self>);
}

/// Counts the data bytes of a body as they pass.
pub trait Meter {
    /// `bytes` more bytes passed.
    fn count(&self, bytes: u64);
}

/// A response body.
pub enum ProxyBody {
    /// A complete body (taken on the first poll).
    Full(Option<Bytes>),
    /// A body streamed from an upstream.
    Upstream(UpstreamBody),
    /// Another body whose bytes are counted (for a destination's statistics).
    Metered(Box<MeteredBody>),
    /// Another body transformed on the way out (compression).
    Boxed(Pin<Box<dyn Body<Data = Bytes, Error = BoxError>>>),
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
    lease: Option<Box<dyn Release>>,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl UpstreamBody {
    /// Streams `inner`; `lease` (if any) is released at the end of the body.
    pub(crate) fn new<R: Release + 'static>(
        inner: Incoming,
        lease: Option<R>,
        idle: Duration,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            lease: lease.map(|l| Box::new(l) as Box<dyn Release>),
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
            ProxyBody::Boxed(body) => body.as_mut().poll_frame(cx),
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
            ProxyBody::Metered(body) => body.inner.is_end_stream(),
            ProxyBody::Boxed(body) => body.is_end_stream(),
            ProxyBody::Upstream(body) => body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Metered(body) => body.inner.size_hint(),
            ProxyBody::Boxed(body) => body.size_hint(),
            ProxyBody::Upstream(body) => body.inner.size_hint(),
        }
    }
}

/// A response body whose data bytes are counted. The body and its meter share one allocation
/// (`Box<MeteredBody>`, the meter being the unsized last field).
pub struct MeteredBody<M: ?Sized + Meter = dyn Meter> {
    inner: ProxyBody,
    meter: M,
}

impl MeteredBody {
    /// Counts the bytes of `inner` with `meter` (dropped with the body).
    pub fn new(inner: ProxyBody, meter: impl Meter + 'static) -> Box<MeteredBody> {
        Box::new(MeteredBody { inner, meter })
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.meter.count(data.len() as u64);
            }
        }
        polled
    }
}

/// A client request body on its way upstream, its data bytes counted.
pub struct RequestBody {
    inner: Incoming,
    meter: Option<Arc<dyn Meter + Send + Sync>>,
}

impl RequestBody {
    /// Passes `inner` on, counting its bytes with `meter` when given.
    pub fn new<M: Meter + Send + Sync + 'static>(
        inner: Incoming,
        meter: Option<Arc<M>>,
    ) -> RequestBody {
        RequestBody {
            inner,
            meter: meter.map(|m| m as Arc<dyn Meter + Send + Sync>),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(meter)) = (&polled, &this.meter) {
            if let Some(data) = frame.data_ref() {
                meter.count(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    struct Count(Rc<Cell<u64>>);

    impl Meter for Count {
        fn count(&self, bytes: u64) {
            self.0.set(self.0.get() + bytes);
        }
    }

    async fn next(body: &mut ProxyBody) -> Option<Bytes> {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        frame.ok()?.into_data().ok()
    }

    #[tokio::test]
    async fn a_metered_body_counts_its_data_bytes_and_passes_them_on() {
        let counted = Rc::new(Cell::new(0));
        let inner = ProxyBody::full(Bytes::from_static(b"hello"));
        let mut body = ProxyBody::Metered(MeteredBody::new(inner, Count(counted.clone())));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        assert_eq!(next(&mut body).await.as_deref(), Some(&b"hello"[..]));
        assert_eq!(counted.get(), 5);
        assert!(next(&mut body).await.is_none());
        assert!(body.is_end_stream());
        drop(body);
        assert_eq!(
            Rc::strong_count(&counted),
            1,
            "the meter goes with the body"
        );
    }
}
