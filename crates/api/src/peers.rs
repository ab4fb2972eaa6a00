//! Talking to other processes over HTTP: proxy peers (`distribute`) and Swarm listeners
//! (`LISTENER_ADDRESS`).
//!
//! Peers are the addresses of `tasks.<SERVICE_NAME>`; this process recognises its own address
//! (the kernel routes it locally) and skips it, because it has already applied the change.
//! Every request has a timeout and peers are contacted concurrently, so one dead replica
//! never holds up the others.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice_core::service::Params;

/// The largest response body read from a peer or listener.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// An HTTP call to a peer or listener failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The URL could not be built.
    #[error("invalid URL {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer in time.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// Connection or protocol failure.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// An answer that is not 2xx.
    #[error("{url}: status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status received.
        status: StatusCode,
    },
}

/// `tasks.<SERVICE_NAME>` did not resolve: this proxy has no replicas to talk to (or
/// `SERVICE_NAME` is wrong).
#[derive(Debug, thiserror::Error)]
#[error("{name} did not resolve ({source}); if the proxy service is not called '{service_name}', set SERVICE_NAME")]
pub struct PeersUnresolved {
    name: String,
    service_name: String,
    #[source]
    source: std::io::Error,
}

/// A small HTTP client with a timeout and optional basic-auth credentials.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    authorization: Option<String>,
}

impl PeerClient {
    /// A client whose requests give up after `timeout`; `authorization` is a full
    /// `Authorization` header value sent with every request.
    pub fn new(timeout: Duration, authorization: Option<String>) -> PeerClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        PeerClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
            authorization,
        }
    }

    /// `GET url`; the body of a 2xx answer.
    pub async fn get(&self, url: &str) -> Result<Bytes, PeerError> {
        self.send(Method::GET, url, Bytes::new()).await
    }

    /// `method http://<peer>:<port><path_and_query>` with `body` on every peer, concurrently;
    /// the failures (`<ip>: <error>`), sorted.
    pub async fn send_to_all(
        &self,
        peers: &[IpAddr],
        port: u16,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Vec<String> {
        let mut tasks = tokio::task::JoinSet::new();
        for &ip in peers {
            let url = format!("http://{}{path_and_query}", SocketAddr::new(ip, port));
            let (client, body, method) = (self.clone(), body.clone(), method.clone());
            tasks.spawn(async move { (ip, client.send(method, &url, body).await) });
        }
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(_))) => {}
                Ok((ip, Err(e))) => failed.push(format!("{ip}: {e}")),
                Err(e) => failed.push(e.to_string()),
            }
        }
        failed.sort();
        failed
    }

    /// `method url` with `body`; the body of a 2xx answer. Errors name the URL with
    /// secret-bearing query values redacted (a distributed reconfigure carries `users` and
    /// `serviceCert`).
    pub async fn send(&self, method: Method, url: &str, body: Bytes) -> Result<Bytes, PeerError> {
        let mut builder = Request::builder().method(method).uri(url);
        let url = &*sluice_core::redact::redact_url(url);
        if let Some(auth) = &self.authorization {
            builder = builder.header(hyper::header::AUTHORIZATION, auth);
        }
        let req = builder.body(Full::new(body)).map_err(|e| PeerError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| PeerError::Transport {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| PeerError::Transport {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(PeerError::Status {
                    url: url.to_string(),
                    status,
                })
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| PeerError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })?
    }
}

/// Encodes parameters as a query string.
pub fn encode_query(params: &Params) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        out.append_pair(k, v);
    }
    out.finish()
}

/// The result of forwarding a change to the other replicas.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// Peers that accepted the change.
    pub delivered: Vec<IpAddr>,
    /// Peers that did not, with the reason.
    pub failed: Vec<(IpAddr, String)>,
    /// Why no peer was contacted, when none was.
    pub note: Option<String>,
}

/// Forwards changes to the other proxy replicas.
#[derive(Clone)]
pub struct Distributor {
    service_name: String,
    port: u16,
    client: PeerClient,
    own_ip: Option<IpAddr>,
    hosts_file: Option<PathBuf>,
}

impl Distributor {
    /// Peers are `tasks.<service_name>` on `port` (the API port). `own_ip` is the API's bind
    /// address when it is a specific one; `hosts_file` is `HOSTS_FILE`.
    pub fn new(
        service_name: &str,
        port: u16,
        client: PeerClient,
        own_ip: Option<IpAddr>,
        hosts_file: Option<PathBuf>,
    ) -> Distributor {
        Distributor {
            service_name: service_name.to_string(),
            port,
            client,
            own_ip: own_ip.filter(|ip| !ip.is_unspecified()),
            hosts_file,
        }
    }

    /// The other replicas' addresses (this process's own address left out).
    pub async fn peers(&self) -> Result<Vec<IpAddr>, PeersUnresolved> {
        let name = format!("tasks.{}", self.service_name);
        let ips = sluice_proxy::resolve::lookup(&name, self.hosts_file.as_deref())
            .await
            .map_err(|source| PeersUnresolved {
                name,
                service_name: self.service_name.clone(),
                source,
            })?;
        Ok(ips
            .into_iter()
            .filter(|ip| Some(*ip) != self.own_ip && !is_own_address(*ip))
            .collect())
    }

    /// This replica's own address among `tasks.<service_name>`, when it is listed.
    pub async fn own_address(&self) -> Option<IpAddr> {
        let name = format!("tasks.{}", self.service_name);
        let ips = sluice_proxy::resolve::lookup(&name, self.hosts_file.as_deref())
            .await
            .ok()?;
        ips.into_iter()
            .find(|ip| Some(*ip) == self.own_ip || is_own_address(*ip))
    }

    /// Sends `GET <path>?<params with distribute=false>` to every peer, concurrently.
    pub async fn forward(&self, path: &str, params: &Params) -> Distribution {
        let peers = match self.peers().await {
            Ok(peers) => peers,
            Err(note) => {
                return Distribution {
                    note: Some(note.to_string()),
                    ..Distribution::default()
                }
            }
        };
        if peers.is_empty() {
            return Distribution {
                note: Some("no other replica found".into()),
                ..Distribution::default()
            };
        }
        let mut params = params.clone();
        params.insert("distribute".into(), "false".into());
        let query = encode_query(&params);
        let mut tasks = tokio::task::JoinSet::new();
        for ip in peers {
            let url = format!("http://{}{path}?{query}", SocketAddr::new(ip, self.port));
            let client = self.client.clone();
            tasks.spawn(async move { (ip, client.get(&url).await.map(|_| ())) });
        }
        let mut out = Distribution::default();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((ip, Ok(()))) => out.delivered.push(ip),
                Ok((ip, Err(e))) => out.failed.push((ip, e.to_string())),
                Err(e) => tracing::error!(%e, "distribution task failed"),
            }
        }
        out.delivered.sort();
        out.failed.sort();
        out
    }
}

/// True when packets to `ip` would leave from `ip` itself, i.e. it is one of our addresses.
fn is_own_address(ip: IpAddr) -> bool {
    let bind: SocketAddr = match ip {
        IpAddr::V4(_) => "0.0.0.0:0"
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(SocketAddr::new(ip, 9))?;
            s.local_addr()
        })
        .map(|local| local.ip() == ip)
        .unwrap_or(false)
}

/// `http://<addr>` with `:8080` added when the address has no port (DFP's convention).
pub fn listener_base(address: &str) -> String {
    let address = address.trim().trim_end_matches('/');
    let (scheme, rest) = match address.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("http", address),
    };
    let has_port = match rest.rsplit_once(':') {
        Some((host, port)) => {
            !host.ends_with('[') && port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty()
        }
        None => false,
    };
    if has_port {
        format!("{scheme}://{rest}")
    } else {
        format!("{scheme}://{rest}:8080")
    }
}

/// The Swarm listener's `get-services` answer: one parameter map per service.
pub fn parse_services(body: &[u8]) -> Result<Vec<Params>, serde_json::Error> {
    let list: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(body)?;
    Ok(list
        .into_iter()
        .map(|map| {
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_addresses_get_scheme_and_port() {
        assert_eq!(
            listener_base("swarm-listener"),
            "http://swarm-listener:8080"
        );
        assert_eq!(
            listener_base("swarm-listener:9000"),
            "http://swarm-listener:9000"
        );
        assert_eq!(listener_base("http://l:1/"), "http://l:1");
        assert_eq!(listener_base("https://l"), "https://l:8080");
    }

    #[test]
    fn services_parse_from_listener_json() {
        let body =
            br#"[{"serviceName":"go-demo","servicePath":"/demo","port":"8080","replicas":3}]"#;
        let list = parse_services(body).unwrap();
        assert_eq!(list[0]["serviceName"], "go-demo");
        assert_eq!(list[0]["replicas"], "3");
        assert!(parse_services(b"{}").is_err());
    }

    #[test]
    fn the_primary_loopback_address_is_our_own() {
        assert!(is_own_address("127.0.0.1".parse().unwrap()));
        // Other loopback addresses are answered from 127.0.0.1, so they are peers.
        assert!(!is_own_address("127.0.0.3".parse().unwrap()));
    }

    #[test]
    fn queries_are_encoded() {
        let mut p = Params::new();
        p.insert("serviceName".into(), "a b".into());
        p.insert("servicePath".into(), "/x&y".into());
        assert_eq!(encode_query(&p), "serviceName=a+b&servicePath=%2Fx%26y");
    }
}
