//! Upgraded connections (WebSocket and other `Upgrade:` protocols): bytes are copied both ways
//! until either side closes, nothing moves for the tunnel timeout, or the task at the other
//! end reaches its drain deadline ([`crate::membership::Drain`]).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::membership::Drain;

/// Waits for both sides to finish upgrading, then splices them until `drain` (the upstream
/// task's drain deadline, when it is a Swarm task the listener reported) resolves.
pub(crate) async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
    drain: Option<Drain>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let spliced = splice(TokioIo::new(client), TokioIo::new(upstream), idle);
    match drain {
        None => spliced.await,
        Some(drain) => {
            tokio::select! {
                () = spliced => {}
                () = drain.deadline() => tracing::debug!("tunnel closed: its task reached its drain deadline"),
            }
        }
    }
}

/// Copies bytes both ways; ends when both directions are done or after `idle` without traffic.
pub(crate) async fn splice<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let last = Rc::new(Cell::new(Instant::now()));
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let both = async {
        tokio::join!(pump(ar, bw, last.clone()), pump(br, aw, last.clone()));
    };
    let watchdog = async {
        loop {
            let deadline = last.get() + idle;
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        () = both => {}
        () = watchdog => tracing::debug!(?idle, "tunnel idle timeout"),
    }
}

async fn pump<R, W>(mut from: R, mut to: W, last: Rc<Cell<Instant>>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                last.set(Instant::now());
            }
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn splice_copies_both_ways_until_close() {
        let (mut client, proxy_a) = tokio::io::duplex(64);
        let (proxy_b, mut server) = tokio::io::duplex(64);
        let task = tokio::task::LocalSet::new();
        task.run_until(async move {
            let handle = tokio::task::spawn_local(splice(proxy_a, proxy_b, Duration::from_secs(5)));
            client.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
            server.write_all(b"pong").await.unwrap();
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"pong");
            drop(client);
            drop(server);
            handle.await.unwrap();
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn splice_ends_after_idle_timeout() {
        let (_client, proxy_a) = tokio::io::duplex(64);
        let (proxy_b, _server) = tokio::io::duplex(64);
        // Both peers stay open but silent: only the idle timeout can end the splice.
        tokio::time::timeout(
            Duration::from_secs(60),
            splice(proxy_a, proxy_b, Duration::from_secs(10)),
        )
        .await
        .expect("splice should end on its own idle timeout");
    }
}
