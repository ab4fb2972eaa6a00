//! `/demo/ws`: a WebSocket echo endpoint (RFC 6455 through `tokio-tungstenite`, upgraded from hyper's HTTP/1.1
//! connection). Every text or binary message is sent back as it came; pings are answered by the library.
//!
//! The echo tasks run on the server's [`TaskTracker`], so a draining server (`--on-sigterm drain`) keeps its open
//! WebSockets until they end or the drain deadline passes; a server that exits at once closes them with the process.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

/// Why a request to `/demo/ws` is not a WebSocket handshake, as the 400's body says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotAHandshake {
    /// No `Upgrade: websocket` header.
    Upgrade,
    /// No `Sec-WebSocket-Key` header.
    Key,
}

impl std::fmt::Display for NotAHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAHandshake::Upgrade => f.write_str("expected the header Upgrade: websocket"),
            NotAHandshake::Key => f.write_str("the header Sec-WebSocket-Key is missing"),
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a handshake request's headers, or why they are not a handshake.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<String, NotAHandshake> {
    let upgrade = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
        });
    if !upgrade {
        return Err(NotAHandshake::Upgrade);
    }
    let key = headers.get(SEC_WEBSOCKET_KEY).ok_or(NotAHandshake::Key)?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// Answers a handshake on `/demo/ws`: 101 and an echo task on `tracker` once hyper hands over the connection, or 400
/// naming what is missing.
pub(crate) fn upgrade(
    req: &mut Request<Incoming>,
    identity: &str,
    tracker: &TaskTracker,
) -> Response<Full<Bytes>> {
    let accept = match accept_key(req.headers()) {
        Ok(accept) => accept,
        Err(why) => {
            let mut response = Response::new(Full::new(Bytes::from(format!("{why}\n"))));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let on_upgrade = hyper::upgrade::on(req);
    let identity = identity.to_owned();
    tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                info!(identity, "websocket opened");
                let echoed = echo(socket).await;
                info!(identity, echoed, "websocket closed");
            }
            Err(error) => debug!(%error, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Sends every text and binary message back until the peer closes or the connection fails; returns how many were
/// echoed.
async fn echo<S>(mut socket: WebSocketStream<S>) -> u64
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut echoed = 0;
    while let Some(message) = socket.next().await {
        let message = match message {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue, // pings are answered by the library; pongs and frames need nothing
        };
        if socket.send(message).await.is_err() {
            break;
        }
        echoed += 1;
    }
    echoed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_follows_rfc_6455() {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key(&headers).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accept_key_names_what_is_missing() {
        let mut headers = HeaderMap::new();
        assert_eq!(accept_key(&headers), Err(NotAHandshake::Upgrade));
        headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
        assert_eq!(accept_key(&headers), Err(NotAHandshake::Upgrade));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(accept_key(&headers), Err(NotAHandshake::Key));
        assert_eq!(
            NotAHandshake::Key.to_string(),
            "the header Sec-WebSocket-Key is missing"
        );
    }
}
