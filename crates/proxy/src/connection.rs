//! Serving one client connection until it ends or the data plane stops: on stop, the request
//! in flight finishes and the connection closes instead of being kept alive. Plain HTTP/1,
//! HTTP/1 over TLS and HTTP/2 connections all go through [`serve_until_stopped`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
