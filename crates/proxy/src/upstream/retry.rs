//! When a failed attempt may be sent again, and what is kept to send it: the retry rules of
//! [`super::Upstreams::send`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::Response;

use super::{ReqBody, SendError};
use crate::health::Fault;

/// A request body on its way upstream: the client's, or an empty one for a retry.
pub(crate) enum Outgoing {
    /// The client's body.
    Client(ReqBody),
    /// No body (a rebuilt request, see [`Replay`]).
    Empty,
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Outgoing::Client(body) => Pin::new(body).poll_frame(cx),
            Outgoing::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outgoing::Client(body) => body.is_end_stream(),
            Outgoing::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outgoing::Client(body) => body.size_hint(),
            Outgoing::Empty => SizeHint::with_exact(0),
        }
    }
}

/// What is kept of a request so it can be sent again after its connection broke: only for
/// idempotent methods (RFC 9110 §9.2.2) and an empty body.
pub(crate) struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    /// The parts of `req` when it may be sent again.
    pub(super) fn of<B: Body>(req: &Request<B>) -> Option<Replay> {
        (idempotent(req.method()) && req.body().is_end_stream()).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        })
    }

    pub(super) fn rebuild(&self) -> Request<Outgoing> {
        let mut req = Request::new(Outgoing::Empty);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Methods that may be repeated without changing the outcome (RFC 9110 §9.2.2).
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// How far a failed attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No connection could be made: nothing was sent.
    NotConnected,
    /// The connection closed before the request went out (hyper gave it back).
    NotSent,
    /// The connection was reset or closed before any response byte; the request may have
    /// been (partly) sent.
    Reset,
    /// No response within the server timeout: the upstream may be working on it.
    TimedOut,
    /// The upstream answered something that is not HTTP, or the client's body broke.
    Invalid,
}

/// Whether a failed attempt may be retried on another address: always when nothing was
/// sent; after a reset only when the request can be rebuilt (`replayable`: an idempotent
/// method with an empty body); never after a timeout or an invalid response.
pub(crate) fn may_retry(outcome: Outcome, replayable: bool) -> bool {
    match outcome {
        Outcome::NotConnected | Outcome::NotSent => true,
        Outcome::Reset => replayable,
        Outcome::TimedOut | Outcome::Invalid => false,
    }
}

/// A failed attempt.
pub(crate) struct Failed {
    pub(super) error: SendError,
    /// The address it failed on.
    pub(super) addr: SocketAddr,
    pub(super) outcome: Outcome,
    /// What it says about the address's health.
    pub(super) fault: Option<Fault>,
    /// The request, when it was not sent.
    pub(super) back: Option<Request<Outgoing>>,
}

/// Sends `req` on `sender` within `server_timeout`.
pub(super) async fn exchange(
    addr: SocketAddr,
    mut sender: SendRequest<Outgoing>,
    req: Request<Outgoing>,
    server_timeout: Duration,
) -> Result<(Response<Incoming>, SendRequest<Outgoing>), Failed> {
    match tokio::time::timeout(server_timeout, sender.try_send_request(req)).await {
        Ok(Ok(response)) => Ok((response, sender)),
        Err(_) => Err(Failed {
            error: SendError::Timeout { addr },
            addr,
            outcome: Outcome::TimedOut,
            fault: None,
            back: None,
        }),
        Ok(Err(mut e)) => {
            let back = e.take_message();
            let source = e.into_error();
            let outcome = if back.is_some() {
                Outcome::NotSent
            } else if broke_before_response(&source) {
                Outcome::Reset
            } else {
                Outcome::Invalid
            };
            Err(Failed {
                error: SendError::Broken { addr, source },
                addr,
                outcome,
                fault: (outcome == Outcome::Reset).then_some(Fault::Reset),
                back,
            })
        }
    }
}

/// True when the upstream connection closed or was reset before a response came: not a
/// parse error, not the client's body failing.
fn broke_before_response(error: &hyper::Error) -> bool {
    if error.is_parse() || error.is_user() || error.is_timeout() {
        return false;
    }
    if error.is_incomplete_message() || error.is_canceled() {
        return true;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        cause = inner.source();
    }
    false
}
