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

use super::{ReqBody, SendError, Target, Upstreams};
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
                    // TCP_USER_TIMEOUT: the peer stopped acknowledging (its node is gone).
                    | std::io::ErrorKind::TimedOut
            );
        }
        cause = inner.source();
    }
    false
}

/// One way of sending a request to an address, for [`Upstreams::try_addresses`]: hyper's
/// pooled connections ([`super::Pooled`]) or the pass-through path's ([`super::direct`]).
pub(super) trait Attempt {
    /// What a successful attempt gives.
    type Done;

    /// Sends the request to `addr`, racing a connect to `next` when `addr` is slow to
    /// connect. Addresses whose connect failed on the way go to `also_failed`; the time spent
    /// connecting is added to `connect_time` (the request log's `t_connect`). Returns the
    /// address that answered.
    async fn attempt(
        &mut self,
        upstreams: &Upstreams,
        addr: SocketAddr,
        next: Option<SocketAddr>,
        also_failed: &mut Vec<SocketAddr>,
        connect_time: &mut Duration,
    ) -> Result<(Self::Done, SocketAddr), Failed>;

    /// Whether the request may be sent again after its connection broke.
    fn replayable(&self) -> bool;
}

/// A request that one of a service's addresses answered.
pub(super) struct Answered<T> {
    pub(super) done: T,
    pub(super) addr: SocketAddr,
    /// Addresses whose connect failed before (for statistics).
    pub(super) failed: Vec<SocketAddr>,
    /// Time spent opening connections.
    pub(super) connect: Duration,
}

impl Upstreams {
    /// Sends a request to one of `target`'s addresses on `port`, choosing among the addresses
    /// that are not ejected ([`crate::health`]); `sticky` names a preferred task
    /// ([`super::sticky_token`]).
    ///
    /// A failed attempt is retried on another address when that is safe ([`may_retry`]) and
    /// the service's retry budget allows it, on at most [`super::MAX_ATTEMPTS`] addresses.
    /// While a service that had addresses has none (no ready task), the request waits up to
    /// `TIMEOUT_QUEUE` for one to appear, looking again every [`super::READY_POLL`].
    pub(super) async fn try_addresses<A: Attempt>(
        &self,
        target: Target<'_>,
        port: u16,
        sticky: Option<&str>,
        request: &mut A,
    ) -> Result<Answered<A::Done>, SendError> {
        let service = self.health.service(target.host);
        self.health.request(&service);
        let (addrs, start) = self.ready_addresses(target, &service).await?;
        let mut failed = Vec::new();
        let mut connect = Duration::ZERO;
        let mut last = None;
        let plan = self.plan(&addrs, start, port, sticky);
        for addr in plan.probes {
            self.probe(addr);
        }
        let tries = plan.tries;
        // Addresses tried so far (a raced connect may use the next one of the plan).
        let mut spent: Vec<SocketAddr> = Vec::with_capacity(tries.len());
        // Whether the last failed attempt sent the request (a reset): sending it again is a
        // retry the budget bounds. Trying another address when nothing was sent (no connection,
        // or the connection closed before the request went out) costs the upstream no work, so
        // it is not counted; [`super::MAX_ATTEMPTS`] bounds it.
        let mut resend = false;
        for (n, &addr) in tries.iter().enumerate() {
            if spent.contains(&addr) {
                continue;
            }
            if n > 0 && resend && !self.health.try_retry(&service) {
                tracing::debug!(host = target.host, "retry budget spent");
                break;
            }
            let next = tries[n + 1..].iter().find(|a| !spent.contains(a)).copied();
            let before = failed.len();
            let outcome = request
                .attempt(self, addr, next, &mut failed, &mut connect)
                .await;
            spent.extend_from_slice(&failed[before..]);
            match outcome {
                Ok((done, used)) => {
                    self.health.succeeded(used);
                    return Ok(Answered {
                        done,
                        addr: used,
                        failed,
                        connect,
                    });
                }
                Err(failure) => {
                    spent.push(failure.addr);
                    if let Some(fault) = failure.fault {
                        self.health.failed(failure.addr, fault);
                    }
                    if failure.outcome == Outcome::NotConnected {
                        self.names.invalidate(target.host, target.tasks_first);
                        failed.push(failure.addr);
                    }
                    if !may_retry(failure.outcome, request.replayable()) {
                        return Err(failure.error);
                    }
                    resend = failure.outcome == Outcome::Reset;
                    last = Some(failure.error);
                }
            }
        }
        let tried = spent.len();
        Err(match last {
            // A reset, when it was the last word.
            Some(error @ (SendError::Broken { .. } | SendError::BrokenDirect { .. })) => error,
            _ => SendError::Unreachable {
                host: target.host.to_string(),
                tried,
                failed,
            },
        })
    }
}
