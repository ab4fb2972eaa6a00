//! `sluice-demo health`: the health check of a container running `sluice-demo http` (Docker's `HEALTHCHECK CMD`; the
//! image has no shell and no curl). One GET of a URL; healthy when it answers 2xx within the timeout.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::endpoint::{BadUrl, Endpoint};

/// The URL checked by default: the app's own `/demo/health` on its default port.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8080/demo/health";

/// Why the check failed (the message `sluice-demo health` prints).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Unhealthy {
    /// The URL is not `http://host[:port]/path`.
    #[error("--url: {0}")]
    Url(#[from] BadUrl),
    /// No answer (connection refused, reset, timeout).
    #[error("{url}: no answer: {why}")]
    NoAnswer {
        /// The URL checked.
        url: String,
        /// The error.
        why: String,
    },
    /// An answer that is not 2xx.
    #[error("{url}: status {status}")]
    Status {
        /// The URL checked.
        url: String,
        /// The status received.
        status: u16,
    },
}

/// Checks `url` once: Ok when it answers 2xx within `timeout`.
pub(crate) async fn check(url: &str, timeout: Duration) -> Result<(), Unhealthy> {
    let endpoint = Endpoint::parse(url, "http")?;
    let (addr, path) = (endpoint.authority, endpoint.target);
    let no_answer = |why: String| Unhealthy::NoAnswer {
        url: url.to_owned(),
        why,
    };
    let status = tokio::time::timeout(timeout, get(&addr, &path))
        .await
        .map_err(|_| no_answer(format!("timed out after {timeout:?}")))?
        .map_err(no_answer)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(Unhealthy::Status {
            url: url.to_owned(),
            status,
        })
    }
}

async fn get(addr: &str, path: &str) -> Result<u16, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    crate::load::get_status(&mut sender, addr, path).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_service::{serve, App, DRAIN_TIMEOUT};
    use crate::shutdown::ShutdownTrigger;

    #[tokio::test]
    async fn a_bad_url_is_refused() {
        let err = check("https://app/", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, Unhealthy::Url(_)), "{err}");
        assert!(err.to_string().starts_with("--url: invalid URL"), "{err}");
    }

    #[tokio::test]
    async fn healthy_only_after_the_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/demo/health", listener.local_addr().unwrap());
        let (_trigger, signal) = ShutdownTrigger::new();
        let app = App::new("h".into(), Duration::from_millis(300));
        tokio::spawn(serve(listener, app, signal, DRAIN_TIMEOUT));
        let timeout = Duration::from_secs(2);
        assert_eq!(
            check(&url, timeout).await,
            Err(Unhealthy::Status {
                url: url.clone(),
                status: 503
            })
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while check(&url, timeout).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "never healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_unhealthy() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/demo/health", listener.local_addr().unwrap());
        drop(listener);
        assert!(matches!(
            check(&url, Duration::from_secs(2)).await,
            Err(Unhealthy::NoAnswer { .. })
        ));
    }
}
