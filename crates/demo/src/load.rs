//! `sluice-demo load`: the client side of the benchmarks (`bench/run.sh`, `bench/tls.sh`).
//!
//! - `ports N`: prints N free loopback ports (the probe sockets close when it exits);
//! - `register`: registers one service per line of a file through Sluice's API, on one
//!   keep-alive connection, and prints how long it took;
//! - `churn`: add / update / remove calls through the API, with latency percentiles;
//! - `idle`: opens N connections that send nothing and holds them (memory per connection).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::system::SystemError;

const API: &str = "/v1/docker-flow-proxy";

/// Why a load command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Too many API calls failed, or the deadline passed.
    #[error("{0}")]
    Failed(String),
    /// The runtime of the load client could not be built.
    #[error(transparent)]
    System(#[from] SystemError),
}

/// Free loopback ports: bound together so they differ, then released.
pub(crate) fn ports(count: usize) -> Result<Vec<u16>, LoadError> {
    let io = |source| LoadError::Io {
        what: "cannot bind a probe socket".into(),
        source,
    };
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(io))
        .collect()
}

/// A keep-alive HTTP/1.1 client of one address that reconnects when the connection breaks.
struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, sender: None }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Empty<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }

    /// GET `path`; the status, or 0 when the request failed twice.
    async fn get(&mut self, path: &str) -> u16 {
        for _ in 0..2 {
            match self.try_get(path).await {
                Ok(status) => return status,
                Err(_) => self.sender = None,
            }
        }
        0
    }

    async fn try_get(&mut self, path: &str) -> Result<u16, String> {
        let host = self.addr.to_string();
        let sender = self.connect().await?;
        sender.ready().await.map_err(|e| e.to_string())?;
        get_status(sender, &host, path).await
    }
}

/// GETs `path` from `host` on `sender` and reads the whole body; the status.
pub(crate) async fn get_status(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> Result<u16, String> {
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
}

fn reconfigure(name: &str, paths: &str, backend: u16) -> String {
    format!(
        "{API}/reconfigure?serviceName={name}&servicePath={paths}&port={backend}&outboundHostname=127.0.0.1"
    )
}

fn runtime() -> Result<tokio::runtime::Runtime, SystemError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| SystemError::Runtime {
            role: "the load client",
            source,
        })
}

/// Registers every service named in `names_file` (path `/<name>`).
pub(crate) fn register(
    api: SocketAddr,
    backend: u16,
    deadline: Duration,
    names_file: &str,
) -> Result<(), LoadError> {
    let text = std::fs::read_to_string(names_file).map_err(|source| LoadError::Read {
        path: names_file.into(),
        source,
    })?;
    let names: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    runtime()?.block_on(async {
        let started = Instant::now();
        let mut client = Client::new(api);
        let (mut ok, mut failed) = (0usize, 0usize);
        for name in names {
            if started.elapsed() > deadline {
                return Err(LoadError::Failed(format!(
                    "deadline reached after {ok} services"
                )));
            }
            if client
                .get(&reconfigure(name, &format!("/{name}"), backend))
                .await
                == 200
            {
                ok += 1;
            } else {
                failed += 1;
                if failed > 10 {
                    return Err(LoadError::Failed(format!(
                        "too many failures ({failed}), last service {name}"
                    )));
                }
            }
        }
        println!(
            "registered={ok} failed={failed} elapsed_s={:.1}",
            started.elapsed().as_secs_f64()
        );
        if failed == 0 {
            Ok(())
        } else {
            Err(LoadError::Failed(format!("{failed} registrations failed")))
        }
    })?;
    Ok(())
}

/// The `p`th percentile of sorted values (nearest rank).
fn percentile(sorted: &[f64], p: usize) -> f64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// `calls` API calls cycling add / update / remove of `churn<k>` services.
pub(crate) fn churn(
    api: SocketAddr,
    backend: u16,
    deadline: Duration,
    calls: usize,
) -> Result<(), LoadError> {
    runtime()?.block_on(async {
        let started = Instant::now();
        let mut client = Client::new(api);
        let mut latencies = Vec::with_capacity(calls);
        let mut failed = 0usize;
        for i in 0..calls {
            if started.elapsed() > deadline {
                eprintln!("deadline reached after {i} calls");
                break;
            }
            let name = format!("churn{}", i / 3);
            let path = match i % 3 {
                0 => reconfigure(&name, &format!("/{name}"), backend),
                1 => reconfigure(&name, &format!("/{name},/{name}v2"), backend),
                _ => format!("{API}/remove?serviceName={name}"),
            };
            let asked = Instant::now();
            let status = client.get(&path).await;
            latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                failed += 1;
            }
        }
        latencies.sort_by(f64::total_cmp);
        let Some(max) = latencies.last() else {
            println!("calls=0 failed=0 p50_ms=nan p99_ms=nan max_ms=nan");
            return Err(LoadError::Failed("no call made".into()));
        };
        println!(
            "calls={} failed={failed} p50_ms={:.3} p99_ms={:.3} max_ms={max:.3}",
            latencies.len(),
            percentile(&latencies, 50),
            percentile(&latencies, 99),
        );
        if failed == 0 && latencies.len() == calls {
            Ok(())
        } else {
            Err(LoadError::Failed(format!("{failed} calls failed")))
        }
    })?;
    Ok(())
}

/// Opens `count` connections to `addr` that send nothing, prints `open=N`, and holds them
/// for `hold` (or until the process is stopped).
pub(crate) fn idle(addr: SocketAddr, count: usize, hold: Duration) -> Result<(), LoadError> {
    runtime()?.block_on(async {
        let mut open = Vec::with_capacity(count);
        for _ in 0..count {
            match TcpStream::connect(addr).await {
                Ok(stream) => open.push(stream),
                Err(source) => {
                    return Err(LoadError::Io {
                        what: format!("connection {} to {addr}", open.len() + 1),
                        source,
                    })
                }
            }
        }
        println!("open={}", open.len());
        tokio::time::sleep(hold).await;
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50), 50.0);
        assert_eq!(percentile(&values, 99), 99.0);
        assert_eq!(percentile(&[3.0], 99), 3.0);
    }

    #[test]
    fn ports_are_distinct() {
        let ports = ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }
}
